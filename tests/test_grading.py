"""Tests of gdlib.grading: feedback messages, detection of answers that use the reference, and
the integrity checks (patched numpy/builtins/gdlib, IPython hooks in a real kernel)."""

import builtins
import functools
import sys

import nbformat
import numpy as np
import pytest

from gdlib import grading, losses

SCORES = np.array([[0.49, 0.43, 0.08], [0.45, 0.53, 0.02], [0.21, 0.15, 0.64]])
LABELS = np.array([0, 1, 2])
EXAMPLE = [grading.case("the seed's example", SCORES, LABELS)]


@pytest.fixture(autouse=True)
def clean_integrity_state():
    """Each test starts and ends with no recorded tampering (the record is sticky)."""
    grading._TAMPERED.clear()
    yield
    grading._TAMPERED.clear()


def own_hinge(scores, labels):
    """A plain-numpy hinge loss, as a student would write it."""
    rows = np.arange(len(labels))
    violations = np.maximum(0.0, scores - scores[rows, labels][:, None] + 1.0)
    violations[rows, labels] = 0.0
    return violations.sum(axis=1)


def failure(fn, *args, **kwargs) -> str:
    with pytest.raises(grading.GradingError) as info:
        fn(*args, **kwargs)
    return str(info.value)


# --------------------------------------------------------------------------------------------
# check_array
# --------------------------------------------------------------------------------------------


def test_grading_error_is_an_assertion_error():
    assert issubclass(grading.GradingError, AssertionError)


def test_check_array_accepts_values_within_tolerance():
    grading.check_array("x", [1.0, 2.0 + 1e-12, np.inf], np.array([1.0, 2.0, np.inf]))
    grading.check_array("x", [1.53, 1.41], [1.531, 1.409], atol=0.005)
    grading.check_array("x", 3, 3.0)  # a scalar


def test_check_array_names_each_wrong_instance():
    message = failure(grading.check_array, "hinge", [1.53, 1.49, 1.08], [1.53, 1.41, 1.08],
                      axis_names=("instance",))
    assert message.startswith("hinge: 1 of 3 values wrong")
    assert "instance 1: expected 1.41, got 1.49" in message
    assert "instance 0" not in message and "instance 2" not in message


def test_check_array_names_both_indices_of_a_matrix_entry():
    expected = np.zeros((2, 3))
    got = expected.copy()
    got[1, 2] = 0.5
    message = failure(grading.check_array, "grad", got, expected, axis_names=("instance", "class"))
    assert "instance 1, class 2: expected 0, got 0.5" in message
    assert "index [1, 2]" in failure(grading.check_array, "grad", got, expected)


def test_check_array_reports_shape_with_the_hint():
    message = failure(grading.check_array, "hinge", np.ones((3, 3)), np.ones(3),
                      shape_hint="return one loss per instance")
    assert message == "hinge: expected shape (3,), got (3, 3): return one loss per instance"
    assert "got ()" in failure(grading.check_array, "hinge", 4.0, np.ones(3))


def test_check_array_explains_none_and_non_numbers():
    assert "forget `return`" in failure(grading.check_array, "hinge", None, np.ones(3))
    assert "expected real numbers" in failure(grading.check_array, "f", ["a", "b"], [1.0, 2.0])
    assert "expected real numbers" in failure(grading.check_array, "f", [1j, 2j], [1.0, 2.0])
    message = failure(grading.check_array, "f", [[1.0], [1.0, 2.0]], [1.0, 2.0])
    assert "cannot be read as an array" in message


def test_check_array_points_out_nan_and_infinity():
    message = failure(grading.check_array, "grad", [np.nan, 1.0], [0.5, 0.5])
    assert "expected 0.5, got nan" in message
    assert "NaN or infinity" in message and "overflow" in message


def test_check_array_detects_a_constant_factor_and_offset():
    expected = np.array([0.5, -1.0, 2.0])
    assert "-1 times the expected" in failure(grading.check_array, "ce", -expected, expected)
    assert "0.25 times the expected" in failure(grading.check_array, "g", expected / 4, expected)
    message = failure(grading.check_array, "hinge", expected + 1, expected)
    assert "off by the same amount, +1" in message
    message = failure(grading.check_array, "f", [0.5, 1.0, 7.0], expected)
    assert "times the expected" not in message and "same amount" not in message


