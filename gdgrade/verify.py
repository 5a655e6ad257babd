"""Answers checked outside the student's process: the verified grade of every grade cell.

In ``nbgrader autograde`` a submission's answer cells and the instructor's test cells share one
kernel, so the in-kernel result can in principle be subverted by the student's code (see
``gdgrade.grading``'s threat model). ``verify_notebook`` grades the same notebook again, with
the roles separated:

- an **answer process** (``gdgrade/answer_worker.py``, started in the grading sandbox with
  gdlib, gdgrade, torch, scipy and sklearn hidden as well as the course's private files) runs
  the notebook's cells except the grade cells, in order, and nothing else;
- the **grading process** (nbgrader's, which never runs student code) runs each grade cell's
  source -- taken from the gradebook, hidden tests included -- in a fresh namespace where every
  name the cell reads but does not define is looked up in the answer process: a function
  becomes a proxy that sends its arguments there and gets the result back, a value comes back
  as data. The comparison with ``gdlib`` happens here, with a reference the student's code
  never shared a process with.

Only plain data crosses (JSON: numbers, strings, lists, tuples, real-valued arrays as their
little-endian bytes in base64; callbacks
of the tests by number). No pickle, no object of the student's: an object with a lying
``__eq__``, ``__array__`` or ``__float__``, or a numpy subclass, is read *in the answer
process* into its stored numbers (``ndarray.view``, ``float.__float__``) or refused, and the
comparison runs on plain float arrays here.

Policy (each case gives 0 points for the cell, with the reason in the log and the comments):

- an answer that **raises** -- the error type and message are reported, as in the kernel;
- an answer that **times out** (``CALL_TIMEOUT`` seconds per call, ``TOTAL_TIMEOUT`` per
  notebook) -- the answer process is killed, and every later call of that notebook fails;
- an answer that returns the **wrong type or shape** -- the test's own message (``check_array``);
  an object that cannot be read as numbers arrives as ``Unreadable`` and fails the same way;
- an answer process that **dies** (``os._exit``, a signal, a memory limit) -- later cells fail;
- a submission whose cells cannot be read (**malformed notebook**) -- every cell 0, reported.

The verified score is the grade (``VerifyAnswers`` writes it to the gradebook); nbgrader's
in-kernel outputs stay in the notebook as feedback. Where the two disagree the log and the
submission's comments say so: a cell that passed in the kernel and fails here is a sign of
tampering with the in-kernel tests.
"""

from __future__ import annotations

import ast
import base64
import binascii
import builtins
import contextlib
import importlib.util
import io
import json
import math
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gdgrade.sandbox import SANDBOX_VARIABLE, course_hidden_paths

CALL_TIMEOUT = 20.0  # seconds for one call of an answer (nbgrader's cell timeout)
TOTAL_TIMEOUT = 300.0  # seconds for all the calls of one notebook
WORKER = Path(__file__).with_name("answer_worker.py")
# What the answer process must not import: the reference and the libraries that compute it.
HIDDEN_PACKAGES = ("gdlib", "gdgrade", "torch", "functorch", "scipy", "sklearn", "jax",
                   "tensorflow")
MODULES = {"numpy": np, "math": math}  # modules a grade cell may read by an answer's name


class AnswerProcessError(RuntimeError):
    """The answer process failed: timed out, died, or sent something that is not a reply."""


class AnswerError(Exception):
    """The answer raised; the message is its type and message, as the student would see."""


@dataclass(frozen=True)
class Unreadable:
    """What an answer returned that is not plain data (its type's name): never equal to
    anything, and it cannot be read as an array."""

    what: str

    def __repr__(self) -> str:
        return f"<{self.what}: not numbers>"

    def __array__(self, dtype=None, copy=None):
        raise TypeError(f"the answer returned {self.what}, which is not numbers")


def _package_dirs() -> list:
    dirs = []
    for name in HIDDEN_PACKAGES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec and spec.submodule_search_locations:
            dirs.extend(str(Path(p).resolve()) for p in spec.submodule_search_locations)
    return dirs


# --- plain data ------------------------------------------------------------------------------


