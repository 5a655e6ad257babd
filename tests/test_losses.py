"""Tests of gdlib.losses: the seed's worked example, torch.nn.functional, autograd, stability and
input errors."""

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from gdlib import losses

torch = pytest.importorskip("torch")
F = torch.nn.functional

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SEEDS = [0, 1, 2]
SIZES = [(1, 2), (6, 3), (20, 10)]  # (n, d) for regression, (n, C) for classification

# Seed 000 Example 1: columns of its table as rows (dog, cat, bird), true classes 0, 1, 2.
EXAMPLE1_PROBS = np.array([[0.49, 0.43, 0.08], [0.45, 0.53, 0.02], [0.21, 0.15, 0.64]])
EXAMPLE1_LABELS = np.array([0, 1, 2])


def close(actual, expected, rtol=1e-10, atol=1e-12):
    """assert_allclose that accepts tensors on any device."""
    def as_numpy(x):
        return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)

    np.testing.assert_allclose(as_numpy(actual), as_numpy(expected), rtol=rtol, atol=atol)


def tensors(*arrays, device="cpu"):
    """Each numpy array as a tensor on ``device``; floating ones require grad (leaf tensors)."""
    out = []
    for a in arrays:
        t = torch.as_tensor(a, device=device)
        out.append(t.requires_grad_() if t.is_floating_point() else t)
    return out


def autograd(per_instance, x):
    """Gradient of per_instance.sum() w.r.t. x."""
    (grad,) = torch.autograd.grad(per_instance.sum(), x)
    return grad


# ----------------------------------------------------------------------------------------------
# Seed 000 Example 1
# ----------------------------------------------------------------------------------------------


def test_example1_hinge_matches_seed_printed_values():
    values = losses.hinge(EXAMPLE1_PROBS, EXAMPLE1_LABELS)
    np.testing.assert_array_equal(np.round(values, 2), [1.53, 1.41, 1.08])


def test_example1_hinge_uses_entry_2_in_eq7():
    # Correction of seed 000 eq 7: the second term of instance 3 is y3(2) - y3(3) + 1 = 0.51;
    # the printed y3(3) - y3(3) + 1 = 1 would give 1.57 instead of the printed 1.08.
    first_term = 0.21 - 0.64 + 1
    assert losses.hinge(EXAMPLE1_PROBS, EXAMPLE1_LABELS)[2] - first_term == pytest.approx(0.51)


@pytest.mark.parametrize("targets", [EXAMPLE1_LABELS, np.eye(3)], ids=["labels", "one-hot"])
def test_example1_cross_entropy_matches_seed_printed_values(targets):
    values = losses.cross_entropy(EXAMPLE1_PROBS, targets)
    np.testing.assert_array_equal(np.round(values, 3), [0.713, 0.635, 0.446])


def test_example1_on_tensors():
    probs = torch.tensor(EXAMPLE1_PROBS)
    labels = torch.tensor(EXAMPLE1_LABELS)
    close(losses.hinge(probs, labels), [1.53, 1.41, 1.08], rtol=0, atol=5e-3)
    close(losses.cross_entropy(probs, labels), [0.713, 0.635, 0.446], rtol=0, atol=5e-4)


# ----------------------------------------------------------------------------------------------
# Agreement with torch.nn.functional: one table of cases
# ----------------------------------------------------------------------------------------------


@dataclass
class Case:
    """A loss, its gradient function, random arguments, and torch's per-instance reference."""

    loss: Callable
    grad: Callable
    make_args: Callable  # (rng, n, m) -> tuple of numpy arrays, differentiated input first
    reference: Callable  # (torch tensors, **kwargs) -> per-instance torch losses (n,)
    kwargs: dict = field(default_factory=dict)


def regression(rng, n, d):
    return rng.normal(size=(n, d)), rng.normal(size=(n, d))


def regression_1d(rng, n, _):
    return rng.normal(size=n), rng.normal(size=n)


