"""Tests for gdlib.plotting: every figure has a title, axis labels and a legend, and draws the data
it was given (Agg backend, no display)."""

import itertools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from gdlib import plotting


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def bowl(theta):
    """An elongated quadratic bowl, minimum 0 at the origin."""
    return theta[..., 0] ** 2 + 10.0 * theta[..., 1] ** 2


def legend_texts(ax):
    legend = ax.get_legend()
    assert legend is not None, "figure has no legend"
    return [text.get_text() for text in legend.get_texts()]


def assert_labelled(ax, title, xlabel, ylabel):
    assert ax.get_title() == title
    assert ax.get_xlabel() == xlabel
    assert ax.get_ylabel() == ylabel


def test_backend_is_agg():
    assert matplotlib.get_backend().lower() == "agg"


def test_use_style_sets_the_course_style():
    plt.rcdefaults()
    plotting.use_style()
    assert plt.rcParams["axes.grid"] is True
    assert plt.rcParams["axes.spines.top"] is False
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    assert [c.lower() for c in colors] == [c.lower() for c in plotting.PALETTE]
    plt.rcdefaults()


def test_plot_curves_draws_each_curve_with_its_label():
    x = np.linspace(-2, 2, 41)
    ys = [x**2, np.abs(x)]
    ax = plotting.plot_curves(x, ys, ["MSE", "MAE"], "Losses", "residual", "loss")
    assert_labelled(ax, "Losses", "residual", "loss")
    assert legend_texts(ax) == ["MSE", "MAE"]
    lines = ax.get_lines()
    assert len(lines) == 2
    np.testing.assert_array_equal(lines[0].get_xdata(), x)
    np.testing.assert_array_equal(lines[1].get_ydata(), np.abs(x))


def test_plot_curves_passes_styles_and_log_scale():
    x = np.arange(1.0, 6.0)
    ax = plotting.plot_curves(
        x, [x, x**2], ["a", "b"], "t", "x", "y", styles=[{}, {"linestyle": "--"}], logy=True
    )
    assert ax.get_lines()[1].get_linestyle() == "--"
    assert ax.get_yscale() == "log"


def test_plot_curves_draws_into_a_given_panel():
    fig, axes = plt.subplots(1, 2)
    x = np.linspace(0, 1, 5)
    returned = plotting.plot_curves(x, [x], ["x"], "right", "x", "y", ax=axes[1])
    assert returned is axes[1]
    assert axes[0].get_lines() == []
    assert len(fig.axes) == 2


