"""Plotting helpers shared by every chapter of the book.

One look for every figure, and one function per kind of picture the course draws:

- ``use_style()`` sets the course style (sizes, grid, colour-blind-safe colours) once per notebook;
- ``plot_curves(x, ys, labels, title, xlabel, ylabel)`` draws several functions of one variable
  (a loss against its argument, a schedule against the step);
- ``plot_loss_curves(histories, title)`` draws loss against step for several runs;
- ``plot_contour(f, xlim, ylim, title)`` draws the level sets of a 2-D test function;
- ``plot_trajectories(f, paths, xlim, ylim, title)`` draws optimizer paths over those level sets.

Every function takes an optional ``ax`` (draw into a panel of an existing figure) and returns the
``Axes`` it drew on. Titles are required and every labelled artist goes into a legend, so a
figure of the book always says what it shows. Inputs may be numpy arrays, torch tensors (any
device) or plain sequences. The 2-D functions take points of shape ``(..., 2)``, which is what a
``gdlib.functions`` landscape's ``value`` does::

    from gdlib import functions, plotting
    plotting.use_style()
    f = functions.ROSENBROCK
    plotting.plot_trajectories(f.value, {"GD": path}, *f.box, "GD on Rosenbrock",
                               minimum=f.minimum, logscale=True)
"""

import itertools
from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm

from gdlib.arrays import is_tensor

# Okabe & Ito's colour-blind-safe palette (black moved last: it marks minima and references).
PALETTE = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#E69F00",  # orange
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)

STYLE = {
    "figure.figsize": (6.4, 4.0),
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "axes.grid": True,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": plt.cycler(color=PALETTE),
    "grid.alpha": 0.3,
    "lines.linewidth": 2.0,
    "legend.frameon": False,
    "legend.fontsize": 10,
    "image.cmap": "viridis",
}


def use_style() -> None:
    """Apply the course style (``STYLE``) to every figure drawn afterwards."""
    plt.rcParams.update(STYLE)


def to_numpy(x) -> np.ndarray:
    """``x`` as a numpy array of floats; torch tensors are detached and copied to the CPU."""
    if is_tensor(x):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=float)


def _axes(ax):
    """``ax``, or the axes of a new figure when ``ax`` is None."""
    if ax is None:
        _, ax = plt.subplots()
    return ax


def _require_title(title) -> None:
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"title must be a non-empty string, got {title!r}")


def _label(ax, title: str, xlabel: str, ylabel: str):
    """Set title and axis labels, and a legend when some artist carries a label."""
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend()
    return ax


def plot_curves(
    x,
    ys: Sequence,
    labels: Sequence[str],
    title: str,
    xlabel: str,
    ylabel: str,
    *,
    styles: Sequence[Mapping] | None = None,
    logy: bool = False,
    ax=None,
):
    """Draw the curves ``ys[k]`` against ``x``, one legend entry ``labels[k]`` per curve.

    ``styles`` (optional, one mapping per curve) passes keyword arguments to ``Axes.plot``,
    e.g. ``{"linestyle": "--"}``; ``logy`` puts the y axis on a log scale. Returns the Axes.
    """
    _require_title(title)
    x = to_numpy(x)
    if x.ndim != 1:
        raise ValueError(f"x must be one-dimensional, got shape {x.shape}")
    ys = [to_numpy(y) for y in ys]
    labels = list(labels)
    if len(labels) != len(ys):
        raise ValueError(f"labels has {len(labels)} entries but ys has {len(ys)} curves")
    styles = [{}] * len(ys) if styles is None else list(styles)
    if len(styles) != len(ys):
        raise ValueError(f"styles has {len(styles)} entries but ys has {len(ys)} curves")
    ax = _axes(ax)
    for k, (y, label, style) in enumerate(zip(ys, labels, styles)):
        if y.shape != x.shape:
            raise ValueError(f"ys[{k}] has shape {y.shape} but x has shape {x.shape}")
        ax.plot(x, y, label=label, **style)
    if logy:
        ax.set_yscale("log")
    return _label(ax, title, xlabel, ylabel)


