"""Chapter 3 (exponentially weighted averages): the exercise's grading round trip and the page.

The nbgrader round trip follows tests/test_exercises.py (chapter 1) and reuses its helpers:
a temporary course, the released notebook with answers filled in (one student per behaviour),
``nbgrader autograde``, scores read from the gradebook.
"""

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook
from test_exercises import cell_by_id, errors, execute, make_course, make_writable, read

from gdlib import course

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "03_ewma"
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
SOLUTION = ROOT / "solutions" / ASSIGNMENT / NOTEBOOK
RELEASE = ROOT / "exercises" / ASSIGNMENT / NOTEBOOK
POINTS = {"ewma_tests": 4.0, "corrected_tests": 4.0, "window_tests": 2.0}
ANSWERS = ("ewma_answer", "corrected_answer", "window_answer")
PAGE = ROOT / "book" / "03_ewma" / "ewma.ipynb"


def solution_code(grade_id: str) -> str:
    """The instructor's answer of one cell, markers removed (what a correct student writes)."""
    source = cell_by_id(read(SOLUTION), grade_id).source
    return "\n".join(line for line in source.splitlines() if "### " not in line)


# --- fast: the committed notebooks ------------------------------------------------------------


def test_solution_has_points_markers_and_hidden_tests():
    nb = read(SOLUTION)
    points = {c.metadata.nbgrader.grade_id: c.metadata.nbgrader.points
              for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")}
    assert points == POINTS
    for grade_id in POINTS:
        cell = cell_by_id(nb, grade_id)
        assert cell.metadata.nbgrader.locked and "BEGIN HIDDEN TESTS" in cell.source
    for grade_id in ANSWERS:
        assert "BEGIN SOLUTION" in cell_by_id(nb, grade_id).source


def test_release_holds_stubs_only():
    assert course.leaked_markers(RELEASE.parent) == []
    text = RELEASE.read_text(encoding="utf-8")
    for grade_id in ANSWERS:
        assert "raise NotImplementedError()" in cell_by_id(read(RELEASE), grade_id).source
    assert "averages[t] = v" not in text  # the instructor's loop
    assert "random_cases" not in text  # hidden tests only


def test_notebooks_are_committed_without_outputs():
    for path in (PAGE, SOLUTION, RELEASE):
        for cell in read(path).cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path


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


def answered(answers: dict) -> nbformat.NotebookNode:
    """The released notebook with the given answer cells replaced, the others correct."""
    nb = read(RELEASE)
    for grade_id in ANSWERS:
        cell_by_id(nb, grade_id).source = answers.get(grade_id, solution_code(grade_id)).strip()
    return nb


SUBMISSIONS = {
    "correct": lambda: answered({}),
    "unanswered": lambda: read(RELEASE),
    "wrong": lambda: answered(WRONG),
    "hardcoded": lambda: answered(HARD_CODED),
    "calls_libraries": lambda: answered(CALLS_LIBRARIES),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Release 03_ewma, submit every student of SUBMISSIONS, autograde them in one call."""
    root = make_course(tmp_path_factory.mktemp("course03"))
    course.run_nbgrader(["generate_assignment", ASSIGNMENT], root)
    for student, make in SUBMISSIONS.items():
        path = root / "submitted" / student / ASSIGNMENT / NOTEBOOK
        path.parent.mkdir(parents=True)
        nbformat.write(make(), path)
    course.run_nbgrader(["autograde", ASSIGNMENT], root)
    scores = {}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        for student in SUBMISSIONS:
            notebook = gb.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student)
            scores[student] = {g.name: g.score for g in notebook.grades}
    yield root, scores
    make_writable(root)


def feedback(root: Path, student: str, grade_id: str) -> str:
    nb = read(root / "autograded" / student / ASSIGNMENT / NOTEBOOK)
    return "\n".join(o.get("text", "") + o.get("evalue", "")
                     for o in cell_by_id(nb, grade_id).get("outputs", []))


@pytest.mark.slow
def test_unanswered_release_fails_only_in_its_test_cells(tmp_path):
    nb = execute(read(RELEASE), tmp_path)
    for grade_id in POINTS:
        (error,) = errors(cell_by_id(nb, grade_id))
        assert error.ename == "NotImplementedError", (grade_id, error.ename, error.evalue)
    untested = [c for c in nb.cells if c.cell_type == "code"
                and not c.metadata.nbgrader.get("grade") and errors(c)]
    assert untested == []


@pytest.mark.slow
def test_correct_submission_gets_full_marks_and_unanswered_gets_zero(graded):
    _, scores = graded
    assert scores["correct"] == POINTS
    assert scores["unanswered"] == dict.fromkeys(POINTS, 0.0)


@pytest.mark.slow
def test_wrong_answers_get_zero_with_feedback_naming_the_step(graded):
    root, scores = graded
    assert scores["wrong"] == {"ewma_tests": 0.0, "corrected_tests": 0.0, "window_tests": 2.0}
    ewma = feedback(root, "wrong", "ewma_tests")
    assert "the seed's first three days" in ewma
    assert "t - 1 = 0: expected 0.8, got 40" in ewma
    corrected = feedback(root, "wrong", "corrected_tests")
    assert "NaN or infinity" in corrected


@pytest.mark.slow
def test_hard_coded_seed_numbers_pass_only_the_visible_tests(graded):
    root, scores = graded
    assert scores["hardcoded"] == dict.fromkeys(POINTS, 0.0)
    for grade_id in POINTS:
        text = feedback(root, "hardcoded", grade_id)
        assert "visible tests passed" in text, grade_id
    assert "case 'normal series, random beta 1 (seed 100)'" in feedback(root, "hardcoded",
                                                                         "ewma_tests")
    assert "KeyError" in feedback(root, "hardcoded", "window_tests")


@pytest.mark.slow
def test_answers_that_call_scipy_or_gdlib_get_zero(graded):
    root, scores = graded
    assert scores["calls_libraries"] == {"ewma_tests": 0.0, "corrected_tests": 0.0,
                                         "window_tests": 2.0}
    assert "scipy.signal" in feedback(root, "calls_libraries", "ewma_tests")
    assert "gdlib.averages.ewma" in feedback(root, "calls_libraries", "corrected_tests")


@pytest.mark.slow
def test_page_runs_cleanly_and_shows_the_seed_numbers(tmp_path):
    """What the strict book build asks of the page (it runs, and writes nothing to stderr), and
    seed 004's numbers computed on it: the 0.02/0.0196 coefficients, v_1 = 0.8 (not 8),
    1 - 0.98^2 = 0.0396, 0.9^10 = 0.349, 0.98^50 = 0.364; seed 002's span n = 19 for beta 0.9."""
    nb = execute(read(PAGE), tmp_path)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert errors(cell) == [], f"cell {index} raised"
        stderr = [o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stderr"]
        assert stderr == [], f"cell {index} wrote to stderr: {stderr}"
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                     for o in c.outputs)
    for shown in ("v_1 = 0.0200 theta_1", "v_2 = 0.0196 theta_1 + 0.0200 theta_2",
                  "v_1 = 0.8000 F", "= 0.0396", "0.3487", "0.3642", "span n = 19"):
        assert shown in text, shown


def test_scan_does_not_flag_the_release():
    """The student notebook as released passes the static scan (locked cells are trusted)."""
    scan = subprocess.run([sys.executable, "-m", "gdlib.course", "scan", str(RELEASE)],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert scan.returncode == 0, scan.stdout
