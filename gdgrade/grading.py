r"""Feedback and integrity checks for the autograded exercises (nbgrader test cells).

A test cell of an exercise notebook calls these functions instead of bare ``assert``\s, so that
a failing answer gets a message that says what is wrong::

    hinge on case "the seed's dog/cat/bird example": expected shape (3,), got (3, 3): return
    one loss per instance

    hinge on case 'normal scores 64x10 (seed 102)': 1 of 64 values wrong (indices count from
    0; tolerance |got - expected| <= 1e-09 + 1e-07 |expected|):
      instance 7: expected 1.41, got 1.49

and hints where it can tell more: NaN or infinity where the answer is finite, every value off
by the same amount (an extra term in a sum), or by the same factor (a sign, a mean for a sum),
or a known mistake the test cell names (``hints``).

API
---
``check_function(student_fn, reference_fn, cases, ...)``
    The main entry for a function of its inputs: for every ``case(label, *args, **kwargs)`` it
    calls the student's function with ``call_answer``, then the reference, and compares with
    ``check_array``. Raises ``GradingError`` (an ``AssertionError``) with a message.
``check_examples(student_fn, [(case(label, *args), expected), ...], names)``
    The same for worked examples, with the expected values written in the test: what the
    visible tests use, so that they import no reference.
``check_steps(student_step, reference_step, problems, *, call, state, hints=(), name=None)``
    The main entry for a rule applied step after step (an optimizer's update): runs the
    student's step and the reference's on every step of every problem, feeding both the
    reference's values after the previous step, and names the first wrong step, value and
    coordinate, with the text of a known mistake the wrong values reproduce.
``worked_steps(tables)``
    A reference step for ``check_steps`` that reads the rows of worked tables, so that the
    visible tests of a step rule compare step by step with numbers, not with gdlib.
``run_steps(student_step, problem, *, call, state)``
    The values after ``problem.steps`` steps of the student's rule alone (each step fed the
    previous one's result), to compare with a table of the book.
``call_answer(fn, args, names, where, *, kwargs=None, returns=None, trusted=())``
    One call of an answer as a test should make it: on copies of the arguments, watched for
    forbidden code, failing when the answer raises, modifies an argument in place, or does not
    return the tuple ``returns`` names.
``check_array(name, got, expected, rtol=..., atol=..., axis_names=..., shape_hint=..., hints=...)``
    Type, shape and value comparison with trusted primitives, naming the wrong entries.
``check_own_code(fn, name)``
    Fails when ``fn`` reaches the reference library (gdlib) or another library that computes the
    answer (torch, scipy, sklearn, jax, tensorflow) through its globals, closure or defaults.
``case(label, *args, **kwargs)``, ``random_cases(label, make, shapes, seed)``, ``rng(seed)``
    Build the inputs: one ``Case``, or one per shape with arguments ``make(generator, *shape)``.
    ``rng(seed)`` is ``np.random.default_rng(seed)``, or, when the environment variable
    ``GDCOURSE_GRADING_SALT`` (``SALT_VARIABLE``) was set at import, a generator that mixes a
    secret salt into the seed (see "Hidden inputs" below).
``QuadraticProblem``, ``random_quadratics(seed, count, steps, *, hyper, state)``
    Test problems for step rules: f(theta) = theta^T A theta / 2 - b^T theta with a start,
    a learning rate and hyper-parameters; random ones drawn from ``rng``.
``protect(*module_names)``, ``require_untampered()``, ``reset_kernel_hooks()``
    Integrity helpers, described below.

Recipe for a chapter's exercise notebook (``solutions/NN_slug/NN_slug.ipynb``)
----------------------------------------------------------------------------
(``solutions/01_losses/01_losses.ipynb`` is the worked example for functions of their inputs,
``solutions/04_momentum/04_momentum.ipynb`` for step rules.)

- A locked setup cell first: ``import numpy as np``, ``from gdgrade import grading``,
  ``grading.protect("gdlib.<module>", "gdgrade.grading")`` for each module holding a reference
  (``protect`` always guards ``gdgrade.grading`` and the ``gdgrade`` package; naming the grading
  module documents that).
- Locked cells for data the visible tests use (e.g. the seed's example as arrays).
- One answer cell per part (solution cell; the code between ``### BEGIN SOLUTION`` and
  ``### END SOLUTION`` becomes ``raise NotImplementedError()``), keeping the ``def`` line and
  docstring outside the markers.
- One locked grade cell per part, with points. It imports **everything it calls** itself
  (``import numpy as np``, ``from gdgrade.grading import check_examples, check_array, case``;
  ``from gdlib.<module> import f as reference_f`` in the hidden part only: the released
  notebook must hold no reference) or defines it in the same cell: it must not
  call a function that an earlier cell defined, since an answer cell runs in between and can
  rebind any name (the scan flags answers that rebind a name the course's locked cells define,
  but the grade must not depend on the scan). Reading the arrays of a locked data cell is
  fine: rebinding them can only make the visible checks fail. Visible part: ``check_examples``
  on the seed's example with the expected values worked out in the text, plus ``check_array``
  against the seed's printed numbers with a tolerance matching their rounding. Hidden part,
  between
  ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``: ``check_function`` on
  ``random_cases`` (several seeds and shapes) and on the edge cases the task text announces.
  Pass gdlib's own function as the reference (it is checked to be gdlib's); when the
  student's signature differs, wrap the *student's* function instead. Do not end a grade cell
  with an expression that displays a number: nbgrader reads it as partial credit (the check
  functions return None, so a call is fine).
- Step rules (an optimizer's update, a recurrence): the answer is one step,
  ``rule_step(theta, ..., lr, ...) -> (new_theta, new_state...)``. In the grade cell define
  ``reference(problem, values)`` (gdlib's rule on one step; ``values`` is the tuple of
  carried values, e.g. ``(theta, velocity)``), ``call(fn, problem, values, where)`` (builds the
  answer's arguments and returns ``call_answer(fn, args, names, where, returns=...)``; pass
  callbacks the answer gets, such as a gradient function, as ``trusted``), hints
  ``(text, mistake)`` with ``mistake(problem, values)`` returning what a known mistake returns
  (``None`` for a value it does not predict), and the worked example as a
  ``QuadraticProblem``. Visible: ``check_steps`` on the worked example (and a variant of its
  hyper-parameters, so that an answer fitted to one setting fails) with ``worked_steps(tables)``
  as the reference (the rows of the text's tables; write the hints in terms of a ``correct``
  step so that the hidden part can pass gdlib's), then ``run_steps`` and ``check_array``
  against the book's table. Hidden: ``check_steps`` on
  ``random_quadratics(seed, hyper=..., state=...)`` (include the edge cases: a zero
  hyper-parameter, a zero and a non-zero starting state).
- Then ``make exercises`` and commit both notebooks; tests/test_exercises.py and
  tests/test_notebooks.py pick the new chapter up.

Threat model (what this module can and cannot guarantee)
--------------------------------------------------------
nbgrader runs the student's cells and the instructor's test cells in **one Python process**.
Whatever the tests can reach, code in an answer cell can reach too, so in-process grading can
always be subverted by a determined student; this module raises the cost of the known attacks
and makes them visible, and ``python -m gdgrade scan`` (a static scan of the submitted
notebooks, also run during ``nbgrader autograde``) is the backstop. Defended attacks:

1. *Replacing comparison functions* (``np.allclose = lambda *a, **k: True``,
   ``np.testing.assert_allclose = ...``, ``builtins.abs = ...``). This module captures the few
   primitives it needs when it is imported -- in a locked cell that runs before any answer cell
   -- and compares with ndarray operators and methods, which Python code cannot replace (C
   types are immutable). It also snapshots the namespaces of numpy (and ``numpy.random``,
   ``numpy.linalg``, ``numpy.testing``), ``math``, the builtin functions and types, a few
   ``sys`` hooks, and every gdlib module protected with ``protect``; every check compares them
   with the snapshot, restores what was replaced, and fails with a message naming it. The
   failure is sticky: once a replacement was seen, every later check of the session fails,
   because the student's code ran with it.
2. *Replacing the grader* (``grading.check_steps = lambda *a, **k: None``,
   ``gdgrade.grading.require_untampered = ...``, ``g = grading; g.check_function = ...``,
   ``vars(grading).update(...)``, ``setattr(getattr(gdgrade, "grading"), ...)``, or rebinding a
   helper a test cell would call). Grade cells import what they call in the same cell, so
   rebinding a notebook name has no effect on them. After ``protect``, the module objects of
   ``gdgrade.grading`` and of the ``gdgrade`` package are guarded: every attribute read from them
   (``from gdgrade.grading import check_steps`` and ``from gdgrade import grading`` included)
   first compares the namespace with a copy taken in the setup cell -- held in a closure, out
   of reach of the namespace -- restores what was replaced and records it, so the real check
   runs and fails. The guard also records every read of a private name (``_SNAPSHOTS``,
   ``_TAMPERED``...) or of the namespace (``vars(grading)``, ``grading.__dict__``) by code
   outside gdlib, the standard library and the installed packages -- a notebook cell: the
   review's "stealth" answer (``grading._SNAPSHOTS.clear()``, then ``vars(grading).update``)
   fails every test. What the guard records is kept in its closure as well: clearing
   ``_TAMPERED`` does not make a check pass.
3. *Calling the reference* (``from gdlib.losses import hinge``, ``import gdlib; gdlib.losses.hinge``,
   ``sys.modules["gdlib.losses"]``, ``importlib``, torch's own loss). ``check_own_code`` reads
   the function's bytecode: the globals and closure variables it loads, with the attribute
   paths it reads from them (``torch.optim.SGD`` is reported as such, "module torch
   (torch.optim.SGD)", and an attribute name is not mistaken for a global of the same name),
   the modules it imports, its defaults and string constants that name a forbidden module,
   recursively through the student's own helper functions.
   Then every call of the student's function (``call_answer``) runs under a profile hook
   (``sys.setprofile``, and ``threading.setprofile`` for threads it starts) that records any
   Python frame executing code of a forbidden package -- except calls made by the test's own
   callbacks passed as ``trusted`` -- and any call of ``sys._getframe``, ``sys.settrace`` or
   ``sys.setprofile`` (frame inspection could read the grader's locals). Either fails the check.
4. *Hard-coding the visible example*: hidden tests compare with the reference on random inputs
   drawn with ``rng(seed)`` (a generator made from a ``default_rng`` captured at import, so
   patching ``np.random`` cannot choose the hidden inputs). *Hidden inputs*: the seeds are
   fixed in the solution notebooks, so whoever has ``solutions/`` can draw the same inputs
   and submit a table of the reference's outputs. Against that, autograde with a secret salt:
   ``GDCOURSE_GRADING_SALT=<secret> nbgrader autograde <id>`` (the kernels inherit the
   variable). ``rng(seed)`` is then ``np.random.default_rng([seed, s])``, s the first 8 bytes
   of the SHA-256 of the secret read as a little-endian integer; the variable is read once,
   at import. Unset or empty: ``default_rng(seed)``, so that tests, ``nbgrader validate`` and
   a student's own runs draw what the solution notebooks were checked with. (Run the solution
   notebooks once with the salt to check that the instructor's answers pass its draws.)
5. *Editing or deleting test cells*: handled by nbgrader, not here. Locked cells whose source
   changed are restored from the gradebook, and with ``OverwriteCells.add_missing_cells = True``
   (set in ``nbgrader_config.py``) deleted grade cells are re-inserted and run.
6. *Swallowing errors*: ``set_custom_exc`` alone does not help a student under nbgrader 0.9.6:
   the traceback is hidden but the kernel's execute reply still has status "error", and
   nbgrader then adds an error output to the cell (0 points). ``reset_kernel_hooks`` -- called
   by every check -- also restores the traceback display and removes
   custom exception handlers, student AST and input transformers, instance-level overrides of
   the shell's run/traceback methods, student event callbacks, and trace/profile functions.
   It cannot act on the cell it runs in if a transformer rewrote that cell before it ran: such
   submissions are what the static scan flags.

What is *not* prevented: code that runs before this module is imported (a student can move
cells), reading the hidden tests' random inputs by means the profile hook does not see (e.g.
``gc.get_objects()``), replacing the guarded module's class or its ``sys.modules`` entry,
reaching this module's private records without going through the guard
(``types.ModuleType.__getattribute__(grading, "_SNAPSHOTS")``, a function's
``__globals__``, ``gc``), or any other deliberate tampering with the interpreter. The scan
flags the usual tools for that (``sys.modules``, ``importlib``, ``inspect``, ``gc``,
``ctypes``, ``setattr``/``getattr`` with computed names, ``vars``, ``__class__``/``__dict__``/
``__globals__``, the grading module used other than by calling its functions, private names
of any imported module, assignments to attributes of numpy, builtins, sys, gdlib, torch,
IPython hooks, rebinding a name the course's locked cells define...), and a flagged submission
is held for manual grading (``python -m gdgrade held`` lists them). A grader that cannot
be subverted needs the student's code in a separate process.

Tracebacks: the functions a failing check passes through set ``__tracebackhide__``, which
IPython's traceback display (and pytest) honours: a student sees the test cell's line, their
own line when their code raised, one frame of this module (the ``raise``, which IPython always
shows) and the message.
"""

