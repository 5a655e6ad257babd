"""Chapter 4 (momentum, Nesterov): the exercise's grading round trip and the two book pages.

The round trip (release, submit, one ``nbgrader autograde``, scores and manual-grading flags
from the gradebook) is tests/course_roundtrip.py's; this file holds the students and what they
must get. Besides right and wrong answers, three students attack the step-by-step checker (it
used to be defined in a locked cell whose names the grade cells called): one rebinds its helpers
in an answer cell, one replaces ``gdgrade.grading``'s functions, one reaches ``gdlib.optim``
through a module name built from strings. The page tests execute the pages and check the
numbers their text states against what the code prints.
"""

import re
from pathlib import Path

import course_roundtrip as roundtrip
import pytest

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "04_momentum"
SOLUTION = roundtrip.solution_path(ASSIGNMENT)
RELEASE = roundtrip.release_path(ASSIGNMENT)
POINTS = {"momentum_tests": 3.0, "ema_tests": 3.0, "nesterov_tests": 4.0, "limit_tests": 2.0}
ANSWERS = ("momentum_answer", "ema_answer", "nesterov_answer", "limit_answer")
STEP_PARTS = ("momentum_tests", "ema_tests", "nesterov_tests")  # checked step by step
PAGES = {name: ROOT / "book" / ASSIGNMENT / f"{name}.ipynb" for name in ("momentum", "nesterov")}


# --- fast: the committed notebooks ------------------------------------------------------------


def test_solution_has_points_markers_and_hidden_tests():
    roundtrip.assert_solution_cells(ASSIGNMENT, POINTS, ANSWERS)
    nb = roundtrip.read(SOLUTION)
    for grade_id in POINTS:
        hidden = roundtrip.cell_by_id(nb, grade_id).source.split("BEGIN HIDDEN TESTS")[1]
        assert ("random_quadratics(seed" if grade_id in STEP_PARTS else "rng(4400)") in hidden


def test_grade_cells_import_what_they_call():
    """No grade cell calls a name that only an earlier cell defines: an answer cell, which runs
    in between, could rebind it. (The course names a grade cell uses are all its own.)"""
    nb = roundtrip.read(SOLUTION)
    for grade_id in POINTS:
        source = roundtrip.cell_by_id(nb, grade_id).source
        own, outside = roundtrip.grade_cell_names(source)
        answer = {"momentum_tests": "momentum_step", "ema_tests": "momentum_ema_step",
                  "nesterov_tests": "nesterov_step", "limit_tests": "largest_stable_lr"}[grade_id]
        assert outside - {answer} == set(), grade_id
        assert {"call_answer", "np"} <= own, grade_id
        if grade_id in STEP_PARTS:
            assert {"check_steps", "check_array"} <= own, grade_id


def test_release_holds_stubs_only():
    text = roundtrip.assert_release_stubs(ASSIGNMENT, ANSWERS)
    assert "lookahead = theta - lr * beta * velocity" not in text  # the instructor's answer
    assert "random_quadratics(" not in text  # called by the hidden tests only


def test_notebooks_are_committed_without_outputs():
    roundtrip.assert_committed_without_outputs((*PAGES.values(), SOLUTION, RELEASE))


def test_scan_does_not_flag_the_release():
    """The student notebook as released passes the static scan (locked cells are trusted)."""
    scan = roundtrip.scan(RELEASE)
    assert scan.returncode == 0, scan.stdout


# --- slow: the grading round trip -----------------------------------------------------------

WRONG = {
    # Moving-average velocity in the classic part.
    "momentum_answer": """
def momentum_step(theta, grad, velocity, lr, beta):
    v = beta * velocity + (1 - beta) * grad
    return theta - lr * v, v
""",
    # The (1 - beta) factor forgotten.
    "ema_answer": """
def momentum_ema_step(theta, grad, velocity, lr, beta):
    v = beta * velocity + grad
    return theta - lr * v, v
""",
    # Gradient at theta: classic momentum, not NAG.
    "nesterov_answer": """
def nesterov_step(theta, grad_fn, velocity, lr, beta):
    v = beta * velocity + grad_fn(theta)
    return theta - lr * v, v
""",
}

