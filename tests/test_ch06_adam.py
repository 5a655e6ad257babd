"""Chapter 6 (Adam, Nadam, AdamW): the exercise's grading round trip and the book pages.

The round trip (release, submit, one ``nbgrader autograde``, scores and manual-grading flags
from the gradebook) is tests/course_roundtrip.py's; this file holds the students and what they
must get: full marks for the instructor's answers, 0 for the release as is, and wrong answers
that get 0 with the step and the mistake named in the feedback (the visible tests compare with
the worked tables, the hidden ones step by step with gdlib.optim). The page tests check the
numbers each page's text states against what its code prints.
"""

import re
from pathlib import Path

import course_roundtrip as roundtrip
import pytest

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "06_adam"
SOLUTION = roundtrip.solution_path(ASSIGNMENT)
RELEASE = roundtrip.release_path(ASSIGNMENT)
POINTS = {"adam_tests": 5.0, "nadam_tests": 5.0}
ANSWERS = ("adam_answer", "nadam_answer")
PAGES = {name: ROOT / "book" / ASSIGNMENT / f"{name}.ipynb" for name in ("adam", "nadam", "adamw")}


# --- fast: the committed notebooks ------------------------------------------------------------


def test_solution_has_points_markers_and_hidden_tests():
    roundtrip.assert_solution_cells(ASSIGNMENT, POINTS, ANSWERS)
    nb = roundtrip.read(SOLUTION)
    for grade_id in POINTS:
        visible, hidden = roundtrip.cell_by_id(nb, grade_id).source.split("BEGIN HIDDEN TESTS")
        assert "random_quadratics(seed" in hidden and "check_steps(" in hidden, grade_id
        assert "from gdlib" in hidden, grade_id
        assert "gdlib" not in visible.replace("against gdlib", ""), grade_id  # no reference


def test_grade_cells_import_what_they_call():
    """No grade cell calls a name that only an earlier cell defines: an answer cell, which runs
    in between, could rebind it."""
    nb = roundtrip.read(SOLUTION)
    for grade_id, answer in (("adam_tests", "adam_step"), ("nadam_tests", "nadam_step")):
        source = roundtrip.cell_by_id(nb, grade_id).source
        own, outside = roundtrip.grade_cell_names(source)
        assert outside - {answer} == set(), grade_id
        assert {"check_steps", "call_answer", "check_array", "run_steps", "np"} <= own


def test_release_holds_stubs_only():
    text = roundtrip.assert_release_stubs(ASSIGNMENT, ANSWERS)
    assert "direction = beta1 * m_hat" not in text  # the instructor's answer
    assert "random_quadratics(" not in text  # called by the hidden tests only
    assert "from gdlib" not in text  # the visible tests compare with the tables only


def test_notebooks_are_committed_without_outputs():
    paths = [path for path in PAGES.values() if path.exists()]
    roundtrip.assert_committed_without_outputs((*paths, SOLUTION, RELEASE))


def test_scan_does_not_flag_the_release():
    result = roundtrip.scan(RELEASE)
    assert result.returncode == 0, result.stdout


# --- slow: the grading round trip -----------------------------------------------------------

WRONG = {
    # No bias correction: m and v used as they are.
    "adam_answer": """
def adam_step(theta, grad, m, v, t, lr, beta1, beta2, eps):
    new_m = beta1 * m + (1 - beta1) * grad
    new_v = beta2 * v + (1 - beta2) * grad * grad
    return theta - lr * new_m / (np.sqrt(new_v) + eps), new_m, new_v, new_m, new_v
""",
    # Adam's step where Nadam's look-ahead numerator belongs.
    "nadam_answer": """
def nadam_step(theta, grad, m, v, t, lr, beta1, beta2, eps):
    new_m = beta1 * m + (1 - beta1) * grad
    new_v = beta2 * v + (1 - beta2) * grad * grad
    m_hat = new_m / (1 - beta1**t)
    v_hat = new_v / (1 - beta2**t)
    return theta - lr * m_hat / (np.sqrt(v_hat) + eps), new_m, new_v
""",
}

