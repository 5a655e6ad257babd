import numpy as np
import pytest
import torch

from gdlib import averages, averaging


def test_polyak_average_is_the_mean_of_the_prefix():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    bar = averaging.polyak_average(x)
    for t in (0, 1, 9, 49):
        np.testing.assert_allclose(bar[t], x[: t + 1].mean(0), rtol=1e-13)


def test_polyak_step_recursion_gives_the_running_mean():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 4))
    bar = np.full(4, 123.0)  # anything: t = 1 overwrites it
    for t, theta in enumerate(x, start=1):
        bar = averaging.polyak_step(bar, theta, t)
    np.testing.assert_allclose(bar, x.mean(0), rtol=1e-13)


def test_suffix_average():
    x = np.arange(10.0).reshape(10, 1)
    bar = averaging.polyak_average(x, start=4)
    np.testing.assert_array_equal(bar[:4], x[:4])
    assert bar[-1, 0] == pytest.approx(np.mean(np.arange(4.0, 10.0)))


def test_matches_torch_averaged_model():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(20, 5))
    model = torch.nn.Linear(5, 1, bias=False).double()
    swa = torch.optim.swa_utils.AveragedModel(model)
    for theta in x:
        with torch.no_grad():
            model.weight.copy_(torch.tensor(theta).reshape(1, 5))
        swa.update_parameters(model)
    average = swa.module.weight.detach().numpy().ravel()
    np.testing.assert_allclose(averaging.polyak_average(x)[-1], average, rtol=1e-12)


def test_torch_tensors():
    x = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    bar = averaging.polyak_average(x, start=2)
    assert isinstance(bar, torch.Tensor)
    torch.testing.assert_close(bar[-1], x[2:].mean(0))


def test_ema_average_is_gdlib_ewma_with_bias_correction():
    x = np.random.default_rng(4).normal(size=(15, 2))
    np.testing.assert_allclose(averaging.ema_average(x, 0.9),
                               averages.ewma(x, 0.9, bias_correction=True))
    v = 0.0
    for theta in x[:, 0]:
        v = 0.9 * v + 0.1 * theta
    assert averaging.ema_average(x, 0.9, bias_correction=False)[-1, 0] == pytest.approx(v)


@pytest.mark.parametrize("t", [0, -1, 1.5, True])
def test_bad_count(t):
    with pytest.raises(ValueError, match="t must be"):
        averaging.polyak_step(np.zeros(2), np.ones(2), t)


def test_bad_inputs():
    with pytest.raises(ValueError, match="shape"):
        averaging.polyak_step(np.zeros(2), np.ones(3), 2)
    with pytest.raises(ValueError, match="start"):
        averaging.polyak_average(np.ones((3, 1)), start=-1)
    with pytest.raises(ValueError, match="time axis"):
        averaging.polyak_average(np.float64(1.0))