def test_plot_curves_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    x = torch.linspace(0, 1, 5, requires_grad=True)
    ax = plotting.plot_curves(x, [x * 2], ["2x"], "t", "x", "y")
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), np.linspace(0, 2, 5), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"labels": ["only one"]}, "labels has 1 entries but ys has 2"),
        ({"title": ""}, "title must be a non-empty string"),
        ({"ys": [np.zeros(5), np.zeros(4)]}, r"ys\[1\] has shape \(4,\)"),
        ({"styles": [{}]}, "styles has 1 entries"),
    ],
)
def test_plot_curves_rejects_bad_input(kwargs, message):
    args = {
        "x": np.zeros(5), "ys": [np.zeros(5), np.ones(5)], "labels": ["a", "b"],
        "title": "t", "xlabel": "x", "ylabel": "y",
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        plotting.plot_curves(**args)


def test_plot_loss_curves_plots_each_run_against_its_steps():
    histories = {"SGD": [4.0, 2.0, 1.0, 0.5], "Adam": [4.0, 1.0]}
    ax = plotting.plot_loss_curves(histories, "Training loss")
    assert_labelled(ax, "Training loss", "step", "loss")
    assert legend_texts(ax) == ["SGD", "Adam"]
    assert ax.get_yscale() == "log"
    sgd, adam = ax.get_lines()
    np.testing.assert_array_equal(sgd.get_xdata(), [0, 1, 2, 3])
    np.testing.assert_array_equal(adam.get_ydata(), [4.0, 1.0])


def test_plot_loss_curves_rejects_non_positive_losses_on_a_log_axis():
    with pytest.raises(ValueError, match=r"histories\['GD'\] has non-positive losses"):
        plotting.plot_loss_curves({"GD": [1.0, 0.0]}, "t")
    ax = plotting.plot_loss_curves({"GD": [1.0, 0.0]}, "t", logy=False)
    assert ax.get_yscale() == "linear"


def test_plot_loss_curves_rejects_empty_histories():
    with pytest.raises(ValueError, match="histories is empty"):
        plotting.plot_loss_curves({}, "t")


def test_plot_contour_evaluates_f_on_the_grid():
    ax = plotting.plot_contour(bowl, (-2, 2), (-1, 1), "Bowl", resolution=50)
    assert_labelled(ax, "Bowl", r"$\theta_1$", r"$\theta_2$")
    assert ax.get_xlim() == (-2, 2)
    assert ax.get_ylim() == (-1, 1)
    (contours,) = [c for c in ax.collections if hasattr(c, "levels")]
    # the highest level cannot exceed the largest value of f on the box, 2**2 + 10 * 1**2 = 14
    assert contours.levels.max() <= 14.0 + 1e-9
    assert len(ax.figure.axes) == 2, "expected a colour bar next to the contour plot"


def test_plot_contour_log_levels_are_geometric():
    ax = plotting.plot_contour(bowl, (-2, 2), (-1, 1), "Bowl", logscale=True, levels=5)
    (contours,) = [c for c in ax.collections if hasattr(c, "levels")]
    ratios = contours.levels[1:] / contours.levels[:-1]
    np.testing.assert_allclose(ratios, ratios[0])


def test_plot_contour_rejects_a_function_with_the_wrong_output_shape():
    with pytest.raises(ValueError, match=r"f must map points of shape \(\.\.\., 2\)"):
        plotting.plot_contour(lambda theta: theta, (-1, 1), (-1, 1), "t", resolution=10)
    with pytest.raises(ValueError, match="logscale=True needs f >= 0"):
        plotting.plot_contour(lambda t: t[..., 0], (-1, 1), (-1, 1), "t", logscale=True)


def test_plot_trajectories_draws_paths_start_points_and_minimum():
    path = np.array([[1.5, 0.8], [1.0, 0.2], [0.5, 0.05], [0.1, 0.0]])
    ax = plotting.plot_trajectories(
        bowl, {"GD": path, "momentum": path[::2]}, (-2, 2), (-1, 1), "Paths", minimum=(0, 0)
    )
    assert_labelled(ax, "Paths", r"$\theta_1$", r"$\theta_2$")
    assert legend_texts(ax) == ["GD", "momentum", "minimum"]
    gd_line = next(line for line in ax.get_lines() if line.get_label() == "GD")
    np.testing.assert_array_equal(gd_line.get_xdata(), path[:, 0])
    np.testing.assert_array_equal(gd_line.get_ydata(), path[:, 1])
    assert len(ax.figure.axes) == 1, "trajectory plots carry a legend, not a colour bar"


def test_plot_trajectories_draws_every_path_even_beyond_the_palette():
    paths = {f"run {k}": np.array([[k / 10, 0.0], [0.0, 0.0]]) for k in range(12)}
    ax = plotting.plot_trajectories(bowl, paths, (-2, 2), (-1, 1), "Many")
    assert legend_texts(ax) == list(paths)


def test_plot_trajectories_rejects_paths_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"paths\['GD'\] must have shape \(steps \+ 1, 2\)"):
        plotting.plot_trajectories(bowl, {"GD": np.zeros((4, 3))}, (-1, 1), (-1, 1), "t")
    with pytest.raises(ValueError, match="paths is empty"):
        plotting.plot_trajectories(bowl, {}, (-1, 1), (-1, 1), "t")


def test_figures_render_to_png(tmp_path):
    x = np.linspace(-1, 1, 11)
    ax = plotting.plot_curves(x, [x**2], ["square"], "t", "x", "y")
    out = tmp_path / "figure.png"
    ax.figure.savefig(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_trajectories_takes_a_gdlib_landscape():
    functions = pytest.importorskip("gdlib.functions")
    f = functions.rosenbrock()
    path = np.array([f.start, (0.0, 0.0), f.minimum])
    ax = plotting.plot_trajectories(
        f.value, {"GD": path}, *f.box, "Rosenbrock", minimum=f.minimum, logscale=True
    )
    assert ax.get_xlim() == f.box[0]
    assert legend_texts(ax) == ["GD", "minimum"]


# --- colours: one per run in every kind of plot, one per optimizer on every page ---------------


def cielab(color):
    """CIE L*a*b* (D65) of a matplotlib colour: distances of about 2.3 are just noticeable."""
    rgb = np.array(matplotlib.colors.to_rgb(color))
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    to_xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                       [0.0193, 0.1192, 0.9505]])
    xyz = to_xyz @ linear / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def color_difference(a, b):
    return float(np.linalg.norm(cielab(a) - cielab(b)))