def encode(value, callbacks: list):
    """Arguments of a test's call as plain data; callables become callback numbers."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else {"f": repr(value)}
    if isinstance(value, tuple):
        return {"t": [encode(v, callbacks) for v in value]}
    if isinstance(value, list):
        return [encode(v, callbacks) for v in value]
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        dtype = np.dtype(np.float64) if value.dtype.kind == "f" else value.dtype.newbyteorder("<")
        data = base64.b64encode(np.ascontiguousarray(value, dtype=dtype).tobytes())
        return {"a": {"dtype": dtype.str, "shape": list(value.shape), "b64": data.decode("ascii")}}
    if isinstance(value, dict):
        return {str(k): encode(v, callbacks) for k, v in value.items()}
    if callable(value):
        callbacks.append(value)
        return {"cb": len(callbacks) - 1}
    raise TypeError(f"cannot send a {type(value).__name__} to the answer process")


def decode(value, depth: int = 0):
    """The answer process's plain data as Python values: real arrays, tuples, numbers."""
    if depth > 40:
        return Unreadable("a structure nested too deeply")
    if isinstance(value, list):
        return [decode(v, depth + 1) for v in value]
    if not isinstance(value, dict):
        return value if value is None or isinstance(value, (bool, int, float, str)) else (
            Unreadable(type(value).__name__))
    if set(value) == {"t"} and isinstance(value["t"], list):
        return tuple(decode(v, depth + 1) for v in value["t"])
    if set(value) == {"f"}:
        try:
            return float(value["f"])
        except (TypeError, ValueError):
            return Unreadable("a malformed number")
    if set(value) == {"u"}:
        return Unreadable(str(value["u"])[:200])
    if set(value) == {"a"} and isinstance(value["a"], dict):
        return _decode_array(value["a"])
    return Unreadable("a malformed value")


def _decode_array(spec: dict):
    """``{"dtype", "shape", "b64"}``: the little-endian bytes of a real array, in base64."""
    try:
        dtype = np.dtype(spec["dtype"])
        shape = tuple(int(n) for n in spec["shape"])
        if dtype.kind not in "biuf" or dtype.byteorder == ">" or min(shape, default=0) < 0:
            raise ValueError
        data = base64.b64decode(spec["b64"], validate=True)
        if len(data) != math.prod(shape) * dtype.itemsize:
            raise ValueError
        array = np.frombuffer(data, dtype=dtype).reshape(shape)
        return array.astype(np.float64 if dtype.kind == "f" else dtype)  # a writable copy
    except (KeyError, TypeError, ValueError, OverflowError, binascii.Error):
        return Unreadable("a malformed array")


# --- the answer process ----------------------------------------------------------------------


