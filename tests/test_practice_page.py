"""The practitioners' page (book/practice/torch_training): it states what its executed notebook
printed, and the rule it teaches readers to write (AMSGrad) is recorded by the adapter and
replayed bit for bit."""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import course_roundtrip as roundtrip
import pytest

torch = pytest.importorskip("torch")

from gdlib import arrays, optim
from gdlib.torch import Optimizer

PAGE = Path(__file__).resolve().parent.parent / "book" / "practice" / "torch_training.ipynb"
RESULT = re.compile(r"^([^:\n]+): (\d+) steps; largest difference (\S+);\n"
                    r"  final training loss: gdlib (\S+), (?:torch|formula) (\S+)$", re.MULTILINE)


def prose() -> str:
    return "".join(c.source for c in roundtrip.read(PAGE).cells if c.cell_type == "markdown")


def test_page_is_committed_without_outputs():
    roundtrip.assert_committed_without_outputs([PAGE])


@pytest.mark.slow
def test_gdlib_and_torch_train_alike_as_the_text_states(book_build):
    text, words = roundtrip.run_page(PAGE, book_build), prose()
    results = {m.group(1): m.groups()[1:] for m in RESULT.finditer(text)}
    assert set(results) == {"Adam", "AMSGrad", "Adam, the formula per tensor"}
    for steps, difference, ours, theirs in results.values():
        assert f"each of the {steps} steps" in words
        assert float(difference) < 1e-14 and "less than $10^{-14}$" in words
        assert ours == theirs and "seven printed digits" in words and len(ours) == 9  # 0.xxxxxxx
    # against torch: rounding apart; against the formula per tensor: the same bits
    assert float(results["Adam"][1]) > 0 and "not bit for bit equal" in words
    assert float(results["Adam, the formula per tensor"][1]) == 0 and "exactly zero" in words


def amsgrad_class():
    """The AMSGrad rule as the page defines it (its code cell, run here)."""
    cell = next(c.source for c in roundtrip.read(PAGE).cells
                if c.cell_type == "code" and "class AMSGrad" in c.source)
    namespace = {"dataclass": dataclass, "Any": Any, "ClassVar": ClassVar,
                 "NamedTuple": NamedTuple, "arrays": arrays, "optim": optim}  # the page's imports
    classes = cell.split("\namsgrad = lockstep")[0]  # the classes, not the training
    exec(compile(classes, "<the page's AMSGrad cell>", "exec"), namespace)  # noqa: S102 - ours
    return namespace["AMSGrad"]


def test_the_rule_readers_write_is_replayed_bit_for_bit():
    AMSGrad = amsgrad_class()
    rule = AMSGrad(1e-2)
    params = [torch.nn.Parameter(torch.randn(n, generator=torch.Generator().manual_seed(n),
                                             dtype=torch.float64)) for n in (3, 50, 7)]
    reference = [p.detach().clone() for p in params]
    states = [rule.init(p) for p in reference]
    optimizer = Optimizer(params, rule, chunk_size=16)
    optimizer._replay.min_elements = 0  # 60 elements: replayed only on request
    generator = torch.Generator().manual_seed(0)
    for _ in range(30):
        grads = [torch.randn(p.shape, generator=generator, dtype=torch.float64) for p in params]
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        optimizer.step()
        for k, g in enumerate(grads):
            reference[k], states[k] = rule.step(reference[k], g, states[k])
    assert not optimizer._replay.failed  # recorded, not run as written
    for p, q, state in zip(params, reference, states, strict=True):
        assert torch.equal(p.detach(), q)
        assert torch.equal(optimizer.state[p]["v_max"], state.v_max)
