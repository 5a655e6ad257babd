import math

import numpy as np
import pytest
import torch

from gdlib import functions

LANDSCAPES = {
    "ravine": functions.RAVINE,
    "long_valley": functions.LONG_VALLEY,
    "beale": functions.BEALE,
    "saddle": functions.SADDLE,
    "rosenbrock": functions.ROSENBROCK,
    "quadratic_custom": functions.quadratic(a=0.3, b=5.0, angle=0.4),
    "rosenbrock_custom": functions.rosenbrock(a=-0.5, b=10.0),
}


def random_points(f, count=25, seed=0):
    """Points drawn uniformly from the landscape's plot box, float64, shape (count, 2)."""
    (x_lo, x_hi), (y_lo, y_hi) = f.box
    rng = np.random.default_rng(seed)
    return rng.uniform([x_lo, y_lo], [x_hi, y_hi], size=(count, 2))


@pytest.mark.parametrize("f", LANDSCAPES.values(), ids=LANDSCAPES.keys())
def test_grad_and_hessian_match_autograd(f):
    for point in random_points(f):
        theta = torch.tensor(point, requires_grad=True)
        (grad,) = torch.autograd.grad(f.value(theta), theta)
        hessian = torch.autograd.functional.hessian(f.value, theta.detach())
        np.testing.assert_allclose(f.grad(point), grad.numpy(), rtol=1e-12, atol=1e-10)
        np.testing.assert_allclose(f.hessian(point), hessian.numpy(), rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("f", LANDSCAPES.values(), ids=LANDSCAPES.keys())
def test_batched_numpy_and_torch_agree_with_pointwise(f):
    points = random_points(f, count=12, seed=1).reshape(3, 4, 2)
    value, grad, hessian = f.value(points), f.grad(points), f.hessian(points)
    assert value.shape == (3, 4) and grad.shape == (3, 4, 2) and hessian.shape == (3, 4, 2, 2)
    for index in np.ndindex(3, 4):
        assert value[index] == pytest.approx(f.value(points[index]), rel=1e-14)
        np.testing.assert_allclose(grad[index], f.grad(points[index]), rtol=1e-14)
        np.testing.assert_allclose(hessian[index], f.hessian(points[index]), rtol=1e-14)
    tensor = torch.from_numpy(points)
    np.testing.assert_allclose(f.value(tensor).numpy(), value, rtol=1e-14)
    np.testing.assert_allclose(f.grad(tensor).numpy(), grad, rtol=1e-14)
    np.testing.assert_allclose(f.hessian(tensor).numpy(), hessian, rtol=1e-14)
    assert f.hessian(tensor.float()).dtype == torch.float32


@pytest.mark.parametrize("f", LANDSCAPES.values(), ids=LANDSCAPES.keys())
def test_minimiser_has_zero_gradient_and_positive_curvature(f):
    if f.minimum is None:  # the saddle: unbounded below
        assert f.f_min is None
        return
    minimum = np.array(f.minimum)
    np.testing.assert_allclose(f.grad(minimum), 0.0, atol=1e-12)
    assert f.value(minimum) == pytest.approx(f.f_min, abs=1e-15)
    assert np.all(np.linalg.eigvalsh(f.hessian(minimum)) > 0)
    (x_lo, x_hi), (y_lo, y_hi) = f.box
    for x, y in (f.minimum, f.start):
        assert x_lo <= x <= x_hi and y_lo <= y <= y_hi


def test_saddle_point_is_stationary_but_not_a_minimum():
    origin = np.zeros(2)
    np.testing.assert_array_equal(functions.SADDLE.grad(origin), [0.0, 0.0])
    eigenvalues = np.linalg.eigvalsh(functions.SADDLE.hessian(origin))
    np.testing.assert_allclose(eigenvalues, [-2.0, 2.0])


def test_known_values():
    x, y = np.random.default_rng(3).normal(size=(2, 10))
    theta = np.stack([x, y], -1)
    np.testing.assert_allclose(functions.RAVINE.value(theta), 0.1 * x**2 + 2 * y**2, rtol=1e-15)
    np.testing.assert_allclose(functions.SADDLE.value(theta), x**2 - y**2, rtol=1e-15)
    np.testing.assert_allclose(functions.ROSENBROCK.value(theta),
                               (1 - x) ** 2 + 100 * (y - x**2) ** 2, rtol=1e-14)
    beale = ((1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2
             + (2.625 - x + x * y**3) ** 2)
    np.testing.assert_allclose(functions.BEALE.value(theta), beale, rtol=1e-14)
    assert functions.BEALE.value(np.zeros(2)) == 1.5**2 + 2.25**2 + 2.625**2
    assert functions.BEALE.minimum == (3.0, 0.5)
    assert functions.ROSENBROCK.minimum == (1.0, 1.0)


def test_rotated_valley_curvatures():
    a, b, angle = 0.02, 1.0, math.pi / 4
    assert functions.LONG_VALLEY.value(np.array([1.0, 1.0])) == pytest.approx(a * 2)
    eigenvalues, eigenvectors = np.linalg.eigh(functions.LONG_VALLEY.hessian(np.zeros(2)))
    np.testing.assert_allclose(eigenvalues, [2 * a, 2 * b], rtol=1e-12)
    shallow = eigenvectors[:, 0] * np.sign(eigenvectors[0, 0])
    np.testing.assert_allclose(shallow, [math.cos(angle), math.sin(angle)], rtol=1e-12)


def test_value_and_grad_and_grid():
    f = functions.BEALE
    value, grad = f.value_and_grad(np.array([1.0, 1.5]))
    assert value == f.value(np.array([1.0, 1.5]))
    np.testing.assert_array_equal(grad, f.grad(np.array([1.0, 1.5])))
    X, Y, Z = f.grid(30)
    assert X.shape == Y.shape == Z.shape == (30, 30)
    assert (X.min(), X.max(), Y.min(), Y.max()) == (-4.5, 4.5, -4.5, 4.5)
    assert Z[7, 11] == pytest.approx(f.value(np.array([X[7, 11], Y[7, 11]])), rel=1e-15)


def test_bad_input_raises():
    with pytest.raises(ValueError, match=r"theta must have shape \(2,\)"):
        functions.BEALE.value(np.zeros(3))
    with pytest.raises(ValueError, match="theta must have shape"):
        functions.BEALE.grad(np.float64(1.0))
    with pytest.raises(TypeError, match="theta must hold floating"):
        functions.RAVINE.grad(np.array([1, 2]))
    with pytest.raises(ValueError, match="a must be > 0"):
        functions.quadratic(a=-0.1)
    with pytest.raises(ValueError, match="b must be > 0"):
        functions.quadratic(b=0.0)
