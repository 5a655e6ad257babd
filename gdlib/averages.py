"""Exponentially weighted moving averages (지수 가중 이동 평균), seed 004.

The recursion, with ``v_0 = 0`` and ``t = 1, 2, ...``::

    v_t = beta * v_{t-1} + (1 - beta) * theta_t

unrolls to ``v_t = sum_{i=1..t} (1 - beta) * beta**(t - i) * theta_i`` (``ewma_weights``). The
weights sum to ``1 - beta**t``, not 1, so early averages are biased towards 0; bias correction
(편향 보정) divides by that sum: ``v_t / (1 - beta**t)``. With ``beta = 0.98`` (seed 004):
``v_1 = 0.02 theta_1``, ``v_2 = 0.0196 theta_1 + 0.02 theta_2`` and ``1 - beta**2 = 0.0396``.

Seed 002 (eq 12-13) writes the same average, of squared gradients, as
``E[g^2]_t = (1 - gamma) E[g^2]_{t-1} + gamma g_t^2`` with ``gamma = 2 / (n + 1)`` for a window
of ``n`` values: gamma weights the *new* value, so ``beta = 1 - gamma`` (``beta_from_span``).
Seed 004 instead reads ``beta`` as averaging over about ``1 / (1 - beta)`` values
(``effective_window``): beta = 0.9 is "about 10 days" there and a span of n = 19 in seed 002.
"""

import math

import numpy as np

from gdlib import arrays


def ewma(x, beta: float, bias_correction: bool = False):
    """The averages ``v_1, ..., v_T`` of the series ``x`` (time along axis 0), same shape as ``x``.

    ``v_t = beta v_{t-1} + (1 - beta) x_t`` with ``v_0 = 0``; with ``bias_correction`` each
    ``v_t`` is divided by ``1 - beta**t``. Both numpy and torch input loop over time, vectorised
    over the other axes (numpy in float64 at least; for torch, autograd and devices work).
    """
    _require_beta(beta)
    if not arrays.is_tensor(x):
        x = np.asarray(x)
    arrays.require_floating(x, "x")
    if x.ndim == 0:
        raise ValueError("x must have a time axis (axis 0); got a 0-d value")
    arrays.require_finite(x, "x")
    v = _ewma_torch(x, beta) if arrays.is_tensor(x) else _ewma_numpy(x, beta)
    if bias_correction:
        xp = arrays.namespace(x)
        t = xp.arange(1, x.shape[0] + 1, dtype=x.dtype)
        if arrays.is_tensor(x):
            t = t.to(x.device)
        v = v / _one_minus_power(beta, t, xp).reshape((-1,) + (1,) * (x.ndim - 1))
    return v


def ewma_weights(beta: float, t: int, bias_correction: bool = False) -> np.ndarray:
    """The weights ``w_i = (1 - beta) beta**(t - i)``, ``i = 1..t``, such that ``v_t = sum w_i x_i``.

    They sum to ``1 - beta**t``; with ``bias_correction`` they are divided by it and sum to 1.
    """
    _require_beta(beta)
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 1:
        raise ValueError(f"t must be a positive integer, got {t!r}")
    weights = (1 - beta) * float(beta) ** np.arange(t - 1, -1, -1, dtype=float)
    if bias_correction:
        weights = weights / _one_minus_power(beta, np.float64(t), np)
    return weights


def effective_window(beta: float) -> float:
    """``1 / (1 - beta)``: roughly how many recent values the average covers (seed 004).

    After that many steps a value's weight has fallen by about ``1/e``:
    ``beta ** (1 / (1 - beta)) ~ 1/e`` (0.98**50 = 0.364, 1/e = 0.368).
    """
    _require_beta(beta)
    return 1 / (1 - beta)


def beta_from_span(n: float) -> float:
    """``beta = 1 - gamma = (n - 1) / (n + 1)`` for seed 002's ``gamma = 2 / (n + 1)`` (eq 13).

    ``n = 19`` gives ``gamma = 0.1``, ``beta = 0.9``; ``n = 1`` gives ``beta = 0`` (no averaging).
    """
    if isinstance(n, bool) or not isinstance(n, (int, float, np.number)) or not n >= 1:
        raise ValueError(f"n (the span, a window size) must be >= 1, got {n!r}")
    return 1 - 2 / (n + 1)


def span_from_beta(beta: float) -> float:
    """The inverse of ``beta_from_span``: ``n = 2 / (1 - beta) - 1 = (1 + beta) / (1 - beta)``."""
    _require_beta(beta)
    return 2 / (1 - beta) - 1


def _ewma_numpy(x, beta):
    # The recursion itself, one step per time index and vectorised over the other axes, in
    # float64 at least and cast back to x's dtype. (scipy.signal.lfilter computes the same in
    # C, but importing scipy.signal costs a second in every fresh process, such as each
    # submission's kernel when a class is graded; tests/test_averages.py checks the two agree.)
    series = x.astype(np.promote_types(x.dtype, np.float64), copy=False)
    out = np.empty_like(series)
    v = np.zeros_like(series[0])
    for t, x_t in enumerate(series):
        v = beta * v + (1 - beta) * x_t
        out[t] = v
    return out.astype(x.dtype, copy=False)


def _ewma_torch(x, beta):
    import torch

    v = torch.zeros_like(x[0])
    out = []
    for x_t in x:
        v = beta * v + (1 - beta) * x_t
        out.append(v)
    return torch.stack(out) if out else torch.zeros_like(x)


def _one_minus_power(beta, t, xp):
    """``1 - beta**t`` as ``-expm1(t log beta)``: accurate to a few ulp even when beta ~ 1."""
    log_beta = math.log(beta) if beta > 0 else -math.inf
    return -xp.expm1(t * log_beta)


def _require_beta(beta) -> None:
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.number)) or not 0 <= beta < 1:
        raise ValueError(f"beta must lie in [0, 1), got {beta!r}")
