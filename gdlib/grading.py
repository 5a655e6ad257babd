r"""Feedback and integrity checks for the autograded exercises (nbgrader test cells).

A test cell of an exercise notebook calls these functions instead of bare ``assert``\s, so that
a failing answer gets a message that says what is wrong::

    hinge on case "the seed's dog/cat/bird example": expected shape (3,), got (3, 3): return
    one loss per instance

    hinge on case 'normal scores 64x10 (seed 102)': 1 of 64 values wrong (indices count from
    0; tolerance |got - expected| <= 1e-09 + 1e-07 |expected|):
      instance 7: expected 1.41, got 1.49

and hints where it can tell more: NaN or infinity where the answer is finite, every value off
by the same amount (an extra term in a sum), or by the same factor (a sign, a mean for a sum).

API
---
``check_function(student_fn, reference_fn, cases, ...)``
    The main entry: for every ``case(label, *args, **kwargs)`` it calls the student's function
    on copies of the arguments (watching what it calls), then the reference, and compares with
    ``check_array``. Raises ``GradingError`` (an ``AssertionError``) with a message.
``check_array(name, got, expected, rtol=..., atol=..., axis_names=..., shape_hint=...)``
    Type, shape and value comparison with trusted primitives, naming the wrong entries.
``check_own_code(fn, name)``
    Fails when ``fn`` reaches the reference library (gdlib) or another library that computes the
    answer (torch, scipy, sklearn, jax, tensorflow) through its globals, closure or defaults.
``case(label, *args, **kwargs)``, ``random_cases(label, make, shapes, seed)``, ``rng(seed)``
    Build the inputs: one ``Case``, or one per shape with arguments ``make(generator, *shape)``.
``protect(*module_names)``, ``require_untampered()``, ``reset_kernel_hooks()``
    Integrity helpers, described below.

Recipe for a chapter's exercise notebook (``solutions/NN_slug/NN_slug.ipynb``)
----------------------------------------------------------------------------
(``solutions/01_losses/01_losses.ipynb`` is the worked example.)

- A locked setup cell first: ``import numpy as np``, ``from gdlib import grading``,
  ``grading.protect("gdlib.<module>")`` for each module holding a reference.
- Locked cells for data the visible tests use (e.g. the seed's example as arrays).
- One answer cell per part (solution cell; the code between ``### BEGIN SOLUTION`` and
  ``### END SOLUTION`` becomes ``raise NotImplementedError()``), keeping the ``def`` line and
  docstring outside the markers.
- One locked grade cell per part, with points. It imports what it uses itself (``from gdlib
  import grading``, ``from gdlib.<module> import f as reference_f``): it must not depend on
  an earlier test cell having run. Visible part: ``check_function`` on the seed's example,
  plus ``check_array`` against the seed's printed numbers with a tolerance matching their
  rounding. Hidden part, between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``:
  ``check_function`` on ``random_cases`` (several seeds and shapes) and on the edge cases the
  task text announces. Pass gdlib's own function as the reference (it is checked to be
  gdlib's); when the student's signature differs, wrap the *student's* function instead.
  Do not end a grade cell with an expression that displays a number: nbgrader reads it as
  partial credit (the check functions return None, so a call is fine).
- Then ``make exercises`` and commit both notebooks; tests/test_exercises.py and
  tests/test_notebooks.py pick the new chapter up.

Threat model (what this module can and cannot guarantee)
--------------------------------------------------------
nbgrader runs the student's cells and the instructor's test cells in **one Python process**.
Whatever the tests can reach, code in an answer cell can reach too, so in-process grading can
always be subverted by a determined student; this module raises the cost of the known attacks
and makes them visible, and ``python -m gdlib.course scan`` (a static scan of the submitted
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
2. *Calling the reference* (``from gdlib.losses import hinge``, ``import gdlib; gdlib.losses.hinge``,
   ``sys.modules["gdlib.losses"]``, ``importlib``, torch's own loss). ``check_own_code`` inspects
   the function's code names, globals, closure and defaults (recursively through the student's
   own helper functions) for objects of a forbidden package, and string constants that name one.
   Then every call of the student's function runs under a profile hook (``sys.setprofile``, and
   ``threading.setprofile`` for threads it starts) that records any Python frame executing code
   of a forbidden package and any call of ``sys._getframe``, ``sys.settrace`` or
   ``sys.setprofile`` (frame inspection could read the grader's locals). Either fails the check.
3. *Hard-coding the visible example*: hidden tests compare with the reference on random inputs
   drawn with ``rng(seed)`` (a generator made from a ``default_rng`` captured at import, so
   patching ``np.random`` cannot choose the hidden inputs).
4. *Editing or deleting test cells*: handled by nbgrader, not here. Locked cells whose source
   changed are restored from the gradebook, and with ``OverwriteCells.add_missing_cells = True``
   (set in ``nbgrader_config.py``) deleted grade cells are re-inserted and run.
5. *Swallowing errors*: ``set_custom_exc`` alone does not help a student under nbgrader 0.9.6:
   the traceback is hidden but the kernel's execute reply still has status "error", and
   nbgrader then adds an error output to the cell (0 points). ``reset_kernel_hooks`` -- called
   by every check -- also restores the traceback display and removes
   custom exception handlers, student AST and input transformers, instance-level overrides of
   the shell's run/traceback methods, student event callbacks, and trace/profile functions.
   It cannot act on the cell it runs in if a transformer rewrote that cell before it ran: such
   submissions are what the static scan flags.

What is *not* prevented: code that runs before this module is imported (a student can move
cells), reading the hidden tests' random inputs by means the profile hook does not see (e.g.
``gc.get_objects()``), rebinding functions of this module, or any other deliberate tampering
with the interpreter. The scan flags the usual tools for that (``sys.modules``, ``importlib``,
``inspect``, ``gc``, ``ctypes``, ``setattr``, assignments to attributes of numpy, builtins, sys,
gdlib, torch, IPython hooks...), and a flagged submission is held for manual grading. A
grader that cannot be subverted needs the student's code in a separate process.
"""

