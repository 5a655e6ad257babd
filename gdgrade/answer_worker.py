"""The answer process of ``gdgrade.verify``: runs a submission's cells, calls its functions.

Started by ``gdgrade.verify.AnswerProcess`` as ``python -I -c <this file's source>`` inside the
grading sandbox (``gdgrade.sandbox``), with gdlib, gdgrade, torch, scipy and sklearn hidden:
it imports nothing of the course and needs only numpy. It speaks JSON lines on two private
file descriptors (the standard streams are pointed at /dev/null, so what the student's code
prints cannot be taken for a reply). Requests (one per line, replies in the same order):

    {"op": "exec", "source": ...}            -> {"op": "done", "error": null | "Type: message"}
    {"op": "describe", "names": [...]}       -> {"op": "described", "kinds": {name: kind},
                                                  "values": {name: value}}
    {"op": "call", "name": ..., "args": [...], "kwargs": {...}}
                                             -> {"op": "result", "value": value,
                                                  "modified": {position: new value}}
                                              | {"op": "error", "type": ..., "message": ...}

While a call runs, the worker may ask for a callback the grader passed as an argument:
``{"op": "callback", "id": k, "args": [...]}``, answered by ``{"op": "return", "value": ...}``
or ``{"op": "raise", "message": ...}``. Values are plain data only (``encode``): numbers,
strings, None, lists, tuples ``{"t": [...]}``, real arrays ``{"a": {dtype, shape, b64}}`` (the little-endian bytes, base64:
floats as float64, NaN and infinities included),
callbacks ``{"cb": k}``; anything else becomes ``{"u": type name}``. No pickle, ever.
"""

import base64
import io
import json
import math
import os
import sys

PROTOCOL_IN, PROTOCOL_OUT = os.dup(0), os.dup(1)
_null = os.open(os.devnull, os.O_RDWR)
for _fd in (0, 1, 2):
    os.dup2(_null, _fd)
sys.stdin, sys.stdout, sys.stderr = io.StringIO(), io.StringIO(), io.StringIO()

import numpy as np  # (after the streams are safe)

MAX_ITEMS = 10_000_000
_reader = os.fdopen(PROTOCOL_IN, "rb", buffering=0)
_writer = os.fdopen(PROTOCOL_OUT, "wb", buffering=0)
_buffer = b""


def _send(message: dict) -> None:
    _writer.write(json.dumps(message).encode() + b"\n")


def _receive() -> dict:
    global _buffer
    while b"\n" not in _buffer:
        chunk = _reader.read(65536)
        if not chunk:
            os._exit(0)
        _buffer += chunk
    line, _buffer = _buffer.split(b"\n", 1)
    return json.loads(line)


class _Sink(io.StringIO):
    """Where the student's prints go: nowhere (and never growing)."""

    def write(self, text):
        return len(text)


def encode(value, depth: int = 0):
    """``value`` as plain JSON data (see the module docstring)."""
    if depth > 32:
        return {"u": "a structure nested too deeply"}
    kind = type(value)
    if value is None or kind in (bool, str):
        return value
    if kind is int:
        return value if abs(value) < 2**63 else float(value)
    if kind is float:
        return value if math.isfinite(value) else {"f": repr(value)}
    if isinstance(value, bool):  # never reached: bool cannot be subclassed
        return bool(value)
    if isinstance(value, int):  # an int subclass: its stored value, not what it pretends
        return encode(int.__index__(value), depth + 1)
    if isinstance(value, float):
        return encode(float.__float__(value), depth + 1)
    if kind is tuple:
        return {"t": [encode(item, depth + 1) for item in value]}
    if kind is list:
        return [encode(item, depth + 1) for item in value]
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return encode(value.item(), depth + 1)
    if isinstance(value, np.ndarray):
        array = value.view(np.ndarray)  # a subclass's data, without its methods
        if array.dtype.kind not in "biuf":
            return {"u": f"an array of {array.dtype}"}
        if array.size > MAX_ITEMS:
            return {"u": f"an array of {array.size} values (too large)"}
        return encode_array(array)
    if hasattr(kind, "__array__"):  # e.g. a tensor: read its numbers here, in its process
        try:
            return encode(np.asarray(value), depth + 1)
        except Exception as error:  # noqa: BLE001
            return {"u": f"{kind.__name__} (cannot be read as an array: {error})"}
    return {"u": kind.__name__}


