r"""Loss functions, their gradients, and the total and mean loss over a training set.

What a loss is
--------------
A model :math:`F(\cdot;\theta)` maps an instance :math:`x_i` to a prediction
:math:`\hat y_i = F(x_i;\theta)`. A loss function (손실 함수) :math:`\ell(\hat y_i, y_i) \ge 0`
measures how wrong that prediction is against the true label :math:`y_i`; it is 0 for a perfect
prediction. The seeds use "error" (오차) and "loss" (손실) for the same thing (seed 000 §1).

Risk and empirical risk
-----------------------
What we would like to minimise is the *risk* (위험도), the expected loss over the true data
distribution (seed 003 §8.1):

    J*(theta) = E_{(x, y) ~ p_data} [ l(F(x; theta), y) ].

``p_data`` is unknown, so training replaces it by the training set of ``n`` instances and
minimises the *empirical risk* (경험적 위험도, seed 003 §8.1.1), the mean loss:

    J(theta) = (1/n) sum_i l(F(x_i; theta), y_i)            -> ``mean_loss``

Seed 000 eq 11 writes the objective as the *total* loss instead, and eq 12 minimises it over the
parameter domain Theta (R^{d_theta} when unconstrained):

    L(theta; T) = sum_i l(F(x_i; theta), y_i)               -> ``total_loss``

The two differ by the constant factor 1/n: same minimisers, gradients scaled by 1/n, so gradient
descent with learning rate eta on the total loss takes the same steps as learning rate n * eta on
the mean loss.

torch's reductions average or add over *every entry* of its unreduced loss, ours over
instances. They agree (``reduction='sum'`` is ``total_loss``, ``reduction='mean'`` is
``mean_loss`` of our per-instance values) when each instance has one value: ``mse``/``mae`` of
shape (n,), ``sigmoid_cross_entropy`` of shape (n,), ``cross_entropy`` and
``softmax_cross_entropy``. Otherwise:

- ``mse``, ``mae`` with shape (n, d): each instance is the mean of d entries, so torch's
  ``reduction='sum'`` is d * ``total_loss``; ``reduction='mean'`` is ``mean_loss``.
- ``sigmoid_cross_entropy`` with shape (n, k): each instance is the sum of k entries, so torch's
  ``reduction='sum'`` is ``total_loss``; ``reduction='mean'`` is ``mean_loss`` / k.
- ``hinge``: torch's ``multi_margin_loss`` divides each instance by C (see ``hinge``), so its
  ``'sum'`` is ``total_loss`` / C and its ``'mean'`` is ``mean_loss`` / C.

Notation and conventions
------------------------
- A batch holds ``n`` instances, one per row; ``i`` indexes instances, ``j`` output entries.
  Regression outputs have ``d`` entries (seed 000's ``d_y``), classifiers ``C`` classes.
- Seed 000 writes ``\hat y_i(j)`` for entry ``j`` of a prediction, counting from 1; the code
  counts from 0, so class "1" (dog) of Example 1 is label ``0``. ``l_{y_i}``, the index of the
  true class, is ``labels[i]``.
- Every loss returns **one value per instance**, shape ``(n,)``. Every ``*_grad`` function takes
  the same arguments and returns the gradient of the *sum* of those values with respect to the
  first argument, in its shape; since loss ``i`` depends on row ``i`` only, row ``i`` of the
  result is the gradient of loss ``i``.
- The functions accept numpy arrays and torch tensors on any device (through
  ``gdlib.arrays.namespace``) and return the same kind with the input's dtype. On tensors they
  use torch operations only, so autograd differentiates them too. torch is never imported here.
  A numpy second argument (labels, targets) next to a tensor is moved to the tensor's device.
- Bad input raises an error that names the argument: ``TypeError`` for integer predictions,
  ``ValueError`` for wrong shapes, invalid labels and probabilities outside [0, 1]. The checks of
  *values* (labels, probabilities) read data back from a GPU, a synchronisation.

Corrections to the seeds (each repeated where it applies)
----------------------------------------------------------
- Seed 000 eqs 1 and 2 write ``y_i - \hat y_i(j)``: the label needs the entry index too,
  ``y_i(j) - \hat y_i(j)``.
- Seed 000 eq 2 (MAE) squares the absolute value, ``|...|^2``, which would make it MSE again; the
  mean absolute error has no square.
- Seed 000 eq 7 (hinge loss, instance 3) writes ``\hat y_3(3) - \hat y_3(3)`` for the second
  term, where ``\hat y_3(2) - \hat y_3(3)`` is meant (its numbers, 0.15 - 0.64, use entry 2).
- Seed 002 eq 4 calls ``J = 1/2 sum_k (y_k - t_k)^2`` the mean squared error; it is half the
  *sum* of squares, ``J = (d/2) * mse``, whose gradient ``y - t`` has no factor 2/d.
- Seed 003 §8.1.1 gives cross-entropy as an example of the 0-1 loss; it is the usual
  differentiable *surrogate* (대리 손실 함수) for the 0-1 loss, as its own §8.1.2 says.
"""

