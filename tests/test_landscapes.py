"""Tests for gdlib.landscapes: the gallery's landscapes (value, gradient, minimiser), runs to a
target, the fair tuning sweep, the offline animation and the figures (Agg backend)."""

import base64
import io
import re
import shutil
import subprocess

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from gdlib import functions, landscapes, optim, plotting, training

GALLERY = {
    "long_valley": functions.LONG_VALLEY,
    "beale": functions.BEALE,
    "saddle": functions.SADDLE,
    "rosenbrock": functions.ROSENBROCK,
}
BOWL = functions.quadratic(a=1.0, b=1.0)  # x^2 + y^2: GD with lr 0.5 lands on 0 in one step


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def central_difference(f, theta, h=1e-6):
    return np.array([(f.value(theta + h * e) - f.value(theta - h * e)) / (2 * h)
                     for e in np.eye(2)])


# --- the landscapes ---------------------------------------------------------------------------


@pytest.mark.parametrize("f", GALLERY.values(), ids=GALLERY.keys())
def test_gradient_matches_finite_differences(f):
    (x_lo, x_hi), (y_lo, y_hi) = f.box
    points = np.random.default_rng(0).uniform([x_lo, y_lo], [x_hi, y_hi], size=(20, 2))
    for theta in points:
        numeric = central_difference(f, theta)
        scale = max(1.0, np.abs(numeric).max())
        np.testing.assert_allclose(f.grad(theta), numeric, rtol=1e-6, atol=1e-6 * scale)


@pytest.mark.parametrize(("f", "minimum"), [
    (functions.LONG_VALLEY, (0.0, 0.0)),
    (functions.BEALE, (3.0, 0.5)),
    (functions.ROSENBROCK, (1.0, 1.0)),
])
def test_known_minima(f, minimum):
    assert f.minimum == minimum and f.f_min == 0.0
    theta = np.array(minimum)
    assert f.value(theta) == pytest.approx(0.0, abs=1e-15)
    np.testing.assert_allclose(f.grad(theta), 0.0, atol=1e-12)
    assert np.all(np.linalg.eigvalsh(f.hessian(theta)) > 0)
    rng = np.random.default_rng(1)
    for step in rng.normal(scale=0.05, size=(20, 2)):  # a strict local minimum, value 0
        assert f.value(theta + step) > 0.0


def test_saddle_point_is_not_a_minimum():
    f = functions.SADDLE
    assert f.minimum is None and f.f_min is None
    origin = np.zeros(2)
    np.testing.assert_allclose(f.grad(origin), 0.0)
    assert sorted(np.linalg.eigvalsh(f.hessian(origin))) == [-2.0, 2.0]
    assert f.value(np.array([0.0, 0.1])) < 0.0 < f.value(np.array([0.1, 0.0]))


# --- runs to a target ---------------------------------------------------------------------


@pytest.mark.parametrize("rule", [optim.GD(0.001), optim.Momentum(0.003, 0.9),
                                  optim.Adam(0.1), optim.Adadelta(), optim.Nadam(0.03)],
                         ids=lambda rule: type(rule).__name__)