SUBTLE = {
    # beta and 1 - beta swapped: right for the beta = 0.5 table, wrong elsewhere.
    "ema_answer": """
def momentum_ema_step(theta, grad, velocity, lr, beta):
    v = (1 - beta) * velocity + beta * grad
    return theta - lr * v, v
""",
    # PyTorch's update applied to the seeds' variable.
    "nesterov_answer": """
def nesterov_step(theta, grad_fn, velocity, lr, beta):
    g = grad_fn(theta - lr * beta * velocity)
    v = beta * velocity + g
    return theta - lr * (g + beta * v), v
""",
    # Updates the velocity in place.
    "momentum_answer": """
def momentum_step(theta, grad, velocity, lr, beta):
    velocity *= beta
    velocity += grad
    return theta - lr * velocity, velocity
""",
}

RAVINE_ONLY = {  # ignores grad and differentiates the worked example's function instead
    "momentum_answer": """
def momentum_step(theta, grad, velocity, lr, beta):
    v = beta * velocity + np.array([0.2, 4.0]) * theta
    return theta - lr * v, v
""",
}

CALLS_GDLIB = {
    "momentum_answer": """
from gdlib import optim as _optim


def momentum_step(theta, grad, velocity, lr, beta):
    new_theta, state = _optim.Momentum(lr, beta).step(theta, grad,
                                                     _optim.MomentumState(0, velocity))
    return new_theta, state.velocity
""",
    "nesterov_answer": """
def nesterov_step(theta, grad_fn, velocity, lr, beta):
    import importlib  # the visible tests import no gdlib name to borrow: a computed import

    optim = importlib.import_module("gd" + "lib.optim")
    rule = optim.Nesterov(lr, beta)
    new_theta, state = rule.lookahead_step(theta, grad_fn, optim.NesterovState(0, velocity))
    return new_theta, state.velocity
""",
}

NO_OP = "lambda *args, **kwargs: None"
TABLE = "lambda *args, **kwargs: (np.array([-3.42544, -0.688]), np.array([-1.5164, 3.92]))"

REBINDS_HELPERS = {  # wrong answers, and the checker's names rebound to no-ops
    "momentum_answer": WRONG["momentum_answer"] + f"""

check_steps = {NO_OP}
run_steps = {TABLE}
check_array = {NO_OP}
""",
    "ema_answer": WRONG["ema_answer"] + f"""

call_answer = {NO_OP}
with_gradient = {NO_OP}
ema_reference = {NO_OP}
""",
}

PATCHES_GRADING = {  # wrong answers, and gdgrade.grading's own functions replaced
    "momentum_answer": WRONG["momentum_answer"] + f"""

grading.check_steps = {NO_OP}
grading.run_steps = {TABLE}
grading.check_array = {NO_OP}
grading.require_untampered = {NO_OP}
""",
    "ema_answer": WRONG["ema_answer"] + f"""

import sys

vars(sys.modules["gdgrade.grading"])["check_steps"] = {NO_OP}
""",
}

IMPORTS_BY_STRING = {  # gdlib.optim reached at run time: no name or constant of the code
    # (once folded) names the module or one of its objects, so only the watched call sees it.
    "momentum_answer": """
import sys


def _reference(*parts):
    module = sys.modules[".".join(["".join(["gd", "lib"]), "optim"])]
    return getattr(module, "".join(parts))


def momentum_step(theta, grad, velocity, lr, beta):
    rule = _reference("Mom", "entum")(lr, beta)
    new_theta, state = rule.step(theta, grad, _reference("Mom", "entum", "State")(0, velocity))
    return new_theta, state.velocity
""",
    "nesterov_answer": """
import sys


def nesterov_step(theta, grad_fn, velocity, lr, beta):
    module = sys.modules["".join(["gd", "lib.op", "tim"])]
    rule = getattr(module, "".join(["Nest", "erov"]))(lr, beta)
    start = getattr(module, "".join(["Nest", "erov", "State"]))(0, velocity)
    new_theta, state = rule.lookahead_step(theta, grad_fn, start)
    return new_theta, state.velocity
""",
}


LIMIT_NAN = {  # no early stop, and a test that a run which overflowed to nan passes
    "limit_answer": """
def largest_stable_lr(curvature, beta, lrs, steps=1000):
    best = None
    for lr in lrs:
        theta, velocity = np.array([1.0]), np.array([0.0])
        with np.errstate(all="ignore"):
            for _ in range(steps):
                theta, velocity = momentum_step(theta, curvature * theta, velocity, lr, beta)
        if not abs(theta[0]) >= 1:
            best = float(lr)
    return best
""",
}


