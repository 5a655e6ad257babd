r"""Gadam, genetic-evolutionary Adam (seed 000 §6; Zhang & Gouza 2018, arXiv:1805.07500).

A population of ``g`` unit models (단위 모델) is trained with Adam and evolved by a genetic
algorithm (유전 알고리즘), generation (세대) after generation. With ``k`` the generation and
``L_hat`` losses normalised to [0, 1], one generation reads (seed 000 eqs 43-50)::

    theta_bar_i   = Adam(l(theta_i))                                   eq 43, every unit i
    L_i           = mean loss of theta_bar_i on a validation batch V    eq 44 (fitness, 적합도)
    P(i)          = exp(-L_hat_i) / sum_j exp(-L_hat_j)                eq 45 (selection)
    (i_p, j_p)    ~ P, for p = 1 .. g, with replacement                 parent pairs
    p_ij          = exp(-L_hat_i) / (exp(-L_hat_i) + exp(-L_hat_j))    eq 47
    theta_tilde_p(m) = theta_bar_i(m) if u_m <= p_ij else theta_bar_j(m)   eq 46 (crossover, 교차)
    p_q           = p * (1 - P(i_q) - P(j_q))                          eq 49
    theta_tilde_q(m) = U(0, 1) draw if u'_m <= p_q else theta_tilde_q(m)   eq 48 (mutation, 돌연변이)
    theta_tilde_q = Adam(l(theta_tilde_q))                              children trained too
    G^(k+1)       = best g of {theta_bar} U {theta_tilde} on a fresh shared batch V'   §6.1.4
    stop when |sum L^(k) - sum L^(k+1)| <= lambda, or after K generations   eq 50

The pure operators (``selection_probabilities``, ``select_pairs``, ``crossover``,
``mutation_rates``, ``mutate``, ``next_generation``) take numpy arrays with a
``numpy.random.Generator`` or torch tensors with a ``torch.Generator``; every random number they
use is drawn in a documented order, so a fixed seed gives fixed outputs. ``Gadam`` runs the
algorithm on any torch model, loss and data::

    from gdlib import gadam, optim
    result = gadam.Gadam(model, loss_fn, X, Y, population=8, generations=10, steps=50,
                         batch_size=32, rule=optim.Adam(1e-3), seed=0).run()
    result.model        # a copy of ``model`` holding the best unit's parameters
    result.history      # per-generation losses, selections, crossovers, mutation counts

One device trains the whole population as one batch: the parameters of the ``g`` units are the
rows of one tensor ``(g, d)``, a forward pass evaluates all units at once (``backend="bmm"``,
batched matrix products for ``nn.Sequential`` MLPs; ``"vmap"``, ``torch.func.functional_call``
under ``torch.vmap`` for any other model), one backward pass gives every unit its own gradient
(the units do not interact, so the gradient of the summed loss is each unit's gradient), and
the optimizer rule (``gdlib.optim``, Adam by default) updates the whole ``(g, d)`` tensor in one
call: its formula is elementwise. ``backend="loop"`` evaluates the units one after the other
(a reference for the tests; ``python -m gdlib.gadam_bench`` times the backends).

Distributed (``distributed=True``, seed 000's parallel mode): the units are split over the
processes of a ``torch.distributed`` group in contiguous blocks; each process trains its own
units; the processes communicate only to select and cross over (an ``all_gather`` of the
fitness values and of the parameters, ``O(g d)`` numbers per generation). Every random number
that concerns one unit is drawn from a generator seeded by ``(seed, generation, stage, unit)``
and every shared one from ``(seed, generation, stage)``, so the result does not depend on the
number of processes: a run on 2 processes equals the single-process run with the same seed
(tests/test_gadam.py checks it). ``python -m gdlib.gadam_distributed --help`` runs it under
``torchrun``.

Choices where seed 000 §6 is silent or garbled (the book marks each one):

1. Normalisation (eq 45 asks for L_hat in [0, 1], no method given): ``normalization="minmax"``
   (default) maps the best unit to 0 and the worst to 1, ``(L - min) / (max - min)`` (all 0 when
   the losses are equal); ``"max"`` divides by the largest loss (losses must be >= 0);
   ``"none"`` uses the losses as they are. The softmax is computed stably (largest term
   factored out), so the overflow the seed warns about cannot happen; normalisation matters
   because it fixes the selection pressure: with min-max the best unit is at most ``e`` times
   as likely as the worst. ``temperature`` T divides L_hat in eqs 45 and 47 (T = 1 is the seed).
2. Parent pairs: the seed draws g pairs "with replacement" by P. Here ``i`` and ``j`` are drawn
   by P, ``j`` among the units other than ``i`` (``distinct_parents=True``, default): a unit
   paired with itself makes a copy, and eq 49 is a probability only for distinct parents
   (``P(i) + P(j) <= 1``); with ``distinct_parents=False`` the rate is clipped at 0.
3. Eq 46 writes "rand" twice: one uniform draw per entry decides both indicators (otherwise an
   entry could come from both parents or from neither). Eq 48 likewise.
4. Eq 48 keeps ``theta_bar_q(m)``, a parent's variable (and parent q does not exist: q indexes
   children); the child's own crossed-over entry ``theta_tilde_q(m)`` is meant.
5. Mutation to ``U(0, 1)`` (eq 48) ignores the scale and sign of the weights: a mutated weight of
   a network initialised around 0 with spread 0.1 jumps to a positive value of order 0.5.
   ``mutation="uniform"`` (default, the seed; ``mutation_range`` sets the interval) or
   ``"gaussian"``: ``theta + sigma * N(0, 1)`` (``mutation_scale`` sigma), the small Gaussian
   perturbation of later neuro-evolution work (Such et al. 2017).
6. Index slips: §6.1.1 names the initial generation ``G^(k)`` where ``G^(0)`` is meant, and
   §6.1.4 lists ``M_1^(k+1)`` twice in ``G^(k+1)``; §6.1.2 lets k run over 1..K although
   generation 0 is trained too. Here generations are 0 .. K-1 and ``G^(k+1)`` has units
   ``1 .. g``. §6.1.3 writes ``L_hat_1 in [0, 1] for all i`` (subscript 1 for i).
7. Eq 44 sums the loss over V; the mean is used (the same after normalisation; the threshold
   lambda of eq 50 is then per example). V is drawn from the training set as the seed says
   (``V subset T``) unless ``validation=(X_val, Y_val)`` is given.
8. Adam state: eq 43 writes Adam as a function of the starting point, so every training phase
   starts Adam afresh (m = v = 0, t = 0) from the unit's parameters; a child has no moments to
   inherit anyway. Each phase is ``steps`` Adam steps on mini-batches of ``batch_size`` cut from
   the unit's own random permutations of the training set (seed: "several epochs").
9. Eq 50 compares the summed losses of consecutive generations: ``L^(k)`` are the scores on the
   fresh batch V' with which G^(k) was chosen (G^(0) is scored on a batch of its own). ``tol``
   is lambda; ``None`` (default) runs all ``generations``.
"""