def test_run_to_target_takes_the_steps_of_training_minimize(rule):
    f = functions.ROSENBROCK
    run = landscapes.run_to_target(f, rule, f.start, 150, target=-1.0)  # never reached
    reference = training.minimize(f.value_and_grad, np.array(f.start), rule, 150)
    np.testing.assert_allclose(run.path, reference.thetas, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(run.values, reference.losses, rtol=1e-12, atol=1e-14)
    assert not run.reached and not run.diverged and len(run.values) == 151


def test_run_to_target_stops_at_the_first_value_below_the_target():
    f = functions.LONG_VALLEY
    full = landscapes.run_to_target(f, optim.GD(0.3), f.start, 600, target=-1.0)
    run = landscapes.run_to_target(f, optim.GD(0.3), f.start, 600, target=1e-6)
    k = landscapes.first_below(full.values, 1e-6)
    assert run.steps_to_target == k and len(run.values) == k + 1
    assert run.values[-1] <= 1e-6 < run.values[-2]
    assert landscapes.run_to_target(f, optim.GD(0.3), (0.0, 0.0), 10, 1e-6).steps_to_target == 0


def test_run_to_target_reports_divergence():
    run = landscapes.run_to_target(functions.ROSENBROCK, optim.GD(0.1), (-1.2, 1.0), 500, 1e-6)
    assert run.diverged and not run.reached
    assert not np.isfinite(run.values[-1]) or not np.all(np.isfinite(run.path[-1]))
    assert landscapes.steps_text(run, 500) == f"diverged at step {len(run.values) - 1}"


def test_run_to_target_checks_its_arguments():
    with pytest.raises(ValueError, match="steps"):
        landscapes.run_to_target(BOWL, optim.GD(0.1), (1.0, 1.0), -1, 0.0)
    with pytest.raises(ValueError, match="shape"):
        landscapes.run_to_target(BOWL, optim.GD(0.1), (1.0, 1.0, 1.0), 5, 0.0)


def test_steps_text():
    f = BOWL
    reached = landscapes.run_to_target(f, optim.GD(0.5), (1.0, 1.0), 10, 1e-12)
    missed = landscapes.run_to_target(f, optim.GD(1e-3), (1.0, 1.0), 10, 1e-12)
    assert landscapes.steps_text(reached, 10) == "1"
    assert landscapes.steps_text(missed, 10) == "did not reach within 10"


# --- fair tuning ------------------------------------------------------------------------------


def test_tune_picks_the_learning_rate_that_reaches_the_target_first():
    # On x^2 + y^2, GD contracts by |1 - 2 lr| per step: lr 0.5 lands on the minimum in one
    # step, 0.4 and 0.6 contract by 0.2, 0.1 and 0.9 by 0.8, and 1.2 grows by 1.4.
    grid = (0.1, 0.4, 0.5, 0.6, 0.9, 1.2)
    tuning = landscapes.tune(BOWL, {"GD": optim.GD}, grid, (1.0, -2.0), 200, 1e-10)
    lr, run = tuning.best["GD"]
    assert lr == 0.5 and run.steps_to_target == 1
    steps = tuning.steps("GD")
    assert steps[1] == steps[3] and steps[0] == steps[4] > steps[1] > 1
    assert steps[5] is None and tuning.runs["GD"][5].values[-1] > 1e50


def test_tune_gives_every_method_its_own_best_rate_from_the_same_grid():
    makers = {"GD": optim.GD, "Momentum": lambda lr: optim.Momentum(lr, 0.5)}
    grid = (0.01, 0.1, 0.5, 1.0)
    tuning = landscapes.tune(BOWL, makers, grid, (1.0, 1.0), 300, 1e-8)
    assert tuning.grid == grid and set(tuning.runs) == set(makers)
    for name, make in makers.items():
        steps = [landscapes.run_to_target(BOWL, make(lr), (1.0, 1.0), 300, 1e-8)
                 .steps_to_target for lr in grid]
        assert tuning.steps(name) == steps
        fewest = min(k for k in steps if k is not None)
        assert tuning.best[name][0] == grid[steps.index(fewest)]  # ties: the smaller rate


def test_best_index_ties_and_misses():
    run = landscapes.run_to_target
    same = [run(BOWL, optim.GD(lr), (1.0, 1.0), 100, 1e-6) for lr in (0.4, 0.6)]
    assert same[0].steps_to_target == same[1].steps_to_target
    assert landscapes.best_index(same) == 0
    # Nobody reaches an unreachable target: the run that ends lowest wins.
    missed = [run(BOWL, optim.GD(lr), (1.0, 1.0), 20, -1.0) for lr in (0.01, 0.2, 1.5)]
    assert missed[2].values[-1] > missed[0].values[-1] > missed[1].values[-1]
    assert landscapes.best_index(missed) == 1
    # A run that diverged (its last value not finite) never wins.
    diverged = run(functions.ROSENBROCK, optim.GD(0.1), (-1.2, 1.0), 500, 1e-6)
    assert diverged.diverged
    assert landscapes.best_index([diverged, missed[2]]) == 1


def test_tune_needs_a_grid_and_methods():
    with pytest.raises(ValueError, match="grid"):
        landscapes.tune(BOWL, {"GD": optim.GD}, (), (1.0, 1.0), 10, 0.0)
    with pytest.raises(ValueError, match="makers"):
        landscapes.tune(BOWL, {}, (0.1,), (1.0, 1.0), 10, 0.0)


def test_tables_show_the_chosen_rate_hyperparameters_and_steps():
    makers = {"GD": optim.GD, "Adam": optim.Adam, "Momentum": lambda lr: optim.Momentum(lr, 0.9)}
    grid = (0.001, 0.1, 0.5)
    tuning = landscapes.tune(BOWL, makers, grid, (1.0, 1.0), 50, 1e-8)
    table = landscapes.tuning_table(tuning, makers, 50)
    rows = {line.split()[0]: line for line in table.splitlines()[1:]}
    assert re.match(r"GD\s+0\.5 \*\s+-\s+1$", rows["GD"])
    assert "beta1=0.9, beta2=0.999, eps=1e-08" in rows["Adam"]
    assert "beta=0.9" in rows["Momentum"]
    assert "edge of the grid" in table
    grid_lines = landscapes.grid_table(tuning).splitlines()
    assert grid_lines[0].split() == ["method", "0.001", "0.1", "0.5"]
    assert grid_lines[1].split()[0] == "GD" and grid_lines[1].split()[-1] == "1"
    assert landscapes.hyperparameters(optim.GD(0.1)) == "-"
    assert landscapes.hyperparameters(optim.Adagrad(0.1, eps_inside_sqrt=True)) == (
        "eps=1e-10, eps_inside_sqrt")


# --- what the gallery measures ---------------------------------------------------------------


def test_overshoot_is_zero_for_small_gd_steps_and_positive_for_momentum():
    f = functions.LONG_VALLEY
    gd = landscapes.run_to_target(f, optim.GD(0.3), f.start, 2000, 1e-6)
    momentum = landscapes.run_to_target(f, optim.Momentum(1.0, 0.9), f.start, 2000, 1e-6)
    assert landscapes.overshoot(gd.path, f.start, f.minimum) == 0.0
    assert landscapes.overshoot(momentum.path, f.start, f.minimum) > 0.5
    # A path that ends 0.25 beyond the minimum along the line from the start overshoots 0.25.
    path = np.array([[-1.0, 0.0], [0.25, 0.0], [0.0, 0.0]])
    assert landscapes.overshoot(path, (-1.0, 0.0), (0.0, 0.0)) == pytest.approx(0.25)


def test_first_below():
    assert landscapes.first_below([3.0, 2.0, 0.5, 0.1], 0.5) == 2
    assert landscapes.first_below([3.0, 2.0], 0.5) is None


@pytest.mark.parametrize("length", [1, 7, 40, 41, 100, 2001])
def test_frame_steps_start_at_zero_end_at_the_last_step_and_increase(length):
    steps = np.asarray(landscapes.frame_steps(length, 40))
    assert steps[0] == 0 and steps[-1] == length - 1
    assert len(steps) == min(length, 40) and np.all(np.diff(steps) > 0)
    if length >= 100:
        assert steps[1] == 1 and np.diff(steps)[-1] > np.diff(steps)[0]  # geometric spacing


# --- the animation and the figures -------------------------------------------------------


def paths_on(f, steps=60):
    rules = {"GD": optim.GD(0.001), "Adam": optim.Adam(0.1), "Nadam": optim.Nadam(0.1)}
    return {name: landscapes.run_to_target(f, rule, f.start, steps, -np.inf).path
            for name, rule in rules.items()}


def frames_of(html):
    return [base64.b64decode(data.replace("\\\n", "")) for data in
            re.findall(r'data:image/png;base64,([A-Za-z0-9+/=\\\n]+)"', html)]


def test_animation_is_an_offline_javascript_player_with_few_small_frames():
    f = functions.ROSENBROCK
    html = landscapes.animate_trajectories(f, paths_on(f), f.box, "Rosenbrock", frames=12,
                                           logscale=True)
    assert "<script" in html and "new Animation(" in html and "anim-controls" in html
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?(?:https?:)?//", html)
    assert "fa fa-" not in html and "&#9654;" in html  # the play button, as a symbol
    frames = frames_of(html)
    assert len(frames) == 12
    sizes = {Image.open(io.BytesIO(frame)).size for frame in frames}
    assert len(sizes) == 1  # every frame of one size
    assert all(Image.open(io.BytesIO(frame)).mode == "P" for frame in frames)  # palette PNG
    assert len(html) < 400_000
    assert not plt.get_fignums()  # no figure left behind to be displayed again


def test_animation_frames_differ_as_the_paths_grow():
    f = functions.SADDLE
    frames = frames_of(landscapes.animate_trajectories(f, paths_on(f, 10), f.box, "Saddle",
                                                       frames=4))
    assert len(frames) == 4 and len(set(frames)) == 4


def test_animation_background_has_title_labels_and_legend():
    f = functions.BEALE
    paths = paths_on(f, 5)
    colors = [plotting.METHOD_COLORS[name] for name in paths]
    fig, ax = landscapes.animation_background(f, paths, f.box, "Beale", colors, logscale=True)
    assert ax.get_title() == "Beale"
    assert ax.get_xlabel() and ax.get_ylabel()
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["minimum", *paths]


def test_offline_player_removes_the_cdn_link_and_refuses_leftovers():
    html = ('<link rel="stylesheet"\nhref="https://maxcdn.example/font-awesome.min.css">'
            '<button><i class="fa fa-play"></i></button>')
    cleaned = landscapes.offline_player(html)
    assert "https" not in cleaned and cleaned.endswith("<button>&#9654;</button>")
    with pytest.raises(ValueError, match="remote"):
        landscapes.offline_player('<script src="https://cdn.example/x.js"></script>')


def test_animation_checks_its_arguments():
    f = functions.SADDLE
    with pytest.raises(ValueError, match="title"):
        landscapes.animate_trajectories(f, paths_on(f, 3), f.box, "")
    with pytest.raises(ValueError, match="paths is empty"):
        landscapes.animate_trajectories(f, {}, f.box, "Saddle")
    with pytest.raises(ValueError, match="colors"):
        landscapes.animate_trajectories(f, paths_on(f, 3), f.box, "Saddle", colors=["red"])


@pytest.mark.parametrize("f", [functions.LONG_VALLEY, functions.SADDLE], ids=["valley", "saddle"])
def test_race_figure_has_titles_labels_and_one_legend(f):
    target = -1.0 if f.f_min is None else 1e-6
    runs = {name: landscapes.run_to_target(f, rule, f.start, 100, target)
            for name, rule in {"GD": optim.GD(0.1), "Adam": optim.Adam(0.3)}.items()}
    fig, axes = landscapes.race_figure(f, runs, f.box, "Race", target)
    assert axes[0].get_title() == "Race: paths"
    assert all(ax.get_title() and ax.get_xlabel() and ax.get_ylabel() for ax in axes)
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert {"GD", "Adam", "target"} <= set(labels)
    assert ("minimum" in labels) == (f.minimum is not None)
    assert axes[1].get_yscale() == ("linear" if f.f_min is None else "log")


def test_unknown_methods_get_colours_no_method_uses():
    colors = landscapes._path_colors(["GD", "NewRule", "Other"], None)
    assert colors[0] == plotting.METHOD_COLORS["GD"]
    assert not set(colors[1:]) & set(plotting.METHOD_COLORS.values())
    assert colors[1] != colors[2]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs a headless chromium")
def test_animation_plays_offline_in_headless_chromium(tmp_path):
    """The player runs in a browser with no network: after "play" the image shows the last
    frame (the DOM as Chromium left it; --virtual-time-budget lets the timer run out)."""
    f = functions.SADDLE
    html = landscapes.animate_trajectories(f, paths_on(f, 8), f.box, "Saddle", frames=5,
                                           interval=50)
    ident = re.search(r'id="_anim_img(\w+)"', html).group(1)
    page = tmp_path / "player.html"
    page.write_text(f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>{html}'
                    f"<script>setTimeout(function() {{ anim{ident}.play_animation(); }}, 50);"
                    "</script></body></html>", encoding="utf-8")
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
         "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    shown = re.search(rf'id="_anim_img{ident}"[^>]*src="data:image/png;base64,([^"]+)"',
                      dom.stdout)
    assert shown, dom.stderr[-2000:]
    frames = re.findall(r'data:image/png;base64,([A-Za-z0-9+/=\\\n]+)"', html)
    assert shown.group(1) == frames[-1].replace("\\\n", "")
    assert shown.group(1) != frames[0].replace("\\\n", "")
