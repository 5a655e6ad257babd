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
