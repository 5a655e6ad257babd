"""Tests of gdlib.optim: torch.optim parity, seed formulas, convention mappings, purity, errors.

Parity is checked step by step: at every step gdlib and the reference (torch.optim or a direct
transcription of a seed's equations, written below) receive the same iterate and the same
gradient (the reference's), each carries its own state, and the new iterates and the states must
agree to 1e-12 relative (max-norm). Feeding the same inputs keeps the comparison meaningful over
1000 steps: free-running trajectories of adaptive rules amplify last-bit rounding differences
near a minimum, so those are compared over a short horizon only. All arithmetic is float64.
"""

from dataclasses import dataclass

import numpy as np
import pytest

from gdlib import optim

torch = pytest.importorskip("torch")

RTOL = 1e-12
STEPS = 1000
FREE_STEPS = 50
DIM = 20


@pytest.fixture(autouse=True, scope="module")
def _float64_torch():
    """torch keeps NAdam's mu_product (and step counters) in the default dtype: make it float64."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def to_numpy(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x, dtype=float)


def assert_close(actual, expected, what):
    """``max|actual - expected| <= RTOL * max|expected|`` (NaN fails)."""
    actual, expected = to_numpy(actual), to_numpy(expected)
    assert actual.shape == expected.shape, (
        f"{what}: shape {actual.shape} != {expected.shape}"
    )
    if actual.size == 0:
        return
    error = float(np.abs(actual - expected).max())
    scale = float(np.abs(expected).max())
    assert error <= RTOL * scale, (
        f"{what}: max difference {error:.3e} > {RTOL:g} * {scale:.3e}"
    )


# ---------------------------------------------------------------------------------------------
# Objectives: an ill-conditioned quadratic (minimum at the origin, so the iterate's size tracks
# the step's size and a relative comparison of iterates sees every term of the step) and an
# L2-regularised logistic regression on a seeded synthetic data set.


@dataclass
class Objective:
    name: str
    grad: object
    theta0: np.ndarray


def quadratic(dim=DIM, condition=1e3, seed=0):
    """``f = 0.5 theta^T A theta``, eigenvalues of A log-spaced in [1e-2, 10]."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    eigenvalues = np.logspace(1 - np.log10(condition), 1, dim)
    a = (q * eigenvalues) @ q.T
    a = (a + a.T) / 2
    return Objective("quadratic", lambda theta: a @ theta, rng.standard_normal(dim))


