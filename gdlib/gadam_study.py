"""The experiments of the Gadam chapter: Gadam against Adam at equal compute.

Compute is counted in mini-batch gradient evaluations (one per unit model and Adam step):
a Gadam run of ``g`` units, ``K`` generations and ``s`` steps per training phase costs
``B = 2 g s K`` of them (parents, then children, every generation). The baselines get the same
``B`` and start from the same points as the Gadam run of the same seed:

- ``single``: one Adam run of ``B`` steps from the run's first unit model;
- ``multistart``: the ``g`` initial unit models trained independently, ``B / g`` Adam steps each,
  the best one kept (by the same validation loss Gadam selects with): Gadam without the genetic
  operators.

Gadam also evaluates losses without gradients (``g`` at the start and ``3 g`` per generation);
the pages state that count next to ``B``. The baselines of all seeds are trained together as
one population (``Gadam.train``), which is why they take little time.

Two problems: a 2-D landscape (``gadam.LandscapePoint``; the loss is the function value, no
data) and scikit-learn's digits (``gdlib.datasets.digits``) with a small MLP, split into
training, validation (the fitness of Gadam, the choice of the multistart) and test sets.
"""

from dataclasses import dataclass

import numpy as np
import torch

from gdlib import datasets, gadam, optim

__all__ = ["DigitsSplit", "budget", "digits_comparison", "digits_split", "landscape_comparison",
           "landscape_gadam", "value_loss"]


def budget(population: int, generations: int, steps: int) -> int:
    """``B = 2 g s K``: the mini-batch gradients of a Gadam run."""
    return 2 * population * steps * generations


def value_loss(output, target):
    """The loss of a ``LandscapePoint``: its output, the function value (one per input row)."""
    return output


_DUMMY = (torch.zeros(1, 1), torch.zeros(1))


def landscape_gadam(f, seed: int, *, population: int = 8, generations: int = 6,
                    steps: int = 15, lr: float = 0.05, **options) -> gadam.Gadam:
    """A Gadam run on the 2-D landscape ``f``: units drawn uniformly over ``f.box``, Adam
    steps on the exact gradient (the data are a dummy row), fitness the function value."""
    (x_lo, x_hi), (y_lo, y_hi) = f.box
    options.setdefault("mutation_rate", 0.3)
    return gadam.Gadam(gadam.LandscapePoint(f), value_loss, *_DUMMY, population=population,
                       generations=generations, steps=steps, batch_size=1, validation_size=1,
                       rule=optim.Adam(lr), init=gadam.uniform_init(min(x_lo, y_lo),
                                                                    max(x_hi, y_hi)),
                       seed=seed, **options)


def _train_together(template: gadam.Gadam, starts: torch.Tensor, steps: int,
                    on_step=None) -> torch.Tensor:
    """Train the rows of ``starts`` independently, ``steps`` Adam steps each, as one
    population built like ``template`` (same model, loss, data and rule)."""
    together = gadam.Gadam(template.model, template.loss_fn, template.X, template.Y,
                           population=max(2, starts.shape[0]), steps=steps,
                           batch_size=template.b, rule=template.rule, seed=template.seed,
                           backend=template.backend)
    flat, _ = together.train(starts, range(starts.shape[0]), on_step=on_step)
    return flat


def landscape_comparison(f, seeds, variants: dict, *, population: int = 8,
                         generations: int = 6, steps: int = 15, lr: float = 0.05) -> dict:
    """``{method: array of the best f value reached, one per seed}`` for every Gadam variant
    (``variants``: name -> extra ``Gadam`` options) and the two baselines at equal budget."""
    B = budget(population, generations, steps)
    runs = {name: [landscape_gadam(f, s, population=population, generations=generations,
                                   steps=steps, lr=lr, **options) for s in seeds]
            for name, options in variants.items()}
    out = {name: np.array([run.run().history.best_loss for run in group])
           for name, group in runs.items()}
    first = next(iter(runs.values()))
    starts = torch.cat([run.initial_population() for run in first])
    values = f.value(_train_together(first[0], starts, B // population)).numpy()
    out["multistart"] = values.reshape(len(first), population).min(1)
    single = f.value(_train_together(first[0], starts[::population], B)).numpy()
    out["single"] = single
    return out


# ---------------------------------------------------------------------------------------------
# Digits.


@dataclass(frozen=True)
class DigitsSplit:
    """The digits as float32 / int64 tensors, split by a seeded permutation."""

    X_train: torch.Tensor
    Y_train: torch.Tensor
    X_val: torch.Tensor
    Y_val: torch.Tensor
    X_test: torch.Tensor
    Y_test: torch.Tensor


def digits_split(train: int = 1200, val: int = 297, seed: int = 0) -> DigitsSplit:
    """scikit-learn's 1797 digits: ``train`` training, ``val`` validation, the rest test."""
    data = datasets.digits()
    X, Y = torch.tensor(data.X), torch.tensor(data.y)
    order = torch.randperm(len(Y), generator=torch.Generator().manual_seed(seed))
    parts = order[:train], order[train:train + val], order[train + val:]
    return DigitsSplit(*(t for part in parts for t in (X[part], Y[part])))


def cross_entropy(output, target):
    """Softmax cross-entropy per example (the fast path of ``Gadam``)."""
    return torch.nn.functional.cross_entropy(output, target, reduction="none")


def digits_network(hidden: int = 32) -> torch.nn.Sequential:
    """``Linear(64, hidden) - ReLU - Linear(hidden, 10)``."""
    torch.manual_seed(0)  # the template only: every unit is re-initialised from its own seed
    return torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, 10))