def test_check_array_lists_a_limited_number_of_entries():
    message = failure(grading.check_array, "f", np.arange(10.0) ** 2, np.zeros(10), max_listed=3)
    assert "9 of 10 values wrong" in message
    assert message.count("expected 0, got") == 3 and "... and 6 more" in message


# --------------------------------------------------------------------------------------------
# check_function: feedback
# --------------------------------------------------------------------------------------------


def test_check_function_passes_a_correct_answer():
    cases = EXAMPLE + grading.random_cases(
        "random", lambda r, n, c: (r.normal(size=(n, c)), r.integers(0, c, n)), [(7, 4), (1, 2)])
    grading.check_function(own_hinge, losses.hinge, cases)
    assert sys.getprofile() is None  # the watch is removed afterwards


def test_check_function_names_the_case_and_the_wrong_instance():
    def off_by_one_instance(scores, labels):
        result = own_hinge(scores, labels)
        result[1] += 0.08
        return result

    message = failure(grading.check_function, off_by_one_instance, losses.hinge, EXAMPLE,
                      name="hinge", axis_names=("instance",))
    assert message.startswith("hinge on case \"the seed's example\": 1 of 3 values wrong")
    assert "instance 1: expected 1.41, got 1.49" in message


def test_check_function_reports_an_exception_of_the_answer():
    def broken(scores, labels):
        return scores[labels, 5]

    with pytest.raises(grading.GradingError) as info:
        grading.check_function(broken, losses.hinge, EXAMPLE)
    assert "broken on case \"the seed's example\" raised IndexError" in str(info.value)
    assert isinstance(info.value.__cause__, IndexError)  # the traceback shows the student's line


def test_check_function_lets_not_implemented_error_through():
    def unanswered(scores, labels):
        raise NotImplementedError()

    with pytest.raises(NotImplementedError):
        grading.check_function(unanswered, losses.hinge, EXAMPLE)


def test_check_function_rejects_an_answer_that_modifies_its_argument():
    def in_place(scores, labels):
        scores -= scores[np.arange(len(labels)), labels][:, None] - 1.0
        scores[np.arange(len(labels)), labels] = 0.0
        return np.maximum(scores, 0.0).sum(axis=1)

    scores = SCORES.copy()
    message = failure(grading.check_function, in_place, losses.hinge,
                      [grading.case("example", scores, LABELS)])
    assert "modified its argument scores in place" in message
    np.testing.assert_array_equal(scores, SCORES)  # the student got a copy


def test_random_cases_label_shape_and_seed():
    cases = grading.random_cases("normal", lambda r, n, c: (r.normal(size=(n, c)),),
                                 [(2, 3), (4, 1)], seed=10)
    assert [c.label for c in cases] == ["normal 2x3 (seed 10)", "normal 4x1 (seed 11)"]
    assert cases[1].args[0].shape == (4, 1)
    (scalar,) = grading.random_cases("beta", lambda r: (r.uniform(),), [()], seed=3)
    assert scalar.label == "beta (seed 3)"
    np.testing.assert_array_equal(cases[0].args[0], np.random.default_rng(10).normal(size=(2, 3)))


# --------------------------------------------------------------------------------------------
# check_function: answers that use the reference (attack ii)
# --------------------------------------------------------------------------------------------


def student_namespace(source: str) -> dict:
    """Run ``source`` as a notebook cell would (module __main__) and return its globals."""
    namespace = {"__name__": "__main__", "np": np}
    exec(compile(source, "<answer cell>", "exec"), namespace)  # noqa: S102 - a test answer
    return namespace