def logistic(n=200, dim=DIM, l2=1e-2, seed=1):
    """Mean logistic loss ``log(1 + exp(-y x^T w))``, labels y in {-1, 1}, plus ``l2/2 |w|^2``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim))
    y = np.where(
        x @ rng.standard_normal(dim) + 0.5 * rng.standard_normal(n) > 0, 1.0, -1.0
    )

    def grad(w):
        margins = y * (x @ w)
        weights = 0.5 * (1 - np.tanh(margins / 2))  # sigmoid(-margin), overflow-free
        return -x.T @ (y * weights) / n + l2 * w

    return Objective("logistic", grad, 0.5 * rng.standard_normal(dim))


OBJECTIVES = [quadratic(), logistic()]
OBJECTIVE_IDS = [o.name for o in OBJECTIVES]


# ---------------------------------------------------------------------------------------------
# References. Each has start(theta0), step(theta, g) -> new theta (theta is its own last iterate)
# and state() -> {gdlib state field: expected value}.


class TorchReference:
    """A torch.optim optimizer on one float64 parameter."""

    def __init__(self, factory, state_map):
        self.factory, self.state_map = factory, state_map

    def start(self, theta0):
        self.param = torch.tensor(theta0, dtype=torch.float64, requires_grad=True)
        self.optimizer = self.factory([self.param])

    def step(self, theta, g):
        with torch.no_grad():
            self.param.copy_(torch.from_numpy(theta))
        self.param.grad = torch.from_numpy(g.copy())
        self.optimizer.step()
        return self.param.detach().numpy().copy()

    def state(self):
        return self.state_map(self.optimizer.state[self.param])


def buffer(scale=1.0):
    return lambda s: {"velocity": scale * s["momentum_buffer"]}


def with_step(mapping):
    def state_map(s):
        return {
            "step": s["step"],
            **{ours: s[theirs] for ours, theirs in mapping.items()},
        }

    return state_map


def sgd(lr, **kw):
    return lambda p: torch.optim.SGD(p, lr=lr, **kw)


# (id, gdlib rule, torch factory, map from torch state to gdlib state)
TORCH_CASES = [
    ("gd", optim.GD(0.1), sgd(0.1), lambda s: {}),
    ("gd-large", optim.GD(0.15), sgd(0.15), lambda s: {}),
    ("momentum-0.9", optim.Momentum(0.05, 0.9), sgd(0.05, momentum=0.9), buffer()),
    ("momentum-0.3", optim.Momentum(0.1, 0.3), sgd(0.1, momentum=0.3), buffer()),
    # ema=True is the classic form with the learning rate lr * (1 - beta).
    (
        "momentum-ema-0.9",
        optim.Momentum(0.1, 0.9, ema=True),
        sgd(0.01, momentum=0.9),
        buffer(0.1),
    ),
    (
        "momentum-ema-0.3",
        optim.Momentum(0.2, 0.3, ema=True),
        sgd(0.14, momentum=0.3),
        buffer(0.7),
    ),
    (
        "nesterov-0.9",
        optim.Nesterov(0.05, 0.9),
        sgd(0.05, momentum=0.9, nesterov=True),
        buffer(),
    ),
    (
        "nesterov-0.3",
        optim.Nesterov(0.1, 0.3),
        sgd(0.1, momentum=0.3, nesterov=True),
        buffer(),
    ),
    (
        "nesterov-ema-0.9",
        optim.Nesterov(0.1, 0.9, ema=True),
        sgd(0.01, momentum=0.9, nesterov=True),
        buffer(0.1),
    ),
    (
        "adagrad-default-eps",
        optim.Adagrad(0.5),
        lambda p: torch.optim.Adagrad(p, lr=0.5),
        with_step({"sum_sq": "sum"}),
    ),
    (
        "adagrad-large-eps",
        optim.Adagrad(0.5, eps=1e-1),
        lambda p: torch.optim.Adagrad(p, lr=0.5, eps=1e-1),
        with_step({"sum_sq": "sum"}),
    ),
    (
        "rmsprop-default",
        optim.RMSprop(1e-2),
        lambda p: torch.optim.RMSprop(p, lr=1e-2),
        with_step({"mean_sq": "square_avg"}),
    ),
    (
        "rmsprop-low-beta-large-eps",
        optim.RMSprop(1e-2, beta=0.3, eps=1e-1),
        lambda p: torch.optim.RMSprop(p, lr=1e-2, alpha=0.3, eps=1e-1),
        with_step({"mean_sq": "square_avg"}),
    ),
    (
        "adadelta-default",
        optim.Adadelta(),
        lambda p: torch.optim.Adadelta(p),
        with_step({"mean_sq": "square_avg", "mean_sq_delta": "acc_delta"}),
    ),
    (
        "adadelta-low-rho-large-eps",
        optim.Adadelta(0.5, rho=0.3, eps=1e-1),
        lambda p: torch.optim.Adadelta(p, lr=0.5, rho=0.3, eps=1e-1),
        with_step({"mean_sq": "square_avg", "mean_sq_delta": "acc_delta"}),
    ),
    (
        "adam-default-betas",
        optim.Adam(1e-2),
        lambda p: torch.optim.Adam(p, lr=1e-2),
        with_step({"m": "exp_avg", "v": "exp_avg_sq"}),
    ),
    (
        "adam-low-betas-large-eps",
        optim.Adam(5e-2, beta1=0.3, beta2=0.9, eps=1e-1),
        lambda p: torch.optim.Adam(p, lr=5e-2, betas=(0.3, 0.9), eps=1e-1),
        with_step({"m": "exp_avg", "v": "exp_avg_sq"}),
    ),
    (
        "nadam-torch-default",
        optim.Nadam(1e-2, momentum_decay=4e-3),
        lambda p: torch.optim.NAdam(p, lr=1e-2),
        with_step({"m": "exp_avg", "v": "exp_avg_sq", "mu_product": "mu_product"}),
    ),
    (
        "nadam-torch-fast-decay",
        optim.Nadam(5e-2, beta1=0.3, beta2=0.9, eps=1e-1, momentum_decay=4e-2),
        lambda p: torch.optim.NAdam(
            p, lr=5e-2, betas=(0.3, 0.9), eps=1e-1, momentum_decay=4e-2
        ),
        with_step({"m": "exp_avg", "v": "exp_avg_sq", "mu_product": "mu_product"}),
    ),
    (
        "adamw-default-decay",
        optim.AdamW(1e-2),
        lambda p: torch.optim.AdamW(p, lr=1e-2),
        with_step({"m": "exp_avg", "v": "exp_avg_sq"}),
    ),
    (
        "adamw-strong-decay-low-betas",
        optim.AdamW(5e-2, beta1=0.3, beta2=0.9, eps=1e-1, weight_decay=0.5),
        lambda p: torch.optim.AdamW(p, lr=5e-2, betas=(0.3, 0.9), eps=1e-1, weight_decay=0.5),
        with_step({"m": "exp_avg", "v": "exp_avg_sq"}),
    ),
]
TORCH_IDS = [case[0] for case in TORCH_CASES]


def stepwise(rule, reference, objective, steps=STEPS, state0=None, tensor_path=False):
    """Step gdlib and the reference from the reference's iterates; with ``tensor_path`` also
    gdlib on float64 tensors, which must agree with gdlib on numpy arrays."""
    theta = objective.theta0.copy()
    reference.start(theta)
    state = rule.init(theta) if state0 is None else state0
    state_t = type(state)(
        *(torch.from_numpy(x) if isinstance(x, np.ndarray) else x for x in state)
    )
    for k in range(1, steps + 1):
        g = objective.grad(theta)
        new, state = rule.step(theta, g, state)
        if tensor_path:
            new_t, state_t = rule.step(
                torch.from_numpy(theta), torch.from_numpy(g), state_t
            )
            assert_close(new_t, new, f"{objective.name} step {k}: torch path theta")
            for name in rule.array_fields:
                assert_close(
                    getattr(state_t, name), getattr(state, name), f"torch path {name}"
                )
        theta = reference.step(theta, g)
        assert_close(new, theta, f"{objective.name} step {k}: theta")
        for name, expected in reference.state().items():
            assert_close(
                getattr(state, name), expected, f"{objective.name} step {k}: {name}"
            )
    assert state.step == steps


def free_running(rule, reference, objective, steps=FREE_STEPS):
    """Each follows its own trajectory; compared at every step over a short horizon."""
    theta = mine = objective.theta0.copy()
    reference.start(theta)
    state = rule.init(mine)
    for k in range(1, steps + 1):
        mine, state = rule.step(mine, objective.grad(mine), state)
        theta = reference.step(theta, objective.grad(theta))
        assert_close(mine, theta, f"{objective.name} free-running step {k}")


@pytest.mark.parametrize("objective", OBJECTIVES, ids=OBJECTIVE_IDS)
@pytest.mark.parametrize(
    ("rule", "factory", "state_map"), [c[1:] for c in TORCH_CASES], ids=TORCH_IDS
)
def test_matches_torch_step_by_step(rule, factory, state_map, objective):
    stepwise(rule, TorchReference(factory, state_map), objective, tensor_path=True)


@pytest.mark.parametrize("objective", OBJECTIVES, ids=OBJECTIVE_IDS)
@pytest.mark.parametrize(
    ("rule", "factory", "state_map"), [c[1:] for c in TORCH_CASES], ids=TORCH_IDS
)
def test_matches_torch_free_running(rule, factory, state_map, objective):
    free_running(rule, TorchReference(factory, state_map), objective)


# Random states and gradients at theta = 0, where the new iterate *is* the step: this compares
# the step itself to 1e-12, at early and late step counts (bias corrections, NAdam's schedule).

TORCH_STATE_KEYS = {
    optim.MomentumState: {"velocity": "momentum_buffer"},
    optim.NesterovState: {"velocity": "momentum_buffer"},
    optim.AdagradState: {"sum_sq": "sum"},
    optim.RMSpropState: {"mean_sq": "square_avg"},
    optim.AdadeltaState: {"mean_sq": "square_avg", "mean_sq_delta": "acc_delta"},
    optim.AdamState: {"m": "exp_avg", "v": "exp_avg_sq"},
    optim.NadamState: {"m": "exp_avg", "v": "exp_avg_sq", "mu_product": "mu_product"},
}
EXACT_CASES = [c for c in TORCH_CASES if not getattr(c[1], "ema", False)]


def random_state(rule, rng, step):
    """A state as after ``step`` steps: nonnegative second moments, NAdam's true mu_product."""
    if step == 0:
        return rule.init(np.zeros(DIM))
    fields = {"step": step}
    for name in rule.array_fields:
        values = rng.standard_normal(DIM)
        fields[name] = values if name in ("m", "velocity") else values**2
    if isinstance(rule, optim.Nadam):  # torch's schedule, transcribed
        mus = [
            rule.beta1 * (1 - 0.5 * 0.96 ** (i * rule.momentum_decay))
            for i in range(1, step + 1)
        ]
        fields["mu_product"] = float(np.prod(mus))
    return rule.State(**fields)


