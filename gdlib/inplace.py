"""An elementwise update, recorded once per step and replayed in place on torch tensors.

``gdlib.torch.Optimizer`` runs a rule's ``update`` on consecutive pieces of flat buffers. Run as
written, every operator of the formula allocates a new tensor and the results are then copied
into the parameters and the state: for Adam, 14 operations, 14 allocations and 3 copies per
piece. Instead, the adapter calls ``update`` once per step on *symbols* (``record``). Each
operator and namespace function (``sqrt``...) applied to a symbol appends one operation to a
tape. Python numbers (the learning rate, the bias corrections ``1 - beta**t``) are computed as
usual and enter the tape as constants.

The tape is then replayed on every piece (``Program.run``) with ``out=`` arguments:
intermediates go to a few scratch buffers, reused from one operation to the next, and each
result is written straight into its parameter or state slice as soon as the old value is read
for the last time. Each operation is the torch function that the operator itself calls on a
tensor (``s / x`` is ``reciprocal(x) * s``, as in ``torch.Tensor.__rtruediv__``). So a replay
gives exactly the bits of the formula run as written, with no allocation and no copy.

The tape knows the arithmetic operators and ``sqrt``, ``exp``, ``log``, ``abs``, ``maximum``
and ``minimum``, called through ``gdlib.arrays.namespace(x)`` or as ``torch`` functions. If
``update`` compares arrays, branches on their values, converts them to Python numbers, or calls
any other function, then ``record`` returns None and the adapter runs ``update`` as written.
"""

import torch

__all__ = ["NotRecordable", "Program", "is_symbol", "record", "shape_of"]


class NotRecordable(Exception):
    """Raised inside a recording when ``update`` does something a tape cannot hold."""


class _Symbol:
    """A value of the update being recorded: an input, or the result of one operation."""

    __slots__ = ("node", "tape")
    __array_ufunc__ = None  # numpy scalars on the left defer to the reflected operators below
    __hash__ = object.__hash__

    def __init__(self, tape, node: int):
        self.tape, self.node = tape, node

    def __array_namespace__(self, api_version=None):
        """What ``gdlib.arrays.namespace`` returns for a symbol: the recording functions."""
        return _NAMESPACE

    def __add__(self, other):
        return self.tape.add("add", self, other)

    def __radd__(self, other):
        return self.tape.add("add", self, other)

    def __sub__(self, other):
        return self.tape.add("sub", self, other)

    def __rsub__(self, other):
        return self.tape.add("rsub", self, other)

    def __mul__(self, other):
        return self if _is_one(other) else self.tape.add("mul", self, other)

    def __rmul__(self, other):
        return self if _is_one(other) else self.tape.add("mul", self, other)

    def __truediv__(self, other):
        return self.tape.add("div", self, other)

    def __rtruediv__(self, other):
        return self.tape.add("rdiv", self, other)

    def __pow__(self, other):
        return self.tape.add("pow", self, other)

    def __rpow__(self, other):
        return self.tape.add("rpow", self, other)

    def __neg__(self):
        return self.tape.add("neg", self)

    def __abs__(self):
        return self.tape.add("abs", self)

    def _refuse(self, *args, **kwargs):
        raise NotRecordable("the update compares, converts or indexes an array")

    __bool__ = __float__ = __int__ = __index__ = __len__ = __iter__ = _refuse
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __getitem__ = _refuse

    def __getattr__(self, name):
        raise NotRecordable(f"the update reads .{name} of an array")

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        """``torch.sqrt(symbol)`` and the like, in a rule written with torch's functions."""
        name = _TORCH_FUNCTIONS.get(func)
        if name is None or kwargs:
            raise NotRecordable(f"the update calls {getattr(func, '__name__', func)}()")
        return getattr(_NAMESPACE, name)(*args)


def _is_one(c) -> bool:
    """``x * 1`` is ``x`` to the bit in every floating-point format: not recorded."""
    return type(c) in (int, float) and c == 1


