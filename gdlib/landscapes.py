"""Races of optimizers on the 2-D test landscapes: runs to a target, fair tuning, animations.

The landscapes themselves live in ``gdlib.functions`` (value, gradient, Hessian, minimiser):
``LONG_VALLEY`` (``0.02 u^2 + v^2`` rotated by 45 degrees, minimum 0 at the origin), ``BEALE``
(minimum ``f(3, 0.5) = 0``), ``SADDLE`` (``x^2 - y^2``, saddle point at the origin, unbounded
below) and ``ROSENBROCK`` (minimum ``f(1, 1) = 0``). This module adds what the landscape gallery
of the book needs to compare the rules of ``gdlib.optim`` on them::

    from gdlib import functions, landscapes, optim
    f = functions.ROSENBROCK
    run = landscapes.run_to_target(f, optim.Adam(0.1), f.start, steps=2000, target=1e-6)
    run.steps_to_target            # first k with f(theta_k) <= target, or None
    tuning = landscapes.tune(f, {"GD": optim.GD, "Adam": optim.Adam}, (1e-3, 1e-2, 0.1),
                             f.start, steps=2000, target=1e-6)
    tuning.best["Adam"]            # (lr, Run): the grid's learning rate that gets there first
    html = landscapes.animate_trajectories(f, {"Adam": run.path}, f.box, "Adam on Rosenbrock")

Tuning is fair by construction: every method is run with every learning rate of the *same*
grid, from the same start, with the same step budget, and keeps the learning rate that reaches
the target in the fewest steps (see ``tune``).

The animation is matplotlib's JavaScript player (``FuncAnimation.to_jshtml``): every frame is a
PNG embedded as base64 in the HTML, so it plays with no network and no video codec. matplotlib's
player links the Font Awesome stylesheet from a CDN for its button icons; ``offline_player``
removes that link and writes the buttons as plain Unicode symbols.
"""

import base64
import io
import math
import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import animation
from PIL import Image

from gdlib import plotting
from gdlib.functions import Landscape


class Run(NamedTuple):
    """One optimizer run on a landscape (what ``run_to_target`` returns).

    ``path[k]`` is ``theta_k`` (``path[0]`` the start), shape ``(k_last + 1, 2)``; ``values[k] =
    f(theta_k)``; ``steps_to_target`` is the first ``k`` with ``values[k] <= target`` (the run
    stops there) or ``None`` when the budget ran out or the run diverged first; ``diverged``
    is True when a value became non-finite (the last row is that iterate).
    """

    path: np.ndarray
    values: np.ndarray
    steps_to_target: int | None
    diverged: bool

    @property
    def reached(self) -> bool:
        return self.steps_to_target is not None


