import math

import numpy as np
import pytest
import scipy.optimize
import torch

from gdlib import functions
from gdlib import second_order as so

LOGREG = so.LogisticRegression.random(n=200, k=10, seed=0)


class Problem:
    """A test problem as both gdlib and scipy want it: f_and_grad, hessian, hessp, x0."""

    def __init__(self, name, f_and_grad, hessian, hessp, x0, x_star):
        self.name, self.f_and_grad, self.hessian, self.hessp = name, f_and_grad, hessian, hessp
        self.x0, self.x_star = np.asarray(x0, dtype=float), np.asarray(x_star, dtype=float)


def _landscape(f):
    return Problem(f.name, f.value_and_grad, f.hessian, lambda x, v: f.hessian(x) @ v, f.start,
                   f.minimum)


def _logreg_minimizer():
    return so.newton(LOGREG.value_and_grad, LOGREG.hessian, np.zeros(10), gtol=1e-13).x


PROBLEMS = {
    "rosenbrock": _landscape(functions.ROSENBROCK),
    "beale": _landscape(functions.BEALE),
    "logistic": Problem("logistic regression", LOGREG.value_and_grad, LOGREG.hessian,
                        LOGREG.hessp, np.zeros(10), _logreg_minimizer()),
}

GTOL = 1e-8
# Our method, SciPy's counterpart and the options that make SciPy stop at the same gradient size.
METHODS = {
    "BFGS": (lambda p: so.bfgs(p.f_and_grad, p.x0, gtol=GTOL), {"gtol": GTOL}),
    "CG": (lambda p: so.nonlinear_cg(p.f_and_grad, p.x0, gtol=GTOL), {"gtol": GTOL}),
    "L-BFGS-B": (lambda p: so.lbfgs(p.f_and_grad, p.x0, gtol=GTOL, tolerance_change=0.0),
                 {"gtol": GTOL, "ftol": 1e-15, "maxcor": 10}),
    "Newton-CG": (lambda p: so.newton_cg(p.f_and_grad, p.hessp, p.x0, gtol=GTOL),
                  {"xtol": 1e-12}),
}


def _scipy(problem, method, options):
    extra = {"hessp": problem.hessp} if method == "Newton-CG" else {}
    return scipy.optimize.minimize(problem.f_and_grad, problem.x0, jac=True, method=method,
                                   options=options, **extra)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", PROBLEMS)
def test_minimizers_agree_with_scipy(name, method):
    problem = PROBLEMS[name]
    ours, options = METHODS[method]
    result, reference = ours(problem), _scipy(problem, method, options)
    assert result.converged, result.message
    assert np.max(np.abs(result.grad)) <= GTOL
    # Both land on the minimiser (strong convexity turns gtol into a bound on the distance).
    np.testing.assert_allclose(result.x, problem.x_star, atol=2e-6)
    np.testing.assert_allclose(result.x, reference.x, atol=4e-6)
    assert result.fun == pytest.approx(reference.fun, abs=1e-12)
    # Comparable work: never more than 1.5x SciPy's iterations plus a little slack.
    assert result.nit <= 1.5 * reference.nit + 5, (result.nit, reference.nit)
    assert not any(math.isnan(v) for v in result.values)


@pytest.mark.parametrize("name", PROBLEMS)
def test_newton_agrees_with_scipy_trust_exact(name):
    problem = PROBLEMS[name]
    result = so.newton(problem.f_and_grad, problem.hessian, problem.x0, gtol=GTOL)
    reference = scipy.optimize.minimize(problem.f_and_grad, problem.x0, jac=True,
                                        hess=problem.hessian, method="trust-exact",
                                        options={"gtol": GTOL})
    assert result.converged
    np.testing.assert_allclose(result.x, reference.x, atol=4e-6)
    assert result.nit <= 1.5 * reference.nit + 5


