"""Dishonest submissions, graded by the instructor's one command (``gdgrade.batch.grade_all``).

Every student of ``ATTACKS`` answers part (a) of exercise 1 (``hinge``) dishonestly -- a wrong
answer dressed up to pass, or the reference reached by some route -- and parts (b) and (c)
honestly. Graded in one batch, each must earn no point for (a) while (b) and (c) keep their
marks, and the batch must finish. The attacks are those of issue 13: faked comparison
functions (numpy, math, builtins, torch), objects with lying ``__eq__``/``__array__``/
``__float__`` and numpy subclasses, the reference by any route (``sys.modules``, a computed
import, ``gc``, exec'ing its source), solutions and the grader's frames, killing or exiting
the kernel, hooks that hide errors (``showtraceback``, ``sys.excepthook``), threads and
``atexit`` hooks that outlive a cell, an infinite loop, a memory bomb, edited and deleted
locked cells, and writes outside the submission. (Fork bombs are capped by the sandbox's
``RLIMIT_NPROC``, checked in tests/test_sandbox.py, not run here.)
"""

import json

import course_roundtrip as roundtrip
import pytest

from gdgrade import batch

ASSIGNMENT = "01_losses"
POINTS = {"hinge_tests": 3.0, "ce_tests": 3.0, "grad_tests": 4.0}
WRONG = "def hinge(scores, labels):\n    return np.zeros(len(scores))\n"

ATTACKS = {
    "fake_numpy": WRONG + """
np.allclose = lambda *a, **k: True
np.testing.assert_allclose = lambda *a, **k: None
np.array_equal = lambda *a, **k: True
""",
    "fake_math_builtins": WRONG + """
import builtins, math
builtins.abs = lambda x: 0
builtins.all = lambda x: True
math.isclose = lambda *a, **k: True
""",
    "fake_torch": WRONG + """
import torch
torch.allclose = lambda *a, **k: True
torch.testing.assert_close = lambda *a, **k: None
""",
    "lying_eq": """
class Liar:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __array__(self, *a, **k): return np.zeros(3)
    def __float__(self): return 1.53
    def __len__(self): return 3

def hinge(scores, labels):
    return Liar()
""",
    "ndarray_subclass": """
class Agreeable(np.ndarray):
    def __eq__(self, other): return np.ones(np.shape(other), dtype=bool)
    def __sub__(self, other): return np.zeros(np.shape(other))
    def __array__(self, *a, **k): return np.full(self.shape, 1.0)

def hinge(scores, labels):
    return np.zeros(len(scores)).view(Agreeable)
""",
    "sys_modules": """
import sys
def hinge(scores, labels):
    return sys.modules["gd" + "lib.losses"].hinge(scores, labels)
""",
    "computed_import": """
import importlib
def hinge(scores, labels):
    return importlib.import_module("".join(["gd", "lib", ".", "losses"])).hinge(scores, labels)
""",
    "gc_search": """
import gc
def hinge(scores, labels):
    for obj in gc.get_objects():
        if callable(obj) and getattr(obj, "__qualname__", "") == "hinge" and \\
                "lib" in getattr(obj, "__module__", ""):
            return obj(scores, labels)
    return np.zeros(len(scores))
""",
    "exec_source": """
import importlib.util, pathlib
def hinge(scores, labels):
    namespace = {}
    spec = importlib.util.find_spec("gd" + "lib")
    folder = pathlib.Path(spec.submodule_search_locations[0])
    exec(compile((folder / "losses.py").read_text(), "losses", "exec"), namespace)
    return namespace["hinge"](scores, labels)
""",
    "read_solutions": """
import glob, os
FOUND = []
for pattern in ("../../../solutions/*/*.ipynb", "/work/*/solutions/*/*.ipynb",
                "../../../gradebook.db"):
    for path in glob.glob(pattern):
        try:
            FOUND.append(len(open(path, errors="ignore").read()))
        except OSError:
            pass
""" + WRONG,
    "grader_frames": """
import sys
def hinge(scores, labels):
    frame = sys._getframe(1)
    while frame is not None:
        for name in ("expected", "reference", "want"):
            value = frame.f_locals.get(name)
            if isinstance(value, np.ndarray) and value.shape == (len(scores),):
                return value.copy()
        frame = frame.f_back
    return np.zeros(len(scores))
""",
    "kills_kernel": """
import os, signal
os.kill(os.getpid(), signal.SIGKILL)
""" + WRONG,
    "exits_kernel": "import os\nos._exit(0)\n" + WRONG,
    "hides_errors": WRONG + """
ip = get_ipython()
ip.showtraceback = lambda *a, **k: None
ip._showtraceback = lambda *a, **k: None
import sys
sys.excepthook = lambda *a: None
""",
    "thread_and_atexit": WRONG + """
import atexit, threading, time
def later():
    time.sleep(0.5)
    np.allclose = lambda *a, **k: True
threading.Thread(target=later, daemon=True).start()
atexit.register(lambda: open("/tmp/gdgrade-atexit-was-here", "w").write("x"))
""",
    "infinite_loop": "def hinge(scores, labels):\n    while True:\n        pass\n",
    "memory_bomb": "hog = bytearray(64 * 2**30)\n" + WRONG,
    "writes_outside": WRONG + """
import os
for target in ("../../../gradebook.db", "../../../nbgrader_config.py", "/tmp/gdgrade-was-here"):
    try:
        open(target, "w").write("overwritten")
    except OSError as error:
        print("refused", target, error.strerror)
""",
}


