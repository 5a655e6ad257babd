"""Chapter 8 (second-order methods): the two book pages state what their code prints, and
exercise 8 (the Newton step, the L-BFGS two-loop recursion, L-BFGS on a quadratic) grades
right, wrong, subtly wrong and dishonest answers as it should (nbgrader round trip).
"""

import re
from pathlib import Path

import course_roundtrip as roundtrip
import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = {name: ROOT / "book" / "08_second_order" / f"{name}.ipynb"
         for name in ("newton", "quasi_newton")}


def test_pages_are_committed_without_outputs():
    roundtrip.assert_committed_without_outputs(PAGES.values())


def _source(name: str) -> str:
    return "\n".join(cell.source for cell in roundtrip.read(PAGES[name]).cells
                     if cell.cell_type == "markdown")


@pytest.mark.slow
def test_newton_page_computes_what_its_text_states(book_build):
    text = roundtrip.run_page(PAGES["newton"], book_build)
    prose = _source("newton")
    assert "388 steps to get within 1e-6" in text and "needs 388 steps" in prose
    assert float(re.search(r"after one Newton step: (\S+)", text).group(1)) < 1e-12
    assert float(re.search(r"max \|scale \* phi_k - theta_k\| = (\S+)", text).group(1)) < 1e-12
    assert "after 20 steps" in text and "e+" in text.split("after 20 steps")[0][-12:]
    assert "1 Newton step to [0.0, 0.0], gradient [0.0, 0.0]" in text
    assert "1 Newton step to [0.0, 0.0], the maximum" in text
    pure = re.search(r"pure Newton +from 441 starts: minimum (\d+)%, saddle (\d+)%", text)
    damped = re.search(r"damped Newton +from 441 starts: minimum (\d+)%, saddle 0%, "
                       r"runs away (\d+)%", text)
    assert f"{pure.group(2)}% of them end at" in prose and f"only {pure.group(1)}% at" in prose
    assert f"{damped.group(1)}% of the starts reach" in prose
    assert f"{damped.group(2)}% of all starts, run away" in prose
    assert "NotDescentDirectionError" in text
    # The exponent is a timing (it fell to 2.1 on a loaded machine): the page glues it, and the
    # test checks only that the prose shows the value printed, not a range.
    exponent = re.search(r"time grows like k\^(\S+) from", text).group(1)
    roundtrip.assert_glued_as_printed(" ".join(prose.split()), roundtrip.glued(PAGES["newton"],
                                      book_build), "newton_exponent", exponent)
    assert "8 TB" in text and "8 TB for its" in prose


@pytest.mark.slow
def test_quasi_newton_page_computes_what_its_text_states(book_build):
    text = roundtrip.run_page(PAGES["quasi_newton"], book_build)
    prose = _source("quasi_newton")
    cg = dict(re.findall(r"^(.+?) +condition .*?: +(\d+) iterations", text, re.MULTILINE))
    assert int(cg["five distinct eigenvalues"]) == 5
    assert int(cg["random M M^T / n + I"]) < 100 < int(cg["eigenvalues 1 ... 1e4"]) <= 1000
    assert "condition      4.78" in text and "condition number about 5" in prose
    assert float(re.search(r"max \|two_loop\(g\) - B g\| = (\S+)", text).group(1)) < 1e-12
    assert "max |gdlib - torch.optim.LBFGS| = 0.0e+00" in text
    values = roundtrip.glued(PAGES["quasi_newton"], book_build)
    ratios = []
    for problem, block in zip(("Rosenbrock", "logistic regression"),
                              text.split("iterations and seconds until")[1:]):
        counts = dict(re.findall(r"^  (\S+(?: \(PR\+\))?)(?: \(lr \S+\))? +(\d+) iterations",
                                 block, re.MULTILINE))
        first_order = min(int(counts[m]) for m in ("GD", "Momentum", "Adam") if m in counts)
        curvature = {m: int(c) for m, c in counts.items() if m in ("Newton", "CG (PR+)", "BFGS",
                                                                 "L-BFGS")}
        assert len(curvature) == 4, counts
        ratios += [first_order / c for c in curvature.values()]
        if problem == "logistic regression":  # "Newton the fewest on the convex one"
            assert min(curvature, key=curvature.get) == "Newton"
        for method, count in counts.items():
            name = {"CG (PR+)": "CG", "Momentum": "momentum", "GD": "gradient descent"}.get(
                method, method)
            slug = method.split()[0].lower().replace("-", "")
            key = f"race_{problem.split()[0].lower()}_{slug}"
            roundtrip.assert_glued_as_printed(prose, values, key, count)
            assert name in prose, name
    assert "not within 3000 iterations" in text and "does not get there in\n3000" in prose
    stated = f"{min(ratios):.1f} to {max(ratios):.0f} times"  # "several times to a few tens"
    assert stated in " ".join(prose.split()), stated
    assert "unusually large 3" in prose and "Adam (lr 3)" in text
    newton_slower = re.findall(r"median seconds per iteration: L-BFGS (\S+), Newton (\S+)", text)
    lbfgs, newton = map(float, newton_slower[1])  # the logistic regression
    assert newton > lbfgs


