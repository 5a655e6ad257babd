"""Chapter 2 (batch, stochastic and mini-batch GD; learning-rate decay): the exercise's grading
round trip and the three pages.

Only chapter 2's students, expected scores and feedback are here: the nbgrader round trip they
go through is tests/course_roundtrip.py.
"""

import re
from pathlib import Path

import course_roundtrip as roundtrip
import pytest

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "02_sgd"
SOLUTION = roundtrip.solution_path(ASSIGNMENT)
RELEASE = roundtrip.release_path(ASSIGNMENT)
POINTS = {"mb_tests": 4.0, "step_tests": 1.0, "inverse_time_tests": 2.0, "staircase_tests": 2.0,
          "train_tests": 3.0}
ANSWERS = ("mb_answer", "step_answer", "inverse_time_answer", "staircase_answer", "train_answer")
PAGES = {name: ROOT / "book" / "02_sgd" / f"{name}.ipynb"
         for name in ("gradient_descent", "minibatch_study", "lr_decay")}


# --- fast: the committed notebooks ------------------------------------------------------------


def test_solution_has_points_markers_and_hidden_tests():
    roundtrip.assert_solution_cells(ASSIGNMENT, POINTS, ANSWERS)


def test_release_holds_stubs_only():
    text = roundtrip.assert_release_stubs(ASSIGNMENT, ANSWERS)
    assert "X_shuffled[start:start + batch_size]" not in text  # the instructor's answer
    assert "grading.rng(1000)" not in text  # hidden tests only


def test_notebooks_are_committed_without_outputs():
    roundtrip.assert_committed_without_outputs((*PAGES.values(), SOLUTION, RELEASE))


def test_timing_cells_are_marked_for_nbval():
    """Cells whose output depends on the machine's speed carry # NBVAL_IGNORE_OUTPUT."""
    timing = ("perf_counter", "h.times", "epoch_seconds")
    for path in PAGES.values():
        for cell in roundtrip.read(path).cells:
            if cell.cell_type == "code" and any(word in cell.source for word in timing):
                assert cell.source.startswith("# NBVAL_IGNORE_OUTPUT"), (path.name,
                                                                          cell.source[:80])


def test_scan_does_not_flag_the_release():
    """The student notebook as released passes the static scan (locked cells are trusted)."""
    scan = roundtrip.scan(RELEASE)
    assert scan.returncode == 0, scan.stdout


# --- slow: the grading round trip -----------------------------------------------------------

WRONG = {
    # Shuffles the caller's arrays in place.
    "mb_answer": """
def random_mini_batches(X, Y, batch_size, seed):
    order = np.random.default_rng(seed).permutation(X.shape[0])
    X[:] = X[order]
    Y[:] = Y[order]
    return [(X[s:s + batch_size], Y[s:s + batch_size]) for s in range(0, X.shape[0], batch_size)]
""",
    # Updates theta in place.
    "step_answer": """
def gd_step(theta, grad, lr):
    theta -= lr * grad
    return theta
""",
    # Counts epochs from 1: the first epoch already decays.
    "inverse_time_answer": """
def update_lr(epoch, lr0, decay_rate):
    return lr0 / (1 + decay_rate * (epoch + 1))
""",
}

DROPS_LAST_BATCH = {  # the left-over examples never train; right elsewhere
    "mb_answer": """
def random_mini_batches(X, Y, batch_size, seed):
    order = np.random.default_rng(seed).permutation(X.shape[0])
    X, Y = X[order], Y[order]
    return [(X[s:s + batch_size], Y[s:s + batch_size])
            for s in range(0, X.shape[0] - batch_size + 1, batch_size)]
""",
    # True division: a smooth exponential decay instead of a staircase.
    "staircase_answer": """
def schedule_lr_decay(epoch, lr0, time_interval, factor=0.5):
    return factor ** (epoch / time_interval) * lr0
""",
}

HARD_CODED = {  # what the visible tests check, nothing else
    "mb_answer": """
def random_mini_batches(X, Y, batch_size, seed):
    order = {(7, 0): [2, 4, 3, 6, 5, 0, 1], (7, 1): [5, 0, 1, 4, 2, 6, 3],
             (6, 5): [1, 4, 2, 3, 5, 0]}[(X.shape[0], seed)]
    X, Y = X[order], Y[order]
    return [(X[s:s + batch_size], Y[s:s + batch_size]) for s in range(0, X.shape[0], batch_size)]
""",
    "step_answer": """
def gd_step(theta, grad, lr):
    return theta - lr * grad if theta.shape == (2,) else theta.copy()
""",
    "inverse_time_answer": """
def update_lr(epoch, lr0, decay_rate):
    return 0.2 / (1 + np.asarray(epoch))
""",
    "staircase_answer": """
def schedule_lr_decay(epoch, lr0, time_interval, factor=0.5):
    return factor ** (np.asarray(epoch) // time_interval) * (0.2 if lr0 == 0.2 else 1.0)
""",
    "train_answer": """
def train_with_decay(X, y, theta0, lr0, decay_rate, batch_size, epochs, seed):
    return BOOK_CURVE.copy()  # the test cell's own numbers
""",
}

