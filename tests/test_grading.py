"""Tests of gdgrade.grading: feedback messages, detection of answers that use the reference, and
the integrity checks (patched numpy/builtins/gdlib, IPython hooks in a real kernel)."""

import ast
import builtins
import functools
import hashlib
import json
import os
import pydoc
import re
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import numpy as np
import pytest

from gdgrade import grading
from gdlib import losses, optim

SCORES = np.array([[0.49, 0.43, 0.08], [0.45, 0.53, 0.02], [0.21, 0.15, 0.64]])
LABELS = np.array([0, 1, 2])
EXAMPLE = [grading.case("the seed's example", SCORES, LABELS)]


def internal(name: str, module=grading):
    """A module's attribute read as gdgrade.grading's own functions read it: not through the
    guard, which records reads of private names (and of ``__dict__``) by code outside gdlib --
    this file included."""
    return types.ModuleType.__getattribute__(module, name)


def forget_tampering() -> None:
    internal("_TAMPERED").clear()
    for guard in internal("_GUARDS"):
        guard.records.clear()


@pytest.fixture(autouse=True)
def clean_integrity_state():
    """Each test starts and ends with no recorded tampering (the record is sticky)."""
    forget_tampering()
    yield
    forget_tampering()


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


def test_no_factor_or_offset_hint_for_a_single_value():
    """Any wrong number is some factor times (and some amount off) the right one."""
    for got, expected in ((0.7, 1.0), ([1.5], [1.0]), (np.array(-2.0), np.array(2.0))):
        message = failure(grading.check_array, "window", got, expected)
        assert "1 of 1 values wrong" in message
        assert "  the value: expected" in message or "  index [0]: expected" in message
        assert "times the expected" not in message and "same amount" not in message
    assert "-1 times the expected" in failure(grading.check_array, "x", [-1.0, -2.0], [1.0, 2.0])


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


def test_check_examples_compares_with_worked_numbers_and_names_the_argument_changed():
    """The visible tests' entry: expected values written in the test, no reference called."""
    worked = [(grading.case("the seed's example", SCORES, LABELS), [1.53, 1.41, 1.08])]  # by hand
    grading.check_examples(own_hinge, worked, ("scores", "labels"))
    message = failure(grading.check_examples, lambda s, y: own_hinge(s, y) * 2, worked,
                      ("scores", "labels"), name="hinge", axis_names=("instance",))
    assert message.startswith("hinge on case \"the seed's example\": 3 of 3 values wrong")

    def in_place(scores, labels):
        scores[0, 0] = 99.0
        return own_hinge(scores, labels)

    message = failure(grading.check_examples, in_place, worked, ("scores", "labels"))
    assert "modified its argument scores in place" in message


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
    assert "module torch (torch.nn.functional.multi_margin_loss, torch.as_tensor)" in message


def test_the_message_names_the_foreign_object_not_a_global_of_the_same_name():
    """``torch.optim.SGD`` reads the attribute ``optim`` of torch, not the notebook's global
    ``optim`` (here gdlib.optim, as a locked cell could bind it)."""
    pytest.importorskip("torch")
    namespace = student_namespace("""
import torch
from gdlib import optim
def momentum_step(theta, grad, velocity, lr, beta):
    p = torch.tensor(theta, requires_grad=True)
    rule = torch.optim.SGD([p], lr=lr, momentum=beta)
    return p, rule
""")
    message = failure(grading.check_own_code, namespace["momentum_step"])
    assert "it uses module torch (torch.tensor, torch.optim.SGD)." in message
    assert "gdlib" not in message.split(". Answers")[0]


def test_attribute_names_are_not_global_reads():
    namespace = student_namespace("""
from gdlib import losses, optim
def hinge(scores, labels):
    return scores.losses if labels.optim else scores
""")
    grading.check_own_code(namespace["hinge"])  # no gdlib object is read


def test_imports_inside_the_answer_are_seen_without_running_it():
    namespace = student_namespace("""
def hinge(scores, labels):
    from gdlib import losses, optim
    return losses.hinge(scores, labels)
def ce(probs, targets):
    import gdlib.losses as L
    from numpy import log
    return L.cross_entropy(probs, targets)
""")
    message = failure(grading.check_own_code, namespace["hinge"])
    assert "it uses an import of gdlib (gdlib.losses, gdlib.optim)." in message
    assert "it uses an import of gdlib.losses." in failure(grading.check_own_code, namespace["ce"])