class _Namespace:
    """``gdlib.arrays.namespace(symbol)``: the array functions a tape can record."""

    def __getattr__(self, name):
        raise NotRecordable(f"the update calls {name}(), which a tape does not record")

    @staticmethod
    def sqrt(x):
        return _unary("sqrt", x)

    @staticmethod
    def exp(x):
        return _unary("exp", x)

    @staticmethod
    def log(x):
        return _unary("log", x)

    @staticmethod
    def abs(x):
        return _unary("abs", x)

    @staticmethod
    def maximum(x, y):
        return _both_symbols("maximum", x, y)

    @staticmethod
    def minimum(x, y):
        return _both_symbols("minimum", x, y)


_NAMESPACE = _Namespace()
_TORCH_FUNCTIONS = {getattr(torch, name): name
                    for name in ("sqrt", "exp", "log", "abs", "maximum", "minimum")}


def _unary(name, x):
    if not isinstance(x, _Symbol):
        raise NotRecordable(f"{name}() of a non-array")
    return x.tape.add(name, x)


def _both_symbols(name, x, y):
    if not (isinstance(x, _Symbol) and isinstance(y, _Symbol)):
        raise NotRecordable(f"{name}() needs two arrays")  # torch.maximum refuses numbers too
    return x.tape.add(name, x, y)


# The torch function each recorded operation runs, with ``out=``: the one torch's own operator
# calls. ``f(x, c)`` for an array and a constant, ``f(x, y)`` for two arrays, ``f(x)`` for one;
# the operations with the constant first are spelled out in ``_step``.
_TORCH = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div,
          "pow": torch.pow, "maximum": torch.maximum, "minimum": torch.minimum,
          "neg": torch.neg, "abs": torch.abs, "sqrt": torch.sqrt, "exp": torch.exp,
          "log": torch.log}


class _Tape:
    """The operations recorded so far. ``ops[k] = (name, operands)`` makes node ``inputs + k``
    (the inputs are nodes 0 .. inputs - 1); an operand is a node number, or None for the
    operation's constant, which is ``values[k]``. ``ops`` alone decides the plan."""

    def __init__(self, inputs: int):
        self.inputs, self.ops, self.values = inputs, [], []

    def add(self, name, x, other=None):
        if other is None:
            operands, value = (x.node,), None
        elif type(other) is _Symbol:
            if other.tape is not self:
                raise NotRecordable("an array of another recording")
            operands, value = (x.node, other.node), None
        elif type(other) in (int, float):
            operands, value = (x.node, None), other
        else:  # numpy scalars, 0-d tensors, bools: promotion rules a tape does not mimic
            raise NotRecordable(f"a constant of type {type(other).__name__}")
        self.ops.append((name, operands))
        self.values.append(value)
        return _Symbol(self, self.inputs + len(self.ops) - 1)


def is_symbol(x) -> bool:
    """True for a value of a recording (an array of the update being recorded)."""
    return isinstance(x, _Symbol)


def record(update, inputs: int, arguments):
    """Call ``update(*symbols)`` where ``arguments(symbols)`` builds its argument list from
    ``inputs`` input symbols; returns ``(tape, result)`` or None if it cannot be recorded."""
    tape = _Tape(inputs)
    symbols = [_Symbol(tape, k) for k in range(inputs)]
    try:
        return tape, update(*arguments(symbols))
    except NotRecordable:
        return None


def shape_of(tape: _Tape, outputs) -> tuple:
    """What a plan depends on: the operations and their operands, not the constants (the next
    step of a rule records the same shape with other constants, and reuses the plan)."""
    return tape.inputs, tuple(tape.ops), tuple(getattr(symbol, "node", symbol) for symbol in outputs)


