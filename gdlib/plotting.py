"""Plotting helpers shared by every chapter of the book.

One look for every figure, and one function per kind of picture the course draws:

- ``use_style()`` sets the course style (sizes, grid, colour-blind-safe colours) once per notebook;
- ``page_figure(rows, cols, height)`` makes a figure as wide as the book's page, at most two panels
  side by side, and ``shared_legend(axes)`` gives its panels one legend;
- ``plot_curves(x, ys, labels, title, xlabel, ylabel)`` draws several functions of one variable
  (a loss against its argument, a schedule against the step);
- ``plot_loss_curves(histories, title)`` draws loss against step for several runs;
- ``plot_contour(f, xlim, ylim, title)`` draws the level sets of a 2-D test function;
- ``plot_trajectories(f, paths, xlim, ylim, title)`` draws optimizer paths over those level sets
  (``until_outside`` cuts a diverging path where it leaves the plot).

Every function takes an optional ``ax`` (draw into a panel of an existing figure) and returns the
``Axes`` it drew on. Titles are required and every labelled artist goes into a legend, so a
figure of the book always says what it shows. Runs are coloured in ``PALETTE`` order, the same
in every kind of plot (so a path and its loss curve agree); a figure that compares optimizers
colours each by ``METHOD_COLORS`` (gradient descent blue, momentum vermillion, NAG green on
every page). Inputs may be numpy arrays, torch tensors (any device) or plain sequences. The 2-D
functions take points of shape ``(..., 2)``, which is what a ``gdlib.functions`` landscape's
``value`` does::

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

# The book's content column is about 690 px wide and figures are rendered at 100 dpi: a figure
# wider than ~7.2 in is shrunk, and its text with it. Single panels keep the default 6.4 in.
PAGE_WIDTH = 7.2

# One colour per optimizer of ``gdlib.optim`` (keyed by the rule's class name), on every page.
# Gradient descent, momentum and NAG, compared from chapter 4 on, get the three most distinct
# colours of PALETTE; the adaptive methods get colours that differ from those and from each other.
METHOD_COLORS = {
    "GD": PALETTE[0],  # blue
    "Momentum": PALETTE[1],  # vermillion
    "Nesterov": PALETTE[2],  # bluish green
    "Adagrad": "#999933",  # olive (Tol's muted palette)
    "RMSprop": PALETTE[4],  # reddish purple
    "Adadelta": PALETTE[5],  # sky blue
    "Adam": "#332288",  # indigo (Tol's muted palette)
    "Nadam": PALETTE[3],  # orange
    "AdamW": "#882255",  # wine (Tol's muted palette)
}

# Level lines under optimizer paths: a light grey, so that every palette colour stands out.
CONTOUR_COLOR = "0.72"

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


def page_figure(rows: int = 1, cols: int = 1, *, height: float = 3.0):
    """A figure as wide as the book's page (``PAGE_WIDTH``) with ``rows`` x ``cols`` panels.

    ``height`` is the height of one row in inches. At most two panels fit side by side at a
    readable size, so ``cols`` must be 1 or 2: stack further panels in rows (an odd panel count
    leaves a cell free for ``shared_legend``). Returns ``(figure, axes)`` with ``axes`` a flat
    list in reading order. The figure uses matplotlib's constrained layout: do not call
    ``tight_layout`` on it.
    """
    for name, value in (("rows", rows), ("cols", cols)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if cols > 2:
        raise ValueError(
            f"cols must be 1 or 2, got {cols}: more panels side by side are unreadable at the "
            "page width; stack them in rows"
        )
    if not height > 0:
        raise ValueError(f"height must be positive, got {height!r}")
    fig, axes = plt.subplots(
        rows, cols, figsize=(PAGE_WIDTH, rows * height), layout="constrained", squeeze=False
    )
    return fig, list(axes.flat)


def shared_legend(axes: Sequence, *, into=None, ncols: int = 1, **kwargs):
    """One legend for several panels: the labelled artists of ``axes``, each label once.

    The panels' own legends are removed. ``into`` is a spare panel (e.g. the free cell of a 2 x 2
    grid of three plots): its frame is hidden and the legend fills it. Without ``into`` the legend
    goes below the panels, in ``ncols`` columns. Further keyword arguments go to ``legend``.
    Returns the ``Legend``.
    """
    axes = list(axes)
    if not axes:
        raise ValueError("axes is empty: pass the panels whose artists the legend lists")
    entries = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if not entries:
        raise ValueError("no labelled artists in axes: pass label=... when drawing")
    handles, labels = list(entries.values()), list(entries)
    if into is not None:
        into.set_axis_off()
        return into.legend(handles, labels, loc="center", ncols=ncols, **kwargs)
    return axes[0].figure.legend(handles, labels, loc="outside lower center", ncols=ncols,
                                 **kwargs)


def _colors(colors, n: int, what: str) -> list:
    """``colors`` as a list of ``n`` colours; by default PALETTE in order, repeated as needed."""
    if colors is None:
        return list(itertools.islice(itertools.cycle(PALETTE), n))
    colors = list(colors)
    if len(colors) != n:
        raise ValueError(f"colors has {len(colors)} entries but {what} has {n}")
    return colors


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
    colors: Sequence | None = None,
    ax=None,
):
    """Draw loss against step for several runs: ``histories`` maps a label to its losses.

    Run ``k``'s values are plotted at steps 0, 1, ..., so runs of different lengths share the
    axis. ``logy`` (default True) shows the loss on a log scale, where linear convergence is a
    straight line; it needs positive losses. ``colors`` (one per run) defaults to ``PALETTE`` in
    order, as in ``plot_trajectories``: the same runs get the same colours in both.
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
    colors = _colors(colors, len(curves), "histories")
    ax = _axes(ax)
    for color, (label, values) in zip(colors, curves.items()):
        ax.plot(np.arange(values.size), values, color=color, label=label)
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
    color=None,
    ax=None,
):
    """Draw the level sets of a function of two variables.

    ``f`` takes an array of points of shape ``(..., 2)`` (``theta[..., 0]``, ``theta[..., 1]``)
    and returns the values, shape ``(...)``. ``logscale`` spaces the ``levels`` geometrically,
    which shows narrow valleys such as Rosenbrock's (values must then be non-negative).
    ``color`` draws every level line in that one colour instead of the colour map (a background
    for arrows or paths, e.g. ``CONTOUR_COLOR``); it needs ``colorbar=False``.
    """
    _require_title(title)
    if color is not None and colorbar:
        raise ValueError("a colour bar needs the colour map: pass colorbar=False with color")
    X, Y, Z = _grid(f, xlim, ylim, resolution)
    ax = _axes(ax)
    style = {"linewidths": 1} if color is None else {"linewidths": 0.8, "colors": [color]}
    if logscale:
        if np.any(Z < 0):
            raise ValueError("logscale=True needs f >= 0 on the grid; use logscale=False")
        positive = Z[Z > 0]
        lo, hi = positive.min(), positive.max()
        if color is None:
            style["norm"] = LogNorm(lo, hi)
        contours = ax.contour(X, Y, Z, levels=np.geomspace(lo, hi, levels), **style)
    else:
        contours = ax.contour(X, Y, Z, levels=levels, **style)
    if colorbar:
        ax.figure.colorbar(contours, ax=ax, label="value")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    return _label(ax, title, xlabel, ylabel)


