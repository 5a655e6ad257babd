"""Gradient-descent update rules (최적화 알고리즘), each formula written once for numpy and torch.

Every rule is a small frozen dataclass with one contract::

    from gdlib import optim
    rule = optim.Adam(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8)
    state = rule.init(theta)                      # AdamState(step=0, m=0, v=0)
    theta, state = rule.step(theta, grad, state)  # pure: new values, inputs untouched

``step`` validates (floating dtype; same kind, dtype, shape and device for ``theta``, ``grad``
and the state arrays; no NaN/inf in ``grad`` on numpy, and on tensors when the rule is built
with ``check_finite=True``) and calls ``update(theta, grad, state, lr)``: the formula, pure,
written with operators and ``gdlib.arrays.namespace(theta)`` functions only, so it runs on numpy
arrays and on torch tensors on any device. ``lr`` is an argument of ``update`` so that a caller
(a learning-rate schedule, the torch adapter) can supply the current value. ``state.step`` counts
the steps taken; the update being computed is number ``t = state.step + 1`` (the seeds' ``tau``,
torch's ``state["step"]`` after its increment). It may be an int or a 0-d tensor.

Notation: ``g`` is the gradient at the current iterate, ``eta`` the learning rate, products and
powers of vectors are elementwise, ``sqrt`` is elementwise. ``t`` is defined above.

========  ====================================================  ===============  ================
rule      update (gdlib's default form)                         seeds            torch.optim
========  ====================================================  ===============  ================
GD        theta -= eta g                                        000 eq 13-15     SGD
Momentum  v = beta v + g;  theta -= eta v                       001; 002 eq 9    SGD(momentum)
ema=True  v = beta v + (1-beta) g;  theta -= eta v              000 eq 16; 004   same, lr(1-beta)
Nesterov  v = beta v + g;  theta -= eta (g + beta v)            000 eq 21; 001   SGD(nesterov)
Adagrad   s = s + g^2;  theta -= eta g / (sqrt(s) + eps)        000 eq 22; 001   Adagrad
RMSprop   s = beta s + (1-beta) g^2;  step as in Adagrad        000 eq 23-25     RMSprop(alpha)
Adadelta  s = rho s + (1-rho) g^2                               000 eq 32; 001;  Adadelta
          d = g sqrt(u + eps) / sqrt(s + eps);  theta -= eta d  002 eq 15
          u = rho u + (1-rho) d^2
Adam      m = beta1 m + (1-beta1) g;    m^ = m / (1-beta1^t)    000 eq 33-35;    Adam
          v = beta2 v + (1-beta2) g^2;  v^ = v / (1-beta2^t)    001; 003; 004
          theta -= eta m^ / (sqrt(v^) + eps)
Nadam     as Adam with m^ replaced by                           000 eq 42        NAdam, with
          beta1 m^ + (1-beta1) g / (1-beta1^t)                                   momentum_decay
AdamW     theta -= eta lambda theta, then the Adam step          (none)           AdamW
          (decoupled weight decay lambda)
========  ====================================================  ===============  ================

Conventions (the seeds disagree; gdlib follows torch.optim where torch has the rule):

1. Momentum velocity (속도). Three scalings appear. (a) torch and gdlib: ``v = beta v + g``,
   ``theta -= eta v``. (b) Seed 001 (Momentum, NAG) and seed 002 eq 9: ``v = gamma v + eta g``,
   ``theta -= v``; this is (a) with the learning rate folded into the velocity, ``v_b = eta v_a``
   (identical iterates while eta is constant). (c) Seed 000 eq 16 / Algorithm 4 and seed 004:
   ``v = beta v + (1 - beta) g`` (an exponential moving average, 지수 가중 이동 평균), which is
   (a) with the learning rate ``eta (1 - beta)``: ``v_c = (1 - beta) v_a``. ``ema=True`` selects
   (c). torch's ``dampening=beta`` is (c) *except on the first step*, where torch sets its buffer
   to ``g_1`` instead of ``(1 - beta) g_1``; it equals (c) started from ``velocity = g_1``.
2. Epsilon (ε) placement. torch (and Kingma & Ba for Adam) add eps *outside* the root,
   ``g / (sqrt(s) + eps)``; the seeds' update equations all write ``g / sqrt(s + eps)`` (seed
   000's text after eq 22 has the per-coordinate rate ``eta / (sqrt(G(i,i)) + eps)``, eps
   outside, against its own eq 22). gdlib's default matches torch; ``eps_inside_sqrt=True``
   gives the seeds' equations. Adadelta is the exception: torch, Zeiler (2012) and the seeds
   all put eps inside both roots, and so does gdlib (no option).
3. Decay-rate names. Seed 000 calls every decay rate rho, and seed 001 gamma, except for Adam
   (and seed 000's Nadam), where both write beta1, beta2 (seed 000 eq 33 and Algorithms 9-10;
   seed 001's Adam slide); seeds 003/004 gamma or beta; torch uses ``momentum`` (SGD),
   ``alpha`` (RMSprop), ``rho`` (Adadelta), ``betas``. Seed 002 eq 12 writes
   ``E_t = (1 - gamma) E_{t-1} + gamma g_t^2``: its gamma weights the *new* term, so it is
   ``1 - beta`` here.
4. Adagrad's accumulator. Seed 000 eq 22 writes a matrix ``G = sum g g^T`` and uses only
   ``diag(G)``; gdlib stores just that diagonal, the vector ``sum g^2`` (as torch does).
5. Nesterov (네스테로프). Seeds 000 (eq 21) and 001 take the gradient at the look-ahead point
   ``theta - eta beta v``; torch stores that look-ahead point as its parameter, which needs no
   second gradient evaluation. ``Nesterov.step`` is torch's form, ``Nesterov.lookahead_step`` the
   seeds'; they visit the same points under ``theta_torch = theta_seed - eta beta v``.
6. Nadam. The default is seed 000 eq 42 (see ``Nadam`` for how it differs from Dozat 2016 and
   from ``torch.optim.NAdam``); ``momentum_decay=0.004`` reproduces torch.

Seed corrections (typos the book marks "Correction"): seed 000 Algorithm 7 (RMSprop) accumulates
``G = G + g g^T``, Adagrad's sum; eq 24 has the right moving average. Algorithm 8 (Adadelta)
lost symbols: its second accumulator has no name in lines 3 and 11, line 9 again sums ``g g^T``
instead of averaging, and line 10 puts the same root above and below the fraction bar and drops
the factor ``g``; eq 32 and seed 001 give the rule. Algorithm 10 writes ``beta1 (.) m^``: beta1
is a scalar, the product is ordinary. Eq 36 restates NAG with ``Delta m`` where eq 21 has
``Delta v``. Eq 40 indexes the gradient ``g^(tau)`` where eq 33 has ``g^(tau-1)`` (the same
gradient, a shifted index).
"""