def load_torch_state(optimizer, param, rule, state):
    """Put a gdlib state into a torch optimizer's state for ``param`` (torch's key names)."""
    torch_state = optimizer.state[param]
    for ours, theirs in TORCH_STATE_KEYS.get(rule.State, {}).items():
        torch_state[theirs] = torch.tensor(getattr(state, ours))
    if not isinstance(state, optim.GDState | optim.MomentumState | optim.NesterovState):
        torch_state["step"] = torch.tensor(float(state.step))  # SGD keeps no step count


@pytest.mark.parametrize("step", [0, 1, 9, 999])
@pytest.mark.parametrize(
    ("rule", "factory"), [c[1:3] for c in EXACT_CASES], ids=[c[0] for c in EXACT_CASES]
)
def test_single_step_from_origin_matches_torch(rule, factory, step):
    rng = np.random.default_rng(step)
    for _ in range(5):
        state = random_state(rule, rng, step)
        g = rng.standard_normal(DIM) * 10.0 ** rng.uniform(-3, 1, DIM)
        param = torch.zeros(DIM, requires_grad=True)
        optimizer = factory([param])
        if step > 0:
            load_torch_state(optimizer, param, rule, state)
        param.grad = torch.from_numpy(g)
        optimizer.step()
        new, _ = rule.step(np.zeros(DIM), g, state)
        assert_close(new, param.detach(), f"step {step + 1} from the origin")


# ---------------------------------------------------------------------------------------------
# Momentum conventions.


class SeedMomentum:
    """Seed 001 (and seed 002 eq 9): v = gamma v + eta grad; theta = theta - v."""

    def __init__(self, eta, gamma):
        self.eta, self.gamma = eta, gamma

    def start(self, theta0):
        self.v = np.zeros_like(theta0)

    def step(self, theta, g):
        self.v = self.gamma * self.v + self.eta * g
        return theta - self.v

    def state(self):
        return {"velocity": self.v / self.eta}


class SeedMomentumEMA:
    """Seed 000 eq 16 / Algorithm 4: Delta v = rho Delta v + (1 - rho) grad; theta -= eta Delta v."""

    def __init__(self, eta, rho):
        self.eta, self.rho = eta, rho

    def start(self, theta0):
        self.dv = np.zeros_like(theta0)

    def step(self, theta, g):
        self.dv = self.rho * self.dv + (1 - self.rho) * g
        return theta - self.eta * self.dv

    def state(self):
        return {"velocity": self.dv}


@pytest.mark.parametrize("objective", OBJECTIVES, ids=OBJECTIVE_IDS)
@pytest.mark.parametrize("beta", [0.9, 0.3])
def test_momentum_matches_seed_forms(beta, objective):
    stepwise(optim.Momentum(0.05, beta), SeedMomentum(0.05, beta), objective)
    stepwise(optim.Momentum(0.1, beta, ema=True), SeedMomentumEMA(0.1, beta), objective)


def test_momentum_ema_velocity_is_seed_000_lemma_3_1():
    """Seed 000 eq 17: Delta v^(tau) = sum_{t=0}^{tau-1} rho^t (1 - rho) grad^(tau-1-t)."""
    rho, rng = 0.8, np.random.default_rng(3)
    rule = optim.Momentum(0.1, rho, ema=True)
    grads = rng.standard_normal((30, 4))
    state = rule.init(np.zeros(4))
    for tau in range(1, 31):
        _, state = rule.step(np.zeros(4), grads[tau - 1], state)
        expected = sum(rho**t * (1 - rho) * grads[tau - 1 - t] for t in range(tau))
        assert_close(state.velocity, expected, f"tau={tau}")


def test_momentum_weight_after_22_steps_is_seed_001_value():
    """Seed 001: with gamma = 0.9 a gradient's weight in the velocity is 0.9**22 = 0.0985 after
    22 more steps (its influence has dropped to about a tenth)."""
    rule = optim.Momentum(1.0, 0.9)
    theta, state = rule.step(np.zeros(1), np.ones(1), rule.init(np.zeros(1)))
    for _ in range(22):
        theta, state = rule.step(theta, np.zeros(1), state)
    assert round(float(state.velocity[0]), 4) == 0.0985


def test_momentum_with_beta_zero_is_gd():
    objective = quadratic()
    gd, heavy = optim.GD(0.1), optim.Momentum(0.1, beta=0.0)
    theta_a = theta_b = objective.theta0
    state_a, state_b = gd.init(theta_a), heavy.init(theta_b)
    for _ in range(100):
        theta_a, state_a = gd.step(theta_a, objective.grad(theta_a), state_a)
        theta_b, state_b = heavy.step(theta_b, objective.grad(theta_b), state_b)
    np.testing.assert_array_equal(theta_a, theta_b)


@pytest.mark.parametrize("objective", OBJECTIVES, ids=OBJECTIVE_IDS)
@pytest.mark.parametrize("beta", [0.9, 0.3])
def test_torch_dampening_is_ema_started_from_first_gradient(beta, objective):
    """torch SGD(momentum=beta, dampening=beta) sets its buffer to g_1 on step 1 (no dampening
    then) and averages afterwards: it is Momentum(ema=True) started from velocity g_1."""
    g1 = objective.grad(objective.theta0)
    rule = optim.Momentum(0.1, beta, ema=True)
    reference = TorchReference(sgd(0.1, momentum=beta, dampening=beta), buffer())
    stepwise(rule, reference, objective, state0=optim.MomentumState(0, g1))


