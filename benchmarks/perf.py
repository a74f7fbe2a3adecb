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
    if top is None:  # every operator with its input shapes: what the call computes (and its self time)
        return [{"op": e.key, "shapes": str(e.input_shapes), "calls": e.count, "self_ms": e.self_cpu_time_total / 1e3}
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


def extra_operators(arm, base, top: int = 8) -> dict[str, Any]:
    """The operators an adapted arm runs beyond the base's (by name, input shapes and count) and their self CPU
    time in one call each: the adapter's own cost, read from one profiled call rather than from two noisy clocks."""
    a = {(r["op"], r["shapes"]): r for r in _call(arm, None)()}
    b = {(r["op"], r["shapes"]): r for r in _call(base, None)()}
    extra = []
    for key, r in a.items():
        more = r["calls"] - (b[key]["calls"] if key in b else 0)
        if more > 0:
            extra.append({"op": key[0], "shapes": key[1][:120], "extra_calls": more,
                          "self_ms": r["self_ms"] * more / r["calls"]})  # fmt: skip
    extra.sort(key=lambda e: e["self_ms"], reverse=True)
    extra_ms, base_ms = sum(e["self_ms"] for e in extra), sum(r["self_ms"] for r in b.values())
    return {"extra_ms": extra_ms, "base_ms": base_ms, "estimated_ratio": 1 + extra_ms / base_ms, "top": extra[:top]}


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
        if not arm.endswith("_fused") and (size == "real" or not row["passed"]):
            row["extra_operators"] = extra_operators(arms[arm], arms[reference])
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
        no_rank = arm("sara_no_rank", "cpu")
        costs = [r["rank_cost"] for r in runs.get("sd/sara", []) if r.get("rank_cost")]
        if no_rank is not None:
            expected = no_rank + statistics.median(c["mean_cpu_s"] for c in costs) if costs else None
            rows[-1]["decomposition"] = {
                "no_rank_ratio": no_rank / lora_cpu,
                "rank_term_mean_cpu_s": expected - no_rank if expected is not None else None,
                "expected_ratio": expected / lora_cpu if expected is not None else None,
                "rank_cost": costs[0] if costs else None,
            }
        if not rows[-1]["passed"]:  # the profiled extra step of each arm's first process
            rows[-1]["profile"] = {
                a: r["profile"] for a in ("sara", "lora") for r in runs[f"sd/{a}"][:1] if r.get("profile")
            }
    return rows


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny hosts only, few repeats")
    parser.add_argument("--sections", default=None, help="comma list of SIZE:GROUP (tiny|real : sd, sdxl, video, "
                        "sam, tta, train; tiny:compile); default: all of the mode")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=None, help="override every inference group's repeats")
    parser.add_argument("--train-repeats", type=int, default=None, help="rounds of training processes per arm")
    parser.add_argument("--train-steps", type=int, default=None, help="timed steps per training process")
    parser.add_argument("--train-arms", default=None, help="comma list of HOST/ARM training arms (default: all)")
    parser.add_argument("--threads", type=int, default=None, help="real-size threads (default OMP_NUM_THREADS or 2)")
    parser.add_argument("--compile", action="store_true", help="with --quick: also the torch.compile section")
    parser.add_argument("--folder", default="benchmarks/results")
    parser.add_argument("--name", default=None, help="result file stem (default perf, or perf_quick)")
    parser.add_argument("--update", default=None, metavar="REASON", help="run --sections again and put them into "
                        "the existing result file (replacing those sections' entries), recording this command and "
                        "REASON beside the original run's")  # fmt: skip
    parser.add_argument("--train-worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
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
    wanted = [f"{s}:{f}" for s in sizes for f in (*families, "train")]
    if not args.quick or args.compile:
        wanted.append("tiny:compile")  # tiny hosts only: inductor compiles a real-size UNet for many minutes
    if args.sections:
        wanted = [w for w in args.sections.split(",") if w]
    name = args.name or ("perf_quick" if args.quick else "perf")
    started = time.time()
    fresh: dict[str, Any] = {"inference": {}, "training": {}, "compile": {}, "gates": []}
    arms_filter = set(args.train_arms.split(",")) if args.train_arms else None
    for size in sizes:
        groups = [f for f in families if f"{size}:{f}" in wanted]
        size_threads = 1 if size == "tiny" else threads  # tiny models run fastest on one thread
        if groups:
            log(f"[{size}] inference: {', '.join(groups)}")
            inference(size, groups, args.repeats or (3 if args.quick else None), size_threads, fresh)
        if f"{size}:train" in wanted:
            rounds = args.train_repeats or (1 if args.quick else 2)
            steps = args.train_steps or (2 if args.quick or size == "real" else 5)
            log(f"[{size}] training: {rounds} rounds x {steps} steps")
            script = os.path.abspath(__file__)
            fresh["training"][size] = training(script, size, rounds, steps, size_threads, log, arms_filter)
        if f"{size}:compile" in wanted:
            from _perf_compile import compile_section

            torch.set_num_threads(1)
            log(f"[{size}] torch.compile")
            fresh["compile"][size] = compile_section(args.repeats or (5 if args.quick else 9), log)
    record = {"command": command(), "machine": machine(threads), "seed": SEED, "sections": wanted,
              "threads": {"tiny": 1, "real": threads}, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
              "seconds": round(time.time() - started, 1)}  # fmt: skip
    if args.update:
        with open(os.path.join(args.folder, f"{name}.json")) as fh:
            result = json.load(fh)
        merge(result, fresh)
        result.setdefault("updates", []).append({**record, "reason": args.update})
    else:
        result = {**record, "mode": "quick" if args.quick else "full", **fresh}
        result["gate_host"] = "tiny" if args.quick else "real"
    result["gates"] = [g for g in result["gates"] if not g["group"].startswith("train:")]
    for size, runs in result["training"].items():
        result["gates"] += training_gates(size, runs)
    write_report(name, result, render(name, result), folder=args.folder)
    return 0


def merge(result: dict[str, Any], fresh: dict[str, Any]) -> None:
    """Put a re-run's sections into an earlier result: inference groups and their gates replaced, training arms
    replaced arm by arm (the other arms' processes kept), compile sections replaced."""
    result["inference"].update(fresh["inference"])
    redone = {(k.split(":")[0], k.split(":", 1)[1]) for k in fresh["inference"]}
    replaced = [g for g in result["gates"] if (g["host"], g["group"]) in redone]
    result.setdefault("replaced_gates", []).extend({k: g[k] for k in g if k != "profile"} for g in replaced)
    result["gates"] = [g for g in result["gates"] if (g["host"], g["group"]) not in redone] + fresh["gates"]
    for size, runs in fresh["training"].items():
        result["training"].setdefault(size, {}).update(runs)
    result["compile"].update(fresh["compile"])
    if result["compile"].pop("real", None) is not None:  # compile is a tiny-host section; an older run repeated it
        result.setdefault("dropped", []).append(
            "compile/real: the tiny hosts compiled a second time under a 'real' label (warm caches); removed"
        )


if __name__ == "__main__":
    sys.exit(main())
