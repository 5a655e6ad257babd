"""Gadam's population trained as one batch against a Python loop over the unit models:
``python -m gdlib.gadam_bench``.

The work timed is one training phase of Gadam (eq 43): ``--steps`` Adam steps of each of
``--population`` MLPs ``d - hidden - 10`` (ReLU), every unit on its own mini-batches of
``--batch`` examples of random data. Variants:

- ``bmm``: ``Gadam.train`` with the population as one ``(g, d)`` tensor, forward by batched
  matrix products (``torch.baddbmm``), one backward, the ``gdlib.optim.Adam`` rule applied to the
  whole tensor at once;
- ``vmap``: the same with the forward as ``torch.func.functional_call`` under ``torch.vmap``;
- ``loop, gdlib rule``: g separate ``nn.Sequential`` models, one after the other each step
  (forward, ``backward``, the same Adam rule applied per parameter tensor);
- ``loop, torch.optim.Adam``: the same loop with one ``torch.optim.Adam`` per model (its
  default implementation), what a practitioner would write.

The variants take turns, one phase each per round, for ``--reps`` rounds after a warm-up, so a
busy neighbour slows all alike; the table shows the best and the median time of a phase, and
the ratios loop / vectorized of the best times (above 1: the vectorized population is faster).
The 1-minute load average is printed before and after (it should stay below the core count).
"""

import argparse
import os
import statistics
import time

import torch

from gdlib import gadam, optim


def _mlp(d: int, hidden: int, classes: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, classes))


def _per_example_ce(output, target):
    return torch.nn.functional.cross_entropy(output, target, reduction="none")


def make_variants(g: int, steps: int, batch: int, d: int, hidden: int, n: int = 2048,
                  seed: int = 0) -> dict:
    """``{name: callable}``, each running one training phase of the g units."""
    torch.manual_seed(seed)
    X, Y = torch.randn(n, d), torch.randint(0, 10, (n,))
    model = _mlp(d, hidden, 10)
    rule = optim.Adam(1e-3)
    variants = {}
    for backend in ("bmm", "vmap"):
        run = gadam.Gadam(model, _per_example_ce, X, Y, population=g, steps=steps,
                          batch_size=batch, rule=rule, backend=backend, seed=seed)
        flat = run.initial_population()
        variants[backend] = (lambda run=run, flat=flat:
                             run.train(flat))
    models = [_mlp(d, hidden, 10) for _ in range(g)]
    index = run.batches(range(g), 0, gadam._STAGES["parents"])  # those of run.train

    def loop_rule():
        states = [[rule.init(p.detach()) for p in m.parameters()] for m in models]
        for t in range(steps):
            for u, m in enumerate(models):
                m.zero_grad()
                batch_index = index[u, t]
                _per_example_ce(m(X[batch_index]), Y[batch_index]).mean().backward()
                with torch.no_grad():
                    for k, p in enumerate(m.parameters()):
                        new, states[u][k] = rule.update(p, p.grad, states[u][k], rule.lr)
                        p.copy_(new)

    def loop_torch():
        optimizers = [torch.optim.Adam(m.parameters(), lr=rule.lr) for m in models]
        for t in range(steps):
            for u, (m, opt) in enumerate(zip(models, optimizers)):
                opt.zero_grad()
                batch_index = index[u, t]
                _per_example_ce(m(X[batch_index]), Y[batch_index]).mean().backward()
                opt.step()

    variants["loop, gdlib rule"] = loop_rule
    variants["loop, torch.optim.Adam"] = loop_torch
    return variants


def measure(variants: dict, reps: int, warmup: int = 1) -> dict:
    """``{name: [seconds per phase]}``, the variants taking turns."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in variants}
    for _ in range(reps):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def report(times: dict, steps: int) -> str:
    """The table of times (ms per Adam step of the whole population) and the ratios."""
    best = {name: min(t) for name, t in times.items()}
    lines = [f"{'variant':<24}{'best ms/step':>14}{'median ms/step':>16}"]
    for name, t in times.items():
        lines.append(f"{name:<24}{1e3 * best[name] / steps:>14.3f}"
                     f"{1e3 * statistics.median(t) / steps:>16.3f}")
    for loop in ("loop, gdlib rule", "loop, torch.optim.Adam"):
        for vectorized in ("bmm", "vmap"):
            lines.append(f"ratio {loop} / {vectorized}: {best[loop] / best[vectorized]:.2f}")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"g = {args.population} MLPs {args.d}-{args.hidden}-10, {args.steps} Adam steps per "
          f"phase, batch {args.batch}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    variants = make_variants(args.population, args.steps, args.batch, args.d, args.hidden)
    print(report(measure(variants, args.reps), args.steps))
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