def run_to_target(f: Landscape, rule, start, steps: int, target: float) -> Run:
    """Iterate ``theta_k = rule.update(theta_{k-1}, grad f(theta_{k-1}))`` until ``f(theta_k) <=
    target``, a non-finite value, or ``steps`` steps.

    ``rule`` is any rule of ``gdlib.optim``; its formula is called as written there (``update``
    with the rule's own ``lr``), without the per-step argument checks of ``rule.step``: the
    inputs are float64 numpy arrays of shape ``(2,)`` built here, so a tuning sweep of a few
    hundred runs stays fast. ``target`` is ``f_min + tol`` for a landscape with a minimum, or a
    value below the saddle for ``SADDLE`` (an escape).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    theta = np.array(start, dtype=float)
    if theta.shape != (2,):
        raise ValueError(f"start must have shape (2,), got {theta.shape}")
    state = rule.init(theta)
    value, (f_x, f_y), _ = f.parts(theta[0], theta[1], np)
    path, values = [theta], [float(value)]
    reached = 0 if value <= target else None
    diverged = False
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for _ in range(steps if reached is None else 0):
            theta, state = rule.update(theta, np.array([f_x, f_y], dtype=float), state, rule.lr)
            value, (f_x, f_y), _ = f.parts(theta[0], theta[1], np)
            path.append(theta)
            values.append(float(value))
            if not (np.all(np.isfinite(theta)) and math.isfinite(value)
                    and math.isfinite(f_x) and math.isfinite(f_y)):
                diverged = True
                break
            if value <= target:
                reached = len(values) - 1
                break
    return Run(np.array(path), np.array(values), reached, diverged)


class Tuning(NamedTuple):
    """What ``tune`` returns.

    ``grid``: the learning rates tried; ``runs[name][i]``: method ``name``'s run with
    ``grid[i]``; ``best[name] = (lr, run)``: the learning rate chosen for ``name`` and its run.
    """

    grid: tuple
    runs: dict
    best: dict

    def steps(self, name: str) -> list:
        """Steps to the target of method ``name`` for every learning rate (None: not reached)."""
        return [run.steps_to_target for run in self.runs[name]]


def best_index(runs: Sequence[Run]) -> int:
    """Index of the best run: fewest steps to the target; ties go to the earlier run (the
    smaller learning rate of an increasing grid). If no run reaches the target, the run that
    ends lowest among those that did not diverge (else the first)."""
    reached = [i for i, run in enumerate(runs) if run.reached]
    if reached:
        return min(reached, key=lambda i: (runs[i].steps_to_target, i))
    finite = [i for i, run in enumerate(runs) if not run.diverged]
    return min(finite, key=lambda i: (runs[i].values[-1], i)) if finite else 0


def tune(f: Landscape, makers: Mapping[str, Callable], grid: Sequence[float], start, steps: int,
         target: float) -> Tuning:
    """Give each method its best learning rate from one shared ``grid``.

    ``makers`` maps a method's name to a function ``lr -> rule`` (e.g. ``optim.GD``, or
    ``lambda lr: optim.Momentum(lr, 0.9)``: every other hyperparameter fixed). Every method runs
    ``run_to_target(f, make(lr), start, steps, target)`` for every ``lr`` of ``grid`` and keeps
    the one of ``best_index``. Same grid, start, budget and target for all: a fair comparison.
    """
    grid = tuple(float(lr) for lr in grid)
    if not grid:
        raise ValueError("grid is empty: pass the learning rates to try")
    if not makers:
        raise ValueError("makers is empty: pass {name: lr -> rule}")
    runs, best = {}, {}
    for name, make in makers.items():
        runs[name] = [run_to_target(f, make(lr), start, steps, target) for lr in grid]
        i = best_index(runs[name])
        best[name] = (grid[i], runs[name][i])
    return Tuning(grid, runs, best)


def steps_text(run: Run, budget: int) -> str:
    """``"123"`` when the run reached its target in 123 steps, else ``"did not reach within
    N"`` (``"diverged at step k"`` when it blew up)."""
    if run.reached:
        return str(run.steps_to_target)
    if run.diverged:
        return f"diverged at step {len(run.values) - 1}"
    return f"did not reach within {budget}"


def overshoot(path, start, minimum) -> float:
    """How far a path went *past* the minimum, along the line from the start to the minimum.

    With ``d = (minimum - start) / |minimum - start|``: ``max_k <theta_k - minimum, d>``, clipped
    at 0. Positive means that some iterate crossed the plane through the minimum perpendicular
    to ``d``: the run overshot. Gradient descent with a small step on a bowl never does.
    """
    path, start, minimum = (np.asarray(a, dtype=float) for a in (path, start, minimum))
    direction = (minimum - start) / np.linalg.norm(minimum - start)
    return max(0.0, float(np.max((path - minimum) @ direction)))


def first_below(values, threshold: float) -> int | None:
    """The first index ``k`` with ``values[k] <= threshold``, or None."""
    hits = np.nonzero(np.asarray(values, dtype=float) <= threshold)[0]
    return int(hits[0]) if hits.size else None


def frame_steps(length: int, frames: int) -> np.ndarray:
    """At most ``frames`` step indices from 0 to ``length - 1``, spaced geometrically (every
    early step, then ever larger strides), so a race of 20 steps and one of 2000 both show."""
    if length < 1 or frames < 2:
        raise ValueError(f"need length >= 1 and frames >= 2, got {length} and {frames}")
    if length <= frames:
        return np.arange(length)
    count = frames
    while True:  # ends: with enough points every integer step is hit, and length > frames
        steps = np.unique(np.round(np.geomspace(1, length, count)).astype(int) - 1)
        if steps.size >= frames:
            break
        count += 1
    return steps[np.unique(np.linspace(0, steps.size - 1, frames).round().astype(int))]