@pytest.mark.parametrize("beta", ["FR", "PR+"])
def test_nonlinear_cg_variants_converge(beta):
    problem = PROBLEMS["logistic"]
    result = so.nonlinear_cg(problem.f_and_grad, problem.x0, beta=beta, gtol=GTOL)
    assert result.converged
    np.testing.assert_allclose(result.x, problem.x_star, atol=2e-6)


def test_bfgs_with_armijo_converges():
    problem = PROBLEMS["rosenbrock"]
    result = so.bfgs(problem.f_and_grad, problem.x0, line_search="armijo", gtol=GTOL)
    assert result.converged
    np.testing.assert_allclose(result.x, problem.x_star, atol=1e-6)


@pytest.mark.parametrize("line_search", ["armijo", None])
def test_lbfgs_other_line_searches(line_search):
    problem = PROBLEMS["logistic"]
    result = so.lbfgs(problem.f_and_grad, problem.x0, line_search=line_search, gtol=1e-7,
                      lr=1.0 if line_search else 0.5, max_iter=5000, tolerance_change=0.0)
    assert result.converged, result.message
    np.testing.assert_allclose(result.x, problem.x_star, atol=2e-5)


# ----------------------------------------------------------------------- torch.optim.LBFGS


def _torch_problem():
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(64, 5, dtype=torch.float64, generator=generator)
    Y = torch.sin(X.sum(1, keepdim=True))
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    return X, Y, model.double()


@pytest.mark.parametrize("line_search", ["strong_wolfe", None])
def test_lbfgs_matches_torch_step_for_step(line_search):
    lr, steps, history = (1.0 if line_search else 0.2), 60, 5
    X, Y, model = _torch_problem()
    params = list(model.parameters())
    x0 = torch.nn.utils.parameters_to_vector(params).detach().clone()

    opt = torch.optim.LBFGS(params, lr=lr, max_iter=1, max_eval=1 + 25, history_size=history,
                            line_search_fn=line_search, tolerance_grad=0, tolerance_change=0)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(X), Y)
        loss.backward()
        return loss

    torch_path = []
    for _ in range(steps):
        opt.step(closure)
        torch_path.append(torch.nn.utils.parameters_to_vector(params).detach().clone())

    _, _, twin = _torch_problem()
    twin_params = list(twin.parameters())

    def f_and_grad(x):
        torch.nn.utils.vector_to_parameters(x, twin_params)
        twin.zero_grad()
        loss = torch.nn.functional.mse_loss(twin(X), Y)
        loss.backward()
        return loss.item(), torch.cat([p.grad.reshape(-1) for p in twin_params])

    result = so.lbfgs(f_and_grad, x0, history_size=history, line_search=line_search, lr=lr,
                      gtol=0.0, tolerance_change=0.0, max_iter=steps)
    assert result.nit == steps
    for k, (ours, theirs) in enumerate(zip(result.path[1:], torch_path, strict=True)):
        assert torch.equal(ours, theirs), f"step {k + 1}: max diff {(ours - theirs).abs().max()}"
    assert result.values[-1] < 0.5 * result.values[0]


# --------------------------------------------------------------------- linear CG, Newton step


