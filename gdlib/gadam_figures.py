"""Figures of the Gadam chapter: the architecture diagram (seed 000 Figure 2, redrawn) and the
population on a 2-D landscape, animated generation by generation (offline player).

    from gdlib import gadam, gadam_figures
    gadam_figures.architecture()                   # the flow of one generation, eqs 43-50
    html = gadam_figures.animate_population(f, history, "Gadam on Rastrigin")

``animate_population`` needs a run on a 2-D ``gadam.LandscapePoint`` recorded with
``record="steps"``; it returns the HTML of matplotlib's JavaScript player made offline by
``gdlib.landscapes.offline_player`` (every frame a palette PNG, ``landscapes.compact_frames``).
"""

import itertools

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import animation
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from gdlib import landscapes, plotting

# Colours: parents blue, children vermillion, survivors ringed in black (plotting.PALETTE).
PARENT, CHILD, SURVIVOR = plotting.PALETTE[0], plotting.PALETTE[1], "black"

# The boxes of the diagram: (key, text, x, y) in axes coordinates [0, 1] x [0, 1].
_STEPS = (
    ("population", "generation $\\mathcal{G}^{(k)}$\n$g$ unit models", 0.125, 0.78),
    ("adam", "Adam on own\nmini-batches (eq 43)", 0.375, 0.78),
    ("fitness", "fitness on\nbatch $\\mathcal{V}$ (eq 44)", 0.625, 0.78),
    ("selection", "softmax$(-\\hat{L})$,\n$g$ parent pairs (eq 45)", 0.875, 0.78),
    ("crossover", "crossover\n(eqs 46-47)", 0.875, 0.36),
    ("mutation", "mutation\n(eqs 48-49)", 0.625, 0.36),
    ("children", "Adam on\nthe children", 0.375, 0.36),
    ("next", "best $g$ of parents $\\cup$\nchildren on $\\mathcal{V}'$", 0.125, 0.36),
)
_HALF = 0.112  # half the width of a box
_FLOW = ("population", "adam", "fitness", "selection", "crossover", "mutation", "children",
         "next")


def architecture(ax=None):
    """Seed 000 Figure 2 as a flow diagram: one generation of Gadam from G^(k) to G^(k+1),
    the stop test of eq 50 on the way back. Returns the ``Axes``."""
    if ax is None:
        _, ax = plt.subplots(figsize=(plotting.PAGE_WIDTH, 3.4))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_axis_off()
    centres = {}
    colours = {"adam": PARENT, "children": PARENT, "crossover": CHILD, "mutation": CHILD}
    for key, text, x, y in _STEPS:
        colour = colours.get(key, "0.35")
        ax.add_patch(FancyBboxPatch((x - _HALF, y - 0.1), 2 * _HALF, 0.2,
                                    boxstyle="round,pad=0.01", facecolor="white",
                                    edgecolor=colour, linewidth=1.6))
        ax.text(x, y, text, ha="center", va="center", fontsize=8)
        centres[key] = (x, y)
    for a, b in itertools.pairwise(_FLOW):
        (xa, ya), (xb, yb) = centres[a], centres[b]
        if ya == yb:
            direction = np.sign(xb - xa)
            start, end = (xa + (_HALF + 0.01) * direction, ya), (xb - (_HALF + 0.01) * direction, yb)
        else:
            start, end = (xa, ya - 0.11), (xb, yb + 0.11)
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12,
                                     color="0.25", linewidth=1.2))
    (xn, yn), (xp, yp) = centres["next"], centres["population"]
    ax.add_patch(FancyArrowPatch((xn, yn + 0.11), (xp, yp - 0.11), arrowstyle="-|>",
                                 mutation_scale=12, color="black", linewidth=1.6))
    ax.text(xn + 0.012, 0.57, "$\\mathcal{G}^{(k+1)}$, next $k$,\nuntil eq 50 or $K$",
            fontsize=8, va="center")
    ax.text(0.5, 0.08, "blue: gradient steps (Adam); vermillion: genetic operators; "
            "grey: evaluation and selection", ha="center", fontsize=8,
            color="0.3")
    ax.set_title("One generation of Gadam (seed 000 Figure 2, redrawn)")
    return ax


def _frames(history) -> list:
    """(generation, phase) for every frame: phase 0 Adam on the parents, 1 crossover and
    mutation, 2 Adam on the children and the survivors."""
    return [(k, phase) for k in range(len(history.snapshots)) for phase in range(3)]