import builtins
import copy
import dis
import hashlib
import itertools
import math
import os
import re
import sys
import sysconfig
import threading
import types
from collections.abc import Callable, Mapping
from importlib import import_module
from importlib.util import find_spec
from pathlib import Path
from typing import NamedTuple, NoReturn

import numpy as np
import numpy.linalg
import numpy.random
import numpy.testing

__all__ = [
    "FORBIDDEN_PACKAGES",
    "SALT_VARIABLE",
    "Case",
    "GradingError",
    "QuadraticProblem",
    "call_answer",
    "case",
    "check_array",
    "check_examples",
    "check_function",
    "check_own_code",
    "check_steps",
    "protect",
    "random_cases",
    "random_quadratics",
    "require_untampered",
    "reset_kernel_hooks",
    "rng",
    "run_steps",
    "worked_steps",
]

# Packages whose code must not run inside a student's answer: the reference library itself and
# the libraries that would compute the answer for the student. numpy is what answers are
# written with.
FORBIDDEN_PACKAGES = ("gdlib", "torch", "scipy", "sklearn", "jax", "tensorflow")

# --------------------------------------------------------------------------------------------
# Trusted primitives, captured at import (before any answer cell runs)
# --------------------------------------------------------------------------------------------

_array = np.array
_float64 = np.float64
_errstate = np.errstate
_array_equal = np.array_equal
_default_rng = np.random.default_rng
_ndarray = np.ndarray
_abs = builtins.abs
_np_isfinite = np.isfinite
_np_isnan = np.isnan
_isfinite = math.isfinite
_isinstance = builtins.isinstance
_len = builtins.len
_min = builtins.min
_float = builtins.float
_tuple = builtins.tuple
_list = builtins.list
_sorted = builtins.sorted
_deepcopy = copy.deepcopy
_setprofile = sys.setprofile
_getprofile = sys.getprofile
_settrace = sys.settrace
_thread_setprofile = threading.setprofile
_thread_settrace = threading.settrace
_getframe = sys._getframe
_instructions = dis.get_instructions
_FORBIDDEN_BUILTINS = {
    id(sys._getframe): "sys._getframe (frame inspection)",
    id(sys.settrace): "sys.settrace",
    id(sys.setprofile): "sys.setprofile",
    id(threading.settrace): "threading.settrace",
    id(threading.setprofile): "threading.setprofile",
}
if hasattr(sys, "_current_frames"):
    _FORBIDDEN_BUILTINS[id(sys._current_frames)] = "sys._current_frames (frame inspection)"


def _ipython_shell():
    """The running IPython shell, or None (IPython is only consulted when already loaded)."""
    module = sys.modules.get("IPython")
    return None if module is None else module.get_ipython()


