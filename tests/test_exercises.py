"""The nbgrader side of the course: the committed exercises/ match solutions/, and grading is
fair and hard to game (round trips through `nbgrader generate_assignment` and `autograde`).

Each round trip runs in a temporary course directory (a copy of nbgrader_config.py and
solutions/), so the repository's gradebook and exercises are never touched. Submissions are
the released notebook with answers filled in, one student per behaviour; scores are read from
the gradebook with nbgrader's Python API.
"""

import json
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbgrader.api import Gradebook

from gdlib import course

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "01_losses"
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
POINTS = {"hinge_tests": 3.0, "ce_tests": 3.0, "grad_tests": 4.0}
FULL = dict(POINTS)
MARKERS = course.LEAK_MARKERS


def read(path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def solution_code(grade_id: str) -> str:
    """The instructor's answer of one cell, markers removed (what a correct student writes)."""
    nb = read(ROOT / "solutions" / ASSIGNMENT / NOTEBOOK)
    (cell,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id]
    return "\n".join(line for line in cell.source.splitlines() if "### " not in line)


def cell_by_id(nb, grade_id):
    (cell,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id]
    return cell


def make_course(directory: Path) -> Path:
    """A fresh course directory: nbgrader_config.py and solutions/ copied from the repo."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "nbgrader_config.py", directory)
    shutil.copytree(ROOT / "solutions", directory / "solutions")
    return directory


def make_writable(directory: Path) -> None:
    """autograde writes its notebooks read-only (mode 444): undo that before clean-up."""
    for path in directory.rglob("*"):
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


def normalized(path: Path) -> dict:
    """The notebook as JSON, without what may vary between runs (outputs, execution counts)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        cell.pop("outputs", None)
        cell.pop("execution_count", None)
    return nb


# --------------------------------------------------------------------------------------------
# The committed release
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    """exercises/ regenerated from the committed solutions/ in a temporary course."""
    root = make_course(tmp_path_factory.mktemp("release"))
    course.release(root)
    return root / "exercises"


def test_every_solution_notebook_has_a_committed_release():
    for assignment in course.assignments(ROOT):
        for source in sorted((ROOT / "solutions" / assignment).glob("*.ipynb")):
            released = ROOT / "exercises" / assignment / source.name
            assert released.exists(), f"{released} is missing: run `make exercises`"


@pytest.mark.slow
def test_committed_exercises_match_a_fresh_release(regenerated):
    fresh = sorted(p.relative_to(regenerated) for p in regenerated.rglob("*.ipynb"))
    committed_dir = ROOT / "exercises"
    committed = sorted(p.relative_to(committed_dir) for p in committed_dir.rglob("*.ipynb"))
    assert committed == fresh, "exercises/ is out of date with solutions/: run `make exercises`"
    for relative in fresh:
        assert normalized(committed_dir / relative) == normalized(regenerated / relative), (
            f"exercises/{relative} differs from what nbgrader generates from solutions/: "
            f"run `make exercises` (never edit exercises/ by hand)"
        )


def test_committed_exercises_hold_no_solution_or_hidden_test():
    assert course.leaked_markers(ROOT / "exercises") == []
    for path in (ROOT / "exercises").rglob("*.ipynb"):
        text = path.read_text(encoding="utf-8")
        for cell in read(path).cells:
            if cell.metadata.get("nbgrader", {}).get("solution"):
                stub = "raise NotImplementedError()" if cell.cell_type == "code" else "YOUR ANSWER"
                assert stub in cell.source, path
        # The instructor's answer lines must not appear anywhere in the student version.
        assert "violations[rows, labels] = 0.0" not in text
        assert "reference_softmax" not in text  # only used by the hidden tests


def test_solution_notebook_has_its_markers_and_points():
    nb = read(ROOT / "solutions" / ASSIGNMENT / NOTEBOOK)
    points = {
        c.metadata.nbgrader.grade_id: c.metadata.nbgrader.points
        for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")
    }
    assert points == POINTS
    text = json.dumps(nb)
    for marker in MARKERS:
        assert marker in text
    for grade_id in POINTS:
        cell = cell_by_id(nb, grade_id)
        assert cell.metadata.nbgrader.locked and "BEGIN HIDDEN TESTS" in cell.source


def execute(nb, cwd: Path) -> nbformat.NotebookNode:
    """Run every cell (errors recorded, not raised), as a student's "Restart & Run All"."""
    NotebookClient(nb, timeout=60, allow_errors=True, kernel_name="python3",
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def errors(cell) -> list:
    return [o for o in cell.get("outputs", []) if o.output_type == "error"]


@pytest.mark.slow
def test_unanswered_release_fails_its_own_tests(tmp_path):
    nb = execute(read(ROOT / "exercises" / ASSIGNMENT / NOTEBOOK), tmp_path)
    for grade_id in POINTS:
        (error,) = errors(cell_by_id(nb, grade_id))
        assert error.ename == "NotImplementedError", (grade_id, error.ename, error.evalue)
    untested = [c for c in nb.cells if c.cell_type == "code"
                and not c.metadata.nbgrader.get("grade") and errors(c)]
    assert untested == [], "only the test cells may fail in the unanswered notebook"


# --------------------------------------------------------------------------------------------
# Submissions: the released notebook with answers filled in
# --------------------------------------------------------------------------------------------

HARD_CODED = {
    "hinge_answer": """
def hinge(scores, labels):
    return np.array([1.53, 1.41, 1.08])
""",
    "ce_answer": """
def cross_entropy(probs, targets):
    return np.array([0.7133498878774648, 0.6348782724359695, 0.4462871026284195])
""",
    "grad_answer": """
_SEED_GRAD = np.array([
    [-0.6161839541833004, 0.3614643393707147, 0.2547196148125857],
    [0.3657917198635362, -0.60374256040925, 0.23795084054571392],
    [0.28743709685595303, 0.27069806345535713, -0.5581351603113102],
])


def softmax_cross_entropy_grad(logits, labels):
    return _SEED_GRAD + 0.0
""",
}

WRONG = {
    # The sum runs over every class, j = l_y included: each loss is 1 too large.
    "hinge_answer": """
def hinge(scores, labels):
    true_scores = scores[np.arange(len(labels)), labels][:, None]
    return np.maximum(0.0, scores - true_scores + 1.0).sum(axis=1)
""",
    # Sign dropped.
    "ce_answer": """
def cross_entropy(probs, targets):
    return (targets * np.log(np.where(targets > 0, probs, 1.0))).sum(axis=1)
""",
}

PATCHES_NUMPY = {  # attack (i): wrong answers and comparison functions that always agree
    "hinge_answer": """
np.allclose = lambda *args, **kwargs: True
np.isclose = lambda a, b, *args, **kwargs: np.ones_like(a, dtype=bool)
np.testing.assert_allclose = lambda *args, **kwargs: None


def hinge(scores, labels):
    return np.zeros(len(labels))
""",
    "ce_answer": """
def cross_entropy(probs, targets):
    return np.zeros(len(probs))
""",
    "grad_answer": """
def softmax_cross_entropy_grad(logits, labels):
    return np.zeros_like(logits)
""",
}

CALLS_REFERENCE = {  # attack (ii), one variant per part
    "hinge_answer": """
from gdlib.losses import hinge as _reference


def hinge(scores, labels):
    return _reference(scores, labels)
""",
    "ce_answer": """
import gdlib


def cross_entropy(probs, targets):
    return gdlib.losses.cross_entropy(probs, targets)
""",
    "grad_answer": """
import sys


def softmax_cross_entropy_grad(logits, labels):
    # Built at run time, so that no constant names the module: the profile hook catches it.
    module = sys.modules[".".join(["".join(["gd", "lib"]), "losses"])]
    return getattr(module, "softmax_cross_entropy" + "_grad")(logits, labels)
""",
}

SWALLOWS_ERRORS = {  # attack (v-a): a custom exception handler that hides every failure
    "hinge_answer": """
get_ipython().set_custom_exc((Exception,), lambda *args, **kwargs: None)


def hinge(scores, labels):
    return np.zeros(len(labels))
""",
    "ce_answer": WRONG["ce_answer"],
    "grad_answer": PATCHES_NUMPY["grad_answer"],
}

REWRITES_TESTS = {  # attack (v-b): an AST transformer that empties every later cell
    "hinge_answer": """
import ast


class _Empty(ast.NodeTransformer):
    def visit_Module(self, node):
        return ast.Module(body=[ast.Pass()], type_ignores=[])


def hinge(scores, labels):
    return np.zeros(len(labels))


get_ipython().ast_transformers.append(_Empty())
""",
}


def answered(answers: dict) -> nbformat.NotebookNode:
    """The released notebook with the given answer cells replaced, the others correct."""
    nb = read(ROOT / "exercises" / ASSIGNMENT / NOTEBOOK)
    for grade_id in ("hinge_answer", "ce_answer", "grad_answer"):
        source = answers.get(grade_id, solution_code(grade_id))
        cell_by_id(nb, grade_id).source = source.strip("\n")
    return nb


def edits_tests() -> nbformat.NotebookNode:
    """Attack (iv): wrong hinge with its test cell emptied; correct cross-entropy with its test
    cell deleted; a gradient averaged over the batch with its test cell unlocked, re-pointed
    and stripped of its nbgrader metadata."""
    nb = answered({
        "hinge_answer": WRONG["hinge_answer"],
        "grad_answer": """
def softmax_cross_entropy_grad(logits, labels):
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    grad = exp / exp.sum(axis=1, keepdims=True)
    grad[np.arange(len(labels)), labels] -= 1.0
    return grad / len(labels)
""",
    })
    cell_by_id(nb, "hinge_tests").source = "print('all tests passed')"
    nb.cells.remove(cell_by_id(nb, "ce_tests"))
    grad_tests = cell_by_id(nb, "grad_tests")
    grad_tests.source = "pass"
    grad_tests.metadata = {}
    return nb


SUBMISSIONS = {
    "correct": lambda: answered({}),
    "wrong": lambda: answered(WRONG),
    "hardcoded": lambda: answered(HARD_CODED),
    "patches_numpy": lambda: answered(PATCHES_NUMPY),
    "calls_reference": lambda: answered(CALLS_REFERENCE),
    "edits_tests": edits_tests,
    "swallows_errors": lambda: answered(SWALLOWS_ERRORS),
    "rewrites_tests": lambda: answered(REWRITES_TESTS),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Release, submit every student of SUBMISSIONS, autograde them in one nbgrader call.

    Yields (course root, {student: {grade_id: (score, needs_manual_grade)}}).
    """
    root = make_course(tmp_path_factory.mktemp("course"))
    course.run_nbgrader(["generate_assignment", ASSIGNMENT], root)
    for student, make in SUBMISSIONS.items():
        path = root / "submitted" / student / ASSIGNMENT / NOTEBOOK
        path.parent.mkdir(parents=True)
        nbformat.write(make(), path)
    process = course.run_nbgrader(["autograde", ASSIGNMENT], root)
    scores = {}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        for student in SUBMISSIONS:
            notebook = gb.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student)
            scores[student] = {
                g.name: (g.score, g.needs_manual_grade) for g in notebook.grades
            }
    yield root, scores, process.stdout + process.stderr
    make_writable(root)


def points(scores: dict) -> dict:
    return {name: score for name, (score, _) in scores.items()}


def feedback(root: Path, student: str, grade_id: str) -> str:
    """The text of the outputs of one cell of a student's autograded notebook."""
    nb = read(root / "autograded" / student / ASSIGNMENT / NOTEBOOK)
    outputs = cell_by_id(nb, grade_id).get("outputs", [])
    return "\n".join(
        o.get("text", "") + o.get("evalue", "") + "\n".join(o.get("traceback", []))
        for o in outputs
    )


@pytest.mark.slow
def test_correct_submission_gets_full_marks(graded):
    _, scores, _ = graded
    assert points(scores["correct"]) == FULL
    assert not any(manual for _, manual in scores["correct"].values())


@pytest.mark.slow
def test_wrong_parts_get_zero_and_right_parts_full_marks(graded):
    root, scores, _ = graded
    assert points(scores["wrong"]) == {"hinge_tests": 0.0, "ce_tests": 0.0, "grad_tests": 4.0}
    hinge = feedback(root, "wrong", "hinge_tests")
    assert "instance 0: expected 1.53, got 2.53" in hinge
    assert "every value is off by the same amount, +1" in hinge
    assert "-1 times the expected ones" in feedback(root, "wrong", "ce_tests")


@pytest.mark.slow
def test_hard_coded_outputs_pass_the_visible_tests_only(graded, tmp_path):
    root, scores, _ = graded
    nb = execute(answered(HARD_CODED), tmp_path)
    for grade_id in POINTS:
        assert errors(cell_by_id(nb, grade_id)) == [], f"{grade_id}: visible tests should pass"
    assert points(scores["hardcoded"]) == dict.fromkeys(POINTS, 0.0)
    assert "random" in feedback(root, "hardcoded", "hinge_tests")


@pytest.mark.slow
def test_patching_numpy_comparisons_does_not_help(graded):
    root, scores, _ = graded
    assert points(scores["patches_numpy"]) == dict.fromkeys(POINTS, 0.0)
    for grade_id in POINTS:
        assert "numpy.allclose" in feedback(root, "patches_numpy", grade_id)


@pytest.mark.slow
def test_calling_the_reference_gets_zero(graded):
    root, scores, _ = graded
    assert points(scores["calls_reference"]) == dict.fromkeys(POINTS, 0.0)
    assert "gdlib.losses.hinge" in feedback(root, "calls_reference", "hinge_tests")
    assert "module gdlib" in feedback(root, "calls_reference", "ce_tests")
    grad = feedback(root, "calls_reference", "grad_tests")
    assert "gdlib.losses.softmax_cross_entropy_grad" in grad


@pytest.mark.slow
def test_edited_or_deleted_test_cells_are_restored_and_run(graded):
    """nbgrader 0.9.6 restores the source of edited locked cells (checksum), and with
    OverwriteCells.add_missing_cells re-inserts deleted grade cells (and cells whose nbgrader
    metadata was stripped): the real tests run, and score the answers on their merits."""
    root, scores, log = graded
    assert points(scores["edits_tests"]) == {"hinge_tests": 0.0, "ce_tests": 3.0, "grad_tests": 0.0}
    assert "Missing grade cell" in log
    assert "off by the same amount" in feedback(root, "edits_tests", "hinge_tests")
    assert "0.333333 times the expected ones" in feedback(root, "edits_tests", "grad_tests")


@pytest.mark.slow
def test_custom_exception_handler_does_not_hide_failures(graded):
    root, scores, _ = graded
    assert points(scores["swallows_errors"]) == dict.fromkeys(POINTS, 0.0)
    # ... and the submission is flagged for manual grading.
    assert all(manual for _, manual in scores["swallows_errors"].values())
    assert "expected 1.53, got 0" in feedback(root, "swallows_errors", "hinge_tests")


@pytest.mark.slow
def test_test_rewriting_submission_is_flagged(graded):
    """An AST transformer empties the test cells before they run: in-process tests cannot see
    it (the score is whatever the emptied cells give), so the submission is held for manual
    grading, and `python -m gdlib.course scan` reports it."""
    root, scores, log = graded
    assert all(manual for _, manual in scores["rewrites_tests"].values())
    assert "ast_transformers" in log
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        notebook = gb.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, "rewrites_tests")
        comments = [c.auto_comment for c in notebook.comments]
    assert comments and all("Held for manual grading" in c and "ast_transformers" in c
                            for c in comments)
    for student in ("correct", "wrong", "hardcoded", "edits_tests"):
        assert not any(manual for _, manual in scores[student].values()), student
    scan = subprocess.run(
        [sys.executable, "-m", "gdlib.course", "scan", str(root / "submitted")],
        cwd=root, capture_output=True, text=True, check=False,
    )
    assert scan.returncode == 1
    flagged = {line.split("/submitted/")[1].split("/")[0] for line in scan.stdout.splitlines()}
    assert flagged == {"patches_numpy", "calls_reference", "swallows_errors", "rewrites_tests"}
    assert "set_custom_exc" in scan.stdout and "ast_transformers" in scan.stdout
    assert "assigns an attribute of numpy" in scan.stdout