import numpy as np

from gdlib.arrays import is_tensor, namespace, require_floating, require_same_shape

__all__ = [
    "cross_entropy",
    "cross_entropy_grad",
    "hinge",
    "hinge_grad",
    "log_softmax",
    "mae",
    "mae_grad",
    "mean_loss",
    "mse",
    "mse_grad",
    "sigmoid",
    "sigmoid_cross_entropy",
    "sigmoid_cross_entropy_grad",
    "softmax",
    "softmax_cross_entropy",
    "softmax_cross_entropy_grad",
    "total_loss",
    "zero_one",
]


# --------------------------------------------------------------------------------------------
# Private helpers: conversion and validation shared by the losses
# --------------------------------------------------------------------------------------------


def _as_array(x, name: str):
    """``x`` as a numpy array unless it already is a tensor."""
    if is_tensor(x):
        return x
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be a numpy array or a torch tensor: {error}") from None


def _like(x, reference, name: str):
    """``x`` as the same kind of array as ``reference`` (a tensor on its device, or numpy)."""
    if is_tensor(reference):
        if is_tensor(x):
            return x
        return namespace(reference).as_tensor(np.asarray(x), device=reference.device)
    if is_tensor(x):
        raise TypeError(
            f"{name} is a torch tensor but the first argument is a numpy array; pass both as "
            f"numpy arrays or both as tensors"
        )
    return np.asarray(x)


def _require_ndim(x, name: str, allowed: tuple, shape_hint: str) -> None:
    """Raise ``ValueError`` when ``x.ndim`` is not one of ``allowed``."""
    if x.ndim not in allowed:
        raise ValueError(f"{name} must have shape {shape_hint}, got shape {tuple(x.shape)}")


def _first_true(mask) -> int:
    """Index of the first True entry of a 1-D boolean array (numpy or torch)."""
    # ndarray.nonzero() is a tuple of index arrays, Tensor.nonzero() a (k, 1) tensor: [0][0]
    # is the first index in both.
    return int(mask.nonzero()[0][0])


def _is_integer(x) -> bool:
    """True when ``x`` holds integers (bool is not an integer class index)."""
    if is_tensor(x):
        return not (x.is_floating_point() or x.is_complex() or x.dtype == namespace(x).bool)
    return np.issubdtype(x.dtype, np.integer)


def _regression_pair(pred, target):
    """Validated ``(pred, target)`` of equal shape ``(n,)`` or ``(n, d)``, and ``d``."""
    pred = _as_array(pred, "pred")
    target = _like(target, pred, "target")
    require_floating(pred, "pred")
    require_floating(target, "target")
    _require_ndim(pred, "pred", (1, 2), "(n,) or (n, d)")
    require_same_shape(pred, target, "pred", "target")
    d = pred.shape[-1] if pred.ndim == 2 else 1
    return pred, target, d


def _mean_last(values):
    """Mean over the last axis of a batch ``(n, d)``; a batch ``(n,)`` has d = 1."""
    return namespace(values).mean(values, axis=-1) if values.ndim == 2 else values


def _sum_last(values):
    """Sum over the last axis of a batch ``(n, k)``; a batch ``(n,)`` is returned unchanged."""
    return namespace(values).sum(values, axis=-1) if values.ndim == 2 else values


