import functools
import math

import numpy as np
import pytest
import torch

from gdlib import schedules

EPOCHS = 200
LR0 = 0.2


def torch_lrs(make_scheduler, epochs=EPOCHS, lr0=LR0):
    """Learning rates a torch scheduler gives to SGD for epochs 0..epochs-1.

    Each epoch takes one SGD step on ``loss = c . w`` (gradient ``c``), so the parameter
    trajectory is also returned: ``w_E = w_0 - c * sum_e lr_e``.
    """
    w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    c = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    opt = torch.optim.SGD([w], lr=lr0)
    scheduler = make_scheduler(opt)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.zero_grad()
        (c @ w).backward()
        opt.step()
        scheduler.step()
    return np.array(lrs), w.detach().numpy(), c.numpy()


def assert_matches_torch(ours, make_scheduler):
    lrs, w, c = torch_lrs(make_scheduler)
    np.testing.assert_allclose(ours, lrs, rtol=1e-12)
    np.testing.assert_allclose(w, -c * ours.sum(), rtol=1e-12)


EPOCH = np.arange(EPOCHS)
LAMBDA_LR = torch.optim.lr_scheduler.LambdaLR


def test_inverse_time_matches_lambda_lr():
    ours = schedules.inverse_time(EPOCH, lr0=LR0, decay_rate=1.0)
    assert_matches_torch(ours, lambda opt: LAMBDA_LR(opt, lambda e: 1 / (1 + 1.0 * e)))
    # The factor form drives LambdaLR to the same rates.
    factor = schedules.factor(schedules.inverse_time, decay_rate=1.0)
    assert_matches_torch(ours, lambda opt: LAMBDA_LR(opt, factor))


def test_inverse_time_hand_computed_values():
    # lr0 = 0.2, decay_rate = 1: 0.2 / (1 + e) at e = 1..4 is 0.1, 0.0667, 0.05, 0.04.
    got = schedules.inverse_time(np.array([1, 2, 3, 4]), lr0=0.2, decay_rate=1.0)
    np.testing.assert_allclose(got, [0.1, 0.2 / 3, 0.05, 0.04], rtol=1e-15)


@pytest.mark.parametrize("base", [0.95, 0.5, 1.0])
def test_exponential_matches_exponential_lr(base):
    ours = schedules.exponential(EPOCH, lr0=LR0, base=base)
    exp_lr = functools.partial(torch.optim.lr_scheduler.ExponentialLR, gamma=base)
    assert_matches_torch(ours, exp_lr)
    factor = schedules.factor(schedules.exponential, base=base)
    assert_matches_torch(ours, lambda opt: LAMBDA_LR(opt, factor))


@pytest.mark.parametrize("k", [1.0, 0.5])
def test_inverse_sqrt_matches_lambda_lr_counting_from_one(k):
    ours = schedules.inverse_sqrt(EPOCH, lr0=LR0, k=k)
    assert ours[0] == k * LR0  # first epoch: k lr0 (seed's epoch_num = 1)
    assert_matches_torch(ours, lambda opt: LAMBDA_LR(opt, lambda e: k / math.sqrt(e + 1)))
    factor = schedules.factor(schedules.inverse_sqrt, k=k)
    assert_matches_torch(ours, lambda opt: LAMBDA_LR(opt, factor))


@pytest.mark.parametrize("step_size", [1, 7, 30])
def test_staircase_matches_step_lr(step_size):
    ours = schedules.staircase(EPOCH, lr0=LR0, step_size=step_size)
    step_lr = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=step_size, gamma=0.5)
    assert_matches_torch(ours, step_lr)
    factor = schedules.factor(schedules.staircase, step_size=step_size)
    assert_matches_torch(ours, lambda opt: LAMBDA_LR(opt, factor))


def test_staircase_halves_every_step_size_epochs():
    got = schedules.staircase(np.arange(9), lr0=1.0, step_size=3)
    np.testing.assert_array_equal(got, [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25])


def test_scalar_epoch_gives_scalar():
    assert schedules.exponential(2, lr0=1.0, base=0.5) == 0.25
    assert schedules.inverse_time(3, lr0=1.0, decay_rate=1.0) == 0.25
    assert np.ndim(schedules.inverse_sqrt(3, lr0=1.0)) == 0


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: schedules.inverse_time(0, lr0=-0.1, decay_rate=1.0), "lr0"),
        (lambda: schedules.inverse_time(0, lr0=0.0, decay_rate=1.0), "lr0"),
        (lambda: schedules.inverse_time(0, lr0=0.1, decay_rate=-1.0), "decay_rate"),
        (lambda: schedules.inverse_time(0, lr0=float("nan"), decay_rate=1.0), "lr0"),
        (lambda: schedules.exponential(0, lr0=-1.0), "lr0"),
        (lambda: schedules.exponential(0, lr0=0.1, base=1.5), "base"),
        (lambda: schedules.exponential(0, lr0=0.1, base=0.0), "base"),
        (lambda: schedules.exponential(0, lr0=0.1, base=-0.5), "base"),
        (lambda: schedules.inverse_sqrt(0, lr0=0.1, k=-1.0), "k"),
        (lambda: schedules.inverse_sqrt(0, lr0=-0.1), "lr0"),
        (lambda: schedules.staircase(0, lr0=0.1, step_size=0), "step_size"),
        (lambda: schedules.staircase(0, lr0=0.1, step_size=2.5), "step_size"),
        (lambda: schedules.staircase(0, lr0=0.1, step_size=2, factor=2.0), "factor"),
        (lambda: schedules.exponential(-1, lr0=0.1), "epoch"),
        (lambda: schedules.exponential(np.array([0, -3]), lr0=0.1), "epoch"),
        (lambda: schedules.factor(schedules.inverse_time, decay_rate=-2.0), "decay_rate"),
        (lambda: schedules.factor(schedules.exponential, lr0=0.5), "lr0"),
    ],
)
def test_bad_input_raises_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