class Program:
    """A recorded tape, planned for in-place replay.

    ``Program(tape, outputs, destinations)``: ``outputs[i]`` is the symbol whose value must end
    up in input ``destinations[i]`` (an input that may be overwritten: the parameter or a state
    array, never the gradient). ``scratch`` is the number of scratch buffers ``run`` needs.
    Raises ``NotRecordable`` when the outputs cannot be written in place (an output that is
    not a symbol of this tape, or destinations that swap their old values). The plan holds no
    constant: ``constants(tape)`` takes them from any tape of the same ``shape_of``.
    """

    def __init__(self, tape: _Tape, outputs, destinations):
        for symbol in outputs:
            if not isinstance(symbol, _Symbol) or symbol.tape is not tape:
                raise NotRecordable("an output is not an array computed from the inputs")
        wanted = {}  # node -> destinations that must receive its value
        for symbol, destination in zip(outputs, destinations, strict=True):
            wanted.setdefault(symbol.node, []).append(destination)
        self.steps, self.scratch = self._plan(tape, wanted)
        self.numbers_first = [k for k, (name, _) in enumerate(tape.ops) if name == "rsub"]

    def constants(self, tape: _Tape) -> list:
        """The constant of each operation of ``tape`` (None for an operation of arrays), as
        ``run`` wants them."""
        values = tape.values
        if self.numbers_first:
            values = list(values)
            for k in self.numbers_first:  # torch.sub takes no number first: a 0-d tensor,
                c = values[k]  # float64 or int64 like the number torch wraps: the same bits
                values[k] = torch.tensor(c, dtype=torch.float64 if type(c) is float else torch.int64)
        return values

    @staticmethod
    def _plan(tape: _Tape, wanted: dict):
        count, end = tape.inputs, len(tape.ops)
        # node -> the last operation reading it (outputs are read at the very end); only the
        # operations whose value is used count (backwards from the outputs), the others are dead
        last_read = dict.fromkeys(wanted, end)
        for k in reversed(range(end)):
            if count + k in last_read:
                for operand in tape.ops[k][1]:
                    if _is_node(operand):
                        last_read.setdefault(operand, k)
        where = {k: k for k in range(count)}  # node -> register holding its value
        free, scratch, steps, written = [], 0, [], set()

        for k, (name, operands) in enumerate(tape.ops):
            node = count + k
            if node not in last_read:
                continue  # a dead value (computed, never used): skip it
            target = next((d for d in wanted.get(node, ()) if d not in written
                           and last_read.get(d, -1) <= k), None)
            dying = [where[o] for o in operands if _is_node(o) and last_read[o] == k
                     and where[o] >= count]
            if target is not None:
                written.add(target)
            elif dying:
                target = dying[0]
            elif free:
                target = free.pop()
            else:
                target, scratch = count + scratch, scratch + 1
            steps.append(_step(name, k, target, operands, where))
            where[node] = target
            free.extend(r for r in dict.fromkeys(dying) if r != target)

        copies = [(d, where[node]) for node, ds in wanted.items() for d in ds if where[node] != d]
        while copies:  # a destination is overwritten only once no other copy reads it
            ready = [(d, source) for d, source in copies if all(d != s for _, s in copies)]
            if not ready:
                raise NotRecordable("outputs exchange the old values of their destinations")
            steps.extend(_copy(d, source) for d, source in ready)
            copies = [copy for copy in copies if copy not in ready]
        return steps, scratch

    def run(self, registers, constants) -> None:
        """Replay on one piece: ``registers`` = the inputs (in the tape's order), then
        ``self.scratch`` scratch tensors, all of the same shape, dtype and device;
        ``constants`` from ``self.constants``."""
        for step in self.steps:
            step(registers, constants)


def _is_node(operand) -> bool:
    return operand is not None


def _step(name, k, t, operands, where):
    """Operation ``k`` of the tape as ``step(registers, constants)``, writing register ``t``
    (one Python call per operation: the replay's overhead is per operation and per piece)."""
    x, y = where[operands[0]], operands[-1]
    if len(operands) == 2 and y is not None:  # two arrays
        f, y = _TORCH[name], where[y]
        return lambda r, c: f(r[x], r[y], out=r[t])
    if len(operands) == 1:
        f = _TORCH[name]
        return lambda r, c: f(r[x], out=r[t])
    if name == "rsub":  # c - x; c: a 0-d tensor (see Program.constants)
        return lambda r, c: torch.sub(c[k], r[x], out=r[t])
    if name == "rdiv":  # c / x: as torch.Tensor.__rtruediv__ computes it
        return lambda r, c: torch.reciprocal(r[x], out=r[t]).mul_(c[k])
    if name == "rpow":  # c ** x
        return lambda r, c: torch.pow(c[k], r[x], out=r[t])
    f = _TORCH[name]
    return lambda r, c: f(r[x], c[k], out=r[t])


def _copy(destination, source):
    return lambda r, c: r[destination].copy_(r[source])