# --- exercise 8 -------------------------------------------------------------------------------

ASSIGNMENT = "08_second_order"
SOLUTION = roundtrip.solution_path(ASSIGNMENT)
RELEASE = roundtrip.release_path(ASSIGNMENT)
POINTS = {"newton_tests": 3.0, "two_loop_tests": 5.0, "lbfgs_tests": 2.0}
ANSWERS = ("newton_answer", "two_loop_answer", "lbfgs_answer")
FUNCTIONS = {"newton_tests": "newton_step", "two_loop_tests": "two_loop",
             "lbfgs_tests": "lbfgs_quadratic"}


def test_solution_has_points_markers_and_hidden_tests():
    roundtrip.assert_solution_cells(ASSIGNMENT, POINTS, ANSWERS)
    nb = roundtrip.read(SOLUTION)
    for grade_id in POINTS:
        visible, hidden = roundtrip.cell_by_id(nb, grade_id).source.split("BEGIN HIDDEN TESTS")
        assert "from gdlib.second_order import" in hidden and "rng(8" in hidden, grade_id
        assert "from gdlib" not in visible and "import gdlib" not in visible, grade_id


def test_grade_cells_import_what_they_call():
    """No grade cell calls a name that only an earlier cell defines (an answer could rebind it);
    lbfgs_quadratic's cell may call two_loop only through the student's lbfgs_quadratic."""
    nb = roundtrip.read(SOLUTION)
    for grade_id, answer in FUNCTIONS.items():
        source = roundtrip.cell_by_id(nb, grade_id).source
        _, outside = roundtrip.grade_cell_names(source)
        assert outside - {answer} == set(), grade_id


def test_release_holds_stubs_only():
    text = roundtrip.assert_release_stubs(ASSIGNMENT, ANSWERS)
    assert "np.linalg.cond(hessian) <" not in text  # the instructor's answer
    assert "alpha[i] = rho[i]" not in text and "s_list.pop(0)" not in text
    assert "from gdlib" not in text and "rng(8" not in text  # hidden tests only


def test_exercise_notebooks_are_committed_without_outputs():
    roundtrip.assert_committed_without_outputs((SOLUTION, RELEASE))


def test_scan_does_not_flag_the_release():
    result = roundtrip.scan(RELEASE)
    assert result.returncode == 0, result.stdout


def test_pages_link_the_exercise():
    for name in PAGES:
        assert f"exercises/{ASSIGNMENT}/{ASSIGNMENT}.ipynb" in _source(name), name


WRONG = {
    # Solves H p = g: the step goes uphill.
    "newton_answer": """
def newton_step(grad, hessian):
    if not np.linalg.cond(hessian) < 1 / np.finfo(float).eps:
        raise ValueError("singular Hessian")
    return np.linalg.solve(hessian, grad)
""",
    # The pairs taken newest first: both loops run in the wrong order.
    "two_loop_answer": """
def two_loop(grad, s_list, y_list, gamma=1.0):
    s_list, y_list = s_list[::-1], y_list[::-1]
    m = len(s_list)
    alpha = [0.0] * m
    q = np.array(grad, dtype=float)
    for i in range(m - 1, -1, -1):
        alpha[i] = (s_list[i] @ q) / (y_list[i] @ s_list[i])
        q = q - alpha[i] * y_list[i]
    r = gamma * q
    for i in range(m):
        beta = (y_list[i] @ r) / (y_list[i] @ s_list[i])
        r = r + (alpha[i] - beta) * s_list[i]
    return r
""",
    # A full step t = 1 instead of the exact line search.
    "lbfgs_answer": """
def lbfgs_quadratic(A, b, x0, m, iterations):
    x = np.array(x0, dtype=float)
    s_list, y_list, gamma, path = [], [], 1.0, [x.copy()]
    for _ in range(iterations):
        s = -two_loop(A @ x - b, s_list, y_list, gamma)
        x = x + s
        y = A @ s
        s_list, y_list = (s_list + [s])[-m:], (y_list + [y])[-m:]
        gamma = (y @ s) / (y @ y)
        path.append(x.copy())
    return np.array(path)
""",
}