def test_objects_reached_through_a_harmless_module_are_named():
    namespace = student_namespace("""
import types
box = types.SimpleNamespace()
def hinge(scores, labels):
    return types.reference(scores, labels)
""")
    types.reference = losses.hinge  # as an answer could stash it on a module numpy trusts
    try:
        message = failure(grading.check_own_code, namespace["hinge"])
    finally:
        del types.reference
    assert "it uses gdlib.losses.hinge (types.reference)." in message


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
    internal("_SNAPSHOTS").pop("numpy")  # as if grading had been imported after the patch
    try:
        message = failure(grading.check_array, "hinge", [0.0, 0.0], [1.0, 2.0])
        assert "2 of 2 values wrong" in message
    finally:
        monkeypatch.undo()
        internal("_snapshot")(np)


def test_replaced_builtins_are_detected(monkeypatch):
    monkeypatch.setattr(builtins, "abs", lambda x: 0)
    assert "builtins.abs" in failure(grading.check_array, "x", [1.0], [1.0])


def test_replaced_gdlib_helpers_are_detected(monkeypatch):
    grading.protect("gdlib.losses")
    monkeypatch.setattr(losses, "softmax", lambda logits: np.zeros_like(logits))
    message = failure(grading.check_function, own_hinge, losses.hinge, EXAMPLE)
    assert "gdlib.losses.softmax" in message


_STEP_AFTER_THE_SNAPSHOT = """
import torch
from gdgrade import grading
from gdlib import optim
from gdlib import torch as gdtorch
grading.protect("gdlib.torch")
param = torch.nn.Parameter(torch.ones(3))
param.grad = torch.ones(3)
gdtorch.Optimizer([param], optim.Adam(0.1)).step()
grading.require_untampered()
print("untampered")
"""


def test_gdlib_working_normally_is_not_tampering():
    """CI failure of stop 18: the eager adapter set a module global (whether the C allocator
    was tuned) at its first step; a grader snapshot taken before that step read the change as
    an answer's tampering and gave 0 to every cell graded afterwards in that process. A fresh
    process, so the snapshot surely comes before the first step."""
    done = subprocess.run([sys.executable, "-c", _STEP_AFTER_THE_SNAPSHOT], capture_output=True,
                          text=True, cwd=os.getcwd(), check=False)
    assert done.returncode == 0 and done.stdout.split() == ["untampered"], done.stderr[-2000:]