REFERENCE_USES = {
    "imported function": """
from gdlib.losses import hinge as reference
def hinge(scores, labels):
    return reference(scores, labels)
""",
    "module attribute": """
import gdlib
def hinge(scores, labels):
    return gdlib.losses.hinge(scores, labels)
""",
    "sys.modules with a module name": """
import sys
def hinge(scores, labels):
    return sys.modules["gdlib.losses"].hinge(scores, labels)
""",
    "closure": """
def make():
    from gdlib import losses
    def hinge(scores, labels):
        return losses.hinge(scores, labels)
    return hinge
hinge = make()
""",
    "default argument": """
from gdlib import losses
def hinge(scores, labels, _f=losses.hinge):
    return _f(scores, labels)
""",
    "helper function": """
from gdlib import losses as _l
def _helper(s, y):
    return _l.hinge(s, y)
def hinge(scores, labels):
    return _helper(scores, labels)
""",
    "partial": """
import functools
from gdlib.losses import hinge as _h
hinge = functools.partial(_h, margin=1.0)
""",
    "the reference itself": """
from gdlib.losses import hinge
""",
}


@pytest.mark.parametrize("variant", sorted(REFERENCE_USES))
def test_answers_that_use_the_reference_are_rejected(variant):
    hinge = student_namespace(REFERENCE_USES[variant])["hinge"]
    message = failure(grading.check_function, hinge, losses.hinge, EXAMPLE, name="hinge")
    assert message.startswith("hinge must compute its result itself")
    assert "gdlib" in message


def test_reference_reached_at_run_time_is_caught_by_the_profile_hook():
    namespace = student_namespace("""
import sys
def hinge(scores, labels):
    name = ".".join(["".join(["gd", "lib"]), "losses"])  # no constant names the module
    return getattr(sys.modules[name], "hin" + "ge")(scores, labels)
""")
    grading.check_own_code(namespace["hinge"])  # the static look sees nothing ...
    message = failure(grading.check_function, namespace["hinge"], losses.hinge, EXAMPLE)
    assert "it uses gdlib.losses.hinge." in message  # ... the hook sees the call (entry only)


def test_reference_called_from_a_thread_is_caught():
    namespace = student_namespace("""
import sys, threading
def hinge(scores, labels):
    box = []
    module = sys.modules[".".join(["".join(["gd", "lib"]), "losses"])]
    worker = threading.Thread(target=lambda: box.append(module.hinge(scores, labels)))
    worker.start()
    worker.join()
    return box[0]
""")
    message = failure(grading.check_function, namespace["hinge"], losses.hinge, EXAMPLE)
    assert "gdlib.losses.hinge" in message


def test_frame_inspection_is_rejected():
    def peeking(scores, labels):
        sys._getframe(1)
        return own_hinge(scores, labels)

    assert "sys._getframe" in failure(grading.check_function, peeking, losses.hinge, EXAMPLE)


def test_torch_is_rejected():
    torch = pytest.importorskip("torch")

    def with_torch(scores, labels):
        margins = torch.nn.functional.multi_margin_loss(
            torch.as_tensor(scores), torch.as_tensor(labels), reduction="none")
        return margins.numpy() * scores.shape[1]

    message = failure(grading.check_function, with_torch, losses.hinge, EXAMPLE)
    assert "module torch" in message


def test_numpy_and_own_helpers_are_allowed():
    namespace = student_namespace("""
import math
def _true_scores(scores, labels):
    return scores[np.arange(len(labels)), labels][:, None]
def hinge(scores, labels):
    '''Like torch's multi_margin_loss times C; see gdlib.losses.'''
    v = np.maximum(0.0, scores - _true_scores(scores, labels) + math.exp(0.0))
    v[np.arange(len(labels)), labels] = 0.0
    return v.sum(axis=1)
""")
    grading.check_function(namespace["hinge"], losses.hinge, EXAMPLE)
    grading.check_function(functools.partial(own_hinge), losses.hinge, EXAMPLE)


def test_a_reference_that_is_not_gdlibs_is_refused():
    message = failure(grading.check_function, own_hinge, own_hinge, EXAMPLE)
    assert "is not gdlib's own" in message


# --------------------------------------------------------------------------------------------
# Tampering with numpy, builtins and gdlib (attack i)
# --------------------------------------------------------------------------------------------


