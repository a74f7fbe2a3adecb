"""Adapter cost side by side in one process (issue 24): inference overhead, a training step's time and peak memory,
torch.compile on CPU, with the issue's gates.

Usage:
    python benchmarks/perf.py --quick                 # tiny hosts only, few repeats (a few minutes on 2 cores)
    OMP_NUM_THREADS=2 python benchmarks/perf.py       # tiny hosts + real-size architectures (random weights)
    python benchmarks/perf.py --sections tiny:sd,real:tta --repeats 2   # a subset (debugging)

Every inference group runs its arms interleaved (rotating order) in this process and reports medians with
quartiles and min-max, wall time beside process CPU time (`_perf_timing`); ratios are to the group's base arm.
Training arms run one fresh process each (`--train-worker`, `_perf_train`): step time and the step's peak resident
memory above the frozen host. Gates are checked on the real-size hosts (on the tiny ones with --quick), on process
CPU time (what a loaded 2-core machine measures most steadily; wall time is shown beside it); a gate that fails is
profiled (torch.profiler, top operators of the arm and its base) into the report.

Writes benchmarks/results/perf.json and .md (--quick: perf_quick.*) with the command, seed and machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VADAPTERS_NO_PROGRESS", "1")

SEED = 0
# (group, arm) -> (reference arm, limit, what the issue asks); checked on process CPU time
GATES = {
    ("sd", "res_adapter_fused"): ("base", 1.005, "ResAdapter fused 1.00x (SD 1.5)"),
    ("sd", "res_adapter"): ("base", 1.05, "ResAdapter unfused <= 1.05x (SD 1.5)"),
    ("sdxl", "res_adapter_fused"): ("base", 1.005, "ResAdapter fused 1.00x (SDXL)"),
    ("sdxl", "res_adapter"): ("base", 1.05, "ResAdapter unfused <= 1.05x (SDXL)"),
    ("sam", "sam_adapter"): ("base", 1.05, "SAM-Adapter <= 1.05x the encoder's CPU time"),
    ("sdxl_multiview", "mv_adapter_row"): ("base_4_views", 1.25, "MV-Adapter row <= 1.25x the base per view, 4 views"),
    ("video", "i2v_adapter"): ("base", 1.2, "I2V-Adapter <= 1.2x"),
    ("tta", "lame"): ("plain_forward", 1.2, "LAME <= 1.2x a forward at batch 64"),
}
REPEATS = {  # full run, per group
    "tiny": {"sd": 7, "sdxl": 7, "sdxl_multiview": 7, "sdxl_multiview_cameras": 5, "video": 5, "sam": 7, "tta": 5},
    "real": {"sd": 3, "sdxl": 2, "sdxl_multiview": 2, "video": 2, "sam": 2, "tta": 2},
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def profile(call, top: int | None = 10) -> list[dict[str, Any]]:
    """The `top` operators (None: all) of one call by self CPU time (torch.profiler), with their shapes' calls."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=top is None) as prof:
        call()
    if top is None:  # every operator with its input shapes: what the call computes, not how long it took
        return [{"op": e.key, "shapes": str(e.input_shapes), "calls": e.count}
                for e in prof.key_averages(group_by_input_shape=True)]  # fmt: skip
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return [{"op": e.key, "self_ms": e.self_cpu_time_total / 1e3, "calls": e.count} for e in rows]


def same_operators(fused, base) -> dict[str, Any]:
    """Whether a fused arm runs exactly the base's operators (name, input shapes, count): then its compute is the
    base's, and a timing difference is noise or Python overhead of the idle wrappers."""
    a = {(r["op"], r["shapes"]): r["calls"] for r in _call(fused, None)()}
    b = {(r["op"], r["shapes"]): r["calls"] for r in _call(base, None)()}
    differ = sorted(f"{op} {shapes}: {a.get((op, shapes), 0)} vs {b.get((op, shapes), 0)}"
                    for op, shapes in set(a) | set(b) if a.get((op, shapes)) != b.get((op, shapes)))  # fmt: skip
    return {"identical": not differ, "operator_kinds": len(b), "differences": differ[:10]}


