"""gdlib.gadam: the genetic operators of seed 000 eqs 44-50 and the Gadam run.

Exact outputs for fixed seeds are recomputed here independently of gdlib: one scalar draw at a
time from a second generator with the same seed (numpy's ``Generator.random(shape)`` yields the
same numbers as that many scalar calls, which ``test_vector_and_scalar_draws_agree`` checks),
and a plain Python loop over the entries with the seed's ``if rand <= p`` rule. Statistical
properties are checked over many draws with bounds of five standard deviations.
"""

import math

import numpy as np
import pytest
import torch

from gdlib import functions, gadam, optim


def ce(output, target):
    return torch.nn.functional.cross_entropy(output, target, reduction="none")


def mlp(d=5, hidden=8, classes=3, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.Tanh(),
                               torch.nn.Linear(hidden, classes))


def blobs(n=240, d=5, classes=3, seed=0):
    """Three Gaussian clusters: a problem a small MLP learns in a few hundred steps."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    centres = 2.0 * torch.randn(classes, d, generator=gen)
    return centres[y] + torch.randn(n, d, generator=gen), y


def small_run(**kwargs):
    X, Y = blobs()
    options = {"population": 4, "generations": 3, "steps": 10, "batch_size": 16,
               "validation_size": 64, "rule": optim.Adam(0.02), "seed": 3}
    options.update(kwargs)
    return gadam.Gadam(mlp(), ce, X, Y, **options)


def five_sigma(p, n):
    return 5 * math.sqrt(p * (1 - p) / n) + 1e-12


# --- selection, eqs 44-45 ---------------------------------------------------------------------


def test_vector_and_scalar_draws_agree():
    a, b = np.random.default_rng(11), np.random.default_rng(11)
    assert np.array_equal(a.random((3, 4)), np.array([b.random() for _ in range(12)])
                          .reshape(3, 4))


def test_normalize_losses_methods():
    losses = np.array([3.0, 1.0, 2.0, 5.0])
    assert np.allclose(gadam.normalize_losses(losses), [0.5, 0.0, 0.25, 1.0])
    assert np.allclose(gadam.normalize_losses(losses, "max"), [0.6, 0.2, 0.4, 1.0])
    assert np.array_equal(gadam.normalize_losses(losses, "none"), losses)
    assert np.array_equal(gadam.normalize_losses(np.full(3, 7.0)), np.zeros(3))
    with pytest.raises(ValueError, match="losses >= 0"):
        gadam.normalize_losses(np.array([-1.0, 2.0]), "max")
    with pytest.raises(ValueError, match="normalization must be one of"):
        gadam.normalize_losses(losses, "zscore")


def test_selection_probabilities_eq_45():
    losses = [3.0, 1.0, 2.0]  # min-max: 1, 0, 1/2
    weights = [math.exp(-1.0), math.exp(0.0), math.exp(-0.5)]
    expected = [w / sum(weights) for w in weights]
    assert np.allclose(gadam.selection_probabilities(losses), expected, rtol=0, atol=1e-15)
    # Temperature 1/2: exp(-2 L_hat).
    weights = [math.exp(-2.0), 1.0, math.exp(-1.0)]
    assert np.allclose(gadam.selection_probabilities(losses, temperature=0.5),
                       [w / sum(weights) for w in weights])
    # Stable for huge raw losses (the seed's concern after eq 45), without normalization.
    p = gadam.selection_probabilities([1e4, 1e4 + 1.0], "none")
    assert np.allclose(p, [1 / (1 + math.exp(-1)), 1 - 1 / (1 + math.exp(-1))])
    torch_p = gadam.selection_probabilities(torch.tensor(losses, dtype=torch.float64))
    assert isinstance(torch_p, torch.Tensor) and np.allclose(torch_p.numpy(), expected)


def test_selection_rejects_bad_losses():
    with pytest.raises(ValueError, match="NaN or infinity"):
        gadam.selection_probabilities([1.0, float("nan")])
    with pytest.raises(ValueError, match="1-D array"):
        gadam.selection_probabilities(np.ones((2, 2)))


def independent_pairs(p, count, seed, distinct):
    """Inverse-transform sampling one scalar draw at a time, as select_pairs documents."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(count):
        u_i, u_j = rng.random(), rng.random()

        def pick(weights, u):
            total, acc = sum(weights), 0.0
            for index, w in enumerate(weights):
                acc += w
                if u * total < acc:
                    return index
            return max(k for k, w in enumerate(weights) if w > 0)

        i = pick(list(p), u_i)
        weights = [0.0 if (distinct and k == i) else w for k, w in enumerate(p)]
        pairs.append((i, pick(weights, u_j)))
    return np.array(pairs)