def scores_and_labels(rng, n, c):
    return 3 * rng.normal(size=(n, c)), rng.integers(0, c, size=n)


def probs_and_labels(rng, n, c):
    logits, labels = scores_and_labels(rng, n, c)
    return losses.softmax(logits), labels


def probs_and_soft_targets(rng, n, c):
    return losses.softmax(3 * rng.normal(size=(n, c))), rng.dirichlet(np.ones(c), size=n)


def logits_and_soft_targets(rng, n, c):
    return 3 * rng.normal(size=(n, c)), rng.dirichlet(np.ones(c), size=n)


def binary(rng, n, _):
    return 3 * rng.normal(size=n), rng.integers(0, 2, size=n).astype(float)


def multilabel(rng, n, k):
    # Mix hard 0/1 targets with soft ones in [0, 1].
    targets = np.where(rng.random((n, k)) < 0.5, rng.integers(0, 2, (n, k)), rng.random((n, k)))
    return 3 * rng.normal(size=(n, k)), targets


def multi_margin_times_classes(scores, labels, margin=1.0):
    # torch divides the hinge sum by the number of classes C; ours keeps the plain sum.
    return scores.shape[1] * F.multi_margin_loss(scores, labels, margin=margin, reduction="none")


CASES = {
    "mse": Case(losses.mse, losses.mse_grad, regression,
                lambda p, t: F.mse_loss(p, t, reduction="none").mean(-1)),
    "mse-1d": Case(losses.mse, losses.mse_grad, regression_1d,
                   lambda p, t: F.mse_loss(p, t, reduction="none")),
    "mae": Case(losses.mae, losses.mae_grad, regression,
                lambda p, t: F.l1_loss(p, t, reduction="none").mean(-1)),
    "mae-1d": Case(losses.mae, losses.mae_grad, regression_1d,
                   lambda p, t: F.l1_loss(p, t, reduction="none")),
    "hinge": Case(losses.hinge, losses.hinge_grad, scores_and_labels,
                  multi_margin_times_classes),
    "hinge-margin-0.5": Case(losses.hinge, losses.hinge_grad, scores_and_labels,
                             multi_margin_times_classes, {"margin": 0.5}),
    "hinge-margin-3": Case(losses.hinge, losses.hinge_grad, scores_and_labels,
                           multi_margin_times_classes, {"margin": 3.0}),
    "cross_entropy-labels": Case(losses.cross_entropy, losses.cross_entropy_grad,
                                 probs_and_labels,
                                 lambda p, y: F.nll_loss(torch.log(p), y, reduction="none")),
    "cross_entropy-soft": Case(losses.cross_entropy, losses.cross_entropy_grad,
                               probs_and_soft_targets,
                               lambda p, y: -torch.special.xlogy(y, p).sum(-1)),
    "softmax_cross_entropy-labels": Case(losses.softmax_cross_entropy,
                                         losses.softmax_cross_entropy_grad, scores_and_labels,
                                         lambda z, y: F.cross_entropy(z, y, reduction="none")),
    "softmax_cross_entropy-soft": Case(losses.softmax_cross_entropy,
                                       losses.softmax_cross_entropy_grad,
                                       logits_and_soft_targets,
                                       lambda z, y: F.cross_entropy(z, y, reduction="none")),
    "sigmoid_cross_entropy-binary": Case(
        losses.sigmoid_cross_entropy, losses.sigmoid_cross_entropy_grad, binary,
        lambda z, t: F.binary_cross_entropy_with_logits(z, t, reduction="none")),
    "sigmoid_cross_entropy-multilabel": Case(
        losses.sigmoid_cross_entropy, losses.sigmoid_cross_entropy_grad, multilabel,
        lambda z, t: F.binary_cross_entropy_with_logits(z, t, reduction="none").sum(-1)),
}


def case_args(name, seed, size):
    rng = np.random.default_rng([seed, *size, len(name)])
    return CASES[name].make_args(rng, *size)