def gate_rows(size: str, group: str, arms: dict, timing: dict) -> list[dict[str, Any]]:
    rows = []
    for (g, arm), (reference, limit, label) in GATES.items():
        if g != group or arm not in timing:
            continue
        cpu, wall = timing[arm]["cpu"], timing[arm]["wall"]
        row = {"gate": label, "host": size, "group": group, "arm": arm, "reference": reference, "limit": limit}
        row.update({"cpu_ratio": cpu["ratio"], "wall_ratio": wall["ratio"], "paired_cpu": cpu["paired_ratio"]})
        row.update({"passed": cpu["ratio"] <= limit, "wall_passed": wall["ratio"] <= limit})
        row["repeats"] = timing[arm]["repeats"]
        if arm.endswith("_fused"):
            row["operators"] = same_operators(arms[arm], arms[reference])
        if not row["passed"]:
            log(f"  gate failed: {label}: {cpu['ratio']:.3f} > {limit}; profiling")
            row["profile"] = {arm: _call(arms[arm])(), reference: _call(arms[reference])()}
        rows.append(row)
    return rows


def _call(arm, top: int | None = 10):
    """Profile only the timed call (a fused arm's fuse / unfuse stay outside the profile)."""

    def call():
        return arm.call()

    def profiled():
        if arm.enter:
            arm.enter()
        try:
            return profile(call, top)
        finally:
            if arm.exit:
                arm.exit()

    return profiled


def inference(size: str, groups: list[str], repeats: int | None, threads: int, result: dict) -> None:
    import gc

    import _perf_hosts as hosts
    import torch
    from _perf_timing import interleave, ratios

    torch.set_num_threads(threads)
    for family in groups:
        started = time.time()
        for group, arms, info in hosts.GROUPS[family](size):
            n = repeats or REPEATS[size][group]
            if size == "real":  # one untimed call of the base (a real-size call takes up to a minute here)
                arms[next(iter(arms))].call()  # warms kernels and activation memory for every arm alike
                samples = interleave(arms, n, warmup=0)
            else:  # tiny: a whole warm-up round, and millisecond calls repeated within a sample
                samples = interleave(arms, n, warmup=1, min_seconds=0.2)
            reference = next(iter(arms))
            timing = ratios(samples, reference)
            result["inference"][f"{size}:{group}"] = {
                **info,
                "reference": reference,
                "threads": threads,
                "arms": timing,
            }
            result["gates"] += gate_rows(size, group, arms, timing)
            log(f"  {size}:{group} ({n} repeats, {time.time() - started:.0f} s): "
                + ", ".join(f"{a} {t['cpu']['ratio']:.3f}x" for a, t in timing.items()))  # fmt: skip
            del arms
            gc.collect()