class GradingError(AssertionError):
    """A failed check; the message tells the student what is wrong."""


# The functions a failing check passes through set ``__tracebackhide__ = True``: IPython (and
# pytest) then leave their frames out of a traceback. They raise with ``_fail`` (chained to
# ``cause``, the answer's own exception, whose traceback shows the student's line), the frame
# IPython always shows: its lines are the only ones of this module a student sees.


def _fail(message: str, cause: BaseException | None = None) -> NoReturn:
    """A test failed: the message below says what is wrong with the answer."""
    __tracebackhide__ = True
    raise GradingError(message) from cause


class Case(NamedTuple):
    """One input of ``check_function``: a label shown in messages and the call's arguments."""

    label: str
    args: tuple
    kwargs: dict


def case(label: str, *args, **kwargs) -> Case:
    """``Case(label, args, kwargs)``: ``check_function`` calls ``fn(*args, **kwargs)``."""
    return Case(label, args, kwargs)


def random_cases(label: str, make, shapes, seed: int = 0) -> list:
    """One ``Case`` per shape, with arguments ``make(generator, *shape)`` (a tuple).

    Case ``i`` uses ``rng(seed + i)`` and is labelled ``"{label} {shape} (seed {seed + i})"``,
    e.g. ``"normal scores 64x10 (seed 102)"`` (an empty shape ``()`` adds nothing).
    The namespaces are checked (and restored) first, so ``make`` may use numpy freely; it should
    draw its randomness from the generator it is given.
    """
    __tracebackhide__ = True
    _start_check()
    cases = []
    for offset, shape in enumerate(shapes):
        shape = _tuple(shape)
        args = make(rng(seed + offset), *shape)
        size = " " + "x".join(str(d) for d in shape) if shape else ""
        cases.append(Case(f"{label}{size} (seed {seed + offset})", _tuple(args), {}))
    return cases


SALT_VARIABLE = "GDCOURSE_GRADING_SALT"


def _salt_number(text: str | None) -> int | None:
    """The 64-bit number a salt string stands for (the first 8 bytes of its SHA-256, read
    little-endian), or None for no salt (unset or empty)."""
    if not text:
        return None
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


# Read once, at import (in the locked setup cell, before any answer runs): changing the
# environment later changes nothing.
_SALT = _salt_number(os.environ.get(SALT_VARIABLE))


def rng(seed: int) -> np.random.Generator:
    """A numpy ``Generator`` for ``seed``, made by the ``default_rng`` of import time.

    Hidden tests draw their inputs from it: an answer cell that replaces ``np.random`` functions
    cannot choose them. Without a salt it is ``np.random.default_rng(seed)``: anyone with the
    solution notebooks (which fix the seeds) can draw the same inputs. When the environment
    variable ``GDCOURSE_GRADING_SALT`` was set (and not empty) when this module was imported,
    it is ``np.random.default_rng([seed, salt])`` with salt the first 8 bytes of the SHA-256
    of the variable's text, read as a little-endian integer: an instructor who autogrades with
    a secret salt (``GDCOURSE_GRADING_SALT=... nbgrader autograde 01_losses``) gets hidden
    inputs nobody can compute in advance, so a table of precomputed outputs fails.
    """
    return _default_rng(seed) if _SALT is None else _default_rng([seed, _SALT])


# --------------------------------------------------------------------------------------------
# Snapshots of the namespaces an answer could patch
# --------------------------------------------------------------------------------------------

# Not excepthook: IPython swaps it in and out around every cell.
_SYS_WATCHED = ("setprofile", "getprofile", "settrace", "gettrace", "_getframe")
_SNAPSHOTS: dict = {}  # module name -> (module, {attribute: value at snapshot time})
_TAMPERED: list = []  # descriptions of replacements seen so far (sticky)


def _watched_items(module) -> dict:
    """The attributes of ``module`` whose replacement would change a grade."""
    items = vars(module)
    if module is builtins:
        # Functions and types only (__import__ included): IPython swaps exit, quit and
        # get_ipython in and out around every cell.
        return {
            k: v for k, v in items.items() if _isinstance(v, (types.BuiltinFunctionType, type))
        }
    if module is sys:
        return {k: items[k] for k in _SYS_WATCHED if k in items}
    return {k: v for k, v in items.items() if not (k.startswith("__") and k.endswith("__"))}


def _snapshot(module) -> None:
    if module.__name__ not in _SNAPSHOTS:
        _SNAPSHOTS[module.__name__] = (module, dict(_watched_items(module)))


def protect(*module_names: str) -> None:
    """Import the named modules and snapshot their namespaces for ``require_untampered``.

    Call it in the locked setup cell, right after ``from gdgrade import grading``, for every
    module whose functions the tests use as reference, e.g. ``grading.protect("gdlib.losses")``:
    an answer that then replaces ``gdlib.losses.softmax`` (which the reference calls) is caught.
    It also guards this module and the ``gdgrade`` package (``"gdgrade.grading"`` may be named
    too; see ``_guard``): an answer that replaces ``gdgrade.grading.check_steps``, or
    ``gdgrade.grading`` itself, is caught when a test cell reads it.
    """
    for module in (sys.modules[__name__], sys.modules[__name__.rpartition(".")[0]]):
        _guard(module)
    for name in module_names:
        module = import_module(name)
        for loaded in _sorted(sys.modules):
            if loaded == name or loaded.startswith(name + "."):
                _snapshot(sys.modules[loaded])
        _snapshot(module)
    # gdlib's and the grader's modules loaded as a side effect (e.g. gdlib.arrays) are protected too.
    for loaded in _sorted(sys.modules):
        if loaded.split(".")[0] in ("gdlib", "gdgrade"):
            _snapshot(sys.modules[loaded])


def _is_private(attribute: str) -> bool:
    """``_name`` but not ``__name__``: a module's own business, not its interface."""
    return attribute.startswith("_") and not (attribute.startswith("__")
                                              and attribute.endswith("__"))


def _course_code(code) -> bool:
    """Whether ``code`` belongs to gdlib, the standard library or an installed package (not to
    a notebook cell or a file of the course's users)."""
    filename = code.co_filename
    return filename.startswith("<frozen ") or _code_path(code).startswith(_TRUSTED_DIRS)


class _Guard(NamedTuple):
    """What ``require_untampered`` checks of a guarded module (see ``_guard``)."""

    module: types.ModuleType
    cls: type  # the module's guard class
    method: object  # the class's __getattribute__
    records: list  # what the guard saw (replaced names, private reads), as in _TAMPERED


def _guard(module) -> None:
    """Make ``module`` check its own namespace whenever an attribute is read from it.

    The module's class becomes a ``types.ModuleType`` subclass whose ``__getattribute__`` first
    compares the namespace with a copy taken now, puts back whatever differs and records it in
    ``_TAMPERED`` (so the next check fails). Everything it needs is held in its closure, which
    an answer cannot reach through the namespace. A test cell's ``from gdgrade.grading import
    check_steps`` (or ``from gdgrade import grading``, guarding the package) reads the attribute
    this way, so it always gets the real object. Functions of this module read their globals
    directly (not through the guard); ``require_untampered`` compares the namespace too, and
    checks that the guard is still in place. Names added to the module later (a submodule
    loaded on first use) are not watched.

    Reading a private name (``grading._SNAPSHOTS``, ``_TAMPERED``...) or the namespace itself
    (``vars(grading)``, ``grading.__dict__``) from code that is not gdlib's, the standard
    library's or an installed package's -- i.e. from a notebook cell -- is recorded too.
    Everything the guard records also goes to a list of its own, which clearing ``_TAMPERED``
    does not empty: every later read and check puts the records back. (``dir(grading)`` and
    IPython's completion and help are fine.)
    """
    if any(guard.module is module for guard in _GUARDS):
        return
    namespace = vars(module)
    saved = {k: v for k, v in namespace.items() if not (k.startswith("__") and k.endswith("__"))}
    tampered, name, missing = _TAMPERED, module.__name__, object()
    records = []
    read, list_names = types.ModuleType.__getattribute__, types.ModuleType.__dir__
    is_private, course_code, getframe = _is_private, _course_code, _getframe

    def record(text: str) -> None:
        if text not in records:
            records.append(text)

    def restore() -> None:
        for key, value in saved.items():
            if namespace.get(key, missing) is not value:
                record(f"{name}.{key}")
                namespace[key] = value
        for text in records:
            if text not in tampered:
                tampered.append(text)

    class GuardedModule(types.ModuleType):
        """A module that checks its namespace before every attribute read (see ``_guard``)."""

        def __getattribute__(self, attribute):
            if ((attribute == "__dict__" or is_private(attribute))
                    and not course_code(getframe(1).f_code)):
                record(f"reached {name}.{attribute}")
            restore()
            return read(self, attribute)

        def __dir__(self):
            # (ModuleType.__dir__ reads __dict__, from this frame: not a notebook's read.)
            return list_names(self)

    module.__class__ = GuardedModule
    _GUARDS.append(_Guard(module, GuardedModule, vars(GuardedModule)["__getattribute__"],
                          records))