@pytest.mark.parametrize("size", SIZES, ids=str)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", CASES)
def test_numpy_values_and_gradients_match_torch_functional(name, seed, size):
    case = CASES[name]
    args = case_args(name, seed, size)
    torch_args = tensors(*args)
    expected = case.reference(*torch_args, **case.kwargs)

    value = case.loss(*args, **case.kwargs)
    assert isinstance(value, np.ndarray) and value.shape == (size[0],)
    close(value, expected)

    grad = case.grad(*args, **case.kwargs)
    assert grad.shape == args[0].shape
    close(grad, autograd(expected, torch_args[0]))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", CASES)
def test_tensor_path_matches_numpy_path_and_autograd(name, device):
    case = CASES[name]
    args = case_args(name, 7, (9, 4))
    torch_args = tensors(*args, device=device)

    value = case.loss(*torch_args, **case.kwargs)
    assert torch.is_tensor(value) and value.device.type == device
    assert value.dtype == torch.float64
    close(value, case.loss(*args, **case.kwargs))

    grad = case.grad(*torch_args, **case.kwargs)
    assert torch.is_tensor(grad) and grad.dtype == torch.float64
    close(grad, case.grad(*args, **case.kwargs))
    # Our tensor formula is differentiable, and autograd agrees with the hand-written gradient.
    close(autograd(value, torch_args[0]), grad)


@pytest.mark.parametrize("name", CASES)
def test_float32_in_float32_out(name):
    case = CASES[name]
    args = [a.astype(np.float32) if a.dtype.kind == "f" else a for a in case_args(name, 3, (5, 4))]
    assert case.loss(*args, **case.kwargs).dtype == np.float32
    assert case.grad(*args, **case.kwargs).dtype == np.float32
    torch_args = tensors(*args)
    assert case.loss(*torch_args, **case.kwargs).dtype == torch.float32
    assert case.grad(*torch_args, **case.kwargs).dtype == torch.float32


def test_numpy_labels_next_to_tensor_scores_are_accepted():
    scores, labels = case_args("hinge", 0, (6, 3))
    close(losses.hinge(torch.tensor(scores), labels), losses.hinge(scores, labels))


# ----------------------------------------------------------------------------------------------
# Activations
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_activations_match_torch(seed):
    z = 5 * np.random.default_rng(seed).normal(size=(7, 5))
    close(losses.softmax(z), torch.softmax(torch.tensor(z), dim=-1))
    close(losses.log_softmax(z), torch.log_softmax(torch.tensor(z), dim=-1))
    close(losses.sigmoid(z), torch.sigmoid(torch.tensor(z)))
    np.testing.assert_allclose(losses.softmax(z).sum(-1), 1, rtol=1e-14)


def test_sigmoid_autograd_slope_at_zero():
    # The stable formula picks a branch at x >= 0; its derivative at 0 must still be 1/4.
    x = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    close(autograd(losses.sigmoid(x), x), [0.25, 0.25, 0.25])


def test_sigmoid_cross_entropy_autograd_at_zero_logit():
    # d/dz [log(1 + e^z) - t z] at z = 0 is 1/2 - t.
    z = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    close(autograd(losses.sigmoid_cross_entropy(z, t), z), [0.5, 0.2, -0.5])
    close(losses.sigmoid_cross_entropy_grad(z, t), [0.5, 0.2, -0.5])


# ----------------------------------------------------------------------------------------------
# Subgradients at the kinks follow torch
# ----------------------------------------------------------------------------------------------


