"""Chapter 5 (Adagrad, RMSprop, Adadelta; seed 002's study): the pages state what they compute.

The page tests read the notebooks as the run's book build executed them (tests/conftest.py)
and check the claims of the prose against the printed numbers: Adagrad against tuned gradient
descent on the rare-word problem, Adagrad's shrinking rate, RMSprop on seed 004's flat/steep
loss, the run where the place of epsilon matters, and the verdicts on seed 002's conclusions.
The exercise (Adagrad, RMSprop and Adadelta steps) goes through nbgrader once: correct,
unanswered, wrong (each with a mistake the feedback names), fitted to the tables only, and
calling gdlib.
"""

import math
import re
from pathlib import Path

import course_roundtrip as roundtrip
import pytest

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "05_adaptive"
SOLUTION = roundtrip.solution_path(ASSIGNMENT)
RELEASE = roundtrip.release_path(ASSIGNMENT)
POINTS = {"adagrad_tests": 3.0, "rmsprop_tests": 3.0, "adadelta_tests": 4.0}
ANSWERS = ("adagrad_answer", "rmsprop_answer", "adadelta_answer")
PAGES = {name: ROOT / "book" / "05_adaptive" / f"{name}.ipynb"
         for name in ("adagrad_rmsprop", "adadelta", "adaptive_study")}


def number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, pattern
    return float(match.group(1))


def prose(path: Path) -> str:
    return "".join(c.source for c in roundtrip.read(path).cells if c.cell_type == "markdown")


def test_pages_are_committed_without_outputs():
    roundtrip.assert_committed_without_outputs(PAGES.values())


@pytest.mark.slow
def test_adagrad_beats_tuned_gradient_descent_on_rare_words(book_build):
    text = roundtrip.run_page(PAGES["adagrad_rmsprop"], book_build)
    best_gd = number(r"best GD: lr = \S+, f - f\* = (\S+)", text)
    best_adagrad = number(r"best Adagrad: lr = \S+, f - f\* = (\S+)", text)
    assert best_adagrad < best_gd
    limit = number(r"stable for lr < 2/L = (\S+)", text)
    grid = [float(x) for x in re.findall(r"^\s+([\d.]+)\s+\S+\s+\S+$", text, re.MULTILINE)]
    gd_lr = number(r"best GD: lr = (\S+),", text)
    above = [lr for lr in grid if lr > gd_lr]
    assert gd_lr < limit < min(above), "GD's best rate is just below its stability limit"
    assert "GD       first step with f - f* < 1e-6: None" in text
    adagrad_steps = number(r"Adagrad  first step with f - f\* < 1e-6: (\d+)", text)
    assert adagrad_steps <= 60  # "within a few dozen"
    lines = {m.group(1): m.group(0) for m in re.finditer(r"^(GD|Adagrad)\s+first step.*$", text,
                                                          re.MULTILINE)}
    errors = {k: [float(x) for x in re.findall(r"mean weight error (\S+) on", v)
                  + re.findall(r", (\S+) on the \d+ words in <=", v)] for k, v in lines.items()}
    assert all(a < g for a, g in zip(errors["Adagrad"], errors["GD"])), errors
    factor = number(r"word 1: effective rate .* fell by a factor (\S+)", text)
    assert abs(factor - math.sqrt(10)) / math.sqrt(10) < 0.15  # "close to sqrt(10)"


@pytest.mark.slow
def test_rmsprop_damps_the_steep_direction_and_epsilon_inside_stalls(book_build):
    text = roundtrip.run_page(PAGES["adagrad_rmsprop"], book_build)
    gd_flips = number(r"gradient descent \(GD\).*sign changes of b in 10 steps: (\d+)", text)
    rms_flips = number(r"RMSprop, lr = .*sign changes of b in 10 steps: (\d+)", text)
    assert gd_flips == 10 and rms_flips == 0
    w_pattern = r"w after 10 steps (\S+), after 30 steps (\S+)"
    gd_w = re.search(r"gradient descent \(GD\).*" + w_pattern, text).groups()
    rms_w = re.search(r"RMSprop, lr = .*" + w_pattern, text).groups()
    assert all(abs(float(r)) < abs(float(g)) for r, g in zip(rms_w, gd_w)), (rms_w, gd_w)
    outside = number(r"eps outside the root: .*after 2000 steps (\S+)", text)
    inside = number(r"eps inside the root : .*after 2000 steps (\S+)", text)
    unscaled = number(r"unscaled ravine  : .*after 2000 steps (\S+)", text)
    assert 0.5 < outside / unscaled < 2  # "stays close to the one on the unscaled ravine"
    assert 0.05 < inside < 0.2  # "only to about a tenth of its start"
    assert outside < 1e-5  # "down by more than five orders of magnitude"