def _evaluate(template: gadam.Gadam, rows: torch.Tensor, X, Y):
    """(loss, accuracy) arrays of every row of ``rows`` on ``(X, Y)``."""
    with torch.no_grad():
        out = template._forward(template.layout.views(rows), X.expand(rows.shape[0], *X.shape))
        loss = cross_entropy(out.flatten(0, 1), Y.repeat(rows.shape[0]))
        accuracy = (out.argmax(-1) == Y).to(torch.float64).mean(1)
    return loss.reshape(rows.shape[0], -1).mean(1).numpy(), accuracy.numpy()


def digits_comparison(seeds, *, population: int = 8, generations: int = 6, steps: int = 25,
                      batch_size: int = 32, lr: float = 3e-3, hidden: int = 32,
                      variants: dict | None = None) -> dict:
    """Gadam variants (``variants``: name -> ``Gadam`` options; default the seed's settings)
    and the baselines on the digits, every seed of ``seeds``.

    Returns ``{"test_loss": {method: (seeds,)}, "test_accuracy": {...}, "curves": {method:
    (seeds, K) validation loss of the best model (Gadam's best unit, multistart's best run, the
    single run itself) after each generation's worth of gradients},
    "evaluations": (K,) the gradient counts of the curve, "children_kept": {variant: (seeds,
    K)}}``.
    """
    split = digits_split()
    variants = {"Gadam": {}} if variants is None else variants
    B = budget(population, generations, steps)
    chunk = 2 * population * steps
    result = {"test_loss": {}, "test_accuracy": {}, "curves": {}, "children_kept": {},
              "evaluations": chunk * np.arange(1, generations + 1)}

    def make(seed, **options):
        return gadam.Gadam(digits_network(hidden), cross_entropy, split.X_train, split.Y_train,
                           population=population, generations=generations, steps=steps,
                           batch_size=batch_size, validation=(split.X_val, split.Y_val),
                           validation_size=len(split.Y_val), rule=optim.Adam(lr), seed=seed,
                           **options)

    for name, options in variants.items():
        runs = [make(s, **options).run() for s in seeds]
        best = torch.stack([r.best for r in runs])
        loss, accuracy = _evaluate(make(0), best, split.X_test, split.Y_test)
        result["test_loss"][name], result["test_accuracy"][name] = loss, accuracy
        result["curves"][name] = np.array([r.history.generation_losses[:, 0] for r in runs])
        result["children_kept"][name] = np.array([r.history.children_kept() for r in runs])

    templates = [make(s) for s in seeds]
    starts = torch.cat([t.initial_population() for t in templates])
    S = len(templates)
    for name, rows, steps_each, every in (("single", starts[::population], B, chunk),
                                          ("multistart", starts, B // population,
                                           chunk // population)):
        curve = []

        def record(t, flat, every=every, curve=curve):
            if t % every == 0:
                curve.append(_evaluate(templates[0], flat, split.X_val, split.Y_val)[0])

        trained = _train_together(templates[0], rows, steps_each, on_step=record)
        curve = np.array(curve).T  # (rows, K)
        if name == "multistart":
            curve = curve.reshape(S, population, -1).min(1)
            val = _evaluate(templates[0], trained, split.X_val, split.Y_val)[0]
            pick = val.reshape(S, population).argmin(1) + population * np.arange(S)
            trained = trained[torch.as_tensor(pick)]
        loss, accuracy = _evaluate(templates[0], trained, split.X_test, split.Y_test)
        result["test_loss"][name], result["test_accuracy"][name] = loss, accuracy
        result["curves"][name] = curve
    return result