SUBMISSIONS = {  # student: the answer cells they write (the others correct), or their notebook
    "correct": {},
    "unanswered": lambda: roundtrip.read(RELEASE),
    "wrong": WRONG,
    "subtle": SUBTLE,
    "ravine_only": RAVINE_ONLY,
    "calls_gdlib": CALLS_GDLIB,
    "rebinds_helpers": REBINDS_HELPERS,
    "patches_grading": PATCHES_GRADING,
    "imports_by_string": IMPORTS_BY_STRING,
    "limit_nan": LIMIT_NAN,
}
HONEST = ("correct", "unanswered", "wrong", "subtle", "ravine_only", "limit_nan")


# The round trip every chapter shares (tests/course_roundtrip.py): the graded fixture, the
# unanswered release failing only in its test cells, full marks for the correct student.
(graded, test_unanswered_release_fails_only_in_its_test_cells,
 test_correct_submission_gets_full_marks_and_unanswered_gets_zero) = (
    roundtrip.chapter_round_trip(ASSIGNMENT, POINTS, SUBMISSIONS))


@pytest.mark.slow
def test_wrong_answers_get_zero_with_the_step_and_the_mistake_named(graded):
    assert graded.scores["wrong"] == dict.fromkeys(POINTS, 0.0)
    classic = graded.feedback("wrong", "momentum_tests")
    assert "step 1: new theta" in classic
    assert "coordinate 1: expected 1.2, got -0.4" in classic
    assert "moving-average form of part (b)" in classic
    assert "did you forget the (1 - beta) factor?" in graded.feedback("wrong", "ema_tests")
    nesterov = graded.feedback("wrong", "nesterov_tests")
    assert "step 2: the point where grad_fn was called" in nesterov
    assert "that is theta itself, as in classic momentum" in nesterov


@pytest.mark.slow
def test_subtle_mistakes_are_caught_and_explained(graded):
    # (d) starts every run from fresh arrays, so the in-place momentum_step is harmless there.
    assert graded.scores["subtle"] == {**dict.fromkeys(POINTS, 0.0), "limit_tests": 2.0}
    assert "modified its argument velocity in place" in graded.feedback("subtle",
                                                                        "momentum_tests")
    ema = graded.feedback("subtle", "ema_tests")
    assert "beta=0.9" in ema and "beta and 1 - beta are swapped" in ema
    assert "PyTorch's form" in graded.feedback("subtle", "nesterov_tests")


@pytest.mark.slow
def test_answer_fitted_to_the_worked_example_passes_only_the_visible_tests(graded):
    # (d) runs the same momentum_step on another function: it fails there too.
    assert graded.scores["ravine_only"] == {**POINTS, "momentum_tests": 0.0, "limit_tests": 0.0}
    text = graded.feedback("ravine_only", "momentum_tests")
    assert "momentum_step: visible tests passed" in text
    assert "random quadratic" in text


@pytest.mark.slow
def test_answers_that_call_gdlib_get_zero(graded):
    # (d) calls the student's momentum_step, which reaches gdlib: 0 there too.
    assert graded.scores["calls_gdlib"] == {**POINTS, "momentum_tests": 0.0,
                                            "nesterov_tests": 0.0, "limit_tests": 0.0}
    assert "module gdlib.optim" in graded.feedback("calls_gdlib", "momentum_tests")
    assert "it uses the string 'gdlib.optim'" in graded.feedback("calls_gdlib", "nesterov_tests")


@pytest.mark.slow
def test_stability_limit_that_counts_nan_as_stable_gets_zero_with_the_reason(graded):
    assert graded.scores["limit_nan"] == {**POINTS, "limit_tests": 0.0}
    text = graded.feedback("limit_nan", "limit_tests")
    assert "largest_stable_lr on L = 2, beta = 0.9 (example 1): expected 1.895" in text
    assert "got 2.495" in text and "overflowed to nan" in text


