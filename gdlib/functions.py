"""Two-dimensional test functions for loss-landscape plots, each with its gradient and Hessian.

Every function is a ``Landscape``; ``theta`` is a numpy array or torch tensor of shape ``(2,)``
or a batch ``(..., 2)`` (e.g. a contour grid)::

    from gdlib import functions
    f = functions.BEALE
    f.value(theta)      # shape (...)
    f.grad(theta)       # shape (..., 2)
    f.hessian(theta)    # shape (..., 2, 2)
    f.minimum, f.f_min  # minimiser (3, 0.5) and its value 0
    X, Y, Z = f.grid(200)          # values on f.box, ready for plt.contour(X, Y, Z)

``quadratic(a, b, angle)`` and ``rosenbrock(a, b)`` build variants with other coefficients.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gdlib import arrays


@dataclass(frozen=True)
class Landscape:
    """A function of ``theta = (x, y)`` with its derivatives and plotting metadata.

    ``parts`` maps the coordinates ``(x, y, xp)`` (``xp`` the array module) to
    ``(f, (f_x, f_y), (f_xx, f_xy, f_yy))``; the methods below validate ``theta`` and assemble
    arrays from these parts. ``minimum`` is the global minimiser, or ``None`` when the function
    is unbounded below; ``box = ((x_lo, x_hi), (y_lo, y_hi))`` frames a plot; ``start`` is a
    suggested starting point for trajectories.
    """

    name: str
    parts: Callable
    minimum: tuple | None
    f_min: float | None
    box: tuple
    start: tuple

    def value(self, theta):
        """``f(theta)``, shape ``theta.shape[:-1]``."""
        return self._parts(theta)[0]

    def grad(self, theta):
        """``(df/dx, df/dy)``, shape ``theta.shape``."""
        x, _, xp = _coordinates(theta)
        f_x, f_y = self._parts(theta)[1]
        return xp.stack([_broadcast(f_x, x, xp), _broadcast(f_y, x, xp)], -1)

    def value_and_grad(self, theta):
        """``(f(theta), grad f(theta))``: the ``f_and_grad`` that ``training.minimize`` takes."""
        return self.value(theta), self.grad(theta)

    def hessian(self, theta):
        """``[[f_xx, f_xy], [f_xy, f_yy]]``, shape ``theta.shape + (2,)``."""
        x, _, xp = _coordinates(theta)
        f_xx, f_xy, f_yy = (_broadcast(h, x, xp) for h in self._parts(theta)[2])
        return xp.stack([xp.stack([f_xx, f_xy], -1), xp.stack([f_xy, f_yy], -1)], -2)

    def grid(self, num: int = 200):
        """``(X, Y, Z)``: a ``num x num`` numpy grid over ``box`` and the values ``Z = f(X, Y)``."""
        (x_lo, x_hi), (y_lo, y_hi) = self.box
        X, Y = np.meshgrid(np.linspace(x_lo, x_hi, num), np.linspace(y_lo, y_hi, num))
        return X, Y, self.value(np.stack([X, Y], -1))

    def _parts(self, theta):
        x, y, xp = _coordinates(theta)
        return self.parts(x, y, xp)


def quadratic(a: float = 0.1, b: float = 2.0, angle: float = 0.0) -> Landscape:
    """Ill-conditioned quadratic ``f = a u**2 + b v**2`` in coordinates rotated by ``angle``.

    ``u = x cos(angle) + y sin(angle)``, ``v = -x sin(angle) + y cos(angle)``. With ``angle = 0``
    this is ``a x**2 + b y**2``; the defaults give the ravine ``0.1 x**2 + 2 y**2`` of d2l's
    optimisation chapter. Hessian eigenvalues ``2a`` and ``2b``: GD with learning rate ``eta``
    shrinks each eigen-coordinate by ``1 - 2 eta a`` and ``1 - 2 eta b`` per step.
    """
    for value, name in ((a, "a"), (b, "b")):
        if not value > 0:
            raise ValueError(f"{name} must be > 0 (a bowl, not a saddle), got {value!r}")
    c, s = math.cos(angle), math.sin(angle)

    def parts(x, y, xp):
        u, v = c * x + s * y, -s * x + c * y
        f_u, f_v = 2 * a * u, 2 * b * v
        gradient = (c * f_u - s * f_v, s * f_u + c * f_v)
        hessian = (2 * (a * c * c + b * s * s), 2 * (a - b) * c * s, 2 * (a * s * s + b * c * c))
        return a * u**2 + b * v**2, gradient, hessian

    name = f"{a:g} x^2 + {b:g} y^2" if angle == 0 else f"quadratic valley rotated by {angle:.3g}"
    box = ((-6.0, 6.0), (-3.0, 3.0)) if angle == 0 else ((-6.0, 6.0), (-6.0, 6.0))
    return Landscape(name, parts, (0.0, 0.0), 0.0, box, (-5.0, -2.0))


def rosenbrock(a: float = 1.0, b: float = 100.0) -> Landscape:
    """Rosenbrock's banana valley ``f = (a - x)**2 + b (y - x**2)**2``, minimum ``(a, a**2)``."""

    def parts(x, y, xp):
        r = y - x**2
        gradient = (-2 * (a - x) - 4 * b * x * r, 2 * b * r)
        hessian = (2 - 4 * b * r + 8 * b * x**2, -4 * b * x, 2 * b)
        return (a - x) ** 2 + b * r**2, gradient, hessian

    return Landscape(
        f"Rosenbrock (a={a:g}, b={b:g})", parts, (a, a * a), 0.0, ((-2.0, 2.0), (-1.0, 3.0)),
        (-1.2, 1.0),
    )