import copy
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from gdlib import arrays, optim

__all__ = [
    "Gadam",
    "GadamResult",
    "History",
    "LandscapePoint",
    "crossover",
    "crossover_probability",
    "init_distributed",
    "mutate",
    "mutation_rates",
    "next_generation",
    "normal_init",
    "normalize_losses",
    "rastrigin",
    "select_pairs",
    "selection_probabilities",
    "stop_criterion",
    "uniform_init",
]

NORMALIZATIONS = ("minmax", "max", "none")
MUTATIONS = ("uniform", "gaussian")
BACKENDS = ("auto", "bmm", "vmap", "loop")


# ---------------------------------------------------------------------------------------------
# Validation helpers.


def _require_int(value, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _require_rate(value, name: str) -> None:
    """A probability: a real number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a rate in [0, 1], got {value!r}")


def _require_positive(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0 \
            or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _require_choice(value, name: str, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _as_array(x):
    return x if arrays.is_tensor(x) else np.asarray(x, dtype=float)


def _require_losses(losses, name: str = "losses"):
    """A 1-D floating array of finite losses (numpy float64 or a tensor)."""
    losses = _as_array(losses)
    arrays.require_floating(losses, name)
    if losses.ndim != 1 or losses.shape[0] < 1:
        raise ValueError(f"{name} must be a 1-D array with one loss per unit model, got shape "
                         f"{tuple(losses.shape)}")
    if not bool(arrays.namespace(losses).isfinite(losses).all()):
        raise ValueError(f"{name} contains NaN or infinity: a unit model diverged (lower the "
                         f"learning rate) or its loss is undefined")
    return losses


# ---------------------------------------------------------------------------------------------
# Random draws: numpy Generator for numpy arrays, torch.Generator for tensors.


def _uniform(rng, shape, like=None):
    """``shape`` draws from U[0, 1): ``rng.random(shape)`` (numpy) or ``torch.rand(shape,
    generator=rng)`` (torch, float64 on the generator's device, then moved like ``like``)."""
    shape = tuple(int(s) for s in shape)
    if isinstance(rng, np.random.Generator):
        return rng.random(shape)
    if isinstance(rng, torch.Generator):
        u = torch.rand(shape, generator=rng, dtype=torch.float64, device=rng.device)
        return u if like is None else u.to(device=like.device)
    raise TypeError(f"rng must be a numpy.random.Generator or a torch.Generator, got "
                    f"{type(rng).__name__}; e.g. numpy.random.default_rng(0)")


def _normal(rng, shape, like=None):
    """``shape`` draws from N(0, 1), as ``_uniform``."""
    shape = tuple(int(s) for s in shape)
    if isinstance(rng, np.random.Generator):
        return rng.standard_normal(shape)
    if isinstance(rng, torch.Generator):
        z = torch.randn(shape, generator=rng, dtype=torch.float64, device=rng.device)
        return z if like is None else z.to(device=like.device)
    raise TypeError(f"rng must be a numpy.random.Generator or a torch.Generator, got "
                    f"{type(rng).__name__}")


def _check_rng_matches(x, rng, name: str) -> None:
    tensor_rng = isinstance(rng, torch.Generator)
    if arrays.is_tensor(x) != tensor_rng and isinstance(rng, (np.random.Generator,
                                                              torch.Generator)):
        want = "torch.Generator" if arrays.is_tensor(x) else "numpy.random.Generator"
        raise TypeError(f"{name} is {'a tensor' if arrays.is_tensor(x) else 'a numpy array'}: "
                        f"pass a {want} as rng")


# ---------------------------------------------------------------------------------------------
# Selection: eqs 44-45.


def normalize_losses(losses, method: str = "minmax"):
    """``L_hat``, the losses mapped to [0, 1] before eq 45 (seed 000 leaves the method open).

    ``"minmax"``: ``(L - min L) / (max L - min L)``, the best unit 0 and the worst 1 (all 0 when
    every loss is equal); ``"max"``: ``L / max L`` (losses must be >= 0; all 0 when max L = 0);
    ``"none"``: ``L`` unchanged (not in [0, 1] in general). Numpy float64 or a tensor, like
    ``losses``.
    """
    _require_choice(method, "normalization", NORMALIZATIONS)
    losses = _require_losses(losses)
    xp = arrays.namespace(losses)
    if method == "none":
        return losses * 1.0
    if method == "max":
        if bool((losses < 0).any()):
            raise ValueError("normalization='max' needs losses >= 0; use 'minmax' for losses "
                             "that can be negative")
        top = losses.max()
        return losses / top if bool(top > 0) else xp.zeros_like(losses)
    low, span = losses.min(), losses.max() - losses.min()
    return (losses - low) / span if bool(span > 0) else xp.zeros_like(losses)


def _softmax_neg(lhat, temperature: float):
    """``exp(-lhat / T) / sum exp(-lhat / T)``, with the largest term factored out."""
    xp = arrays.namespace(lhat)
    z = -lhat / temperature
    w = xp.exp(z - z.max())
    return w / w.sum()


def selection_probabilities(losses, normalization: str = "minmax", temperature: float = 1.0):
    """Eq 45: ``P(i) = exp(-L_hat_i / T) / sum_j exp(-L_hat_j / T)`` with ``L_hat =
    normalize_losses(losses, normalization)`` and T = ``temperature`` (the seed: T = 1).

    ``losses`` (g,) are the fitness losses of eq 44 (lower is fitter). Returns (g,)
    probabilities summing to 1, numpy float64 or a tensor like ``losses``.
    """
    _require_positive(temperature, "temperature")
    return _softmax_neg(normalize_losses(losses, normalization), temperature)


def _require_probabilities(probabilities, name: str = "probabilities"):
    p = _require_losses(probabilities, name)
    if bool((p < 0).any()) or abs(float(p.sum()) - 1.0) > 1e-6:
        raise ValueError(f"{name} must be non-negative and sum to 1 (got sum {float(p.sum())})")
    return p


def _inverse_cdf(weights, u):
    """Index drawn by inverse transform: the number of cumulative weights ``<= u * total``
    in each row of ``weights`` (rows of non-negative weights, (count, g); ``u`` (count,) in
    [0, 1)); never an index of weight 0."""
    if arrays.is_tensor(weights):
        cdf = torch.cumsum(weights, -1)
        index = (cdf <= (u * cdf[:, -1])[:, None]).sum(-1)
        positive = (weights > 0).to(torch.int64)
        last = weights.shape[1] - 1 - torch.flip(positive, (-1,)).argmax(-1)
        return torch.minimum(index, last)
    cdf = np.cumsum(weights, -1)
    index = (cdf <= (u * cdf[:, -1])[:, None]).sum(-1)
    # Rounding can put the target at the very end: take the last unit with positive weight.
    last = weights.shape[1] - 1 - (weights > 0)[:, ::-1].argmax(-1)
    return np.minimum(index, last)


def select_pairs(probabilities, count: int, rng, distinct: bool = True):
    """Draw ``count`` parent pairs ``(i_p, j_p)`` by the selection probabilities (§6.1.3).

    Draws, in this order: ``u = uniform(rng, (count, 2))`` (one call); ``i_p`` is the index
    ``i`` with ``cdf(i - 1) <= u[p, 0] < cdf(i)`` for the cumulative sums ``cdf`` of
    ``probabilities``; ``j_p`` likewise from ``u[p, 1]``, by the probabilities with unit
    ``i_p``'s set to 0 and the others rescaled when ``distinct`` (default), else by the same
    probabilities (``j_p`` may equal ``i_p``). Every pair is drawn independently ("with
    replacement": a unit can parent several children). Returns integer indices (count, 2).
    """
    _require_int(count, "count", 1)
    p = _require_probabilities(probabilities)
    g = p.shape[0]
    if distinct and g < 2:
        raise ValueError("distinct parents need at least 2 unit models")
    u = _uniform(rng, (count, 2), like=p if arrays.is_tensor(p) else None)
    xp = arrays.namespace(p)
    rows = xp.zeros((count, g), dtype=p.dtype) if xp is np else \
        torch.zeros((count, g), dtype=p.dtype, device=p.device)
    rows = rows + p
    i = _inverse_cdf(rows, u[:, 0])
    if distinct:
        if xp is np:
            rows[np.arange(count), i] = 0.0
        else:
            rows = rows.scatter(1, i[:, None], 0.0)
    j = _inverse_cdf(rows, u[:, 1])
    return xp.stack([i, j], -1)


# ---------------------------------------------------------------------------------------------
# Crossover and mutation: eqs 46-49.


def crossover_probability(lhat_i, lhat_j, temperature: float = 1.0):
    """Eq 47: ``p_ij = exp(-L_hat_i / T) / (exp(-L_hat_i / T) + exp(-L_hat_j / T))``, the
    probability that a child's entry comes from parent i; ``= 1 / (1 + exp((L_hat_i -
    L_hat_j) / T))``, below 1/2 when parent i has the larger loss. Scalars or arrays."""
    _require_positive(temperature, "temperature")
    xp = arrays.namespace(lhat_i) if arrays.is_tensor(lhat_i) else np
    difference = (lhat_i - lhat_j) / temperature
    return 1.0 / (1.0 + xp.exp(difference))


def _as_rows(theta, name: str):
    theta = _as_array(theta)
    arrays.require_floating(theta, name)
    return theta


def crossover(theta_i, theta_j, p_ij, rng):
    """Eq 46: the child of parents ``theta_i`` and ``theta_j`` takes entry m from parent i when
    ``u_m <= p_ij`` and from parent j otherwise, with ``u = uniform(rng, theta_i.shape)`` (one
    call, one draw per entry deciding both indicators of eq 46).

    ``theta_i``, ``theta_j``: parameter arrays of one shape (a flat vector, or one row per
    child with ``p_ij`` of shape (rows, 1)); ``p_ij``: eq 47, a scalar or broadcastable array.
    Returns ``(child, from_i)``, ``from_i`` the boolean mask of the entries taken from i.
    """
    theta_i, theta_j = _as_rows(theta_i, "theta_i"), _as_rows(theta_j, "theta_j")
    if arrays.is_tensor(theta_i) != arrays.is_tensor(theta_j):
        raise TypeError("theta_i and theta_j must both be numpy arrays or both tensors")
    arrays.require_same_shape(theta_i, theta_j, "theta_i", "theta_j")
    _check_rng_matches(theta_i, rng, "theta_i")
    xp = arrays.namespace(theta_i)
    if not bool(((p_ij >= 0) & (p_ij <= 1)).all() if hasattr(p_ij, "shape")
                else 0 <= p_ij <= 1):
        raise ValueError(f"p_ij must lie in [0, 1], got {p_ij!r}")
    u = _uniform(rng, theta_i.shape, like=theta_i if xp is torch else None)
    from_i = u <= p_ij
    return xp.where(from_i, theta_i, theta_j), from_i


def mutation_rates(probabilities, pairs, base_rate: float = 0.01):
    """Eq 49: ``p_q = p (1 - P(i_q) - P(j_q))`` for every child q of the pairs ``(i_q, j_q)``
    (``pairs`` (count, 2)), with ``p = base_rate``; fitter parents, fewer mutations. Clipped at
    0 (a negative value needs a pair of one unit with itself, see ``select_pairs``)."""
    _require_rate(base_rate, "base_rate")
    p = _require_probabilities(probabilities)
    xp = arrays.namespace(p)
    rates = base_rate * (1.0 - p[pairs[:, 0]] - p[pairs[:, 1]])
    return xp.maximum(rates, xp.zeros_like(rates))


def mutate(child, rate, rng, kind: str = "uniform", *, low: float = 0.0, high: float = 1.0,
           scale: float = 0.01):
    """Eq 48: each entry m of ``child`` mutates with probability ``rate`` (eq 49).

    Draws, in this order: ``u = uniform(rng, child.shape)`` (entry m mutates when ``u_m <=
    rate``, so rate 0 never mutates), then ``w = uniform(rng, child.shape)`` for
    ``kind="uniform"`` (the mutated entry becomes ``low + (high - low) w_m``, the seed's
    ``U(0, 1)`` by default) or ``z = normal(rng, child.shape)`` for ``kind="gaussian"`` (it
    becomes ``child_m + scale z_m``). The second array is drawn in full whatever the number of
    mutations, so the stream of numbers does not depend on the outcome. ``rate``: a scalar in
    [0, 1] or an array broadcastable to ``child`` (one rate per row).
    Returns ``(mutated child, mutated mask)``.
    """
    _require_choice(kind, "mutation", MUTATIONS)
    child = _as_rows(child, "child")
    _check_rng_matches(child, rng, "child")
    if not bool(((rate >= 0) & (rate <= 1)).all() if hasattr(rate, "shape") else 0 <= rate <= 1):
        raise ValueError(f"rate must lie in [0, 1], got {rate!r}")
    xp = arrays.namespace(child)
    like = child if xp is torch else None
    u = _uniform(rng, child.shape, like)
    hit = u <= rate
    if kind == "uniform":
        if not low < high:
            raise ValueError(f"the mutation range needs low < high, got ({low}, {high})")
        new = low + (high - low) * _uniform(rng, child.shape, like)
    else:
        _require_positive(scale, "mutation_scale")
        new = child + scale * _normal(rng, child.shape, like)
    if xp is torch:
        new = new.to(child.dtype)
    return xp.where(hit, new, child), hit


# ---------------------------------------------------------------------------------------------
# The next generation and the stop criterion: §6.1.4, eq 50.


def next_generation(scores, g: int):
    """Indices of the ``g`` lowest ``scores`` (parents then children on one fresh validation
    batch), best first; ties go to the lower index (a parent before a child)."""
    _require_int(g, "g", 1)
    scores = _require_losses(scores, "scores")
    if g > scores.shape[0]:
        raise ValueError(f"cannot keep {g} of {scores.shape[0]} unit models")
    if arrays.is_tensor(scores):
        return torch.sort(scores, stable=True).indices[:g]
    return np.argsort(scores, kind="stable")[:g]


def stop_criterion(previous, current, tol) -> bool:
    """Eq 50: ``|sum previous - sum current| <= tol`` (False when ``tol`` is None)."""
    if tol is None:
        return False
    return abs(float(np.sum(np.asarray(previous, float)) - np.sum(np.asarray(current, float)))) \
        <= tol


# ---------------------------------------------------------------------------------------------
# Seeds: one generator per (purpose, generation, unit), whatever process holds the unit.

_INIT, _TRAIN_PARENTS, _TRAIN_CHILDREN, _CHILD, _SHARED, _START = range(6)
_STAGES = {"parents": _TRAIN_PARENTS, "children": _TRAIN_CHILDREN}


def _generator(*key: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from ``key`` (non-negative integers) by numpy's
    SeedSequence: independent streams for distinct keys."""
    seed = int(np.random.SeedSequence([int(k) for k in key]).generate_state(2, np.uint64)[0])
    return torch.Generator().manual_seed(seed % (2**63))


# ---------------------------------------------------------------------------------------------
# The population: one (g, d) tensor, each row a unit model's parameters.


@dataclass(frozen=True)
class _Layout:
    """Names, shapes and offsets of a model's parameters inside a flat row of length ``size``."""

    names: tuple
    shapes: tuple
    offsets: tuple
    size: int

    @classmethod
    def of(cls, model: torch.nn.Module) -> "_Layout":
        named = list(model.named_parameters())
        if not named:
            raise ValueError("the model has no parameters to optimise")
        shapes = tuple(tuple(p.shape) for _, p in named)
        sizes = [math.prod(s) for s in shapes]
        offsets = tuple(int(o) for o in np.cumsum([0, *sizes[:-1]]))
        return cls(tuple(n for n, _ in named), shapes, offsets, int(sum(sizes)))

    def views(self, flat: torch.Tensor) -> dict:
        """``{name: (rows, *shape)}`` views into ``flat`` (rows, size)."""
        rows = flat.shape[0]
        return {name: flat[:, o:o + math.prod(s)].reshape(rows, *s)
                for name, s, o in zip(self.names, self.shapes, self.offsets)}

    def flatten(self, model: torch.nn.Module, name: str = "model") -> torch.Tensor:
        """The model's parameters as one row (size,); raises if its parameters differ."""
        named = list(model.named_parameters())
        found = tuple((n, tuple(p.shape)) for n, p in named)
        expected = tuple(zip(self.names, self.shapes))
        if found != expected:
            raise ValueError(f"{name} has parameters {found}, but the population's unit models "
                             f"have {expected}: every unit model needs the same parameter names "
                             f"and shapes")
        return torch.cat([p.detach().reshape(-1).cpu() for _, p in named])

    def load(self, model: torch.nn.Module, row: torch.Tensor) -> None:
        with torch.no_grad():
            for (_, p), view in zip(model.named_parameters(),
                                    self.views(row[None]).values()):
                p.copy_(view[0])


_ELEMENTWISE = (torch.nn.ReLU, torch.nn.Tanh, torch.nn.Sigmoid, torch.nn.GELU, torch.nn.SiLU,
                torch.nn.ELU, torch.nn.LeakyReLU, torch.nn.Softplus, torch.nn.Identity)


def _is_mlp(model) -> bool:
    """True for an ``nn.Sequential`` of ``Linear`` layers and elementwise activations."""
    return isinstance(model, torch.nn.Sequential) and len(model) > 0 and all(
        isinstance(m, (torch.nn.Linear, *_ELEMENTWISE)) for m in model)


def _bmm_forward(model, layout: _Layout):
    """Population forward of an MLP: ``x (rows, b, in)`` through every layer with batched
    matrix products, ``x W^T + bias`` as ``torch.baddbmm`` per Linear layer."""
    linear = {i for i, m in enumerate(model) if isinstance(m, torch.nn.Linear)}

    def forward(params: dict, x):
        for i, module in enumerate(model):
            if i in linear:
                weight = params[f"{i}.weight"]
                bias = params.get(f"{i}.bias")
                x = torch.bmm(x, weight.transpose(1, 2)) if bias is None else \
                    torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
            else:
                x = module(x)
        return x

    return forward


def _vmap_forward(model):
    """Population forward of any model: ``functional_call`` under ``torch.vmap``."""
    base = copy.deepcopy(model)

    def one(params, x):
        return torch.func.functional_call(base, params, (x,))

    batched = torch.vmap(one)
    return lambda params, x: batched(params, x)


def _loop_forward(model):
    """Population forward, one unit after the other (the reference of the tests)."""
    base = copy.deepcopy(model)

    def forward(params, x):
        rows = x.shape[0]
        return torch.stack([torch.func.functional_call(
            base, {k: v[r] for k, v in params.items()}, (x[r],)) for r in range(rows)])

    return forward


def uniform_init(low: float, high: float) -> Callable:
    """``init`` for ``Gadam``: every parameter entry drawn from U(low, high)."""
    if not low < high:
        raise ValueError(f"uniform_init needs low < high, got ({low}, {high})")

    def init(model, generator):
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(low + (high - low) * torch.rand(p.shape, generator=generator,
                                                        dtype=torch.float64))
        return model

    return init


def normal_init(std: float = 1.0) -> Callable:
    """``init`` for ``Gadam``: every entry from N(0, std^2) (seed 000 §6.1.1's example with
    std 1, the standard normal; for a network a std of order 1/sqrt(fan-in) trains better)."""
    _require_positive(std, "std")

    def init(model, generator):
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(std * torch.randn(p.shape, generator=generator, dtype=torch.float64))
        return model

    return init


def _reset_init(model, generator):
    """The modules' own initialisation (``reset_parameters``, PyTorch's default) under a seed
    drawn from ``generator``."""
    resettable = [m for m in model.modules() if hasattr(m, "reset_parameters")]
    if not resettable:
        raise ValueError("init='reset' needs modules with reset_parameters(); pass "
                         "init=gadam.uniform_init(low, high) or gadam.normal_init(std)")
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in resettable:
            m.reset_parameters()
    return model


# ---------------------------------------------------------------------------------------------
# Communication: one process, or a torch.distributed group.


class _Local:
    """One process holds every unit model."""

    rank, world = 0, 1

    def gather(self, rows: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
        return rows


class _Distributed:
    """``all_gather`` over the default ``torch.distributed`` group (gloo: CPU tensors; nccl:
    CUDA tensors). Blocks of unequal length are padded to the longest and cut back."""

    def __init__(self):
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("distributed=True needs an initialised torch.distributed process "
                               "group: start the script with torchrun and call "
                               "gadam.init_distributed() first")
        self.dist = dist
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.device = torch.device("cuda", torch.cuda.current_device()) \
            if dist.get_backend() == "nccl" else torch.device("cpu")

    def gather(self, rows: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
        longest = max(counts)
        padded = torch.zeros((longest, *rows.shape[1:]), dtype=rows.dtype, device=self.device)
        padded[: rows.shape[0]] = rows.to(self.device)
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        self.dist.all_gather(parts, padded)
        return torch.cat([part[:n] for part, n in zip(parts, counts)]).to(rows.device)


def init_distributed(backend: str | None = None):
    """Initialise the default process group from torchrun's environment (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``): gloo on CPU, nccl when CUDA is present
    (``backend`` overrides). Returns ``(rank, world_size)``."""
    import torch.distributed as dist

    if not dist.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(__import__("os").environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def _blocks(g: int, world: int) -> list:
    """Contiguous blocks of unit indices, one per process (sizes differ by at most 1)."""
    return [block.tolist() for block in np.array_split(np.arange(g), world)]


# ---------------------------------------------------------------------------------------------
# History and result.


@dataclass
class History:
    """What a Gadam run records, one entry per generation k = 0 .. K-1 (numpy arrays).

    ``initial_losses`` (g,): G^(0) scored before any training. Per generation:
    ``train_losses`` (K, g, steps): the mini-batch losses of the parents' Adam steps (eq 43);
    ``fitness`` (K, g): eq 44 on the validation batch V; ``normalized`` (K, g): L_hat;
    ``probabilities`` (K, g): eq 45; ``pairs`` (K, g, 2): the parents (i_p, j_p) of child p;
    ``crossover_p`` (K, g): eq 47; ``inherited`` (K, g): entries child p took from parent i;
    ``mutation_rates`` (K, g): eq 49; ``mutations`` (K, g): entries mutated (eq 48);
    ``child_train_losses`` (K, g, steps); ``rescored`` (K, 2g): parents 0..g-1 and children
    g..2g-1 on the fresh batch V'; ``survivors`` (K, g): indices into that union, best first;
    ``generation_losses`` (K, g): the scores of G^(k+1) (eq 50 compares their sums);
    ``gradient_evaluations`` (K,): mini-batch gradients computed so far (one per unit and Adam
    step); ``stopped``: ``"budget"`` or ``"tol"`` (eq 50). ``snapshots``: when recorded, per
    generation the (g, d) parameters ``start`` (G^(k)), ``trained`` (G_bar^(k)), ``children``
    (after crossover and mutation), ``children_trained`` and, with ``record="steps"``, the
    Adam paths ``parent_paths`` / ``child_paths`` (g, steps + 1, d).
    """

    initial_losses: np.ndarray = None
    train_losses: list = field(default_factory=list)
    fitness: list = field(default_factory=list)
    normalized: list = field(default_factory=list)
    probabilities: list = field(default_factory=list)
    pairs: list = field(default_factory=list)
    crossover_p: list = field(default_factory=list)
    inherited: list = field(default_factory=list)
    mutation_rates: list = field(default_factory=list)
    mutations: list = field(default_factory=list)
    child_train_losses: list = field(default_factory=list)
    rescored: list = field(default_factory=list)
    survivors: list = field(default_factory=list)
    generation_losses: list = field(default_factory=list)
    gradient_evaluations: list = field(default_factory=list)
    snapshots: list = field(default_factory=list)
    stopped: str = "budget"
    parameters: int = 0

    _ARRAYS = ("train_losses", "fitness", "normalized", "probabilities", "pairs", "crossover_p",
               "inherited", "mutation_rates", "mutations", "child_train_losses", "rescored",
               "survivors", "generation_losses", "gradient_evaluations")

    def finish(self) -> "History":
        for name in self._ARRAYS:
            setattr(self, name, np.array(getattr(self, name)))
        return self

    @property
    def generations(self) -> int:
        return len(self.fitness)

    @property
    def best_loss(self) -> float:
        """The best unit's score in the last generation (on its fresh validation batch)."""
        last = self.generation_losses[-1] if len(self.generation_losses) else self.initial_losses
        return float(np.min(last))

    def children_kept(self) -> np.ndarray:
        """(K,): how many children entered the next generation."""
        return (np.asarray(self.survivors) >= np.asarray(self.fitness).shape[1]).sum(-1)


@dataclass
class GadamResult:
    """``model``: a copy of the model with the best unit's parameters; ``history``; ``best``
    (d,): that unit's flat parameter vector; ``population`` (g, d): the last generation."""

    model: torch.nn.Module
    history: History
    best: torch.Tensor
    population: torch.Tensor


# ---------------------------------------------------------------------------------------------
# Gadam.


class Gadam:
    """Gadam on a torch ``model``, a loss and data (seed 000 §6; see the module docstring).

    ``loss_fn(output, target)`` returns one loss per example (e.g.
    ``gdlib.losses.softmax_cross_entropy`` or ``F.cross_entropy(..., reduction="none")``: the
    fast path, all units in one call) or the batch's mean loss (a 0-d tensor, e.g.
    ``F.cross_entropy``; then it must work under ``torch.vmap``); a unit's loss is the mean. ``X`` (n, ...) and ``Y`` (n, ...) are the training set
    ``T``; ``validation=(X_val, Y_val)`` gives the set the validation batches V are drawn from
    (default: ``T``, as the seed).

    Parameters: ``population`` g >= 2; ``generations`` K; ``steps``: Adam steps per training
    phase (parents, then children: ``2 g steps`` mini-batch gradients per generation);
    ``batch_size`` b; ``validation_size``: examples in V (without replacement; the whole set if
    larger); ``rule``: a ``gdlib.optim`` rule (default ``Adam(1e-3)``); ``mutation_rate``: the
    base rate p of eq 49, in [0, 1]; ``mutation``: ``"uniform"`` (the seed's U(0, 1), interval
    ``mutation_range``) or ``"gaussian"`` (``theta + mutation_scale * N(0, 1)``);
    ``normalization``, ``temperature``, ``distinct_parents``: see the module docstring;
    ``tol``: lambda of eq 50 (None: no early stop); ``init``: ``"reset"`` (every unit
    re-initialised by the modules' ``reset_parameters`` under its own seed), a callable
    ``init(model, generator) -> model`` (``uniform_init``, ``normal_init``), or a list of g
    models (the initial population itself; their parameter shapes must agree);
    ``backend``: ``"auto"`` (``"bmm"`` for MLPs, else ``"vmap"``), ``"bmm"``, ``"vmap"``,
    ``"loop"``; ``seed``; ``record``: ``"none"``, ``"generations"`` (parameter snapshots) or
    ``"steps"`` (also every Adam step; for small models); ``distributed``: spread the units over
    the processes of the initialised ``torch.distributed`` group.

    Raises ``ValueError`` for g < 2, a rate outside [0, 1], unit models whose parameters differ,
    and a non-finite loss (naming the unit, generation and phase).
    """

    def __init__(self, model: torch.nn.Module, loss_fn: Callable, X, Y, *, population: int = 8,
                 generations: int = 10, steps: int = 50, batch_size: int = 32,
                 validation_size: int = 256, validation=None, rule=None,
                 mutation_rate: float = 0.01, mutation: str = "uniform",
                 mutation_range: tuple = (0.0, 1.0), mutation_scale: float = 0.01,
                 normalization: str = "minmax", temperature: float = 1.0,
                 distinct_parents: bool = True, tol: float | None = None, init="reset",
                 backend: str = "auto", seed: int = 0, record: str = "none",
                 distributed: bool = False):
        _require_int(population, "population (g, the number of unit models)", 2)
        _require_int(generations, "generations", 1)
        _require_int(steps, "steps", 0)
        _require_int(batch_size, "batch_size", 1)
        _require_int(validation_size, "validation_size", 1)
        _require_int(seed, "seed", 0)
        _require_rate(mutation_rate, "mutation_rate")
        _require_choice(mutation, "mutation", MUTATIONS)
        _require_choice(normalization, "normalization", NORMALIZATIONS)
        _require_choice(backend, "backend", BACKENDS)
        _require_choice(record, "record", ("none", "generations", "steps"))
        _require_positive(temperature, "temperature")
        _require_positive(mutation_scale, "mutation_scale")
        low, high = mutation_range
        if not low < high:
            raise ValueError(f"mutation_range needs low < high, got {mutation_range!r}")
        if tol is not None:
            _require_real_nonnegative(tol, "tol")
        self.rule = optim.Adam(1e-3) if rule is None else rule
        if not isinstance(self.rule, optim.Rule):
            raise TypeError(f"rule must be a gdlib.optim rule (e.g. optim.Adam(1e-3)), got "
                            f"{type(self.rule).__name__}")
        if any(True for _ in model.buffers()):
            raise ValueError("models with buffers (e.g. BatchNorm's running statistics) are not "
                             "supported: the population would share them")
        self.model, self.loss_fn = model, loss_fn
        self.layout = _Layout.of(model)
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.X, self.Y = _data(X, Y, self.device, "X", "Y")
        if validation is None:
            self.X_val, self.Y_val = self.X, self.Y
        else:
            self.X_val, self.Y_val = _data(*validation, self.device, "X_val", "Y_val")
        if batch_size > self.X.shape[0]:
            raise ValueError(f"batch_size {batch_size} exceeds the {self.X.shape[0]} training "
                             "examples")
        self.g, self.K, self.steps, self.b = population, generations, steps, batch_size
        self.validation_size = min(validation_size, self.X_val.shape[0])
        self.mutation_rate, self.mutation = mutation_rate, mutation
        self.mutation_range, self.mutation_scale = (float(low), float(high)), mutation_scale
        self.normalization, self.temperature = normalization, temperature
        self.distinct_parents, self.tol, self.seed, self.record = \
            distinct_parents, tol, seed, record
        self.init = init
        if not (init == "reset" or callable(init) or isinstance(init, (list, tuple))):
            raise ValueError("init must be 'reset', a callable init(model, generator) or a "
                             "list of g models")
        if isinstance(init, (list, tuple)) and len(init) != population:
            raise ValueError(f"init holds {len(init)} models but population is {population}")
        self.backend = ("bmm" if _is_mlp(model) else "vmap") if backend == "auto" else backend
        if self.backend == "bmm" and not _is_mlp(model):
            raise ValueError("backend='bmm' needs an nn.Sequential of Linear layers and "
                             "elementwise activations; use backend='vmap'")
        self._forward = {"bmm": lambda: _bmm_forward(model, self.layout),
                         "vmap": lambda: _vmap_forward(model),
                         "loop": lambda: _loop_forward(model)}[self.backend]()
        self._unit_loss = _unit_loss(model, loss_fn, self.X, self.Y, self.backend)
        self.comm = _Distributed() if distributed else _Local()
        if self.g < self.comm.world:
            raise ValueError(f"population {self.g} is smaller than the {self.comm.world} "
                             "processes: every process needs a unit model")
        self.blocks = _blocks(self.g, self.comm.world)
        self.mine = self.blocks[self.comm.rank]
        self.counts = [len(b) for b in self.blocks]

    # -- pieces ------------------------------------------------------------------------------

    def initial_population(self) -> torch.Tensor:
        """This process's rows of G^(0): unit u initialised from generator (seed, init, u)."""
        rows = []
        for u in self.mine:
            if isinstance(self.init, (list, tuple)):
                rows.append(self.layout.flatten(self.init[u], f"init[{u}]"))
                continue
            unit = copy.deepcopy(self.model).cpu()  # drawn on the CPU: the same on any device
            make = _reset_init if self.init == "reset" else self.init
            unit = make(unit, _generator(self.seed, _INIT, u))
            rows.append(self.layout.flatten(unit, "the initialised unit model"))
        return torch.stack(rows).to(device=self.device, dtype=self.dtype)

    def batches(self, units: Sequence[int], generation: int, stage: int) -> torch.Tensor:
        """Mini-batch indices (rows, steps, b) for ``units``: consecutive slices of each unit's
        own random permutations of the training set (generator (seed, stage, k, u))."""
        n, per_epoch = self.X.shape[0], self.X.shape[0] // self.b
        epochs = max(1, math.ceil(self.steps / per_epoch))
        out = []
        for u in units:
            gen = _generator(self.seed, stage, generation, u)
            perms = torch.stack([torch.randperm(n, generator=gen) for _ in range(epochs)])
            out.append(perms[:, : per_epoch * self.b].reshape(-1, self.b)[: self.steps])
        return torch.stack(out).to(self.device)

    def unit_losses(self, flat: torch.Tensor, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """(rows,) mean losses of the units (rows of ``flat``) on their batches ``X`` (rows, b,
        ...), ``Y`` (rows, b, ...)."""
        return self._unit_loss(self._forward(self.layout.views(flat), X), Y)

    def train(self, flat: torch.Tensor, units: Sequence[int] | None = None, generation: int = 0,
              stage: str = "parents", paths: list | None = None,
              on_step: Callable | None = None):
        """Eq 43: ``steps`` steps of the rule from a fresh state for the rows of ``flat`` (units
        ``units``, default this process's), every unit on its own mini-batches (``stage``
        ``"parents"`` or ``"children"`` selects the random stream). Returns ``(flat, losses
        (rows, steps))``; ``paths`` (a list) receives the start and the parameters after every
        step; ``on_step(t, flat)`` is called after step t = 1 .. steps."""
        _require_choice(stage, "stage", tuple(_STAGES))
        units = self.mine if units is None else list(units)
        stage = _STAGES[stage]
        index = self.batches(units, generation, stage)
        state = self.rule.init(flat)
        losses = []
        if paths is not None:
            paths.append(flat.detach().cpu())
        for t in range(self.steps):
            current = flat.detach().requires_grad_(True)
            batch = index[:, t]
            loss = self.unit_losses(current, self.X[batch], self.Y[batch])
            (grad,) = torch.autograd.grad(loss.sum(), current)
            flat, state = self.rule.update(current.detach(), grad, state, self.rule.lr)
            losses.append(loss.detach())
            if paths is not None:
                paths.append(flat.detach().cpu())
            if on_step is not None:
                on_step(t + 1, flat.detach())
        losses = torch.stack(losses, 1) if losses else flat.new_zeros((flat.shape[0], 0))
        self._require_finite(losses, units, generation, "Adam training " +
                             ("of the parents" if stage == _TRAIN_PARENTS else "of the children"))
        return flat.detach(), losses

    def validation_batch(self, generation: int, which: int) -> torch.Tensor:
        """Indices of a validation batch shared by all units (generator (seed, shared, k,
        which)), drawn without replacement."""
        gen = _generator(self.seed, _SHARED, generation, which)
        return torch.randperm(self.X_val.shape[0], generator=gen)[: self.validation_size]

    def score(self, flat: torch.Tensor, batch: torch.Tensor, units=None, generation: int = 0,
              what: str = "fitness (eq 44)"):
        """Eq 44: the mean loss of every row of ``flat`` (units ``units``, default this
        process's) on the shared validation batch ``batch`` (indices), gathered over the
        processes: (g,) float64 on the CPU. ``generation`` and ``what`` name the step in the
        error raised for a non-finite loss."""
        units = self.mine if units is None else list(units)
        rows = flat.shape[0]
        Xv = self.X_val[batch.to(self.device)]
        Yv = self.Y_val[batch.to(self.device)]
        with torch.no_grad():
            local = self.unit_losses(flat, Xv.expand(rows, *Xv.shape),
                                     Yv.expand(rows, *Yv.shape))
        self._require_finite(local[:, None], units, generation, what)
        return self.comm.gather(local.to(torch.float64), self.counts).cpu()

    def _require_finite(self, losses, units, generation, what: str) -> None:
        bad = ~torch.isfinite(losses)
        if bool(bad.any()):
            where_bad = torch.nonzero(bad)
            row, step = (int(i) for i in where_bad[torch.argmin(where_bad[:, 1])])
            where = f" at step {step + 1}" if losses.shape[1] > 1 else ""
            raise ValueError(f"non-finite loss ({float(losses[row, step])}) of unit model "
                             f"{units[row]} in generation {generation}, {what}{where}: lower the "
                             "learning rate or check the data and the loss function")

    def children(self, parents: torch.Tensor, lhat: torch.Tensor, probabilities: torch.Tensor,
                 pairs: torch.Tensor, generation: int):
        """Eqs 46-49 for this process's children: child p crosses parents ``pairs[p]`` of the
        gathered ``parents`` (g, d) and mutates, with generator (seed, child, k, p)."""
        rows, from_i, hits = [], [], []
        p_ij = crossover_probability(lhat[pairs[:, 0]], lhat[pairs[:, 1]], self.temperature)
        rates = mutation_rates(probabilities, pairs, self.mutation_rate)
        for p in self.mine:
            gen = _generator(self.seed, _CHILD, generation, p)
            i, j = int(pairs[p, 0]), int(pairs[p, 1])
            child, mask = crossover(parents[i], parents[j], float(p_ij[p]), gen)
            child, hit = mutate(child, float(rates[p]), gen, self.mutation,
                                low=self.mutation_range[0], high=self.mutation_range[1],
                                scale=self.mutation_scale)
            rows.append(child)
            from_i.append(mask.sum())
            hits.append(hit.sum())
        counts = torch.stack([torch.stack(from_i), torch.stack(hits)], 1).to(torch.float64)
        counts = self.comm.gather(counts, self.counts).cpu()
        return torch.stack(rows), p_ij, rates, counts[:, 0].long(), counts[:, 1].long()

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> GadamResult:
        """Run the generations; every process returns the same result."""
        history = History(parameters=self.layout.size)
        flat = self.initial_population()
        previous = self.score(flat, self.validation_batch(0, _START), self.mine, 0,
                              "the initial population")
        history.initial_losses = previous.numpy()
        evaluations = 0
        for k in range(self.K):
            snap = {} if self.record != "none" else None
            if snap is not None:
                snap["start"] = self.comm.gather(flat, self.counts).cpu()
            parent_paths = [] if self.record == "steps" else None
            flat, losses = self.train(flat, self.mine, k, "parents", parent_paths)
            fitness = self.score(flat, self.validation_batch(k, 0), self.mine, k,
                                 "fitness (eq 44)")
            lhat = normalize_losses(fitness, self.normalization)
            probabilities = _softmax_neg(lhat, self.temperature)
            pairs = select_pairs(probabilities, self.g, _generator(self.seed, _SHARED, k, 1),
                                 self.distinct_parents)
            parents = self.comm.gather(flat, self.counts)  # communication: selection, crossover
            kids, p_ij, rates, inherited, mutations = self.children(parents, lhat,
                                                                   probabilities, pairs, k)
            if snap is not None:
                snap["trained"] = parents.cpu()
                snap["children"] = self.comm.gather(kids, self.counts).cpu()
            child_paths = [] if self.record == "steps" else None
            kids, child_losses = self.train(kids, self.mine, k, "children", child_paths)
            batch = self.validation_batch(k, 2)
            rescored = torch.cat([self.score(flat, batch, self.mine, k, "re-scoring (§6.1.4)"),
                                  self.score(kids, batch, self.mine, k, "re-scoring (§6.1.4)")])
            survivors = next_generation(rescored, self.g)
            union = torch.cat([parents, self.comm.gather(kids, self.counts)])
            flat = union[survivors[self.mine].to(union.device)].clone()
            evaluations += 2 * self.g * self.steps
            if snap is not None:
                snap["children_trained"] = union[self.g:].cpu()
                if self.record == "steps":
                    snap["parent_paths"] = self._paths(parent_paths)
                    snap["child_paths"] = self._paths(child_paths)
                history.snapshots.append(snap)
            current = rescored[survivors]
            history.train_losses.append(self._gathered(losses))
            history.child_train_losses.append(self._gathered(child_losses))
            for name, value in (("fitness", fitness), ("normalized", lhat),
                                ("probabilities", probabilities), ("pairs", pairs),
                                ("crossover_p", p_ij), ("inherited", inherited),
                                ("mutation_rates", rates), ("mutations", mutations),
                                ("rescored", rescored), ("survivors", survivors),
                                ("generation_losses", current)):
                getattr(history, name).append(value.cpu().numpy())
            history.gradient_evaluations.append(evaluations)
            if stop_criterion(previous, current, self.tol):
                history.stopped = "tol"
                break
            previous = current
        population = self.comm.gather(flat, self.counts)
        best = population[0].detach().clone()  # survivors are sorted: row 0 is the best
        model = copy.deepcopy(self.model)
        self.layout.load(model, best)
        return GadamResult(model, history.finish(), best, population.detach())

    def _gathered(self, losses: torch.Tensor) -> np.ndarray:
        return self.comm.gather(losses.to(torch.float64), self.counts).cpu().numpy()

    def _paths(self, paths: list) -> torch.Tensor:
        """(g, steps + 1, d) from the recorded (rows, d) tensors of this process's units."""
        local = torch.stack(paths, 1)
        return self.comm.gather(local, self.counts).cpu()


def _unit_loss(model, loss_fn, X, Y, backend: str) -> Callable:
    """``(output (rows, b, ...), target (rows, b, ...)) -> (rows,)`` mean losses per unit.

    ``loss_fn`` is probed on two examples: one loss per example (shape (2,)) is computed for
    all units at once on the flattened batch and averaged per unit (fast); a 0-d mean is
    evaluated per unit under ``torch.vmap`` (one unit after the other for ``backend="loop"``).
    """
    with torch.no_grad():
        probe = loss_fn(model(X[:2]), Y[:2])
    if not isinstance(probe, torch.Tensor) or tuple(probe.shape) not in ((), (len(X[:2]),)):
        raise ValueError("loss_fn(output, target) must return a 0-d tensor (the batch's mean "
                         f"loss) or one loss per example; on 2 examples it returned "
                         f"{getattr(probe, 'shape', type(probe).__name__)}")
    if probe.ndim == 1:
        def per_example(out, y):
            rows, b = out.shape[:2]
            return loss_fn(out.flatten(0, 1), y.flatten(0, 1)).reshape(rows, b).mean(1)

        return per_example
    if backend == "loop":
        return lambda out, y: torch.stack([loss_fn(o, t) for o, t in zip(out, y)])
    return torch.vmap(loss_fn)


def _require_real_nonnegative(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")


def _data(X, Y, device, name_x: str, name_y: str):
    X, Y = torch.as_tensor(X), torch.as_tensor(Y)
    if X.ndim == 0 or Y.ndim == 0 or X.shape[0] != Y.shape[0] or X.shape[0] < 1:
        raise ValueError(f"{name_x} and {name_y} must hold the same number (>= 1) of examples "
                         f"along axis 0, got shapes {tuple(X.shape)} and {tuple(Y.shape)}")
    return X.to(device), Y.to(device)


# ---------------------------------------------------------------------------------------------
# A 2-D landscape as a "model": the population of points on a function with many minima.


class LandscapePoint(torch.nn.Module):
    """A model whose only parameter is a point ``theta`` (2,) of a landscape ``f`` (a
    ``gdlib.functions.Landscape``) and whose output is ``f(theta)``, once per input row: with
    ``loss_fn = lambda out, y: out.mean()`` Gadam minimises ``f`` (the data are a dummy)."""

    def __init__(self, f, theta=(0.0, 0.0)):
        super().__init__()
        self.f = f
        self.theta = torch.nn.Parameter(torch.tensor(theta, dtype=torch.float64))

    def forward(self, x):
        return self.f.value(self.theta).expand(x.shape[0])


def rastrigin(a: float = 10.0, center=(0.0, 0.0), angle: float = 0.0):
    """Rastrigin's function on 2-D, ``f = 2a + sum_i (u_i^2 - a cos(2 pi u_i))`` with ``u =
    R(angle) (theta - center)``, as a ``gdlib.functions.Landscape``: a bowl covered by a grid
    of local minima, the global minimum ``f(center) = 0``. With ``angle = 0`` it is separable
    (a sum of one function per coordinate), which favours a crossover that swaps coordinates;
    a rotation removes that. Box [-5.12, 5.12]^2 as usual."""
    from gdlib.functions import Landscape

    two_pi = 2 * math.pi
    c, s = math.cos(angle), math.sin(angle)
    cx, cy = (float(v) for v in center)

    def parts(x, y, xp):
        dx, dy = x - cx, y - cy
        u, v = c * dx + s * dy, -s * dx + c * dy
        value = 2 * a + u**2 - a * xp.cos(two_pi * u) + v**2 - a * xp.cos(two_pi * v)
        f_u = 2 * u + a * two_pi * xp.sin(two_pi * u)
        f_v = 2 * v + a * two_pi * xp.sin(two_pi * v)
        h_u = 2 + a * two_pi**2 * xp.cos(two_pi * u)
        h_v = 2 + a * two_pi**2 * xp.cos(two_pi * v)
        gradient = (c * f_u - s * f_v, s * f_u + c * f_v)
        hessian = (c * c * h_u + s * s * h_v, c * s * (h_u - h_v), s * s * h_u + c * c * h_v)
        return value, gradient, hessian

    name = f"Rastrigin (a={a:g})" + (f" rotated by {angle:.3g}" if angle else "")
    return Landscape(name, parts, (cx, cy), 0.0, ((-5.12, 5.12), (-5.12, 5.12)), (3.5, 3.5))