_GUARDS: list = []  # a _Guard for each module guarded so far


def _integrity_message(records) -> str:
    replaced = _sorted({r for r in records if not r.startswith("reached ")})
    reached = _sorted({r.removeprefix("reached ") for r in records if r.startswith("reached ")})
    parts = [f"replaced {', '.join(replaced)}"] if replaced else []
    if reached:
        parts.append(f"reached the grader's internals ({', '.join(reached)})")
    return (
        f"grading integrity: code in this notebook {' and '.join(parts)}. Answers must not "
        f"modify numpy, the builtins, sys or gdlib, nor touch the grader's records; every test "
        f"fails until that code is removed."
    )


def require_untampered() -> None:
    """Fail when an attribute of a snapshotted module differs from its snapshot, or when code
    outside gdlib read a guarded module's private names (see ``_guard``).

    Replaced attributes are put back (so the reference computes with the real numpy), and the
    failure is sticky: every later check of the session fails too.
    """
    __tracebackhide__ = True
    for guard in _GUARDS:
        if (type(guard.module) is not guard.cls
                or vars(guard.cls).get("__getattribute__") is not guard.method):
            _TAMPERED.append(f"the guard of {guard.module.__name__}")
            guard.module.__class__ = guard.cls
            guard.cls.__getattribute__ = guard.method
        _TAMPERED.extend(record for record in guard.records if record not in _TAMPERED)
    for name, (module, saved) in _SNAPSHOTS.items():
        current = vars(module)
        for key, value in saved.items():
            if current.get(key, _MISSING) is not value:
                _TAMPERED.append(f"{name}.{key}")
                current[key] = value
    if _TAMPERED:
        _fail(_integrity_message(_TAMPERED))


_MISSING = object()


# --------------------------------------------------------------------------------------------
# IPython hooks an answer could use to swallow the tests' errors
# --------------------------------------------------------------------------------------------

_SHELL_METHODS = (
    "showtraceback", "_showtraceback", "showsyntaxerror", "showindentationerror", "CustomTB",
    "set_custom_exc", "run_cell", "run_cell_async", "_run_cell", "run_code", "run_ast_nodes",
    "transform_cell", "transform_ast", "should_run_async",
)


def reset_kernel_hooks() -> None:
    """Undo what an answer cell may have installed to hide the errors of later cells.

    In an IPython kernel: removes custom exception handlers (``set_custom_exc``), AST
    transformers and post-input transformers (both empty by default), instance attributes that
    override the shell's run/traceback methods, event callbacks defined in the notebook, and
    trace/profile functions (a trace function can jump over a ``raise``). Outside IPython it
    does nothing. Called at the start of every check.
    """
    shell = _ipython_shell()
    if shell is None:
        return
    instance = vars(shell)
    for method in _SHELL_METHODS:
        if method != "CustomTB":
            instance.pop(method, None)
    shell.set_custom_exc((), None)
    del shell.ast_transformers[:]
    del shell.input_transformers_post[:]
    for callbacks in shell.events.callbacks.values():
        callbacks[:] = [c for c in callbacks if getattr(c, "__module__", None) != "__main__"]
    _settrace(None)
    _thread_settrace(None)
    _setprofile(None)
    _thread_setprofile(None)


def _start_check() -> None:
    __tracebackhide__ = True
    reset_kernel_hooks()
    require_untampered()


# --------------------------------------------------------------------------------------------
# Array comparison with feedback
# --------------------------------------------------------------------------------------------


def _fmt(x) -> str:
    return f"{x:.6g}" if _isinstance(x, float) else repr(x)


def _as_numbers(name: str, value, what: str):
    """``value`` as a float64 ndarray, or a GradingError that says what it is instead."""
    __tracebackhide__ = True
    if value is None:
        _fail(f"{name}: {what} is None; did you forget `return`?")
    try:
        raw = _array(value)
    except Exception as error:  # noqa: BLE001 - any failure is reported to the student
        _fail(f"{name}: {what} ({type(value).__name__}) cannot be read as an array: {error}")
    if raw.dtype.kind not in "biuf":
        _fail(
            f"{name}: {what} holds {raw.dtype} values, expected real numbers (a float array)"
        )
    return raw.astype(_float64)


def _index_text(index: tuple, axis_names) -> str:
    if not index:
        return "the value"  # a single number
    if axis_names and _len(axis_names) >= _len(index):
        return ", ".join(f"{axis} {i}" for axis, i in zip(axis_names, index))
    return "index [" + ", ".join(str(i) for i in index) + "]"


def _constant_factor(got, expected):
    """c when got == c * expected for one c != 1 (a missing mean, a wrong sign), else None.
    (None for a single value: any wrong number is some factor times the right one.)"""
    if got.size < 2:
        return None
    norm = (expected * expected).sum()
    if not norm > 0:
        return None
    factor = _float((got * expected).sum() / norm)
    if not _isfinite(factor) or _abs(factor - 1) < 1e-6 or _abs(factor) < 1e-6:
        return None  # (a zero factor means a zero result, which needs no hint)
    residual = got - factor * expected
    if bool((_abs(residual) <= 1e-9 + 1e-7 * _abs(got)).all()):
        return factor
    return None


def _constant_offset(got, expected):
    """c when got == expected + c for one c != 0 (an extra or a missing term), else None
    (None for a single value, which is always off by some amount)."""
    if got.size < 2:
        return None
    difference = got - expected
    offset = _float(difference.mean())
    if not _isfinite(offset) or _abs(offset) < 1e-9:
        return None
    if bool((_abs(difference - offset) <= 1e-9 + 1e-7 * _abs(offset)).all()):
        return offset
    return None


def _wrong_entries(got, expected, rtol: float, atol: float):
    """Boolean array: where ``got`` differs from ``expected`` beyond the tolerance."""
    with _errstate(all="ignore"):
        return ~((got == expected) | (_abs(got - expected) <= atol + rtol * _abs(expected)))


def _matches(got, expected, rtol: float = 1e-7, atol: float = 1e-9) -> bool:
    """Whether ``got`` equals ``expected`` within the tolerance (False when either is not an
    array of real numbers, or the shapes differ)."""
    try:
        got = _as_numbers("", got, "")
        expected = _as_numbers("", expected, "")
    except GradingError:
        return False
    return got.shape == expected.shape and not bool(_wrong_entries(got, expected, rtol, atol).any())


def _hint_text(hints, got, rtol: float, atol: float) -> str:
    """``"\n  hint: <text>"`` for the first ``(text, value)`` of ``hints`` that ``got`` matches."""
    for text, value in hints:
        if _matches(got, value, rtol, atol):
            return "\n  hint: " + text
    return ""