class AnswerProcess:
    """The sandboxed process that runs one submission's cells (see the module docstring)."""

    def __init__(self, hidden=(), cwd=None, sandbox: bool | None = None,
                 call_timeout: float = CALL_TIMEOUT, total_timeout: float = TOTAL_TIMEOUT):
        if sandbox is None:
            sandbox = os.environ.get(SANDBOX_VARIABLE, "").lower() != "off"
        command = [sys.executable, "-I", "-c", WORKER.read_text(encoding="utf-8")]
        if sandbox:
            hide = [w for p in (*hidden, *_package_dirs()) for w in ("--hide", str(p))]
            command = [sys.executable, "-m", "gdgrade.sandbox", *hide, "--command", "--",
                       *command]
        env = {k: v for k, v in os.environ.items() if not k.startswith("GDCOURSE_")}
        self._scratch = tempfile.TemporaryDirectory(prefix="gdgrade-answers-")
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=cwd or self._scratch.name, env=env, start_new_session=True)
        self.call_timeout, self.total_timeout = call_timeout, total_timeout
        self.deadline = time.monotonic() + total_timeout
        self.failure: str | None = None
        self._buffer = b""

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            stream.close()
        self._scratch.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # one message each way
    def _send(self, message: dict) -> None:
        try:
            self.process.stdin.write(json.dumps(message).encode() + b"\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            self._fail("the answer process has ended")

    def _fail(self, reason: str):
        self.failure = self.failure or reason
        self.close_quietly()
        raise AnswerProcessError(self.failure)

    def close_quietly(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _receive(self, timeout: float) -> dict:
        end = min(time.monotonic() + timeout, self.deadline)
        out = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            left = end - time.monotonic()
            if left <= 0:
                self._fail(f"the answer did not finish within {timeout:g} s (or the "
                           f"notebook's {self.total_timeout:g} s): stopped")
            ready, _, _ = select.select([out], [], [], left)
            if ready:
                chunk = os.read(out, 1 << 20)
                if not chunk:
                    status = self.process.wait()
                    detail = self.process.stderr.read().decode(errors="replace")[-800:]
                    self._fail(f"the answer process ended (exit status {status})"
                               + (f": {detail.strip()}" if detail.strip() else ""))
                self._buffer += chunk
                if len(self._buffer) > 256 * 2**20:
                    self._fail("the answer sent more than 256 MiB")
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            message = json.loads(line)
        except ValueError:
            self._fail("the answer process sent something that is not a reply")
        if not isinstance(message, dict):
            self._fail("the answer process sent something that is not a reply")
        return message

    def _request(self, message: dict, expect: str, timeout: float) -> dict:
        if self.failure:
            raise AnswerProcessError(self.failure)
        self._send(message)
        reply = self._receive(timeout)
        if reply.get("op") != expect:
            self._fail(f"the answer process sent {reply.get('op')!r} instead of {expect!r}")
        return reply

    # the three requests
    def run_cell(self, source: str) -> str | None:
        """Run a cell's source there; the error it raised (``"Type: message"``) or None."""
        reply = self._request({"op": "exec", "source": source}, "done", self.call_timeout)
        return reply.get("error")

    def describe(self, names) -> dict:
        """``{name: ("function" | "module:<name>" | "value", value or None)}`` for the names
        the cells defined."""
        reply = self._request({"op": "describe", "names": sorted(names)}, "described",
                              self.call_timeout)
        kinds, values = reply.get("kinds") or {}, reply.get("values") or {}
        return {str(name): (str(kind), decode(values.get(name))) for name, kind in kinds.items()}

    def call(self, name: str, args, kwargs):
        """``name(*args, **kwargs)`` there; its result as plain data. Raises ``AnswerError``
        when the answer raised, ``AnswerProcessError`` when the process failed."""
        if self.failure:
            raise AnswerProcessError(self.failure)
        callbacks: list = []
        self._send({"op": "call", "name": name, "args": [encode(a, callbacks) for a in args],
                    "kwargs": {k: encode(v, callbacks) for k, v in kwargs.items()}})
        while True:
            reply = self._receive(self.call_timeout)
            op = reply.get("op")
            if op == "result":
                _write_back(args, reply.get("modified"))
                return decode(reply.get("value"))
            if op == "error":
                raise AnswerError(f"{reply.get('type')}: {reply.get('message')}")
            if op != "callback":
                self._fail(f"the answer process sent {op!r} during a call")
            self._answer_callback(reply, callbacks)

    def _answer_callback(self, request: dict, callbacks: list) -> None:
        try:
            function = callbacks[int(request["id"])]
            args = [decode(a) for a in request.get("args", [])]
            kwargs = {str(k): decode(v) for k, v in (request.get("kwargs") or {}).items()}
            value = encode(function(*args, **kwargs), [])
            self._send({"op": "return", "value": value})
        except (KeyError, IndexError, TypeError, ValueError) as error:
            self._send({"op": "raise", "message": f"{type(error).__name__}: {error}"})
        except Exception as error:  # noqa: BLE001 - the test's callback refused the input
            self._send({"op": "raise", "message": f"{type(error).__name__}: {error}"})


def _write_back(args, modified) -> None:
    """Apply to the caller's arrays what the answer changed in its copies (so that the test's
    check of arguments modified in place sees it, as in the kernel)."""
    if not isinstance(modified, dict):
        return
    for position, value in modified.items():
        try:
            arg, new = args[int(position)], decode(value)
        except (ValueError, IndexError):
            continue
        if isinstance(arg, np.ndarray) and isinstance(new, np.ndarray):
            if new.shape == arg.shape:
                np.copyto(arg, new, casting="unsafe")
            else:
                arg.fill(np.nan)  # changed shape in place: certainly not the same value


def remote_function(answers: AnswerProcess, name: str):
    """A function of the grading process that calls the answer ``name`` over there."""

    def answer(*args, **kwargs):
        return answers.call(name, args, kwargs)

    answer.__name__ = answer.__qualname__ = name
    return answer


# --- grading a notebook ----------------------------------------------------------------------


def free_names(source: str) -> set:
    """Names a grade cell reads but does not bind at the top level (nor are builtins)."""
    from gdgrade.scan import module_bindings

    tree = ast.parse(source)
    bound = {name for _, name, _ in module_bindings(tree)}
    read = {node.id for node in ast.walk(tree)
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    return read - bound - set(dir(builtins))


@dataclass(frozen=True)
class Verified:
    """The verified result of one grade cell: its score out of ``points`` and why."""

    grade_id: str
    score: float
    points: float
    message: str = ""


def _grade_namespace(answers: AnswerProcess, names) -> dict:
    namespace = {"__name__": "__gdgrade_verify__", "__builtins__": builtins}
    for name, (kind, value) in answers.describe(names).items():
        if kind == "function":
            namespace[name] = remote_function(answers, name)
        elif kind.startswith("module:"):
            module = MODULES.get(kind.split(":", 1)[1])
            if module is not None:
                namespace[name] = module
        else:
            namespace[name] = value
    return namespace


def _run_grade_cell(answers: AnswerProcess, grade_id: str, source: str, points: float):
    try:
        namespace = _grade_namespace(answers, free_names(source))
        with contextlib.redirect_stdout(io.StringIO()):  # "visible tests passed" etc.
            exec(compile(source, f"<grade cell {grade_id}>", "exec"), namespace)  # noqa: S102
    except SyntaxError as error:
        return Verified(grade_id, 0.0, points, f"the grade cell does not parse: {error}")
    except AnswerProcessError as error:
        return Verified(grade_id, 0.0, points, f"{error}")
    except Exception as error:  # noqa: BLE001 - any failure of the tests is 0 for the cell
        return Verified(grade_id, 0.0, points, f"{type(error).__name__}: {error}")
    return Verified(grade_id, points, points)


def verify_cells(cells, grade_cells: dict, hidden=(), sandbox: bool | None = None,
                 call_timeout: float = CALL_TIMEOUT) -> list:
    """Grade a submission out of process. ``cells``: the notebook's code cells in order, as
    ``(grade_id or None, source)``; ``grade_cells``: ``{grade_id: (source, points)}``, the
    instructor's grade cells (their sources replace the notebook's). Returns a ``Verified`` per
    grade cell, in notebook order.

    When the answer process ends or is stopped (a cell that kills it, exits, loops for ever,
    or an answer that does so while a test calls it), what it was doing fails -- the grade cell
    being run gets 0 -- and a fresh process replays the cells that ran before, without the one
    that ended it: the honest cells that follow are graded as usual."""
    results, done = [], []  # done: sources of the cells that ran to their end
    options = {"hidden": hidden, "sandbox": sandbox, "call_timeout": call_timeout}
    answers = AnswerProcess(**options)
    try:
        for grade_id, source in cells:
            if answers.failure:
                answers.close()
                answers = _replayed(done, options)
            if grade_id in grade_cells:
                test_source, points = grade_cells[grade_id]
                results.append(_run_grade_cell(answers, grade_id, test_source, points))
                continue
            try:
                answers.run_cell(_python_only(source))
                done.append(_python_only(source))
            except AnswerProcessError:
                pass  # this cell is dropped; the next one starts a fresh process
    finally:
        answers.close()
    seen = {r.grade_id for r in results}
    results += [Verified(g, 0.0, points, "this grade cell is not in the notebook")
                for g, (_, points) in grade_cells.items() if g not in seen]
    return results


def _replayed(sources, options) -> AnswerProcess:
    """A fresh answer process that has run ``sources`` (cells that ended normally before)."""
    answers = AnswerProcess(**options)
    for source in sources:
        try:
            answers.run_cell(source)
        except AnswerProcessError:  # it ended this time: give up replaying, later cells fail
            break
    return answers


def _python_only(source: str) -> str:
    """A cell's source without IPython's magics and shell escapes (lines starting % or !)."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in source.splitlines())


def verify_notebook(nb, grade_cells: dict, root=None, sandbox: bool | None = None,
                    call_timeout: float = CALL_TIMEOUT) -> list:
    """``verify_cells`` for an nbformat notebook of the course at ``root`` (whose private
    files the answer process must not see)."""
    cells = [(cell.get("metadata", {}).get("nbgrader", {}).get("grade_id"), cell.source)
             for cell in nb.cells if cell.cell_type == "code"]
    hidden = course_hidden_paths(root) if root else []
    return verify_cells(cells, grade_cells, hidden, sandbox, call_timeout)
