"""Training loops: ``minimize`` for 2-D landscapes, ``train`` for torch models (seed 000 §2).

``minimize`` iterates an optimizer rule of ``gdlib.optim`` (``rule.init`` / ``rule.step``) on
a function with known gradient and records the whole path, for landscape plots. Seed 000 §2.1
stops gradient descent on one of three convergence conditions: (1) the loss changes by less than
a threshold between two iterations, (2) the parameters change by less than a threshold, (3) a
step budget is spent. ``minimize`` implements all three and reports which one fired.

``train`` is mini-batch gradient descent, seed 000 Algorithm 3 (eq 15): every epoch shuffles
the training set and takes one optimizer step per mini-batch of ``b`` examples, the last batch
holding the ``n mod b`` left-overs. ``b = n`` is batch (vanilla) GD, Algorithm 1 (eq 13);
``b = 1`` is stochastic GD, Algorithm 2 (eq 14).

Both raise ``DivergenceError`` when a loss, gradient or parameter becomes NaN or infinite (too
large a learning rate, typically); with ``on_divergence="stop"`` they return what was recorded
up to that point instead, marked as diverged.
"""

import math
import numbers
import sys
import time
from typing import NamedTuple

import numpy as np

from gdlib import arrays


class DivergenceError(FloatingPointError):
    """A loss, gradient or parameter became NaN or infinite during optimisation."""


class Trajectory(NamedTuple):
    """What ``minimize`` returns.

    ``thetas[k]`` is the iterate after ``k`` steps (``thetas[0] = theta0``), shape
    ``(steps_taken + 1,) + theta0.shape``, numpy or torch like ``theta0``; ``losses[k] =
    f(thetas[k])`` (numpy float64); ``stopped_by`` is ``"steps"`` (budget spent),
    ``"loss_tol"``, ``"param_tol"`` or ``"diverged"`` (the last row is then the first iterate
    where theta, the loss or the gradient is not finite).
    """

    thetas: object
    losses: np.ndarray
    stopped_by: str

    @property
    def steps_taken(self) -> int:
        return len(self.losses) - 1


def minimize(f_and_grad, theta0, rule, steps: int, *, loss_tol=None, param_tol=None,
             on_divergence: str = "raise") -> Trajectory:
    """Run ``theta_k = rule.step(theta_{k-1}, grad f(theta_{k-1}))`` for at most ``steps`` steps.

    ``f_and_grad(theta) -> (f(theta), grad f(theta))``, e.g. ``functions.BEALE.value_and_grad``;
    ``rule`` is a ``gdlib.optim`` rule (``optim.GD(lr)`` gives eq 13). Stops early, after step
    ``k``, when ``|f(theta_k) - f(theta_{k-1})| < loss_tol`` or ``||theta_k - theta_{k-1}||_2 <
    param_tol`` (seed 000 §2.1 conditions (1) and (2); ``None`` disables a test). Non-finite
    values raise ``DivergenceError``, or end the run with ``stopped_by="diverged"`` when
    ``on_divergence="stop"``.
    """
    _require_count(steps, "steps")
    for tol, name in ((loss_tol, "loss_tol"), (param_tol, "param_tol")):
        if tol is not None and not tol > 0:
            raise ValueError(f"{name} must be > 0 or None, got {tol!r}")
    _require_choice(on_divergence, "on_divergence", ("raise", "stop"))
    theta = theta0 if arrays.is_tensor(theta0) else np.asarray(theta0)
    arrays.require_floating(theta, "theta0")
    xp = arrays.namespace(theta)

    # Divergence is detected and reported below: numpy's overflow warnings would only repeat it.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        state = rule.init(theta)
        loss, grad = f_and_grad(theta)
        thetas, losses = [theta], [float(loss)]
        stopped_by = "steps" if _all_finite(theta, loss, grad) else "diverged"
        for _ in range(steps if stopped_by == "steps" else 0):
            theta, state = rule.step(theta, grad, state)
            loss, grad = f_and_grad(theta)
            thetas.append(theta)
            losses.append(float(loss))
            if not _all_finite(theta, loss, grad):
                stopped_by = "diverged"
            elif loss_tol is not None and abs(losses[-1] - losses[-2]) < loss_tol:
                stopped_by = "loss_tol"
            elif param_tol is not None and _norm(thetas[-1] - thetas[-2]) < param_tol:
                stopped_by = "param_tol"
            if stopped_by != "steps":
                break
    if stopped_by == "diverged" and on_divergence == "raise":
        raise DivergenceError(
            f"minimize diverged at step {len(losses) - 1}: loss = {losses[-1]}; lower the "
            "learning rate, or pass on_divergence='stop' to get the trajectory up to this point"
        )
    return Trajectory(xp.stack(thetas), np.array(losses), stopped_by)


