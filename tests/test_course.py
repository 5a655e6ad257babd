"""Tests of gdgrade: the static scan of submissions, the release helpers, held submissions
(on a small gradebook) and the zip_collect convention of nbgrader_config.py. (The release
itself and the autograde hook are exercised end to end in tests/test_exercises.py.)"""

import shutil
import warnings
import zipfile

import nbformat
import pytest
from nbgrader.api import Gradebook, MissingEntry

from gdgrade import course, nbgrader_plugins, scan

FLAGGED = {
    "get_ipython().set_custom_exc((Exception,), lambda *a, **k: None)": "set_custom_exc",
    "get_ipython().ast_transformers.append(t)": "ast_transformers",
    "ip = get_ipython()\nip.input_transformers_post.append(f)": "input_transformers_post",
    "import sys\nsys.settrace(tracer)": "settrace",
    "import sys\nm = sys.modules['gdlib.losses']": "sys.modules",
    "import sys as s\nm = s.modules": "sys.modules",
    "np.allclose = lambda *a, **k: True": "assigns an attribute of numpy",
    "import numpy\nnumpy.testing.assert_allclose = print": "assigns an attribute of numpy",
    "import numpy as xp\nxp.sum = max": "assigns an attribute of numpy",
    "from numpy import testing\ntesting.assert_allclose = print": "assigns an attribute of numpy",
    "del np.isclose": "deletes an attribute of numpy",
    "import builtins": "imports builtins",
    "import gdlib\ngdlib.losses.hinge = my_hinge": "assigns an attribute of gdlib",
    "from gdlib import losses": "imports gdlib",
    "import torch": "imports torch",
    "import importlib\nimportlib.import_module('x')": "imports importlib",
    "import inspect": "imports inspect",
    "from inspect import currentframe": "imports inspect",
    "setattr(np, 'allclose', f)": "setattr()",
    "exec(payload)": "exec()",
    "grading = None": "rebinds grading",
    "__builtins__['abs'] = f": "__builtins__",
    "def f():\n    return sys._getframe(1).f_locals": "inspects stack frames",
    "%time np.allclose = f": "assigns an attribute of numpy",
    "sys.excepthook = f": "assigns an attribute of sys",
    "%%capture\nnp.allclose = f": "assigns an attribute of numpy",
    "%run cheat.py": "%run runs code from a file",
    "vars(grading)['check_steps'] = f": "vars()",
    "m.__dict__['check_steps'] = f": ".__dict__",
    "type(grading).__getattribute__ = object.__getattribute__": ".__getattribute__",
    "grading.__class__ = type(sys)": ".__class__",
    "f.__defaults__ = (0,)": ".__defaults__",
    # The grading module: only its public functions may be read (and called).
    "grading._SNAPSHOTS.clear()": "reaches gdgrade.grading._SNAPSHOTS, a private name of the grader",
    "x = grading._TAMPERED": "reaches gdgrade.grading._TAMPERED",
    "vars(grading).update(check_function=f)": "uses the grading module itself as a value",
    "g = grading\ng.check_function = f": "assigns an attribute of g (the grading module)",
    "g = grading": "uses the grading module itself as a value",
    "def f(m):\n    m.check_array = None\n\n\nf(grading)": "grading module itself as a value",
    "modules = [grading]": "uses the grading module itself as a value",
    "grading.check_array.__wrapped__ = f": "assigns an attribute of gdgrade",
    "x = grading.check_steps.x": "reaches inside gdgrade.grading.check_steps",
    "grading.rng.cache[3] = 0": "reaches inside gdgrade.grading.rng",
    "import gdgrade.grading as G\nG.__dict__['check_array'] = f": ".__dict__",
    "from gdgrade import grading as g\ng.check_array = f": "assigns an attribute of g",
    "from gdgrade.grading import _TAMPERED": "imports gdgrade.grading._TAMPERED, a private name",
    "grading.check_array = f": "assigns an attribute of grading",
    # Names built at run time, and the tools that use them.
    "setattr(getattr(gdlib, 'grad' + 'ing'), 'check_array', f)": "getattr() with an attribute "
                                                                  "name computed at run time",
    "x = getattr(f, '__globals__')": "getattr() of the private or special attribute",
    "put = setattr\nput(m, 'check_array', f)": "refers to setattr, which sets attributes",
    "ns = vars": "refers to vars",
    "import operator\nglobs = operator.attrgetter('__globals__')(f)": "names the attribute "
                                                                        "'__globals__'",
    # Private names of any imported module, and aliases of modules.
    "x = np._core": "reaches numpy._core, a private name of an imported module",
    "import os\nos._exit(0)": "reaches os._exit",
    "t = np.testing\nt.assert_allclose = print": "assigns an attribute of numpy",
}