DECAYS_PER_STEP = {  # (e) only: the rate falls at every mini-batch instead of every epoch
    "train_answer": """
def train_with_decay(X, y, theta0, lr0, decay_rate, batch_size, epochs, seed):
    theta, step = theta0, 0
    curve = [full_loss(theta, X, y)]
    for epoch in range(epochs):
        for X_batch, y_batch in random_mini_batches(X, y, batch_size, seed + epoch):
            lr = update_lr(step, lr0, decay_rate)
            theta = gd_step(theta, batch_gradient(theta, X_batch, y_batch), lr)
            step += 1
        curve.append(full_loss(theta, X, y))
    return np.array(curve)
""",
}

CALLS_LIBRARIES = {  # the reference itself, and torch's scheduler formula
    "mb_answer": """
def random_mini_batches(X, Y, batch_size, seed):
    from gdlib.training import random_mini_batches as reference
    return reference(X, Y, batch_size, seed)
""",
    "inverse_time_answer": """
from gdlib import schedules


def update_lr(epoch, lr0, decay_rate):
    return schedules.inverse_time(epoch, lr0, decay_rate)
""",
}


SUBMISSIONS = {  # student: the answer cells they write (the others correct), or their notebook
    "correct": {},
    "unanswered": lambda: roundtrip.read(RELEASE),
    "wrong": WRONG,
    "drops_last_batch": DROPS_LAST_BATCH,
    "decays_per_step": DECAYS_PER_STEP,
    "hardcoded": HARD_CODED,
    "calls_libraries": CALLS_LIBRARIES,
}


# The round trip every chapter shares (tests/course_roundtrip.py): the graded fixture, the
# unanswered release failing only in its test cells, full marks for the correct student.
(graded, test_unanswered_release_fails_only_in_its_test_cells,
 test_correct_submission_gets_full_marks_and_unanswered_gets_zero) = (
    roundtrip.chapter_round_trip(ASSIGNMENT, POINTS, SUBMISSIONS))


@pytest.mark.slow
def test_in_place_updates_and_off_by_one_epochs_get_zero_with_feedback(graded):
    # (e) runs the student's (a)-(c): wrong there, wrong in the training run too.
    assert graded.scores["wrong"] == {"mb_tests": 0.0, "step_tests": 0.0,
                                      "inverse_time_tests": 0.0, "staircase_tests": 2.0,
                                      "train_tests": 0.0}
    assert "modified its argument X in place" in graded.feedback("wrong", "mb_tests")
    assert "modified its argument theta in place" in graded.feedback("wrong", "step_tests")
    inverse_time = graded.feedback("wrong", "inverse_time_tests")
    assert "epoch 0: expected 0.2, got 0.1" in inverse_time
    assert "hint: the seed counts epochs from 1, this notebook from 0" in inverse_time


@pytest.mark.slow
def test_missing_last_batch_and_smooth_staircase_get_zero_with_feedback(graded):
    # n = 1024 is a multiple of b = 32 in the book's run: only the hidden sets find it in (e).
    assert graded.scores["drops_last_batch"] == {"mb_tests": 0.0, "step_tests": 1.0,
                                                 "inverse_time_tests": 2.0,
                                                 "staircase_tests": 0.0, "train_tests": 0.0}
    assert "random set 0 (n = 50" in graded.feedback("drops_last_batch", "train_tests")
    assert ("expected 3 mini-batches (7 examples in batches of 3, sizes [3, 3, 1]), got 2"
            in graded.feedback("drops_last_batch", "mb_tests"))
    assert "epoch 1: expected 0.2, got 0.141421" in graded.feedback("drops_last_batch",
                                                                    "staircase_tests")


@pytest.mark.slow
def test_training_run_with_the_rate_decayed_per_step_gets_zero_with_its_hint(graded):
    assert graded.scores["decays_per_step"] == {**POINTS, "train_tests": 0.0}
    feedback = graded.feedback("decays_per_step", "train_tests")
    assert "train_with_decay on the book's run: the loss before and after epochs 1 to 3" in feedback
    assert "epoch 1: expected 1.0761" in feedback
    assert "hint: the rate decays at every mini-batch" in feedback
    assert "visible tests passed" not in feedback