def test_replaced_numpy_comparisons_are_detected_restored_and_sticky(monkeypatch):
    genuine = np.allclose
    monkeypatch.setattr(np, "allclose", lambda *args, **kwargs: True)
    monkeypatch.setattr(np.testing, "assert_allclose", lambda *args, **kwargs: None)
    message = failure(grading.check_array, "hinge", [0.0, 0.0], [1.0, 2.0])
    assert "replaced numpy.allclose, numpy.testing.assert_allclose" in message
    assert np.allclose is genuine  # put back for the reference computations
    # Sticky: a later, correct check fails too.
    assert "grading integrity" in failure(grading.check_array, "x", [1.0], [1.0])


def test_wrong_values_fail_even_under_patched_comparisons(monkeypatch):
    """Comparisons use ndarray operators, which Python code cannot replace."""
    for name in ("allclose", "isclose", "array_equal", "all", "abs"):
        monkeypatch.setattr(np, name, lambda *args, **kwargs: True)
    grading._SNAPSHOTS.pop("numpy")  # as if grading had been imported after the patch
    try:
        message = failure(grading.check_array, "hinge", [0.0, 0.0], [1.0, 2.0])
        assert "2 of 2 values wrong" in message
    finally:
        monkeypatch.undo()
        grading._snapshot(np)


def test_replaced_builtins_are_detected(monkeypatch):
    monkeypatch.setattr(builtins, "abs", lambda x: 0)
    assert "builtins.abs" in failure(grading.check_array, "x", [1.0], [1.0])


def test_replaced_gdlib_helpers_are_detected(monkeypatch):
    grading.protect("gdlib.losses")
    monkeypatch.setattr(losses, "softmax", lambda logits: np.zeros_like(logits))
    message = failure(grading.check_function, own_hinge, losses.hinge, EXAMPLE)
    assert "gdlib.losses.softmax" in message


def test_rng_ignores_a_patched_numpy_random(monkeypatch):
    expected = np.random.default_rng(3).normal(size=4)
    monkeypatch.setattr(np.random, "default_rng", lambda seed=None: None)
    np.testing.assert_array_equal(grading.rng(3).normal(size=4), expected)


def test_reset_kernel_hooks_is_harmless_outside_ipython():
    trace = sys.gettrace()
    grading.reset_kernel_hooks()
    assert sys.gettrace() is trace


# --------------------------------------------------------------------------------------------
# In a real kernel: IPython hooks (attack v) and no false alarms
# --------------------------------------------------------------------------------------------


def run_cells(sources, tmp_path) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    NotebookClient(nb, timeout=60, allow_errors=True, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb


def error_names(cell) -> list:
    return [o.ename for o in cell.outputs if o.output_type == "error"]


@pytest.mark.slow
def test_kernel_hooks_are_reset_by_the_checks(tmp_path):
    nb = run_cells([
        "import numpy as np\nfrom gdlib import grading\ngrading.protect('gdlib.losses')",
        # An answer cell that hides every later error and records every later cell.
        (
            "import ast\n"
            "class Spy(ast.NodeTransformer):\n    pass\n"
            "ip = get_ipython()\n"
            "ip.set_custom_exc((Exception,), lambda *args, **kwargs: None)\n"
            "ip.ast_transformers.append(Spy())\n"
            "ip.events.register('post_run_cell', lambda result: None)\n"
            "ip.showtraceback = lambda *args, **kwargs: None"
        ),
        # A test cell: the failure must be displayed as an error again.
        "grading.check_array('hinge', [0.0], [1.53])",
        (
            "ip = get_ipython()\n"
            "print(ip.custom_exceptions, ip.ast_transformers, 'showtraceback' in vars(ip),\n"
            "      [c for c in ip.events.callbacks['post_run_cell'] if c.__module__ == '__main__'])"
        ),
        # Cells run normally afterwards: no false alarm of tampering.
        (
            "x = np.arange(3)\n_ = x.sum()\nexit\n"
            "grading.check_array('x', x, [0.0, 1.0, 2.0]); print('fine')"
        ),
    ], tmp_path)
    assert error_names(nb.cells[2]) == ["GradingError"]
    assert nb.cells[3].outputs[0].text == "() [] False []\n"
    assert nb.cells[4].outputs[-1].text == "fine\n"