SUBTLE = {
    # np.linalg.solve alone: rejects the exactly singular example, not a nearly singular H.
    "newton_answer": """
def newton_step(grad, hessian):
    return -np.linalg.solve(hessian, grad)
""",
    # Steepest descent with the exact step: right on the first iteration only.
    "lbfgs_answer": """
def lbfgs_quadratic(A, b, x0, m, iterations):
    x = np.array(x0, dtype=float)
    path = [x.copy()]
    for _ in range(iterations):
        p = -(A @ x - b)
        x = x + (p @ p) / (p @ (A @ p)) * p
        path.append(x.copy())
    return np.array(path)
""",
}

CALLS_GDLIB = {
    "two_loop_answer": """
from gdlib import second_order as _so


def two_loop(grad, s_list, y_list, gamma=1.0):
    return _so.two_loop(grad, s_list, y_list, gamma)
""",
}

SUBMISSIONS = {"correct": {}, "unanswered": lambda: roundtrip.read(RELEASE), "wrong": WRONG,
               "subtle": SUBTLE, "calls_gdlib": CALLS_GDLIB}


# The round trip every chapter shares (tests/course_roundtrip.py): the graded fixture, the
# unanswered release failing only in its test cells, full marks for the correct student.
(graded, test_unanswered_release_fails_only_in_its_test_cells,
 test_correct_submission_gets_full_marks_and_unanswered_gets_zero) = (
    roundtrip.chapter_round_trip(ASSIGNMENT, POINTS, SUBMISSIONS))


@pytest.mark.slow
def test_wrong_answers_get_zero_with_the_mistake_named(graded):
    assert graded.scores["wrong"] == dict.fromkeys(POINTS, 0.0)
    newton = graded.feedback("wrong", "newton_tests")
    assert "newton_step on the long valley at (-5, -2)" in newton
    assert "you solved H p = g" in newton
    assert "the loops run in the wrong order" in graded.feedback("wrong", "two_loop_tests")
    assert "that is a full step t = 1" in graded.feedback("wrong", "lbfgs_tests")


@pytest.mark.slow
def test_subtly_wrong_answers_fail_the_hidden_tests(graded):
    assert graded.scores["subtle"] == {**POINTS, "newton_tests": 0.0, "lbfgs_tests": 0.0}
    newton = graded.feedback("subtle", "newton_tests")
    assert "newton_step: visible tests passed" in newton  # np.linalg.solve rejects example 3
    assert "H is singular to working precision" in newton and "raise ValueError" in newton
    lbfgs = graded.feedback("subtle", "lbfgs_tests")
    assert "lbfgs_quadratic on example 1" in lbfgs
    assert "those are the iterates of steepest descent" in lbfgs


@pytest.mark.slow
def test_answer_that_calls_gdlib_gets_zero(graded):
    # (c) runs the student's two_loop, so it reaches the reference too and gets 0 as well.
    assert graded.scores["calls_gdlib"] == {**POINTS, "two_loop_tests": 0.0, "lbfgs_tests": 0.0}
    for grade_id in ("two_loop_tests", "lbfgs_tests"):
        assert "gdlib.second_order" in graded.feedback("calls_gdlib", grade_id), grade_id


@pytest.mark.slow
def test_honest_submissions_are_not_held_for_manual_grading(graded):
    for student in ("correct", "unanswered", "wrong", "subtle"):
        assert not any(graded.manual[student].values()), student


@pytest.mark.slow
def test_feedback_never_shows_the_hidden_tests(graded):
    process = roundtrip.course.run_nbgrader(["generate_feedback", ASSIGNMENT], graded.root)
    assert process.returncode == 0, process.stdout + process.stderr
    html = (graded.root / "feedback" / "wrong" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "the long valley at (-5, -2)" in html
    assert "rng(8100)" not in html and "HIDDEN TESTS" not in html