@pytest.mark.slow
def test_hard_coded_answers_pass_only_the_visible_tests(graded):
    assert graded.scores["hardcoded"] == dict.fromkeys(POINTS, 0.0)
    for grade_id in POINTS:
        assert "visible tests passed" in graded.feedback("hardcoded", grade_id), grade_id
    assert "KeyError" in graded.feedback("hardcoded", "mb_tests")
    assert "random theta" in graded.feedback("hardcoded", "step_tests")


@pytest.mark.slow
def test_answers_that_call_gdlib_get_zero(graded):
    assert graded.scores["calls_libraries"] == {"mb_tests": 0.0, "step_tests": 1.0,
                                                "inverse_time_tests": 0.0, "staircase_tests": 2.0,
                                                "train_tests": 0.0}
    assert "gdlib.training.random_mini_batches" in graded.feedback("calls_libraries",
                                                                   "mb_tests")
    assert "gdlib.schedules" in graded.feedback("calls_libraries", "inverse_time_tests")


# --- slow: the pages ------------------------------------------------------------------------


@pytest.mark.slow
def test_gradient_descent_page_computes_the_seed_numbers(book_build):
    """Seed 004's 5,000 steps per epoch, the ravine's stability limit 2 / 4, GD stopping at the
    saddle of x^2 - y^2 (a maximum along y), and the 1/sqrt(b) gradient noise."""
    text = roundtrip.run_page(PAGES["gradient_descent"], book_build)
    for shown in ("5,000,000 instances / batches of 1,000 = 5,000 steps per epoch",
                  "GD converges for eta < 2 / 4 = 0.5",
                  "loop and vectorized gradients agree to 1e-12: True",
                  "mini-batch t = 3: instances [1]",
                  "Hessian eigenvalues there [-2.  2.]"):
        assert shown in text, shown
    assert "start (-1.5, 0): stopped by 'param_tol'" in text


@pytest.mark.slow
def test_study_page_reproduces_seed_002(book_build):
    """b = 1 diverges at eta = 0.1 and converges at 0.01; b = 256 converges at both."""
    text = roundtrip.run_page(PAGES["minibatch_study"], book_build)
    # rows of the table: "b = 32, eta = 0.1   epochs steps first-loss final-loss largest"
    row = re.compile(r"^(b = [^,]+, eta = [0-9.]+)\s+\d+\s+\d+\s+([0-9.]+)\s+(\S+)\s+\S+$")
    rows = {m[1]: (float(m[2]), float(m[3])) for m in map(row.match, text.splitlines()) if m}
    final = {name: last for name, (_, last) in rows.items()}
    assert len(final) == 8, final
    first, last = rows["b = 1, eta = 0.1"]
    assert 3e5 < last / first < 8e5  # "about half a million times above where it started"
    assert "about half a million times above\nwhere it started" in _prose(PAGES["minibatch_study"])
    for name in ("b = 1, eta = 0.01", "b = 256, eta = 0.01", "b = 256, eta = 0.1"):
        assert final[name] < 0.5, (name, final[name])
    assert final["b = 256, eta = 0.1"] < final["b = 256, eta = 0.01"]


@pytest.mark.slow
def test_decay_page_shows_the_schedules_and_their_effect(book_build):
    text = roundtrip.run_page(PAGES["lr_decay"], book_build)
    assert "inverse_time(lr0=0.2, rate=1): [0.2    0.1    0.0667 0.05   0.04  ]" in text
    assert "k / sqrt(0) = inf" in text
    for label in ("inverse time", "exponential", "staircase"):  # gdlib function = torch class
        line = next(line for line in text.splitlines() if line.startswith(label + ":"))
        lr_difference = float(line.split("max |lr difference| = ")[1].split(",")[0])
        assert lr_difference < 1e-15, line
    small = [float(v) for v in re.search(r"constant 0.01, mean distance in epochs 30, 35, 40: "
                                         r"(\S+), (\S+), (\S+)$", text, re.MULTILINE).groups()]
    assert small == sorted(small, reverse=True)  # "after 40 epochs its distance is still falling"


def _prose(path: Path) -> str:
    return "\n".join(c.source for c in roundtrip.read(path).cells if c.cell_type == "markdown")


def _found(pattern: str, text: str) -> tuple:
    match = re.search(pattern, text)
    assert match, f"the page does not print {pattern!r}"
    return match.groups()