def _class_scores(x, name: str):
    """Validated floating-point batch of per-class values, shape ``(n, C)``."""
    x = _as_array(x, name)
    require_floating(x, name)
    _require_ndim(x, name, (2,), "(n, C): one row of class scores per instance")
    return x


def _labels(labels, scores, name: str, scores_name: str):
    """Validated integer class indices, shape ``(n,)``, values in ``[0, C)``."""
    labels = _like(labels, scores, name)
    n, num_classes = scores.shape
    if not _is_integer(labels):
        raise ValueError(
            f"{name} must hold integer class indices in [0, {num_classes}), got dtype "
            f"{labels.dtype} (convert with .astype(int) / .long(); targets given as "
            f"probabilities per class have shape (n, C))"
        )
    if tuple(labels.shape) != (n,):
        raise ValueError(
            f"shape mismatch: {name} has shape {tuple(labels.shape)} but {scores_name} has "
            f"shape {tuple(scores.shape)}; expected one label per row, shape ({n},)"
        )
    bad = (labels < 0) | (labels >= num_classes)
    if bool(bad.any()):
        i = _first_true(bad)
        raise ValueError(
            f"{name}[{i}] = {int(labels[i])} is not a class index in [0, {num_classes})"
        )
    return labels


def _class_mask(labels, like):
    """Boolean ``(n, C)`` array, True at ``[i, labels[i]]``; ``like`` gives C and the device."""
    num_classes = like.shape[-1]
    if is_tensor(like):
        classes = namespace(like).arange(num_classes, device=like.device)
    else:
        classes = np.arange(num_classes)
    return labels[:, None] == classes[None, :]


def _one_hot(labels, like):
    """One-hot rows of ``like``'s dtype and kind for integer ``labels``."""
    xp = namespace(like)
    return xp.where(_class_mask(labels, like), xp.ones_like(like), xp.zeros_like(like))


def _require_unit_interval(x, name: str, hint: str = "") -> None:
    """Raise ``ValueError`` naming ``name`` unless every entry lies in [0, 1] (NaN fails)."""
    outside = ~((x >= 0) & (x <= 1))
    if bool(outside.any()):
        flat = _first_true(outside.reshape(-1))
        index = tuple(int(i) for i in np.unravel_index(flat, tuple(x.shape)))
        value = float(x.reshape(-1)[flat])
        raise ValueError(f"{name} must lie in [0, 1], found {name}{list(index)} = {value}{hint}")


def _require_rows_sum_to_one(y, name: str) -> None:
    """Raise ``ValueError`` when a row of ``y`` does not sum to 1 (within sqrt(machine eps))."""
    xp = namespace(y)
    tolerance = float(xp.finfo(y.dtype).eps) ** 0.5
    off = xp.abs(xp.sum(y, axis=-1) - 1) > tolerance
    if bool(off.any()):
        i = _first_true(off)
        raise ValueError(
            f"row {i} of {name} sums to {float(xp.sum(y[i]))}, not 1: each row of a target "
            f"distribution must sum to 1"
        )


def _target_distribution(y, scores, name: str, scores_name: str):
    """Targets as rows of a distribution ``(n, C)``: integer labels become one-hot rows."""
    y = _like(y, scores, name)
    if y.ndim == 1:
        return _one_hot(_labels(y, scores, name, scores_name), scores)
    if y.ndim != 2:
        raise ValueError(
            f"{name} must be integer class indices of shape (n,) or target distributions of "
            f"shape (n, C), got shape {tuple(y.shape)}"
        )
    require_floating(y, name)
    require_same_shape(y, scores, name, scores_name)
    _require_unit_interval(y, name)
    _require_rows_sum_to_one(y, name)
    return y


def _positive_part(x):
    """max(0, x) with gradient 1 exactly where x > 0 (the convention of torch's hinge losses)."""
    return namespace(x).where(x > 0, x, 0)


def _branch_magnitude(x):
    """|x| written as where(x >= 0, x, -x), so that autograd takes slope +1 at x = 0.

    The stable sigmoid formulas below choose their branch with ``x >= 0``; differentiating |x|
    with the same choice keeps the derivative at 0 right (torch's ``abs`` has slope 0 there).
    """
    return namespace(x).where(x >= 0, x, -x)