def until_outside(path, xlim: tuple[float, float], ylim: tuple[float, float]) -> np.ndarray:
    """The iterates of ``path`` up to and including the first one outside the box ``xlim`` x
    ``ylim`` (all of them if none leaves it), as a numpy array of shape ``(k, 2)``.

    Draw a diverging path with it: the points after it has left the plot would only draw lines
    back and forth across the whole picture.
    """
    path = to_numpy(path)
    if path.ndim != 2 or path.shape[1] != 2:
        raise ValueError(f"path must have shape (steps + 1, 2), got {path.shape}")
    (x_lo, x_hi), (y_lo, y_hi) = xlim, ylim
    with np.errstate(invalid="ignore"):  # NaN iterates count as outside
        inside = (x_lo <= path[:, 0]) & (path[:, 0] <= x_hi) & (y_lo <= path[:, 1]) & (
            path[:, 1] <= y_hi)
    return path if inside.all() else path[: np.argmin(inside) + 1]


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
    colors: Sequence | None = None,
    ax=None,
):
    """Draw optimizer paths over the level sets of ``f`` (see ``plot_contour``), in light grey.

    ``paths`` maps a label (the optimizer) to its iterates, shape ``(steps + 1, 2)``; each path
    is a line with a dot per iterate, starting at a square. ``colors`` (one per path) defaults to
    ``PALETTE`` in order, as in ``plot_loss_curves``; pass ``METHOD_COLORS`` entries to compare
    optimizers. ``minimum`` marks the minimiser with a black star.
    """
    curves = {}
    for label, path in paths.items():
        path = to_numpy(path)
        if path.ndim != 2 or path.shape[1] != 2:
            raise ValueError(f"paths[{label!r}] must have shape (steps + 1, 2), got {path.shape}")
        curves[label] = path
    if not curves:
        raise ValueError("paths is empty: pass at least one path, e.g. {'SGD': iterates}")
    colors = _colors(colors, len(curves), "paths")
    ax = plot_contour(
        f, xlim, ylim, title, xlabel=xlabel, ylabel=ylabel, logscale=logscale, levels=levels,
        colorbar=False, color=CONTOUR_COLOR, ax=ax,
    )
    for color, (label, path) in zip(colors, curves.items()):
        ax.plot(path[:, 0], path[:, 1], "-o", color=color, markersize=3, linewidth=1.5,
                label=label)
        ax.plot(path[0, 0], path[0, 1], "s", color=color, markersize=7)
    if minimum is not None:
        ax.plot(*to_numpy(minimum), "*", color="black", markersize=14, label="minimum")
    return _label(ax, title, xlabel, ylabel)
