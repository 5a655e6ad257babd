import math

import numpy as np
import pytest
import torch

from gdlib import averages


def ewma_loop(x, beta, bias_correction=False):
    """The seed 004 recursion written out: v_0 = 0, v_t = beta v_{t-1} + (1 - beta) x_t."""
    v, out = np.zeros_like(x[0]), []
    for t, x_t in enumerate(x, start=1):
        v = beta * v + (1 - beta) * x_t
        out.append(v / (1 - beta**t) if bias_correction else v)
    return np.array(out)


def test_seed_004_numbers_beta_098():
    # Basis series: column i is theta_i = 1 at day i, 0 elsewhere, so row t holds the weights
    # of theta_1, theta_2, ... in v_t.
    v = averages.ewma(np.eye(3), beta=0.98)
    assert v[0, 0] == pytest.approx(0.02, rel=1e-14)  # v_1 = 0.02 theta_1
    np.testing.assert_allclose(v[1, :2], [0.0196, 0.02], rtol=1e-14)  # v_2
    corrected = averages.ewma(np.eye(3), beta=0.98, bias_correction=True)
    np.testing.assert_allclose(corrected[1, :2], [0.0196 / 0.0396, 0.02 / 0.0396], rtol=1e-13)
    # 1 - beta^2 = 0.0396 is what the correction divides v_2 by.
    assert v[1, 0] / corrected[1, 0] == pytest.approx(0.0396, rel=1e-13)
    # Day 1 at 40 degrees: v_1 = 0.02 * 40 = 0.8 (the seed prints 8), corrected back to 40.
    assert averages.ewma(np.array([40.0]), 0.98)[0] == pytest.approx(0.8, rel=1e-15)
    assert averages.ewma(np.array([40.0]), 0.98, bias_correction=True)[0] == pytest.approx(40.0)


def test_seed_004_unrolled_weights_beta_09():
    # v_100 = 0.1 theta_100 + 0.1 * 0.9 theta_99 + 0.1 * 0.9^2 theta_98 + ...
    w = averages.ewma_weights(0.9, 100)
    np.testing.assert_allclose(w[-3:], [0.1 * 0.81, 0.09, 0.1], rtol=1e-14)
    # ... and they are the weights ewma applies: the last row of the basis-input average.
    np.testing.assert_allclose(averages.ewma(np.eye(100), 0.9)[-1], w, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9, 0.98, 0.999])
@pytest.mark.parametrize("bias_correction", [False, True])
def test_matches_explicit_loop(beta, bias_correction):
    x = np.random.default_rng(0).normal(size=(400, 3, 2))
    expected = ewma_loop(x, beta, bias_correction)
    got = averages.ewma(x, beta, bias_correction=bias_correction)
    assert got.shape == x.shape and got.dtype == x.dtype
    np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-13)
    got_torch = averages.ewma(torch.from_numpy(x), beta, bias_correction=bias_correction)
    assert got_torch.dtype == torch.float64
    np.testing.assert_allclose(got_torch.numpy(), expected, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.9, 0.9999])
def test_matches_scipy_linear_filter(beta):
    """The recursion is the linear filter v_t - beta v_(t-1) = (1 - beta) x_t (SciPy's)."""
    from scipy.signal import lfilter

    x = np.random.default_rng(2).normal(5.0, 2.0, size=(3000, 4))
    np.testing.assert_allclose(averages.ewma(x, beta), lfilter([1 - beta], [1, -beta], x, axis=0),
                               rtol=1e-10, atol=1e-12)


def test_float32_keeps_dtype():
    x = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32)
    for series in (x, torch.from_numpy(x)):
        v = averages.ewma(series, 0.9, bias_correction=True)
        assert v.dtype in (np.float32, torch.float32)
        np.testing.assert_allclose(np.asarray(v), ewma_loop(x.astype(float), 0.9, True),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("beta", [0.5, 0.9, 0.98, 0.999, 0.9999])
def test_bias_corrected_constant_is_the_constant_from_t_1(beta):
    c = 37.25
    x = np.full(2000, c)
    np.testing.assert_allclose(averages.ewma(x, beta, bias_correction=True), c, rtol=1e-13)
    # Uncorrected, the average starts at (1 - beta) c: biased towards v_0 = 0.
    assert averages.ewma(x, beta)[0] == pytest.approx((1 - beta) * c, rel=1e-14)
    corrected = averages.ewma(torch.full((2000,), c, dtype=torch.float64), beta, True)
    np.testing.assert_allclose(corrected.numpy(), c, rtol=1e-13)


def test_long_series_stays_finite():
    x = np.full(200_000, 2.0)
    v = averages.ewma(x, 0.9999, bias_correction=True)
    np.testing.assert_allclose(v, 2.0, rtol=1e-12)


def test_weights_sum_and_bias_correction():
    for beta, t in [(0.9, 1), (0.9, 10), (0.98, 50), (0.5, 30)]:
        w = averages.ewma_weights(beta, t)
        assert w.shape == (t,)
        assert w.sum() == pytest.approx(1 - beta**t, rel=1e-12)
        assert averages.ewma_weights(beta, t, bias_correction=True).sum() == pytest.approx(1.0)


def test_torch_autograd_gives_the_weights():
    x = torch.zeros(20, dtype=torch.float64, requires_grad=True)
    averages.ewma(x, 0.8)[-1].backward()  # d v_20 / d x_i is the weight of x_i
    np.testing.assert_allclose(x.grad.numpy(), averages.ewma_weights(0.8, 20), rtol=1e-12)


def test_effective_window_seed_004():
    assert averages.effective_window(0.9) == pytest.approx(10)
    assert averages.effective_window(0.98) == pytest.approx(50)
    # beta^(1/(1-beta)) ~ 1/e: 0.98^50 = 0.364, and 0.9^10 = 0.349 ("about a third").
    assert 0.98 ** averages.effective_window(0.98) == pytest.approx(1 / math.e, rel=0.02)
    assert 0.9 ** averages.effective_window(0.9) == pytest.approx(1 / 3, rel=0.06)


def test_seed_002_span():
    # gamma = 2 / (n + 1) weights the new value; n = 19 gives gamma = 0.1, i.e. beta = 0.9.
    assert averages.beta_from_span(19) == pytest.approx(0.9, rel=1e-15)
    assert averages.beta_from_span(1) == 0.0
    assert averages.span_from_beta(0.9) == pytest.approx(19)
    for n in (2, 5, 19, 100):
        assert averages.span_from_beta(averages.beta_from_span(n)) == pytest.approx(n)


@pytest.mark.parametrize("beta", [1.0, -0.1, 1.5, float("nan")])
def test_bad_beta_raises(beta):
    with pytest.raises(ValueError, match="beta"):
        averages.ewma(np.zeros(3), beta)
    with pytest.raises(ValueError, match="beta"):
        averages.effective_window(beta)


def test_bad_series_raises():
    with pytest.raises(TypeError, match="x must hold floating"):
        averages.ewma(np.arange(5), 0.9)
    with pytest.raises(ValueError, match="time axis"):
        averages.ewma(np.float64(3.0), 0.9)
    with pytest.raises(ValueError, match="x contains NaN"):
        averages.ewma(np.array([1.0, np.nan]), 0.9)
    with pytest.raises(ValueError, match="n .*span"):
        averages.beta_from_span(0.5)
    with pytest.raises(ValueError, match="t must be"):
        averages.ewma_weights(0.9, 0)