def _rebound_globals(path):
    """``(line, names)`` of each ``global`` statement in a module's source."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(node.lineno, node.names) for node in ast.walk(tree) if isinstance(node, ast.Global)]


def test_no_gdlib_or_grader_module_rebinds_its_globals():
    """The integrity check compares every attribute of gdlib's and gdgrade's modules with its
    value at import, so state that changes at run time lives inside an object (a cache, a
    dict), never in a rebound global. The answer worker runs as a script, not a module."""
    root = Path(__file__).resolve().parents[1]
    found = {str(path.relative_to(root)): rebound
             for package in ("gdlib", "gdgrade") for path in sorted((root / package).glob("*.py"))
             if path.name != "answer_worker.py" and (rebound := _rebound_globals(path))}
    assert not found, found


def test_rng_ignores_a_patched_numpy_random(monkeypatch):
    expected = np.random.default_rng(3).normal(size=4)
    monkeypatch.setattr(np.random, "default_rng", lambda seed=None: None)
    np.testing.assert_array_equal(grading.rng(3).normal(size=4), expected)


def draws_in_a_new_process(salt: str | None) -> dict:
    """What a fresh interpreter's gdgrade.grading draws, with the salt variable set to ``salt``
    (None: unset) before the import: ``rng(3)``, and the b of ``random_quadratics(7)``."""
    env = {k: v for k, v in os.environ.items() if k != grading.SALT_VARIABLE}
    if salt is not None:
        env[grading.SALT_VARIABLE] = salt
    code = ("import json\nfrom gdgrade import grading\n"
            "print(json.dumps({'rng': grading.rng(3).normal(size=4).tolist(),\n"
            "                  'b': grading.random_quadratics(7, count=2)[1].b.tolist()}))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True)
    return {key: np.array(value) for key, value in json.loads(done.stdout).items()}


def test_without_a_salt_rng_is_numpys_default_rng():
    assert grading.SALT_VARIABLE not in os.environ, "run the tests without a grading salt"
    for salt in (None, ""):  # unset, or set to nothing
        drawn = draws_in_a_new_process(salt)
        np.testing.assert_array_equal(drawn["rng"], np.random.default_rng(3).normal(size=4))
        np.testing.assert_array_equal(drawn["b"], grading.random_quadratics(7, count=2)[1].b)


def test_a_salt_mixes_into_every_hidden_input():
    salt = "the instructor's secret"
    number = int.from_bytes(hashlib.sha256(salt.encode()).digest()[:8], "little")
    drawn = draws_in_a_new_process(salt)
    np.testing.assert_array_equal(drawn["rng"], np.random.default_rng([3, number]).normal(size=4))
    assert not np.allclose(drawn["rng"], np.random.default_rng(3).normal(size=4))
    assert not np.allclose(drawn["b"], grading.random_quadratics(7, count=2)[1].b)
    assert not np.allclose(draws_in_a_new_process("another secret")["rng"], drawn["rng"])


def test_the_salt_is_read_once_at_import(monkeypatch):
    before = grading.rng(3).normal(size=4)
    monkeypatch.setenv(grading.SALT_VARIABLE, "set later, e.g. by an answer cell")
    np.testing.assert_array_equal(grading.rng(3).normal(size=4), before)


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
        "import numpy as np\nfrom gdgrade import grading\ngrading.protect('gdlib.losses')",
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


# --------------------------------------------------------------------------------------------
# call_answer
# --------------------------------------------------------------------------------------------


def momentum_args(theta=(1.0, -2.0), grad=(0.5, 4.0), velocity=(0.2, 0.0)):
    return (np.array(theta), np.array(grad), np.array(velocity), 0.1, 0.9)


NAMES = ("theta", "grad", "velocity", "lr", "beta")
PAIR = ("new_theta", "new_velocity")


def own_momentum(theta, grad, velocity, lr, beta):
    new_velocity = beta * velocity + grad
    return theta - lr * new_velocity, new_velocity


def test_call_answer_returns_the_values_as_float_arrays():
    theta, velocity = grading.call_answer(own_momentum, momentum_args(), NAMES, "step",
                                          returns=PAIR)
    # v = 0.9 (0.2, 0) + (0.5, 4) = (0.68, 4); theta = (1, -2) - 0.1 v = (0.932, -2.4).
    np.testing.assert_allclose(velocity, [0.68, 4.0], rtol=1e-15)
    np.testing.assert_allclose(theta, [0.932, -2.4], rtol=1e-15)
    assert theta.dtype == np.float64
    one = grading.call_answer(lambda x: [1, 2], ([0.0],))  # without returns: the whole result
    assert isinstance(one, np.ndarray) and one.dtype == np.float64


def test_call_answer_requires_the_tuple_returns_names():
    def theta_only(theta, grad, velocity, lr, beta):
        return theta - lr * grad

    message = failure(grading.call_answer, theta_only, momentum_args(), NAMES, "step 1",
                      returns=PAIR)
    assert message == ("step 1: return the 2 values (new_theta, new_velocity) as a tuple, got "
                       "ndarray")
    message = failure(grading.call_answer, lambda *a: (1, 2, 3), momentum_args(), NAMES, "s",
                      returns=PAIR)
    assert "got a tuple of 3 values" in message


def test_call_answer_gives_copies_and_names_a_modified_argument():
    def in_place(theta, grad, velocity, lr, beta):
        velocity *= beta
        velocity += grad
        return theta - lr * velocity, velocity

    args = momentum_args()
    message = failure(grading.call_answer, in_place, args, NAMES, "step 3", returns=PAIR)
    assert message.startswith("step 3 modified its argument velocity in place")
    np.testing.assert_array_equal(args[2], [0.2, 0.0])  # the caller's array is untouched
    message = failure(grading.call_answer, lambda x, y=None: y.fill(0), (1.0,),
                      kwargs={"y": np.ones(2)})
    assert "modified its argument y in place" in message


def test_call_answer_reports_exceptions_and_lets_unanswered_through():
    def broken(theta, grad, velocity, lr, beta):
        return theta[5], velocity

    with pytest.raises(grading.GradingError) as info:
        grading.call_answer(broken, momentum_args(), NAMES, "step 1", returns=PAIR)
    assert str(info.value).startswith("step 1 raised IndexError")
    assert isinstance(info.value.__cause__, IndexError)

    def unanswered(*args):
        raise NotImplementedError()

    with pytest.raises(NotImplementedError):
        grading.call_answer(unanswered, momentum_args(), NAMES, "step 1")


def test_call_answer_watches_the_answer_for_gdlib():
    namespace = student_namespace("""