def test_cielab_matches_reference_values():
    np.testing.assert_allclose(cielab("white"), [100, 0, 0], atol=0.05)
    np.testing.assert_allclose(cielab("black"), [0, 0, 0], atol=1e-9)
    # sRGB red is L* 53.24, a* 80.09, b* 67.20
    np.testing.assert_allclose(cielab("#FF0000"), [53.24, 80.09, 67.20], atol=0.1)


def test_method_colors_name_every_rule_of_gdlib_optim():
    optim = pytest.importorskip("gdlib.optim")
    rules = {name for name in optim.__all__
             if isinstance(getattr(optim, name), type)
             and issubclass(getattr(optim, name), optim.Rule) and name != "Rule"}
    assert set(plotting.METHOD_COLORS) == rules


def test_method_colors_are_told_apart():
    colors = plotting.METHOD_COLORS
    for a, b in itertools.combinations(colors, 2):
        assert color_difference(colors[a], colors[b]) > 25, (a, b)
    # The methods compared from chapter 4 on differ more than vermillion and orange, the pair a
    # reader could not tell apart (difference 33).
    assert color_difference(plotting.PALETTE[1], plotting.PALETTE[3]) < 35
    for a, b in itertools.combinations(("GD", "Momentum", "Nesterov"), 2):
        assert color_difference(colors[a], colors[b]) > 45, (a, b)
    for name, color in colors.items():  # visible on the white page, and not the black of minima
        assert color_difference(color, "white") > 35, name
        assert color_difference(color, "black") > 20, name


def line_colors(ax, labels):
    by_label = {line.get_label(): line.get_color() for line in ax.get_lines()}
    return [matplotlib.colors.to_hex(by_label[label]) for label in labels]


def test_a_path_and_its_loss_curve_get_the_same_colour():
    runs = {"GD": np.array([[1.5, 0.8], [1.0, 0.2], [0.5, 0.0]]),
            "momentum": np.array([[1.5, 0.8], [0.5, -0.2], [0.1, 0.0]])}
    _, (left, right) = plt.subplots(1, 2)
    plotting.plot_trajectories(bowl, runs, (-2, 2), (-1, 1), "Paths", ax=left)
    plotting.plot_loss_curves({k: bowl(p) + 1 for k, p in runs.items()}, "Loss", ax=right)
    expected = [c.lower() for c in plotting.PALETTE[:2]]
    assert line_colors(left, runs) == expected
    assert line_colors(right, runs) == expected


def test_colors_argument_sets_one_colour_per_run():
    colors = [plotting.METHOD_COLORS["Nesterov"], plotting.METHOD_COLORS["GD"]]
    runs = {"NAG": np.array([[1.0, 0.5], [0.0, 0.0]]), "GD": np.array([[1.0, 0.5], [0.5, 0.2]])}
    ax = plotting.plot_trajectories(bowl, runs, (-2, 2), (-1, 1), "Paths", colors=colors)
    assert line_colors(ax, runs) == [c.lower() for c in colors]
    ax = plotting.plot_loss_curves({"NAG": [2.0, 1.0], "GD": [2.0, 1.5]}, "t", colors=colors)
    assert line_colors(ax, ["NAG", "GD"]) == [c.lower() for c in colors]
    with pytest.raises(ValueError, match="colors has 1 entries but paths has 2"):
        plotting.plot_trajectories(bowl, runs, (-2, 2), (-1, 1), "t", colors=colors[:1])
    with pytest.raises(ValueError, match="colors has 1 entries but histories has 2"):
        plotting.plot_loss_curves({"a": [1.0], "b": [1.0]}, "t", colors=["red"])