def encode_array(array) -> dict:
    """A real array (kinds b, i, u, f) as ``{"a": {dtype, shape, b64}}``: its values as
    little-endian bytes in base64, floats as float64 (a fraction of the cost of a JSON list of
    numbers, and exact)."""
    dtype = np.dtype(np.float64) if array.dtype.kind == "f" else array.dtype.newbyteorder("<")
    data = np.ascontiguousarray(array, dtype=dtype).tobytes()
    return {"a": {"dtype": dtype.str, "shape": list(array.shape),
                  "b64": base64.b64encode(data).decode("ascii")}}


def _callback(identifier):
    def callback(*args, **kwargs):
        _send({"op": "callback", "id": identifier, "args": [encode(a) for a in args],
               "kwargs": {k: encode(v) for k, v in kwargs.items()}})
        reply = _receive()
        if reply.get("op") == "raise":
            raise RuntimeError(reply.get("message", "the grader's callback failed"))
        return decode(reply.get("value"))

    return callback


def decode(value):
    """The grader's plain data back to Python values (arrays, tuples, callbacks)."""
    if isinstance(value, list):
        return [decode(item) for item in value]
    if isinstance(value, dict):
        if "t" in value:
            return tuple(decode(item) for item in value["t"])
        if "f" in value:
            return float(value["f"])
        if "a" in value:
            spec = value["a"]
            dtype = np.dtype(spec["dtype"])
            data = base64.b64decode(spec["b64"], validate=True)
            return np.frombuffer(data, dtype=dtype).reshape(spec["shape"]).copy()
        if "cb" in value:
            return _callback(value["cb"])
        return {key: decode(item) for key, item in value.items()}
    return value


def _modified(args, before) -> dict:
    """The array arguments the answer changed in place: {position: their new values}."""
    changed = {}
    for index, (arg, copy) in enumerate(zip(args, before)):
        if copy is not None and not (arg.shape == copy.shape and (
                (arg == copy) | (np.isnan(arg) & np.isnan(copy))).all()):
            changed[str(index)] = encode(arg)
    return changed


def _text(error) -> str:
    try:
        return str(error)[:2000]
    except BaseException:  # noqa: BLE001 - a student's exception with a broken __str__
        return "(its message cannot be read)"


def _kind(value) -> str:
    if isinstance(value, type(np)):
        return "module:" + getattr(value, "__name__", "?")
    return "function" if callable(value) else "value"


def main() -> None:
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    sys.stdout = sys.stderr = _Sink()
    while True:
        request = _receive()
        op = request.get("op")
        if op == "exec":
            error = None
            try:
                exec(compile(request["source"], "<answer cell>", "exec"), namespace)  # noqa: S102
            except BaseException as exc:  # noqa: BLE001 - also SystemExit, KeyboardInterrupt
                error = f"{type(exc).__name__}: {_text(exc)}"
            sys.stdout = sys.stderr = _Sink()
            _send({"op": "done", "error": error})
        elif op == "describe":
            names = [n for n in request["names"] if n in namespace]
            kinds = {name: _kind(namespace[name]) for name in names}
            values = {name: encode(namespace[name]) for name in names if kinds[name] == "value"}
            _send({"op": "described", "kinds": kinds, "values": values})
        elif op == "call":
            try:
                function = namespace[request["name"]]
                args = [decode(a) for a in request["args"]]
                kwargs = {k: decode(v) for k, v in request["kwargs"].items()}
                before = [a.copy() if type(a) is np.ndarray else None for a in args]
                reply = {"op": "result", "value": encode(function(*args, **kwargs)),
                         "modified": _modified(args, before)}
            except BaseException as exc:  # noqa: BLE001
                reply = {"op": "error", "type": type(exc).__name__, "message": _text(exc)}
            sys.stdout = sys.stderr = _Sink()
            _send(reply)


main()