def edited_locked_cells():
    """Deletes the hinge test cell, edits the ce test cell to pass anything, answers (a)
    wrongly: nbgrader restores both cells from the gradebook."""
    nb = roundtrip.answered(ASSIGNMENT, {"hinge_answer": WRONG})
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id")
                != "hinge_tests"]
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "ce_tests":
            cell.source = "pass"
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = roundtrip.make_course(tmp_path_factory.mktemp("adversarial"))
    with open(root / "nbgrader_config.py", "a", encoding="utf-8") as config:
        # shorter limits than the course's 20 s, so that the infinite loop costs little here
        config.write("\nc.Execute.timeout = 5\nc.VerifyAnswers.call_timeout = 5.0\n")
    folder = root / "downloaded"
    folder.mkdir()
    students = {name: {"hinge_answer": code} for name, code in ATTACKS.items()}
    students["edits_locked_cells"] = edited_locked_cells
    students["honest"] = {}
    for student, what in students.items():
        path = folder / f"{student}_{ASSIGNMENT}.ipynb"
        path.write_text(json.dumps(roundtrip.submission(ASSIGNMENT, what)), encoding="utf-8")
    summary = batch.grade_all(root, folder, workers=2, progress=False)
    graded = [student for student, *_ in summary.graded]
    scores, _ = roundtrip.gradebook_grades(root, ASSIGNMENT, graded)
    yield root, summary, scores
    roundtrip.make_writable(root)


@pytest.mark.slow
def test_the_batch_finishes_and_grades_everyone(graded):
    _, summary, _ = graded
    assert summary.failed == [], summary.text()
    assert len(summary.graded) == len(ATTACKS) + 2


@pytest.mark.slow
@pytest.mark.parametrize("student", [*ATTACKS, "edits_locked_cells"])
def test_no_undeserved_point_and_the_honest_parts_keep_theirs(graded, student):
    _, summary, scores = graded
    assert student in scores, summary.text()
    assert scores[student] == {**POINTS, "hinge_tests": 0.0}, (student, summary.text())


@pytest.mark.slow
def test_the_honest_student_gets_full_marks(graded):
    assert graded[2]["honest"] == POINTS


@pytest.mark.slow
def test_nothing_outside_the_submission_was_written(graded):
    root, _, _ = graded
    assert "overwritten" not in (root / "nbgrader_config.py").read_text()
    for path in ("/tmp/gdgrade-was-here", "/tmp/gdgrade-atexit-was-here"):
        with pytest.raises(FileNotFoundError):
            open(path).close()