@pytest.mark.parametrize("distinct", [True, False])
def test_select_pairs_exact_for_a_fixed_seed(distinct):
    p = gadam.selection_probabilities([0.3, 0.9, 0.1, 0.5, 0.7])
    got = gadam.select_pairs(p, 12, np.random.default_rng(2024), distinct)
    assert np.array_equal(got, independent_pairs(p, 12, 2024, distinct))
    if distinct:
        assert np.all(got[:, 0] != got[:, 1])


def test_select_pairs_frequencies_match_the_probabilities():
    p = gadam.selection_probabilities([0.3, 0.9, 0.1, 0.5])
    n = 200_000
    pairs = gadam.select_pairs(p, n, np.random.default_rng(0), distinct=True)
    first = np.bincount(pairs[:, 0], minlength=4) / n
    assert np.all(np.abs(first - p) <= [five_sigma(q, n) for q in p]), (first, p)
    # Second parent: P(j) / (1 - P(i)) given i, so overall sum_i P(i) P(j) / (1 - P(i)).
    second = np.bincount(pairs[:, 1], minlength=4) / n
    expected = [sum(p[i] * p[j] / (1 - p[i]) for i in range(4) if i != j) for j in range(4)]
    assert np.all(np.abs(second - expected) <= [five_sigma(q, n) for q in expected])
    assert not np.any(pairs[:, 0] == pairs[:, 1])
    same = gadam.select_pairs(p, n, np.random.default_rng(1), distinct=False)
    assert abs(np.mean(same[:, 0] == same[:, 1]) - np.sum(p**2)) <= five_sigma(0.3, n)


