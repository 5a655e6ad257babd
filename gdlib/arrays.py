"""Helpers that let one formula serve numpy arrays and torch tensors.

A formula written with arithmetic operators and the functions of ``namespace(x)`` (``sqrt``,
``exp``, ``log``, ``abs``, ``zeros_like``, ``where`` ...) runs unchanged on both, on any torch
device. torch is never imported here: a tensor can only exist if the caller imported torch.
"""

import sys

import numpy as np


def is_tensor(x) -> bool:
    """True when ``x`` is a torch tensor."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def namespace(x):
    """The module whose functions apply to ``x``: ``torch`` for tensors, what
    ``x.__array_namespace__()`` returns for other arrays that name theirs (the Array API
    standard's protocol; numpy's arrays name numpy, ``gdlib.inplace``'s symbols their recorder),
    ``numpy`` otherwise."""
    if is_tensor(x):
        return sys.modules["torch"]
    if not isinstance(x, (np.ndarray, np.generic)) and hasattr(type(x), "__array_namespace__"):
        return x.__array_namespace__()
    return np


def is_floating(x) -> bool:
    """True when ``x`` holds floating-point numbers (numpy array or torch tensor)."""
    if is_tensor(x):
        return x.is_floating_point()
    return np.issubdtype(np.asarray(x).dtype, np.floating)


def require_floating(x, name: str) -> None:
    """Raise ``TypeError`` naming ``name`` when ``x`` is not a floating-point array."""
    if not is_floating(x):
        dtype = x.dtype if hasattr(x, "dtype") else type(x).__name__
        raise TypeError(
            f"{name} must hold floating-point numbers, got dtype {dtype}; "
            f"convert it first, e.g. {name}.astype(float) or {name}.float()"
        )


def require_same_shape(a, b, name_a: str, name_b: str) -> None:
    """Raise ``ValueError`` naming both arguments when their shapes differ."""
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"shape mismatch: {name_a} has shape {tuple(a.shape)} but {name_b} has shape "
            f"{tuple(b.shape)}"
        )


def require_finite(x, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` when ``x`` holds NaN or infinity.

    On a tensor this reads a value back from its device (a synchronisation on CUDA).
    """
    finite = bool(namespace(x).isfinite(x).all())
    if not finite:
        raise ValueError(f"{name} contains NaN or infinity")