import sys
def momentum_step(theta, grad, velocity, lr, beta):
    module = sys.modules[".".join(["".join(["gd", "lib"]), "optim"])]
    rule = getattr(module, "".join(["Mom", "entum"]))(lr, beta)
    new_theta, state = rule.step(theta, grad, getattr(module, "MomentumState")(0, velocity))
    return new_theta, state.velocity
""")
    grading.check_own_code(namespace["momentum_step"])  # the static look sees nothing
    message = failure(grading.call_answer, namespace["momentum_step"], momentum_args(), NAMES,
                      returns=PAIR)
    assert message.startswith("momentum_step must compute its result itself")
    assert "gdlib.optim.step" in message
    static = student_namespace("from gdlib import optim\ndef f(x):\n    return optim.GD(x)")
    assert "module gdlib.optim" in failure(grading.call_answer, static["f"], (0.1,))


def test_call_answer_trusts_the_tests_callbacks_only():
    from gdlib import functions

    def grad_fn(point):  # the test's callback runs gdlib code: 0.1 theta1^2 + 2 theta2^2
        return functions.RAVINE.grad(point)

    def step(theta, grad_fn, lr):
        return theta - lr * grad_fn(theta)

    args = (np.ones(2), grad_fn, 0.1)
    np.testing.assert_allclose(grading.call_answer(step, args, trusted=(grad_fn,)), [0.98, 0.6])
    message = failure(grading.call_answer, step, args)  # not trusted: gdlib code ran
    assert "gdlib.functions" in message


# --------------------------------------------------------------------------------------------
# Step rules: QuadraticProblem, random_quadratics, check_steps, run_steps
# --------------------------------------------------------------------------------------------


def ravine(lr=0.4, beta=0.5):
    """The book's worked example: 0.1 theta_1^2 + 2 theta_2^2 from (-5, -2) at rest."""
    return grading.QuadraticProblem(f"the ravine (lr={lr}, beta={beta})", np.diag([0.2, 4.0]),
                                    np.zeros(2), (np.array([-5.0, -2.0]), np.zeros(2)), lr, 3,
                                    {"beta": beta})


def momentum_reference(problem, values):
    theta, velocity = values
    new_theta, state = optim.Momentum(problem.lr, problem.beta).step(
        theta, problem.grad(theta), optim.MomentumState(0, velocity))
    return new_theta, state.velocity


def with_gradient(fn, problem, values, where):
    theta, velocity = values
    return grading.call_answer(fn, (theta, problem.grad(theta), velocity, problem.lr,
                                    problem.beta), NAMES, where, returns=PAIR)


STEPS = {"call": with_gradient, "state": ("theta", "velocity")}


def test_quadratic_problem_gradient_and_hyper_parameters():
    problem = ravine()
    np.testing.assert_array_equal(problem.grad(np.array([-5.0, -2.0])), [-1.0, -8.0])
    assert problem.beta == 0.5 and problem.lr == 0.4 and problem.steps == 3
    with pytest.raises(AttributeError, match="has no attribute 'gamma' .hyper-parameters: beta"):
        _ = problem.gamma
    plain = grading.QuadraticProblem("p", np.eye(1), np.zeros(1), (np.zeros(1),), 0.1, 1)
    assert dict(plain.hyper) == {}