CLEAN = [
    (
        "def hinge(scores, labels):\n"
        "    rows = np.arange(len(labels))\n"
        "    v = np.maximum(0.0, scores - scores[rows, labels][:, None] + 1.0)\n"
        "    v[rows, labels] = 0.0\n"
        "    return v.sum(axis=1)"
    ),
    "%timeit hinge(SCORES, LABELS)",
    "!ls",
    "np.random.seed(0)\nx = np.zeros(3)\nx[0] = 1\nx += 2",
    "class Box:\n    def __init__(self):\n        self.value = np.ones(2)",
    "import math\nimport numpy as np\nfrom numpy import linalg",
    "def broken(:\n    pass",  # a syntax error fails its tests; it is not a finding
    # A student re-running a visible check in a cell of their own.
    "grading.check_array('hinge', hinge(SCORES, LABELS), [1.53, 1.41, 1.08], atol=0.005)",
    "try:\n    f()\nexcept grading.GradingError as error:\n    print(error)",
    "class Cache:\n    def __init__(self):\n        self._values = {}\n        self._values[0] = 1",
    "x = getattr(np, 'float64')\nn = np.linalg.norm(np.ones(2))",
    "if __name__ == '__main__':\n    print(np.__version__)",
]


@pytest.mark.parametrize("source", sorted(FLAGGED))
def test_scan_flags_tampering(source):
    reasons = " | ".join(reason for _, reason in scan.scan_source(source))
    assert FLAGGED[source] in reasons


@pytest.mark.parametrize("source", CLEAN)
def test_scan_ignores_ordinary_answers(source):
    assert scan.scan_source(source) == []


def notebook(*sources, locked=()):
    cells = []
    for index, source in enumerate(sources):
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["nbgrader"] = {"locked": index in locked, "grade_id": f"cell{index}"}
        cells.append(cell)
    return nbformat.v4.new_notebook(cells=cells)


def test_scan_notebook_reports_cell_and_line_and_skips_trusted_cells(tmp_path):
    course_code = "from gdgrade import grading\ngrading.protect('gdlib.losses')"
    answer = "def f(x):\n    return x\n\nnp.allclose = lambda *a: True"
    nb = notebook(course_code, answer, locked={0})
    released = tmp_path / "exercises" / "a" / "a.ipynb"
    released.parent.mkdir(parents=True)
    nbformat.write(notebook(course_code, "raise NotImplementedError()", locked={0}), released)
    trusted = scan.locked_sources(tmp_path / "exercises")
    assert trusted == {course_code}
    (finding,) = scan.scan_notebook(nb, trusted, "alice.ipynb")
    assert (finding.cell, finding.line) == (1, 4)
    assert str(finding) == ("alice.ipynb: cell 1, line 4: assigns an attribute of numpy: "
                            "np.allclose = lambda *a: True")
    # Without the course's sources, its own import of gdlib is a finding too.
    assert len(scan.scan_notebook(nb)) == 2
    # During autograde, locked cells are trusted by grade_id.
    assert scan.scan_notebook(nb, trusted_ids={"cell0", "cell1"}) == []


def test_the_course_cells_imports_count_for_the_students_cells():
    """A trusted cell is not scanned, but the names it imports are known in later cells."""
    setup = "import gdgrade.grading as G\nG.protect('gdlib.losses')"
    nb = notebook(setup, "G._SNAPSHOTS.clear()\nalias = G", locked={0})
    reasons = [f.reason for f in scan.scan_notebook(nb, trusted_ids={"cell0"})]
    assert reasons[0].startswith("reaches gdgrade.grading._SNAPSHOTS, a private name of the grader")
    assert reasons[1].startswith("uses the grading module itself as a value")


def test_scan_command_exit_status_and_output(tmp_path, capsys):
    submitted = tmp_path / "submitted"
    (submitted / "alice").mkdir(parents=True)
    (submitted / "bob").mkdir(parents=True)
    nbformat.write(notebook("x = np.ones(2)"), submitted / "alice" / "a.ipynb")
    nbformat.write(notebook("get_ipython().set_custom_exc((Exception,), None)"),
                   submitted / "bob" / "a.ipynb")
    (tmp_path / "empty").mkdir()
    assert course.main(["scan", str(submitted / "alice"), "--trusted", str(tmp_path / "empty")]) == 0
    assert course.main(["scan", str(submitted), "--trusted", str(tmp_path / "empty")]) == 1
    out = capsys.readouterr().out
    assert "bob/a.ipynb: cell 0, line 1: .set_custom_exc" in out and "alice" not in out