def training_gates(size: str, runs: dict[str, list[dict]]) -> list[dict[str, Any]]:
    def arm(name: str, key: str) -> float | None:
        good = [r for r in runs.get(f"sd/{name}", []) if "error" not in r]
        if not good:
            return None
        if key == "peak_bytes":
            return statistics.median(r["peak_bytes"] for r in good)
        return statistics.median(v for r in good for v in r[key])

    sara_peak, full_peak = arm("sara", "peak_bytes"), arm("full", "peak_bytes")
    sara_cpu, lora_cpu = arm("sara", "cpu"), arm("lora", "cpu")
    sara_wall, lora_wall = arm("sara", "wall"), arm("lora", "wall")
    rows = []
    if sara_peak is not None and full_peak is not None:
        ratio = sara_peak / full_peak
        rows.append({"gate": "SaRA training peak memory < full fine-tuning", "host": size, "group": "train:sd",
                     "arm": "sara", "reference": "full", "limit": 1.0, "cpu_ratio": None, "memory_ratio": ratio,
                     "passed": ratio < 1.0, "repeats": len(runs.get("sd/sara", []))})  # fmt: skip
    if sara_cpu is not None and lora_cpu is not None:
        rows.append({"gate": "SaRA step time <= 1.3x LoRA's", "host": size, "group": "train:sd", "arm": "sara",
                     "reference": "lora", "limit": 1.3, "cpu_ratio": sara_cpu / lora_cpu,
                     "wall_ratio": sara_wall / lora_wall, "passed": sara_cpu / lora_cpu <= 1.3,
                     "wall_passed": sara_wall / lora_wall <= 1.3, "repeats": len(runs.get("sd/sara", []))})  # fmt: skip
        if not rows[-1]["passed"]:  # the profiled extra step of each arm's first process
            rows[-1]["profile"] = {
                a: r["profile"] for a in ("sara", "lora") for r in runs[f"sd/{a}"][:1] if r.get("profile")
            }
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny hosts only, few repeats")
    parser.add_argument("--sections", default=None, help="comma list of SIZE:GROUP (tiny|real : sd, sdxl, video, "
                        "sam, tta, train, compile); default: all of the mode")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=None, help="override every inference group's repeats")
    parser.add_argument("--train-repeats", type=int, default=None, help="rounds of training processes per arm")
    parser.add_argument("--train-steps", type=int, default=None, help="timed steps per training process")
    parser.add_argument("--threads", type=int, default=None, help="real-size threads (default OMP_NUM_THREADS or 2)")
    parser.add_argument("--compile", action="store_true", help="with --quick: also the torch.compile section")
    parser.add_argument("--folder", default="benchmarks/results")
    parser.add_argument("--name", default=None, help="result file stem (default perf, or perf_quick)")
    parser.add_argument("--train-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.train_worker:
        from _perf_train import run_worker

        print(json.dumps(run_worker(json.loads(args.train_worker))))
        return 0

    import torch
    from _perf_markdown import render
    from _perf_train import training
    from _report import command, machine, write_report

    torch.manual_seed(SEED)
    # real-size hosts hold GBs: if memory runs out, this process goes first
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as fh:
        fh.write("500")
    threads = args.threads or int(os.environ.get("OMP_NUM_THREADS", "2"))
    families = ["sd", "sdxl", "video", "sam", "tta"]
    sizes = ["tiny"] if args.quick else ["tiny", "real"]
    wanted = [f"{s}:{f}" for s in sizes for f in (*families, "train", "compile")]
    if args.quick and not args.compile:
        wanted.remove("tiny:compile")
    if args.sections:
        wanted = [w for w in args.sections.split(",") if w]
    started = time.time()
    result: dict[str, Any] = {
        "command": command(),
        "machine": machine(threads),
        "seed": SEED,
        "mode": "quick" if args.quick else "full",
        "sections": wanted,
        "threads": {"tiny": 1, "real": threads},
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
        "inference": {},
        "training": {},
        "compile": {},
        "gates": [],
    }
    for size in sizes:
        groups = [f for f in families if f"{size}:{f}" in wanted]
        size_threads = 1 if size == "tiny" else threads  # tiny models run fastest on one thread
        if groups:
            log(f"[{size}] inference: {', '.join(groups)}")
            inference(size, groups, args.repeats or (3 if args.quick else None), size_threads, result)
        if f"{size}:train" in wanted:
            rounds = args.train_repeats or (1 if args.quick else 2)
            steps = args.train_steps or (2 if args.quick or size == "real" else 5)
            log(f"[{size}] training: {rounds} rounds x {steps} steps")
            runs = training(os.path.abspath(__file__), size, rounds, steps, size_threads, log)
            result["training"][size] = runs
            result["gates"] += training_gates(size, runs)
        if f"{size}:compile" in wanted:
            from _perf_compile import compile_section

            torch.set_num_threads(1)
            log(f"[{size}] torch.compile")
            result["compile"][size] = compile_section(args.repeats or (5 if args.quick else 9), log)
    result["gate_host"] = "tiny" if args.quick else "real"
    result["seconds"] = round(time.time() - started, 1)
    name = args.name or ("perf_quick" if args.quick else "perf")
    write_report(name, result, render(name, result), folder=args.folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
