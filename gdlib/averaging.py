r"""Averages of the iterates (반복값 평균): Polyak averaging (폴랴크 평균법), seed 003 §8.7.3.

An optimizer's iterates ``theta_1, theta_2, ...`` wander around a minimum when the gradient
is noisy (SGD with a constant learning rate). Polyak and Juditsky average the points of the
trajectory instead of keeping the last one::

    running mean:   bar_t = (1 / t) sum_{i=1..t} theta_i
                          = bar_{t-1} + (theta_t - bar_{t-1}) / t      (bar_0 arbitrary)

The second line is the recursion ``polyak_step`` computes; it never stores the trajectory.
``start = s`` averages ``theta_s, ..., theta_t`` only (the first iterates, far from the
minimum, would otherwise weigh on the mean for a long time): suffix averaging.

For non-convex problems seed 003 (after Goodfellow et al. §8.7.3) suggests an exponential moving
average of the iterates, which forgets the distant past::

    EMA:   bar_t = beta bar_{t-1} + (1 - beta) theta_t,   bar_0 = 0

(``gdlib.averages.ewma`` on the trajectory; ``bias_correction`` divides by ``1 - beta**t``).
``torch.optim.swa_utils.AveragedModel`` keeps the running mean of a model's parameters in the
same way (its default ``avg_fn`` is the recursion above).
"""

import numpy as np

from gdlib import arrays, averages


def polyak_step(average, theta, t: int):
    """One update of the running mean: ``bar_t = bar_{t-1} + (theta_t - bar_{t-1}) / t``.

    ``t >= 1`` counts the iterates averaged so far including ``theta``; with ``t = 1`` the
    result is ``theta`` whatever ``average`` holds. Returns a new array.
    """
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 1:
        raise ValueError(f"t must be an integer >= 1, got {t!r}")
    arrays.require_same_shape(average, theta, "average", "theta")
    return average + (theta - average) / t


def _trajectory(iterates):
    x = iterates if arrays.is_tensor(iterates) else np.asarray(iterates)
    arrays.require_floating(x, "iterates")
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError("iterates must have a non-empty time axis (axis 0)")
    return x


def polyak_average(iterates, start: int = 0):
    """The running means ``bar_1, ..., bar_T`` of ``iterates`` (time along axis 0).

    Row ``t`` (0-based) is the mean of ``iterates[start : t + 1]``; rows before ``start`` are
    the iterates themselves (nothing averaged yet). Same shape as ``iterates``.
    """
    x = _trajectory(iterates)
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise ValueError(f"start must be an integer >= 0, got {start!r}")
    xp = arrays.namespace(x)
    tail = x[start:]
    counts = xp.arange(1, tail.shape[0] + 1, dtype=tail.dtype)
    means = xp.cumsum(tail, 0) / counts.reshape((-1,) + (1,) * (x.ndim - 1))
    return xp.concatenate([x[:start], means], 0) if start else means


def ema_average(iterates, beta: float, bias_correction: bool = True):
    """The exponential moving averages of the iterates, ``bar_t = beta bar_{t-1} + (1-beta)
    theta_t`` from ``bar_0 = 0``, divided by ``1 - beta**t`` when ``bias_correction``."""
    return averages.ewma(_trajectory(iterates), beta, bias_correction=bias_correction)
