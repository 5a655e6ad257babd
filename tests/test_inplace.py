"""Tests of gdlib.inplace: an update recorded on symbols and replayed in place gives the bits of
the update run as written, for every operation a tape records, and refuses what it cannot hold."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gdlib import arrays, inplace, optim

DTYPES = [torch.float32, torch.float64, torch.bfloat16]
SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, 3.0, 1e-30, -1e30, math.inf, -math.inf, math.nan]


def values(dtype, seed, positive=False):
    """Random values of every sign and size, then the special ones (zeros, infinities, NaN)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(4000, generator=generator, dtype=torch.float64) * 10.0 ** torch.randint(
        -6, 6, (4000,), generator=generator)
    x = torch.cat([x, torch.tensor(SPECIAL, dtype=torch.float64)])
    return (x.abs() if positive else x).to(dtype)


def replay(update, inputs, destinations):
    """Record ``update(*symbols)`` (it returns the outputs, one per destination) and replay it on
    clones of ``inputs``; returns the replayed inputs (destinations overwritten)."""
    recorded = inplace.record(lambda *s: update(*s), len(inputs), lambda symbols: symbols)
    assert recorded is not None, "not recordable"
    tape, outputs = recorded
    program = inplace.Program(tape, list(outputs), destinations)
    registers = [x.clone() for x in inputs]
    registers += [torch.empty_like(inputs[0]) for _ in range(program.scratch)]
    program.run(registers, program.constants(tape))
    return registers[:len(inputs)]