import math
import numbers
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, fields
from typing import Any, ClassVar, NamedTuple

import numpy as np

from gdlib import arrays

__all__ = [
    "GD",
    "Adadelta",
    "AdadeltaState",
    "Adagrad",
    "AdagradState",
    "Adam",
    "AdamState",
    "AdamW",
    "GDState",
    "Momentum",
    "MomentumState",
    "Nadam",
    "NadamState",
    "Nesterov",
    "NesterovState",
    "RMSprop",
    "RMSpropState",
    "Rule",
]


# ---------------------------------------------------------------------------------------------
# States: what each rule remembers between steps. ``step`` is the number of steps taken.


class GDState(NamedTuple):
    """Plain gradient descent remembers nothing but the step count."""

    step: Any


class MomentumState(NamedTuple):
    """``velocity``: v of the update (torch: ``momentum_buffer``; seed 000: Delta v)."""

    step: Any
    velocity: Any


class NesterovState(NamedTuple):
    """``velocity``: v of the update (torch: ``momentum_buffer``; seed 000: Delta v)."""

    step: Any
    velocity: Any


class AdagradState(NamedTuple):
    """``sum_sq``: the running sum of squared gradients (torch: ``sum``; seeds: diag G)."""

    step: Any
    sum_sq: Any


class RMSpropState(NamedTuple):
    """``mean_sq``: moving average of g^2 (torch: ``square_avg``; seeds: G, E[g^2])."""

    step: Any
    mean_sq: Any


