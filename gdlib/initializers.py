r"""Parameter initialization (매개변수 초기화), seed 003 §8.4.

A weight matrix has shape ``(n, m) = (fan_out, fan_in)``, torch's ``nn.Linear.weight``
layout: row ``j`` holds the ``m`` incoming weights of unit ``j``. Every function draws from a
numpy ``Generator`` (``np.random.default_rng(seed)``) and returns a float64 array::

    scaled_uniform    W_ij ~ U(-s, s)                    s = scale (default 1/sqrt(m))
    scaled_normal     W_ij ~ N(0, s^2)
    glorot_uniform    W_ij ~ U(-a, a)                    a = gain sqrt(6 / (m + n))
    he_normal         W_ij ~ N(0, 2 / m)                 (ReLU layers)
    orthogonal        W = gain * Q,  Q with orthonormal rows (n <= m) or columns (n >= m)
    sparse            each unit (row) has exactly k non-zero weights ~ N(0, s^2)

Normalized (Glorot-Bengio) initialization keeps ``Var(W_ij) = 2 / (m + n)``, the compromise
between equal activation variances (``Var = 1/m``) and equal gradient variances (``1/n``)
across layers (seed 003 §8.4). Orthogonal initialization is what Gram-Schmidt (그람 슈미트
직교화) or, here, a QR decomposition of a Gaussian matrix gives. torch equivalents:
``nn.init.uniform_``, ``normal_``, ``xavier_uniform_``, ``kaiming_normal_(nonlinearity='relu')``
and ``orthogonal_``. ``nn.init.sparse_(W, sparsity)`` is a different rule: it zeros a
*fraction* of each *column* (input), not all but ``k`` weights of each row (unit).
"""

import math

import numpy as np


def _shape(shape) -> tuple[int, int]:
    shape = tuple(int(d) for d in shape)
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be (fan_out, fan_in) with both >= 1, got {shape}")
    return shape


def scaled_uniform(shape, rng: np.random.Generator, scale: float | None = None) -> np.ndarray:
    """``U(-s, s)`` with ``s = scale``, by default ``1 / sqrt(fan_in)``."""
    n, m = _shape(shape)
    s = 1.0 / math.sqrt(m) if scale is None else float(scale)
    return rng.uniform(-s, s, size=(n, m))


def scaled_normal(shape, rng: np.random.Generator, scale: float) -> np.ndarray:
    """``N(0, scale^2)`` in every entry."""
    return scale * rng.standard_normal(_shape(shape))


def glorot_bound(shape, gain: float = 1.0) -> float:
    """``gain * sqrt(6 / (fan_in + fan_out))``, the bound of normalized initialization."""
    n, m = _shape(shape)
    return gain * math.sqrt(6.0 / (m + n))


def glorot_uniform(shape, rng: np.random.Generator, gain: float = 1.0) -> np.ndarray:
    """Normalized (Xavier-Glorot) initialization: ``U(-a, a)``, ``a = glorot_bound``."""
    return scaled_uniform(shape, rng, glorot_bound(shape, gain))


def he_normal(shape, rng: np.random.Generator) -> np.ndarray:
    """He initialization for ReLU layers: ``N(0, 2 / fan_in)``."""
    n, m = _shape(shape)
    return scaled_normal((n, m), rng, math.sqrt(2.0 / m))


def orthogonal(shape, rng: np.random.Generator, gain: float = 1.0) -> np.ndarray:
    """``gain * Q``: orthonormal rows when fan_out <= fan_in, orthonormal columns otherwise.

    ``Q`` comes from the QR decomposition of a standard Gaussian matrix with the signs of
    ``diag(R)`` moved into ``Q``, so that it is uniformly (Haar) distributed.
    """
    n, m = _shape(shape)
    a = rng.standard_normal((max(n, m), min(n, m)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    return gain * (q.T if n < m else q)


def sparse(shape, rng: np.random.Generator, k: int, scale: float = 1.0) -> np.ndarray:
    """Each row (unit) gets exactly ``k`` non-zero weights ``~ N(0, scale^2)``, at random inputs.

    Unlike dense rules the scale does not shrink with ``fan_in``: the units differ more at the
    start (seed 003 §8.4) without the total input growing with the layer's width.
    """
    n, m = _shape(shape)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= m:
        raise ValueError(f"k must be an integer in [1, fan_in={m}], got {k!r}")
    w = np.zeros((n, m))
    for j in range(n):
        columns = rng.choice(m, size=k, replace=False)
        w[j, columns] = scale * rng.standard_normal(k)
    return w


SCHEMES = {
    "small": lambda shape, rng: scaled_normal(shape, rng, 0.01),
    "large": lambda shape, rng: scaled_normal(shape, rng, 1.0),
    "scaled 1/sqrt(m)": lambda shape, rng: scaled_uniform(shape, rng),
    "Glorot (normalized)": lambda shape, rng: glorot_uniform(shape, rng),
    "He": he_normal,
    "orthogonal": lambda shape, rng: orthogonal(shape, rng, math.sqrt(2.0)),
    "sparse (k=15)": lambda shape, rng: sparse(shape, rng, min(15, shape[1]),
                                               1.0 / math.sqrt(15)),
}
"""Named rules ``(shape, rng) -> W`` compared in the book (orthogonal with gain sqrt(2) for ReLU)."""


def initialize_linear_layers(model, scheme, seed: int) -> None:
    """Set every ``torch.nn.Linear`` weight of ``model`` from ``scheme(shape, rng)``, biases 0.

    ``scheme`` is a name of ``SCHEMES`` or a function; the layers are drawn in order from one
    generator ``default_rng(seed)``. Modifies ``model`` in place (no gradient recorded).
    """
    import torch

    rule = SCHEMES[scheme] if isinstance(scheme, str) else scheme
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, torch.nn.Linear):
                w = rule(tuple(layer.weight.shape), rng)
                layer.weight.copy_(torch.as_tensor(w, dtype=layer.weight.dtype))
                if layer.bias is not None:
                    layer.bias.zero_()