@pytest.mark.slow
def test_feedback_never_shows_the_hidden_tests(graded):
    process = roundtrip.course.run_nbgrader(["generate_feedback", ASSIGNMENT], graded.root)
    assert process.returncode == 0, process.stdout + process.stderr
    html = (graded.root / "feedback" / "wrong" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "momentum_step, the worked example" in html  # the messages are there
    assert "random_quadratics(" not in html and "HIDDEN TESTS" not in html


@pytest.mark.slow
def test_honest_submissions_are_not_held_for_manual_grading(graded):
    for student in HONEST:
        assert not any(graded.manual[student].values()), student


@pytest.mark.slow
def test_rebinding_the_checkers_names_changes_nothing_and_is_flagged(graded):
    """The grade cells import what they call: the no-ops an answer cell binds are not what they
    run, so the wrong answers get 0; the scan holds the submission for manual grading."""
    assert graded.scores["rebinds_helpers"] == {**POINTS, "momentum_tests": 0.0,
                                                "ema_tests": 0.0, "limit_tests": 0.0}
    assert "moving-average form of part (b)" in graded.feedback("rebinds_helpers",
                                                                "momentum_tests")
    assert "did you forget the (1 - beta) factor?" in graded.feedback("rebinds_helpers",
                                                                      "ema_tests")
    assert all(graded.manual["rebinds_helpers"].values())
    for name in ("check_steps", "run_steps", "check_array", "call_answer", "with_gradient",
                 "ema_reference"):
        assert f"rebinds {name}, a name defined by the course's locked cells" in graded.log, name


@pytest.mark.slow
def test_replacing_gdlib_grading_functions_is_detected_and_fails_every_part(graded):
    """In the kernel, the guarded gdgrade.grading puts its functions back when a test cell
    imports them and records the replacement: every later check fails (sticky), the correct
    part (c) too -- that is the feedback. The grade is the out-of-process verification's
    (gdgrade.verify), where the replacements never happened: the wrong parts get 0, the correct
    part (c) keeps its marks, and the submission is held for manual review."""
    assert graded.scores["patches_grading"] == {**dict.fromkeys(POINTS, 0.0),
                                                "nesterov_tests": POINTS["nesterov_tests"]}
    assert "nesterov_tests: 4 of 4 (in the kernel: 0)" in graded.log
    for grade_id in POINTS:
        text = graded.feedback("patches_grading", grade_id)
        assert "grading integrity" in text and "gdgrade.grading.check_steps" in text, grade_id
    assert "gdgrade.grading.require_untampered" in graded.feedback("patches_grading",
                                                                 "momentum_tests")
    assert all(graded.manual["patches_grading"].values())
    assert "assigns an attribute of grading" in graded.log


@pytest.mark.slow
def test_reaching_gdlib_through_a_string_import_gets_zero(graded):
    """The static look at the answer sees no gdlib; the watched call sees gdlib.optim run."""
    assert graded.scores["imports_by_string"] == {**POINTS, "momentum_tests": 0.0,
                                                  "nesterov_tests": 0.0, "limit_tests": 0.0}
    for grade_id in ("momentum_tests", "nesterov_tests"):
        text = graded.feedback("imports_by_string", grade_id)
        assert "must compute its result itself" in text, grade_id
        assert "gdlib.optim.__post_init__" in text, grade_id  # a frame the watch saw run
    assert all(graded.manual["imports_by_string"].values())
    assert "sys.modules reaches every loaded module" in graded.log


# --- slow: the book pages ---------------------------------------------------------------------


def equivalences(text: str) -> list[float]:
    """The printed ``max |a - b| = x`` values (``max |difference|``, ``max |residual|`` ...)."""
    return [float(x) for x in re.findall(r"max \|[^|\n]+\|[^=\n]*=\s*(\S+)", text)]


@pytest.mark.slow
def test_momentum_page_computes_what_its_text_states(book_build):
    text = roundtrip.run_page(PAGES["momentum"], book_build)
    for shown in ("condition number L/mu = 20", "divergence for lr > 2/L = 0.5",
                  "0.9**22 = 0.0985", "the first k with 0.9**k < 0.1 is k = 22",
                  "1 - beta**t = 0.651", "1 - beta**t = 0.902", "1 - beta**t = 0.990",
                  "effective window 1/(1 - beta) = 10 steps"):
        assert shown in text, shown
    # Lemma 3.1 (2 checks) and the three conventions plus torch (3 checks), to rounding.
    differences = equivalences(text)
    assert len(differences) == 5 and max(differences) < 1e-13, differences
    # torch's dampening against form (c): the numbers of the Convention box (issue 12).
    prose = "".join(c.source for c in roundtrip.read(PAGES["momentum"]).cells
                    if c.cell_type == "markdown")
    buffers = re.search(r"torch buffer, dampening=beta: (.*)", text).group(1)
    averages = re.search(r"moving average \(form \(c\)\):\s+(.*)", text).group(1)
    assert f"buffer is ${buffers}$ and the\nmoving average ${averages}$" in prose
    # Memory and the dip (issue 12): one buffer; momentum crosses the shallow dip only.
    assert "Momentum: parameters 4.0 MB, state velocity 4.0 MB" in text
    assert "GD: parameters 4.0 MB, state no array" in text
    ends = {float(d): (has, float(gd), float(mom)) for d, has, gd, mom in re.findall(
        r"^\s+([\d.]+)\s+(yes|no)\s+(-?[\d.]+)\s+(-?[\d.]+)$", text, re.MULTILINE)}
    assert sorted(ends) == [0.05, 0.1, 0.15, 0.2, 0.3, 0.5], ends
    for depth, (has, gd, mom) in ends.items():
        if depth <= 0.1:  # "Without a local minimum both methods reach x = 0"
            assert has == "no" and abs(gd) < 1e-3 and abs(mom) < 1e-3, depth
        elif depth == 0.15:  # GD stops in the dip, momentum crosses it
            assert has == "yes" and abs(mom) < 1e-3 and f"$x \\approx {gd:.2f}$" in prose
        else:  # "From d = 0.2 on, the dip is deep enough to stop momentum too"
            assert has == "yes" and gd == mom and 2.5 < gd < 3.5, depth


@pytest.mark.slow
def test_nesterov_page_computes_what_its_text_states(book_build):
    text = roundtrip.run_page(PAGES["nesterov"], book_build)
    differences = equivalences(text)  # both NAG forms, torch, seed 001, seed 000 eq 21
    assert len(differences) == 4 and max(differences) < 1e-13, differences
    limits = re.findall(r"converges up to lr = ([\d.]+) on the grid; closed form ([\d.]+)", text)
    assert len(limits) == 3
    for grid, closed in limits:
        assert abs(float(grid) - float(closed)) < 0.005, (grid, closed)
    rows = dict(re.findall(r"^(gradient descent|NAG, beta_k = \(k-1\)/\(k\+2\))\s+(.*)$", text,
                           re.MULTILINE))
    gd_late = float(rows["gradient descent"].split()[-1])
    nag_late = float(rows["NAG, beta_k = (k-1)/(k+2)"].split()[-1])
    assert abs(gd_late + 1) < 0.05 and abs(nag_late + 2) < 0.1, (gd_late, nag_late)
    ratios = [float(x) for x in re.findall(r"largest error / bound, [^:]*:\s*(\S+)", text)]
    assert len(ratios) == 2 and max(ratios) <= 1.0, ratios
    # The overshoot compared like with like, and the thresholds across the ravine (issue 12).
    prose = "".join(c.source for c in roundtrip.read(PAGES["nesterov"]).cells
                    if c.cell_type == "markdown")
    peaks = dict(re.findall(r"largest theta_2 of (momentum|NAG \(seeds' form\)): (\S+)", text))
    nag_peak, momentum_peak = peaks["NAG (seeds' form)"], peaks["momentum"]
    assert f"peaks at\n${nag_peak}$ against momentum's ${momentum_peak}$" in prose
    faster, converges = re.search(r"faster than momentum up to lr \* L = ([\d.]+); NAG converges "
                                  r"up to lr \* L = ([\d.]+)", text).groups()
    assert f"below about {faster}" in prose
    closed = re.search(r"2\(1\+\\beta\)/\(1\+2\\beta\) = ([\d.]+)\$", prose).group(1)
    assert abs(float(closed) - float(converges)) < 0.01, (closed, converges)
    nag_rate, momentum_rate = re.search(r"at lr \* L = 1.2: NAG ([\d.]+) per step, momentum "
                                        r"([\d.]+)", text).groups()
    assert f"{nag_rate} per step\nagainst {momentum_rate}" in prose
