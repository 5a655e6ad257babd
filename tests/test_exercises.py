"""The nbgrader side of the course: the committed exercises/ match solutions/, and grading is
fair and hard to game (round trips through `nbgrader generate_assignment` and `autograde`).

The round trip itself (a temporary course, the released notebook with answers filled in, one
student per behaviour, one ``nbgrader autograde``, scores read from the gradebook) is in
tests/course_roundtrip.py, shared with the chapter tests; this file holds chapter 1's students,
expected scores and messages.
"""

import json
from pathlib import Path

import course_roundtrip as roundtrip
import nbformat
import pytest

from gdgrade import course

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "01_losses"
POINTS = {"hinge_tests": 3.0, "ce_tests": 3.0, "grad_tests": 4.0}
FULL = dict(POINTS)
MARKERS = course.LEAK_MARKERS


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
def regenerated(released_course) -> Path:
    """exercises/ regenerated from the committed solutions/ in a temporary course."""
    return released_course / "exercises"


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
        for cell in roundtrip.read(path).cells:
            if cell.metadata.get("nbgrader", {}).get("solution"):
                stub = "raise NotImplementedError()" if cell.cell_type == "code" else "YOUR ANSWER"
                assert stub in cell.source, path
        # The instructor's answer lines must not appear anywhere in the student version.
        assert "violations[rows, labels] = 0.0" not in text
        assert "reference_softmax" not in text  # only used by the hidden tests


def test_released_exercises_hold_no_reference():
    """No cell of a student's notebook imports gdlib (issue 12): the visible tests compare with
    worked numbers, and the reference is imported by the hidden tests alone, which the release
    strips. (`reference??` in the notebook would show its source.)"""
    for path in sorted((ROOT / "exercises").rglob("*.ipynb")):
        for cell in roundtrip.read(path).cells:
            if cell.cell_type != "code":
                continue
            imports = [line for line in cell.source.splitlines()
                       if line.lstrip().startswith(("import ", "from ")) and "gdlib" in line]
            assert imports == [], (path.name, cell.metadata.get("nbgrader", {}).get("grade_id"),
                                   imports)
            assert "reference_" not in cell.source, (path.name, cell.source[:200])


def test_solution_notebook_has_its_markers_and_points():
    nb = roundtrip.read(roundtrip.solution_path(ASSIGNMENT))
    assert roundtrip.grade_points(nb) == POINTS
    text = json.dumps(nb)
    for marker in MARKERS:
        assert marker in text
    roundtrip.assert_locked_with_hidden_tests(nb, POINTS)


@pytest.mark.slow
def test_unanswered_release_fails_its_own_tests(tmp_path):
    roundtrip.assert_only_test_cells_fail_unanswered(ASSIGNMENT, POINTS, tmp_path)


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


def edits_tests() -> nbformat.NotebookNode:
    """Attack (iv): wrong hinge with its test cell emptied; correct cross-entropy with its test
    cell deleted; a gradient averaged over the batch with its test cell unlocked, re-pointed
    and stripped of its nbgrader metadata."""
    nb = roundtrip.answered(ASSIGNMENT, {
        "hinge_answer": WRONG["hinge_answer"],
        "grad_answer": """
def softmax_cross_entropy_grad(logits, labels):
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    grad = exp / exp.sum(axis=1, keepdims=True)
    grad[np.arange(len(labels)), labels] -= 1.0
    return grad / len(labels)
""",
    })
    roundtrip.cell_by_id(nb, "hinge_tests").source = "print('all tests passed')"
    nb.cells.remove(roundtrip.cell_by_id(nb, "ce_tests"))
    grad_tests = roundtrip.cell_by_id(nb, "grad_tests")
    grad_tests.source = "pass"
    grad_tests.metadata = {}
    return nb


SUBMISSIONS = {  # student: the answer cells they write (the others correct), or their notebook
    "correct": {},
    "wrong": WRONG,
    "hardcoded": HARD_CODED,
    "patches_numpy": PATCHES_NUMPY,
    "calls_reference": CALLS_REFERENCE,
    "edits_tests": edits_tests,
    "swallows_errors": SWALLOWS_ERRORS,
    "rewrites_tests": REWRITES_TESTS,
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory, released_course):
    """Release, submit every student of SUBMISSIONS, autograde them in one nbgrader call."""
    directory = tmp_path_factory.mktemp("course")
    with roundtrip.autograded(directory, ASSIGNMENT, SUBMISSIONS, released_course) as result:
        yield result