def check_array(name: str, got, expected, *, rtol: float = 1e-7, atol: float = 1e-9,
                axis_names=None, shape_hint: str = "", max_listed: int = 5,
                hints=()) -> None:
    """Raise ``GradingError`` unless ``got`` equals ``expected`` entry by entry.

    An entry passes when |got - expected| <= atol + rtol |expected| or both are the same
    infinity. ``axis_names`` (e.g. ``("instance", "class")``) name the indices of wrong entries
    in the message; ``shape_hint`` is appended to a shape mismatch (e.g. "return one loss per
    instance"). The message lists up to ``max_listed`` wrong entries, points out NaN and
    infinity, and a constant factor (wrong sign, mean instead of sum) when there is one.
    ``hints``: ``(text, value)`` pairs, the value a known mistake gives; when ``got`` matches
    one (same tolerance), the message ends with ``hint: <text>`` of the first that does.
    Uses only primitives captured at import and ndarray operators.
    """
    __tracebackhide__ = True
    _start_check()
    expected = _as_numbers(name, expected, "the expected value")
    got = _as_numbers(name, got, "your result")
    if got.shape != expected.shape:
        message = f"{name}: expected shape {expected.shape}, got {got.shape}"
        message += (f": {shape_hint}" if shape_hint else "") + _hint_text(hints, got, rtol, atol)
        _fail(message)
    bad = _wrong_entries(got, expected, rtol, atol)
    count = int(bad.sum())
    if count == 0:
        return
    header = (
        f"{name}: {count} of {got.size} values wrong (indices count from 0; tolerance "
        f"|got - expected| <= {atol:g} + {rtol:g} |expected|):"
    )
    lines = [header]
    positions = [()] if bad.ndim == 0 else list(zip(*(axis.tolist() for axis in bad.nonzero())))
    for index in positions[:max_listed]:
        want, have = expected[index].item(), got[index].item()
        lines.append(f"  {_index_text(index, axis_names)}: expected {_fmt(want)}, got {_fmt(have)}")
    if count > max_listed:
        lines.append(f"  ... and {count - max_listed} more")
    finite_expected = bool(_np_isfinite(expected).all())
    if finite_expected and not bool(_np_isfinite(got).all()):
        lines.append(
            "  your result holds NaN or infinity where the answer is finite: look for exp of a "
            "large number (overflow), log(0), 0 * inf, or a division by zero (such as "
            "1 - beta**t with t = 0: t counts from 1)"
        )
    elif finite_expected:
        with _errstate(all="ignore"):
            factor = _constant_factor(got, expected)
        offset = _constant_offset(got, expected)
        if factor is not None:
            lines.append(
                f"  your values are {_fmt(factor)} times the expected ones: check the sign and "
                f"any mean or scale factor"
            )
        elif offset is not None:
            lines.append(
                f"  every value is off by the same amount, {offset:+.6g}: look for a term that "
                f"should not be in the sum, or one that is missing"
            )
    _fail("\n".join(lines) + _hint_text(hints, got, rtol, atol))


# --------------------------------------------------------------------------------------------
# Does the answer compute the result itself?
# --------------------------------------------------------------------------------------------


def _package_dirs(packages) -> tuple:
    """Directories holding the code of the installed ``packages`` (none of them imported)."""
    dirs = []
    for package in packages:
        try:
            spec = find_spec(package)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            dirs.extend(str(Path(d).resolve()) + "/" for d in spec.submodule_search_locations)
    return _tuple(dirs)


_FORBIDDEN_DIRS = {}  # tuple of packages -> tuple of their directories
_LIBRARY_DIRS = _tuple(
    str(Path(p).resolve()) + "/"
    for p in {sysconfig.get_paths()[key] for key in ("stdlib", "purelib", "platlib")}
)
_GRADER_DIR = str(Path(__file__).resolve().parent) + "/"
# Code that is not a notebook's: the libraries, the grader and gdlib itself.
_TRUSTED_DIRS = (*_LIBRARY_DIRS, _GRADER_DIR, *_package_dirs(("gdlib",)))


def _forbidden_dirs(packages) -> tuple:
    packages = _tuple(packages)
    if packages not in _FORBIDDEN_DIRS:
        _FORBIDDEN_DIRS[packages] = _package_dirs(packages)
    return _FORBIDDEN_DIRS[packages]


def _top_package(name) -> str:
    return name.split(".")[0] if _isinstance(name, str) else ""


_RESOLVED: dict = {}  # co_filename -> resolved path (the profile hook asks for it often)


def _code_path(code) -> str:
    filename = code.co_filename
    if filename not in _RESOLVED:
        try:
            _RESOLVED[filename] = str(Path(filename).resolve())
        except (OSError, ValueError):
            _RESOLVED[filename] = filename
    return _RESOLVED[filename]


def _forbidden_origin(obj, packages, dirs):
    """A description of where ``obj`` comes from when that is a forbidden package, else None."""
    if _isinstance(obj, types.ModuleType):
        return f"module {obj.__name__}" if _top_package(obj.__name__) in packages else None
    if _isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, type)) or callable(obj):
        module = getattr(obj, "__module__", None)
        if _top_package(module) in packages:
            return f"{module}.{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"
    code = getattr(obj, "__code__", None)
    if _isinstance(code, types.CodeType) and _code_path(code).startswith(dirs):
        return f"a function made from the code of {_code_path(code)}"
    module = getattr(type(obj), "__module__", None)
    if _top_package(module) in packages:
        return f"an object of type {module}.{type(obj).__qualname__}"
    return None


def _code_objects(code):
    yield code
    for const in code.co_consts:
        if _isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _is_own_function(obj) -> bool:
    """A Python function written outside any installed library (e.g. in a notebook cell)."""
    return _isinstance(obj, types.FunctionType) and not _code_path(obj.__code__).startswith(
        _LIBRARY_DIRS
    )


def _unwrap(obj) -> list:
    """Objects a callable delegates to: partial's func, a bound method's function, __call__."""
    if _isinstance(obj, types.MethodType):
        return [obj.__func__, obj.__self__]
    found = [getattr(obj, attr) for attr in ("func", "pyfunc", "__wrapped__") if hasattr(obj, attr)]
    if not _isinstance(obj, (types.FunctionType, type)):
        call = vars(type(obj)).get("__call__")
        if _isinstance(call, types.FunctionType):
            found.append(call)
    return found


_NAME_READS = {"LOAD_GLOBAL": "global", "LOAD_NAME": "global", "LOAD_DEREF": "closure"}
_ATTRIBUTE_READS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})


def _code_reads(code):
    """What ``code`` reads by name: ``("global", name, attributes)`` for each global it loads
    (``"closure"`` for a variable of an enclosing function), with the attributes it then reads
    from it in a row (``torch.optim.SGD`` gives ``("global", "torch", ("optim", "SGD"))``), and
    ``("import", module, names)`` for each import (``names`` those a ``from`` import takes).
    Attribute names alone are not global reads: ``x.optim`` does not read a global
    ``optim``."""
    current, previous = None, None
    for instruction in _instructions(code):
        if current is not None and instruction.opname in _ATTRIBUTE_READS:
            current[2].append(instruction.argval)
            continue
        if current is not None:
            yield current[0], current[1], _tuple(current[2])
            current = None
        if instruction.opname in _NAME_READS:
            current = (_NAME_READS[instruction.opname], instruction.argval, [])
        elif instruction.opname == "IMPORT_NAME":
            # The constant loaded just before is the from-list: None for a plain import.
            names = previous.argval if previous and previous.opname == "LOAD_CONST" else None
            yield "import", instruction.argval, _tuple(names or ())
        previous = instruction
    if current is not None:
        yield current[0], current[1], _tuple(current[2])


def _attribute_path(obj, attributes):
    """``(object, attributes)``: how far the attribute names lead from ``obj`` through modules
    (read from the modules' namespaces, so that no code runs), and the names it followed."""
    followed = []
    for attribute in attributes:
        if not _isinstance(obj, types.ModuleType):
            break
        inner = vars(obj).get(attribute, _MISSING)
        if inner is _MISSING:
            break
        obj = inner
        followed.append(attribute)
    return obj, _tuple(followed)


