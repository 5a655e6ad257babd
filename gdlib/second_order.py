"""Second-order and quasi-Newton methods (근사 2차 방법, seed 003 §8.6): Newton, CG, BFGS, L-BFGS.

Every minimizer takes ``f_and_grad(x) -> (f(x), grad f(x))`` (e.g.
``functions.ROSENBROCK.value_and_grad``) and a starting point ``x0`` (a 1-D floating array), and
returns a ``Result`` with the whole path, for plots::

    from gdlib import functions, second_order as so
    f = functions.ROSENBROCK
    res = so.lbfgs(f.value_and_grad, f.start, history_size=10)
    res.x, res.fun, res.nit, res.path, res.values, res.times

Notation: ``g_k = grad f(x_k)``, ``H_k`` the Hessian (헤세 행렬) at ``x_k``, ``p_k`` the search
direction, ``t_k`` the step length found by the line search, ``s_k = x_{k+1} - x_k`` and
``y_k = g_{k+1} - g_k``. All methods stop, converged, when ``max_i |g_k[i]| <= gtol`` (the
infinity norm, SciPy's default for BFGS and CG).

==============  ======================================================  ==========================
method          direction                                               cost per step (k = dim)
==============  ======================================================  ==========================
newton          ``(H + tau I) p = -g``, Cholesky; ``tau = 0`` if H > 0   O(k^3) time, O(k^2) memory
newton_cg       ``H p = -g`` solved inexactly by CG, H only via ``H v``  a few ``H v`` products
nonlinear_cg    ``p = -g + beta p_prev`` (Fletcher-Reeves, PR+)          O(k)
bfgs            ``p = -B g``, ``B`` the inverse-Hessian estimate         O(k^2)
lbfgs           ``p = -B g`` by the two-loop recursion, m pairs          O(m k)
==============  ======================================================  ==========================

``conjugate_gradient`` solves ``A x = b`` for a symmetric positive-definite ``A`` (a matrix or
a function ``v -> A v``). ``newton_step`` and ``two_loop`` are the bare directions (the chapter's
exercise). ``hvp_fd`` and ``hvp_torch`` give Hessian-vector products without the Hessian.

Bad input never yields NaN as a result: non-finite gradients raise ``NonFiniteError``; a singular
Hessian ``SingularHessianError``; a Hessian that is not positive definite where one is required
``IndefiniteHessianError``; an uphill direction ``NotDescentDirectionError``; a line search that
finds no acceptable step ``LineSearchError`` (it carries the partial ``Result`` as ``.result``).
All are ``SecondOrderError``, an ``ArithmeticError``. Documented fallbacks instead of errors:
a line search that fails because ``|g^T p|`` is below the resolution of ``f`` (``PRECISION_LIMIT``)
ends the run with ``converged=False`` and a "precision limit" message (SciPy's "precision loss");
BFGS/L-BFGS skip an update when ``y^T s <= 1e-10`` (curvature condition fails), nonlinear CG
restarts with ``-g`` when its direction is not downhill, Newton-CG uses ``-g`` when the Hessian has
negative curvature along the first CG direction.

The L-BFGS iteration, its strong-Wolfe line search (Nocedal & Wright 2006, Algorithms 3.5-3.6 with
cubic interpolation and minFunc's safeguards) and its stopping tests follow ``torch.optim.LBFGS``
exactly, so the two visit the same points (tested step for step).
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg

from gdlib import arrays

# --------------------------------------------------------------------------------------- errors


class SecondOrderError(ArithmeticError):
    """Base class: a second-order method cannot continue from the given input."""


class NonFiniteError(SecondOrderError, ValueError):
    """A gradient, Hessian or starting point holds NaN or infinity."""


class SingularHessianError(SecondOrderError):
    """The Newton system ``H p = -g`` has no unique solution (H singular to working precision)."""


class IndefiniteHessianError(SecondOrderError):
    """A matrix required to be positive definite is not (``p^T A p <= 0`` or Cholesky failed)."""


class NotDescentDirectionError(SecondOrderError):
    """A search direction ``p`` with ``g^T p >= 0``: no step along it lowers ``f``."""


class LineSearchError(SecondOrderError):
    """The line search found no step satisfying its conditions.

    ``result`` holds the ``Result`` up to the last accepted iterate (or ``None`` when the line
    search was called on its own).
    """

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result


# --------------------------------------------------------------------------------------- result


@dataclass
class Result:
    """What every minimizer returns.

    ``x``, ``fun``, ``grad``: the last iterate, ``f`` and the gradient there; ``nit``: iterations
    (accepted steps); ``nfev``: calls of ``f_and_grad``; ``converged``: ``max|grad| <= gtol``;
    ``message``: why it stopped; ``path[k]``, ``values[k]``, ``times[k]``: iterate ``x_k``, its
    ``f`` and the seconds elapsed when it was reached (``times[0] = 0``).
    """

    x: object
    fun: float
    grad: object
    nit: int = 0
    nfev: int = 0
    converged: bool = False
    message: str = ""
    path: list = field(default_factory=list)
    values: list = field(default_factory=list)
    times: list = field(default_factory=list)


class _Run:
    """Book-keeping shared by the minimizers: counts evaluations, checks gradients, records."""

    def __init__(self, f_and_grad: Callable, x0, gtol: float, max_iter: int):
        _require_positive(gtol, "gtol", allow_zero=True)
        if not (isinstance(max_iter, int) and max_iter >= 0):
            raise ValueError(f"max_iter must be an int >= 0, got {max_iter!r}")
        self.f_and_grad, self.gtol, self.max_iter = f_and_grad, gtol, max_iter
        self.nfev, self.start = 0, time.perf_counter()
        x = _vector(x0, "x0")
        f, g = self.evaluate(x)
        if not math.isfinite(f):
            raise NonFiniteError(f"f(x0) is {f}")
        self.result = Result(x, f, g)
        self._record()

    def evaluate(self, x):
        """``(f, g)`` at ``x`` with ``f`` a float; ``f = inf`` when ``f`` is NaN or infinite."""
        f, g = self.f_and_grad(x)
        self.nfev += 1
        f = float(f)
        return (f if math.isfinite(f) else math.inf), _vector(g, "gradient", finite=False)

    def accept(self, x, f: float, g) -> None:
        """Make ``x`` the next iterate; its gradient must be finite."""
        if not _all_finite(g):
            self.result.nfev = self.nfev
            raise NonFiniteError(
                f"the gradient at iterate {self.result.nit + 1} contains NaN or infinity"
            )
        r = self.result
        r.x, r.fun, r.grad, r.nit = x, f, g, r.nit + 1
        self._record()

    def converged(self) -> bool:
        return _max_abs(self.result.grad) <= self.gtol

    def line_search(self, search: str, x, p, t0: float, gtd: float, **kwargs):
        """Step ``(t, f, g)`` along ``p`` from the current iterate, ``search`` in LINE_SEARCHES.

        ``None`` when the search fails at the precision limit (``|g^T p| <= PRECISION_LIMIT
        |f|``: no decrease of ``f`` is resolvable in floating point); ``self.stop_message`` then
        says so. Any other failure raises ``LineSearchError`` with the partial result.
        """
        r = self.result
        try:
            if search == "strong_wolfe":
                t, f, g, _ = strong_wolfe(self.evaluate, x, p, r.fun, r.grad, gtd, t0, **kwargs)
            else:
                t, f, g = armijo(self.evaluate, x, p, r.fun, gtd, t0, **_armijo_options(kwargs))
        except LineSearchError as error:
            if abs(gtd) <= PRECISION_LIMIT * abs(r.fun):
                self.stop_message = (
                    f"precision limit: the line search cannot lower f = {r.fun:.17g} any further "
                    f"(|g^T p| = {abs(gtd):.3g}, max|g| = {_max_abs(r.grad):.3g} > gtol)"
                )
                return None
            raise LineSearchError(str(error), self.finish(False, str(error))) from None
        return t, f, g

    def finish(self, converged: bool, message: str) -> Result:
        r = self.result
        r.nfev, r.converged, r.message = self.nfev, converged, message
        return r

    def done(self):
        """The final ``Result`` if a stopping test holds before another step, else ``None``."""
        if self.converged():
            return self.finish(True, f"max|grad| <= gtol = {self.gtol:g}")
        if self.result.nit >= self.max_iter:
            return self.finish(False, f"max_iter = {self.max_iter} iterations reached")
        return None

    def _record(self) -> None:
        r = self.result
        r.path.append(_copy(r.x))
        r.values.append(r.fun)
        r.times.append(time.perf_counter() - self.start)


LINE_SEARCHES = ("strong_wolfe", "armijo")
#: A failed line search with ``|g^T p| <= PRECISION_LIMIT |f|`` ends the run (not converged,
#: no error): a decrease that small is below the resolution of ``f`` in double precision.
PRECISION_LIMIT = 1e3 * np.finfo(np.float64).eps

# ------------------------------------------------------------------------------ line searches


def armijo(evaluate: Callable, x, p, f0: float, gtd: float, t0: float = 1.0, *, c1: float = 1e-4,
           shrink: float = 0.5, max_evals: int = 60):
    """Backtracking line search: the first ``t = t0 shrink^j`` with sufficient decrease.

    Armijo's condition (Nocedal & Wright eq 3.4): ``f(x + t p) <= f(x) + c1 t g^T p``.
    ``evaluate(x) -> (f, g)``; ``gtd = g^T p`` must be negative. Returns ``(t, f, g)`` at the
    accepted point; raises ``NotDescentDirectionError`` when ``gtd >= 0`` and
    ``LineSearchError`` after ``max_evals`` rejected trials or once ``t max|p|`` falls below the
    floating-point resolution of ``x`` (the step would not move ``x``).
    """
    _require_descent(gtd)
    t, resolution = t0, np.finfo(np.float64).eps * max(1.0, _max_abs(x))
    for _ in range(max_evals):
        if t * _max_abs(p) <= resolution:
            break
        f, g = evaluate(_axpy(x, t, p))
        if f <= f0 + c1 * t * gtd:
            return t, f, g
        t *= shrink
    raise LineSearchError(
        f"Armijo backtracking found no sufficient decrease (last t = {t:.3g}; is the gradient "
        "right?)"
    )


def strong_wolfe(evaluate: Callable, x, p, f0: float, g0, gtd0: float, t: float = 1.0, *,
                 c1: float = 1e-4, c2: float = 0.9, tolerance_change: float = 1e-9,
                 max_ls: int = 25):
    """A step ``t`` with the strong Wolfe conditions (Nocedal & Wright eq 3.7), as torch does it.

    ``f(x + t p) <= f(x) + c1 t g^T p``  (sufficient decrease) and
    ``|grad f(x + t p)^T p| <= c2 |g^T p|``  (curvature), ``0 < c1 < c2 < 1``.

    Phase 1 (bracketing) grows ``t`` by cubic extrapolation within ``[t + 0.01 (t - t_prev),
    10 t]`` until an interval holds an acceptable step; phase 2 (zoom) shrinks the interval by
    cubic interpolation, moving a trial that lands within 10% of an end inwards. At most
    ``max_ls`` evaluations after the first; zoom stops when the interval is shorter than
    ``tolerance_change / max|p|``. Returns ``(t, f, g, evaluations)`` at the best point found
    (torch.optim.LBFGS's ``_strong_wolfe``); raises ``LineSearchError`` only when that point
    does not even satisfy sufficient decrease, and ``NotDescentDirectionError`` if ``gtd0 >= 0``.
    """
    _require_descent(gtd0)
    p_norm = _max_abs(p)
    f_new, g_new = evaluate(_axpy(x, t, p))
    evals, gtd_new = 1, _dot(g_new, p)
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f0, g0, gtd0
    done, ls_iter = False, 0
    bracket = None
    while ls_iter < max_ls:
        if f_new > f0 + c1 * t * gtd0 or (ls_iter > 1 and f_new >= f_prev):
            bracket = [[t_prev, f_prev, g_prev, gtd_prev], [t, f_new, g_new, gtd_new]]
            break
        if abs(gtd_new) <= -c2 * gtd0:
            bracket, done = [[t, f_new, g_new, gtd_new]], True
            break
        if gtd_new >= 0:
            bracket = [[t_prev, f_prev, g_prev, gtd_prev], [t, f_new, g_new, gtd_new]]
            break
        bounds = (t + 0.01 * (t - t_prev), 10 * t)
        t_next = cubic_minimizer(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds)
        t_prev, f_prev, g_prev, gtd_prev = t, f_new, g_new, gtd_new
        t = t_next
        f_new, g_new = evaluate(_axpy(x, t, p))
        evals, gtd_new, ls_iter = evals + 1, _dot(g_new, p), ls_iter + 1
    if ls_iter == max_ls:
        bracket = [[0.0, f0, g0, gtd0], [t, f_new, g_new, gtd_new]]
    low, high = (0, 1) if bracket[0][1] <= bracket[-1][1] else (1, 0)
    insufficient_progress = False
    while not done and ls_iter < max_ls:
        (a, fa, _, ga), (b, fb, _, gb) = bracket
        if abs(b - a) * p_norm < tolerance_change:
            break
        t = cubic_minimizer(a, fa, ga, b, fb, gb)
        t, insufficient_progress = _keep_inside(t, a, b, insufficient_progress)
        f_new, g_new = evaluate(_axpy(x, t, p))
        evals, gtd_new, ls_iter = evals + 1, _dot(g_new, p), ls_iter + 1
        trial = [t, f_new, g_new, gtd_new]
        if f_new > f0 + c1 * t * gtd0 or f_new >= bracket[low][1]:
            bracket[high] = trial
            low, high = (0, 1) if bracket[0][1] <= bracket[1][1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd0:
                done = True
            elif gtd_new * (bracket[high][0] - bracket[low][0]) >= 0:
                bracket[high] = bracket[low]
            bracket[low] = trial
    t, f_new, g_new, _ = bracket[low]
    if not (t > 0 and f_new <= f0 + c1 * t * gtd0):
        raise LineSearchError(
            f"strong-Wolfe line search found no step with sufficient decrease in {evals} "
            f"evaluations (best t = {t:.3g})"
        )
    return t, f_new, g_new, evals


def _keep_inside(t: float, a: float, b: float, insufficient_progress: bool):
    """Move a zoom trial ``t`` that falls within 10% of an end of ``[a, b]`` inwards (torch)."""
    lo, hi = min(a, b), max(a, b)
    eps = 0.1 * (hi - lo)
    if min(hi - t, t - lo) >= eps:
        return t, False
    if insufficient_progress or t >= hi or t <= lo:
        return (hi - eps if abs(t - hi) < abs(t - lo) else lo + eps), False
    return t, True


def cubic_minimizer(x1: float, f1: float, g1: float, x2: float, f2: float, g2: float,
                    bounds=None) -> float:
    """Minimizer of the cubic through ``(x1, f1)``, ``(x2, f2)`` with slopes ``g1``, ``g2``.

    Nocedal & Wright eq 3.59: ``d1 = g1 + g2 - 3 (f1 - f2) / (x1 - x2)``,
    ``d2 = sqrt(d1^2 - g1 g2)``, ``x = x2 - (x2 - x1) (g2 + d2 - d1) / (g2 - g1 + 2 d2)``,
    clipped to ``bounds`` (default: the interval between ``x1`` and ``x2``); the middle of the
    bounds when the cubic has no minimizer or an input is not finite.
    """
    lo, hi = bounds if bounds is not None else (min(x1, x2), max(x1, x2))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 * d1 - g1 * g2
    if not (math.isfinite(d2_square) and d2_square >= 0):
        return (lo + hi) / 2.0
    d2 = math.sqrt(d2_square)
    if x1 <= x2:
        x = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        x = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(x, lo), hi) if math.isfinite(x) else (lo + hi) / 2.0


# ----------------------------------------------------------------------------------- Newton


def newton_step(grad, hessian):
    """The Newton step ``p = -H^{-1} g``: the stationary point of the second-order Taylor model.

    ``m(p) = f(x) + g^T p + 1/2 p^T H p`` has gradient ``g + H p``, zero at ``H p = -g``. On a
    quadratic ``f(x) = 1/2 x^T A x - b^T x`` (``H = A``) one step from any ``x`` lands on the
    minimizer ``A^{-1} b``. Nothing requires ``H`` to be positive definite: with an indefinite
    ``H`` the step goes to a saddle of the model, with a negative definite one to its maximum.
    Raises ``SingularHessianError`` when ``H`` is singular to working precision and
    ``NonFiniteError`` on NaN/infinity. ``grad`` shape ``(k,)``, ``hessian`` ``(k, k)``.
    """
    g, H = _newton_inputs(grad, hessian)
    condition = np.linalg.cond(H)
    if not condition < 1 / np.finfo(H.dtype).eps:
        raise SingularHessianError(
            f"the Hessian is singular to working precision (condition number {condition:.3g}); "
            "use damped_newton_step or newton(damping='levenberg')"
        )
    return -np.linalg.solve(H, g)


def damped_newton_step(grad, hessian, *, beta: float = 1e-3):
    """Levenberg-shifted Newton step ``p = -(H + tau I)^{-1} g`` with ``H + tau I`` positive definite.

    Nocedal & Wright Algorithm 3.3 (Cholesky with added multiple of the identity): ``tau = 0``
    if ``min_i H_ii > 0``, else ``tau = beta - min_i H_ii``; while the Cholesky factorisation of
    ``H + tau I`` fails, ``tau = max(2 tau, beta)``. For positive-definite ``H`` this is the
    Newton step; otherwise ``p`` is a descent direction (``g^T p < 0`` for ``g != 0``) between
    Newton (``tau -> 0``) and gradient descent with step ``1/tau`` (``tau -> inf``).
    Returns ``(p, tau)``.
    """
    g, H = _newton_inputs(grad, hessian)
    _require_positive(beta, "beta")
    diagonal_min = float(np.min(np.diag(H)))
    tau = 0.0 if diagonal_min > 0 else beta - diagonal_min
    identity = np.eye(H.shape[0], dtype=H.dtype)
    for _ in range(200):
        try:
            factor = scipy.linalg.cho_factor(H + tau * identity, check_finite=False)
        except np.linalg.LinAlgError:
            tau = max(2 * tau, beta)
            continue
        return scipy.linalg.cho_solve(factor, -g, check_finite=False), tau
    raise IndefiniteHessianError(f"no shift tau <= {tau:.3g} made H + tau I positive definite")


def newton(f_and_grad: Callable, hessian: Callable, x0, *, damping: str | None = "levenberg",
           line_search: str | None = "armijo", gtol: float = 1e-8, max_iter: int = 100,
           beta: float = 1e-3) -> Result:
    """Newton's method ``x_{k+1} = x_k + t_k p_k`` (seed 003 §8.6.1; seed 000 eq 31).

    ``hessian(x)`` returns the ``(k, k)`` Hessian. ``p_k`` is ``newton_step`` (``damping=None``,
    pure Newton: it is attracted to any stationary point, saddles and maxima included) or
    ``damped_newton_step`` (``damping="levenberg"``: always downhill). ``line_search=None``
    takes ``t_k = 1``; ``"armijo"`` or ``"strong_wolfe"`` start from ``t = 1``. With a line
    search and ``damping=None``, an uphill Newton step raises ``NotDescentDirectionError``.
    Each iteration costs one factorisation, O(k^3) time, and stores H, O(k^2) memory.
    """
    _require_choice(damping, "damping", (None, "levenberg"))
    _require_choice(line_search, "line_search", (None, *LINE_SEARCHES))
    run = _Run(f_and_grad, x0, gtol, max_iter)
    while (result := run.done()) is None:
        r = run.result
        H = hessian(r.x)
        p = newton_step(r.grad, H) if damping is None else damped_newton_step(r.grad, H, beta=beta)[0]
        if line_search is None:
            x = r.x + p
            f, g = run.evaluate(x)
            if not math.isfinite(f):
                raise NonFiniteError(f"f is not finite after Newton step {r.nit + 1}")
        else:
            if (step := run.line_search(line_search, r.x, p, 1.0, _dot(r.grad, p))) is None:
                return run.finish(False, run.stop_message)
            t, f, g = step
            x = _axpy(r.x, t, p)
        run.accept(x, f, g)
    return result


# -------------------------------------------------------------------- Hessian-vector products


def hvp_fd(grad: Callable, x, v, h: float | None = None):
    """Hessian-vector product by central differences of the gradient, no Hessian formed.

    ``H v ~ (grad(x + h v) - grad(x - h v)) / (2 h)``, error O(h^2); the default
    ``h = eps^(1/3) max(1, ||x||) / ||v||`` balances truncation and rounding error.
    ``grad(x)`` returns the gradient (e.g. ``functions.BEALE.grad``).
    """
    x, v = _vector(x, "x"), _vector(v, "v")
    v_norm = _norm(v)
    if v_norm == 0:
        return v * 0
    if h is None:
        h = np.finfo(np.float64).eps ** (1 / 3) * max(1.0, _norm(x)) / v_norm
    hv = (_vector(grad(x + h * v), "gradient") - _vector(grad(x - h * v), "gradient")) / (2 * h)
    return hv


def hvp_torch(fun: Callable) -> Callable:
    """``hessp(x, v) = H(x) v`` of a scalar torch function by double backpropagation.

    ``H v = grad_x (grad_x f(x)^T v)`` (Pearlmutter 1994): two backward passes, about the cost of
    two gradients, never the ``k x k`` Hessian.
    """
    import torch

    def hessp(x, v):
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(fun(x), x, create_graph=True)
            (hv,) = torch.autograd.grad(g, x, grad_outputs=v)
        return hv.detach()

    return hessp


# ------------------------------------------------------------------------- conjugate gradient


@dataclass
class CGResult:
    """``x``: the solution; ``nit``: iterations; ``residuals[j] = ||b - A x_j||`` (recursive
    residual); ``negative_curvature``: stopped on ``p^T A p <= 0`` (only with ``on_indefinite=
    "stop"``)."""

    x: object
    nit: int
    residuals: list
    negative_curvature: bool = False


def conjugate_gradient(A, b, x0=None, *, tol: float = 1e-10, max_iter: int | None = None,
                       on_indefinite: str = "raise") -> CGResult:
    """Linear conjugate gradient (켤레 기울기법) for ``A x = b``, ``A`` symmetric positive definite.

    ``A`` is a ``(k, k)`` matrix or a function ``v -> A v``. Nocedal & Wright Algorithm 5.2:
    ``r = b - A x``, ``p = r``; repeat ``alpha = r^T r / p^T A p``, ``x += alpha p``,
    ``r_new = r - alpha A p``, ``beta = r_new^T r_new / r^T r``, ``p = r_new + beta p``. The
    directions are A-conjugate (``p_i^T A p_j = 0``), so in exact arithmetic ``x`` is exact after
    at most ``k`` steps (after as many steps as A has distinct eigenvalues). Stops when
    ``||r|| <= tol ||b||``; ``max_iter`` defaults to ``10 k``. ``p^T A p <= 0`` means ``A`` is not
    positive definite: ``on_indefinite="raise"`` raises ``IndefiniteHessianError``, ``"stop"``
    returns the current ``x`` flagged ``negative_curvature`` (Newton-CG uses this).
    """
    _require_choice(on_indefinite, "on_indefinite", ("raise", "stop"))
    b = _vector(b, "b")
    matvec = A if callable(A) else _matrix_operator(A, b)
    x = b * 0 if x0 is None else _vector(x0, "x0")
    r = b - matvec(x) if x0 is not None else b.clone() if arrays.is_tensor(b) else b.copy()
    p, rr = r, _dot(r, r)
    b_norm, residuals = _norm(b), [math.sqrt(rr)]
    max_iter = 10 * b.shape[0] if max_iter is None else max_iter
    nit = 0
    while residuals[-1] > tol * b_norm and nit < max_iter:
        Ap = matvec(p)
        curvature = _dot(p, Ap)
        if not curvature > 0:
            if on_indefinite == "raise":
                raise IndefiniteHessianError(
                    f"p^T A p = {curvature:.3g} <= 0 at CG iteration {nit + 1}: A is not positive "
                    "definite"
                )
            return CGResult(x, nit, residuals, True)
        alpha = rr / curvature
        x, r = x + alpha * p, r - alpha * Ap
        rr_new = _dot(r, r)
        p, rr = r + (rr_new / rr) * p, rr_new
        nit += 1
        residuals.append(math.sqrt(rr))
    return CGResult(x, nit, residuals)


def newton_cg(f_and_grad: Callable, hessp: Callable, x0, *, line_search: str = "armijo",
              gtol: float = 1e-8, max_iter: int = 100) -> Result:
    """Truncated Newton: ``H_k p = -g_k`` solved inexactly by CG using only ``hessp(x, v) = H v``.

    The inner CG stops at ``||H p + g|| <= eta_k ||g||`` with the forcing term
    ``eta_k = min(0.5, sqrt(||g||))`` (superlinear convergence, Nocedal & Wright Algorithm 7.1), or
    when it meets negative curvature: it then keeps the direction built so far, or ``-g`` if
    that happens on the first inner step. A line search from ``t = 1`` follows.
    ``hessp`` can be ``hvp_torch(f)`` or ``lambda x, v: hvp_fd(grad, x, v)``.
    """
    _require_choice(line_search, "line_search", LINE_SEARCHES)
    run = _Run(f_and_grad, x0, gtol, max_iter)
    while (result := run.done()) is None:
        r = run.result
        g_norm = _norm(r.grad)
        eta = min(0.5, math.sqrt(g_norm))
        inner = conjugate_gradient(lambda v, x=r.x: hessp(x, v), -r.grad, tol=eta,
                                   max_iter=10 * r.grad.shape[0], on_indefinite="stop")
        p = -r.grad if inner.nit == 0 else inner.x
        if (step := run.line_search(line_search, r.x, p, 1.0, _dot(r.grad, p))) is None:
            return run.finish(False, run.stop_message)
        t, f, g = step
        run.accept(_axpy(r.x, t, p), f, g)
    return result


def nonlinear_cg(f_and_grad: Callable, x0, *, beta: str = "PR+", gtol: float = 1e-6,
                 max_iter: int = 1000, c1: float = 1e-4, c2: float = 0.1) -> Result:
    """Nonlinear conjugate gradient with a strong-Wolfe line search (Nocedal & Wright §5.2).

    ``p_0 = -g_0``; ``p_{k+1} = -g_{k+1} + beta_{k+1} p_k`` with
    Fletcher-Reeves ``beta = g_{k+1}^T g_{k+1} / g_k^T g_k`` (``beta="FR"``) or
    Polak-Ribiere+ ``beta = max(0, g_{k+1}^T (g_{k+1} - g_k) / g_k^T g_k)`` (``"PR+"``).
    ``c2 = 0.1 < 1/2`` makes every FR direction downhill (N&W Lemma 5.6); if a direction is
    not downhill anyway it is replaced by ``-g`` (restart). The first trial step is
    ``min(1, 1/||g_0||_1)``, later ones ``t_{k-1} g_{k-1}^T p_{k-1} / g_k^T p_k`` (N&W eq 3.60).
    """
    _require_choice(beta, "beta", ("FR", "PR+"))
    run = _Run(f_and_grad, x0, gtol, max_iter)
    p = -run.result.grad
    t = min(1.0, 1.0 / _sum_abs(run.result.grad))
    gtd_prev = None
    while (result := run.done()) is None:
        r = run.result
        gtd = _dot(r.grad, p)
        if not gtd < 0:
            p, gtd = -r.grad, -_dot(r.grad, r.grad)
        if gtd_prev is not None:
            t = min(1.0, t * gtd_prev / gtd)
        if (step := run.line_search("strong_wolfe", r.x, p, t, gtd, c1=c1, c2=c2)) is None:
            return run.finish(False, run.stop_message)
        t, f, g = step
        gg, g_old = _dot(r.grad, r.grad), r.grad
        run.accept(_axpy(r.x, t, p), f, g)
        if beta == "FR":
            b = _dot(g, g) / gg
        else:
            b = max(0.0, _dot(g, g - g_old) / gg)
        p, gtd_prev = -g + b * p, gtd
    return result


# --------------------------------------------------------------------------------------- BFGS


def bfgs_update(inverse_hessian, s, y):
    """BFGS update of the inverse-Hessian estimate ``B`` (Nocedal & Wright eq 6.17).

    ``B_new = (I - rho s y^T) B (I - rho y s^T) + rho s s^T``, ``rho = 1 / y^T s``: the closest
    symmetric matrix to ``B`` with ``B_new y = s`` (the secant equation). Requires ``y^T s > 0``
    (else ``IndefiniteHessianError``), which keeps ``B`` positive definite.
    """
    B, s, y = np.asarray(inverse_hessian), _vector(s, "s"), _vector(y, "y")
    ys = float(y @ s)
    if not ys > 0:
        raise IndefiniteHessianError(f"y^T s = {ys:.3g} <= 0: the curvature condition fails")
    rho = 1.0 / ys
    By = B @ y
    # Expanded form of eq 6.17, O(k^2): B - rho (s By^T + By s^T) + (rho^2 y^T B y + rho) s s^T.
    return B - rho * (np.outer(s, By) + np.outer(By, s)) + (rho * rho * (y @ By) + rho) * np.outer(s, s)


def bfgs(f_and_grad: Callable, x0, *, line_search: str = "strong_wolfe", gtol: float = 1e-6,
         max_iter: int = 1000) -> Result:
    """BFGS (Broyden-Fletcher-Goldfarb-Shanno) with a dense inverse-Hessian estimate ``B_k``.

    ``p_k = -B_k g_k``, ``x_{k+1} = x_k + t_k p_k``, then ``B_{k+1} = bfgs_update(B_k, s_k, y_k)``.
    ``B_0 = I``; before the first update ``B`` is rescaled to ``(y^T s / y^T y) I`` (N&W eq
    6.20). The first trial step is ``min(1, 1/||g_0||_1)``, later ones ``t = 1``. An update with
    ``y^T s <= 1e-10`` (possible with ``line_search="armijo"``, never with strong Wolfe) is
    skipped. Numpy only; O(k^2) memory and time per step.
    """
    _require_choice(line_search, "line_search", LINE_SEARCHES)
    run = _Run(f_and_grad, np.asarray(x0), gtol, max_iter)
    B = np.eye(run.result.x.shape[0])
    t0, updated = min(1.0, 1.0 / _sum_abs(run.result.grad)), False
    while (result := run.done()) is None:
        r = run.result
        p = -B @ r.grad
        if (step := run.line_search(line_search, r.x, p, t0, _dot(r.grad, p))) is None:
            return run.finish(False, run.stop_message)
        t, f, g = step
        s, y, t0 = t * p, g - r.grad, 1.0
        run.accept(r.x + s, f, g)
        if float(y @ s) > 1e-10:
            if not updated:
                B, updated = (float(y @ s) / float(y @ y)) * np.eye(len(s)), True
            B = bfgs_update(B, s, y)
    return result


# ------------------------------------------------------------------------------------- L-BFGS


def two_loop(grad, s_list, y_list, gamma: float = 1.0):
    """L-BFGS two-loop recursion: ``B g`` for the inverse-Hessian estimate built from m pairs.

    Nocedal & Wright Algorithm 7.4. With ``rho_i = 1 / y_i^T s_i`` and the pairs oldest first::

        q = g
        for i = m-1 .. 0:  alpha_i = rho_i s_i^T q;   q = q - alpha_i y_i
        r = gamma q                                   (B_0 = gamma I)
        for i = 0 .. m-1:  beta = rho_i y_i^T r;      r = r + (alpha_i - beta) s_i
        return r                                      (= B g; the direction is -r)

    ``B`` is what m BFGS updates (eq 6.17) of ``gamma I`` with these pairs give, computed in
    O(m k) without forming it. ``gamma`` is usually ``y^T s / y^T y`` of the newest pair.
    Every ``y_i^T s_i`` must be positive (else ``IndefiniteHessianError``).
    """
    g = _vector(grad, "grad")
    if len(s_list) != len(y_list):
        raise ValueError(f"s_list has {len(s_list)} vectors but y_list has {len(y_list)}")
    rhos = []
    for i, (s, y) in enumerate(zip(s_list, y_list, strict=True)):
        ys = _dot(y, s)
        if not ys > 0:
            raise IndefiniteHessianError(f"y_{i}^T s_{i} = {ys:.3g} <= 0: pair {i} has no curvature")
        rhos.append(1.0 / ys)
    q, alphas = g, [0.0] * len(s_list)
    for i in range(len(s_list) - 1, -1, -1):
        alphas[i] = _dot(s_list[i], q) * rhos[i]
        q = _axpy(q, -alphas[i], y_list[i])
    r = q * gamma
    for i in range(len(s_list)):
        b = _dot(y_list[i], r) * rhos[i]
        r = _axpy(r, alphas[i] - b, s_list[i])
    return r


def lbfgs(f_and_grad: Callable, x0, *, history_size: int = 10,
          line_search: str | None = "strong_wolfe", lr: float = 1.0, gtol: float = 1e-7,
          tolerance_change: float = 1e-9, max_iter: int = 1000) -> Result:
    """Limited-memory BFGS (메모리 제한 BFGS, seed 003 §8.6.3): ``p_k = -two_loop(g_k, S, Y, gamma_k)``.

    Keeps the last ``history_size`` pairs ``(s_i, y_i)`` (a pair with ``y^T s <= 1e-10`` is not
    stored); ``gamma_k = y^T s / y^T y`` of the newest stored pair (1 before any). Step length:
    ``line_search="strong_wolfe"`` (``c1 = 1e-4, c2 = 0.9``), ``"armijo"`` (backtracking), or
    ``None`` (fixed); trial ``t = lr``, and ``min(1, 1/||g_0||_1) lr`` on the first iteration.
    Stops converged at ``max|g| <= gtol``, unconverged when ``g^T p > -tolerance_change``,
    ``max|t p| <= tolerance_change`` or ``|f_{k+1} - f_k| < tolerance_change``. These are
    ``torch.optim.LBFGS``'s iteration and tests (its ``tolerance_grad`` is ``gtol``), on numpy
    arrays or torch tensors.
    """
    _require_choice(line_search, "line_search", (None, *LINE_SEARCHES))
    if not (isinstance(history_size, int) and history_size >= 1):
        raise ValueError(f"history_size must be an int >= 1, got {history_size!r}")
    _require_positive(lr, "lr")
    run = _Run(f_and_grad, x0, gtol, max_iter)
    S, Y, gamma = [], [], 1.0
    p = t = g_prev = None
    while (result := run.done()) is None:
        r = run.result
        if p is None:
            p, t = -r.grad, min(1.0, 1.0 / _sum_abs(r.grad)) * lr
        else:
            s, y = p * t, r.grad - g_prev
            ys = _dot(y, s)
            if ys > 1e-10:
                if len(S) == history_size:
                    S.pop(0), Y.pop(0)
                S.append(s), Y.append(y)
                gamma = ys / _dot(y, y)
            p, t = -two_loop(r.grad, S, Y, gamma), lr
        g_prev, f_prev = r.grad, r.fun
        gtd = _dot(r.grad, p)
        if gtd > -tolerance_change:
            return run.finish(False, f"g^T p = {gtd:.3g} > -tolerance_change: no descent left")
        if line_search is None:
            f, g = run.evaluate(_axpy(r.x, t, p))
            if not math.isfinite(f):
                raise NonFiniteError(f"f is not finite after fixed step {r.nit + 1}; lower lr")
        else:
            if (step := run.line_search(line_search, r.x, p, t, gtd)) is None:
                return run.finish(False, run.stop_message)
            t, f, g = step
        run.accept(_axpy(r.x, t, p), f, g)
        if run.converged():
            continue
        if _max_abs(p * t) <= tolerance_change:
            return run.finish(False, "max|t p| <= tolerance_change")
        if abs(f - f_prev) < tolerance_change:
            return run.finish(False, "|f_new - f_old| < tolerance_change")
    return result


# ------------------------------------------------------------------------------ test problem


@dataclass(frozen=True)
class LogisticRegression:
    """L2-regularised logistic regression, a smooth strictly convex test problem.

    ``f(w) = (1/n) sum_i log(1 + exp(-y_i x_i^T w)) + (l2/2) ||w||^2``, labels ``y_i = +-1``;
    ``grad f = -(1/n) X^T (y * sigma(-y X w)) + l2 w`` and
    ``H = (1/n) X^T diag(sigma(z) sigma(-z)) X + l2 I`` with ``z = y X w`` and the logistic
    ``sigma(z) = 1 / (1 + exp(-z))``. ``random(n, k, seed)`` draws a separable-ish data set.
    """

    X: np.ndarray
    y: np.ndarray
    l2: float = 1e-2

    @classmethod
    def random(cls, n: int = 200, k: int = 10, seed: int = 0, l2: float = 1e-2):
        rng = np.random.default_rng(seed)
        X = rng.standard_normal((n, k)) * rng.uniform(0.2, 3.0, size=k)
        w_true = rng.standard_normal(k)
        y = np.where(X @ w_true + 0.5 * rng.standard_normal(n) > 0, 1.0, -1.0)
        return cls(X, y, l2)

    def value_and_grad(self, w):
        z = self.y * (self.X @ w)
        n = len(self.y)
        f = np.logaddexp(0.0, -z).mean() + 0.5 * self.l2 * (w @ w)
        return f, -(self.X.T @ (self.y * _sigmoid(-z))) / n + self.l2 * w

    def hessian(self, w):
        z = self.y * (self.X @ w)
        d = _sigmoid(z) * _sigmoid(-z)
        return (self.X.T * d) @ self.X / len(self.y) + self.l2 * np.eye(self.X.shape[1])

    def hessp(self, w, v):
        z = self.y * (self.X @ w)
        d = _sigmoid(z) * _sigmoid(-z)
        return self.X.T @ (d * (self.X @ v)) / len(self.y) + self.l2 * v


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


# ----------------------------------------------------------------------------------- helpers


def _vector(x, name: str, finite: bool = True):
    """``x`` as a 1-D floating numpy array or torch tensor; NaN/inf rejected if ``finite``."""
    if not arrays.is_tensor(x):
        x = np.asarray(x)
    arrays.require_floating(x, name)
    if x.ndim != 1:
        raise ValueError(f"{name} must be a 1-D vector, got shape {tuple(x.shape)}")
    if finite and not _all_finite(x):
        raise NonFiniteError(f"{name} contains NaN or infinity")
    return x


def _newton_inputs(grad, hessian):
    g = _vector(np.asarray(grad), "grad")
    H = np.asarray(hessian)
    arrays.require_floating(H, "hessian")
    if H.shape != (g.shape[0], g.shape[0]):
        raise ValueError(f"hessian must have shape {(g.shape[0],) * 2}, got {H.shape}")
    if not np.all(np.isfinite(H)):
        raise NonFiniteError("hessian contains NaN or infinity")
    return g, H


def _matrix_operator(A, b):
    if not arrays.is_tensor(A):
        A = np.asarray(A)
    if tuple(A.shape) != (b.shape[0], b.shape[0]):
        raise ValueError(f"A must have shape {(b.shape[0],) * 2}, got {tuple(A.shape)}")
    return lambda v: A @ v


def _axpy(x, t: float, p):
    """``x + t p``; on tensors as ``torch.add(x, p, alpha=t)``, the kernel torch.optim uses."""
    return x.add(p, alpha=t) if arrays.is_tensor(x) else x + t * p


def _all_finite(x) -> bool:
    return bool(arrays.namespace(x).isfinite(x).all())


def _dot(a, b) -> float:
    return float(arrays.namespace(a).dot(a, b))


def _norm(x) -> float:
    return math.sqrt(_dot(x, x))


def _max_abs(x) -> float:
    return float(abs(x).max())


def _sum_abs(x) -> float:
    return float(abs(x).sum())


def _copy(x):
    return x.clone() if arrays.is_tensor(x) else np.array(x, copy=True)


def _require_descent(gtd: float) -> None:
    if not gtd < 0:
        raise NotDescentDirectionError(
            f"g^T p = {gtd:.3g} >= 0: the direction is not downhill (an indefinite Hessian, or a "
            "sign error)"
        )


def _require_positive(value, name: str, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not (isinstance(value, (int, float)) and ok and math.isfinite(value)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")


def _require_choice(value, name: str, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _armijo_options(kwargs: dict) -> dict:
    return {key: kwargs[key] for key in ("c1",) if key in kwargs}