def assert_same_bits(ours, expected):
    torch.testing.assert_close(ours, expected, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(torch.signbit(ours), torch.signbit(expected))  # -0.0 is not 0.0


CONSTANT_FORMULAS = {
    "x + c": lambda x, c: x + c, "c + x": lambda x, c: c + x,
    "x - c": lambda x, c: x - c, "c - x": lambda x, c: c - x,
    "x * c": lambda x, c: x * c, "c * x": lambda x, c: c * x,
    "x / c": lambda x, c: x / c, "c / x": lambda x, c: c / x,
    "x ** c": lambda x, c: x ** c, "c ** x": lambda x, c: c ** x,
}
ARRAY_FORMULAS = {
    "x + y": lambda x, y, xp: x + y, "x - y": lambda x, y, xp: x - y,
    "x * y": lambda x, y, xp: x * y, "x / y": lambda x, y, xp: x / y,
    "x ** y": lambda x, y, xp: x ** y, "x * x": lambda x, y, xp: x * x,
    "maximum": lambda x, y, xp: xp.maximum(x, y), "minimum": lambda x, y, xp: xp.minimum(x, y),
    "-x": lambda x, y, xp: -x, "abs": lambda x, y, xp: abs(x),
    "sqrt": lambda x, y, xp: xp.sqrt(x), "exp": lambda x, y, xp: xp.exp(x),
    "log": lambda x, y, xp: xp.log(x),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("c", [0.9, -2.5, 1e-8, 3, 1, 0])
@pytest.mark.parametrize("name", CONSTANT_FORMULAS)
def test_every_operation_with_a_constant_gives_the_bits_of_the_formula(name, c, dtype):
    formula = CONSTANT_FORMULAS[name]
    x, out = values(dtype, 1), torch.zeros(4011, dtype=dtype)
    [_, result] = replay(lambda x, out: (x, formula(x, c)), [x, out], [0, 1])
    assert_same_bits(result, formula(x, c))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", ARRAY_FORMULAS)
def test_every_operation_of_arrays_gives_the_bits_of_the_formula(name, dtype):
    formula = ARRAY_FORMULAS[name]
    x, y, out = values(dtype, 2), values(dtype, 3), torch.zeros(4011, dtype=dtype)

    def update(x, y, out):
        return (formula(x, y, arrays.namespace(x)),)

    [_, _, result] = replay(update, [x, y, out], [2])
    assert_same_bits(result, formula(x, y, torch))


def adam_like(theta, grad, m, v):
    xp = arrays.namespace(theta)
    m = 0.9 * m + (1 - 0.9) * grad
    v = 0.999 * v + (1 - 0.999) * grad * grad
    return theta - 1e-3 * (m / 0.1) / (xp.sqrt(v / 0.001) + 1e-8), m, v


# Updates whose outputs meet in awkward ways: (update, destinations of its outputs).
AWKWARD = {
    "adam": (adam_like, [0, 2, 3]),
    "state unchanged": (lambda theta, grad, m, v: (theta - grad * m, m, v + 1.0), [0, 2, 3]),
    "theta unchanged": (lambda theta, grad, m, v: (theta, m + grad, v), [0, 2, 3]),
    "a state takes the gradient": (lambda theta, grad, m, v: (theta - m, grad, v), [0, 2, 3]),
    "old value read after the new": (
        lambda theta, grad, m, v: (theta - (m + grad) * m, m + grad, v), [0, 2, 3]),
    "one value, two destinations": (
        lambda theta, grad, m, v: (theta - grad, 2.0 * grad, 2.0 * grad), [0, 2, 3]),
    "a state takes another's old value": (
        lambda theta, grad, m, v: (theta - grad, v, v * 0.5), [0, 2, 3]),
    "theta takes a state's old value": (lambda theta, grad, m, v: (m, m + grad, v), [0, 2, 3]),
    "dead intermediates": (
        lambda theta, grad, m, v: (theta - (grad * 3.0, grad)[1], m * 0.5, v), [0, 2, 3]),
}


@pytest.mark.parametrize("name", AWKWARD)
def test_outputs_that_meet_in_awkward_ways_are_written_right(name):
    update, destinations = AWKWARD[name]
    inputs = [values(torch.float32, k, positive=k == 3)[:4000] for k in range(4)]
    expected = list(inputs)
    for destination, value in zip(destinations, update(*inputs), strict=True):
        expected[destination] = value
    ours = replay(update, inputs, destinations)
    for k, (a, b) in enumerate(zip(ours, expected, strict=True)):
        assert_same_bits(a, b), k


def test_a_rule_written_with_torch_functions_is_recorded_too():
    def update(theta, grad, s):
        s = 0.9 * s + 0.1 * grad * grad
        return theta - 0.01 * grad / (torch.sqrt(s) + 1e-8), torch.maximum(s, s * 0.5)

    inputs = [values(torch.float32, k, positive=k == 2)[:4000] for k in range(3)]
    expected = update(*inputs)
    theta, _, s = replay(update, inputs, [0, 2])
    assert_same_bits(theta, expected[0])
    assert_same_bits(s, expected[1])


def test_outputs_that_swap_old_values_are_refused():
    tape, outputs = inplace.record(lambda theta, grad, m, v: (theta - grad, v, m), 4,
                                   lambda symbols: symbols)
    with pytest.raises(inplace.NotRecordable, match="exchange"):
        inplace.Program(tape, list(outputs), [0, 2, 3])


def test_adam_needs_few_scratch_buffers_and_writes_results_in_place():
    tape, outputs = inplace.record(adam_like, 4, lambda symbols: symbols)
    program = inplace.Program(tape, list(outputs), [0, 2, 3])
    assert program.scratch <= 3
    assert len(program.steps) == len(tape.ops)  # no copy at the end: results written in place


def test_dead_operations_are_not_replayed_and_hold_no_buffer():
    def update(theta, grad):
        unused = xp_sqrt(grad * 3.0) + 1.0  # noqa: F841 -- computed, never used
        return (theta - grad,)

    def xp_sqrt(x):
        return arrays.namespace(x).sqrt(x)

    tape, outputs = inplace.record(update, 2, lambda symbols: symbols)
    program = inplace.Program(tape, list(outputs), [0])
    assert len(tape.ops) == 4 and len(program.steps) == 1 and program.scratch == 0


def test_multiplying_by_one_records_nothing():
    tape, (out,) = inplace.record(lambda x: (1.0 * x * 1,), 1, lambda symbols: symbols)
    assert tape.ops == [] and out.node == 0


NOT_RECORDABLE = {
    "comparison": lambda x: x * (x > 0),
    "branch": lambda x: x if x else -x,
    "float()": lambda x: float(x) * x,
    "attribute": lambda x: x * x.dtype.itemsize,
    "indexing": lambda x: x[0] * x,
    "unknown function": lambda x: arrays.namespace(x).where(x, x, 0.0),
    "numpy constant": lambda x: x * np.float32(0.5),
    "tensor constant": lambda x: x * torch.tensor(0.5),
    "bool constant": lambda x: x * True,
    "maximum with a number": lambda x: arrays.namespace(x).maximum(x, 0.0),
    "sqrt of a number": lambda x: arrays.namespace(x).sqrt(2.0) * x,
    "other torch function": lambda x: torch.tanh(x),
    "torch function with keywords": lambda x: torch.add(x, x, alpha=2.0),
    "tensor method": lambda x: x.sqrt(),
    "tensor on the left": lambda x: torch.ones(1) * x,
}


@pytest.mark.parametrize("name", NOT_RECORDABLE)
def test_what_a_tape_cannot_hold_is_not_recorded(name):
    formula = NOT_RECORDABLE[name]
    assert inplace.record(lambda x: (formula(x),), 1, lambda symbols: symbols) is None


def test_an_output_that_is_not_an_array_of_the_inputs_is_refused():
    tape, outputs = inplace.record(lambda x, y: (x + 1.0, 0.0), 2, lambda symbols: symbols)
    with pytest.raises(inplace.NotRecordable, match="output"):
        inplace.Program(tape, list(outputs), [0, 1])


def test_namespace_of_a_symbol_is_the_recorder_and_of_arrays_unchanged():
    [symbol] = inplace.record(lambda x: (x,), 1, lambda symbols: symbols)[1]
    assert inplace.is_symbol(symbol) and not inplace.is_symbol(torch.ones(1))
    assert arrays.namespace(symbol) is symbol.__array_namespace__()
    assert arrays.namespace(np.ones(2)) is np and arrays.namespace(torch.ones(2)) is torch
    assert arrays.namespace([1.0, 2.0]) is np and arrays.namespace(2.0) is np


@pytest.mark.parametrize("rule", [optim.Adam(1e-2), optim.Nadam(2e-3, momentum_decay=4e-3),
                                  optim.Adadelta(1.0, rho=0.9, eps=1e-6)], ids=repr)
def test_a_rule_recorded_on_symbols_computes_its_scalars_as_written(rule):
    """Python-number state (the step count, Nadam's product) comes out of the recording as
    numbers, equal to those of a real step."""
    theta = torch.ones(3, dtype=torch.float64)
    state = rule.init(theta)._replace(step=4)
    fields = [name for name in state._fields if name != "step" and not isinstance(
        getattr(state, name), float)]

    def arguments(symbols):
        theta, grad, *arrays_ = symbols
        return theta, grad, state._replace(**dict(zip(fields, arrays_, strict=True))), 0.1

    _, (_, recorded) = inplace.record(rule.update, 2 + len(fields), arguments)
    _, real = rule.update(theta, theta, state, 0.1)
    for name in set(state._fields) - set(fields):
        assert getattr(recorded, name) == getattr(real, name)
