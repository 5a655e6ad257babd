"""Gadam on several processes (seed 000 §6's parallel mode), started by ``torchrun``.

One machine, two processes (gloo over loopback on CPU)::

    torchrun --nnodes 1 --nproc-per-node 2 --master-addr 127.0.0.1 --master-port 29500 \\
        -m gdlib.gadam_distributed --problem digits --out result.pt

Several machines: run the same command on every machine with ``--nnodes N``, its own
``--node-rank`` (0 .. N-1) and ``--master-addr`` set to an address of machine 0 that the others
reach (a free ``--master-port`` there); with GPUs use ``--nproc-per-node`` = GPUs per machine
(the nccl backend is chosen when CUDA is present; ``GLOO_SOCKET_IFNAME`` / ``NCCL_SOCKET_IFNAME``
pick the network interface). The units are split over all processes in contiguous blocks;
the processes exchange fitness values and parameters only at selection and crossover
(``all_gather``), and every process ends with the same result; ``--out`` is written by each
process with its rank appended (``result.rank0.pt`` ...) so they can be compared.

Without torchrun (no ``RANK`` in the environment) the same problem runs in one process: the
result is identical, since every random number is tied to a unit, not to a process.
"""

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from gdlib import gadam, optim


def _problem(name: str, seed: int):
    """``(model, loss_fn, X, Y)``: the chapter's digits MLP or three Gaussian blobs."""
    if name == "digits":
        from gdlib import datasets

        data = datasets.digits()
        X, Y = torch.tensor(data.X), torch.tensor(data.y)
        hidden, classes = 32, 10
    else:
        gen = torch.Generator().manual_seed(seed)
        Y = torch.arange(300) % 3
        X = 2.0 * torch.randn(3, 6, generator=gen)[Y] + torch.randn(300, 6, generator=gen)
        hidden, classes = 8, 3
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(X.shape[1], hidden), torch.nn.ReLU(),
                                torch.nn.Linear(hidden, classes))

    def loss_fn(output, target):
        return torch.nn.functional.cross_entropy(output, target, reduction="none")

    return model, loss_fn, X, Y


def run(args, distributed: bool) -> gadam.GadamResult:
    """The run the command line describes, on the process group or in this process."""
    model, loss_fn, X, Y = _problem(args.problem, args.seed)
    return gadam.Gadam(model, loss_fn, X, Y, population=args.population,
                       generations=args.generations, steps=args.steps,
                       batch_size=args.batch_size, validation_size=args.validation_size,
                       rule=optim.Adam(args.lr), mutation_rate=args.mutation_rate,
                       seed=args.seed, distributed=distributed).run()


def summary(result: gadam.GadamResult) -> dict:
    """What is saved and compared: every array of the history, the best unit, the population."""
    h = result.history
    saved = {name: np.asarray(getattr(h, name)) for name in h._ARRAYS}
    saved["initial_losses"] = h.initial_losses
    saved["best"] = result.best.cpu().numpy()
    saved["population"] = result.population.cpu().numpy()
    return saved


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Gadam across torch.distributed processes")
    p.add_argument("--problem", choices=("digits", "blobs"), default="digits")
    p.add_argument("--population", type=int, default=8)
    p.add_argument("--generations", type=int, default=5)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--validation-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--mutation-rate", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    p.add_argument("--out", type=Path, default=None, help="save the result (.pt, per rank)")
    return p


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    distributed = "RANK" in os.environ
    rank, world = gadam.init_distributed() if distributed else (0, 1)
    try:
        result = run(args, distributed)
        if args.out is not None:
            out = args.out.with_suffix(f".rank{rank}.pt") if distributed else args.out
            torch.save(summary(result), out)
        if rank == 0:
            print(f"{world} process(es): best validation loss {result.history.best_loss:.6f} "
                  f"after {result.history.generations} generations")
    finally:
        if distributed:
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
