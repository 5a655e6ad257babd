r"""Gradient clipping (기울기 절단), seed 003 §8.2 (cliffs and exploding gradients).

Near a cliff (절벽) of the loss the gradient is huge and one step throws the parameters far
away. Clipping bounds the step and keeps (by norm) or changes (by value) its direction.

By norm, with threshold ``c > 0`` and ``||g||`` the Euclidean norm of *all* the gradients
together (one global norm when ``g`` is a list of arrays)::

    g <- g * min(1, c / (||g|| + eps))

so a gradient longer than ``c`` is rescaled to length ``c`` (up to ``eps``) and keeps its
direction; a shorter one is unchanged. ``eps = 0`` (the default) is the textbook rule ``if
||g|| > c: g <- c g / ||g||``; ``eps = 1e-6`` is ``torch.nn.utils.clip_grad_norm_`` exactly.

By value, coordinate by coordinate::

    g_i <- min(c, max(-c, g_i))

which is ``torch.nn.utils.clip_grad_value_``. It bounds every coordinate but turns the
direction of a long gradient towards the diagonal ``(+-1, ..., +-1)``.

Every function takes numpy arrays or torch tensors and returns new ones (nothing in place).
"""

import math

import numpy as np

from gdlib import arrays


def _as_list(grads) -> tuple[list, bool]:
    """``(list of arrays, was_a_sequence)``; a single array becomes a list of one."""
    if isinstance(grads, (list, tuple)):
        if not grads:
            raise ValueError("grads is an empty sequence")
        return list(grads), True
    return [grads], False


def _checked(g, name: str):
    g = g if arrays.is_tensor(g) else np.asarray(g)
    arrays.require_floating(g, name)
    return g


def _require_threshold(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")


def global_norm(grads) -> float:
    """``||g|| = sqrt(sum_k ||g_k||^2)`` over one array or a list of arrays, as a float."""
    parts, _ = _as_list(grads)
    total = 0.0
    for k, g in enumerate(parts):
        g = _checked(g, f"grads[{k}]")
        g = g.detach() if arrays.is_tensor(g) else g  # the factor is a constant for autograd
        total += float((g * g).sum())
    return math.sqrt(total)


def clip_factor(norm: float, max_norm: float, eps: float = 0.0) -> float:
    """The factor ``min(1, c / (||g|| + eps))`` of clipping by norm (1 for a zero gradient)."""
    _require_threshold(max_norm, "max_norm")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    if norm + eps == 0:
        return 1.0
    return min(1.0, max_norm / (norm + eps))


def clip_by_norm(grads, max_norm: float, eps: float = 0.0):
    """``g * min(1, max_norm / (||g|| + eps))``, ``||g||`` the global norm of ``grads``.

    ``grads`` is one array (tensor) or a list/tuple of them; the result has the same form.
    ``eps=1e-6`` reproduces ``torch.nn.utils.clip_grad_norm_(params, max_norm)``.
    """
    parts, sequence = _as_list(grads)
    factor = clip_factor(global_norm(parts), max_norm, eps)
    clipped = [_checked(g, "grads") * factor for g in parts]
    return type(grads)(clipped) if sequence else clipped[0]


def clip_by_value(grads, clip_value: float):
    """Every coordinate clamped to ``[-clip_value, clip_value]`` (``clip_grad_value_``)."""
    _require_threshold(clip_value, "clip_value")
    parts, sequence = _as_list(grads)
    clipped = []
    for g in parts:
        g = _checked(g, "grads")
        if arrays.is_tensor(g):
            clipped.append(g.clamp(-clip_value, clip_value))
        else:
            clipped.append(np.clip(g, -clip_value, clip_value))
    return type(grads)(clipped) if sequence else clipped[0]


def clipped_gradient(grad_fn, how: str, threshold: float):
    """``grad_fn`` followed by clipping (``how`` = ``"norm"`` or ``"value"``): a new function."""
    if how not in ("norm", "value"):
        raise ValueError(f"how must be 'norm' or 'value', got {how!r}")
    clip = clip_by_norm if how == "norm" else clip_by_value

    def clipped(theta):
        return clip(grad_fn(theta), threshold)

    return clipped