@pytest.mark.parametrize("beta", [0.9, 0.3])
def test_torch_dampening_differs_from_ema_by_decaying_first_gradient(beta):
    """From velocity 0 the difference is: torch's buffer = ema velocity + beta**t g_1, so the
    first step is lr g_1 in torch and lr (1 - beta) g_1 in the moving-average form."""
    objective, lr = logistic(), 0.1
    theta = objective.theta0.copy()
    g1 = objective.grad(theta)
    rule = optim.Momentum(lr, beta, ema=True)
    reference = TorchReference(sgd(lr, momentum=beta, dampening=beta), buffer())
    reference.start(theta)
    state = rule.init(theta)
    for t in range(1, 201):
        g = objective.grad(theta)
        new, state = rule.step(theta, g, state)
        torch_theta = reference.step(theta, g)
        torch_buffer = reference.state()["velocity"]
        assert_close(state.velocity + beta**t * g1, torch_buffer, f"buffer at t={t}")
        if t == 1:
            assert_close(new, theta - lr * (1 - beta) * g1, "ema first step")
            assert_close(torch_theta, theta - lr * g1, "torch first step")
        theta = torch_theta


# ---------------------------------------------------------------------------------------------
# Nesterov: torch's form and the seeds' look-ahead form.


class SeedNAG:
    """Seed 001: v = gamma v + eta grad(theta - gamma v); theta = theta - v."""

    def __init__(self, eta, gamma, grad):
        self.eta, self.gamma, self.grad = eta, gamma, grad

    def start(self, theta0):
        self.v = np.zeros_like(theta0)

    def step(self, theta):
        self.v = self.gamma * self.v + self.eta * self.grad(theta - self.gamma * self.v)
        return theta - self.v


class SeedNAGEMA:
    """Seed 000 eq 21: hat theta = theta - eta rho Delta v;
    Delta v = rho Delta v + (1 - rho) grad(hat theta); theta = theta - eta Delta v."""

    def __init__(self, eta, rho, grad):
        self.eta, self.rho, self.grad = eta, rho, grad

    def start(self, theta0):
        self.v = np.zeros_like(theta0)

    def step(self, theta):
        ahead = theta - self.eta * self.rho * self.v
        self.v = self.rho * self.v + (1 - self.rho) * self.grad(ahead)
        return theta - self.eta * self.v


@pytest.mark.parametrize("objective", OBJECTIVES, ids=OBJECTIVE_IDS)
@pytest.mark.parametrize(("ema", "beta"), [(False, 0.9), (False, 0.3), (True, 0.9)])
def test_lookahead_step_matches_seed_transcriptions(ema, beta, objective):
    lr = 0.1 if ema else 0.05
    rule = optim.Nesterov(lr, beta, ema=ema)
    seed = (SeedNAGEMA if ema else SeedNAG)(lr, beta, objective.grad)
    theta = objective.theta0.copy()
    seed.start(theta)
    state = rule.init(theta)
    for k in range(1, STEPS + 1):
        # Same inputs: gdlib's velocity is the seed's (seed 001 folds eta into it).
        state = optim.NesterovState(state.step, seed.v if ema else seed.v / lr)
        new, state = rule.lookahead_step(theta, objective.grad, state)
        theta = seed.step(theta)
        assert_close(new, theta, f"{objective.name} step {k}")
        assert_close(
            state.velocity, seed.v if ema else seed.v / lr, f"velocity step {k}"
        )


@pytest.mark.parametrize("objective", OBJECTIVES, ids=OBJECTIVE_IDS)
@pytest.mark.parametrize(
    ("ema", "beta"), [(False, 0.9), (False, 0.3), (True, 0.9), (True, 0.3)]
)
def test_lookahead_form_visits_torch_form_points(ema, beta, objective):
    """Under theta_torch = theta_seed - lr beta v, both forms take the same steps (step by step
    over 1000 steps, then free-running)."""
    rule = optim.Nesterov(0.05, beta, ema=ema)
    theta = objective.theta0.copy()  # torch-form iterate
    state = rule.init(theta)
    for k in range(1, STEPS + 1):
        seed_theta = (
            theta + rule.lr * rule.beta * state.velocity
        )  # inverse change of variables
        seed_new, seed_state = rule.lookahead_step(seed_theta, objective.grad, state)
        theta, state = rule.step(theta, objective.grad(theta), state)
        assert_close(rule.lookahead_point(seed_new, seed_state), theta, f"step {k}")
        assert_close(seed_state.velocity, state.velocity, f"velocity step {k}")
    theta = seed_theta = objective.theta0.copy()
    state = seed_state = rule.init(theta)
    for k in range(1, STEPS + 1):
        theta, state = rule.step(theta, objective.grad(theta), state)
        seed_theta, seed_state = rule.lookahead_step(
            seed_theta, objective.grad, seed_state
        )
        assert_close(
            rule.lookahead_point(seed_theta, seed_state), theta, f"free step {k}"
        )


def test_lookahead_step_calls_gradient_once_at_lookahead_point():
    rule = optim.Nesterov(0.1, 0.9)
    state = optim.NesterovState(3, np.array([1.0, -2.0]))
    calls = []

    def grad_fn(point):
        calls.append(point.copy())
        return np.array([0.5, 0.5])

    theta, state = rule.lookahead_step(np.array([1.0, 1.0]), grad_fn, state)
    assert len(calls) == 1
    np.testing.assert_allclose(calls[0], [1.0 - 0.09, 1.0 + 0.18], rtol=RTOL)
    np.testing.assert_allclose(state.velocity, [0.9 + 0.5, -1.8 + 0.5], rtol=RTOL)
    np.testing.assert_allclose(theta, [1.0 - 0.14, 1.0 + 0.13], rtol=RTOL)
    assert state.step == 4


# ---------------------------------------------------------------------------------------------
# The seeds' adaptive rules (eps inside the root), transcribed.


class SeedAdaptive:
    """Seed 001 / 003 Adagrad (decay None: G = G + g^2) and RMSprop (G = gamma G + (1-gamma) g^2),
    both with theta = theta - eta / sqrt(G + eps) * g."""

    def __init__(self, eta, eps, gamma=None, field="sum_sq"):
        self.eta, self.eps, self.gamma, self.field = eta, eps, gamma, field

    def start(self, theta0):
        self.G = np.zeros_like(theta0)

    def step(self, theta, g):
        if self.gamma is None:
            self.G = self.G + g**2
        else:
            self.G = self.gamma * self.G + (1 - self.gamma) * g**2
        return theta - self.eta / np.sqrt(self.G + self.eps) * g

    def state(self):
        return {self.field: self.G}


class Seed002RMSprop(SeedAdaptive):
    """Seed 002 eq 12-14: E = (1 - gamma) E + gamma g^2, gamma weighting the new term."""

    def step(self, theta, g):
        self.G = (1 - self.gamma) * self.G + self.gamma * g**2
        return theta - self.eta / np.sqrt(self.G + self.eps) * g