def _spd(n, seed):
    """A random symmetric positive-definite ``M M^T / n + I`` (condition number about 5)."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n))
    return M @ M.T / n + np.eye(n), rng.standard_normal(n)


@pytest.mark.parametrize("seed", range(5))
def test_linear_cg_solves_spd_system_within_n_steps(seed):
    n = 40
    A, b = _spd(n, seed)
    result = so.conjugate_gradient(A, b, tol=1e-10)
    assert result.nit <= n
    assert np.linalg.norm(b - A @ result.x) <= 1e-10 * np.linalg.norm(b)
    np.testing.assert_allclose(result.x, np.linalg.solve(A, b), atol=1e-9)


def test_linear_cg_steps_equal_distinct_eigenvalues():
    rng = np.random.default_rng(3)
    Q, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    A = (Q * np.repeat([1.0, 4.0, 9.0], 10)) @ Q.T  # three distinct eigenvalues
    result = so.conjugate_gradient(A, rng.standard_normal(30), tol=1e-10)
    assert result.nit == 3


def test_linear_cg_accepts_matvec_and_torch():
    A, b = _spd(10, 0)
    At, bt = torch.tensor(A), torch.tensor(b)
    result = so.conjugate_gradient(lambda v: At @ v, bt)
    assert torch.allclose(result.x, torch.linalg.solve(At, bt), atol=1e-8)


def test_newton_step_solves_a_quadratic_in_one_step():
    A, b = _spd(6, 1)
    x = np.random.default_rng(2).standard_normal(6)
    step = so.newton_step(A @ x - b, A)  # f = x^T A x / 2 - b^T x
    np.testing.assert_allclose(x + step, np.linalg.solve(A, b), rtol=1e-10)


def test_pure_newton_converges_to_a_saddle_damped_newton_descends():
    f = functions.SADDLE  # x^2 - y^2, saddle at the origin
    start = np.array([0.5, 0.3])
    pure = so.newton(f.value_and_grad, f.hessian, start, damping=None, line_search=None)
    assert pure.converged and np.allclose(pure.x, 0.0)
    step, tau = so.damped_newton_step(f.grad(start), f.hessian(start))
    assert tau > 2 and f.grad(start) @ step < 0


def test_damped_step_is_newton_step_for_positive_definite_hessians():
    A, b = _spd(5, 4)
    step, tau = so.damped_newton_step(b, A)
    assert tau == 0
    np.testing.assert_allclose(step, so.newton_step(b, A))


def test_two_loop_equals_dense_bfgs_updates():
    rng = np.random.default_rng(5)
    A, _ = _spd(8, 5)
    S = [rng.standard_normal(8) for _ in range(4)]
    Y = [A @ s for s in S]
    gamma = (Y[-1] @ S[-1]) / (Y[-1] @ Y[-1])
    B = gamma * np.eye(8)
    for s, y in zip(S, Y, strict=True):
        B = so.bfgs_update(B, s, y)
    g = rng.standard_normal(8)
    np.testing.assert_allclose(so.two_loop(g, S, Y, gamma), B @ g, rtol=1e-10)
    np.testing.assert_allclose(B @ Y[-1], S[-1], rtol=1e-10)  # secant equation


def test_hessian_vector_products():
    f = functions.BEALE
    x, v = np.array([1.0, 1.5]), np.array([0.3, -0.7])
    exact = f.hessian(x) @ v
    np.testing.assert_allclose(so.hvp_fd(f.grad, x, v), exact, rtol=1e-7)
    hessp = so.hvp_torch(f.value)
    np.testing.assert_allclose(hessp(torch.tensor(x), torch.tensor(v)).numpy(), exact, rtol=1e-12)
    np.testing.assert_allclose(LOGREG.hessp(np.ones(10), np.arange(10.0)),
                               LOGREG.hessian(np.ones(10)) @ np.arange(10.0), rtol=1e-12)


def test_newton_cg_with_torch_hvp():
    f = functions.ROSENBROCK
    result = so.newton_cg(f.value_and_grad, lambda x, v: so.hvp_torch(f.value)(
        torch.tensor(x), torch.tensor(v)).numpy(), np.array(f.start), gtol=GTOL)
    assert result.converged and np.allclose(result.x, f.minimum, atol=1e-6)


def test_strong_wolfe_conditions_hold():
    f = functions.ROSENBROCK
    x = np.array(f.start)
    fx, g = f.value_and_grad(x)
    p = -g
    t, f_new, g_new, _ = so.strong_wolfe(f.value_and_grad, x, p, float(fx), g, g @ p, 1e-3)
    assert f_new <= fx + 1e-4 * t * (g @ p)
    assert abs(g_new @ p) <= 0.9 * abs(g @ p)


def test_cubic_minimizer_of_a_cubic():
    # f(t) = (t - 2)^2 (a quadratic is a cubic): slopes -4 at 0, 2 at 3 -> minimiser 2.
    assert so.cubic_minimizer(0.0, 4.0, -4.0, 3.0, 1.0, 2.0) == pytest.approx(2.0)


# ---------------------------------------------------------------------------------- errors


def test_singular_hessian_is_an_error():
    with pytest.raises(so.SingularHessianError, match="singular"):
        so.newton_step(np.array([1.0, 1.0]), np.array([[1.0, 1.0], [1.0, 1.0]]))


def test_indefinite_matrix_in_cg_is_an_error():
    A = np.diag([1.0, -1.0])
    with pytest.raises(so.IndefiniteHessianError, match="not positive definite"):
        so.conjugate_gradient(A, np.array([1.0, 1.0]))
    stopped = so.conjugate_gradient(A, np.array([1.0, 1.0]), on_indefinite="stop")
    assert stopped.negative_curvature


def test_uphill_newton_step_with_line_search_is_an_error():
    f = functions.SADDLE
    with pytest.raises(so.NotDescentDirectionError, match="not downhill"):
        # Newton's step -(x, y) has slope g^T p = 2 (y^2 - x^2) > 0 here.
        so.newton(f.value_and_grad, f.hessian, np.array([0.3, 0.5]), damping=None)


def test_non_descent_direction_in_line_search():
    x = np.array([1.0, 1.0])
    with pytest.raises(so.NotDescentDirectionError):
        so.armijo(functions.RAVINE.value_and_grad, x, x, 1.0, 0.5)


def test_failed_line_search_raises_with_partial_result():
    def f_and_grad(x):  # the gradient lies: it points the wrong way, so no step decreases f
        return float(x @ x), -2 * x

    with pytest.raises(so.LineSearchError) as info:
        so.bfgs(f_and_grad, np.array([1.0, 2.0]), line_search="armijo")
    assert info.value.result is not None and info.value.result.nit == 0
    with pytest.raises(so.LineSearchError):
        so.lbfgs(f_and_grad, np.array([1.0, 2.0]))


@pytest.mark.parametrize("method", ["bfgs", "lbfgs", "nonlinear_cg"])
def test_non_finite_gradient_is_rejected(method):
    def f_and_grad(x):
        g = 2 * x
        if abs(x[0]) < 0.9:
            g = g * np.nan
        return float(x @ x), g

    with pytest.raises(so.NonFiniteError, match="NaN or infinity"):
        getattr(so, method)(f_and_grad, np.array([1.0, 0.0]))


def test_non_finite_start_and_inputs_are_rejected():
    with pytest.raises(so.NonFiniteError):
        so.lbfgs(functions.RAVINE.value_and_grad, np.array([np.nan, 0.0]))
    with pytest.raises(so.NonFiniteError):
        so.newton_step(np.array([1.0, 0.0]), np.array([[np.inf, 0.0], [0.0, 1.0]]))
    with pytest.raises(TypeError, match="floating"):
        so.bfgs(functions.RAVINE.value_and_grad, np.array([1, 2]))
    with pytest.raises(ValueError, match="history_size"):
        so.lbfgs(functions.RAVINE.value_and_grad, np.array([1.0, 2.0]), history_size=0)
    with pytest.raises(ValueError, match="line_search"):
        so.newton(functions.RAVINE.value_and_grad, functions.RAVINE.hessian,
                  np.array([1.0, 2.0]), line_search="wolfe")


def test_infinite_trial_values_are_backtracked_not_returned():
    def f_and_grad(x):  # f = inf beyond |x| > 2: a too-long trial step must be shortened
        value = float(x @ x) if np.all(np.abs(x) < 2) else math.inf
        return value, 2 * x

    result = so.lbfgs(f_and_grad, np.array([1.5, -1.0]), lr=10.0)
    assert result.converged and all(math.isfinite(v) for v in result.values)