def test_random_quadratics_are_convex_with_a_stable_learning_rate():
    def hyper(r, i):
        return {"beta": float(r.uniform(0.0, 0.99)) if i else 0.0}

    def state(r, i, theta0):
        return (r.normal(size=theta0.shape) if i % 2 else np.zeros_like(theta0),)

    problems = grading.random_quadratics(50, count=6, steps=7, hyper=hyper, state=state)
    assert [p.A.shape[0] for p in problems] == [1, 2, 5, 20, 1, 2]
    for i, p in enumerate(problems):
        curvatures = np.linalg.eigvalsh(p.A)
        np.testing.assert_allclose(p.A, p.A.T, atol=1e-12)
        assert curvatures.min() > 0 and curvatures.max() / curvatures.min() <= 20 + 1e-9
        assert 0.05 - 1e-9 <= p.lr * curvatures.max() <= 0.95 + 1e-9
        assert p.steps == 7 and len(p.start) == 2 and p.start[1].shape == p.b.shape
        assert (p.beta == 0.0) == (i == 0) and (not p.start[1].any()) == (i % 2 == 0)
        assert p.label == (f"random quadratic, {p.b.size} coordinates, lr={p.lr:.3g}, "
                           f"beta={p.beta:.3g} (seed {50 + i})")
    again = grading.random_quadratics(50, count=6, steps=7, hyper=hyper, state=state)
    np.testing.assert_array_equal(again[3].A, problems[3].A)
    assert grading.random_quadratics(51, count=1)[0].lr != problems[1].lr
    assert len(grading.random_quadratics(0, count=2)[0].start) == 1  # theta0 alone


def test_random_quadratics_refuse_a_patched_numpy(monkeypatch):
    expected = grading.random_quadratics(7, count=2)
    genuine = np.random.default_rng
    monkeypatch.setattr(np.random, "default_rng", lambda seed=None: None)
    message = failure(grading.random_quadratics, 7, count=2)
    assert "replaced numpy.random.default_rng" in message
    assert np.random.default_rng is genuine  # put back: the inputs are drawn as without it
    forget_tampering()
    np.testing.assert_array_equal(grading.random_quadratics(7, count=2)[1].A, expected[1].A)


def test_check_steps_passes_a_correct_rule_and_run_steps_follows_the_table():
    problems = [ravine(), ravine(0.4, 0.9)]
    problems += grading.random_quadratics(
        4100, count=4, steps=30, hyper=lambda r, i: {"beta": float(r.uniform(0, 0.99))},
        state=lambda r, i, theta0: (r.normal(size=theta0.shape),))
    grading.check_steps(own_momentum, momentum_reference, problems, **STEPS)
    theta, velocity = grading.run_steps(own_momentum, ravine(), **STEPS)
    # The book's table for lr = 0.4, beta = 0.5 after 3 steps (worked by hand there).
    np.testing.assert_allclose(theta, [-3.42544, -0.688], rtol=1e-12)
    np.testing.assert_allclose(velocity, [-1.5164, 3.92], rtol=1e-12)


def test_check_steps_names_the_step_value_and_coordinate():
    def late_mistake(theta, grad, velocity, lr, beta):
        new_velocity = beta * velocity + grad
        if np.any(velocity != 0):  # right at step 1 (v = 0), wrong afterwards
            new_velocity = velocity + grad
        return theta - lr * new_velocity, new_velocity

    message = failure(grading.check_steps, late_mistake, momentum_reference, [ravine()],
                      **STEPS)
    assert message.startswith("late_mistake, the ravine (lr=0.4, beta=0.5), step 2: new theta:")
    # Step 2 from the reference's step 1 (theta (-4.6, 1.2), v (-1, -8)): expected theta
    # (-4.032, 0.88); with v + grad, theta = (-4.6, 1.2) - 0.4 (-1.92, -3.2) = (-3.832, 2.48).
    assert "coordinate 0: expected -4.032, got -3.832" in message
    assert "hint" not in message


