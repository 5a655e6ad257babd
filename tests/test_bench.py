"""Tests of gdlib.bench (the adapter's benchmark): it runs on every available device, reports
what it measured, and derives the compilation's payback from the measured times. No test here
asserts a speed: the benchmark prints ratios, it does not pass or fail on them."""

import argparse

import pytest

torch = pytest.importorskip("torch")

from gdlib import bench

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
CASES = {case.name: case for case in bench.CASES}


def small_args(**overrides):
    defaults = {"tensors": 5, "params": 5_000, "reps": 3, "warmup": 1, "no_compile": True,
                "iteration": False, "busy": False}
    return argparse.Namespace(**{**defaults, **overrides})


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("busy", [False, True], ids=["alone", "busy"])
@pytest.mark.parametrize("iteration", [False, True], ids=["step", "iteration"])
def test_every_variant_is_measured_on_the_device(device, busy, iteration):
    results = bench.bench_case(CASES["Adam"], torch.device(device),
                               small_args(busy=busy, iteration=iteration))
    assert set(results) == {"default", "foreach", "fused", "eager"}
    for result in results.values():
        assert 0 < result["best"] <= result["median"]
        assert result["iqr"] >= 0
    # Adam keeps m and v: twice the parameters, for torch (plus its step tensors) and the adapter.
    # 5,000 parameters make a step too small to be replayed (no scratch buffers), but the five
    # tensors share one piece, whose gradients the adapter gathers into a kept buffer: one more.
    assert results["default"]["state"] == pytest.approx(2.0, abs=0.01)
    assert results["eager"]["state"] == 3.0


def test_rules_without_a_fused_kernel_are_reported_as_such():
    results = bench.bench_case(CASES["RMSprop"], torch.device("cpu"), small_args())
    assert "fused" not in results
    assert bench._ratio(results, "eager", "fused") == "n/a"


def test_payback_divides_the_compilation_by_the_time_saved_per_step():
    results = {"compiled": {"warmup": 10.5, "median": 0.5}, "eager": {"median": 2.5}}
    # compilation: 10.5 s of warm-up less 3 steps of 0.5 s = 9 s; 2 s saved per step: 4.5 steps
    assert bench.payback(results, 3) == (
        "compilation 9.0 s; repaid after 4 steps (2000 ms saved per step, on medians)")
    results["eager"]["median"] = 0.4
    assert "never repaid" in bench.payback(results, 3)


def test_the_command_prints_times_ratios_memory_and_load(capsys):
    bench.main(["--quick", "--rules", "adam,rmsprop", "--reps", "2"])
    out = capsys.readouterr().out
    for heading in ("Step time on cpu", "Ratio gdlib/torch on cpu", "Memory on cpu",
                    "load average (1 min) before the run", "load average (1 min) after the run"):
        assert heading in out
    ratio_rows = out.split("Ratio gdlib/torch on cpu")[1].split("\n\n")[0].splitlines()
    assert [row.split()[0] for row in ratio_rows[2:]] == ["RMSprop", "Adam"]


def test_unknown_rule_is_refused_naming_the_choices(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--rules", "adamw2"])
    assert "unknown rule(s) ['adamw2']" in capsys.readouterr().err
