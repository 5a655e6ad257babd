"""Tests of gdlib.course: the static scan of submissions and the release helpers. (The release
itself and the autograde hook are exercised end to end in tests/test_exercises.py.)"""

import nbformat
import pytest

from gdlib import course

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
]


@pytest.mark.parametrize("source", sorted(FLAGGED))
def test_scan_flags_tampering(source):
    reasons = " | ".join(reason for _, reason in course.scan_source(source))
    assert FLAGGED[source] in reasons


@pytest.mark.parametrize("source", CLEAN)
def test_scan_ignores_ordinary_answers(source):
    assert course.scan_source(source) == []


def notebook(*sources, locked=()):
    cells = []
    for index, source in enumerate(sources):
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["nbgrader"] = {"locked": index in locked, "grade_id": f"cell{index}"}
        cells.append(cell)
    return nbformat.v4.new_notebook(cells=cells)


def test_scan_notebook_reports_cell_and_line_and_skips_trusted_cells(tmp_path):
    course_code = "from gdlib import grading\ngrading.protect('gdlib.losses')"
    answer = "def f(x):\n    return x\n\nnp.allclose = lambda *a: True"
    nb = notebook(course_code, answer, locked={0})
    released = tmp_path / "exercises" / "a" / "a.ipynb"
    released.parent.mkdir(parents=True)
    nbformat.write(notebook(course_code, "raise NotImplementedError()", locked={0}), released)
    trusted = course.locked_sources(tmp_path / "exercises")
    assert trusted == {course_code}
    (finding,) = course.scan_notebook(nb, trusted, "alice.ipynb")
    assert (finding.cell, finding.line) == (1, 4)
    assert str(finding) == ("alice.ipynb: cell 1, line 4: assigns an attribute of numpy: "
                            "np.allclose = lambda *a: True")
    # Without the course's sources, its own import of gdlib is a finding too.
    assert len(course.scan_notebook(nb)) == 2
    # During autograde, locked cells are trusted by grade_id.
    assert course.scan_notebook(nb, trusted_ids={"cell0", "cell1"}) == []


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
    "import numpy as np\n\nfrom gdlib import grading\ngrading.protect('gdlib.optim')",
    "SCORES = np.ones(3)\nLIMIT = 2\nSCORES",  # data for the tests (LIMIT: never read)
    (
        "from gdlib.grading import check_steps\n\n\ndef ravine(lr):\n    return lr\n\n\n"
        "hidden = [ravine(0.1), SCORES]\ncheck_steps(momentum_step, hidden)\n"
        "for seed in range(3):\n    check_steps(momentum_step, [seed])"
    ),
    "## a markdown heading that does not parse: = =",
]
NAMES = course.course_names(LOCKED)


def test_course_names_are_functions_imports_and_data_shared_between_cells():
    assert NAMES == {
        "np": frozenset({"numpy"}), "grading": frozenset({"gdlib.grading"}),
        "check_steps": frozenset({"gdlib.grading.check_steps"}), "ravine": frozenset({None}),
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
    reasons = [reason for _, reason in course.scan_source(source, names=NAMES)]
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
    assert course.scan_source(source, names=NAMES) == []


def test_scan_command_flags_rebinding_the_names_of_the_same_notebook_only(tmp_path, capsys):
    for kind, answer in (("exercises", "raise NotImplementedError()"),
                         ("solutions", "def momentum_step():\n    pass")):
        path = tmp_path / kind / "a" / "a.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(notebook(*LOCKED[:3], answer, locked={0, 1, 2}), path)
    assert course.locked_names(tmp_path / "exercises", tmp_path / "solutions") == {"a.ipynb": NAMES}
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