def test_select_pairs_torch_generator():
    p = gadam.selection_probabilities(torch.tensor([0.3, 0.9, 0.1], dtype=torch.float64))
    a = gadam.select_pairs(p, 50, torch.Generator().manual_seed(5))
    b = gadam.select_pairs(p, 50, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape == (50, 2) and bool((a[:, 0] != a[:, 1]).all())
    u = torch.rand((50, 2), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    cdf = torch.cumsum(p, 0)
    assert torch.equal(a[:, 0], (cdf[None] <= u[:, :1]).sum(1))


# --- crossover, eqs 46-47 ---------------------------------------------------------------------


def test_crossover_probability_eq_47():
    assert gadam.crossover_probability(0.0, 1.0) == pytest.approx(1 / (1 + math.exp(-1)))
    assert gadam.crossover_probability(0.5, 0.5) == pytest.approx(0.5)
    a, b = np.array([0.0, 0.2, 1.0]), np.array([1.0, 0.7, 0.0])
    assert np.allclose(gadam.crossover_probability(a, b) + gadam.crossover_probability(b, a), 1)
    assert gadam.crossover_probability(1.0, 0.0) < 0.5  # the worse parent passes on less


def test_crossover_exact_for_a_fixed_seed():
    theta_i, theta_j = np.arange(10.0), -np.arange(10.0) - 1
    child, from_i = gadam.crossover(theta_i, theta_j, 0.6, np.random.default_rng(7))
    rng = np.random.default_rng(7)
    expected = [a if rng.random() <= 0.6 else b for a, b in zip(theta_i, theta_j)]
    assert np.array_equal(child, expected)
    assert np.array_equal(from_i, child >= 0)


def test_crossover_inheritance_rate():
    n = 400_000
    for p in (0.0, 0.27, 0.731, 1.0):
        child, from_i = gadam.crossover(np.ones(n), np.zeros(n), p, np.random.default_rng(1))
        assert abs(child.mean() - p) <= five_sigma(p, n), (p, child.mean())
        assert np.array_equal(child == 1, from_i)


def test_crossover_torch_and_errors():
    gen = torch.Generator().manual_seed(3)
    a, b = torch.zeros(6, dtype=torch.float32), torch.ones(6, dtype=torch.float32)
    child, _ = gadam.crossover(a, b, 0.5, gen)
    u = torch.rand(6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.equal(child, torch.where(u <= 0.5, a, b)) and child.dtype == torch.float32
    with pytest.raises(ValueError, match="shape mismatch"):
        gadam.crossover(np.zeros(3), np.zeros(4), 0.5, np.random.default_rng(0))
    with pytest.raises(TypeError, match="torch.Generator"):
        gadam.crossover(a, b, 0.5, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"p_ij must lie in \[0, 1\]"):
        gadam.crossover(np.zeros(3), np.ones(3), 1.5, np.random.default_rng(0))


# --- mutation, eqs 48-49 ----------------------------------------------------------------------


def test_mutation_rates_eq_49():
    p = np.array([0.5, 0.3, 0.2])
    pairs = np.array([[0, 1], [2, 1], [0, 0]])
    rates = gadam.mutation_rates(p, pairs, 0.01)
    assert np.allclose(rates, [0.01 * 0.2, 0.01 * 0.5, 0.0])  # the last one clipped at 0
    with pytest.raises(ValueError, match=r"base_rate must be a rate in \[0, 1\]"):
        gadam.mutation_rates(p, pairs, 1.2)


def test_mutate_exact_for_a_fixed_seed():
    child = np.linspace(-1, 1, 8)
    got, hit = gadam.mutate(child, 0.3, np.random.default_rng(9))
    rng = np.random.default_rng(9)
    decisions = [rng.random() <= 0.3 for _ in child]
    values = [rng.random() for _ in child]  # drawn in full, after the decisions
    expected = [v if d else c for c, d, v in zip(child, decisions, values)]
    assert np.array_equal(got, expected) and np.array_equal(hit, decisions)
    got, _ = gadam.mutate(child, 0.3, np.random.default_rng(9), "gaussian", scale=0.05)
    rng = np.random.default_rng(9)
    decisions = [rng.random() <= 0.3 for _ in child]
    noise = rng.standard_normal(len(child))
    assert np.array_equal(got, np.where(decisions, child + 0.05 * noise, child))


def test_mutation_frequency_and_values():
    n = 400_000
    for rate in (0.0, 0.01, 0.2):
        got, hit = gadam.mutate(np.full(n, -3.0), rate, np.random.default_rng(4))
        assert abs(hit.mean() - rate) <= five_sigma(rate, n)
        assert np.all(got[~hit] == -3.0)
        if rate:
            values = got[hit]
            assert values.min() >= 0 and values.max() < 1  # U(0, 1), the seed's eq 48
            assert abs(values.mean() - 0.5) < 5 * math.sqrt(1 / 12 / values.size)
    got, hit = gadam.mutate(np.zeros(n), 0.5, np.random.default_rng(5), "gaussian", scale=0.1)
    assert abs(got[hit].std() - 0.1) < 0.002
    got, _ = gadam.mutate(np.zeros(n), 1.0, np.random.default_rng(5), low=-2, high=-1)
    assert got.min() >= -2 and got.max() < -1


def test_mutate_rejects_bad_rates_and_kinds():
    with pytest.raises(ValueError, match=r"rate must lie in \[0, 1\]"):
        gadam.mutate(np.zeros(3), -0.1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="mutation must be one of"):
        gadam.mutate(np.zeros(3), 0.1, np.random.default_rng(0), "cauchy")


# --- next generation and stop, §6.1.4 and eq 50 ----------------------------------------------


def test_next_generation_keeps_the_best_with_stable_ties():
    scores = np.array([0.5, 0.2, 0.9, 0.2, 0.1, 0.5])
    assert list(gadam.next_generation(scores, 3)) == [4, 1, 3]
    assert list(gadam.next_generation(torch.tensor(scores), 4)) == [4, 1, 3, 0]
    with pytest.raises(ValueError, match="cannot keep 7 of 6"):
        gadam.next_generation(scores, 7)


def test_stop_criterion_eq_50():
    assert gadam.stop_criterion([1.0, 2.0], [1.5, 1.45], 0.1)
    assert not gadam.stop_criterion([1.0, 2.0], [1.0, 1.0], 0.5)
    assert not gadam.stop_criterion([1.0], [1.0], None)


# --- Gadam on a model -------------------------------------------------------------------------


def test_gadam_reduces_the_loss_and_records_the_history():
    result = small_run().run()
    h = result.history
    g, K, steps = 4, 3, 10
    assert h.initial_losses.shape == (g,)
    assert h.train_losses.shape == h.child_train_losses.shape == (K, g, steps)
    for name in ("fitness", "normalized", "probabilities", "crossover_p", "mutation_rates",
                 "mutations", "inherited", "generation_losses", "survivors"):
        assert getattr(h, name).shape == (K, g), name
    assert h.pairs.shape == (K, g, 2) and h.rescored.shape == (K, 2 * g)
    assert list(h.gradient_evaluations) == [2 * g * steps * (k + 1) for k in range(K)]
    assert np.allclose(h.probabilities.sum(1), 1)
    assert np.all(h.normalized.min(1) == 0) and np.all(h.normalized.max(1) == 1)
    assert np.all(h.generation_losses[:, :-1] <= h.generation_losses[:, 1:])  # best first
    assert np.allclose(h.generation_losses, np.take_along_axis(h.rescored, h.survivors, 1))
    assert h.best_loss < 0.5 * h.initial_losses.min()
    # The returned model is the best unit: its parameters are the first row of the population.
    flat = torch.cat([p.detach().reshape(-1) for p in result.model.parameters()])
    assert torch.equal(flat, result.best) and torch.equal(result.population[0], result.best)
    assert h.parameters == flat.numel() == result.population.shape[1]


def test_history_matches_the_pure_operators():
    """The recorded probabilities, crossover probabilities and mutation rates are eqs 45, 47
    and 49 of the recorded fitness and pairs; the counts are consistent."""
    h = small_run(mutation_rate=0.2).run().history
    for k in range(h.generations):
        lhat = (h.fitness[k] - h.fitness[k].min()) / np.ptp(h.fitness[k])
        w = np.exp(-lhat)
        assert np.allclose(h.probabilities[k], w / w.sum())
        i, j = h.pairs[k].T
        assert np.allclose(h.crossover_p[k], w[i] / (w[i] + w[j]))
        assert np.allclose(h.mutation_rates[k], 0.2 * (1 - w[i] / w.sum() - w[j] / w.sum()))
    assert np.all(h.inherited <= h.parameters) and h.mutations.sum() > 0


def test_backends_agree():
    runs = {backend: small_run(backend=backend, generations=2).run().history
            for backend in ("bmm", "vmap", "loop")}
    for backend in ("vmap", "loop"):
        assert np.array_equal(runs[backend].pairs, runs["bmm"].pairs)
        assert np.array_equal(runs[backend].survivors, runs["bmm"].survivors)
        assert np.allclose(runs[backend].generation_losses, runs["bmm"].generation_losses,
                           rtol=1e-5, atol=1e-6)


def test_mean_loss_function_equals_per_example_loss():
    """A 0-d mean loss (evaluated per unit under vmap) gives the per-example path's run."""
    X, Y = blobs()
    options = {"population": 3, "generations": 1, "steps": 5, "batch_size": 16, "seed": 1}
    a = gadam.Gadam(mlp(), ce, X, Y, **options).run().history
    b = gadam.Gadam(mlp(), torch.nn.functional.cross_entropy, X, Y, **options).run().history
    assert np.allclose(a.train_losses, b.train_losses, rtol=1e-5)


def test_same_seed_same_run_other_seed_other_run():
    a, b = small_run().run().history, small_run().run().history
    assert np.array_equal(a.generation_losses, b.generation_losses)
    assert np.array_equal(a.pairs, b.pairs)
    c = small_run(seed=4).run().history
    assert not np.array_equal(a.initial_losses, c.initial_losses)


def test_tolerance_stops_early_and_given_population():
    X, Y = blobs()
    models = [mlp(seed=s) for s in range(3)]
    run = gadam.Gadam(mlp(), ce, X, Y, population=3, generations=5, steps=0, batch_size=8,
                      mutation_rate=0.0, tol=1e9, init=models, seed=0).run()
    assert run.history.stopped == "tol" and run.history.generations == 1
    assert run.history.snapshots == []
    # steps=0, no mutation: every unit is made of the given models' entries.
    given = torch.stack([torch.cat([p.detach().reshape(-1) for p in m.parameters()])
                         for m in models])
    assert bool((run.population[:, None, :] == given[None]).any(1).all())


def test_snapshots_and_paths_are_recorded():
    h = small_run(record="steps", generations=2).run().history
    snap = h.snapshots[1]
    d = h.parameters
    assert snap["start"].shape == snap["trained"].shape == (4, d)
    assert snap["parent_paths"].shape == (4, 11, d)
    assert torch.equal(snap["parent_paths"][:, -1], snap["trained"])
    assert torch.equal(snap["child_paths"][:, 0], snap["children"])
    assert torch.equal(snap["child_paths"][:, -1], snap["children_trained"])
    union = torch.cat([snap["trained"], snap["children_trained"]])
    assert torch.equal(h.snapshots[1]["start"], torch.cat(
        [h.snapshots[0]["trained"], h.snapshots[0]["children_trained"]])[h.survivors[0]])
    assert union.shape == (8, d)


def test_crossover_in_the_run_takes_each_entry_from_a_parent():
    h = small_run(record="generations", mutation_rate=0.0).run().history
    for k, snap in enumerate(h.snapshots):
        for p, (i, j) in enumerate(h.pairs[k]):
            child, a, b = snap["children"][p], snap["trained"][i], snap["trained"][j]
            assert bool(((child == a) | (child == b)).all())
            assert int((child == a).sum()) >= h.inherited[k][p]


# --- Gadam on a 2-D landscape ------------------------------------------------------------------


def test_rastrigin_landscape_gradient_hessian_and_minimum():
    for f in (gadam.rastrigin(), gadam.rastrigin(center=(1.5, -2.0), angle=0.4)):
        theta = torch.tensor([0.7, -1.3], dtype=torch.float64, requires_grad=True)
        f.value(theta).backward()
        assert torch.allclose(theta.grad, f.grad(theta.detach()))
        hessian = torch.autograd.functional.hessian(f.value, theta.detach())
        assert torch.allclose(hessian, f.hessian(theta.detach()))
        assert float(f.value(np.array(f.minimum))) == pytest.approx(0.0, abs=1e-12)
    f = gadam.rastrigin()
    assert f.value(np.zeros(2)) == 0.0
    assert float(f.value(np.array([1.0, 1.0]))) == pytest.approx(2.0, abs=1e-12)
    assert f.grid(50)[2].min() >= 0


def test_gadam_finds_the_global_basin_of_rastrigin():
    f = gadam.rastrigin()
    run = gadam.Gadam(gadam.LandscapePoint(f), lambda out, y: out, torch.zeros(1, 1),
                      torch.zeros(1), population=12, generations=8, steps=20, batch_size=1,
                      rule=optim.Adam(0.05), init=gadam.uniform_init(-5.12, 5.12),
                      mutation="gaussian", mutation_scale=0.5, mutation_rate=0.5, seed=0).run()
    best = run.model.theta.detach().numpy()
    assert np.linalg.norm(best) < 0.5 and run.history.best_loss < 1.0
    # Adam alone from the same 12 starts mostly stays in a local minimum.
    starts = run.history.initial_losses
    assert starts.min() > run.history.best_loss


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    ({"population": 1}, r"population \(g, the number of unit models\) must be an integer >= 2"),
    ({"mutation_rate": 1.5}, r"mutation_rate must be a rate in \[0, 1\]"),
    ({"mutation_rate": -0.01}, r"mutation_rate must be a rate in \[0, 1\]"),
    ({"temperature": 0}, "temperature must be a finite number > 0"),
    ({"backend": "cuda"}, "backend must be one of"),
    ({"batch_size": 10_000}, "batch_size 10000 exceeds"),
    ({"init": "zeros"}, "init must be 'reset'"),
    ({"mutation_range": (1.0, 0.0)}, "mutation_range needs low < high"),
])
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        small_run(**kwargs)


def test_population_with_other_parameter_shapes_is_rejected():
    X, Y = blobs()
    models = [mlp(), mlp(), mlp(hidden=9)]
    run = gadam.Gadam(mlp(), ce, X, Y, population=3, init=models)
    with pytest.raises(ValueError, match=r"init\[2\] has parameters .* every unit model needs "
                                         "the same parameter names and shapes"):
        run.run()


def test_non_finite_loss_names_the_unit_and_the_phase():
    X, Y = blobs()
    calls = []

    def breaks_down(output, target):  # finite for the probe, the first score and 2 steps; then NaN
        calls.append(1)
        loss = ce(output, target)
        if len(calls) > 4:
            loss = torch.where(torch.arange(len(loss)) // 16 == 1, loss * float("nan"), loss)
        return loss

    with pytest.raises(ValueError, match=r"non-finite loss \(nan\) of unit model 1 in "
                                         r"generation 0, Adam training of the parents at step 3"):
        gadam.Gadam(mlp(), breaks_down, X, Y, population=3, steps=10, batch_size=16,
                    init=[mlp(seed=s) for s in range(3)]).run()


def test_other_model_kinds():
    X, Y = blobs()

    class Net(torch.nn.Module):  # not a Sequential: the vmap backend
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(5, 4), torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)) + x[:, :4])

    run = gadam.Gadam(Net(), ce, X, Y, population=3, generations=1, steps=3)
    assert run.backend == "vmap" and run.run().history.generations == 1
    with pytest.raises(ValueError, match="backend='bmm' needs an nn.Sequential"):
        gadam.Gadam(Net(), ce, X, Y, population=3, backend="bmm")
    bn = torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.BatchNorm1d(3))
    with pytest.raises(ValueError, match="models with buffers"):
        gadam.Gadam(bn, ce, X, Y, population=3)
    with pytest.raises(ValueError, match="loss_fn"):
        gadam.Gadam(mlp(), lambda o, t: o, X, Y, population=3)
    with pytest.raises(ValueError, match="reset_parameters"):
        gadam.Gadam(gadam.LandscapePoint(functions.BEALE), lambda o, t: o, torch.zeros(1, 1),
                    torch.zeros(1), population=2, batch_size=1).run()