def test_leaked_markers(tmp_path):
    nbformat.write(notebook("### BEGIN SOLUTION\nx = 1\n### END SOLUTION"), tmp_path / "a.ipynb")
    assert course.leaked_markers(tmp_path) == [
        (str(tmp_path / "a.ipynb"), "BEGIN SOLUTION"), (str(tmp_path / "a.ipynb"), "END SOLUTION")
    ]


def test_assignments_are_the_solution_folders_with_a_notebook(tmp_path):
    for name in ("02_sgd", "01_losses", "empty"):
        (tmp_path / "solutions" / name).mkdir(parents=True)
    for name in ("02_sgd", "01_losses"):
        nbformat.write(notebook("x = 1"), tmp_path / "solutions" / name / f"{name}.ipynb")
    assert course.assignments(tmp_path) == ["01_losses", "02_sgd"]


# --------------------------------------------------------------------------------------------
# Names the course's locked cells define
# --------------------------------------------------------------------------------------------

LOCKED = [
    "import numpy as np\n\nfrom gdgrade import grading\ngrading.protect('gdlib.optim')",
    "SCORES = np.ones(3)\nLIMIT = 2\nSCORES",  # data for the tests (LIMIT: never read)
    (
        "from gdgrade.grading import check_steps\n\n\ndef ravine(lr):\n    return lr\n\n\n"
        "hidden = [ravine(0.1), SCORES]\ncheck_steps(momentum_step, hidden)\n"
        "for seed in range(3):\n    check_steps(momentum_step, [seed])"
    ),
    "## a markdown heading that does not parse: = =",
]
NAMES = scan.course_names(LOCKED)


def test_course_names_are_functions_imports_and_data_shared_between_cells():
    assert NAMES == {
        "np": frozenset({"numpy"}), "grading": frozenset({"gdgrade.grading"}),
        "check_steps": frozenset({"gdgrade.grading.check_steps"}), "ravine": frozenset({None}),
        "SCORES": frozenset({None}),
    }  # not hidden or seed (a grade cell's own temporaries), nor LIMIT (no other cell reads it)


REBINDS = {
    "check_steps = lambda *a, **k: None": "rebinds check_steps",
    "def check_steps(*args):\n    pass": "rebinds check_steps",
    "class ravine:\n    pass": "rebinds ravine",
    "SCORES = np.zeros(3)": "rebinds SCORES",
    "SCORES += 1": "rebinds SCORES",
    "SCORES: list = []": "rebinds SCORES",
    "for SCORES in range(2):\n    pass": "rebinds SCORES",
    "with open('x') as (a, check_steps):\n    pass": "rebinds check_steps",
    "try:\n    pass\nexcept ValueError as ravine:\n    pass": "rebinds ravine",
    "if (ravine := None) is None:\n    pass": "rebinds ravine",
    "x = [(ravine := y) for y in range(2)]": "rebinds ravine",
    "def f():\n    global check_steps\n    check_steps = None": "rebinds check_steps",
    "del ravine": "deletes ravine",
    "import os as check_steps": "rebinds check_steps",
    "from mylib import check_steps": "rebinds check_steps",
    "import numpy.linalg as np": "rebinds np",
    "match 1:\n    case SCORES:\n        pass": "rebinds SCORES",
}


@pytest.mark.parametrize("source", sorted(REBINDS))
def test_scan_flags_answers_that_rebind_course_names(source):
    reasons = [reason for _, reason in scan.scan_source(source, names=NAMES)]
    assert any(reason.startswith(REBINDS[source] + ", a name defined by the course's locked "
                                 "cells") for reason in reasons), reasons


@pytest.mark.parametrize("source", [
    "import numpy as np",  # the course's own import again
    "import numpy",
    "hidden = np.ones(2)\nseed = 3\nLIMIT = 4",  # names the course only uses in one cell
    "def momentum_step(theta, grad, velocity, lr, beta):\n    SCORES = 1\n    return SCORES",
    "x = [SCORES for SCORES in range(3)]",  # a comprehension's variable is its own
    "class Box:\n    ravine = 1\n    def check_steps(self):\n        pass",
    "f = lambda SCORES: SCORES",
    "print(SCORES, ravine(0.1))",
])
def test_scan_lets_answers_reuse_names_that_are_not_the_courses(source):
    assert scan.scan_source(source, names=NAMES) == []