class History(NamedTuple):
    """What ``train`` returns; one entry per optimizer step unless said otherwise.

    ``losses``: the mini-batch loss at the step (computed before the update); ``times``: seconds
    since training started, at the end of the step (full-loss evaluations excluded); ``lrs``:
    learning rate of the first parameter group used by the step; ``epochs``: the step's epoch
    (0-based); ``batch_sizes``: examples in the step's mini-batch; ``epoch_losses``: with
    ``full_loss=True``, the loss on all of ``(X, Y)`` before training and after each epoch
    (``epochs + 1`` values), else ``None``; ``diverged``: True when a loss became non-finite
    and ``on_divergence="stop"`` ended training (the last loss is that value, and no update
    was applied for it).
    """

    losses: np.ndarray
    times: np.ndarray
    lrs: np.ndarray
    epochs: np.ndarray
    batch_sizes: np.ndarray
    epoch_losses: np.ndarray | None
    diverged: bool


def train(model, loss_fn, X, Y, optimizer, batch_size: int, epochs: int, seed: int, *,
          shuffle: bool = True, schedule=None, schedule_per: str = "epoch",
          full_loss: bool = False, on_divergence: str = "raise", progress=None) -> History:
    """Mini-batch gradient descent on a torch ``model`` (seed 000 Algorithm 3, eq 15).

    Per step: ``loss = loss_fn(model(X[B]), Y[B])``, ``loss.backward()``, ``optimizer.step()``
    for mini-batch ``B``. ``optimizer`` is any ``torch.optim.Optimizer`` (e.g. the gdlib adapter
    ``gdlib.torch.Optimizer``). ``shuffle`` draws a fresh permutation every epoch from a
    ``torch.Generator`` seeded with ``seed`` (same seed, same batches); ``shuffle=False`` takes
    the examples in order. ``seed`` drives only the shuffling: seed the model's initialisation
    yourself (``torch.manual_seed``). ``loss_fn`` should average over the batch (torch's default
    ``reduction="mean"``), so that ``b = n`` is exactly eq 13 with the optimizer's lr. ``X``,
    ``Y`` and ``model`` must be on the same device.

    ``schedule`` is either a function ``count -> lr`` (e.g.
    ``functools.partial(schedules.inverse_time, lr0=0.2, decay_rate=1.0)``) that sets the lr of
    every parameter group before each epoch (``count`` = epochs completed) or, with
    ``schedule_per="step"``, before each step (``count`` = steps taken); or a torch
    ``LRScheduler`` built on ``optimizer``, stepped after each epoch (or step).

    ``progress``: show a tqdm bar on stderr; ``None`` (default) shows it only when stderr is an
    interactive terminal, never in a notebook build or a test run.
    """
    import torch
    from tqdm import tqdm

    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must hold the same number of examples (axis 0), got "
                         f"{X.shape[0]} and {Y.shape[0]}")
    n = X.shape[0]
    batches = _batch_slices(n, batch_size)
    _require_count(epochs, "epochs")
    _require_count(seed, "seed")
    _require_choice(schedule_per, "schedule_per", ("epoch", "step"))
    _require_choice(on_divergence, "on_divergence", ("raise", "stop"))
    scheduler = schedule if isinstance(schedule, torch.optim.lr_scheduler.LRScheduler) else None
    if schedule is not None and scheduler is None and not callable(schedule):
        raise TypeError(f"schedule must be a function count -> lr or a torch LRScheduler, got "
                        f"{type(schedule).__name__}")
    if progress is None:
        progress = _stderr_is_terminal()

    generator = torch.Generator().manual_seed(seed)
    records = {"losses": [], "times": [], "lrs": [], "epochs": [], "batch_sizes": []}
    epoch_losses, excluded, diverged = [], 0.0, False

    def full_data_loss():
        nonlocal excluded
        started = time.perf_counter()
        model.eval()
        with torch.no_grad():
            epoch_losses.append(float(loss_fn(model(X), Y)))
        model.train()
        excluded += time.perf_counter() - started

    def set_lr(count):  # a function schedule sets the lr before the epoch / step
        if schedule is not None and scheduler is None:
            lr = float(schedule(count))
            for group in optimizer.param_groups:
                group["lr"] = lr

    def step_scheduler():  # a torch scheduler steps after the epoch / step
        if scheduler is not None:
            scheduler.step()

    model.train()
    bar = tqdm(total=epochs * len(batches), disable=not progress, leave=False, desc="train")
    start = time.perf_counter()  # before the first full-loss evaluation, whose time is excluded
    if full_loss:
        full_data_loss()
    for epoch in range(epochs):
        if schedule_per == "epoch":
            set_lr(epoch)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        order = order.to(X.device)
        for batch in batches:
            if schedule_per == "step":
                set_lr(len(records["losses"]))
            index = order[batch]
            optimizer.zero_grad()
            loss = loss_fn(model(X[index]), Y[index])
            loss.backward()
            value = float(loss.detach())
            if math.isfinite(value):
                optimizer.step()
            records["losses"].append(value)
            records["times"].append(time.perf_counter() - start - excluded)
            records["lrs"].append(float(optimizer.param_groups[0]["lr"]))
            records["epochs"].append(epoch)
            records["batch_sizes"].append(batch.stop - batch.start)
            if progress:
                bar.update()
                bar.set_postfix(loss=f"{value:.4g}", refresh=False)
            if not math.isfinite(value):
                diverged = True
                break
            if schedule_per == "step":
                step_scheduler()
        if diverged:
            break
        if schedule_per == "epoch":
            step_scheduler()
        if full_loss:
            full_data_loss()
    bar.close()
    if diverged and on_divergence == "raise":
        step = len(records["losses"]) - 1
        raise DivergenceError(
            f"train diverged at step {step} (epoch {records['epochs'][-1]}): mini-batch loss = "
            f"{records['losses'][-1]}; lower the learning rate, or pass on_divergence='stop'"
        )
    return History(
        **{key: np.array(values) for key, values in records.items()},
        epoch_losses=np.array(epoch_losses) if full_loss else None,
        diverged=diverged,
    )