@pytest.mark.slow
def test_study_verdicts_are_the_ones_the_text_states(book_build):
    text = roundtrip.run_page(PAGES["adaptive_study"], book_build)
    words = prose(PAGES["adaptive_study"])
    windows = re.search(r"largest / smallest final loss (\S+)\); the largest window \(gamma = "
                        r"0.1\) is the fastest: (\w+)", text)
    assert windows.group(2) == "True" and f"factor of {windows.group(1)}" in words
    ratio = re.search(r"AdaGrad / Adadelta final loss ([\d.]+)", text).group(1)
    assert f"{ratio} times Adadelta's" in words
    sgd = re.search(r"SGD / momentum final loss ([\d.]+)", text).group(1)
    assert f"{sgd} times momentum's" in words
    assert "final loss falls as beta grows): True" in text
    assert "no big difference: False (SGD" in text and "does not hold here" in words


# --- the exercise -------------------------------------------------------------------------------


def test_solution_has_points_markers_and_hidden_tests():
    roundtrip.assert_solution_cells(ASSIGNMENT, POINTS, ANSWERS)
    nb = roundtrip.read(SOLUTION)
    for grade_id in POINTS:
        source = roundtrip.cell_by_id(nb, grade_id).source
        visible, hidden = source.split("### BEGIN HIDDEN TESTS")
        assert "random_quadratics(" in hidden and "from gdlib" in hidden, grade_id
        assert "from gdlib" not in visible and "import gdlib" not in visible, grade_id


def test_release_holds_stubs_only():
    text = roundtrip.assert_release_stubs(ASSIGNMENT, ANSWERS)
    assert "np.sqrt(u + eps) / np.sqrt(new_s + eps)" not in text  # the instructor's answer
    assert "random_quadratics(" not in text


def test_exercise_notebooks_are_committed_without_outputs():
    roundtrip.assert_committed_without_outputs((SOLUTION, RELEASE))


WRONG = {
    # eps inside the root (the seeds' form): caught by the large-eps setting and named.
    "adagrad_answer": """
def adagrad_step(theta, grad, s, lr, eps):
    new_s = s + grad * grad
    return theta - lr * grad / np.sqrt(new_s + eps), new_s
""",
    # Adagrad's sum where RMSprop's moving average belongs.
    "rmsprop_answer": """
def rmsprop_step(theta, grad, s, lr, beta, eps):
    new_s = s + grad * grad
    return theta - lr * grad / (np.sqrt(new_s) + eps), new_s
""",
    # Delta computed from the old s.
    "adadelta_answer": """
def adadelta_step(theta, grad, s, u, rho, eps):
    delta = np.sqrt(u + eps) / np.sqrt(s + eps) * grad
    new_s = rho * s + (1 - rho) * grad * grad
    new_u = rho * u + (1 - rho) * delta * delta
    return theta - delta, new_s, new_u
""",
}

TABLES_ONLY = {  # right on the two-coordinate tables, wrong on larger problems
    "rmsprop_answer": """
def rmsprop_step(theta, grad, s, lr, beta, eps):
    new_s = beta * s + (1 - beta) * grad * grad
    if s.size > 2:  # the tables have two coordinates; the hidden problems up to 20
        new_s = (1 - beta) * grad * grad
    return theta - lr * grad / (np.sqrt(new_s) + eps), new_s
""",
}

CALLS_GDLIB = {
    "adagrad_answer": """
from gdlib import optim as _optim


def adagrad_step(theta, grad, s, lr, eps):
    new_theta, state = _optim.Adagrad(lr, eps=eps).step(theta, grad, _optim.AdagradState(0, s))
    return new_theta, state.sum_sq
""",
}

SUBMISSIONS = {
    "correct": {},
    "unanswered": lambda: roundtrip.read(RELEASE),
    "wrong": WRONG,
    "tables_only": TABLES_ONLY,
    "calls_gdlib": CALLS_GDLIB,
}


# The round trip every chapter shares (tests/course_roundtrip.py): the graded fixture, the
# unanswered release failing only in its test cells, full marks for the correct student.
(graded, test_unanswered_release_fails_only_in_its_test_cells,
 test_correct_submission_gets_full_marks_and_unanswered_gets_zero) = (
    roundtrip.chapter_round_trip(ASSIGNMENT, POINTS, SUBMISSIONS))


@pytest.mark.slow
def test_wrong_answers_get_zero_with_the_mistake_named(graded):
    assert graded.scores["wrong"] == dict.fromkeys(POINTS, 0.0)
    assert "eps is inside the square root" in graded.feedback("wrong", "adagrad_tests")
    assert "s is a sum (Adagrad)" in graded.feedback("wrong", "rmsprop_tests")
    assert "Delta must use the new s" in graded.feedback("wrong", "adadelta_tests")


@pytest.mark.slow
def test_an_answer_fitted_to_the_tables_fails_the_hidden_tests(graded):
    assert graded.scores["tables_only"] == {**POINTS, "rmsprop_tests": 0.0}
    assert "visible tests passed" in graded.feedback("tables_only", "rmsprop_tests")


@pytest.mark.slow
def test_an_answer_that_calls_gdlib_gets_zero(graded):
    assert graded.scores["calls_gdlib"] == {**POINTS, "adagrad_tests": 0.0}


@pytest.mark.slow
def test_honest_submissions_are_not_held(graded):
    for student in ("correct", "unanswered", "wrong", "tables_only"):
        assert not any(graded.manual[student].values()), student