def test_check_steps_hints_need_every_predicted_value_to_match():
    def ema_instead(theta, grad, velocity, lr, beta):
        new_velocity = beta * velocity + (1 - beta) * grad
        return theta - lr * new_velocity, new_velocity

    def ema_form(p, values):
        new_velocity = p.beta * values[1] + (1 - p.beta) * p.grad(values[0])
        return values[0] - p.lr * new_velocity, new_velocity

    hints = [
        ("theta only, not this one", lambda p, values: (values[0], None)),
        ("velocity right but theta not", lambda p, values: (values[0] * 0, ema_form(p, values)[1])),
        ("a hint that raises is skipped", lambda p, values: 1 / 0),
        ("the moving-average form", ema_form),
        ("a later match is not shown", ema_form),
    ]
    message = failure(grading.check_steps, ema_instead, momentum_reference, [ravine()],
                      hints=hints, **STEPS)
    assert message.endswith("\n  hint: the moving-average form")

    # A mistake that predicts theta only cannot explain a wrong velocity.
    def double_velocity(theta, grad, velocity, lr, beta):
        new_theta, new_velocity = own_momentum(theta, grad, velocity, lr, beta)
        return new_theta, 2 * new_velocity

    only_theta = [("theta only", lambda p, values: (momentum_reference(p, values)[0], None))]
    message = failure(grading.check_steps, double_velocity, momentum_reference, [ravine()],
                      hints=only_theta, **STEPS)
    assert "step 1: new velocity" in message and "hint" not in message


def test_check_steps_rejects_answers_that_use_gdlib_and_wrong_return_values():
    namespace = student_namespace("""
from gdlib.optim import Momentum, MomentumState
def momentum_step(theta, grad, velocity, lr, beta):
    new_theta, state = Momentum(lr, beta).step(theta, grad, MomentumState(0, velocity))
    return new_theta, state.velocity
""")
    message = failure(grading.check_steps, namespace["momentum_step"], momentum_reference,
                      [ravine()], **STEPS)
    assert "gdlib.optim.Momentum" in message

    def no_pair(fn, problem, values, where):  # a call that does not check the result itself
        return fn(*values)

    message = failure(grading.check_steps, lambda theta, velocity: theta, momentum_reference,
                      [ravine()], call=no_pair, state=("theta", "velocity"))
    assert message.endswith("return the 2 values (new_theta, new_velocity) as a tuple, got "
                            "ndarray")


def test_check_steps_with_one_carried_value():
    problem = grading.QuadraticProblem("gd", np.diag([1.0, 2.0]), np.ones(2),
                                       (np.array([3.0, -1.0]),), 0.2, 5)

    def gd_reference(problem, values):
        return values[0] - problem.lr * problem.grad(values[0])

    def call(fn, problem, values, where):
        return grading.call_answer(fn, (values[0], problem.grad(values[0]), problem.lr),
                                   ("theta", "grad", "lr"), where)

    grading.check_steps(lambda t, g, lr: t - lr * g, gd_reference, [problem], call=call,
                        state=("theta",))
    message = failure(grading.check_steps, lambda t, g, lr: t + lr * g, gd_reference, [problem],
                      call=call, state=("theta",), name="gd_step")
    assert message.startswith("gd_step, gd, step 1: new theta")
    (theta,) = grading.run_steps(lambda t, g, lr: t - lr * g, problem, call=call,
                                 state=("theta",))
    # theta_k - 1/d = (1 - lr d)^k (theta_0 - 1/d) per coordinate (d = 1, 2; minimum b / d).
    np.testing.assert_allclose(theta, [1 + 0.8 ** 5 * 2, 0.5 + 0.6 ** 5 * -1.5], rtol=1e-12)


def test_check_array_hints():
    hints = [("not this", [0.0, 0.0]), ("the sign is wrong", [-1.0, -2.0])]
    message = failure(grading.check_array, "x", [-1.0, -2.0], [1.0, 2.0], hints=hints)
    assert message.endswith("\n  hint: the sign is wrong")
    assert "hint" not in failure(grading.check_array, "x", [3.0, 2.0], [1.0, 2.0], hints=hints)
    message = failure(grading.check_array, "x", [0.0, 0.0, 0.0], [1.0, 2.0],
                      hints=[("one value too many", [0.0, 0.0, 0.0])])
    assert "expected shape (2,), got (3,)" in message and "one value too many" in message


# --------------------------------------------------------------------------------------------
# The guarded gdgrade.grading (attack 2)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def guarded():
    grading.protect("gdlib.optim", "gdgrade.grading")
    namespace = internal("__dict__")
    saved, snapshots = dict(namespace), dict(internal("_SNAPSHOTS"))
    yield namespace
    namespace.update(saved)  # whatever a test replaced
    internal("_SNAPSHOTS").update(snapshots)  # whatever a test cleared