def test_scan_command_flags_rebinding_the_names_of_the_same_notebook_only(tmp_path, capsys):
    for kind, answer in (("exercises", "raise NotImplementedError()"),
                         ("solutions", "def momentum_step():\n    pass")):
        path = tmp_path / kind / "a" / "a.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(notebook(*LOCKED[:3], answer, locked={0, 1, 2}), path)
    assert scan.locked_names(tmp_path / "exercises", tmp_path / "solutions") == {"a.ipynb": NAMES}
    submitted = tmp_path / "submitted" / "eve" / "a"
    submitted.mkdir(parents=True)
    cheat = "def momentum_step():\n    pass\n\n\ncheck_steps = print"
    nbformat.write(notebook(*LOCKED[:3], cheat, locked={0, 1, 2}), submitted / "a.ipynb")
    nbformat.write(notebook("check_steps = print"), submitted / "b.ipynb")  # another notebook
    trusted = ["--trusted", str(tmp_path / "exercises"), "--trusted", str(tmp_path / "solutions")]
    assert course.main(["scan", str(submitted), *trusted]) == 1
    (line,) = capsys.readouterr().out.splitlines()
    assert line == (f"{submitted / 'a.ipynb'}: cell 3, line 5: rebinds check_steps, a name "
                    f"defined by the course's locked cells (the tests may use it): "
                    f"check_steps = print")


# --------------------------------------------------------------------------------------------
# Held submissions: FlagSuspiciousCode, `held`, and the export's needs_manual_grade column
# --------------------------------------------------------------------------------------------

SETUP = "import numpy as np\nfrom gdgrade import grading\ngrading.protect('gdlib.losses')"
TESTS = "grading.check_array('hinge', hinge(np.ones((1, 2)), [0]), [1.0])"
CHEAT = "grading._SNAPSHOTS.clear()\ndef hinge(scores, labels):\n    return np.ones(1)"


def small_course(root) -> str:
    """A gradebook with assignment a (notebook a: setup, answer, a 3-point test cell) and the
    submissions of alice and bob, autograded with full marks; its URL."""
    url = nbgrader_plugins.gradebook_url(root)
    with Gradebook(url) as gb:
        gb.add_assignment("a")
        gb.add_notebook("a", "a")
        for name, source, locked in (("setup", SETUP, True), ("answer", "", False),
                                     ("tests", TESTS, True)):
            gb.add_source_cell(name, "a", "a", cell_type="code", source=source, locked=locked,
                               checksum="")
        gb.add_solution_cell("answer", "a", "a")
        gb.add_grade_cell("tests", "a", "a", max_score=3, cell_type="code")
        for student in ("alice", "bob"):
            gb.add_student(student)
            with warnings.catch_warnings():  # nbgrader's own, as during autograde
                warnings.filterwarnings("ignore", message="Object of type .* not in session")
                gb.add_submission("a", student)
            grade = gb.find_grade("tests", "a", "a", student)
            grade.auto_score, grade.needs_manual_grade = 3.0, False
        gb.db.commit()
    return url


def submitted(answer: str):
    cells = [nbformat.v4.new_code_cell(source) for source in (SETUP, answer, TESTS)]
    for cell, name, locked in zip(cells, ("setup", "answer", "tests"), (True, False, True)):
        cell.metadata["nbgrader"] = {"grade_id": name, "locked": locked,
                                     "solution": name == "answer", "grade": name == "tests"}
    return nbformat.v4.new_notebook(cells=cells)


def flag(url: str, student: str, answer: str) -> None:
    resources = {"nbgrader": {"notebook": "a", "assignment": "a", "student": student,
                              "db_url": url}}
    nbgrader_plugins.FlagSuspiciousCode().preprocess(submitted(answer), resources)