# matplotlib's player draws its buttons with Font Awesome icons from a CDN: offline they would be
# empty boxes. Plain Unicode symbols instead, one per icon class of the template.
_ICONS = {
    "fa fa-minus": "&#8722;",  # minus sign: slower
    "fa fa-fast-backward": "&#10073;&#9664;&#9664;",  # first frame: bar, two left triangles
    "fa fa-step-backward": "&#10073;&#9664;",  # previous frame: bar, left triangle
    "fa fa-play fa-flip-horizontal": "&#9664;",  # play backwards: left triangle
    "fa fa-pause": "&#10073;&#10073;",  # pause: two bars
    "fa fa-play": "&#9654;",  # play: right triangle
    "fa fa-step-forward": "&#9654;&#10073;",  # next frame: right triangle, bar
    "fa fa-fast-forward": "&#9654;&#9654;&#10073;",  # last frame: two right triangles, bar
    "fa fa-plus": "+",  # faster
}
_REMOTE_LINK = re.compile(r"<link[^>]*href=[\"']?(?:https?:)?//[^>]*>", re.IGNORECASE)


def offline_player(html: str) -> str:
    """matplotlib's ``to_jshtml`` output with no reference to another host: the Font Awesome
    ``<link>`` removed, its icons replaced by Unicode symbols. Raises if a remote URL is left."""
    html = _REMOTE_LINK.sub("", html)
    for icon, symbol in _ICONS.items():
        html = html.replace(f'<i class="{icon}"></i>', symbol)
    left = re.findall(r"(?:src|href)\s*=\s*[\"']?(?:https?:)?//", html, re.IGNORECASE)
    if left or "fa fa-" in html:
        raise ValueError("the player still refers to remote assets or icons: "
                         f"{left or 'fa fa-'}; matplotlib's template changed")
    return html


# Colours for paths whose label has no entry in plotting.METHOD_COLORS (e.g. a rule added to
# gdlib.optim later): Tol's muted teal, sand, rose and grey, none of them a method's colour.
EXTRA_COLORS = ("#44AA99", "#DDCC77", "#CC6677", "#777777")


def _path_colors(labels, colors):
    """``colors`` as a list, by default ``plotting.METHOD_COLORS`` for names of optim rules
    and ``EXTRA_COLORS`` in turn for other labels."""
    if colors is not None:
        return list(colors)
    extra = iter(EXTRA_COLORS * len(labels))
    return [plotting.METHOD_COLORS.get(label) or next(extra) for label in labels]


def animation_background(f: Landscape, paths: Mapping[str, np.ndarray], box: tuple,
                         title: str, colors: Sequence, *, logscale: bool = False,
                         levels: int = 20, figsize: tuple = (6.4, 3.4), dpi: int = 64):
    """The still part of ``animate_trajectories``'s frames: level sets, title, axis labels,
    each path's start (a square), the minimum (a star) and a legend naming every path.
    Returns ``(figure, axes)``."""
    fig, ax = plt.subplots(figsize=figsize, dpi=dpi, layout="constrained")
    plotting.plot_contour(f.value, *box, title, logscale=logscale, levels=levels,
                          colorbar=False, color=plotting.CONTOUR_COLOR, ax=ax)
    if f.minimum is not None:
        ax.plot(*f.minimum, "*", color="black", markersize=12, label="minimum")
    for color, (label, path) in zip(colors, paths.items()):
        ax.plot(*path[0], "s", color=color, markersize=6)
        ax.plot([], [], "-o", color=color, linewidth=1.5, markersize=4, label=label)
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    fig.legend(loc="outside right center", fontsize=9)
    return fig, ax