def test_hinge_margin_exactly_zero_is_not_a_violation():
    # Class 0: s_0 - s_1 + 1 = 0 exactly; class 2: 0.5 - 1 + 1 = 0.5 > 0.
    scores = np.array([[0.0, 1.0, 0.5]])
    labels = np.array([1])
    np.testing.assert_array_equal(losses.hinge_grad(scores, labels), [[0.0, -1.0, 1.0]])
    s, y = tensors(scores, labels)
    reference = 3 * F.multi_margin_loss(s, y, reduction="none")
    close(losses.hinge_grad(scores, labels), autograd(reference, s))
    close(autograd(losses.hinge(s, y), s), [[0.0, -1.0, 1.0]])  # autograd through our formula


def test_mae_gradient_is_zero_where_prediction_equals_target():
    pred = np.array([[1.0, 2.0, 3.0]])
    target = np.array([[1.0, 0.0, 5.0]])
    np.testing.assert_array_equal(losses.mae_grad(pred, target), [[0.0, 1 / 3, -1 / 3]])
    p, t = tensors(pred, target)
    close(losses.mae_grad(pred, target), autograd(F.l1_loss(p, t, reduction="none").mean(-1), p))


# ----------------------------------------------------------------------------------------------
# Stability and log 0
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def no_warnings():
    """Fail on any warning and on numpy overflow, division by zero or invalid operations.

    Underflow (e^{-2000} -> 0) is allowed: it is the exact limit the formulas rely on.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", divide="raise", invalid="raise"):
            yield


@pytest.mark.usefixtures("no_warnings")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_cross_entropy_with_huge_logits(dtype):
    logits = np.array([[1000.0, -1000.0], [1000.0, -1000.0]], dtype=dtype)
    labels = np.array([0, 1])
    np.testing.assert_array_equal(losses.softmax(logits), [[1, 0], [1, 0]])
    np.testing.assert_array_equal(losses.log_softmax(logits), [[0, -2000], [0, -2000]])
    np.testing.assert_array_equal(losses.softmax_cross_entropy(logits, labels), [0, 2000])
    expected_grad = [[0, 0], [1, -1]]
    np.testing.assert_array_equal(losses.softmax_cross_entropy_grad(logits, labels), expected_grad)

    z, y = tensors(logits, labels)
    value = losses.softmax_cross_entropy(z, y)
    close(value, [0, 2000], rtol=0, atol=0)
    close(autograd(value, z), expected_grad, rtol=0, atol=0)


@pytest.mark.usefixtures("no_warnings")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sigmoid_cross_entropy_with_huge_logits(dtype):
    logits = np.array([1000.0, -1000.0, 1000.0, -1000.0], dtype=dtype)
    targets = np.array([1.0, 0.0, 0.0, 1.0], dtype=dtype)
    np.testing.assert_array_equal(losses.sigmoid(logits), [1, 0, 1, 0])
    np.testing.assert_array_equal(losses.sigmoid_cross_entropy(logits, targets), [0, 0, 1000, 1000])
    expected_grad = [0, 0, 1, -1]
    np.testing.assert_array_equal(
        losses.sigmoid_cross_entropy_grad(logits, targets), expected_grad
    )

    z, t = tensors(logits, targets)
    value = losses.sigmoid_cross_entropy(z, t)
    close(value, [0, 0, 1000, 1000], rtol=0, atol=0)
    close(autograd(value, z), expected_grad, rtol=0, atol=0)


@pytest.mark.usefixtures("no_warnings")
def test_cross_entropy_at_zero_probability():
    probs = np.array([[0.0, 1.0], [0.0, 1.0]])
    labels = np.array([0, 1])
    # The true class has probability 0: infinite loss; a zero probability elsewhere counts 0.
    np.testing.assert_array_equal(losses.cross_entropy(probs, labels), [np.inf, 0])
    np.testing.assert_array_equal(losses.cross_entropy(probs, np.eye(2)), [np.inf, 0])
    np.testing.assert_array_equal(
        losses.cross_entropy_grad(probs, labels), [[-np.inf, 0], [0, -1]]
    )
    torch_value = F.nll_loss(torch.log(torch.tensor(probs)), torch.tensor(labels), reduction="none")
    close(losses.cross_entropy(probs, labels), torch_value)
    # On tensors: same values, and autograd stays NaN-free on the finite instance.
    p, y = tensors(probs, labels)
    value = losses.cross_entropy(p, y)
    close(value, [np.inf, 0])
    p2 = torch.tensor(probs[1:], requires_grad=True)
    close(autograd(losses.cross_entropy(p2, y[1:]), p2), [[0, -1]])


# ----------------------------------------------------------------------------------------------
# Total loss, empirical risk, and the seed 002 convention
# ----------------------------------------------------------------------------------------------


def test_total_and_mean_loss_match_torch_reductions():
    logits, labels = case_args("softmax_cross_entropy-labels", 4, (12, 5))
    per_instance = losses.softmax_cross_entropy(logits, labels)
    z, y = tensors(logits, labels)
    close(losses.total_loss(per_instance), F.cross_entropy(z, y, reduction="sum"))
    close(losses.mean_loss(per_instance), F.cross_entropy(z, y, reduction="mean"))
    torch_total = losses.total_loss(losses.softmax_cross_entropy(z, y))
    assert torch.is_tensor(torch_total) and torch_total.ndim == 0


def test_example1_total_hinge_loss():
    # Seed 000 eq 11 over the three instances of Example 1: 1.53 + 1.41 + 1.08.
    total = losses.total_loss(losses.hinge(EXAMPLE1_PROBS, EXAMPLE1_LABELS))
    assert total == pytest.approx(4.02)
    assert losses.mean_loss(losses.hinge(EXAMPLE1_PROBS, EXAMPLE1_LABELS)) == pytest.approx(1.34)


def test_seed002_half_sum_of_squares_is_d_over_2_times_mse():
    pred, target = case_args("mse", 5, (4, 6))
    p, t = tensors(pred, target)
    half_sum = 0.5 * F.mse_loss(p, t, reduction="none").sum(-1)
    close(3 * losses.mse(pred, target), half_sum)  # d / 2 = 3
    close(3 * losses.mse_grad(pred, target), autograd(half_sum, p))


# ----------------------------------------------------------------------------------------------
# Errors name the argument
# ----------------------------------------------------------------------------------------------

SCORES = np.zeros((2, 3))
LABELS = np.array([0, 2])


@pytest.mark.parametrize(
    "call, error, pattern",
    [
        (lambda: losses.mse(np.zeros((2, 3)), np.zeros((2, 4))), ValueError, r"pred.*target"),
        (lambda: losses.mae(np.zeros(3), np.zeros((3, 1))), ValueError, r"pred.*target"),
        (lambda: losses.mse(np.zeros((2, 3, 4)), np.zeros((2, 3, 4))), ValueError, r"pred"),
        (lambda: losses.mse(np.zeros((2, 3), int), np.zeros((2, 3))), TypeError, r"pred"),
        (lambda: losses.mae_grad(np.zeros(2), np.array([1, 2])), TypeError, r"target"),
        (lambda: losses.hinge(np.zeros(3), np.array([0])), ValueError, r"scores"),
        (lambda: losses.hinge(SCORES.astype(int), LABELS), TypeError, r"scores"),
        (lambda: losses.hinge(SCORES, np.array([0, 3])), ValueError, r"labels\[1\] = 3"),
        (lambda: losses.hinge_grad(SCORES, np.array([-1, 0])), ValueError, r"labels\[0\] = -1"),
        (lambda: losses.hinge(SCORES, np.array([0.0, 1.0])), ValueError, r"labels.*integer"),
        (lambda: losses.hinge(SCORES, np.array([True, False])), ValueError, r"labels.*integer"),
        (lambda: losses.hinge(SCORES, np.array([0, 1, 2])), ValueError, r"labels.*scores"),
        (lambda: losses.softmax_cross_entropy(SCORES, np.array([0, 5])), ValueError,
         r"labels\[1\] = 5"),
        (lambda: losses.softmax_cross_entropy_grad(SCORES, np.ones((2, 3))), ValueError,
         r"row 0 of labels"),
        (lambda: losses.cross_entropy(np.array([[0.5, 1.5]]), np.array([0])), ValueError,
         r"probs.*\[0, 1\].*softmax_cross_entropy"),
        (lambda: losses.cross_entropy(np.array([[0.5, np.nan]]), np.array([0])), ValueError,
         r"probs"),
        (lambda: losses.cross_entropy(np.full((2, 2), 0.5), np.array([0, 2])), ValueError,
         r"y\[1\] = 2"),
        (lambda: losses.cross_entropy(np.full((2, 2), 0.5), np.array([0.0, 1.0])), ValueError,
         r"y.*integer"),
        (lambda: losses.cross_entropy_grad(np.full((1, 2), 0.5), np.array([[0.6, 0.6]])),
         ValueError, r"row 0 of y sums to 1.2"),
        (lambda: losses.cross_entropy(np.full((1, 2), 0.5), np.array([[1.5, -0.5]])),
         ValueError, r"y must lie in \[0, 1\]"),
        (lambda: losses.cross_entropy(np.full((1, 2), 0.5), np.eye(3)), ValueError, r"y.*probs"),
        (lambda: losses.cross_entropy(np.full((1, 2), 0.5), np.array([[1, 0]])), TypeError,
         r"\by\b"),
        (lambda: losses.sigmoid_cross_entropy(np.zeros(3), np.array([1.0, -1.0, 1.0])),
         ValueError, r"targets"),
        (lambda: losses.sigmoid_cross_entropy_grad(np.zeros(3), np.zeros(4)), ValueError,
         r"logits.*targets"),
        (lambda: losses.softmax(np.array([1, 2])), TypeError, r"logits"),
        (lambda: losses.sigmoid(np.array([1, 2])), TypeError, r"\bx\b"),
        (lambda: losses.total_loss(np.zeros((2, 2))), ValueError, r"per_instance"),
        (lambda: losses.mean_loss(np.zeros(0)), ValueError, r"per_instance is empty"),
        (lambda: losses.hinge(SCORES, torch.tensor(LABELS)), TypeError, r"labels"),
    ],
)
def test_bad_input_raises_error_naming_the_argument(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


def test_bad_tensor_labels_report_index_and_value():
    with pytest.raises(ValueError, match=r"labels\[2\] = 7"):
        losses.softmax_cross_entropy(torch.zeros(3, 4), torch.tensor([0, 1, 7]))


def test_zero_one_counts_wrong_top_scores():
    rng = np.random.default_rng(7)
    scores = rng.normal(size=(50, 4))
    labels = rng.integers(0, 4, size=50)
    expected = [float(row.tolist().index(max(row.tolist())) != y) for row, y in zip(scores, labels)]
    np.testing.assert_array_equal(losses.zero_one(scores, labels), expected)
    # Example 1: the cat image is classified as cat, dog as dog, bird as bird: error rate 0
    assert losses.mean_loss(losses.zero_one(EXAMPLE1_PROBS, EXAMPLE1_LABELS)) == 0.0


def test_zero_one_tie_goes_to_lowest_index_and_tensor_path_agrees():
    torch = pytest.importorskip("torch")
    scores = np.array([[0.0, 0.0], [0.0, 1.0], [2.0, 1.0]])
    labels = np.array([1, 1, 1])
    np.testing.assert_array_equal(losses.zero_one(scores, labels), [1.0, 0.0, 1.0])
    got = losses.zero_one(torch.tensor(scores, dtype=torch.float32), torch.tensor(labels))
    assert got.dtype == torch.float32
    assert got.tolist() == [1.0, 0.0, 1.0]


def test_zero_one_rejects_bad_labels():
    with pytest.raises(ValueError, match="labels"):
        losses.zero_one(np.zeros((2, 3)), np.array([0, 3]))