def test_trajectories_are_drawn_over_grey_level_lines():
    ax = plotting.plot_trajectories(bowl, {"GD": np.zeros((2, 2))}, (-2, 2), (-1, 1), "t",
                                    logscale=True)
    (contours,) = [c for c in ax.collections if hasattr(c, "levels")]
    grey = matplotlib.colors.to_rgba(plotting.CONTOUR_COLOR)
    np.testing.assert_allclose(contours.get_edgecolor(), [grey] * len(contours.get_edgecolor()))
    with pytest.raises(ValueError, match="a colour bar needs the colour map"):
        plotting.plot_contour(bowl, (-1, 1), (-1, 1), "t", color="grey")


# --- figures sized for the page -----------------------------------------------------------------


def test_page_figure_is_as_wide_as_the_page():
    fig, axes = plotting.page_figure(2, 2, height=2.5)
    assert len(axes) == 4 and all(ax.figure is fig for ax in axes)
    np.testing.assert_allclose(fig.get_size_inches(), [plotting.PAGE_WIDTH, 5.0])
    assert fig.get_layout_engine() is not None  # constrained: labels do not overlap
    _, axes = plotting.page_figure()
    assert len(axes) == 1


@pytest.mark.parametrize(
    "args, message",
    [((1, 3), "cols must be 1 or 2, got 3"), ((0, 1), "rows must be a positive integer"),
     ((1, 1.5), "cols must be a positive integer")],
)
def test_page_figure_rejects_more_than_two_panels_side_by_side(args, message):
    with pytest.raises(ValueError, match=message):
        plotting.page_figure(*args)


def test_shared_legend_lists_each_label_once_in_the_spare_panel():
    _, axes = plotting.page_figure(2, 2)
    for k, ax in enumerate(axes[:3]):
        plotting.plot_trajectories(bowl, {"GD": np.zeros((2, 2)), "momentum": np.ones((2, 2))},
                                   (-2, 2), (-1, 1), f"panel {k}", minimum=(0, 0), ax=ax)
    legend = plotting.shared_legend(axes[:3], into=axes[3])
    assert [t.get_text() for t in legend.get_texts()] == ["GD", "momentum", "minimum"]
    assert all(ax.get_legend() is None for ax in axes[:3])
    assert axes[3].get_legend() is legend and not axes[3].axison


def test_shared_legend_goes_below_the_panels_without_a_spare_panel(tmp_path):
    fig, axes = plotting.page_figure(1, 2)
    x = np.linspace(0, 1, 5)
    plotting.plot_curves(x, [x], ["a"], "left", "x", "y", ax=axes[0])
    plotting.plot_curves(x, [x, 2 * x], ["a", "b"], "right", "x", "y", ax=axes[1])
    legend = plotting.shared_legend(axes, ncols=2)
    assert legend in fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["a", "b"]
    fig.canvas.draw()
    legend_box = legend.get_window_extent()
    assert all(legend_box.y1 <= ax.get_tightbbox().y0 + 1 for ax in axes), "legend overlaps"
    # Saved as the book saves it (100 dpi, tight box), the figure fits the ~690 px page column
    # with at most a few per cent of shrinking, so 10 pt text stays about 10 pt.
    out = tmp_path / "figure.png"
    fig.savefig(out, dpi=100, bbox_inches="tight")
    width = int.from_bytes(out.read_bytes()[16:20], "big")
    assert width <= 740, width
    with pytest.raises(ValueError, match="no labelled artists"):
        plotting.shared_legend([plt.subplots()[1]])


def test_until_outside_keeps_a_path_up_to_its_first_point_outside_the_box():
    path = np.array([[0.0, 0.0], [1.0, 0.5], [3.0, 0.0], [0.5, 0.5], [9.0, 9.0]])
    np.testing.assert_array_equal(plotting.until_outside(path, (-2, 2), (-1, 1)), path[:3])
    np.testing.assert_array_equal(plotting.until_outside(path[:2], (-2, 2), (-1, 1)), path[:2])
    diverged = np.array([[0.0, 0.0], [np.nan, np.nan]])
    assert len(plotting.until_outside(diverged, (-2, 2), (-1, 1))) == 2
    with pytest.raises(ValueError, match=r"path must have shape \(steps \+ 1, 2\)"):
        plotting.until_outside(np.zeros(3), (-1, 1), (-1, 1))
