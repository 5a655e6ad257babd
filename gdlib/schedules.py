"""Learning-rate decay (학습률 감쇠), seed 004 "Learning rate decay".

Each schedule is a function ``schedule(epoch, lr0, ...) -> lr`` of the epoch counter. It accepts
a Python number or a numpy array of counters (handy for plotting the curve)::

    schedules.inverse_time(np.arange(50), lr0=0.2, decay_rate=1.0)

Counting convention (the one of torch's ``LambdaLR``, ``ExponentialLR`` and ``StepLR``):
``epoch`` is the number of epochs already completed, counted from 0, so the first epoch trains
with ``schedule(0) = lr0`` (for ``inverse_sqrt``: ``k * lr0``).

Seed 004 counts epochs from 1 (the first pass over the training set is the first epoch), so its
``epoch_num`` is ``epoch + 1``:

- ``inverse_time`` and ``exponential`` put ``epoch`` where the seed writes ``epoch_num``, so they
  reach the seed's rate for a given ``epoch_num`` one epoch later: gdlib's first epoch uses
  ``lr0``, the seed's ``lr0 / (1 + decay_rate)`` (``0.95 * lr0`` for exponential decay). The
  seed's own values are ``schedule(epoch + 1, ...)``. ``staircase`` counts the same way (the seed
  gives it in words only).
- ``inverse_sqrt`` uses ``epoch_num = epoch + 1``, the seed's values exactly, because the seed's
  ``k / sqrt(epoch_num)`` is undefined at 0.

``inverse_sqrt`` also serves the per-mini-batch form ``k / sqrt(t) * lr0`` of seed 004: pass the
number of mini-batch steps already taken instead of the epoch, and step the schedule after every
mini-batch (``gdlib.training.train(..., schedule_per="step")``).

For torch, ``factor(schedule, **params)`` is the multiplicative factor ``lr / lr0`` that
``torch.optim.lr_scheduler.LambdaLR`` expects (it multiplies the optimizer's initial lr)::

    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedules.factor(schedules.inverse_time,
                                                                    decay_rate=1.0))

torch equivalents: ``exponential`` = ``ExponentialLR(gamma=base)``, ``staircase`` =
``StepLR(step_size, gamma=factor)``; ``inverse_time`` and ``inverse_sqrt`` have no named torch
class and run through ``LambdaLR``.
"""

import functools
import math
import numbers

import numpy as np


def inverse_time(epoch, lr0: float, decay_rate: float):
    """Inverse-time decay: ``lr = lr0 / (1 + decay_rate * epoch)`` (seed 004, first formula).

    ``decay_rate = 0`` keeps the rate constant. torch: ``LambdaLR(opt, lambda e: 1 / (1 + k * e))``.
    """
    _require_positive(lr0, "lr0")
    _require_nonnegative(decay_rate, "decay_rate")
    epoch = _counter(epoch)
    return lr0 / (1 + decay_rate * epoch)


def exponential(epoch, lr0: float, base: float = 0.95):
    """Exponential decay: ``lr = base ** epoch * lr0`` with ``0 < base <= 1`` (seed 004: 0.95).

    torch: ``ExponentialLR(opt, gamma=base)``.
    """
    _require_positive(lr0, "lr0")
    _require_unit_interval(base, "base")
    epoch = _counter(epoch)
    return base**epoch * lr0


def inverse_sqrt(epoch, lr0: float, k: float = 1.0):
    """Inverse square-root decay: ``lr = k / sqrt(epoch + 1) * lr0``.

    Seed 004 writes ``k / sqrt(epoch_num) * lr0`` (or ``k / sqrt(t) * lr0`` with ``t`` the
    mini-batch count) with epochs counted from 1; with a counter starting at 0 it would be
    undefined for the first epoch. Our ``epoch`` counts from 0, so we use ``epoch_num = epoch + 1``:
    the first epoch (``epoch = 0``) uses ``k * lr0``, the next ``k / sqrt(2) * lr0``, and so on,
    the seed's values; the seed's ``sqrt(epoch_num)`` is our ``sqrt(epoch + 1)``.
    torch: ``LambdaLR(opt, lambda e: k / math.sqrt(e + 1))``.
    """
    _require_positive(lr0, "lr0")
    _require_positive(k, "k")
    epoch = _counter(epoch)
    return k / np.sqrt(epoch + 1) * lr0


def staircase(epoch, lr0: float, step_size: int, factor: float = 0.5):
    """Discrete (staircase) decay: ``lr = factor ** floor(epoch / step_size) * lr0``.

    Seed 004: the rate stays fixed for a while, then halves (``factor = 0.5``), and halves again
    every ``step_size`` epochs. torch: ``StepLR(opt, step_size, gamma=factor)``.
    """
    _require_positive(lr0, "lr0")
    _require_unit_interval(factor, "factor")
    if isinstance(step_size, bool) or not isinstance(step_size, numbers.Integral) or step_size < 1:
        raise ValueError(f"step_size must be a positive integer, got {step_size!r}")
    epoch = _counter(epoch)
    return factor ** (epoch // step_size) * lr0


def factor(schedule, **params):
    """The ``LambdaLR`` factor of ``schedule``: ``epoch -> schedule(epoch, lr0=1, **params)``.

    ``LambdaLR`` multiplies this factor by the optimizer's initial learning rate, which plays
    ``lr0``. The parameters are checked here, at once, not at the first call.
    """
    if "lr0" in params:
        raise ValueError("factor() takes no lr0: LambdaLR uses the optimizer's initial lr as lr0")
    lr_lambda = functools.partial(schedule, lr0=1.0, **params)
    lr_lambda(0)  # validates params now
    return lr_lambda


def _counter(epoch):
    """``epoch`` as a number or a float array, after checking it is finite and >= 0."""
    array = np.asarray(epoch)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"epoch must be a number or an array of numbers, got {epoch!r}")
    if not (np.all(np.isfinite(array)) and np.all(array >= 0)):
        raise ValueError(f"epoch counts completed epochs (or steps) and must be >= 0, got {epoch}")
    return epoch if array.ndim == 0 else array


def _require_real(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")


def _require_positive(value, name: str) -> None:
    _require_real(value, name)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def _require_nonnegative(value, name: str) -> None:
    _require_real(value, name)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")


def _require_unit_interval(value, name: str) -> None:
    _require_real(value, name)
    if not 0 < value <= 1:
        raise ValueError(f"{name} must lie in (0, 1], got {value!r}")