def random_mini_batches(X, Y, batch_size: int, seed: int):
    """Shuffle ``(X, Y)`` and cut it into mini-batches: a list of ``(X_batch, Y_batch)``.

    Examples lie along axis 0 of numpy arrays ``X`` and ``Y``. The permutation is
    ``np.random.default_rng(seed).permutation(n)``; the first ``floor(n / b)`` batches hold
    ``b = batch_size`` examples and, when ``b`` does not divide ``n``, a last one holds the
    remaining ``n mod b``. Seed 004's ``X^{t}, Y^{t}`` is batch ``t`` (counted from 1).
    """
    X, Y = np.asarray(X), np.asarray(Y)
    if X.ndim == 0 or Y.ndim == 0 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must hold the same number of examples along axis 0, got "
                         f"shapes {X.shape} and {Y.shape}")
    batches = _batch_slices(X.shape[0], batch_size)
    _require_count(seed, "seed")
    order = np.random.default_rng(seed).permutation(X.shape[0])
    X, Y = X[order], Y[order]
    return [(X[batch], Y[batch]) for batch in batches]


def _batch_slices(n: int, batch_size: int) -> list:
    """``[0:b], [b:2b], ...``: consecutive slices of ``range(n)``, the last one possibly shorter."""
    if n < 1:
        raise ValueError("the training set is empty (X has no examples along axis 0)")
    _require_count(batch_size, "batch_size")
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must lie between 1 and the number of examples {n}, got "
                         f"{batch_size}")
    return [slice(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


def _all_finite(*values) -> bool:
    return all(bool(arrays.namespace(v).isfinite(v).all()) if hasattr(v, "shape")
               else math.isfinite(v) for v in values)


def _norm(difference) -> float:
    return float((difference**2).sum() ** 0.5)


def _require_count(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def _require_choice(value, name: str, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