def _softplus(x):
    """log(1 + e^x) without overflow: max(x, 0) + log(1 + e^{-|x|})."""
    xp = namespace(x)
    return xp.where(x >= 0, x, 0) + xp.log1p(xp.exp(-_branch_magnitude(x)))


# --------------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------------


def softmax(logits):
    r"""Softmax over the last axis: softmax(z)_j = e^{z_j} / sum_k e^{z_k}.

    Computed as e^{z_j - m} / sum_k e^{z_k - m} with m = max_k z_k (the same value, since the
    factor e^{-m} cancels), so no exponent exceeds 0 and nothing overflows for large logits.
    The rows are probability distributions over the C classes (softmax cross-entropy, seed 000
    §1).
    """
    logits = _as_array(logits, "logits")
    require_floating(logits, "logits")
    xp = namespace(logits)
    e = xp.exp(logits - xp.amax(logits, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


def log_softmax(logits):
    r"""Logarithm of the softmax over the last axis: z_j - log sum_k e^{z_k}.

    Written with the log-sum-exp shift, z_j - m - log sum_k e^{z_k - m}, m = max_k z_k: it is
    finite for logits of any size (``log(softmax(z))`` gives -inf once a probability underflows).
    """
    logits = _as_array(logits, "logits")
    require_floating(logits, "logits")
    xp = namespace(logits)
    shifted = logits - xp.amax(logits, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


def sigmoid(x):
    r"""Logistic sigmoid 1 / (1 + e^{-x}), elementwise (seed 002 eq 2).

    For x >= 0 it uses 1 / (1 + e^{-x}); for x < 0 the equal form e^{x} / (1 + e^{x}). Only
    e^{-|x|} <= 1 is ever computed, so there is no overflow for large |x|; sigmoid(1000) = 1 and
    sigmoid(-1000) = 0 exactly.
    """
    x = _as_array(x, "x")
    require_floating(x, "x")
    xp = namespace(x)
    z = xp.exp(-_branch_magnitude(x))
    return xp.where(x >= 0, 1 / (1 + z), z / (1 + z))


# --------------------------------------------------------------------------------------------
# Regression losses
# --------------------------------------------------------------------------------------------


def mse(pred, target):
    r"""Mean squared error (평균제곱오차) per instance, seed 000 eq 1 (corrected).

        l_MSE(\hat y_i, y_i) = (1/d) sum_{j=1}^{d} (y_i(j) - \hat y_i(j))^2

    ``pred`` and ``target`` have shape ``(n, d)``, or ``(n,)`` meaning d = 1; returns ``(n,)``.
    Equals ``F.mse_loss(pred, target, reduction='none').mean(-1)`` in torch.

    Correction: seed 000 eq 1 writes ``y_i`` without the entry index ``(j)``.
    Seed 002 eq 4, ``J = 1/2 sum_k (y_k - t_k)^2``, is not this mean but half the sum of
    squares: J = (d/2) * mse(y, t) per instance.
    """
    pred, target, _ = _regression_pair(pred, target)
    return _mean_last((pred - target) ** 2)


def mse_grad(pred, target):
    r"""Gradient of the summed ``mse`` w.r.t. ``pred``: (2/d) (\hat y_i - y_i), shape of ``pred``.

    (Seed 002's half sum of squares, eq 4, has gradient \hat y - y: the factor d/2 apart.)
    """
    pred, target, d = _regression_pair(pred, target)
    return (2 / d) * (pred - target)


def mae(pred, target):
    r"""Mean absolute error (평균절대오차) per instance, seed 000 eq 2 (corrected).

        l_MAE(\hat y_i, y_i) = (1/d) sum_{j=1}^{d} |y_i(j) - \hat y_i(j)|

    Shapes as in ``mse``. Equals ``F.l1_loss(pred, target, reduction='none').mean(-1)``.

    Correction: seed 000 eq 2 writes ``|y_i - \hat y_i(j)|^2``: the label lacks the index
    ``(j)``, and the square does not belong to the absolute error (with it, eq 2 is eq 1).
    """
    pred, target, _ = _regression_pair(pred, target)
    return _mean_last(namespace(pred).abs(pred - target))


def mae_grad(pred, target):
    r"""Subgradient of the summed ``mae`` w.r.t. ``pred``: sign(\hat y_i - y_i) / d.

    |t| has no derivative at t = 0; like torch's ``l1_loss`` we take sign(0) = 0 there.
    """
    pred, target, d = _regression_pair(pred, target)
    return namespace(pred).sign(pred - target) / d


# --------------------------------------------------------------------------------------------
# Classification losses
# --------------------------------------------------------------------------------------------


def zero_one(scores, labels):
    r"""0-1 loss per instance: 1 when the top-scoring class is wrong, 0 when it is right.

        l_01(\hat y_i, y_i) = 1[ argmax_j \hat y_i(j) != l_{y_i} ]

    ``scores`` (n, C), ``labels`` (n,) class indices; returns (n,) in the dtype of ``scores``;
    a tie goes to the lowest class index, as ``argmax``. Its mean is the error rate. It is the
    error a classifier is judged by, not one gradient descent can minimise: as a function of
    the scores it is piecewise constant, so its gradient is 0 wherever it exists. Training
    minimises a differentiable surrogate (대리 손실 함수) instead, such as ``hinge`` or
    ``softmax_cross_entropy`` (seed 003 §8.1.2); there is no ``zero_one_grad``.
    """
    scores = _class_scores(scores, "scores")
    labels = _labels(labels, scores, "labels", "scores")
    wrong = namespace(scores).argmax(scores, 1) != labels
    return wrong.to(scores.dtype) if is_tensor(scores) else wrong.astype(scores.dtype)


def _hinge_margins(scores, labels, margin):
    """Per-class terms s_j - s_y + margin of the hinge loss and the true-class mask."""
    scores = _class_scores(scores, "scores")
    labels = _labels(labels, scores, "labels", "scores")
    xp = namespace(scores)
    is_true_class = _class_mask(labels, scores)
    true_score = xp.sum(xp.where(is_true_class, scores, 0), axis=-1, keepdims=True)
    return scores - true_score + margin, is_true_class


def hinge(scores, labels, margin=1.0):
    r"""Multiclass hinge loss (힌지 손실) per instance, seed 000 eq 3.

        l_Hinge(\hat y_i, y_i) = sum_{j != l_{y_i}} max(0, \hat y_i(j) - \hat y_i(l_{y_i}) + margin)

    with margin 1 in the seed. ``scores`` (n, C) are the model's class scores (seed 000 Example 1
    feeds it probabilities; any real scores work), ``labels`` (n,) the true class indices
    l_{y_i}; returns (n,). Zero once the true class beats every other class by the margin.

    torch's ``F.multi_margin_loss(scores, labels, margin=margin, reduction='none')`` divides
    this sum by the number of classes C (its docs: "/ x.size(0)", the length of one score row),
    so ``hinge = C * multi_margin_loss``. We keep the seed's (and CS231n's) plain sum, so the
    worked numbers of Example 1 (1.53, 1.41, 1.08) come out as printed.

    Correction: seed 000 eq 7 (instance 3) writes ``\hat y_3(3) - \hat y_3(3)`` in the second
    term; ``\hat y_3(2) - \hat y_3(3)`` is meant, as the numbers 0.15 - 0.64 show.
    """
    margins, is_true_class = _hinge_margins(scores, labels, margin)
    xp = namespace(margins)
    return xp.sum(xp.where(is_true_class, 0, _positive_part(margins)), axis=-1)


def hinge_grad(scores, labels, margin=1.0):
    r"""Subgradient of the summed ``hinge`` w.r.t. ``scores``, shape (n, C).

    With v_ij = 1 when class j != l_{y_i} violates the margin (s_j - s_y + margin > 0, strictly,
    as in torch's ``multi_margin_loss``) and 0 otherwise:

        d l_i / d s_ij = v_ij  (j != l_{y_i}),      d l_i / d s_{i,l_{y_i}} = -sum_j v_ij.
    """
    margins, is_true_class = _hinge_margins(scores, labels, margin)
    xp = namespace(margins)
    zeros = xp.zeros_like(margins)
    violations = xp.where(is_true_class | ~(margins > 0), zeros, xp.ones_like(margins))
    count = xp.sum(violations, axis=-1, keepdims=True)
    return xp.where(is_true_class, -count, violations)


def _safe_log(p):
    """log p with log 0 = -inf, no warning, and a finite autograd path at p = 0."""
    xp = namespace(p)
    positive = p > 0
    return xp.where(positive, xp.log(xp.where(positive, p, 1)), -np.inf)


def _expected_neg_log(y, log_p):
    """-sum_j y_j log p_j per row, with terms where y_j = 0 counted as 0 even if log p_j = -inf."""
    xp = namespace(log_p)
    return -xp.sum(y * xp.where(y > 0, log_p, 0), axis=-1)


def _cross_entropy_inputs(probs, y):
    """Validated probabilities (n, C) and the targets as distributions (n, C)."""
    probs = _class_scores(probs, "probs")
    _require_unit_interval(
        probs, "probs", hint="; for raw scores (logits) use softmax_cross_entropy"
    )
    return probs, _target_distribution(y, probs, "y", "probs")


def cross_entropy(probs, y):
    r"""Cross-entropy (교차 엔트로피) of predicted probabilities, seed 000 eq 4, seed 002 eq 5.

        l_CE(\hat y_i, y_i) = - sum_{j=1}^{C} y_i(j) log \hat y_i(j)        (natural log)

    ``probs`` (n, C) are predicted probabilities \hat y_i (e.g. a softmax output), each in
    [0, 1]. ``y`` is either integer class indices (n,), meaning one-hot rows, so that
    l_i = -log probs[i, y_i] (torch: ``F.nll_loss(probs.log(), y, reduction='none')``), or target
    distributions (n, C), e.g. one-hot rows as floats; each row must lie in [0, 1] and sum to 1.
    Seed 002 eq 5 is the same sum with t_k for y_i(j) and y_k for \hat y_i(j).

    log 0: a term with y_i(j) = 0 counts 0 whatever \hat y_i(j) is (the limit of t log t, so
    0 * log 0 = 0); a class with y_i(j) > 0 but \hat y_i(j) = 0 makes the loss +inf, the true
    value: the model called the observed class impossible. No warning is raised. To stay finite,
    compute from logits with ``softmax_cross_entropy``.
    """
    probs, y = _cross_entropy_inputs(probs, y)
    return _expected_neg_log(y, _safe_log(probs))


def cross_entropy_grad(probs, y):
    r"""Gradient of the summed ``cross_entropy`` w.r.t. ``probs``: -y_i(j) / \hat y_i(j).

    Entries with y_i(j) = 0 are 0 (also when \hat y_i(j) = 0); entries with y_i(j) > 0 and
    \hat y_i(j) = 0 are -inf. This is the gradient with respect to the probabilities as free
    variables; through a softmax it becomes ``softmax_cross_entropy_grad``.
    """
    probs, y = _cross_entropy_inputs(probs, y)
    xp = namespace(probs)
    positive = probs > 0
    ratio = xp.where(positive, -y / xp.where(positive, probs, 1), -np.inf)
    return xp.where(y > 0, ratio, 0)


def softmax_cross_entropy(logits, labels):
    r"""Softmax cross-entropy per instance: cross_entropy(softmax(logits), labels), stably.

        l_i = - sum_j y_i(j) log softmax(z_i)_j = log sum_k e^{z_ik} - sum_j y_i(j) z_ij

    (seed 000 eq 4 with \hat y_i = softmax(z_i), the "softmax cross entropy" of seed 000 §1).
    ``logits`` (n, C) are raw scores z_i; ``labels`` integer class indices (n,) or target
    distributions (n, C) as in ``cross_entropy``. Equals torch's
    ``F.cross_entropy(logits, labels, reduction='none')``. Uses ``log_softmax``, so it is finite
    for logits of any size.
    """
    logits = _class_scores(logits, "logits")
    y = _target_distribution(labels, logits, "labels", "logits")
    return _expected_neg_log(y, log_softmax(logits))


def softmax_cross_entropy_grad(logits, labels):
    r"""Gradient of the summed ``softmax_cross_entropy`` w.r.t. ``logits``: softmax(z_i) - y_i.

    (From l_i = log sum_k e^{z_ik} - sum_j y_ij z_ij and sum_j y_ij = 1.)
    """
    logits = _class_scores(logits, "logits")
    y = _target_distribution(labels, logits, "labels", "logits")
    return softmax(logits) - y


def _sigmoid_inputs(logits, targets):
    """Validated logits and targets of equal shape (n,) or (n, k), targets in [0, 1]."""
    logits = _as_array(logits, "logits")
    targets = _like(targets, logits, "targets")
    require_floating(logits, "logits")
    require_floating(targets, "targets")
    _require_ndim(logits, "logits", (1, 2), "(n,) or (n, k)")
    require_same_shape(logits, targets, "logits", "targets")
    _require_unit_interval(targets, "targets", hint="; binary targets are 0 or 1, not -1/+1")
    return logits, targets


def sigmoid_cross_entropy(logits, targets):
    r"""Sigmoid (binary) cross-entropy from logits, per instance (seed 000 §1).

    With p = sigmoid(z) (seed 002 eq 2) and target t in [0, 1], seed 000 eq 4 over the two
    outcomes {t, 1 - t} reads

        l(z, t) = -t log p - (1 - t) log(1 - p) = log(1 + e^z) - t z
                = max(z, 0) - t z + log(1 + e^{-|z|}),

    the last form being finite for any z (l(1000, 0) = 1000, l(1000, 1) = 0 exactly).
    ``logits`` and ``targets`` of shape (n,) give one binary decision per instance, (n,);
    shape (n, k) holds k independent binary labels (multi-label) and the k losses are summed,
    giving (n,). Equals ``F.binary_cross_entropy_with_logits(logits, targets,
    reduction='none')``, summed over the last axis for (n, k).
    """
    logits, targets = _sigmoid_inputs(logits, targets)
    return _sum_last(_softplus(logits) - targets * logits)


def sigmoid_cross_entropy_grad(logits, targets):
    r"""Gradient of the summed ``sigmoid_cross_entropy`` w.r.t. ``logits``: sigmoid(z) - t."""
    logits, targets = _sigmoid_inputs(logits, targets)
    return sigmoid(logits) - targets


# --------------------------------------------------------------------------------------------
# Total loss and empirical risk
# --------------------------------------------------------------------------------------------


def _per_instance(per_instance):
    """Validated per-instance losses, a floating-point array of shape (n,)."""
    per_instance = _as_array(per_instance, "per_instance")
    require_floating(per_instance, "per_instance")
    _require_ndim(per_instance, "per_instance", (1,), "(n,): one loss per instance")
    return per_instance


def total_loss(per_instance):
    r"""Total loss over a set of instances, seed 000 eq 11: L(theta; T) = sum_i l_i.

    ``per_instance`` holds the losses l_i, shape (n,), as every loss here returns. Training
    minimises this over theta (seed 000 eq 12). torch's ``reduction='sum'`` equals it, except for
    ``mse``/``mae`` of shape (n, d), where it is d * total_loss, and ``hinge``, where it is
    total_loss / C (see the module docstring).
    """
    per_instance = _per_instance(per_instance)
    return namespace(per_instance).sum(per_instance)


def mean_loss(per_instance):
    r"""Mean loss, the empirical risk (경험적 위험도, seed 003 §8.1.1): (1/n) sum_i l_i.

    Same minimisers as ``total_loss``; its gradient is 1/n times as large. torch's
    ``reduction='mean'`` equals it for ``mse``/``mae`` of any shape; it is mean_loss / k for
    ``sigmoid_cross_entropy`` of shape (n, k) and mean_loss / C for ``hinge`` (see the module
    docstring).
    """
    per_instance = _per_instance(per_instance)
    if per_instance.shape[0] == 0:
        raise ValueError("per_instance is empty: the mean loss of zero instances is undefined")
    return namespace(per_instance).mean(per_instance)