def _global_use(root, attributes, packages, dirs):
    """``(origin, detail)`` of a forbidden object read as ``root.attr1.attr2...`` (``root`` the
    global's value), or None. The origin names the global (``"module torch"``); the detail the
    object at the end of the attribute path, as written from the module's real name
    (``"torch.optim.SGD"``), when it leads further than the global."""
    leaf, followed = _attribute_path(root, attributes)
    origin = _forbidden_origin(root, packages, dirs)
    if followed and _isinstance(root, types.ModuleType):
        detail = ".".join((root.__name__, *followed))
        if origin is not None:
            return origin, detail
        leaf_origin = _forbidden_origin(leaf, packages, dirs)
        return None if leaf_origin is None else (leaf_origin, detail)
    return None if origin is None else (origin, None)


def _foreign_uses(fn, packages, dirs, seen) -> list:
    """``(origin, detail or None)`` for the forbidden objects ``fn`` can reach, following the
    student's own helper functions (see ``_uses_text``)."""
    if id(fn) in seen:
        return []
    seen.add(id(fn))
    origin = _forbidden_origin(fn, packages, dirs)
    if origin is not None:
        return [(origin, None)]
    found = []
    for inner in _unwrap(fn):
        found += _foreign_uses(inner, packages, dirs, seen)
    if not _isinstance(fn, types.FunctionType):
        return found
    closure = {name: cell.cell_contents for name, cell in
               zip(fn.__code__.co_freevars, fn.__closure__ or ()) if _has_contents(cell)}
    reachable = list(closure.values())
    reachable += list(fn.__defaults__ or ()) + list((fn.__kwdefaults__ or {}).values())
    module_path = re.compile(r"^\s*(" + "|".join(map(re.escape, packages)) + r")(\.\w+)*\s*$")
    namespaces = {"global": fn.__globals__, "closure": closure}
    for code in _code_objects(fn.__code__):
        for kind, name, attributes in _code_reads(code):
            if kind == "import":
                if _top_package(name) in packages:
                    found += [(f"an import of {name}", f"{name}.{taken}" if taken else None)
                              for taken in attributes or (None,)]
            elif name in namespaces[kind]:
                value = namespaces[kind][name]
                use = _global_use(value, attributes, packages, dirs)
                if use is not None:
                    found.append(use)
                elif kind == "global":
                    reachable.append(value)
        for const in code.co_consts:
            if _isinstance(const, str) and module_path.match(const):
                found.append((f"the string {const!r}", None))
    for obj in reachable:
        origin = _forbidden_origin(obj, packages, dirs)
        if origin is not None:
            found.append((origin, None))
        elif _is_own_function(obj) or _isinstance(obj, (types.MethodType,)):
            found += _foreign_uses(obj, packages, dirs, seen)
    return found


def _has_contents(cell) -> bool:
    try:
        _ = cell.cell_contents
    except ValueError:  # an empty cell (a variable not assigned yet)
        return False
    return True


def _dedupe(items) -> list:
    return list(dict.fromkeys(items))


def _uses_text(uses) -> str:
    """The forbidden uses found, merged by origin: ``(origin, detail)`` pairs (or plain
    descriptions) become e.g. "module torch (torch.tensor, torch.optim.SGD), gdlib.losses.hinge"."""
    details: dict = {}
    for use in uses:
        origin, detail = use if _isinstance(use, _tuple) else (use, None)
        found = details.setdefault(origin, [])
        if detail is not None and detail not in found:
            found.append(detail)
    return ", ".join(origin + (f" ({', '.join(found)})" if found else "")
                     for origin, found in details.items())


def _reference_message(name: str, uses, packages) -> str:
    return (
        f"{name} must compute its result itself, with numpy; it uses {_uses_text(uses)}. "
        f"Answers may not use {', '.join(packages)} (gdlib holds the reference implementation "
        f"the grader compares against), nor inspect or trace the grader's frames."
    )


def check_own_code(fn, name: str | None = None, forbidden=FORBIDDEN_PACKAGES) -> None:
    """Raise ``GradingError`` when ``fn`` can reach code of a ``forbidden`` package.

    Looks at the globals and closure variables its code loads, with the attributes it reads
    from them through modules (the message names ``torch.optim.SGD``, not just torch), the
    modules it imports, its defaults, string constants that name a forbidden module
    (``sys.modules["gdlib.losses"]``), and recursively at the student's own helper functions
    it calls. ``check_function`` runs it first, then also watches the calls at run time (which
    catches what this static look misses).
    """
    __tracebackhide__ = True
    _start_check()
    name = name or getattr(fn, "__name__", "your function")
    if not callable(fn):
        _fail(f"{name} is not a function (it is a {type(fn).__name__})")
    packages = _tuple(forbidden)
    uses = _dedupe(_foreign_uses(fn, packages, _forbidden_dirs(packages), set()))
    if uses:
        _fail(_reference_message(name, uses, packages))


def _in_dirs(code, dirs) -> bool:
    return code.co_filename.startswith(dirs) or _code_path(code).startswith(dirs)


def _read_numbers(value):
    """``value`` as a float64 ndarray when it reads as real numbers, else ``value`` itself."""
    if value is None:
        return None
    try:
        raw = _array(value)
    except Exception:  # noqa: BLE001 - check_array reports what the value is
        return value
    return raw.astype(_float64) if raw.dtype.kind in "biuf" else value


def _read_values(result, count: int):
    """The items of a tuple or list of ``count`` values, each read with ``_read_numbers``."""
    if _isinstance(result, (_tuple, _list)) and _len(result) == count:
        return _tuple(_read_numbers(item) for item in result)
    return result


def _call_watched(fn, args, kwargs, dirs, read, trusted_codes=frozenset()):
    """``read(fn(*args, **kwargs))`` and the forbidden code it ran (profile hook on this thread
    and on threads it starts). Forbidden code called directly by code in ``trusted_codes``
    (the test's own callbacks) is not recorded."""
    __tracebackhide__ = True
    seen = []
    this_frame_code = _call_watched.__code__
    grader_dirs = (_GRADER_DIR,)

    def hook(frame, event, arg):
        if frame.f_code is this_frame_code:
            return
        if event == "call":
            # Record where forbidden code is entered, not the calls it makes internally.
            caller = frame.f_back
            if _in_dirs(frame.f_code, dirs) and not (
                caller and (_in_dirs(caller.f_code, dirs) or caller.f_code in trusted_codes)
            ):
                module = frame.f_globals.get("__name__", frame.f_code.co_filename)
                seen.append(f"{module}.{frame.f_code.co_name}")
        elif event == "c_call":
            label = _FORBIDDEN_BUILTINS.get(id(arg))
            # (the grader's own frames: the guard of gdgrade.grading asks who reads it.)
            if label is not None and not _in_dirs(frame.f_code, grader_dirs):
                seen.append(label)

    previous = _getprofile()
    _thread_setprofile(hook)
    _setprofile(hook)
    try:
        # Read the result into plain ndarrays here, under the hook: an object's __array__ or
        # __float__ could otherwise run forbidden code after the watch.
        result = read(fn(*args, **kwargs))
    finally:
        _setprofile(previous)
        _thread_setprofile(None)
    return result, _dedupe(seen)


def _copy(value):
    return value.copy() if _isinstance(value, _ndarray) else _deepcopy(value)


def _same_value(a, b) -> bool:
    if _isinstance(a, _ndarray) and _isinstance(b, _ndarray):
        return a.shape == b.shape and a.dtype == b.dtype and bool(
            ((a == b) | (_np_isnan(a) & _np_isnan(b))).all()
        )
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - not comparable: do not claim a mutation
        return True


def _argument_names(fn) -> tuple:
    code = getattr(fn, "__code__", None)
    return code.co_varnames[: code.co_argcount] if code is not None else ()


