import numpy as np
import pytest
import torch

from gdlib import clipping


def torch_clip_norm(grads, max_norm):
    """torch.nn.utils.clip_grad_norm_ on parameters whose .grad are ``grads``."""
    params = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for p, g in zip(params, grads):
        p.grad = torch.tensor(g)
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return [p.grad.numpy() for p in params], float(norm)


@pytest.mark.parametrize("seed", range(5))
def test_clip_by_norm_is_torch_clip_grad_norm(seed):
    rng = np.random.default_rng(seed)
    grads = [rng.normal(size=s) * rng.uniform(0.1, 10) for s in [(3,), (2, 4), (5,)]]
    max_norm = float(rng.uniform(0.5, 5))
    expected, norm = torch_clip_norm(grads, max_norm)
    got = clipping.clip_by_norm(grads, max_norm, eps=1e-6)
    assert isinstance(got, list) and len(got) == 3
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=0)
    assert clipping.global_norm(grads) == pytest.approx(norm, rel=1e-14)


def test_clip_by_norm_textbook_rule():
    g = np.array([3.0, 4.0])  # norm 5
    np.testing.assert_allclose(clipping.clip_by_norm(g, 1.0), [0.6, 0.8], rtol=1e-15)
    np.testing.assert_array_equal(clipping.clip_by_norm(g, 5.0), g)  # not longer than c
    np.testing.assert_array_equal(clipping.clip_by_norm(g, 10.0), g)
    np.testing.assert_array_equal(clipping.clip_by_norm(np.zeros(3), 1.0), np.zeros(3))
    assert clipping.clip_factor(0.0, 1.0) == 1.0
    assert clipping.clip_factor(4.0, 1.0) == 0.25


def test_clip_by_norm_keeps_direction_and_returns_new_arrays():
    g = np.array([1.0, -2.0, 30.0])
    before = g.copy()
    c = clipping.clip_by_norm(g, 2.0)
    np.testing.assert_array_equal(g, before)
    assert np.linalg.norm(c) == pytest.approx(2.0, rel=1e-15)
    np.testing.assert_allclose(c / np.linalg.norm(c), g / np.linalg.norm(g), rtol=1e-15)


def test_clip_by_value_is_torch_clip_grad_value():
    rng = np.random.default_rng(3)
    g = rng.normal(size=(4, 5)) * 3
    p = torch.zeros(4, 5, dtype=torch.float64, requires_grad=True)
    p.grad = torch.tensor(g)
    torch.nn.utils.clip_grad_value_([p], 1.5)
    np.testing.assert_array_equal(clipping.clip_by_value(g, 1.5), p.grad.numpy())
    assert clipping.clip_by_value((g, g), 1.5)[1].max() == 1.5


def test_torch_tensors_in_tensors_out():
    g = torch.tensor([3.0, 4.0], dtype=torch.float64, requires_grad=True)
    c = clipping.clip_by_norm(g, 1.0)
    assert isinstance(c, torch.Tensor)
    c.sum().backward()  # autograd goes through the factor's constant
    torch.testing.assert_close(c.detach(), torch.tensor([0.6, 0.8], dtype=torch.float64))
    assert isinstance(clipping.clip_by_value(g.detach(), 1.0), torch.Tensor)


def test_clipped_gradient_wraps_a_gradient_function():
    grad = clipping.clipped_gradient(lambda theta: 10 * theta, "norm", 1.0)
    assert np.linalg.norm(grad(np.array([1.0, 1.0]))) == pytest.approx(1.0)
    grad = clipping.clipped_gradient(lambda theta: 10 * theta, "value", 1.0)
    np.testing.assert_array_equal(grad(np.array([1.0, -0.05])), [1.0, -0.5])
    with pytest.raises(ValueError, match="how"):
        clipping.clipped_gradient(abs, "both", 1.0)


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), True, "1"])
def test_thresholds_are_checked(bad):
    with pytest.raises(ValueError):
        clipping.clip_by_norm(np.ones(2), bad)
    with pytest.raises(ValueError):
        clipping.clip_by_value(np.ones(2), bad)


def test_bad_inputs():
    with pytest.raises(ValueError, match="empty"):
        clipping.clip_by_norm([], 1.0)
    with pytest.raises(TypeError, match="floating"):
        clipping.clip_by_norm(np.array([1, 2]), 1.0)