def plot_loss_curves(
    histories: Mapping[str, Sequence],
    title: str,
    *,
    xlabel: str = "step",
    ylabel: str = "loss",
    logy: bool = True,
    ax=None,
):
    """Draw loss against step for several runs: ``histories`` maps a label to its losses.

    Run ``k``'s values are plotted at steps 0, 1, ..., so runs of different lengths share the
    axis. ``logy`` (default True) shows the loss on a log scale, where linear convergence is a
    straight line; it needs positive losses.
    """
    _require_title(title)
    if not histories:
        raise ValueError("histories is empty: pass at least one run, e.g. {'SGD': losses}")
    curves = {}
    for label, values in histories.items():
        values = to_numpy(values)
        if values.ndim != 1:
            raise ValueError(f"histories[{label!r}] must be one-dimensional, got {values.shape}")
        if logy and np.any(values <= 0):
            raise ValueError(f"histories[{label!r}] has non-positive losses: use logy=False")
        curves[label] = values
    ax = _axes(ax)
    for label, values in curves.items():
        ax.plot(np.arange(values.size), values, label=label)
    if logy:
        ax.set_yscale("log")
    return _label(ax, title, xlabel, ylabel)


def _grid(f: Callable, xlim, ylim, resolution: int):
    """Evaluate ``f`` on a ``resolution`` x ``resolution`` grid; return (X, Y, Z)."""
    X, Y = np.meshgrid(np.linspace(*xlim, resolution), np.linspace(*ylim, resolution))
    Z = to_numpy(f(np.stack([X, Y], axis=-1)))
    if Z.shape != X.shape:
        raise ValueError(
            f"f must map points of shape (..., 2) to values of shape (...): "
            f"got {Z.shape} for points of shape {X.shape + (2,)}"
        )
    return X, Y, Z


def plot_contour(
    f: Callable,
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    title: str,
    *,
    xlabel: str = r"$\theta_1$",
    ylabel: str = r"$\theta_2$",
    levels: int = 30,
    logscale: bool = False,
    resolution: int = 200,
    colorbar: bool = True,
    ax=None,
):
    """Draw the level sets of a function of two variables.

    ``f`` takes an array of points of shape ``(..., 2)`` (``theta[..., 0]``, ``theta[..., 1]``)
    and returns the values, shape ``(...)``. ``logscale`` spaces the ``levels`` geometrically,
    which shows narrow valleys such as Rosenbrock's (values must then be non-negative).
    """
    _require_title(title)
    X, Y, Z = _grid(f, xlim, ylim, resolution)
    ax = _axes(ax)
    if logscale:
        if np.any(Z < 0):
            raise ValueError("logscale=True needs f >= 0 on the grid; use logscale=False")
        positive = Z[Z > 0]
        lo, hi = positive.min(), positive.max()
        contours = ax.contour(
            X, Y, Z, levels=np.geomspace(lo, hi, levels), norm=LogNorm(lo, hi), linewidths=1
        )
    else:
        contours = ax.contour(X, Y, Z, levels=levels, linewidths=1)
    if colorbar:
        ax.figure.colorbar(contours, ax=ax, label="value")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    return _label(ax, title, xlabel, ylabel)


def plot_trajectories(
    f: Callable,
    paths: Mapping[str, Sequence],
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    title: str,
    *,
    minimum: Sequence[float] | None = None,
    xlabel: str = r"$\theta_1$",
    ylabel: str = r"$\theta_2$",
    logscale: bool = False,
    levels: int = 30,
    ax=None,
):
    """Draw optimizer paths over the level sets of ``f`` (see ``plot_contour``).

    ``paths`` maps a label (the optimizer) to its iterates, shape ``(steps + 1, 2)``; each path
    is a line with a dot per iterate, starting at a square. ``minimum`` marks the minimiser
    with a black star.
    """
    curves = {}
    for label, path in paths.items():
        path = to_numpy(path)
        if path.ndim != 2 or path.shape[1] != 2:
            raise ValueError(f"paths[{label!r}] must have shape (steps + 1, 2), got {path.shape}")
        curves[label] = path
    if not curves:
        raise ValueError("paths is empty: pass at least one path, e.g. {'SGD': iterates}")
    ax = plot_contour(
        f, xlim, ylim, title, xlabel=xlabel, ylabel=ylabel, logscale=logscale, levels=levels,
        colorbar=False, ax=ax,
    )
    colors = itertools.cycle(PALETTE[1:] + PALETTE[:1])  # blue is close to the contours
    for color, (label, path) in zip(colors, curves.items()):
        ax.plot(path[:, 0], path[:, 1], "-o", color=color, markersize=3, linewidth=1.5,
                label=label)
        ax.plot(path[0, 0], path[0, 1], "s", color=color, markersize=7)
    if minimum is not None:
        ax.plot(*to_numpy(minimum), "*", color="black", markersize=14, label="minimum")
    return _label(ax, title, xlabel, ylabel)
