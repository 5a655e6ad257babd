"""The chapter 2 study set-up (sklearn digits, one hidden layer of 64) for pages that reuse it.

The data, the network and the loss are those of ``book/02_sgd/minibatch_study.ipynb``: standardised
digits (``gdlib.datasets.digits``), ``Linear(64, 64) - ReLU - Linear(64, 10)`` initialised with
``torch.manual_seed(seed)``, and the mean softmax cross-entropy ``(1/b) sum_i -log p_i[y_i]``.
"""

import numpy as np
import torch

from gdlib import datasets, losses, training
from gdlib.torch import Optimizer


def tensors():
    """``(X, Y)``: the standardised digits as float32 / int64 torch tensors."""
    data = datasets.digits()
    return torch.tensor(data.X), torch.tensor(data.y)


def network(d: int = 64, hidden: int = 64, classes: int = 10, seed: int = 0):
    """``Linear(d, hidden) - ReLU - Linear(hidden, classes)``, initialised from ``seed``."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, classes))


def mean_cross_entropy(logits, target):
    """Mean over the batch of ``-log softmax(logits)[target]``."""
    return losses.mean_loss(losses.softmax_cross_entropy(logits, target))


def run(rule, X, Y, batch_size: int, epochs: int, seed: int = 0) -> training.History:
    """Train a fresh ``network(seed)`` with the gdlib ``rule`` (same batches for every rule)."""
    model = network(X.shape[1], seed=seed)
    optimizer = Optimizer(model.parameters(), rule)
    return training.train(model, mean_cross_entropy, X, Y, optimizer, batch_size, epochs,
                          seed=seed, full_loss=True, on_divergence="stop")


def last_epoch_std(history: training.History) -> float:
    """Standard deviation of the mini-batch losses of the last epoch."""
    last = history.epochs == history.epochs.max()
    return float(np.std(history.losses[last]))