import builtins
import copy
import math
import re
import sys
import sysconfig
import threading
import types
from importlib import import_module
from importlib.util import find_spec
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.linalg
import numpy.random
import numpy.testing

__all__ = [
    "FORBIDDEN_PACKAGES",
    "Case",
    "GradingError",
    "case",
    "check_array",
    "check_function",
    "check_own_code",
    "protect",
    "random_cases",
    "require_untampered",
    "reset_kernel_hooks",
    "rng",
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
_sorted = builtins.sorted
_deepcopy = copy.deepcopy
_setprofile = sys.setprofile
_getprofile = sys.getprofile
_settrace = sys.settrace
_thread_setprofile = threading.setprofile
_thread_settrace = threading.settrace
_getframe = sys._getframe
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
    _start_check()
    cases = []
    for offset, shape in enumerate(shapes):
        shape = _tuple(shape)
        args = make(rng(seed + offset), *shape)
        size = " " + "x".join(str(d) for d in shape) if shape else ""
        cases.append(Case(f"{label}{size} (seed {seed + offset})", _tuple(args), {}))
    return cases


def rng(seed: int) -> np.random.Generator:
    """A numpy ``Generator`` seeded with ``seed``, made by the ``default_rng`` of import time.

    Hidden tests draw their inputs from it: an answer cell that replaces ``np.random`` functions
    cannot choose them.
    """
    return _default_rng(seed)


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

    Call it in the locked setup cell, right after ``from gdlib import grading``, for every
    module whose functions the tests use as reference, e.g. ``grading.protect("gdlib.losses")``:
    an answer that then replaces ``gdlib.losses.softmax`` (which the reference calls) is caught.
    """
    for name in module_names:
        module = import_module(name)
        for loaded in _sorted(sys.modules):
            if loaded == name or loaded.startswith(name + "."):
                _snapshot(sys.modules[loaded])
        _snapshot(module)
    # gdlib's own modules loaded as a side effect (e.g. gdlib.arrays) are protected too.
    for loaded in _sorted(sys.modules):
        if loaded == "gdlib" or loaded.startswith("gdlib."):
            _snapshot(sys.modules[loaded])


def require_untampered() -> None:
    """Fail when an attribute of a snapshotted module differs from its snapshot.

    Replaced attributes are put back (so the reference computes with the real numpy), and the
    failure is sticky: every later check of the session fails too.
    """
    for name, (module, saved) in _SNAPSHOTS.items():
        current = vars(module)
        for key, value in saved.items():
            if current.get(key, _MISSING) is not value:
                _TAMPERED.append(f"{name}.{key}")
                current[key] = value
    if _TAMPERED:
        replaced = ", ".join(_sorted(set(_TAMPERED)))
        raise GradingError(
            f"grading integrity: code in this notebook replaced {replaced}. Answers must not "
            f"modify numpy, the builtins, sys or gdlib; every test fails until that code is "
            f"removed."
        )


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
    reset_kernel_hooks()
    require_untampered()


# --------------------------------------------------------------------------------------------
# Array comparison with feedback
# --------------------------------------------------------------------------------------------


def _fmt(x) -> str:
    return f"{x:.6g}" if _isinstance(x, float) else repr(x)


def _as_numbers(name: str, value, what: str):
    """``value`` as a float64 ndarray, or a GradingError that says what it is instead."""
    if value is None:
        raise GradingError(f"{name}: {what} is None; did you forget `return`?")
    try:
        raw = _array(value)
    except Exception as error:  # noqa: BLE001 - any failure is reported to the student
        raise GradingError(
            f"{name}: {what} ({type(value).__name__}) cannot be read as an array: {error}"
        ) from None
    if raw.dtype.kind not in "biuf":
        raise GradingError(
            f"{name}: {what} holds {raw.dtype} values, expected real numbers (a float array)"
        )
    return raw.astype(_float64)


def _index_text(index: tuple, axis_names) -> str:
    if axis_names and _len(axis_names) >= _len(index):
        return ", ".join(f"{axis} {i}" for axis, i in zip(axis_names, index))
    return "index [" + ", ".join(str(i) for i in index) + "]"


def _constant_factor(got, expected):
    """c when got == c * expected for one c != 1 (a missing mean, a wrong sign), else None."""
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
    """c when got == expected + c for one c != 0 (an extra or a missing term), else None."""
    if got.size < 2:
        return None
    difference = got - expected
    offset = _float(difference.mean())
    if not _isfinite(offset) or _abs(offset) < 1e-9:
        return None
    if bool((_abs(difference - offset) <= 1e-9 + 1e-7 * _abs(offset)).all()):
        return offset
    return None


def check_array(name: str, got, expected, *, rtol: float = 1e-7, atol: float = 1e-9,
                axis_names=None, shape_hint: str = "", max_listed: int = 5) -> None:
    """Raise ``GradingError`` unless ``got`` equals ``expected`` entry by entry.

    An entry passes when |got - expected| <= atol + rtol |expected| or both are the same
    infinity. ``axis_names`` (e.g. ``("instance", "class")``) name the indices of wrong entries
    in the message; ``shape_hint`` is appended to a shape mismatch (e.g. "return one loss per
    instance"). The message lists up to ``max_listed`` wrong entries, points out NaN and
    infinity, and a constant factor (wrong sign, mean instead of sum) when there is one.
    Uses only primitives captured at import and ndarray operators.
    """
    _start_check()
    expected = _as_numbers(name, expected, "the expected value")
    got = _as_numbers(name, got, "your result")
    if got.shape != expected.shape:
        message = f"{name}: expected shape {expected.shape}, got {got.shape}"
        raise GradingError(message + (f": {shape_hint}" if shape_hint else ""))
    with _errstate(all="ignore"):
        good = (got == expected) | (_abs(got - expected) <= atol + rtol * _abs(expected))
    bad = ~good
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
            "large number (overflow), log(0), or 0 * inf"
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
    raise GradingError("\n".join(lines))


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


def _foreign_uses(fn, packages, dirs, seen) -> list:
    """Descriptions of forbidden objects ``fn`` can reach, following the student's helpers."""
    if id(fn) in seen:
        return []
    seen.add(id(fn))
    origin = _forbidden_origin(fn, packages, dirs)
    if origin is not None:
        return [origin]
    found = []
    for inner in _unwrap(fn):
        found += _foreign_uses(inner, packages, dirs, seen)
    if not _isinstance(fn, types.FunctionType):
        return found
    reachable = [cell.cell_contents for cell in (fn.__closure__ or ()) if _has_contents(cell)]
    reachable += list(fn.__defaults__ or ()) + list((fn.__kwdefaults__ or {}).values())
    module_path = re.compile(r"^\s*(" + "|".join(map(re.escape, packages)) + r")(\.\w+)*\s*$")
    for code in _code_objects(fn.__code__):
        for name in code.co_names:
            if name in fn.__globals__:
                reachable.append(fn.__globals__[name])
        for const in code.co_consts:
            if _isinstance(const, str) and module_path.match(const):
                found.append(f"the string {const!r}")
    for obj in reachable:
        origin = _forbidden_origin(obj, packages, dirs)
        if origin is not None:
            found.append(origin)
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


def _reference_message(name: str, uses, packages) -> str:
    return (
        f"{name} must compute its result itself, with numpy; it uses {', '.join(uses)}. "
        f"Answers may not use {', '.join(packages)} (gdlib holds the reference implementation "
        f"the grader compares against), nor inspect or trace the grader's frames."
    )


def check_own_code(fn, name: str | None = None, forbidden=FORBIDDEN_PACKAGES) -> None:
    """Raise ``GradingError`` when ``fn`` can reach code of a ``forbidden`` package.

    Looks at the global names its code uses, its closure, its defaults, string constants that
    name a forbidden module (``sys.modules["gdlib.losses"]``), and recursively at the student's
    own helper functions it calls. ``check_function`` runs it first, then also watches the
    calls at run time (which catches what this static look misses).
    """
    _start_check()
    name = name or getattr(fn, "__name__", "your function")
    if not callable(fn):
        raise GradingError(f"{name} is not a function (it is a {type(fn).__name__})")
    packages = _tuple(forbidden)
    uses = _dedupe(_foreign_uses(fn, packages, _forbidden_dirs(packages), set()))
    if uses:
        raise GradingError(_reference_message(name, uses, packages))


def _in_dirs(code, dirs) -> bool:
    return code.co_filename.startswith(dirs) or _code_path(code).startswith(dirs)


def _call_watched(fn, args, kwargs, dirs):
    """``fn(*args, **kwargs)`` and the forbidden code it ran (profile hook on this thread and
    on threads it starts)."""
    seen = []
    this_frame_code = _call_watched.__code__

    def hook(frame, event, arg):
        if frame.f_code is this_frame_code:
            return
        if event == "call":
            # Record where forbidden code is entered, not the calls it makes internally.
            caller = frame.f_back
            if _in_dirs(frame.f_code, dirs) and not (caller and _in_dirs(caller.f_code, dirs)):
                module = frame.f_globals.get("__name__", frame.f_code.co_filename)
                seen.append(f"{module}.{frame.f_code.co_name}")
        elif event == "c_call":
            label = _FORBIDDEN_BUILTINS.get(id(arg))
            if label is not None:
                seen.append(label)

    previous = _getprofile()
    _thread_setprofile(hook)
    _setprofile(hook)
    try:
        result = fn(*args, **kwargs)
        # Read the result into a plain ndarray here, under the hook: an object's __array__ or
        # __float__ could otherwise run forbidden code after the watch.
        if result is not None:
            try:
                raw = _array(result)
            except Exception:  # noqa: BLE001 - check_array reports what the result is
                raw = None
            if raw is not None and raw.dtype.kind in "biuf":
                result = raw.astype(_float64)
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


def _genuine_reference(reference_fn) -> None:
    """Fail when the reference is not gdlib's own function (an answer replaced it)."""
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
        raise GradingError(
            f"grading integrity: the reference function {reference_fn!r} is not gdlib's own"
        )
    if module_name not in _SNAPSHOTS:
        protect(module_name)


def check_function(student_fn, reference_fn, cases, *, name: str | None = None,
                   rtol: float = 1e-7, atol: float = 1e-9, axis_names=None,
                   shape_hint: str = "", forbidden=FORBIDDEN_PACKAGES) -> None:
    """Compare ``student_fn`` with ``reference_fn`` on every case; raise ``GradingError``.

    For each ``Case`` the student's function is called first, on copies of the arguments and
    under the profile hook (see the module docstring); then the reference is called on the
    originals. A failure names the case, and: an exception raised by the answer (chained, so
    the traceback shows the student's line), use of a forbidden package, an argument modified
    in place, a wrong type or shape, or the wrong entries (``check_array``).
    ``NotImplementedError`` (an unanswered exercise) propagates unchanged.
    """
    name = name or getattr(student_fn, "__name__", "your function")
    check_own_code(student_fn, name, forbidden)
    _genuine_reference(reference_fn)
    packages = _tuple(forbidden)
    dirs = _forbidden_dirs(packages)
    arg_names = _argument_names(reference_fn)
    for item in cases:
        label, args, kwargs = item
        student_args = [_copy(a) for a in args]
        student_kwargs = {k: _copy(v) for k, v in kwargs.items()}
        where = f"{name} on case {label!r}"
        try:
            with _errstate(all="ignore"):
                got, uses = _call_watched(student_fn, student_args, student_kwargs, dirs)
        except NotImplementedError:
            raise
        except Exception as error:
            raise GradingError(f"{where} raised {type(error).__name__}: {error}") from error
        finally:
            _start_check()
        if uses:
            raise GradingError(_reference_message(name, uses, packages))
        for position, (before, after) in enumerate(zip(args, student_args)):
            if not _same_value(before, after):
                arg = arg_names[position] if position < _len(arg_names) else f"#{position}"
                raise GradingError(
                    f"{where} modified its argument {arg} in place; work on a copy or build a "
                    f"new array (e.g. {arg} - x instead of {arg} -= x)"
                )
        expected = reference_fn(*args, **kwargs)
        check_array(where, got, expected, rtol=rtol, atol=atol, axis_names=axis_names,
                    shape_hint=shape_hint)


def _snapshot_at_import() -> None:
    """Snapshot numpy, math, the builtins, sys hooks and the gdlib modules loaded so far
    (this one included, now that it is complete)."""
    for module in (np, np.random, np.linalg, np.testing, math, builtins, sys):
        _snapshot(module)
    for name in _sorted(sys.modules):
        if name == "gdlib" or name.startswith("gdlib."):
            _snapshot(sys.modules[name])


_snapshot_at_import()