def feedback(graded, student: str, grade_id: str) -> str:
    """The outputs of one cell of a student's autograded notebook, tracebacks included."""
    return graded.feedback(student, grade_id, traceback=True)


@pytest.mark.slow
def test_correct_submission_gets_full_marks(graded):
    assert graded.scores["correct"] == FULL
    assert not any(graded.manual["correct"].values())


@pytest.mark.slow
def test_wrong_parts_get_zero_and_right_parts_full_marks(graded):
    assert graded.scores["wrong"] == {"hinge_tests": 0.0, "ce_tests": 0.0, "grad_tests": 4.0}
    hinge = feedback(graded, "wrong", "hinge_tests")
    assert "instance 0: expected 1.53, got 2.53" in hinge
    assert "every value is off by the same amount, +1" in hinge
    assert "-1 times the expected ones" in feedback(graded, "wrong", "ce_tests")


@pytest.mark.slow
def test_hard_coded_outputs_pass_the_visible_tests_only(graded, tmp_path):
    nb = roundtrip.execute(roundtrip.answered(ASSIGNMENT, HARD_CODED), tmp_path)
    for grade_id in POINTS:
        found = roundtrip.errors(roundtrip.cell_by_id(nb, grade_id))
        assert found == [], f"{grade_id}: visible tests should pass"
    assert graded.scores["hardcoded"] == dict.fromkeys(POINTS, 0.0)
    assert "random" in feedback(graded, "hardcoded", "hinge_tests")


@pytest.mark.slow
def test_patching_numpy_comparisons_does_not_help(graded):
    assert graded.scores["patches_numpy"] == dict.fromkeys(POINTS, 0.0)
    for grade_id in POINTS:
        assert "numpy.allclose" in feedback(graded, "patches_numpy", grade_id)


@pytest.mark.slow
def test_calling_the_reference_gets_zero(graded):
    assert graded.scores["calls_reference"] == dict.fromkeys(POINTS, 0.0)
    assert "gdlib.losses.hinge" in feedback(graded, "calls_reference", "hinge_tests")
    assert "module gdlib" in feedback(graded, "calls_reference", "ce_tests")
    grad = feedback(graded, "calls_reference", "grad_tests")
    assert "gdlib.losses.softmax_cross_entropy_grad" in grad


@pytest.mark.slow
def test_edited_or_deleted_test_cells_are_restored_and_run(graded):
    """nbgrader 0.9.6 restores the source of edited locked cells (checksum), and with
    OverwriteCells.add_missing_cells re-inserts deleted grade cells (and cells whose nbgrader
    metadata was stripped): the real tests run, and score the answers on their merits."""
    assert graded.scores["edits_tests"] == {"hinge_tests": 0.0, "ce_tests": 3.0,
                                            "grad_tests": 0.0}
    assert "Missing grade cell" in graded.log
    assert "off by the same amount" in feedback(graded, "edits_tests", "hinge_tests")
    assert "0.333333 times the expected ones" in feedback(graded, "edits_tests", "grad_tests")


@pytest.mark.slow
def test_custom_exception_handler_does_not_hide_failures(graded):
    assert graded.scores["swallows_errors"] == dict.fromkeys(POINTS, 0.0)
    # ... and the submission is flagged for manual grading.
    assert all(graded.manual["swallows_errors"].values())
    assert "expected 1.53, got 0" in feedback(graded, "swallows_errors", "hinge_tests")


@pytest.mark.slow
def test_test_rewriting_submission_is_flagged(graded):
    """An AST transformer empties the test cells before they run: in-process tests cannot see
    it (the score is whatever the emptied cells give), so the submission is held for manual
    grading, and `python -m gdgrade scan` reports it."""
    assert all(graded.manual["rewrites_tests"].values())
    assert "ast_transformers" in graded.log
    comments = graded.comments("rewrites_tests")
    assert comments and all("Held for manual grading" in c and "ast_transformers" in c
                            for c in comments)
    for student in ("correct", "wrong", "hardcoded", "edits_tests"):
        assert not any(graded.manual[student].values()), student
    scan = roundtrip.scan(graded.root / "submitted", cwd=graded.root)
    assert scan.returncode == 1
    flagged = {line.split("/submitted/")[1].split("/")[0] for line in scan.stdout.splitlines()}
    assert flagged == {"patches_numpy", "calls_reference", "swallows_errors", "rewrites_tests"}
    assert "set_custom_exc" in scan.stdout and "ast_transformers" in scan.stdout
    assert "assigns an attribute of numpy" in scan.stdout