class AdadeltaState(NamedTuple):
    """``mean_sq``: moving average of g^2 (torch: ``square_avg``; seeds: G, E[g^2]);
    ``mean_sq_delta``: moving average of the squared updates (torch: ``acc_delta``; seeds:
    E[Delta theta^2], s)."""

    step: Any
    mean_sq: Any
    mean_sq_delta: Any


class AdamState(NamedTuple):
    """``m``: moving average of g (torch: ``exp_avg``); ``v``: of g^2 (torch: ``exp_avg_sq``)."""

    step: Any
    m: Any
    v: Any


class NadamState(NamedTuple):
    """As ``AdamState``, plus ``mu_product``: the product mu_1 ... mu_t of the momentum
    coefficients used so far (torch: ``mu_product``). A scalar (float, or a 0-d tensor when
    ``step`` is one), 1.0 after ``init``; with the default constant schedule it is beta1**t."""

    step: Any
    m: Any
    v: Any
    mu_product: Any


# ---------------------------------------------------------------------------------------------
# Validation helpers.

_DECAY_RATES = ("beta", "beta1", "beta2", "rho")
_FLAGS = ("ema", "eps_inside_sqrt", "check_finite")


def _require_real(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")


def _require_hyperparameter(name: str, value) -> None:
    """Check one constructor argument by its name: lr > 0, decay rates in [0, 1), eps >= 0."""
    if name in _FLAGS:
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {value!r}")
    elif name == "lr":
        _require_real(value, name)
        if value <= 0:
            raise ValueError(f"lr must be > 0, got {value}")
    elif name in _DECAY_RATES:
        _require_real(value, name)
        if not 0 <= value < 1:
            raise ValueError(f"{name} must lie in [0, 1), got {value}")
    elif name == "weight_decay":
        _require_real(value, name)
        if value < 0:
            raise ValueError(f"weight_decay must be >= 0, got {value}")
    elif name in ("eps", "momentum_decay"):
        if name == "momentum_decay" and value is None:
            return
        _require_real(value, name)
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    else:  # pragma: no cover - a new hyper-parameter must get a rule here
        raise AssertionError(f"no validation rule for hyper-parameter {name!r}")


def _kind(x) -> str:
    return "a torch tensor" if arrays.is_tensor(x) else "a numpy array"


def _as_array(x):
    """numpy arrays and tensors pass through; anything else (list, float) becomes a numpy array."""
    return x if arrays.is_tensor(x) else np.asarray(x)


def _require_like(theta, x, name: str) -> None:
    """``x`` must be the same kind (numpy/torch), dtype, shape and device as ``theta``."""
    if arrays.is_tensor(x) != arrays.is_tensor(theta):
        raise TypeError(
            f"{name} is {_kind(x)} but theta is {_kind(theta)}; pass both as the same kind"
        )
    arrays.require_floating(x, name)
    if x.dtype != theta.dtype:
        raise TypeError(
            f"dtype mismatch: theta has dtype {theta.dtype} but {name} has dtype {x.dtype}"
        )
    arrays.require_same_shape(theta, x, "theta", name)
    if arrays.is_tensor(x) and x.device != theta.device:
        raise ValueError(
            f"device mismatch: theta is on {theta.device} but {name} is on {x.device}"
        )


def _rms(mean_sq, eps, inside: bool):
    """The denominator of the adaptive rules: ``sqrt(s) + eps`` (torch) or ``sqrt(s + eps)``."""
    xp = arrays.namespace(mean_sq)
    return xp.sqrt(mean_sq + eps) if inside else xp.sqrt(mean_sq) + eps


# ---------------------------------------------------------------------------------------------
# The contract shared by every rule.


@dataclass(frozen=True)
class Rule:
    """Base class of the rules: validation, ``init`` and ``step``.

    A rule defines ``State`` (its NamedTuple, first field ``step``), ``update`` (the formula)
    and, when its state holds scalars besides ``step``, ``scalar_fields`` (name, initial value)
    pairs; ``array_fields`` lists the other fields, arrays shaped like theta. Hyper-parameters
    are validated at construction by name (``lr > 0``, decay rates in [0, 1), ``eps >= 0``).

    ``check_finite`` (keyword-only, every rule): also reject NaN/inf gradients given as torch
    tensors (numpy gradients are always checked). Off by default because reading the result
    back from a GPU synchronises the device.
    """

    State: ClassVar[type] = GDState
    # State fields that are scalars, with their value after ``init``; every other field except
    # ``step`` is an array shaped like theta.
    scalar_fields: ClassVar[tuple] = ()

    _: KW_ONLY
    check_finite: bool = False

    def __post_init__(self):
        for field in fields(self):
            _require_hyperparameter(field.name, getattr(self, field.name))

    @property
    def array_fields(self) -> tuple:
        """Names of the state fields that hold arrays shaped like theta."""
        scalars = {name for name, _ in self.scalar_fields}
        return tuple(f for f in self.State._fields[1:] if f not in scalars)

    def init(self, theta):
        """The state before the first step: ``step = 0``, arrays ``zeros_like(theta)``."""
        theta = _as_array(theta)
        arrays.require_floating(theta, "theta")
        xp = arrays.namespace(theta)
        zeros = {name: xp.zeros_like(theta) for name in self.array_fields}
        return self.State(step=0, **zeros, **dict(self.scalar_fields))

    def step(self, theta, grad, state):
        """Validate, then return ``update(theta, grad, state, self.lr)``: ``(theta, state)``."""
        theta = self._checked_theta(theta, state)
        grad = self._checked_grad(theta, grad)
        return self.update(theta, grad, state, self.lr)

    def update(self, theta, grad, state, lr):
        """The formula: ``(theta, state)`` after one step with learning rate ``lr``; pure."""
        raise NotImplementedError(f"{type(self).__name__} must define update")

    def _checked_theta(self, theta, state):
        theta = _as_array(theta)
        arrays.require_floating(theta, "theta")
        if not isinstance(state, self.State):
            raise TypeError(
                f"state must be the {self.State.__name__} returned by "
                f"{type(self).__name__}.init(theta), got {type(state).__name__}"
            )
        for name in self.array_fields:
            _require_like(theta, _as_array(getattr(state, name)), f"state.{name}")
        return theta

    def _checked_grad(self, theta, grad):
        grad = _as_array(grad)
        _require_like(theta, grad, "grad")
        if self.check_finite or not arrays.is_tensor(grad):
            arrays.require_finite(grad, "grad")
        return grad


# ---------------------------------------------------------------------------------------------
# Momentum-free and momentum rules.


@dataclass(frozen=True)
class GD(Rule):
    """Gradient descent (경사 하강법): ``theta = theta - lr * g``.

    Seed 000 eq 13 (batch, 배치), eq 14 (stochastic, 확률적) and eq 15 (mini-batch, 미니 배치):
    one formula, only the data behind ``g`` differs. Seed 001 and seed 002 eq 6-8 write the same.
    torch.optim equivalent: ``SGD(params, lr=lr)`` (momentum 0).
    """

    State: ClassVar[type] = GDState

    lr: float

    def update(self, theta, grad, state, lr):
        """``theta - lr * grad``; the state only counts steps."""
        return theta - lr * grad, GDState(state.step + 1)


def _velocity(beta, ema, velocity, grad):
    """``beta v + g`` (classic) or ``beta v + (1 - beta) g`` (moving average, ``ema``)."""
    return beta * velocity + ((1 - beta) if ema else 1.0) * grad


@dataclass(frozen=True)
class Momentum(Rule):
    """Gradient descent with momentum (모멘텀, heavy ball)::

        ema=False (default):  v = beta * v + g            theta = theta - lr * v
        ema=True:             v = beta * v + (1 - beta) g  theta = theta - lr * v

    ``ema=False`` is torch's ``SGD(lr=lr, momentum=beta)`` (dampening 0) and, with the learning
    rate folded into the velocity (``v_seed = lr * v``), seed 001's ``v_t = gamma v_{t-1} + eta
    grad, theta = theta - v_t`` and seed 002 eq 9. ``ema=True`` is seed 000 eq 16 / Algorithm 4
    (there rho = beta, Delta v = v) and seed 004 (V_dW = beta V_dW + (1 - beta) dW, W -= alpha
    V_dW); unrolled it is seed 000 Lemma 3.1 / eq 17, ``v_t = sum_k (1 - beta) beta^k g_{t-k}``.

    Mapping: ``Momentum(lr, beta, ema=True)`` takes exactly the steps of
    ``Momentum(lr * (1 - beta), beta)`` (its velocity is ``(1 - beta)`` times the classic one):
    the moving-average form only rescales the learning rate. torch's ``dampening=beta`` is the
    ``ema=True`` form except on step 1, where torch's buffer is ``g_1`` rather than
    ``(1 - beta) g_1``; it equals ``ema=True`` started from ``MomentumState(0, g_1)``, and its
    buffer exceeds the ``ema=True`` velocity by ``beta**t g_1`` after t steps.
    ``beta = 0`` gives plain ``GD``.
    """

    State: ClassVar[type] = MomentumState

    lr: float
    beta: float = 0.9
    ema: bool = False

    def update(self, theta, grad, state, lr):
        """One momentum step; see the class docstring for the formula."""
        velocity = _velocity(self.beta, self.ema, state.velocity, grad)
        return theta - lr * velocity, MomentumState(state.step + 1, velocity)


@dataclass(frozen=True)
class Nesterov(Rule):
    """Nesterov accelerated gradient (NAG, 네스테로프 가속 경사), two equivalent forms.

    ``step``/``update``, torch's form (``SGD(lr=lr, momentum=beta, nesterov=True)``), one
    gradient per step, taken at the stored iterate::

        v = beta * v + g               theta = theta - lr * (g + beta * v)

    ``lookahead_step``, the seeds' form (seed 000 eq 21 / Algorithm 5, seed 001 NAG), gradient at
    the look-ahead point ``theta - lr * beta * v``::

        v = beta * v + grad(theta - lr * beta * v)        theta = theta - lr * v

    The two visit the same points: if ``theta`` follows ``lookahead_step``, then
    ``lookahead_point(theta, state) = theta - lr * beta * v`` follows ``step`` (with the same
    velocities). Proof: put ``phi = theta - lr beta v``; then ``phi' = theta' - lr beta v' =
    phi + lr beta v - lr v' - lr beta v' = phi - lr (g + beta v')`` since ``v' = beta v + g``,
    where ``g`` is the gradient at ``phi``: exactly torch's step from ``phi``.

    ``ema=True`` replaces ``g`` by ``(1 - beta) g`` in both forms (``v = beta v + (1 - beta) g``,
    torch form ``theta -= lr ((1 - beta) g + beta v)``): seed 000 eq 21 writes NAG that way (rho =
    beta). As for ``Momentum``, it equals the classic form with learning rate ``lr (1 - beta)``.
    Seed 001 folds the learning rate into the velocity (``v_seed = lr v``, look-ahead point
    ``theta - gamma v_seed``).
    """

    State: ClassVar[type] = NesterovState

    lr: float
    beta: float = 0.9
    ema: bool = False

    def update(self, theta, grad, state, lr):
        """One step of torch's form; see the class docstring."""
        scale = (1 - self.beta) if self.ema else 1.0
        velocity = _velocity(self.beta, self.ema, state.velocity, grad)
        theta = theta - lr * (scale * grad + self.beta * velocity)
        return theta, NesterovState(state.step + 1, velocity)

    def lookahead_point(self, theta, state, lr=None):
        """``theta - lr * beta * v``: where the seeds' form takes its gradient (seed 000
        eq 21's hat theta), and the iterate of torch's form that corresponds to ``theta``."""
        lr = self.lr if lr is None else lr
        return theta - lr * self.beta * state.velocity

    def lookahead_step(self, theta, grad_fn: Callable, state):
        """One step of the seeds' form: ``grad_fn`` is called once, at ``lookahead_point``.

        Validates like ``step`` (the gradient ``grad_fn`` returns is checked as ``grad``) and
        returns ``(theta, state)``; pure.
        """
        theta = self._checked_theta(theta, state)
        grad = self._checked_grad(theta, grad_fn(self.lookahead_point(theta, state)))
        velocity = _velocity(self.beta, self.ema, state.velocity, grad)
        return theta - self.lr * velocity, NesterovState(state.step + 1, velocity)


# ---------------------------------------------------------------------------------------------
# Adaptive rules.


@dataclass(frozen=True)
class Adagrad(Rule):
    """Adagrad (적응적 경사)::

        s = s + g^2                    theta = theta - lr * g / (sqrt(s) + eps)

    Seed 000 eq 22 / Algorithm 6 (s = diag G, G = sum g g^T), seed 001, seed 002 eq 10, seed 003
    8.5.1: all write ``sqrt(s + eps)``, which ``eps_inside_sqrt=True`` gives. torch.optim
    equivalent: ``Adagrad(lr=lr, eps=eps)`` (lr_decay 0, initial_accumulator_value 0). With
    ``eps = 0`` a coordinate whose gradients have all been 0 gets 0/0 = NaN, as in torch.
    """

    State: ClassVar[type] = AdagradState

    lr: float = 1e-2
    eps: float = 1e-10
    _: KW_ONLY
    eps_inside_sqrt: bool = False

    def update(self, theta, grad, state, lr):
        """One Adagrad step; see the class docstring."""
        sum_sq = state.sum_sq + grad * grad
        theta = theta - lr * grad / _rms(sum_sq, self.eps, self.eps_inside_sqrt)
        return theta, AdagradState(state.step + 1, sum_sq)


@dataclass(frozen=True)
class RMSprop(Rule):
    """RMSprop::

        s = beta * s + (1 - beta) * g^2      theta = theta - lr * g / (sqrt(s) + eps)

    Seed 000 eq 23-25 (rho = beta, s = diag G; its Algorithm 7 wrongly keeps Adagrad's sum),
    seed 001 (gamma = beta), seed 002 eq 12-14 (its gamma is 1 - beta), seed 003 8.5.2, seed 004
    (S_dW with beta_2 = beta): all put eps inside the root, which ``eps_inside_sqrt=True`` gives
    (seed 004's handwritten version has no eps at all, i.e. ``eps=0``). torch.optim equivalent:
    ``RMSprop(lr=lr, alpha=beta, eps=eps)`` (momentum 0, centered False).
    """

    State: ClassVar[type] = RMSpropState

    lr: float = 1e-2
    beta: float = 0.99
    eps: float = 1e-8
    _: KW_ONLY
    eps_inside_sqrt: bool = False

    def update(self, theta, grad, state, lr):
        """One RMSprop step; see the class docstring."""
        mean_sq = self.beta * state.mean_sq + (1 - self.beta) * grad * grad
        theta = theta - lr * grad / _rms(mean_sq, self.eps, self.eps_inside_sqrt)
        return theta, RMSpropState(state.step + 1, mean_sq)


@dataclass(frozen=True)
class Adadelta(Rule):
    """Adadelta::

        s = rho * s + (1 - rho) * g^2
        d = sqrt(u + eps) / sqrt(s + eps) * g          (RMS of past updates / RMS of gradients)
        u = rho * u + (1 - rho) * d^2
        theta = theta - lr * d

    Seed 000 eq 32 / Algorithm 8 (whose symbols were lost, see the module docstring), seed 001
    (G = s, s = u, gamma = rho), seed 002 eq 15: they have no learning rate, i.e. ``lr = 1``,
    torch's default. torch.optim equivalent: ``Adadelta(lr=lr, rho=rho, eps=eps)``. ``u``
    averages the unscaled ``d`` (as torch does), so ``lr`` only scales the steps taken. eps sits
    inside both roots in torch, in Zeiler (2012) and in every seed, so there is no
    ``eps_inside_sqrt`` option; eps is not only a guard here: it sets the size of the first
    steps (``sqrt(eps)`` in the numerator while ``u = 0``).
    """

    State: ClassVar[type] = AdadeltaState

    lr: float = 1.0
    rho: float = 0.9
    eps: float = 1e-6

    def update(self, theta, grad, state, lr):
        """One Adadelta step; see the class docstring."""
        xp = arrays.namespace(theta)
        rho, eps = self.rho, self.eps
        mean_sq = rho * state.mean_sq + (1 - rho) * grad * grad
        delta = xp.sqrt(state.mean_sq_delta + eps) / xp.sqrt(mean_sq + eps) * grad
        mean_sq_delta = rho * state.mean_sq_delta + (1 - rho) * delta * delta
        return theta - lr * delta, AdadeltaState(state.step + 1, mean_sq, mean_sq_delta)


def _moments(beta1, beta2, state, grad):
    """Adam's moving averages ``m = beta1 m + (1 - beta1) g``, ``v = beta2 v + (1 - beta2) g^2``."""
    m = beta1 * state.m + (1 - beta1) * grad
    v = beta2 * state.v + (1 - beta2) * grad * grad
    return m, v


@dataclass(frozen=True)
class Adam(Rule):
    """Adam (adaptive moment estimation)::

        m = beta1 * m + (1 - beta1) * g        m^ = m / (1 - beta1^t)
        v = beta2 * v + (1 - beta2) * g^2      v^ = v / (1 - beta2^t)
        theta = theta - lr * m^ / (sqrt(v^) + eps)

    ``t = state.step + 1`` (bias correction, 편향 보정). Seed 000 eq 33-35 / Algorithm 9, seed 001,
    seed 003 8.5.3 (g_t = v), seed 004 (V_dW = m, S_dW = v, alpha = lr): all write
    ``sqrt(v^ + eps)``, which ``eps_inside_sqrt=True`` gives. torch.optim equivalent:
    ``Adam(lr=lr, betas=(beta1, beta2), eps=eps)`` (amsgrad False, weight_decay 0), which puts
    eps outside the root like Kingma & Ba (2015). Note that eps is added to ``sqrt(v^)``, the
    bias-corrected root, in both torch and gdlib.
    """

    State: ClassVar[type] = AdamState

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    _: KW_ONLY
    eps_inside_sqrt: bool = False

    def update(self, theta, grad, state, lr):
        """One Adam step; see the class docstring."""
        t = state.step + 1
        m, v = _moments(self.beta1, self.beta2, state, grad)
        m_hat = m / (1 - self.beta1**t)
        v_hat = v / (1 - self.beta2**t)
        theta = theta - lr * m_hat / _rms(v_hat, self.eps, self.eps_inside_sqrt)
        return theta, AdamState(t, m, v)


@dataclass(frozen=True)
class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, "Decoupled Weight Decay
    Regularization", ICLR 2019)::

        theta = theta - lr * weight_decay * theta                  (decay: shrink theta)
        m, v, m^, v^ as in Adam
        theta = theta - lr * m^ / (sqrt(v^) + eps)                 (the Adam step)

    i.e. ``theta_t = (1 - lr * weight_decay) theta_{t-1} - lr m^ / (sqrt(v^) + eps)``: the decay
    acts on theta directly and never enters ``m`` or ``v``. torch.optim equivalent:
    ``AdamW(lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)`` (amsgrad False),
    which also scales the decay by the current learning rate. ``weight_decay = 0`` is ``Adam``.

    Contrast with Adam plus an L2 penalty ``weight_decay / 2 |theta|^2`` in the loss (torch's
    ``Adam(weight_decay=...)``): that adds ``weight_decay * theta`` to the *gradient*, which
    then passes through ``m`` and is divided by ``sqrt(v^)``, so coordinates with large
    gradients are barely regularised. In gdlib that is ``Adam`` fed ``g + weight_decay *
    theta``. The seeds do not mention weight decay. ``lr * weight_decay`` should stay well below
    1 (above 1 the decay factor turns negative; torch does not check either).
    """

    weight_decay: float = 1e-2

    def update(self, theta, grad, state, lr):
        """Decay theta by ``1 - lr * weight_decay``, then take Adam's step."""
        return super().update(theta * (1 - lr * self.weight_decay), grad, state, lr)


@dataclass(frozen=True)
class Nadam(Rule):
    """Nadam (Nesterov-accelerated Adam). With moments ``m, v`` as in ``Adam`` and
    ``v^ = v / (1 - beta2^t)``, both forms read::

        theta = theta - lr * [(1 - mu_t) / (1 - P_t) g + mu' / (1 - P') m] / (sqrt(v^) + eps)

    where ``P_t = mu_1 mu_2 ... mu_t`` is ``state.mu_product`` after the step.

    ``momentum_decay=None`` (default), seed 000 eq 42 / Algorithm 10: ``mu_t = mu' = beta1``,
    ``P_t = P' = beta1^t``, i.e.::

        theta = theta - lr * (beta1 * m^ + (1 - beta1) * g / (1 - beta1^t)) / (sqrt(v^) + eps)

    with ``m^ = m / (1 - beta1^t)``. Seed 000 writes ``sqrt(v^ + eps)``; ``eps_inside_sqrt=True``
    gives that literally.

    ``momentum_decay=psi`` (torch uses 0.004) is ``torch.optim.NAdam(lr, betas=(beta1, beta2),
    eps, momentum_decay=psi)``: ``mu_t = beta1 (1 - 0.5 * 0.96^(t psi))``, ``mu' = mu_{t+1}``,
    ``P' = P_t mu_{t+1}``: the momentum term uses *next* step's coefficient and product.

    How eq 42 differs: Dozat (2016), with a constant ``mu = beta1``, weights the momentum term by
    ``beta1 / (1 - beta1^(t+1))`` (the look-ahead product); eq 42 uses ``beta1 / (1 - beta1^t)``,
    the bias correction of the current step, in both terms. The two coincide as t grows (at t=1
    with beta1 = 0.9 the direction is ``1.9 g`` under eq 42 and ``1.47 g`` under Dozat). torch
    (and Keras) run Dozat's algorithm with the warming schedule of his paper, which starts at
    ``mu ~ beta1 / 2`` and approaches beta1 only after thousands of steps (``0.96^(t psi) = 1/2``
    at ``t psi ~ 17``); the average ``m`` itself is still taken with beta1. No finite ``psi``
    makes torch's mu equal to beta1 (in floating point, a ``psi`` so large that ``0.96^(t psi)``
    underflows to 0 does, and then gives Dozat's constant-mu form; ``psi = 0`` gives the
    constant ``mu_t = beta1 / 2``, with ``mu_product`` 0.45, 0.2025, ... for beta1 = 0.9), so
    neither form with ``mu = beta1`` is a torch setting. torch keeps ``mu_product`` as a float32
    scalar tensor unless torch's default dtype is float64; gdlib keeps it in double precision.
    """

    State: ClassVar[type] = NadamState
    scalar_fields: ClassVar[tuple] = (("mu_product", 1.0),)

    lr: float = 2e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    momentum_decay: float | None = None
    _: KW_ONLY
    eps_inside_sqrt: bool = False

    def _mu(self, t):
        """Dozat's momentum schedule (torch's): ``mu_t = beta1 (1 - 0.5 * 0.96^(t psi))``."""
        return self.beta1 * (1.0 - 0.5 * 0.96 ** (t * self.momentum_decay))

    def update(self, theta, grad, state, lr):
        """One Nadam step; see the class docstring."""
        t = state.step + 1
        m, v = _moments(self.beta1, self.beta2, state, grad)
        if self.momentum_decay is None:
            mu = mu_next = self.beta1
            product = product_next = state.mu_product * self.beta1
        else:
            mu, mu_next = self._mu(t), self._mu(t + 1)
            product = state.mu_product * mu
            product_next = product * mu_next
        direction = (1 - mu) / (1 - product) * grad + mu_next / (1 - product_next) * m
        v_hat = v / (1 - self.beta2**t)
        theta = theta - lr * direction / _rms(v_hat, self.eps, self.eps_inside_sqrt)
        return theta, NadamState(t, m, v, product)