SUBTLE = {
    # The seeds' eps inside the root: invisible with eps = 1e-8, caught with eps = 0.1.
    "adam_answer": """
def adam_step(theta, grad, m, v, t, lr, beta1, beta2, eps):
    new_m = beta1 * m + (1 - beta1) * grad
    new_v = beta2 * v + (1 - beta2) * grad * grad
    m_hat = new_m / (1 - beta1**t)
    v_hat = new_v / (1 - beta2**t)
    return theta - lr * m_hat / np.sqrt(v_hat + eps), new_m, new_v, m_hat, v_hat
""",
    # Dozat's weight 1 / (1 - beta1^(t+1)) on the momentum term instead of eq 42's.
    "nadam_answer": """
def nadam_step(theta, grad, m, v, t, lr, beta1, beta2, eps):
    new_m = beta1 * m + (1 - beta1) * grad
    new_v = beta2 * v + (1 - beta2) * grad * grad
    v_hat = new_v / (1 - beta2**t)
    direction = beta1 * new_m / (1 - beta1**(t + 1)) + (1 - beta1) * grad / (1 - beta1**t)
    return theta - lr * direction / (np.sqrt(v_hat) + eps), new_m, new_v
""",
}

TABLES_ONLY = {  # right for the first three steps of a run, wrong later (bias correction dropped)
    "adam_answer": """
def adam_step(theta, grad, m, v, t, lr, beta1, beta2, eps):
    new_m = beta1 * m + (1 - beta1) * grad
    new_v = beta2 * v + (1 - beta2) * grad * grad
    m_hat, v_hat = new_m / (1 - beta1**t), new_v / (1 - beta2**t)
    if t > 3:
        m_hat, v_hat = new_m, new_v
    return theta - lr * m_hat / (np.sqrt(v_hat) + eps), new_m, new_v, m_hat, v_hat
""",
}

CALLS_GDLIB = {
    "adam_answer": """
from gdlib import optim as _optim


def adam_step(theta, grad, m, v, t, lr, beta1, beta2, eps):
    rule = _optim.Adam(lr, beta1, beta2, eps)
    new_theta, state = rule.step(theta, grad, _optim.AdamState(t - 1, m, v))
    return (new_theta, state.m, state.v, state.m / (1 - beta1**t),
            state.v / (1 - beta2**t))
""",
}

SUBMISSIONS = {
    "correct": {},
    "unanswered": lambda: roundtrip.read(RELEASE),
    "wrong": WRONG,
    "subtle": SUBTLE,
    "tables_only": TABLES_ONLY,
    "calls_gdlib": CALLS_GDLIB,
}


# The round trip every chapter shares (tests/course_roundtrip.py): the graded fixture, the
# unanswered release failing only in its test cells, full marks for the correct student.
(graded, test_unanswered_release_fails_only_in_its_test_cells,
 test_correct_submission_gets_full_marks_and_unanswered_gets_zero) = (
    roundtrip.chapter_round_trip(ASSIGNMENT, POINTS, SUBMISSIONS))


@pytest.mark.slow
def test_wrong_answers_get_zero_with_the_step_and_the_mistake_named(graded):
    assert graded.scores["wrong"] == dict.fromkeys(POINTS, 0.0)
    adam = graded.feedback("wrong", "adam_tests")
    assert "after step 1: m_hat" in adam
    assert "coordinate 0: expected -1, got -0.1" in adam
    assert "m_hat is the uncorrected m: divide by 1 - beta1**t" in adam
    nadam = graded.feedback("wrong", "nadam_tests")
    assert "after step 1: theta" in nadam
    assert "that is Adam's step" in nadam


@pytest.mark.slow
def test_subtle_mistakes_are_caught_and_explained(graded):
    assert graded.scores["subtle"] == dict.fromkeys(POINTS, 0.0)
    adam = graded.feedback("subtle", "adam_tests")
    assert "eps=0.1), after step 1: theta" in adam
    assert "eps is inside the square root" in adam
    assert "as Dozat's paper does" in graded.feedback("subtle", "nadam_tests")


@pytest.mark.slow
def test_answer_right_for_the_tables_only_fails_the_hidden_tests(graded):
    assert graded.scores["tables_only"] == {**POINTS, "adam_tests": 0.0}
    text = graded.feedback("tables_only", "adam_tests")
    assert "adam_step: visible tests passed" in text
    assert "random quadratic" in text and "step 4: new theta" in text