def test_protect_guards_the_grading_module(guarded):
    assert type(sys.modules["gdgrade.grading"]).__name__ == "GuardedModule"
    genuine = grading.check_steps
    guarded["check_steps"] = lambda *args, **kwargs: None  # as vars(grading)[...] = ... would
    from gdgrade.grading import check_steps  # the import reads through the guard ...

    assert check_steps is genuine  # ... which puts the real function back
    assert "replaced gdgrade.grading.check_steps" in failure(grading.check_array, "x", [1.0], [1.0])


def test_replacing_every_check_of_the_grader_does_not_help(guarded, monkeypatch):
    for name in ("check_steps", "check_array", "require_untampered", "_start_check"):
        monkeypatch.setattr(grading, name, lambda *args, **kwargs: None)
    message = failure(grading.check_array, "x", [0.0], [1.0])
    assert "gdgrade.grading._start_check" in message and "gdgrade.grading.check_array" in message
    assert "gdgrade.grading.require_untampered" in message


def test_removing_the_guard_is_detected(guarded):
    module = sys.modules["gdgrade.grading"]
    guard = type(module)
    module.__class__ = type(sys)  # a plain module again
    message = failure(grading.check_array, "x", [1.0], [1.0])
    assert "the guard of gdgrade.grading" in message
    assert type(module) is guard


def test_replacing_the_grading_module_in_the_package_is_detected(guarded):
    import gdgrade

    genuine = sys.modules["gdgrade.grading"]
    internal("__dict__", gdgrade)["grading"] = types.SimpleNamespace(
        check_function=lambda *args, **kwargs: None)
    # The package's guard puts the real module back before the import reads it.
    from gdgrade import grading as imported

    assert imported is genuine
    assert "replaced gdgrade.grading" in failure(grading.check_array, "x", [1.0], [1.0])


# --------------------------------------------------------------------------------------------
# The review's attacks on the grader's namespace, as an answer cell and a grade cell run them
# --------------------------------------------------------------------------------------------

NO_OP = "lambda *a, **k: None"
HARD_CODED = "def hinge(scores, labels):\n    return np.array([1.53, 1.41, 1.08])\n"
GRADE_CELL = """
from gdgrade import grading
from gdlib.losses import hinge as reference_hinge

grading.check_function(hinge, reference_hinge, [grading.case("example", SCORES, LABELS)])
"""
STEALTH = (f"grading._SNAPSHOTS.clear()\n"
           f"vars(grading).update(check_function={NO_OP}, check_array={NO_OP},\n"
           f"                     check_own_code={NO_OP})\n")
ATTACKS = {  # answer cell prefix: what the failure names
    "stealth (review's s12)": (
        STEALTH,
        [("replaced gdgrade.grading.check_array, gdgrade.grading.check_function, "
          "gdgrade.grading.check_own_code"), "gdgrade.grading._SNAPSHOTS"]),
    "stealth, then the record cleared": (
        STEALTH + "grading._TAMPERED.clear()\n",
        ["gdgrade.grading._SNAPSHOTS", "gdgrade.grading._TAMPERED", "gdgrade.grading.__dict__"]),
    "snapshots cleared only": (
        "grading._SNAPSHOTS.clear()\n",
        ["reached the grader's internals (gdgrade.grading._SNAPSHOTS)"]),
    "an alias": (
        f"g = grading\ng.check_function = {NO_OP}\ng.check_own_code = {NO_OP}\n",
        ["replaced gdgrade.grading.check_function, gdgrade.grading.check_own_code"]),
    "the module's __dict__": (
        f"import gdgrade.grading as G\nG.__dict__['check_function'] = {NO_OP}\n",
        ["replaced gdgrade.grading.check_function",
         "reached the grader's internals (gdgrade.grading.__dict__)"]),
    "setattr through getattr": (
        f"import gdgrade\nsetattr(getattr(gdgrade, 'grad' + 'ing'), 'check_function', {NO_OP})\n",
        ["replaced gdgrade.grading.check_function"]),
    "a private name imported": (
        "from gdgrade.grading import _TAMPERED\n_TAMPERED.clear()\n",
        ["gdgrade.grading._TAMPERED"]),
}