def test_a_flagged_submission_is_held_with_its_findings(tmp_path, capsys, monkeypatch):
    url = small_course(tmp_path)
    flag(url, "alice", "def hinge(scores, labels):\n    return np.ones(1)")
    flag(url, "bob", CHEAT)
    (held,) = nbgrader_plugins.held_submissions(url)
    assert (held.student, held.assignment, held.notebook, held.cells) == ("bob", "a", "a",
                                                                          ("tests",))
    (finding,) = held.findings
    assert finding.startswith("bob/a/a.ipynb: cell 1, line 1: reaches gdgrade.grading._SNAPSHOTS")
    assert nbgrader_plugins.held_submissions(url, "a") == [held]
    with pytest.raises(MissingEntry):
        nbgrader_plugins.held_submissions(url, "b")

    (tmp_path / "nbgrader_config.py").write_text("")  # a course root
    monkeypatch.chdir(tmp_path)
    assert course.main(["held"]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == ["bob, a/a.ipynb: 1 grade(s) need manual grading: tests",
                                f"    {finding}"]
    assert err == "1 notebook(s) held for manual grading\n"
    assert course.main(["held", "b"]) == 2
    assert "no assignment 'b'" in capsys.readouterr().err


def test_held_lists_cells_graded_by_hand_and_clears_once_graded(tmp_path, monkeypatch):
    url = small_course(tmp_path)
    with Gradebook(url) as gb:
        grade = gb.find_grade("tests", "a", "a", "alice")
        grade.needs_manual_grade = True  # as nbgrader leaves a cell without an auto score
        gb.db.commit()
    (held,) = nbgrader_plugins.held_submissions(url)
    assert held.student == "alice" and held.findings == ()
    assert "no scan finding" in str(held)
    with Gradebook(url) as gb:  # what the formgrader does when a score is saved
        grade = gb.find_grade("tests", "a", "a", "alice")
        grade.manual_score, grade.needs_manual_grade = 3.0, False
        gb.db.commit()
    (tmp_path / "nbgrader_config.py").write_text("")
    monkeypatch.chdir(tmp_path)
    assert nbgrader_plugins.held_submissions(url) == [] and course.main(["held"]) == 0


def test_held_without_a_gradebook(tmp_path, monkeypatch, capsys):
    (tmp_path / "nbgrader_config.py").write_text("")
    monkeypatch.chdir(tmp_path)
    assert course.main(["held"]) == 2
    assert "no gradebook" in capsys.readouterr().err


@pytest.mark.slow
def test_the_export_marks_held_submissions(tmp_path):
    """``nbgrader export`` with the repository's nbgrader_config.py (CsvExportWithHolds)."""
    shutil.copy(course.REPO_ROOT / "nbgrader_config.py", tmp_path)
    url = small_course(tmp_path)
    flag(url, "bob", CHEAT)
    process = course.run_nbgrader(["export"], tmp_path)
    assert "Using exporter: CsvExportWithHolds" in process.stdout + process.stderr
    header, *rows = (tmp_path / "grades.csv").read_text(encoding="utf-8").splitlines()
    assert header.endswith(",score,max_score,needs_manual_grade")
    by_student = {row.split(",")[3]: row.split(",") for row in rows}
    assert by_student["bob"][-3:] == ["3.0", "3.0", "yes"]  # the full score, not final
    assert by_student["alice"][-3:] == ["3.0", "3.0", ""]


@pytest.mark.slow
def test_zip_collect_follows_the_file_name_convention(tmp_path):
    """nbgrader zip_collect with the repository's nbgrader_config.py: files named
    <student_id>_<notebook> (also inside a zip) become submitted/<student_id>/<id>/<notebook>;
    misnamed files are skipped."""
    shutil.copy(course.REPO_ROOT / "nbgrader_config.py", tmp_path)
    released = course.REPO_ROOT / "exercises" / "01_losses" / "01_losses.ipynb"
    (tmp_path / "exercises" / "01_losses").mkdir(parents=True)
    shutil.copy(released, tmp_path / "exercises" / "01_losses")
    archive = tmp_path / "downloaded" / "01_losses" / "archive"
    archive.mkdir(parents=True)
    for name in ("jane_doe_01_losses.ipynb", "bob_01_losses.ipynb", "01_losses.ipynb",
                 "dave_01_losses_v2.ipynb"):
        shutil.copy(released, archive / name)
    with zipfile.ZipFile(archive / "carol.zip", "w") as bundle:
        bundle.write(released, "carol_01_losses.ipynb")
    process = course.run_nbgrader(["zip_collect", "01_losses"], tmp_path)
    assert "3 files collected, 2 files skipped" in process.stdout + process.stderr
    found = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "submitted").rglob("*.ipynb"))
    assert found == [f"submitted/{student}/01_losses/01_losses.ipynb"
                     for student in ("bob", "carol", "jane_doe")]
    assert (tmp_path / "submitted" / "bob" / "01_losses" / "01_losses.ipynb").read_bytes() == (
        released.read_bytes())