@pytest.mark.slow
def test_answer_that_calls_gdlib_gets_zero(graded):
    assert graded.scores["calls_gdlib"] == {**POINTS, "adam_tests": 0.0}
    assert "module gdlib.optim" in graded.feedback("calls_gdlib", "adam_tests")


@pytest.mark.slow
def test_honest_submissions_are_not_held_for_manual_grading(graded):
    for student in ("correct", "unanswered", "wrong", "subtle", "tables_only"):
        assert not any(graded.manual[student].values()), student


# --- slow: the book pages (read from the run's book build) ----------------------------------


def _differences(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"max \|difference\| = (\S+)", text)]


def _prose(path) -> str:
    return "".join(c.source for c in roundtrip.read(path).cells if c.cell_type == "markdown")


@pytest.mark.slow
def test_adam_page_states_what_it_computes(book_build):
    text = roundtrip.run_page(PAGES["adam"], book_build)
    words = _prose(PAGES["adam"])
    differences = _differences(text)  # m, v against ewma; Adam and AdamW against torch
    assert len(differences) == 4 and max(differences) < 1e-13, differences
    ratios = re.search(r"at t = 1: (\S+), t = 10: (\S+), t = 50: (\S+); largest (\S+) at t = "
                       r"(\d+)", text).groups()
    first, _, at_50, largest, when = ratios
    assert f"\\approx {first}$ times the corrected one" in words.replace("\n", " ")
    assert f"to {largest} at\n$t = {when}$" in words and f"({at_50} at $t = 50$)" in words
    steps = dict(re.findall(r"g = (\S+): first step \S+ with eps outside the root, (\S+) inside",
                            text))
    assert f"from 1.0 to {float(steps['0.0001']):.2f}" in words
    assert f"to {float(steps['1e-06']):.2f}" in words
    l2 = re.search(r"Adam \+ L2 after 20000 steps:\s+\[(\S+) (\S+)\]", text).groups()
    assert re.search(r"minimizer of the penalized loss: \[" + r" ".join(map(re.escape, l2)), text)
    assert f"stays\nat {l2[0]}" in words and f"pulled down to {l2[1]}" in words
    offsets = [abs(float(x)) for x in re.search(r"AdamW after 20000 steps:\s+theta - target = "
                                                r"\((\S+), (\S+)\)", text).groups()]
    assert max(offsets) < 1e-4 and max(offsets) / min(offsets) < 1.2  # "a few 10^-5"
    early = re.search(r"AdamW after 1000 steps:\s+theta - target = \((\S+), (\S+)\)",
                      text).groups()
    assert early[0] == early[1], early  # "the same path": equal to the printed digits
    mantissa = f"{abs(float(early[0])):.3e}".split("e")[0]
    assert f"both are ${mantissa} \\times 10^{{-2}}$ short" in words.replace("\n", " ")


@pytest.mark.slow
def test_nadam_page_states_what_it_computes(book_build):
    text = roundtrip.run_page(PAGES["nadam"], book_build)
    words = _prose(PAGES["nadam"])
    differences = _differences(text)
    assert len(differences) == 2 and differences[0] < 1e-13 and differences[1] < 1e-8
    factors = dict(re.findall(r"t = +(\d+): beta1 m_\(t-1\) / \(1 - beta1\^t\) = (\S+)", text))
    assert f"$t = 2$ ({factors['2']})" in words and f"$t = 10$ on ({factors['10']})" in words
    firsts = dict(re.findall(r"(eq 42|Dozat|PyTorch) (\d\.\d+)", text))
    assert f"${float(firsts['eq 42']):.1f}\\,g_1$" in words
    assert f"${firsts['Dozat']}\\,g_1$" in words
    assert float(firsts["PyTorch"]) < float(firsts["Dozat"]) < float(firsts["eq 42"])
    late = re.search(r"mu_10000 = (\S+)", text).group(1)
    assert f"({float(late):.2f} after 10,000 steps" in words
    reached = {k: int(v) for k, v in re.findall(r"(Adam|Nadam \(eq 42\)|Nadam \(PyTorch form\)) "
                                                 r"(\d+)", text.split("first step below 1e-3:")[1])}
    for name in ("Nadam (eq 42)", "Nadam (PyTorch form)"):
        assert 0.6 < reached[name] / reached["Adam"] < 0.75  # "about two thirds"
