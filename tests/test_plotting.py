"""Tests for gdlib.plotting: every figure has a title, axis labels and a legend, and draws the data
it was given (Agg backend, no display)."""

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
