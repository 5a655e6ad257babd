"""Step time and memory of ``gdlib.torch.Optimizer`` against ``torch.optim``: ``python -m gdlib.bench``.

For every rule torch also has, the same parameters (``--tensors`` float32 tensors holding
``--params`` numbers in all, 100 tensors / 10M by default) get one step of each optimizer:
torch's default implementation (a for loop over tensors on CPU), ``foreach=True`` (one
multi-tensor kernel per operation), ``fused=True`` (one kernel for the whole update, only Adam,
AdamW, SGD and Adagrad have it: n/a otherwise), and the gdlib adapter, eager and compiled
(``compile=True``). The gradients are separate tensors, as after ``zero_grad()`` + backward.

Timing: the variants take turns (one step each per round, so that a noisy neighbour hits all
alike) for ``--reps`` rounds after warm-up steps. The time table shows, per variant, the best
(minimum) and the median time and the interquartile range as a share of the median (the
dispersion: a large one means the machine was busy). The ratio table (gdlib / torch, below 1:
gdlib is faster) divides best times, the least disturbed ones on a shared machine, with the
ratio of medians alongside. The 1-minute load average is printed before and after the run,
with a warning when it exceeds the number of cores (other processes then take CPU time and
every time is noisy). Compilation happens in the warm-up and is reported apart, with the number
of steps after which the time it saves over the eager step has repaid it.

Memory: optimizer state per byte of parameters. The state is every buffer the optimizer keeps
between steps, including the adapter's eager scratch buffers (a few pieces) and its flat
gradient buffer (in training that buffer replaces the ``.grad`` tensors, which its hook frees,
so it is not extra memory there). Also the growth of resident memory during one step after
warm-up (the temporaries; CPU, Linux only), or the CUDA peak above the allocated memory.

``--busy`` measures what a user's program sees: another model of the same size, with torch's
default optimizer of the same rule, stays alive and steps before every timed step (the
allocator's state then differs from a lone optimizer's). ``--quick`` is a small run without
compilation; ``--no-compile`` skips the compiled adapter;
``--threads`` sets torch's CPU threads; ``--iteration`` times a whole training iteration
(zero_grad, backward of a linear loss, step) instead of the step alone. Runs on CPU and, when
present, on CUDA.
"""

import argparse
import os
import statistics
import sys
import time
from typing import NamedTuple

import torch

from gdlib import optim
from gdlib.torch import Optimizer


class Case(NamedTuple):
    """A gdlib rule and the torch.optim optimizer that computes the same update."""

    name: str
    rule: object
    torch_class: type
    torch_kwargs: dict
    has_fused: bool


CASES = (
    Case("GD", optim.GD(1e-3), torch.optim.SGD, {"lr": 1e-3}, True),
    Case("Momentum", optim.Momentum(1e-3, beta=0.9), torch.optim.SGD,
         {"lr": 1e-3, "momentum": 0.9}, True),
    Case("Nesterov", optim.Nesterov(1e-3, beta=0.9), torch.optim.SGD,
         {"lr": 1e-3, "momentum": 0.9, "nesterov": True}, True),
    Case("Adagrad", optim.Adagrad(1e-2), torch.optim.Adagrad, {"lr": 1e-2}, True),
    Case("RMSprop", optim.RMSprop(1e-2), torch.optim.RMSprop, {"lr": 1e-2}, False),
    Case("Adadelta", optim.Adadelta(1.0), torch.optim.Adadelta, {"lr": 1.0}, False),
    Case("Adam", optim.Adam(1e-3), torch.optim.Adam, {"lr": 1e-3}, True),
    Case("AdamW", optim.AdamW(1e-3, weight_decay=1e-2), torch.optim.AdamW,
         {"lr": 1e-3, "weight_decay": 1e-2}, True),
    Case("Nadam", optim.Nadam(2e-3, momentum_decay=4e-3), torch.optim.NAdam,
         {"lr": 2e-3}, False),
)

VARIANTS = ("default", "foreach", "fused", "eager", "compiled")


