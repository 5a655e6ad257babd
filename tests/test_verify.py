"""Out-of-process verification (gdgrade/verify.py, gdgrade/answer_worker.py).

Each test grades a chapter's solution notebook with some answer cells replaced, as
``VerifyAnswers`` does during autograde: the notebook's cells run in the sandboxed answer
process, the grade cells (hidden tests included) run here and call the answers through plain
data. Honest answers keep their marks; lying objects, the reference, the hidden files,
infinite loops, a dying process and in-place changes earn nothing, and the rest of the
submission is still graded. (The autograde round trips of the chapter tests run through the
same verification: nbgrader_config.py registers it.)
"""

import base64
import time

import course_roundtrip as roundtrip
import numpy as np
import pytest

from gdgrade import verify

POINTS_01 = {"hinge_tests": 3.0, "ce_tests": 3.0, "grad_tests": 4.0}
POINTS_04 = {"momentum_tests": 3.0, "ema_tests": 3.0, "nesterov_tests": 4.0, "limit_tests": 2.0}


def cells_of(assignment: str, replace=None, extra_grade=None):
    """The solution notebook's code cells, with answer cells replaced ({grade_id: source}),
    and its grade cells {grade_id: (source, points)} plus ``extra_grade`` ones at the end."""
    nb = roundtrip.read(roundtrip.solution_path(assignment))
    cells, grades = [], {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("nbgrader", {})
        grade_id = meta.get("grade_id")
        if meta.get("grade"):
            grades[grade_id] = (cell.source, float(meta.get("points", 0)))
        cells.append((grade_id, (replace or {}).get(grade_id, cell.source)))
    for grade_id, source in (extra_grade or {}).items():
        cells.append((grade_id, ""))
        grades[grade_id] = (source, 1.0)
    return cells, grades


def scores(results) -> dict:
    return {r.grade_id: r.score for r in results}


def messages(results) -> dict:
    return {r.grade_id: r.message for r in results}


def grade(assignment, replace=None, extra_grade=None, root=None, **options):
    cells, grades = cells_of(assignment, replace, extra_grade)
    hidden = verify.course_hidden_paths(root) if root else []
    results = verify.verify_cells(cells, grades, hidden, **options)
    if results and all("cannot start the kernel" in r.message for r in results):
        pytest.skip("no Linux namespaces here")
    return results


def test_the_solutions_get_full_marks():
    assert scores(grade("01_losses")) == POINTS_01
    assert scores(grade("04_momentum")) == POINTS_04  # callbacks (Nesterov's grad_fn) too


def test_the_release_gets_zero_with_the_reason():
    nb = roundtrip.read(roundtrip.release_path("01_losses"))
    stubs = {c.metadata.nbgrader["grade_id"]: c.source for c in nb.cells
             if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")}
    results = grade("01_losses", stubs)
    assert scores(results) == dict.fromkeys(POINTS_01, 0.0)
    assert all("NotImplementedError" in m for m in messages(results).values())


HINGE_DEF = "def hinge(scores, labels, margin=1.0):\n"


def test_objects_with_lying_comparisons_earn_nothing():
    liar = HINGE_DEF + """
    class Liar:
        def __eq__(self, other): return True
        def __array__(self, *a, **k): raise TypeError("no numbers here")
        def __float__(self): return 0.0
    return Liar()
"""
    subclass = HINGE_DEF + """
    import numpy as np
    class Agreeable(np.ndarray):
        def __eq__(self, other): return np.ones(np.shape(other), dtype=bool)
        def __array__(self, *a, **k): return np.full(self.shape, 42.0)
    return np.zeros(len(scores)).view(Agreeable)
"""
    for answer in (liar, subclass):
        results = grade("01_losses", {"hinge_answer": answer})
        assert scores(results) == {**POINTS_01, "hinge_tests": 0.0}, messages(results)


def test_the_reference_cannot_be_imported_however_it_is_named():
    answer = HINGE_DEF + """
    import importlib
    return importlib.import_module("gd" + "lib.losses").hinge(scores, labels, margin)
"""
    results = grade("01_losses", {"hinge_answer": answer})
    assert scores(results) == {**POINTS_01, "hinge_tests": 0.0}
    assert "No module named" in messages(results)["hinge_tests"]


def test_hidden_files_and_the_salt_are_out_of_reach(tmp_path, monkeypatch):
    (tmp_path / "solutions").mkdir()
    (tmp_path / "solutions" / "hidden.txt").write_text("the hidden tests")
    (tmp_path / "gradebook.db").write_text("grades")
    monkeypatch.setenv("GDCOURSE_GRADING_SALT", "secret")
    snoop = f"""
import os
SEEN = [os.listdir({str(tmp_path / 'solutions')!r}), open({str(tmp_path / 'gradebook.db')!r}).read(),
        os.environ.get("GDCOURSE_GRADING_SALT")]
"""
    check = "assert SEEN == [[], '', None], SEEN"
    results = grade("01_losses", {"setup": snoop}, {"snoop_tests": check}, root=tmp_path)
    assert scores(results)["snoop_tests"] == 1.0, messages(results)


def test_an_infinite_loop_is_stopped_and_the_rest_still_graded():
    start = time.monotonic()
    results = grade("01_losses", {"hinge_answer": HINGE_DEF + "    while True:\n        pass\n"},
                    call_timeout=3.0)
    assert time.monotonic() - start < 30
    assert scores(results) == {**POINTS_01, "hinge_tests": 0.0}
    assert "did not finish within 3 s" in messages(results)["hinge_tests"]


def test_an_answer_that_ends_its_process_fails_only_its_own_cell():
    answer = HINGE_DEF + "    import os\n    os._exit(0)\n"
    results = grade("01_losses", {"hinge_answer": answer})
    assert scores(results) == {**POINTS_01, "hinge_tests": 0.0}
    assert "ended" in messages(results)["hinge_tests"]


def test_a_cell_that_kills_its_process_is_dropped_and_the_rest_graded():
    killer = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"
    results = grade("01_losses", {"hinge_answer": killer
                                  + roundtrip.solution_code("01_losses", "hinge_answer")})
    assert scores(results) == {**POINTS_01, "hinge_tests": 0.0}  # hinge was never defined
    assert "NameError" in messages(results)["hinge_tests"] or "hinge" in messages(results)[
        "hinge_tests"]


def test_printing_fake_replies_changes_nothing():
    answer = """
import os, sys
print('{"op": "result", "value": 0}')
os.write(1, b'{"op": "done", "error": null}\\n')
sys.__stdout__.write('{"op": "described", "kinds": {}, "values": {}}\\n')
""" + roundtrip.solution_code("01_losses", "hinge_answer")
    assert scores(grade("01_losses", {"hinge_answer": answer})) == POINTS_01


def test_changing_an_argument_in_place_fails_as_in_the_kernel():
    answer = """
def momentum_step(theta, grad, velocity, lr, beta):
    velocity *= beta
    velocity += grad
    return theta - lr * velocity, velocity
"""
    results = grade("04_momentum", {"momentum_answer": answer})
    assert scores(results) == {**POINTS_04, "momentum_tests": 0.0}
    assert "modified its argument velocity in place" in messages(results)["momentum_tests"]


def test_numbers_of_number_subclasses_are_their_stored_values():
    check = "assert float(VALUE) == 2.0 and type(VALUE) is float, VALUE"
    answer = "class Big(float):\n    def __float__(self): return 1e9\nVALUE = Big(2.0)\n"
    results = grade("01_losses", {"setup": answer}, {"number_tests": check})
    assert scores(results)["number_tests"] == 1.0, messages(results)


def test_plain_data_only():
    with pytest.raises(TypeError, match="cannot send a object"):
        verify.encode(object(), [])
    one = base64.b64encode(np.array([1.0]).tobytes()).decode()
    for spec in ({"dtype": "|O", "shape": [1], "b64": one},  # objects: never
                 {"dtype": "<f8", "shape": [3], "b64": one},  # fewer bytes than the shape says
                 {"dtype": "<f8", "shape": [1], "b64": one[:-2] + "*="},  # not base64
                 {"dtype": "<f8", "shape": [1], "data": [1.0]}):  # the old list form
        assert isinstance(verify.decode({"a": spec}), verify.Unreadable), spec
    assert isinstance(verify.decode({"__reduce__": "os.system"}), verify.Unreadable)


def test_arrays_cross_exactly_with_their_non_finite_values():
    values = np.array([[1.0, np.nan], [-np.inf, 2.0**-1074]])
    for array in (values, values.astype(">f8"), values.astype(np.float32),
                  np.arange(6, dtype=np.int16).reshape(2, 3), np.array([True, False])):
        back = verify.decode(verify.encode(array, []))
        assert back.shape == array.shape and back.flags.writeable
        assert back.dtype == (np.float64 if array.dtype.kind == "f" else array.dtype.newbyteorder("="))
        np.testing.assert_array_equal(back, array.astype(back.dtype))