# --- distributed: 2 processes on loopback equal 1 process -------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_run_equals_the_single_process_run(tmp_path):
    """torchrun starts 2 processes (gloo, 127.0.0.1); 5 units split 3 + 2. Every array of the
    history, the best unit and the last population equal the single-process run, bit for bit,
    on both ranks."""
    import os
    import subprocess
    import sys

    from gdlib import gadam_distributed

    options = ["--problem", "blobs", "--population", "5", "--generations", "3", "--steps", "8",
               "--mutation-rate", "0.3", "--seed", "7"]
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
               "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(free_port()), "-m", "gdlib.gadam_distributed", *options,
               "--out", str(tmp_path / "result.pt")]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo"}
    process = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env,
                             check=False)
    assert process.returncode == 0, process.stdout + process.stderr
    assert "2 process(es)" in process.stdout
    single = gadam_distributed.summary(
        gadam_distributed.run(gadam_distributed.parser().parse_args(options), False))
    assert single["mutations"].sum() > 0 and single["survivors"].max() >= 5  # children kept
    for rank in (0, 1):
        saved = torch.load(tmp_path / f"result.rank{rank}.pt", weights_only=False)
        assert saved.keys() == single.keys()
        for name, value in single.items():
            assert np.array_equal(saved[name], value), (rank, name)