class SeedAdadelta:
    """Seed 001: G = gamma G + (1-gamma) g^2; D = sqrt(s + eps) / sqrt(G + eps) g;
    theta = theta - D; s = gamma s + (1-gamma) D^2 (no learning rate)."""

    def __init__(self, gamma, eps):
        self.gamma, self.eps = gamma, eps

    def start(self, theta0):
        self.G, self.s = np.zeros_like(theta0), np.zeros_like(theta0)

    def step(self, theta, g):
        self.G = self.gamma * self.G + (1 - self.gamma) * g**2
        delta = np.sqrt(self.s + self.eps) / np.sqrt(self.G + self.eps) * g
        self.s = self.gamma * self.s + (1 - self.gamma) * delta**2
        return theta - delta

    def state(self):
        return {"mean_sq": self.G, "mean_sq_delta": self.s}


class SeedAdam:
    """Seed 000 Algorithm 9 (eq 33-35): m, v moving averages, m^ = m / (1 - beta1^tau),
    v^ = v / (1 - beta2^tau), theta = theta - eta / sqrt(v^ + eps) * m^.
    ``nadam=True``: seed 000 eq 42 / Algorithm 10, theta = theta - eta / sqrt(v^ + eps) *
    (beta1 m^ + (1 - beta1) g / (1 - beta1^tau)). ``eps_outside``: eps added to sqrt(v^)."""

    def __init__(self, eta, beta1, beta2, eps, nadam=False, eps_outside=False):
        self.eta, self.beta1, self.beta2, self.eps = eta, beta1, beta2, eps
        self.nadam, self.eps_outside = nadam, eps_outside

    def start(self, theta0):
        self.m, self.v, self.tau = np.zeros_like(theta0), np.zeros_like(theta0), 0

    def step(self, theta, g):
        b1, b2 = self.beta1, self.beta2
        self.tau += 1
        self.m = b1 * self.m + (1 - b1) * g
        self.v = b2 * self.v + (1 - b2) * g * g
        m_hat = self.m / (1 - b1**self.tau)
        v_hat = self.v / (1 - b2**self.tau)
        root = (
            np.sqrt(v_hat) + self.eps if self.eps_outside else np.sqrt(v_hat + self.eps)
        )
        if self.nadam:
            return theta - self.eta / root * (
                b1 * m_hat + (1 - b1) * g / (1 - b1**self.tau)
            )
        return theta - self.eta / root * m_hat

    def state(self):
        return {"step": self.tau, "m": self.m, "v": self.v}


SEED_CASES = [
    (
        "adagrad",
        optim.Adagrad(0.5, 1e-1, eps_inside_sqrt=True),
        SeedAdaptive(0.5, 1e-1),
    ),
    (
        "adagrad-small-eps",
        optim.Adagrad(0.5, 1e-8, eps_inside_sqrt=True),
        SeedAdaptive(0.5, 1e-8),
    ),
    (
        "rmsprop",
        optim.RMSprop(1e-2, 0.9, 1e-1, eps_inside_sqrt=True),
        SeedAdaptive(1e-2, 1e-1, gamma=0.9, field="mean_sq"),
    ),
    (
        "rmsprop-seed-002",
        optim.RMSprop(
            1e-2, 0.8, 1e-1, eps_inside_sqrt=True
        ),  # seed 002's gamma = 1 - beta
        Seed002RMSprop(1e-2, 1e-1, gamma=0.2, field="mean_sq"),
    ),
    ("adadelta", optim.Adadelta(1.0, 0.9, 1e-1), SeedAdadelta(0.9, 1e-1)),
    ("adadelta-rho-0.3", optim.Adadelta(1.0, 0.3, 1e-6), SeedAdadelta(0.3, 1e-6)),
    (
        "adam",
        optim.Adam(1e-2, 0.9, 0.999, 1e-1, eps_inside_sqrt=True),
        SeedAdam(1e-2, 0.9, 0.999, 1e-1),
    ),
    (
        "adam-low-betas",
        optim.Adam(5e-2, 0.3, 0.9, 1e-4, eps_inside_sqrt=True),
        SeedAdam(5e-2, 0.3, 0.9, 1e-4),
    ),
    (
        "nadam-eq42-literal",
        optim.Nadam(1e-2, 0.9, 0.999, 1e-1, eps_inside_sqrt=True),
        SeedAdam(1e-2, 0.9, 0.999, 1e-1, nadam=True),
    ),
    (
        "nadam-eq42-default",
        optim.Nadam(1e-2, 0.9, 0.999, 1e-1),
        SeedAdam(1e-2, 0.9, 0.999, 1e-1, nadam=True, eps_outside=True),
    ),
    (
        "nadam-eq42-low-betas",
        optim.Nadam(5e-2, 0.3, 0.9, 1e-8),
        SeedAdam(5e-2, 0.3, 0.9, 1e-8, nadam=True, eps_outside=True),
    ),
]


@pytest.mark.parametrize("objective", OBJECTIVES, ids=OBJECTIVE_IDS)
@pytest.mark.parametrize(
    ("rule", "seed"), [c[1:] for c in SEED_CASES], ids=[c[0] for c in SEED_CASES]
)
def test_matches_seed_transcription(rule, seed, objective):
    stepwise(rule, seed, objective)


# ---------------------------------------------------------------------------------------------
# First steps worked out by hand: m^ = g, v^ = g^2 after one step.

G1 = np.array([3.0, -0.5, 1e-3, 0.0, -40.0])


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (optim.Adagrad(0.1, 1e-2), -0.1 * G1 / (np.abs(G1) + 1e-2)),
        (optim.RMSprop(0.1, 0.75, 1e-2), -0.1 * G1 / (0.5 * np.abs(G1) + 1e-2)),
        (
            optim.Adadelta(0.5, 0.75, 1e-2),
            -0.5 * 0.1 * G1 / np.sqrt(0.25 * G1**2 + 1e-2),
        ),
        (optim.Adam(0.1, 0.9, 0.99, 1e-2), -0.1 * G1 / (np.abs(G1) + 1e-2)),
        (
            optim.Adam(0.1, eps=1e-2, eps_inside_sqrt=True),
            -0.1 * G1 / np.sqrt(G1**2 + 1e-2),
        ),
        # eq 42 at tau = 1: beta1 m^ + (1 - beta1) g / (1 - beta1) = (1 + beta1) g.
        (optim.Nadam(0.1, 0.9, 0.99, 1e-2), -0.1 * 1.9 * G1 / (np.abs(G1) + 1e-2)),
        (optim.Nesterov(0.1, 0.9), -0.1 * 1.9 * G1),
        (optim.Nesterov(0.1, 0.9, ema=True), -0.1 * 0.19 * G1),
    ],
    ids=[
        "adagrad",
        "rmsprop",
        "adadelta",
        "adam",
        "adam-eps-inside",
        "nadam",
        "nag",
        "nag-ema",
    ],
)
def test_first_step_worked_by_hand(rule, expected):
    theta, state = rule.step(np.zeros(5), G1, rule.init(np.zeros(5)))
    assert_close(theta, expected, type(rule).__name__)
    assert state.step == 1