def animate_population(f, history, title: str, *, box=None, levels: int = 20,
                       figsize: tuple = (6.4, 4.4), dpi: int = 80, interval: int = 700) -> str:
    """The population of a 2-D Gadam run over the level sets of ``f``, three frames per
    generation: the parents' Adam paths (eq 43); the children after crossover and mutation,
    each joined to its two parents (eqs 46-49); the children's Adam paths and the g survivors
    ringed (§6.1.4). ``history`` must come from a run with ``record="steps"`` on a model whose
    only parameter is a point (``gadam.LandscapePoint``). Returns offline HTML."""
    plotting._require_title(title)
    if not history.snapshots or "parent_paths" not in history.snapshots[0]:
        raise ValueError("animate_population needs a run recorded with record='steps'")
    if history.parameters != 2:
        raise ValueError(f"animate_population draws 2-D points, the run has "
                         f"{history.parameters} parameters")
    box = f.box if box is None else box
    fig, ax = plt.subplots(figsize=figsize, dpi=dpi, layout="constrained")
    plotting.plot_contour(f.value, *box, title, levels=levels, colorbar=False,
                          color=plotting.CONTOUR_COLOR, ax=ax)
    ax.plot(*f.minimum, "*", color="black", markersize=12, label="global minimum")
    ax.plot([], [], "o", color=PARENT, label="parents")
    ax.plot([], [], "o", color=CHILD, label="children")
    ax.plot([], [], "o", markerfacecolor="none", markeredgecolor=SURVIVOR, markersize=9,
            label="survivors")
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    fig.legend(loc="outside lower center", ncols=4, fontsize=8)
    artists = []
    caption = ax.text(0.02, 0.97, "", transform=ax.transAxes, va="top", fontsize=8,
                      bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85})
    frames = _frames(history)

    def draw(index):
        for artist in artists:
            artist.remove()
        artists.clear()
        k, phase = frames[index]
        snap = history.snapshots[k]
        parents = snap["trained"].numpy()
        if phase == 0:
            for path in snap["parent_paths"].numpy():
                artists.extend(ax.plot(path[:, 0], path[:, 1], "-", color=PARENT, lw=0.8,
                                       alpha=0.6))
            artists.extend(ax.plot(*snap["start"].numpy().T, "s", color=PARENT, ms=3,
                                   alpha=0.5))
            text = "Adam trains every unit (eq 43)"
        elif phase == 1:
            children = snap["children"].numpy()
            for (i, j), child in zip(history.pairs[k], children):
                for parent in (parents[i], parents[j]):
                    artists.extend(ax.plot([parent[0], child[0]], [parent[1], child[1]], "-",
                                           color=CHILD, lw=0.6, alpha=0.5))
            artists.extend(ax.plot(*children.T, "o", color=CHILD, ms=4))
            mutated = int(history.mutations[k].sum())
            text = f"crossover and mutation (eqs 46-49): {mutated} entries mutated"
        else:
            for path in snap["child_paths"].numpy():
                artists.extend(ax.plot(path[:, 0], path[:, 1], "-", color=CHILD, lw=0.8,
                                       alpha=0.6))
            trained = snap["children_trained"].numpy()
            artists.extend(ax.plot(*trained.T, "o", color=CHILD, ms=4))
            union = np.concatenate([parents, trained])
            kept = union[history.survivors[k]]
            artists.extend(ax.plot(*kept.T, "o", markerfacecolor="none",
                                   markeredgecolor=SURVIVOR, ms=9))
            best = history.generation_losses[k][0]
            text = (f"children trained; best g kept, {int(history.children_kept()[k])} of "
                    f"them children; best f = {best:.3g}")
        artists.extend(ax.plot(*parents.T, "o", color=PARENT, ms=4))
        caption.set_text(f"generation {k}: {text}")
        return [*artists, caption]

    anim = animation.FuncAnimation(fig, draw, frames=len(frames), interval=interval,
                                   repeat=False)
    try:
        with plt.rc_context({"savefig.dpi": dpi, "savefig.bbox": "standard"}):
            html = anim.to_jshtml(default_mode="once")
    finally:
        plt.close(fig)
    return landscapes.offline_player(landscapes.compact_frames(html))


def population_figure(f, history, generations, title: str, *, levels: int = 20):
    """The printable companion of the animation: the population G^(k) (squares) and its
    trained units (dots) for the listed generations, one panel each (at most 4), over the
    level sets of ``f``. Returns ``(figure, axes)``."""
    generations = list(generations)
    if not 1 <= len(generations) <= 4:
        raise ValueError("pass 1 to 4 generations")
    rows = (len(generations) + 1) // 2
    fig, axes = plotting.page_figure(rows, 2 if len(generations) > 1 else 1, height=3.0)
    for ax, k in zip(axes, generations):
        snap = history.snapshots[k]
        plotting.plot_contour(f.value, *f.box, f"{title}: generation {k}", levels=levels,
                              colorbar=False, color=plotting.CONTOUR_COLOR, ax=ax)
        ax.plot(*f.minimum, "*", color="black", markersize=11, label="global minimum")
        ax.plot(*snap["start"].numpy().T, "s", color=PARENT, ms=4, alpha=0.6,
                label="$\\mathcal{G}^{(k)}$ before Adam")
        ax.plot(*snap["trained"].numpy().T, "o", color=PARENT, ms=4, label="after Adam")
        ax.plot(*snap["children_trained"].numpy().T, "o", color=CHILD, ms=4,
                label="children, trained")
    for ax in axes[len(generations):]:
        ax.set_axis_off()
    plotting.shared_legend(axes[: len(generations)], ncols=4, fontsize=8)
    return fig, axes