def animate_trajectories(
    f: Landscape,
    paths: Mapping[str, Sequence],
    box: tuple,
    title: str,
    *,
    frames: int = 40,
    colors: Sequence | None = None,
    logscale: bool = False,
    levels: int = 20,
    figsize: tuple = (6.4, 3.4),
    dpi: int = 64,
    interval: int = 150,
) -> str:
    """An HTML animation of optimizer paths over the level sets of ``f``, playable offline.

    ``paths`` maps a label to its iterates, shape ``(steps + 1, 2)`` (runs may have different
    lengths: a path that ended stays drawn in full). Frame ``j`` shows every path up to step
    ``frame_steps(longest, frames)[j]``, written in the plot's corner; paths are cut where they
    leave ``box = ((x_lo, x_hi), (y_lo, y_hi))`` (``plotting.until_outside``). Colours default
    to ``plotting.METHOD_COLORS`` for names of ``gdlib.optim`` rules.

    The still part (``animation_background``: level sets, title, labels, legend) is rendered
    once; the frames draw only the paths over that picture, so a frame costs a few lines.
    Returns the HTML of matplotlib's JavaScript player (``FuncAnimation.to_jshtml``, every
    frame a base64 PNG, re-encoded by ``compact_frames``) made offline by ``offline_player``;
    display it with ``IPython.display.HTML``. Keep ``frames``, ``figsize`` and ``dpi`` small:
    the page carries every frame.
    """
    plotting._require_title(title)
    if not paths:
        raise ValueError("paths is empty: pass at least one path, e.g. {'GD': iterates}")
    full = {label: plotting.to_numpy(path) for label, path in paths.items()}
    cut = {label: plotting.until_outside(path, *box) for label, path in full.items()}
    colors = _path_colors(cut, colors)
    if len(colors) != len(cut):
        raise ValueError(f"colors has {len(colors)} entries but paths has {len(cut)}")
    steps = frame_steps(max(len(path) for path in full.values()), frames)

    still, still_ax = animation_background(f, cut, box, title, colors, logscale=logscale,
                                           levels=levels, figsize=figsize, dpi=dpi)
    still.canvas.draw()
    background = np.asarray(still.canvas.buffer_rgba()).copy()
    position, limits = still_ax.get_position(), (still_ax.get_xlim(), still_ax.get_ylim())
    plt.close(still)

    fig = plt.figure(figsize=figsize, dpi=dpi)
    fig.figimage(background, origin="upper", zorder=-1)
    ax = fig.add_axes(position)
    ax.set_xlim(limits[0])
    ax.set_ylim(limits[1])
    ax.set_axis_off()
    trails = [ax.plot([], [], "-", color=c, linewidth=1.5)[0] for c in colors]
    heads = [ax.plot([], [], "o", color=c, markersize=5)[0] for c in colors]
    counter = ax.text(0.02, 0.96, "", transform=ax.transAxes, va="top", fontsize=9,
                      bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8})

    def draw(j):
        step = steps[j]
        for trail, head, path in zip(trails, heads, cut.values()):
            shown = path[: step + 1]
            trail.set_data(shown[:, 0], shown[:, 1])
            head.set_data(shown[-1:, 0], shown[-1:, 1])
        counter.set_text(f"step {step}")
        return [*trails, *heads, counter]

    anim = animation.FuncAnimation(fig, draw, frames=len(steps), interval=interval,
                                   repeat=False)
    try:  # frames at the figure's dpi and size (the course style saves at 150 dpi, tight)
        with plt.rc_context({"savefig.dpi": dpi, "savefig.bbox": "standard"}):
            html = anim.to_jshtml(default_mode="once")
    finally:
        plt.close(fig)
    return offline_player(compact_frames(html))


_FRAME = re.compile(r'(data:image/png;base64,)([A-Za-z0-9+/=\\\n]+)"')


def compact_frames(html: str, colors: int = 256) -> str:
    """Re-encode every base64 PNG frame of a ``to_jshtml`` player as a ``colors``-colour
    palette PNG (Pillow's fast octree quantizer): line drawings keep their look at about a
    quarter of the bytes of matplotlib's RGBA frames."""

    def smaller(match):
        data = base64.b64decode(match.group(2).replace("\\\n", ""))
        image = Image.open(io.BytesIO(data)).convert("RGB")
        palette = image.quantize(colors, method=Image.Quantize.FASTOCTREE)
        buffer = io.BytesIO()
        palette.save(buffer, format="png")
        return match.group(1) + base64.b64encode(buffer.getvalue()).decode("ascii") + '"'

    return _FRAME.sub(smaller, html)