def _beale_parts(x, y, xp):
    """Beale: ``f = t_1**2 + t_2**2 + t_3**2`` with ``t_i = c_i - x + x y**i``.

    ``grad f = 2 sum_i t_i grad t_i`` and ``H = 2 sum_i (grad t_i grad t_i^T + t_i hess t_i)``.
    """
    # (c_i, dt/dx, dt/dy, d2t/dxdy, d2t/dy2) for i = 1, 2, 3; d2t/dx2 = 0.
    terms = (
        (1.5, y - 1, x, 1, 0),
        (2.25, y**2 - 1, 2 * x * y, 2 * y, 2 * x),
        (2.625, y**3 - 1, 3 * x * y**2, 3 * y**2, 6 * x * y),
    )
    f = f_x = f_y = f_xx = f_xy = f_yy = 0
    for i, (c, t_x, t_y, t_xy, t_yy) in enumerate(terms, start=1):
        t = c - x + x * y**i
        f = f + t**2
        f_x, f_y = f_x + 2 * t * t_x, f_y + 2 * t * t_y
        f_xx = f_xx + 2 * t_x**2
        f_xy = f_xy + 2 * (t_x * t_y + t * t_xy)
        f_yy = f_yy + 2 * (t_y**2 + t * t_yy)
    return f, (f_x, f_y), (f_xx, f_xy, f_yy)


def _saddle_parts(x, y, xp):
    return x**2 - y**2, (2 * x, -2 * y), (2.0, 0.0, -2.0)


#: ``0.1 x^2 + 2 y^2``: the axis-aligned ravine (condition number 20).
RAVINE = quadratic()
#: A long, narrow valley along the diagonal (condition number 50): ``0.02 u^2 + v^2`` with
#: ``u, v`` rotated by 45 degrees. Unlike ``RAVINE`` it is not aligned with the coordinate axes,
#: so per-coordinate step sizes (Adagrad, RMSprop, Adam) cannot undo its conditioning.
LONG_VALLEY = quadratic(a=0.02, b=1.0, angle=math.pi / 4)
#: Beale's function, global minimum ``f(3, 0.5) = 0``; flat plateaus and steep walls.
BEALE = Landscape("Beale", _beale_parts, (3.0, 0.5), 0.0, ((-4.5, 4.5), (-4.5, 4.5)), (1.0, 1.5))
#: ``x^2 - y^2``: a saddle point at the origin (zero gradient, not a minimum); unbounded below.
SADDLE = Landscape("saddle x^2 - y^2", _saddle_parts, None, None, ((-2.0, 2.0), (-2.0, 2.0)),
                   (-1.5, 1e-3))
#: Rosenbrock with ``a = 1, b = 100``: minimum ``f(1, 1) = 0`` at the end of a curved valley.
ROSENBROCK = rosenbrock()


def _coordinates(theta):
    """``(x, y, xp)`` from ``theta[..., 0]``, ``theta[..., 1]`` after validating ``theta``."""
    if not arrays.is_tensor(theta):
        theta = np.asarray(theta)
    arrays.require_floating(theta, "theta")
    if theta.ndim == 0 or theta.shape[-1] != 2:
        raise ValueError(f"theta must have shape (2,) or (..., 2), got {tuple(theta.shape)}")
    return theta[..., 0], theta[..., 1], arrays.namespace(theta)


def _broadcast(part, x, xp):
    """``part`` (an array or a constant) as an array of ``x``'s shape, dtype and device."""
    return xp.zeros_like(x) + part