def _returned_values(result, names, where: str) -> tuple:
    """``result`` as the tuple of ``len(names)`` values it must be (one name: the value
    itself, made a 1-tuple); a ``GradingError`` naming what to return otherwise."""
    __tracebackhide__ = True
    if _len(names) == 1:
        return (result,)
    if _isinstance(result, (_tuple, _list)) and _len(result) == _len(names):
        return _tuple(result)
    if _isinstance(result, (_tuple, _list)):
        what = f"a {type(result).__name__} of {_len(result)} values"
    else:
        what = type(result).__name__
    _fail(f"{where}: return the {_len(names)} values ({', '.join(names)}) as a tuple, got "
          f"{what}")


def call_answer(fn, args, names=(), where: str | None = None, *, kwargs=None, returns=None,
                trusted=(), name: str | None = None, forbidden=FORBIDDEN_PACKAGES):
    """``fn(*args, **kwargs)`` called as a test must call an answer; returns its result.

    - ``check_own_code(fn)`` first: the answer must not reach gdlib, torch, ... (static look);
    - the answer gets copies of the arguments (``ndarray.copy``, else ``copy.deepcopy``) and
      runs under the profile hook of the module docstring: any forbidden code it runs fails,
      however it got there (``sys.modules``, a module name built from strings, a thread).
      ``trusted``: the test's own callables passed to the answer (e.g. a gradient function);
      forbidden code they call directly is the grader's, not the answer's;
    - an exception of the answer becomes a ``GradingError`` "<where> raised <type>: <message>",
      chained so that the traceback shows the student's line; ``NotImplementedError`` (an
      unanswered exercise) and ``GradingError`` propagate unchanged;
    - an argument modified in place fails, named by ``names`` (the positional arguments'
      names) or its keyword;
    - ``returns`` (optional): the names of the values the answer returns, e.g.
      ``("new_theta", "new_velocity")``; with two or more the result must be a tuple or list of
      that many values. Each returned value (or the whole result without ``returns``) that
      reads as real numbers comes back as a float64 ndarray, read under the hook.

    ``where`` starts the messages (default: the function's name, ``name``).
    """
    __tracebackhide__ = True
    name = name or getattr(fn, "__name__", "your function")
    where = where or name
    kwargs = kwargs or {}
    check_own_code(fn, name, forbidden)
    packages = _tuple(forbidden)
    count = _len(returns) if returns else 0
    read = (lambda result: _read_values(result, count)) if count > 1 else _read_numbers
    trusted_codes = frozenset(getattr(f, "__code__", None) for f in trusted) - {None}
    student_args = [_copy(a) for a in args]
    student_kwargs = {k: _copy(v) for k, v in kwargs.items()}
    try:
        with _errstate(all="ignore"):
            got, uses = _call_watched(fn, student_args, student_kwargs,
                                      _forbidden_dirs(packages), read, trusted_codes)
    except (NotImplementedError, GradingError):
        raise
    except Exception as error:  # noqa: BLE001 - reported to the student, chained to it
        _fail(f"{where} raised {type(error).__name__}: {error}", error)
    finally:
        _start_check()
    if uses:
        _fail(_reference_message(name, uses, packages))
    changed = [names[i] if i < _len(names) else f"#{i}"
               for i, (before, after) in enumerate(zip(args, student_args))
               if not _same_value(before, after)]
    changed += [k for k, v in kwargs.items() if not _same_value(v, student_kwargs[k])]
    if changed:
        arg = changed[0]
        _fail(
            f"{where} modified its argument {arg} in place; work on a copy or build a new array "
            f"(e.g. {arg} - x instead of {arg} -= x)"
        )
    if count > 1:
        _returned_values(got, returns, where)
    return got


def _genuine_reference(reference_fn) -> None:
    """Fail when the reference is not gdlib's own function (an answer replaced it)."""
    __tracebackhide__ = True
    module_name = getattr(reference_fn, "__module__", None)
    module = sys.modules.get(module_name or "")
    code = getattr(reference_fn, "__code__", None)
    gdlib_dirs = _forbidden_dirs(("gdlib",))
    genuine = (
        module is not None
        and _top_package(module_name) == "gdlib"
        and _isinstance(code, types.CodeType)
        and _code_path(code).startswith(gdlib_dirs)
    )
    if not genuine:
        _fail(
            f"grading integrity: the reference function {reference_fn!r} is not gdlib's own"
        )
    if module_name not in _SNAPSHOTS:
        protect(module_name)


def check_function(student_fn, reference_fn, cases, *, name: str | None = None,
                   rtol: float = 1e-7, atol: float = 1e-9, axis_names=None,
                   shape_hint: str = "", forbidden=FORBIDDEN_PACKAGES) -> None:
    """Compare ``student_fn`` with ``reference_fn`` on every case; raise ``GradingError``.

    For each ``Case`` the student's function is called first, with ``call_answer`` (on copies
    of the arguments, under the profile hook; see the module docstring); then the reference
    is called on the originals. A failure names the case, and: an exception raised by the
    answer (chained, so the traceback shows the student's line), use of a forbidden package, an
    argument modified in place, a wrong type or shape, or the wrong entries (``check_array``).
    ``NotImplementedError`` (an unanswered exercise) propagates unchanged.
    """
    __tracebackhide__ = True
    name = name or getattr(student_fn, "__name__", "your function")
    check_own_code(student_fn, name, forbidden)
    _genuine_reference(reference_fn)
    arg_names = _argument_names(reference_fn)
    for label, args, kwargs in cases:
        where = f"{name} on case {label!r}"
        got = call_answer(student_fn, args, arg_names, where, kwargs=kwargs, name=name,
                          forbidden=forbidden)
        expected = reference_fn(*args, **kwargs)
        check_array(where, got, expected, rtol=rtol, atol=atol, axis_names=axis_names,
                    shape_hint=shape_hint)


def check_examples(student_fn, examples, names, *, name: str | None = None, rtol: float = 1e-7,
                   atol: float = 1e-9, axis_names=None, shape_hint: str = "",
                   forbidden=FORBIDDEN_PACKAGES) -> None:
    """Compare ``student_fn`` with worked numbers; raise ``GradingError``.

    ``examples``: pairs ``(case(label, *args, **kwargs), expected)``, where ``expected`` is
    worked out in the text (no reference is called: a visible test cell built on this imports
    nothing of gdlib, so the student's notebook never holds the reference). ``names``: the
    positional arguments' names, for the message of an argument modified in place. Each call
    is ``call_answer``'s, each comparison ``check_array``'s, as in ``check_function``.
    """
    __tracebackhide__ = True
    name = name or getattr(student_fn, "__name__", "your function")
    check_own_code(student_fn, name, forbidden)
    for (label, args, kwargs), expected in examples:
        where = f"{name} on case {label!r}"
        got = call_answer(student_fn, args, names, where, kwargs=kwargs, name=name,
                          forbidden=forbidden)
        check_array(where, got, expected, rtol=rtol, atol=atol, axis_names=axis_names,
                    shape_hint=shape_hint)


# --------------------------------------------------------------------------------------------
# Step rules: an update applied step after step (optimizers)
# --------------------------------------------------------------------------------------------


class QuadraticProblem(NamedTuple):
    """A test problem for step rules: f(theta) = theta^T A theta / 2 - b^T theta.

    Its gradient is ``grad(theta) = A theta - b`` (A symmetric). ``start`` holds the values the
    rule carries at step 0, theta first: ``(theta0, *state0)``, e.g. ``(theta0, velocity0)``.
    ``lr`` is the learning rate, ``steps`` the number of steps to run, ``hyper`` the rule's
    other hyper-parameters, which also read as attributes: ``problem.beta`` is
    ``problem.hyper["beta"]``. ``label`` names the problem in messages.
    """

    label: str
    A: np.ndarray
    b: np.ndarray
    start: tuple
    lr: float
    steps: int
    hyper: Mapping = types.MappingProxyType({})

    def grad(self, theta):
        """The gradient A theta - b at ``theta``."""
        return self.A @ theta - self.b

    def __getattr__(self, attribute):
        hyper = self.hyper
        if not attribute.startswith("_") and attribute in hyper:
            return hyper[attribute]
        raise AttributeError(f"{type(self).__name__} {self.label!r} has no attribute "
                             f"{attribute!r} (hyper-parameters: {', '.join(hyper) or 'none'})")


