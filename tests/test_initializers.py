import math

import numpy as np
import pytest
import torch

from gdlib import initializers as init

SHAPE = (300, 500)  # (fan_out, fan_in), nn.Linear(500, 300).weight


def torch_weight(fill, seed=0):
    torch.manual_seed(seed)
    w = torch.empty(SHAPE, dtype=torch.float64)
    fill(w)
    return w.numpy()


def test_glorot_matches_torch_xavier_uniform():
    rng = np.random.default_rng(0)
    ours = init.glorot_uniform(SHAPE, rng)
    theirs = torch_weight(torch.nn.init.xavier_uniform_)
    bound = math.sqrt(6 / sum(SHAPE))
    assert init.glorot_bound(SHAPE) == pytest.approx(bound)
    for w in (ours, theirs):
        assert w.shape == SHAPE and np.abs(w).max() <= bound
        assert w.var() == pytest.approx(2 / sum(SHAPE), rel=0.02)


def test_he_matches_torch_kaiming_normal():
    ours = init.he_normal(SHAPE, np.random.default_rng(1))
    theirs = torch_weight(lambda w: torch.nn.init.kaiming_normal_(w, nonlinearity="relu"))
    for w in (ours, theirs):
        assert w.std() == pytest.approx(math.sqrt(2 / 500), rel=0.01)
        assert abs(w.mean()) < 0.002


@pytest.mark.parametrize("shape", [(3, 7), (7, 3), (5, 5)])
def test_orthogonal_like_torch(shape):
    w = init.orthogonal(shape, np.random.default_rng(2), gain=2.0)
    torch.manual_seed(0)
    t = torch.nn.init.orthogonal_(torch.empty(shape, dtype=torch.float64), gain=2.0).numpy()
    small = min(shape)
    for m in (w, t):
        gram = m @ m.T if shape[0] <= shape[1] else m.T @ m
        np.testing.assert_allclose(gram, 4.0 * np.eye(small), atol=1e-12)


def test_sparse_has_exactly_k_nonzeros_per_unit():
    w = init.sparse((40, 100), np.random.default_rng(3), k=15, scale=0.5)
    np.testing.assert_array_equal((w != 0).sum(axis=1), 15)
    assert w[w != 0].std() == pytest.approx(0.5, rel=0.1)
    # torch's sparse_ counts zeros per column (input) instead: 10% of the 40 rows.
    t = torch.nn.init.sparse_(torch.empty(40, 100), sparsity=0.1).numpy()
    np.testing.assert_array_equal((t == 0).sum(axis=0), 4)


def test_scaled_rules():
    rng = np.random.default_rng(4)
    u = init.scaled_uniform(SHAPE, rng)
    assert np.abs(u).max() <= 1 / math.sqrt(500)
    assert init.scaled_normal(SHAPE, rng, 0.01).std() == pytest.approx(0.01, rel=0.01)


def test_seeded_and_every_scheme_gives_the_shape():
    for name, rule in init.SCHEMES.items():
        a = rule((20, 30), np.random.default_rng(5))
        b = rule((20, 30), np.random.default_rng(5))
        assert a.shape == (20, 30), name
        np.testing.assert_array_equal(a, b)


def test_initialize_linear_layers():
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2))
    init.initialize_linear_layers(model, "Glorot (normalized)", seed=7)
    rng = np.random.default_rng(7)
    first = init.glorot_uniform((6, 4), rng)
    np.testing.assert_allclose(model[0].weight.detach().numpy(), first, rtol=1e-6)
    assert float(model[2].bias.detach().abs().sum()) == 0.0


@pytest.mark.parametrize("shape", [(0, 3), (3,), (2, 3, 4)])
def test_bad_shape(shape):
    with pytest.raises(ValueError, match="shape"):
        init.glorot_uniform(shape, np.random.default_rng(0))


def test_bad_k():
    with pytest.raises(ValueError, match="k must"):
        init.sparse((3, 4), np.random.default_rng(0), k=5)
