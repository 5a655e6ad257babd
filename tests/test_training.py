import functools
import itertools
import math
import warnings

import numpy as np
import pytest
import torch

from gdlib import functions, optim, schedules, training

# ---------------------------------------------------------------------------------------------
# minimize


def test_gd_on_quadratic_matches_closed_form():
    # f = a x^2 + b y^2 has curvatures lam = (2a, 2b): GD gives theta_k = (1 - eta lam)^k theta_0.
    a, b, eta, steps = 0.1, 2.0, 0.2, 60
    f = functions.quadratic(a, b)
    theta0 = np.array([-5.0, -2.0])
    path = training.minimize(f.value_and_grad, theta0, optim.GD(lr=eta), steps)
    k = np.arange(steps + 1)[:, None]
    expected = (1 - eta * np.array([2 * a, 2 * b])) ** k * theta0
    assert path.stopped_by == "steps" and path.steps_taken == steps
    assert path.thetas.shape == (steps + 1, 2)
    np.testing.assert_allclose(path.thetas, expected, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(path.losses, a * expected[:, 0] ** 2 + b * expected[:, 1] ** 2,
                               rtol=1e-12, atol=1e-300)
    # torch in, torch out, same numbers.
    path_torch = training.minimize(f.value_and_grad, torch.from_numpy(theta0), optim.GD(lr=eta),
                                   steps)
    assert isinstance(path_torch.thetas, torch.Tensor)
    np.testing.assert_allclose(path_torch.thetas.numpy(), expected, rtol=1e-12, atol=1e-300)


def test_adam_on_beale_matches_torch_adam():
    f, steps = functions.BEALE, 300
    path = training.minimize(f.value_and_grad, np.array(f.start), optim.Adam(lr=0.05), steps)
    theta = torch.tensor(f.start, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=0.05)
    expected = [theta.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        f.value(theta).backward()
        opt.step()
        expected.append(theta.detach().clone())
    np.testing.assert_allclose(path.thetas, torch.stack(expected).numpy(), rtol=1e-9, atol=1e-12)


def test_stops_on_loss_tolerance_at_the_first_small_change():
    f, eta, tol = functions.RAVINE, 0.1, 1e-6
    path = training.minimize(f.value_and_grad, np.array(f.start), optim.GD(lr=eta), 10_000,
                             loss_tol=tol)
    assert path.stopped_by == "loss_tol"
    changes = np.abs(np.diff(path.losses))
    assert changes[-1] < tol and np.all(changes[:-1] >= tol)


def test_stops_on_parameter_tolerance_at_the_first_small_step():
    f, eta, tol = functions.RAVINE, 0.1, 1e-4
    path = training.minimize(f.value_and_grad, np.array(f.start), optim.GD(lr=eta), 10_000,
                             param_tol=tol)
    assert path.stopped_by == "param_tol"
    moves = np.linalg.norm(np.diff(path.thetas, axis=0), axis=1)
    assert moves[-1] < tol and np.all(moves[:-1] >= tol)
    # The step budget wins when it runs out first.
    short = training.minimize(f.value_and_grad, np.array(f.start), optim.GD(lr=eta), 5,
                              loss_tol=1e-12, param_tol=1e-12)
    assert short.stopped_by == "steps" and short.thetas.shape == (6, 2)


def test_divergence_raises_or_stops_without_warnings():
    # eta = 1.5 on 2 y^2: y_k = (1 - 6)^k y_0 overflows after a few hundred steps.
    f, rule = functions.RAVINE, optim.GD(lr=1.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(training.DivergenceError, match="diverged at step"):
            training.minimize(f.value_and_grad, np.array(f.start), rule, 10_000)
        path = training.minimize(f.value_and_grad, np.array(f.start), rule, 10_000,
                                 on_divergence="stop")
    assert path.stopped_by == "diverged"
    assert path.steps_taken < 1000
    assert not np.isfinite(path.losses[-1]) and np.all(np.isfinite(path.losses[:-1]))
    # A non-finite starting point diverges at step 0.
    start = training.minimize(f.value_and_grad, np.array([np.inf, 0.0]), rule, 10,
                              on_divergence="stop")
    assert start.stopped_by == "diverged" and start.steps_taken == 0


def test_minimize_bad_input():
    f = functions.RAVINE
    with pytest.raises(ValueError, match="steps"):
        training.minimize(f.value_and_grad, np.zeros(2), optim.GD(lr=0.1), -1)
    with pytest.raises(ValueError, match="loss_tol"):
        training.minimize(f.value_and_grad, np.zeros(2), optim.GD(lr=0.1), 5, loss_tol=0.0)
    with pytest.raises(ValueError, match="on_divergence"):
        training.minimize(f.value_and_grad, np.zeros(2), optim.GD(lr=0.1), 5,
                          on_divergence="ignore")
    with pytest.raises(TypeError, match="theta0"):
        training.minimize(f.value_and_grad, np.array([1, 2]), optim.GD(lr=0.1), 5)


# ---------------------------------------------------------------------------------------------
# train


def regression_data(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, generator=g, dtype=torch.float64)
    Y = X @ torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64) + 0.3
    return X, Y + 0.1 * torch.randn(n, 1, generator=g, dtype=torch.float64)


def linear_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Linear(3, 1).double()


def test_full_batch_is_gradient_descent():
    X, Y = regression_data()
    model, eta, epochs = linear_model(), 0.1, 25
    w = model.weight.detach().numpy().ravel().copy()
    c = model.bias.detach().numpy().copy()
    opt = torch.optim.SGD(model.parameters(), lr=eta)
    history = training.train(model, torch.nn.functional.mse_loss, X, Y, opt, len(X), epochs, 0)
    Xn, Yn = X.numpy(), Y.numpy().ravel()
    expected_losses = []
    for _ in range(epochs):  # eq 13: L = mean (X w + c - y)^2, grad by hand
        r = Xn @ w + c - Yn
        expected_losses.append(np.mean(r**2))
        w, c = w - eta * 2 * Xn.T @ r / len(r), c - eta * 2 * r.mean()
    np.testing.assert_allclose(model.weight.detach().numpy().ravel(), w, rtol=1e-12)
    np.testing.assert_allclose(model.bias.detach().numpy(), c, rtol=1e-12)
    np.testing.assert_allclose(history.losses, expected_losses, rtol=1e-12)
    np.testing.assert_array_equal(history.batch_sizes, [len(X)] * epochs)
    np.testing.assert_array_equal(history.epochs, np.arange(epochs))


class Recorder(torch.nn.Module):
    """A linear model that remembers which examples (by the index stored in column 0) it saw."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(1, 1).double()
        self.batches = []

    def forward(self, x):
        self.batches.append(x[:, 0].long().tolist())
        return self.linear(x)


def visits(n, batch_size, epochs, seed, **kwargs):
    X = torch.arange(n, dtype=torch.float64)[:, None]
    model = Recorder()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    history = training.train(model, torch.nn.functional.mse_loss, X, 2 * X, opt, batch_size,
                             epochs, seed, **kwargs)
    return model.batches, history


def test_sgd_visits_every_example_once_per_epoch():
    n, epochs = 9, 4
    batches, history = visits(n, 1, epochs, seed=3)
    assert len(batches) == len(history.losses) == n * epochs
    assert all(len(b) == 1 for b in batches)
    orders = [list(itertools.chain(*batches[e * n:(e + 1) * n])) for e in range(epochs)]
    for order in orders:
        assert sorted(order) == list(range(n))
    assert len({tuple(order) for order in orders}) > 1  # reshuffled every epoch


def test_shuffling_is_seeded():
    first, h1 = visits(10, 3, 3, seed=7)
    again, h2 = visits(10, 3, 3, seed=7)
    other, _ = visits(10, 3, 3, seed=8)
    assert first == again
    np.testing.assert_array_equal(h1.losses, h2.losses)
    assert first != other
    in_order, _ = visits(10, 3, 2, seed=7, shuffle=False)
    assert in_order == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]] * 2


def test_last_partial_batch():
    batches, history = visits(10, 4, 2, seed=0)
    np.testing.assert_array_equal(history.batch_sizes, [4, 4, 2, 4, 4, 2])
    np.testing.assert_array_equal(history.epochs, [0, 0, 0, 1, 1, 1])
    assert sorted(itertools.chain(*batches[:3])) == list(range(10))
    assert np.all(np.diff(history.times) >= 0) and len(history.times) == 6


def test_function_schedule_per_epoch_and_per_step():
    schedule = functools.partial(schedules.inverse_time, lr0=0.05, decay_rate=0.5)
    _, history = visits(10, 5, 4, seed=0, schedule=schedule)
    np.testing.assert_allclose(history.lrs, np.repeat(schedule(np.arange(4)), 2), rtol=1e-15)
    per_step = functools.partial(schedules.inverse_sqrt, lr0=0.05, k=1.0)
    _, history = visits(10, 5, 4, seed=0, schedule=per_step, schedule_per="step")
    np.testing.assert_allclose(history.lrs, 0.05 / np.sqrt(np.arange(1, 9)), rtol=1e-15)


def test_torch_scheduler_steps_after_each_epoch():
    X, Y = regression_data()
    model = linear_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)
    history = training.train(model, torch.nn.functional.mse_loss, X, Y, opt, 4, 3, 0,
                             schedule=scheduler)
    np.testing.assert_allclose(history.lrs, np.repeat([0.1, 0.05, 0.025], 3), rtol=1e-15)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0125)


def test_full_loss_per_epoch():
    X, Y = regression_data()
    model = linear_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    history = training.train(model, torch.nn.functional.mse_loss, X, Y, opt, len(X), 5, 0,
                             full_loss=True)
    assert history.epoch_losses.shape == (6,)
    # With b = n the step loss is the full loss before that step.
    np.testing.assert_allclose(history.epoch_losses[:-1], history.losses, rtol=1e-12)
    final = torch.nn.functional.mse_loss(model(X), Y).item()
    assert history.epoch_losses[-1] == pytest.approx(final, rel=1e-12)


def test_train_divergence():
    X, Y = regression_data()
    model = linear_model()
    opt = torch.optim.SGD(model.parameters(), lr=50.0)
    with pytest.raises(training.DivergenceError, match="train diverged"):
        training.train(model, torch.nn.functional.mse_loss, X, Y, opt, 4, 100, 0)
    model = linear_model()
    opt = torch.optim.SGD(model.parameters(), lr=50.0)
    history = training.train(model, torch.nn.functional.mse_loss, X, Y, opt, 4, 100, 0,
                             on_divergence="stop")
    assert history.diverged and not math.isfinite(history.losses[-1])
    assert len(history.losses) < 300
    assert all(torch.isfinite(p).all() for p in model.parameters())  # no update from NaN


def test_progress_bar_quiet_unless_asked(capfd):
    visits(10, 5, 2, seed=0)
    assert capfd.readouterr().err == ""  # stderr is not a terminal under pytest
    visits(10, 5, 2, seed=0, progress=True)
    assert "train" in capfd.readouterr().err


def test_train_bad_input():
    X, Y = regression_data()
    model = linear_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = torch.nn.functional.mse_loss
    with pytest.raises(ValueError, match="batch_size"):
        training.train(model, loss, X, Y, opt, 0, 1, 0)
    with pytest.raises(ValueError, match="batch_size"):
        training.train(model, loss, X, Y, opt, len(X) + 1, 1, 0)
    with pytest.raises(ValueError, match="same number of examples"):
        training.train(model, loss, X, Y[:-1], opt, 4, 1, 0)
    with pytest.raises(ValueError, match="schedule_per"):
        training.train(model, loss, X, Y, opt, 4, 1, 0, schedule_per="batch")
    with pytest.raises(TypeError, match="schedule"):
        training.train(model, loss, X, Y, opt, 4, 1, 0, schedule=0.1)


# ---------------------------------------------------------------------------------------------
# random_mini_batches


def test_random_mini_batches_partition():
    X = np.arange(20.0).reshape(10, 2)
    Y = X[:, 0] * 10  # keeps track of which row of X it belongs to
    batches = training.random_mini_batches(X, Y, 4, seed=1)
    assert [len(xb) for xb, _ in batches] == [4, 4, 2]
    rows = np.concatenate([xb for xb, _ in batches])
    assert sorted(rows[:, 0]) == list(X[:, 0])  # a permutation of the examples
    assert not np.array_equal(rows, X)  # shuffled
    for xb, yb in batches:
        np.testing.assert_array_equal(yb, xb[:, 0] * 10)
    again = training.random_mini_batches(X, Y, 4, seed=1)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(batches, again, strict=True))
    assert len(training.random_mini_batches(X, Y, 10, seed=1)) == 1
    assert [len(x) for x, _ in training.random_mini_batches(X, Y, 5, seed=1)] == [5, 5]


def test_random_mini_batches_bad_input():
    X, Y = np.zeros((6, 2)), np.zeros(6)
    with pytest.raises(ValueError, match="batch_size"):
        training.random_mini_batches(X, Y, 0, seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        training.random_mini_batches(X, Y, 2.5, seed=0)
    with pytest.raises(ValueError, match="same number of examples"):
        training.random_mini_batches(X, Y[:5], 2, seed=0)


def test_train_times_exclude_every_full_loss_evaluation():
    # The full-data loss (batch of all n examples) is made slow on purpose: its time must not
    # count as training time, neither before the first step nor after each epoch.
    import time

    torch.manual_seed(0)
    X, Y = torch.randn(12, 3, dtype=torch.float64), torch.randn(12, 1, dtype=torch.float64)
    model = torch.nn.Linear(3, 1).double()

    def loss_fn(out, target):
        if len(target) == len(Y):
            time.sleep(0.2)
        return torch.nn.functional.mse_loss(out, target)

    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    history = training.train(model, loss_fn, X, Y, opt, batch_size=4, epochs=2, seed=0,
                             full_loss=True)
    assert len(history.epoch_losses) == 3
    assert (history.times >= 0).all(), history.times
    assert (np.diff(history.times) >= 0).all(), history.times
    assert history.times[-1] < 0.2, "a full-loss evaluation was counted as training time"
