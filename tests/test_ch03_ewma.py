"""Chapter 3 (exponentially weighted averages): the exercise's grading round trip and the page.

The students of the exercise (one per behaviour), with the scores and feedback they must get;
tests/course_roundtrip.py releases, submits and autogrades them.
"""

from pathlib import Path

import course_roundtrip as roundtrip
import pytest

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "03_ewma"
SOLUTION = roundtrip.solution_path(ASSIGNMENT)
RELEASE = roundtrip.release_path(ASSIGNMENT)
POINTS = {"ewma_tests": 4.0, "corrected_tests": 4.0, "window_tests": 1.0}
ANSWERS = ("ewma_answer", "corrected_answer", "window_answer")
PAGE = ROOT / "book" / "03_ewma" / "ewma.ipynb"


# --- fast: the committed notebooks ------------------------------------------------------------


def test_solution_has_points_markers_and_hidden_tests():
    roundtrip.assert_solution_cells(ASSIGNMENT, POINTS, ANSWERS)


def test_release_holds_stubs_only():
    text = roundtrip.assert_release_stubs(ASSIGNMENT, ANSWERS)
    assert "averages[t] = v" not in text  # the instructor's loop
    assert "random_cases" not in text  # hidden tests only


def test_notebooks_are_committed_without_outputs():
    roundtrip.assert_committed_without_outputs((PAGE, SOLUTION, RELEASE))


# --- slow: the grading round trip -----------------------------------------------------------

WRONG = {
    # Starts from v_0 = theta_1 instead of 0.
    "ewma_answer": """
def ewma(theta, beta):
    v = theta[0]
    out = []
    for x in theta:
        v = beta * v + (1 - beta) * x
        out.append(v)
    return np.array(out)
""",
    # Exponent off by one: divides by 1 - beta^(t-1), which is 0 on the first step.
    "corrected_answer": """
def ewma_corrected(theta, beta):
    v = np.zeros_like(theta[0])
    out = []
    for t, x in enumerate(theta):
        v = beta * v + (1 - beta) * x
        out.append(v / (1 - beta**t))
    return np.array(out)
""",
}

HARD_CODED = {  # the seed's numbers for the visible inputs, nothing else
    "ewma_answer": """
def ewma(theta, beta):
    theta = np.asarray(theta)
    if theta.shape == (3,):
        return np.array([0.8, 1.764, 2.62872])
    if theta.shape == (2, 2):
        return np.array([[0.02, 0.0], [0.0196, 0.02]])
    return np.array([0.8])
""",
    "corrected_answer": """
def ewma_corrected(theta, beta):
    theta = np.asarray(theta)
    if theta.shape == (3,):
        return np.array([40.0, 1.764 / 0.0396, 2.62872 / (1 - 0.98**3)])
    if theta.shape == (2, 2):
        return np.array([[1.0, 0.0], [0.0196 / 0.0396, 0.02 / 0.0396]])
    return np.array([40.0])
""",
    "window_answer": """
def effective_window(beta):
    return {0.5: 2.0, 0.9: 10.0, 0.98: 50.0}[beta]
""",
}

CALLS_LIBRARIES = {  # the averages computed by scipy and by the reference itself
    "ewma_answer": """
from scipy.signal import lfilter


def ewma(theta, beta):
    return lfilter([1 - beta], [1, -beta], theta, axis=0)
""",
    "corrected_answer": """
from gdlib.averages import ewma as _ewma


def ewma_corrected(theta, beta):
    return _ewma(theta, beta, bias_correction=True)
""",
}


SUBMISSIONS = {  # student: the answer cells they write (the others correct), or their notebook
    "correct": {},
    "unanswered": lambda: roundtrip.read(RELEASE),
    "wrong": WRONG,
    "hardcoded": HARD_CODED,
    "calls_libraries": CALLS_LIBRARIES,
}


# The round trip every chapter shares (tests/course_roundtrip.py): the graded fixture, the
# unanswered release failing only in its test cells, full marks for the correct student.
(graded, test_unanswered_release_fails_only_in_its_test_cells,
 test_correct_submission_gets_full_marks_and_unanswered_gets_zero) = (
    roundtrip.chapter_round_trip(ASSIGNMENT, POINTS, SUBMISSIONS))


@pytest.mark.slow
def test_wrong_answers_get_zero_with_feedback_naming_the_step(graded):
    assert graded.scores["wrong"] == {"ewma_tests": 0.0, "corrected_tests": 0.0,
                                      "window_tests": 1.0}
    ewma = graded.feedback("wrong", "ewma_tests")
    assert "the seed's first three days" in ewma
    assert "t - 1 = 0: expected 0.8, got 40" in ewma
    corrected = graded.feedback("wrong", "corrected_tests")
    assert "NaN or infinity" in corrected and "1 - beta**t with t = 0" in corrected


@pytest.mark.slow
def test_hard_coded_seed_numbers_pass_only_the_visible_tests(graded):
    assert graded.scores["hardcoded"] == dict.fromkeys(POINTS, 0.0)
    for grade_id in POINTS:
        text = graded.feedback("hardcoded", grade_id)
        assert "visible tests passed" in text, grade_id
    assert ("case 'normal series, random beta 1 (seed 100)'"
            in graded.feedback("hardcoded", "ewma_tests"))
    assert "KeyError" in graded.feedback("hardcoded", "window_tests")


@pytest.mark.slow
def test_answers_that_call_scipy_or_gdlib_get_zero(graded):
    assert graded.scores["calls_libraries"] == {"ewma_tests": 0.0, "corrected_tests": 0.0,
                                                "window_tests": 1.0}
    assert "scipy.signal" in graded.feedback("calls_libraries", "ewma_tests")
    assert "gdlib.averages.ewma" in graded.feedback("calls_libraries", "corrected_tests")


@pytest.mark.slow
def test_page_runs_cleanly_and_shows_the_seed_numbers(book_build):
    """What the strict book build asks of the page (it runs, and writes nothing to stderr), and
    seed 004's numbers computed on it: the 0.02/0.0196 coefficients, v_1 = 0.8 (not 8),
    1 - 0.98^2 = 0.0396, 0.9^10 = 0.349, 0.98^50 = 0.364; seed 002's span n = 19 for beta 0.9."""
    text = roundtrip.run_page(PAGE, book_build)
    for shown in ("v_1 = 0.0200 theta_1", "v_2 = 0.0196 theta_1 + 0.0200 theta_2",
                  "v_1 = 0.8000 F", "= 0.0396", "0.3487", "0.3642", "span n = 19"):
        assert shown in text, shown


def test_scan_does_not_flag_the_release():
    """The student notebook as released passes the static scan (locked cells are trusted)."""
    scan = roundtrip.scan(RELEASE)
    assert scan.returncode == 0, scan.stdout