def answer_then_grade(answer: str) -> None:
    """Run an answer cell, then the grade cell, in one notebook namespace (after ``protect``)."""
    namespace = student_namespace(f"from gdgrade import grading\nSCORES, LABELS = None, None\n"
                                  f"{answer}")
    namespace.update(SCORES=SCORES, LABELS=LABELS)
    exec(compile(GRADE_CELL, "<grade cell>", "exec"), namespace)  # noqa: S102 - the test


def test_the_hard_coded_answer_passes_the_example_without_an_attack(guarded):
    answer_then_grade(HARD_CODED)  # (so a failure below is the attack's, not the answer's)


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attacks_on_the_graders_namespace_fail_the_grade_cell(guarded, attack):
    prefix, named = ATTACKS[attack]
    message = failure(answer_then_grade, prefix + HARD_CODED)
    assert message.startswith("grading integrity: code in this notebook"), message
    for text in named:
        assert text in message, (text, message)
    # Sticky, and out of reach of the namespace: clearing the public record changes nothing.
    internal("_TAMPERED").clear()
    assert "grading integrity" in failure(grading.check_array, "x", [1.0], [1.0])


def test_reading_private_names_from_outside_is_recorded_once_guarded(guarded):
    assert internal("_TAMPERED") == []
    _ = grading._GUARDS  # from this file: not gdlib's code
    message = failure(grading.check_array, "x", [1.0], [1.0])
    assert "reached the grader's internals (gdgrade.grading._GUARDS)" in message


def test_dir_help_and_the_public_names_are_not_tampering(guarded):
    assert "check_function" in dir(grading) and "_SNAPSHOTS" in dir(grading)
    assert "check_steps" in pydoc.render_doc(grading)  # pydoc reads everything (stdlib code)
    import gdlib

    assert "optim" in dir(gdlib) and "grading" not in dir(gdlib)  # the grader is gdgrade
    _ = grading.check_array, grading.GradingError, grading.FORBIDDEN_PACKAGES
    grading.check_array("x", [1.0], [1.0])
    assert internal("_TAMPERED") == []


@pytest.mark.slow
def test_tracebacks_show_the_test_line_and_the_message(tmp_path):
    """IPython leaves out the frames of gdgrade.grading that set __tracebackhide__ (all but the
    one that raised, _fail): the student sees the test cell's line, their own line, and the
    message."""
    nb = run_cells([
        "import numpy as np\nfrom gdgrade import grading\ngrading.protect('gdlib.losses')",
        "def broken(scores, labels):\n    return scores[labels, 5]",
        ("from gdgrade import grading\nfrom gdlib.losses import hinge\n"
         "grading.check_function(broken, hinge, [grading.case('c', np.ones((2, 3)), "
         "np.array([0, 1]))])"),
        "grading.check_array('hinge', [0.0, 1.0], [1.53, 1.0])",
        # IPython displays the module and lists its names: no false alarm.
        "dir(grading)\ngrading",
        "grading.check_array('x', [1.0], [1.0]); print('fine')",
    ], tmp_path)
    ansi = re.compile(r"\x1b\[[0-9;]*m")
    raised, wrong = (ansi.sub("", "\n".join(o.traceback)) for index in (2, 3)
                     for o in nb.cells[index].outputs if o.output_type == "error")
    for text in (raised, wrong):
        assert "skipping hidden" in text and "in _fail(message, cause)" in text
        for frame in ("check_function", "call_answer", "_call_watched", "check_array",
                      "_start_check"):
            assert f"in {frame}(" not in text, (frame, text)
    assert "----> 2     return scores[labels, 5]" in raised  # the student's line
    assert "----> 3 grading.check_function(broken" in raised  # the test's line
    assert raised.endswith("broken on case 'c' raised IndexError: index 5 is out of bounds "
                           "for axis 1 with size 3")
    assert "----> 1 grading.check_array('hinge'" in wrong
    assert wrong.endswith("hinge: 1 of 2 values wrong (indices count from 0; tolerance "
                          "|got - expected| <= 1e-09 + 1e-07 |expected|):\n"
                          "  index [0]: expected 1.53, got 0")
    assert nb.cells[5].outputs[-1].text == "fine\n"