_QUADRATIC_SIZES = (1, 2, 5, 20)  # coordinates of random_quadratics' problems, in turn


def _setting(value) -> str:
    return f"{value:.3g}" if _isinstance(value, float) else f"{value}"


def random_quadratics(seed: int, count: int = 6, steps: int = 100, *, hyper=None,
                      state=None) -> list:
    """``count`` random convex ``QuadraticProblem``s; problem i is drawn with ``rng(seed + i)``.

    Problem i has (1, 2, 5, 20)[i % 4] coordinates, A = Q diag(c) Q^T with a
    random rotation Q and curvatures c = u 10^s (u uniform in [0.05, 1] per coordinate, s
    uniform in [-1, 1]: condition numbers up to 20), b ~ N(0, 1), theta0 ~ N(0, 2^2), and a
    learning rate lr = w / max(c) with w uniform in [0.05, 0.95] (plain gradient descent
    converges on every problem).

    ``hyper(generator, i)`` returns the rule's other hyper-parameters as a dict (they appear in
    the label, e.g. "random quadratic, 5 coordinates, lr=0.0831, beta=0.512 (seed 4102)");
    ``state(generator, i, theta0)`` returns the other values the rule carries at step 0, so
    that ``start = (theta0, *state(...))``. Both must draw from the generator they get (the
    inputs then cannot be chosen by an answer that patches ``np.random``); use ``i`` to make
    edge cases, e.g. a zero hyper-parameter for ``i == 0``. The namespaces are checked (and
    restored) first, so both may use numpy freely.
    """
    __tracebackhide__ = True
    _start_check()
    problems = []
    for i in range(count):
        generator = rng(seed + i)
        size = _QUADRATIC_SIZES[i % _len(_QUADRATIC_SIZES)]
        rotation, _ = np.linalg.qr(generator.normal(size=(size, size)))
        curvatures = generator.uniform(0.05, 1.0, size) * 10.0 ** generator.uniform(-1, 1)
        lr = _float(generator.uniform(0.05, 0.95) / curvatures.max())
        b = generator.normal(size=size)
        theta0 = generator.normal(scale=2.0, size=size)
        settings = dict(hyper(generator, i)) if hyper is not None else {}
        carried = _tuple(state(generator, i, theta0)) if state is not None else ()
        shown = ", ".join(f"{key}={_setting(value)}" for key, value in
                          [("lr", lr), *settings.items()])
        problems.append(QuadraticProblem(
            f"random quadratic, {size} coordinates, {shown} (seed {seed + i})",
            (rotation * curvatures) @ rotation.T, b, (theta0, *carried), lr, steps,
            types.MappingProxyType(settings)))
    return problems


def _mistake_hint(hints, got, wrong: int, problem, values, rtol: float, atol: float) -> str:
    """``"\\n  hint: <text>"`` for the first ``(text, mistake)`` whose predicted values the
    answer's values ``got`` match, the ``wrong`` one included; "" when none does."""
    for text, mistake in hints:
        try:
            predicted = mistake(problem, values)
            predicted = (predicted,) if _len(got) == 1 else _tuple(predicted)
        except Exception:  # noqa: BLE001, S112 - a hint that does not apply is skipped
            continue
        if _len(predicted) != _len(got) or predicted[wrong] is None:
            continue
        if all(p is None or _matches(g, p, rtol, atol) for g, p in zip(got, predicted)):
            return "\n  hint: " + text
    return ""


def check_steps(student_step, reference_step, problems, *, call, state, hints=(),
                name: str | None = None, rtol: float = 1e-7, atol: float = 1e-9,
                axis_names=("coordinate",)) -> None:
    """Compare a step rule with the reference at every step of every problem.

    ``state`` names the values the rule carries from step to step, theta first, e.g.
    ``("theta", "velocity")``: each step gets them and returns their new values in this order
    (with one name, the step returns the value itself). For every problem (an object with
    ``label``, ``steps`` and ``start``, the values at step 0, such as a ``QuadraticProblem``)
    and every step k = 1..steps:

    - ``call(student_step, problem, values, where)`` runs the answer on the values after step
      k - 1 (the test builds its arguments and returns ``call_answer(...)``);
    - ``reference_step(problem, values)`` runs the reference on the same values;
    - each new value is compared (``check_array``); the message names the problem, the step,
      the value and the wrong coordinates, e.g. "momentum_step, the worked example (lr=0.4,
      beta=0.5), step 1: new theta: 1 of 2 values wrong ...";
    - the next step starts from the reference's values, so that one error does not spread.

    ``hints``: ``(text, mistake)`` pairs; ``mistake(problem, values)`` returns the values a
    known mistake gives (``None`` for one it does not predict). When the answer's values match
    a mistake's on every value it predicts -- the wrong one included -- the message ends with
    ``hint: <text>`` of the first such mistake. ``check_own_code`` runs first.
    """
    __tracebackhide__ = True
    name = name or getattr(student_step, "__name__", "your function")
    check_own_code(student_step, name)
    for problem in problems:
        values = _tuple(problem.start)
        for step in range(1, problem.steps + 1):
            where = f"{name}, {problem.label}, step {step}"
            got = _returned_values(call(student_step, problem, values, where),
                                   [f"new_{part}" for part in state], where)
            expected = _returned_values(reference_step(problem, values), state,
                                        f"the reference at {where}")
            for index, part in enumerate(state):
                try:
                    check_array(f"{where}: new {part}", got[index], expected[index], rtol=rtol,
                                atol=atol, axis_names=axis_names,
                                shape_hint=f"new {part} must have the shape of {part}")
                except GradingError as error:
                    hint = _mistake_hint(hints, got, index, problem, values, rtol, atol)
                    _fail(str(error) + hint)
            values = expected


def worked_steps(tables) -> Callable:
    """A reference step for ``check_steps`` read from worked tables instead of computed.

    ``tables`` maps a problem's ``label`` to its rows, the values after step 1, 2, ... (each a
    tuple in ``state``'s order). ``check_steps`` feeds the reference the values it returned the
    step before, so the step is found by its values: those of ``problem.start`` are followed by
    row 1, row 1 by row 2, and so on. A visible test cell built on this holds the worked
    numbers and no reference; its hints' mistakes may call the returned function for the
    correct new values."""
    def step(problem, values):
        rows = [_tuple(problem.start)] + [_tuple(row) for row in tables[problem.label]]
        for before, after in itertools.pairwise(rows):
            if all(_array_equal(_array(a, dtype=_float64), _array(b, dtype=_float64))
                   for a, b in zip(values, before)):
                return _tuple(_array(value, dtype=_float64) for value in after)
        raise KeyError(f"no row of the worked table of {problem.label!r} precedes {values}")

    return step


def run_steps(student_step, problem, *, call, state, name: str | None = None) -> tuple:
    """The answer's own values after ``problem.steps`` steps, each step fed the previous one's
    result (not the reference's), as a tuple in the order of ``state``; ``call`` as for
    ``check_steps``. For the comparison with a table of the book, after ``check_steps``."""
    __tracebackhide__ = True
    name = name or getattr(student_step, "__name__", "your function")
    values = _tuple(problem.start)
    for step in range(1, problem.steps + 1):
        where = f"{name}, {problem.label}, step {step}"
        got = call(student_step, problem, values, where)
        values = _tuple(_read_numbers(v) for v in
                        _returned_values(got, [f"new_{part}" for part in state], where))
    return values


def _snapshot_at_import() -> None:
    """Snapshot numpy, math, the builtins, sys hooks and the gdlib modules loaded so far
    (this one included, now that it is complete)."""
    for module in (np, np.random, np.linalg, np.testing, math, builtins, sys):
        _snapshot(module)
    for name in _sorted(sys.modules):
        if name.split(".")[0] in ("gdlib", "gdgrade"):
            _snapshot(sys.modules[name])


_snapshot_at_import()