def test_nadam_first_step_under_torch_schedule():
    """torch NAdam at t=1: mu_1 = 0.9 (1 - 0.5 * 0.96**0.004); direction
    g + mu_2 m_1 / (1 - mu_1 mu_2) with m_1 = 0.1 g (mu_1 cancels in the gradient term)."""
    mu1, mu2 = (0.9 * (1 - 0.5 * 0.96 ** (t * 0.004)) for t in (1, 2))
    direction = 1 + mu2 * 0.1 / (1 - mu1 * mu2)
    rule = optim.Nadam(0.1, 0.9, 0.99, 1e-2, momentum_decay=0.004)
    theta, state = rule.step(np.zeros(5), G1, rule.init(np.zeros(5)))
    assert_close(theta, -0.1 * direction * G1 / (np.abs(G1) + 1e-2), "nadam torch t=1")
    assert state.mu_product == pytest.approx(mu1, rel=RTOL)


# ---------------------------------------------------------------------------------------------
# Weight decay: AdamW (decoupled) against Adam with an L2 penalty in the gradient.


@pytest.mark.parametrize("objective", OBJECTIVES, ids=OBJECTIVE_IDS)
@pytest.mark.parametrize("weight_decay", [1e-2, 0.3])
def test_adam_on_l2_gradient_is_torch_adam_weight_decay(weight_decay, objective):
    """gdlib's Adam fed g + wd * theta takes torch's Adam(weight_decay=wd) steps (fed g).

    Near the regularised minimum g + wd * theta cancels to ~1e-7 while its terms stay ~1e-2:
    the moments are compared to 1e-12 of the terms' size (the cancellation's rounding), theta
    to 1e-12 relative as everywhere."""
    rule = optim.Adam(1e-2)
    reference = TorchReference(
        lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=weight_decay),
        with_step({"m": "exp_avg", "v": "exp_avg_sq"}),
    )
    theta = objective.theta0.copy()
    reference.start(theta)
    state = rule.init(theta)
    for k in range(1, STEPS + 1):
        g = objective.grad(theta)
        new, state = rule.step(theta, g + weight_decay * theta, state)
        theta = reference.step(theta, g)
        assert_close(new, theta, f"{objective.name} step {k}: theta")
        terms = float(np.abs(g).max() + weight_decay * np.abs(theta).max())
        torch_state = reference.state()
        assert state.step == torch_state["step"]
        for name, scale in (("m", terms), ("v", terms**2)):
            error = float(np.abs(getattr(state, name) - to_numpy(torch_state[name])).max())
            assert error <= RTOL * scale, f"{objective.name} step {k}: {name}: {error:.3e}"


def test_adamw_first_step_worked_by_hand():
    """t = 1: m^ = g, v^ = g^2, so theta_1 = (1 - lr wd) theta_0 - lr g / (|g| + eps)."""
    rule = optim.AdamW(0.1, 0.9, 0.99, 1e-2, weight_decay=0.5)
    theta0 = np.linspace(-2.0, 2.0, G1.size)
    theta, state = rule.step(theta0, G1, rule.init(theta0))
    assert_close(theta, 0.95 * theta0 - 0.1 * G1 / (np.abs(G1) + 1e-2), "AdamW t=1")
    assert_close(state.m, 0.1 * G1, "m")
    assert state.step == 1


def test_adamw_without_decay_is_adam_and_decay_never_enters_the_moments():
    theta, _ = random_inputs()
    adam, adamw = optim.Adam(1e-2), optim.AdamW(1e-2, weight_decay=0.0)
    decayed = optim.AdamW(1e-2, weight_decay=0.2)
    state_a, state_w, state_d = adam.init(theta), adamw.init(theta), decayed.init(theta)
    theta_a = theta_w = theta_d = theta
    for k in range(50):
        g = np.cos(np.arange(DIM) + k)
        theta_a, state_a = adam.step(theta_a, g, state_a)
        theta_w, state_w = adamw.step(theta_w, g, state_w)
        theta_d, state_d = decayed.step(theta_d, g, state_d)
    np.testing.assert_array_equal(theta_w, theta_a)
    # Same gradients in, same moments out: the decay acts on theta only.
    np.testing.assert_array_equal(state_d.m, state_a.m)
    np.testing.assert_array_equal(state_d.v, state_a.v)
    assert np.abs(theta_d).max() < np.abs(theta_a).max()


def test_adamw_is_not_adam_with_l2():
    """Decoupled decay and an L2 gradient term give different iterates (the point of AdamW)."""
    objective = OBJECTIVES[0]
    adamw, adam = optim.AdamW(1e-2, weight_decay=0.1), optim.Adam(1e-2)
    theta_w = theta_l = objective.theta0.copy()
    state_w, state_l = adamw.init(theta_w), adam.init(theta_l)
    for _ in range(200):
        theta_w, state_w = adamw.step(theta_w, objective.grad(theta_w), state_w)
        g = objective.grad(theta_l) + 0.1 * theta_l
        theta_l, state_l = adam.step(theta_l, g, state_l)
    assert np.abs(theta_w - theta_l).max() > 1e-3


@pytest.mark.parametrize("value", [-0.1, float("nan"), "0.1", True])
def test_bad_weight_decay(value):
    error = TypeError if isinstance(value, (str, bool)) else ValueError
    with pytest.raises(error, match=r"^weight_decay must"):
        optim.AdamW(weight_decay=value)


# ---------------------------------------------------------------------------------------------
# Contract: init, update's lr argument, tensor step counters, dtypes, purity.

ALL_RULES = [
    optim.GD(0.1),
    optim.Momentum(0.1),
    optim.Momentum(0.1, ema=True),
    optim.Nesterov(0.1),
    optim.Adagrad(),
    optim.RMSprop(),
    optim.Adadelta(),
    optim.Adam(),
    optim.Adam(eps_inside_sqrt=True),
    optim.Nadam(),
    optim.Nadam(momentum_decay=0.004),
    optim.AdamW(),
]
RULE_IDS = [repr(r) for r in ALL_RULES]