def hyperparameters(rule) -> str:
    """The fixed hyperparameters of a ``gdlib.optim`` rule, without ``lr`` and the flags:
    e.g. ``"beta=0.9"`` for ``Momentum(lr, 0.9)``, ``"-"`` for ``GD``."""
    skip = {"lr", "check_finite"}
    parts = [f"{field.name}={getattr(rule, field.name):g}" for field in fields(rule)
             if field.name not in skip and isinstance(getattr(rule, field.name), numbers.Real)
             and not isinstance(getattr(rule, field.name), bool)]
    flags = [field.name for field in fields(rule)
             if field.name not in skip and getattr(rule, field.name) is True]
    return ", ".join(parts + flags) or "-"


def tuning_table(tuning: Tuning, makers: Mapping[str, Callable], budget: int) -> str:
    """A text table, one row per method: the learning rate ``tune`` chose from the grid, the
    fixed hyperparameters, and the steps to the target (``steps_text``)."""
    rows = [("method", "best lr of the grid", "fixed hyperparameters", "steps to the target")]
    edges = (min(tuning.grid), max(tuning.grid))
    for name, (lr, run) in tuning.best.items():
        rows.append((name, f"{lr:g}" + (" *" if lr in edges else ""),
                     hyperparameters(makers[name](lr)), steps_text(run, budget)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
             for row in rows]
    if any(lr in edges for lr, _ in tuning.best.values()):
        lines.append("* at the edge of the grid: a rate beyond it might do better")
    return "\n".join(lines)


def grid_table(tuning: Tuning) -> str:
    """Every run of the sweep: steps to the target per method (rows) and learning rate
    (columns), ``-`` where the run did not get there."""
    header = "method".ljust(10) + "".join(f"{lr:>8g}" for lr in tuning.grid)
    lines = [header]
    for name in tuning.runs:
        cells = "".join(f"{'-' if k is None else k:>8}" for k in tuning.steps(name))
        lines.append(name.ljust(10) + cells)
    return "\n".join(lines)


def race_figure(f: Landscape, runs: Mapping[str, Run], box: tuple, title: str,
                target: float, *, logscale: bool = False, height: float = 3.2):
    """The printable companion of ``animate_trajectories``: the whole paths over the level
    sets (left) and ``f(theta_k) - f_min`` against the step with the target as a dashed line
    (right; ``f(theta_k)`` on a linear axis when ``f`` has no minimum, e.g. ``SADDLE``), one
    legend below. Colours from ``plotting.METHOD_COLORS``. Returns ``(figure, axes)``."""
    colors = _path_colors(runs, None)
    fig, axes = plotting.page_figure(1, 2, height=height)
    paths = {name: plotting.until_outside(run.path, *box) for name, run in runs.items()}
    plotting.plot_trajectories(f.value, paths, *box, f"{title}: paths", minimum=f.minimum,
                               logscale=logscale, levels=20, colors=colors, ax=axes[0])
    if f.f_min is None:
        curves = {name: run.values for name, run in runs.items()}
        plotting.plot_loss_curves(curves, f"{title}: value", ylabel=r"$f(\theta_k)$",
                                  logy=False, colors=colors, ax=axes[1])
        axes[1].axhline(target, color="black", linestyle="--", linewidth=1, label="target")
    else:
        tiny = np.finfo(float).tiny  # an exact minimum would not show on a log axis
        curves = {name: np.maximum(run.values - f.f_min, tiny) for name, run in runs.items()}
        plotting.plot_loss_curves(curves, rf"{title}: $f(\theta_k) - f^*$",
                                  ylabel=r"$f(\theta_k) - f^*$", colors=colors, ax=axes[1])
        axes[1].axhline(target - f.f_min, color="black", linestyle="--", linewidth=1,
                        label="target")
    axes[1].set_xscale("symlog", linthresh=10)
    axes[1].set_xlim(left=0)
    plotting.shared_legend(axes, ncols=5, fontsize=8)
    return fig, axes