@pytest.mark.slow
def test_chapter_2_prose_shows_the_values_its_runs_printed(book_build):
    """No "printed above" left for the reader to hunt (issue 12): each number the prose cites
    is glued from the cell that prints it, and is the value printed there."""
    for path in PAGES.values():
        assert "printed above" not in _prose(path), path.name
    checks = {
        "gradient_descent": {
            "loop_ratio": r"the loop is (\d+) times slower",
            "noise_ratio_measured": r"the error is (\S+) times smaller",
            "noise_ratio_formula": r"times smaller \(formula (\S+)\)",
            "band_min": r"loss from (\S+) to",
            "band_max": r"loss from \S+ to (\S+) \(full",
            "band_full": r"\(full training loss (\S+)\)",
            "band_outside": r": (\S+%) of their",
            "overtake_epoch": r"the small rate is ahead from epoch (\d+) on",
            "constant_rate_ratio": r"its excess loss is (\d+) times smaller",
            "below_x_steps": r"\|x\| first below 1e-3 after (\d+) steps",
            "below_y_steps": r"\|y\| first below 1e-3 after (\d+) steps",
            "saddle_extra_steps": r"closer to the line: (\d+) more slow",
            "saddle_per_decade": r"more slow steps, (\S+) per decade",
        },
        "lr_decay": {
            "halving_epochs": r"halves the rate every (\S+) epochs",
            "cloud_distance": r"mean over the last 10 epochs (\S+),",
            "cloud_epoch": r"first reached in epoch (\d+)",
            "distance_ratio": r"distance ratio (\S+) \(",
            "small_distance_30": r"epochs 30, 35, 40: (\S+), \S+, \S+",
            "small_distance_35": r"epochs 30, 35, 40: \S+, (\S+), \S+",
            "small_distance_40": r"epochs 30, 35, 40: \S+, \S+, (\S+)",
        },
        "minibatch_study": {
            "b1_lowest_step": r"lowest \S+ at step (\d+)",
            "b1_rise": r"\((\S+) times the lowest\)",
            "b256_rate_factor": r"the loss at eta = 0.1 is (\d+) times lower",
            "step_ratio_256": r"a step of b = 256 takes (\S+) times as long",
            "seconds_32_0.1": r"b = 32, eta = 0.1 +(\S+) +\(\S+ ms per step\)",
            "seconds_256_0.1": r"b = 256, eta = 0.1 +(\S+) +\(\S+ ms per step\)",
            "seconds_1797_0.1": r"b = n = 1797, eta = 0.1 +(\S+) +\(\S+ ms per step\)",
        },
    }
    for page, names in checks.items():
        text = roundtrip.run_page(PAGES[page], book_build)
        prose = _prose(PAGES[page])
        values = roundtrip.glued(PAGES[page], book_build)
        for name, pattern in names.items():
            roundtrip.assert_glued_as_printed(prose, values, name, _found(pattern, text)[0])


@pytest.mark.slow
def test_losses_page_glues_the_narrowest_step(book_build):
    page = ROOT / "book" / "01_losses" / "losses.ipynb"
    text = roundtrip.run_page(page, book_build)
    width = _found(r"narrowest step: .* \(width (\S+)\)", text)[0]
    assert "printed above" not in _prose(page)
    roundtrip.assert_glued_as_printed(_prose(page), roundtrip.glued(page, book_build),
                                      "narrowest_width", width)


@pytest.mark.slow
def test_exercise_training_run_is_the_curve_of_the_decay_page(book_build):
    """Part (e) of the exercise reproduces the noisy run of the page: the curve its test holds
    is the one the page computes, and the prose of both quotes its ends."""
    text = roundtrip.run_page(PAGES["lr_decay"], book_build)
    printed = _found(r"loss on the whole training set after epochs 0, 1, 10 and 40: (.*)",
                     text)[0]
    page = [float(v) for v in printed.split(", ")]
    tests = next(c.source for c in roundtrip.read(SOLUTION).cells
                 if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "train_tests")
    curve = [float(v) for v in re.search(r"BOOK_CURVE = np.array\(\[([^\]]*)\]\)", tests)[1]
             .replace("\n", " ").split(",")]
    assert len(curve) == 41
    assert [curve[e] for e in (0, 1, 10, 40)] == pytest.approx(page, rel=1e-9)
    for prose in (_prose(PAGES["lr_decay"]), _prose(SOLUTION)):
        assert f"starts at {page[0]:.5g}" in prose and f"ends at {page[3]:.5g}" in prose