def random_inputs(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(DIM).astype(dtype), rng.standard_normal(DIM).astype(
        dtype
    )


def advanced_state(rule, theta, steps=3):
    """A state with nonzero arrays (a few steps on random gradients)."""
    state = rule.init(theta)
    rng = np.random.default_rng(7)
    for _ in range(steps):
        grad = rng.standard_normal(tuple(theta.shape))
        if isinstance(theta, torch.Tensor):
            grad = torch.from_numpy(grad).to(dtype=theta.dtype, device=theta.device)
        else:
            grad = grad.astype(theta.dtype)
        theta, state = rule.step(theta, grad, state)
    return state


@pytest.mark.parametrize("rule", ALL_RULES, ids=RULE_IDS)
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_init_state(rule, backend):
    theta = np.ones((4, 5))
    if backend == "torch":
        theta = torch.ones((4, 5))
    state = rule.init(theta)
    assert isinstance(state, rule.State) and state.step == 0
    assert state._fields[0] == "step"
    for name in rule.array_fields:
        value = getattr(state, name)
        assert type(value) is type(theta) and value.dtype == theta.dtype
        assert tuple(value.shape) == (4, 5) and not to_numpy(value).any()
    if isinstance(rule, optim.Nadam):
        assert state.mu_product == 1.0


@pytest.mark.parametrize("rule", ALL_RULES, ids=RULE_IDS)
def test_update_uses_the_given_learning_rate(rule):
    theta, grad = random_inputs()
    state = advanced_state(rule, theta)
    scheduled = type(rule)(**{**vars(rule), "lr": 0.03})
    expected = scheduled.step(theta, grad, state)
    got = rule.update(theta, grad, state, 0.03)
    assert_close(got[0], expected[0], "theta")
    for name in rule.array_fields:
        assert_close(getattr(got[1], name), getattr(expected[1], name), name)


@pytest.mark.parametrize("rule", ALL_RULES, ids=RULE_IDS)
def test_tensor_step_counter_gives_the_same_update(rule):
    """The torch adapter may keep ``step`` as a 0-d float64 tensor."""
    theta, grad = (torch.from_numpy(x) for x in random_inputs())
    state = advanced_state(rule, theta, steps=4)
    tensor_state = state._replace(
        step=torch.tensor(float(state.step), dtype=torch.float64)
    )
    expected, expected_state = rule.step(theta, grad, state)
    got, got_state = rule.step(theta, grad, tensor_state)
    assert_close(got, expected, "theta")
    assert float(got_state.step) == expected_state.step == 5


@pytest.mark.parametrize("rule", ALL_RULES, ids=RULE_IDS)
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_float32_stays_float32(rule, backend):
    theta, grad = random_inputs(dtype=np.float32)
    if backend == "torch":
        theta, grad = torch.from_numpy(theta), torch.from_numpy(grad)
    new, state = rule.step(theta, grad, advanced_state(rule, theta))
    assert new.dtype == theta.dtype
    for name in rule.array_fields:
        assert getattr(state, name).dtype == theta.dtype


def _copies(values):
    return [
        v.clone() if isinstance(v, torch.Tensor) else np.array(v, copy=True)
        for v in values
    ]


def _shares_memory(a, b):
    if isinstance(a, torch.Tensor):
        return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
    return np.shares_memory(a, b)


@pytest.mark.parametrize("rule", ALL_RULES, ids=RULE_IDS)
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_step_is_pure(rule, backend):
    theta, grad = random_inputs()
    if backend == "torch":
        theta, grad = torch.from_numpy(theta), torch.from_numpy(grad)
    state = advanced_state(rule, theta)
    arrays_in = [theta, grad, *(getattr(state, n) for n in rule.array_fields)]
    before = _copies(arrays_in)
    new, new_state = rule.step(theta, grad, state)
    for original, copy in zip(arrays_in, before, strict=True):
        np.testing.assert_array_equal(to_numpy(original), to_numpy(copy))
    arrays_out = [new, *(getattr(new_state, n) for n in rule.array_fields)]
    for out in arrays_out:
        assert not any(_shares_memory(out, x) for x in arrays_in), (
            "output aliases an input"
        )
    # The returned arrays are usable as inputs of the next step.
    rule.step(new, grad, new_state)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_lookahead_step_is_pure(backend):
    rule = optim.Nesterov(0.1, 0.9)
    theta, grad = random_inputs()
    if backend == "torch":
        theta, grad = torch.from_numpy(theta), torch.from_numpy(grad)
    state = advanced_state(rule, theta)
    before = _copies([theta, state.velocity])
    new, new_state = rule.lookahead_step(theta, lambda point: 2.0 * point, state)
    np.testing.assert_array_equal(to_numpy(theta), to_numpy(before[0]))
    np.testing.assert_array_equal(to_numpy(state.velocity), to_numpy(before[1]))
    assert not _shares_memory(new_state.velocity, state.velocity)
    assert not _shares_memory(new, theta)


# ---------------------------------------------------------------------------------------------
# Bad input: clear errors naming the argument.


@pytest.mark.parametrize("lr", [0.0, -0.1, float("nan"), float("inf")])
@pytest.mark.parametrize("cls", [optim.GD, optim.Momentum, optim.Adam, optim.Adadelta])
def test_bad_learning_rate(cls, lr):
    with pytest.raises(ValueError, match=r"^lr must be"):
        cls(lr)


@pytest.mark.parametrize("lr", ["0.1", True, None, [0.1]])
def test_learning_rate_must_be_a_number(lr):
    with pytest.raises(TypeError, match=r"^lr must be a real number"):
        optim.GD(lr)


@pytest.mark.parametrize("value", [1.0, 1.5, -0.01, float("nan")])
@pytest.mark.parametrize(
    ("cls", "name"),
    [
        (optim.Momentum, "beta"),
        (optim.Nesterov, "beta"),
        (optim.RMSprop, "beta"),
        (optim.Adadelta, "rho"),
        (optim.Adam, "beta1"),
        (optim.Adam, "beta2"),
        (optim.Nadam, "beta1"),
        (optim.Nadam, "beta2"),
    ],
)
def test_decay_rate_outside_unit_interval(cls, name, value):
    message = rf"^{name} must (lie in \[0, 1\)|be finite), got {value}"
    with pytest.raises(ValueError, match=message):
        cls(lr=0.1, **{name: value})


@pytest.mark.parametrize(
    "cls", [optim.Adagrad, optim.RMSprop, optim.Adadelta, optim.Adam, optim.Nadam]
)
def test_negative_eps(cls):
    with pytest.raises(ValueError, match=r"^eps must be >= 0, got -1e-08"):
        cls(eps=-1e-8)


def test_negative_momentum_decay():
    with pytest.raises(ValueError, match=r"^momentum_decay must be >= 0"):
        optim.Nadam(momentum_decay=-0.004)


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: optim.Momentum(0.1, ema=1), "ema"),
        (lambda: optim.Adam(eps_inside_sqrt="yes"), "eps_inside_sqrt"),
        (lambda: optim.GD(0.1, check_finite=None), "check_finite"),
    ],
)
def test_flags_must_be_booleans(make, name):
    with pytest.raises(TypeError, match=rf"^{name} must be True or False"):
        make()