def make_params(n_tensors: int, n_params: int, device, seed: int = 0):
    """``n_tensors`` float32 parameters holding ``n_params`` numbers, each with a gradient."""
    generator = torch.Generator().manual_seed(seed)
    sizes = [n_params // n_tensors + (k < n_params % n_tensors) for k in range(n_tensors)]
    params = []
    for size in sizes:
        p = torch.nn.Parameter(torch.randn(size, generator=generator).to(device))
        p.grad = torch.randn(size, generator=generator).to(device) * 1e-2
        params.append(p)
    return params


def iteration(optimizer, params):
    """A training iteration on ``params``: ``zero_grad``, backward of ``sum_k <p_k, g_k>`` (whose
    gradients are the fixed ``g_k``: new tensors at every backward, as in real training), step."""
    weights = [p.grad.detach().clone() for p in params]

    def run():
        optimizer.zero_grad()
        sum((p * w).sum() for p, w in zip(params, weights, strict=True)).backward()
        optimizer.step()

    return run


def make_optimizer(case: Case, variant: str, params):
    """The optimizer of ``variant`` on ``params``, or None when torch has no such variant."""
    if variant == "fused" and not case.has_fused:
        return None
    if variant in ("eager", "compiled"):
        return Optimizer(params, case.rule, compile=variant == "compiled")
    flags = {"foreach": {"foreach": True}, "fused": {"fused": True}}.get(variant, {})
    return case.torch_class(params, **case.torch_kwargs, **flags)


def synchronize(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def state_bytes(optimizer) -> int:
    """Bytes of every buffer the optimizer keeps between steps (distinct storages)."""
    storages = {}
    tensors = [v for entry in optimizer.state.values() for v in entry.values()
               if isinstance(v, torch.Tensor)]
    if isinstance(optimizer, Optimizer):  # its flat gradient buffer and eager scratch buffers
        buckets = [b for _, group in optimizer._buckets.values() for b in group]
        tensors += [b.grad for b in buckets if b.grad is not None]
        tensors += [t for b in buckets for t in (*b.scratch, b.gather) if t is not None]
    for t in tensors:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def step_peak_bytes(step, device) -> int | None:
    """Memory that one call of ``step`` needs on top of what is allocated before it: the CUDA
    allocator's peak, or on CPU the growth of the resident set's high-water mark (Linux)."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # reset the high-water mark to the current resident size
        before = _status_kib("VmRSS")
        step()
        return max(0, _status_kib("VmHWM") - before) * 1024
    except OSError:
        return None


def bench_case(case: Case, device, args) -> dict:
    """Per variant: median step time (s), compile/warm-up time, state bytes, step peak bytes."""
    variants = [v for v in VARIANTS if not (v == "compiled" and args.no_compile)]
    neighbour = None
    if args.busy:  # another model, its own torch optimizer: steps before every timed step
        neighbour = make_optimizer(case, "default", make_params(args.tensors, args.params, device,
                                                                seed=1)).step
    runs = {}
    for variant in variants:
        params = make_params(args.tensors, args.params, device)
        optimizer = make_optimizer(case, variant, params)
        if optimizer is None:
            continue
        timed = iteration(optimizer, params) if args.iteration else optimizer.step
        start = time.perf_counter()
        for _ in range(args.warmup):
            timed()
        synchronize(device)
        runs[variant] = {"optimizer": optimizer, "params": params, "times": [], "timed": timed,
                         "warmup": time.perf_counter() - start}
    for _ in range(args.reps):
        for run in runs.values():
            if neighbour is not None:
                neighbour()
            synchronize(device)
            start = time.perf_counter()
            run["timed"]()
            synchronize(device)
            run["times"].append(time.perf_counter() - start)
    param_bytes = sum(p.nbytes for p in next(iter(runs.values()))["params"])
    results = {}
    for variant, run in runs.items():
        results[variant] = {
            "median": statistics.median(run["times"]),
            "best": min(run["times"]),
            "iqr": interquartile_range(run["times"]),
            "warmup": run["warmup"],
            "state": state_bytes(run["optimizer"]) / param_bytes,
            "peak": step_peak_bytes(run["timed"], device),
        }
    del runs
    return results


def interquartile_range(times) -> float:
    """Third quartile minus first quartile of ``times`` (0 for a single time)."""
    if len(times) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return q3 - q1


def load_line(when: str) -> str:
    """The 1-minute load average and the core count, plus a warning line when the load exceeds
    the cores (other processes then compete for the CPU: every time is noisy)."""
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        return f"load average (1 min) {when}: n/a ({cores} cores)"
    line = f"load average (1 min) {when}: {load:.2f} on {cores} cores"
    if load > cores:
        line += (f"\nWARNING: load {load:.2f} > {cores} cores: other processes compete for the "
                 "CPU, times are noisy; trust best times over medians, or rerun on an idle machine")
    return line


def _ratio(results, ours, theirs) -> str:
    """``best ratio (median ratio)`` of variant ``ours`` over ``theirs``."""
    if ours not in results or theirs not in results:
        return "n/a"
    best, median = (results[ours][stat] / results[theirs][stat] for stat in ("best", "median"))
    return f"{best:.3g} ({median:.3g})"


def payback(results, warmup: int) -> str:
    """The compilation time (the compiled variant's warm-up less ``warmup`` median steps) and
    the number of steps whose saving over the eager step repays it."""
    compiled, eager = results["compiled"], results.get("eager")
    cost = max(0.0, compiled["warmup"] - warmup * compiled["median"])
    line = f"compilation {cost:.1f} s"
    if eager is None:
        return line
    saving = eager["median"] - compiled["median"]
    if saving <= 0:
        return f"{line}; never repaid (the compiled step is not faster than the eager one)"
    return (f"{line}; repaid after {cost / saving:,.0f} steps "
            f"({_ms(saving)} ms saved per step, on medians)")


def _ms(value: float) -> str:
    """Milliseconds with three significant digits."""
    ms = value * 1e3
    return f"{ms:.0f}" if ms >= 1000 else f"{ms:.3g}"


def _times(results, variant) -> str:
    """``best/median [IQR %]`` of one variant, in ms."""
    if variant not in results:
        return "n/a"
    r = results[variant]
    return f"{_ms(r['best'])}/{_ms(r['median'])} [{100 * r['iqr'] / r['median']:.0f}%]"


def _mib(value) -> str:
    return "n/a" if value is None else f"{value / 2**20:.0f}"


def print_tables(all_results, device, args) -> None:
    """Step times (ms), ratios gdlib/torch, and memory, one row per rule."""
    ours = [v for v in ("eager", "compiled") if not (v == "compiled" and args.no_compile)]
    theirs = ("default", "foreach", "fused")
    what = "Iteration (zero_grad + backward + step)" if args.iteration else "Step"
    print(f"\n{what} time on {device}, ms over {args.reps} rounds ({args.tensors} tensors, "
          f"{args.params:,} float32 parameters): best/median [interquartile range % of median]")
    if args.busy:
        print("busy: another model of the same size steps with torch's default optimizer before "
              "every timed step")
    header = ["rule", *theirs, *ours]
    _print_table(header, [[name] + [_times(results, v) for v in header[1:]]
                          for name, results in all_results.items()])
    print(f"\nRatio gdlib/torch on {device} of best times (of medians in parentheses); "
          "< 1: gdlib faster")
    pairs = [(o, t) for o in ours for t in theirs]
    rows = [[name] + [_ratio(results, o, t) for o, t in pairs] for name, results in all_results.items()]
    _print_table(["rule"] + [f"{o}/{t}" for o, t in pairs], rows)
    if "compiled" in ours:
        print(f"compilation (the compiled adapter's {args.warmup} warm-up steps less their step "
              "time), and the steps after which the compiled adapter has caught up with eager:")
        for name, results in all_results.items():
            if "compiled" in results:
                print(f"  {name}: {payback(results, args.warmup)}")
    header = ["rule"] + [f"state/params {v}" for v in ("default", *ours)]
    header += [f"{'iteration' if args.iteration else 'step'} peak MiB {v}"
               for v in ("default", "fused", *ours)]
    rows = []
    for name, results in all_results.items():
        row = [name] + [f"{results[v]['state']:.2f}" if v in results else "n/a"
                        for v in ("default", *ours)]
        row += [_mib(results[v]["peak"]) if v in results else "n/a"
                for v in ("default", "fused", *ours)]
        rows.append(row)
    params_mib = args.params * 4 / 2**20
    timed = "iteration" if args.iteration else "step"
    print(f"\nMemory on {device} (parameters: {params_mib:.0f} MiB; state counts the adapter's "
          f"scratch and flat gradient buffers; {timed} peak: extra memory one {timed} needs)")
    _print_table(header, rows)


def _print_table(header, rows) -> None:
    widths = [max(len(str(r[k])) for r in [header, *rows]) for k in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(c).rjust(w) for c, w in zip(r, widths, strict=True)))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gdlib.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--tensors", type=int, default=100, help="number of parameter tensors")
    parser.add_argument("--params", type=int, default=10_000_000, help="parameters in all")
    parser.add_argument("--reps", type=int, default=20, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first steps")
    parser.add_argument("--rules", default="", help="comma-separated rule names (default: all)")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled adapter")
    parser.add_argument("--iteration", action="store_true",
                        help="time zero_grad + backward + step instead of the step alone")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (default: torch's choice); 1 avoids waiting for a "
                             "descheduled thread at every parallel operation on a busy machine")
    parser.add_argument("--busy", action="store_true",
                        help="a user's program: another model of the same size, with torch's "
                             "default optimizer of the same rule, steps before every timed step")
    parser.add_argument("--quick", action="store_true",
                        help="small run: 20 tensors, 200k parameters, 20 reps, no compilation")
    args = parser.parse_args(argv)
    if args.quick:
        args.tensors, args.params, args.reps, args.no_compile = 20, 200_000, 20, True
    if args.tensors < 1 or args.params < args.tensors:
        parser.error("need --tensors >= 1 and --params >= --tensors")
    if args.reps < 1 or args.warmup < 0 or args.threads < 0:
        parser.error("need --reps >= 1, --warmup >= 0 and --threads >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    wanted = {name.strip().lower() for name in args.rules.split(",") if name.strip()}
    unknown = wanted - {case.name.lower() for case in CASES}
    if unknown:
        parser.error(f"unknown rule(s) {sorted(unknown)}; choose from {[c.name for c in CASES]}")
    cases = [c for c in CASES if not wanted or c.name.lower() in wanted]
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, devices: "
          f"{', '.join(str(d) for d in devices)}", flush=True)
    print(load_line("before the run"), flush=True)
    for device in devices:
        all_results = {}
        for case in cases:
            print(f"  {device} {case.name} ...", file=sys.stderr, flush=True)
            all_results[case.name] = bench_case(case, device, args)
        print_tables(all_results, device, args)
    print(f"\n{load_line('after the run (includes this benchmark)')}")


if __name__ == "__main__":
    main()