# --- figures (gdlib.gadam_figures) ------------------------------------------------------------


def test_architecture_and_population_animation_play_offline():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gdlib import gadam_figures

    ax = gadam_figures.architecture()
    texts = " ".join(t.get_text() for t in ax.texts)
    for step in ("eq 43", "eq 44", "eq 45", "eqs 46-47", "eqs 48-49", "eq 50"):
        assert step in texts, step
    plt.close(ax.figure)
    f = gadam.rastrigin(center=(2.0, -1.0))
    history = gadam.Gadam(gadam.LandscapePoint(f), lambda out, y: out, torch.zeros(1, 1),
                          torch.zeros(1), population=4, generations=2, steps=5, batch_size=1,
                          init=gadam.uniform_init(-5.12, 5.12), mutation_rate=0.3,
                          record="steps").run().history
    html = gadam_figures.animate_population(f, history, "test", levels=5, dpi=30)
    assert html.count("data:image/png;base64,") == 6  # 3 frames per generation
    assert "http" not in html and "fa fa-" not in html
    fig, _ = gadam_figures.population_figure(f, history, [0, 1], "test", levels=5)
    plt.close(fig)
    with pytest.raises(ValueError, match="record='steps'"):
        gadam_figures.animate_population(f, small_run().run().history, "t")


# --- the chapter's experiments (gdlib.gadam_study) --------------------------------------------


def test_study_budget_split_and_a_small_landscape_comparison():
    from gdlib import gadam_study

    assert gadam_study.budget(8, 6, 15) == 1440
    split = gadam_study.digits_split()
    assert (len(split.Y_train), len(split.Y_val), len(split.Y_test)) == (1200, 297, 300)
    f = gadam.rastrigin(center=(2.0, -1.0))
    found = gadam_study.landscape_comparison(f, range(2), {"Gadam": {}}, population=4,
                                             generations=2, steps=5)
    assert set(found) == {"Gadam", "multistart", "single"}
    assert all(values.shape == (2,) and np.all(values >= 0) for values in found.values())
    # The baselines start where the Gadam runs of the same seeds start.
    run = gadam_study.landscape_gadam(f, 0, population=4, generations=2, steps=5)
    assert np.isclose(run.run().history.best_loss, found["Gadam"][0])