def test_valid_edge_values_are_accepted():
    """beta = 0, eps = 0 and momentum_decay = 0 are legal values, not errors."""
    assert optim.Momentum(0.1, beta=0.0).beta == 0.0
    assert optim.Adagrad(eps=0.0).eps == 0.0
    assert optim.Nadam(momentum_decay=0.0).momentum_decay == 0.0


@pytest.mark.parametrize("rule", ALL_RULES, ids=RULE_IDS)
def test_python_numbers_and_lists_are_numpy_inputs(rule):
    """A 1-D demo may pass floats; a list is converted like np.asarray."""
    theta, state = rule.step(1.5, -0.25, rule.init(1.5))
    expected, _ = rule.step(np.array(1.5), np.array(-0.25), rule.init(np.array(1.5)))
    assert_close(theta, expected, "scalar")
    theta, state = rule.step([1.5, 2.0], [-0.25, 0.5], rule.init([1.5, 2.0]))
    expected, _ = rule.step(
        np.array([1.5, 2.0]), np.array([-0.25, 0.5]), rule.init(np.ones(2))
    )
    assert_close(theta, expected, "list")
    assert state.step == 1


@pytest.mark.parametrize("rule", ALL_RULES, ids=RULE_IDS)
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_shape_mismatch(rule, backend):
    theta, grad = random_inputs()
    state = rule.init(theta)
    short_grad, other_state = grad[:-1], rule.init(np.zeros(DIM + 1))
    if backend == "torch":
        theta, grad, short_grad = (
            torch.from_numpy(x) for x in (theta, grad, short_grad)
        )
        state, other_state = rule.init(theta), rule.init(torch.zeros(DIM + 1))
    with pytest.raises(
        ValueError,
        match=r"shape mismatch: theta has shape \(20,\) but grad has shape \(19,\)",
    ):
        rule.step(theta, short_grad, state)
    if rule.array_fields:
        name = rule.array_fields[0]
        with pytest.raises(ValueError, match=rf"but state\.{name} has shape \(21,\)"):
            rule.step(theta, grad, other_state)


@pytest.mark.parametrize("rule", ALL_RULES, ids=RULE_IDS)
def test_device_mismatch(rule):
    theta = torch.zeros(DIM)
    on_meta = torch.zeros(DIM, device="meta")
    with pytest.raises(
        ValueError, match=r"device mismatch: theta is on cpu but grad is on meta"
    ):
        rule.step(theta, on_meta, rule.init(theta))
    if rule.array_fields:
        name = rule.array_fields[0]
        with pytest.raises(
            ValueError, match=rf"theta is on cpu but state\.{name} is on meta"
        ):
            rule.step(theta, torch.zeros(DIM), rule.init(on_meta))


@pytest.mark.parametrize("rule", [optim.GD(0.1), optim.Adam()], ids=["gd", "adam"])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_integer_arrays(rule, backend):
    integers, floats = np.arange(DIM), np.zeros(DIM)
    if backend == "torch":
        integers, floats = torch.arange(DIM), torch.zeros(DIM)
    with pytest.raises(TypeError, match=r"^theta must hold floating-point numbers"):
        rule.init(integers)
    with pytest.raises(TypeError, match=r"^theta must hold floating-point numbers"):
        rule.step(integers, floats, rule.init(floats))
    with pytest.raises(TypeError, match=r"^grad must hold floating-point numbers"):
        rule.step(floats, integers, rule.init(floats))


def test_dtype_and_kind_mismatch():
    rule = optim.Adam()
    theta = np.zeros(DIM)
    with pytest.raises(
        TypeError,
        match=r"dtype mismatch: theta has dtype float64 but grad has dtype float32",
    ):
        rule.step(theta, np.zeros(DIM, dtype=np.float32), rule.init(theta))
    with pytest.raises(
        TypeError, match=r"^grad is a torch tensor but theta is a numpy array"
    ):
        rule.step(theta, torch.zeros(DIM), rule.init(theta))
    with pytest.raises(
        TypeError, match=r"^state\.m is a torch tensor but theta is a numpy array"
    ):
        rule.step(theta, np.zeros(DIM), rule.init(torch.zeros(DIM)))


def test_state_of_another_rule():
    theta = np.zeros(DIM)
    with pytest.raises(
        TypeError,
        match=r"^state must be the AdamState returned by Adam\.init\(theta\), got RMSpropState",
    ):
        optim.Adam().step(theta, theta, optim.RMSprop().init(theta))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("rule", ALL_RULES, ids=RULE_IDS)
def test_non_finite_gradient(rule, bad):
    theta = np.zeros(DIM)
    grad = np.ones(DIM)
    grad[3] = bad
    with pytest.raises(ValueError, match=r"^grad contains NaN or infinity"):
        rule.step(theta, grad, rule.init(theta))
    # Tensors: checked only on request (the check synchronises the device).
    theta_t, grad_t = torch.zeros(DIM), torch.from_numpy(grad)
    new, _ = rule.step(theta_t, grad_t, rule.init(theta_t))
    assert not torch.isfinite(new).all()
    checked = type(rule)(**{**vars(rule), "check_finite": True})
    with pytest.raises(ValueError, match=r"^grad contains NaN or infinity"):
        checked.step(theta_t, grad_t, checked.init(theta_t))


def test_lookahead_step_validates_the_gradient():
    rule = optim.Nesterov(0.1, check_finite=True)
    theta = torch.zeros(DIM)
    with pytest.raises(ValueError, match=r"but grad has shape \(3,\)"):
        rule.lookahead_step(theta, lambda point: torch.zeros(3), rule.init(theta))
    with pytest.raises(ValueError, match=r"^grad contains NaN or infinity"):
        rule.lookahead_step(theta, lambda point: point / 0.0, rule.init(theta))
