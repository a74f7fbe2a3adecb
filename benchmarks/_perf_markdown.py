"""The markdown report of benchmarks/perf.py (benchmarks/results/perf.md)."""

from __future__ import annotations

import statistics
from typing import Any

from _report import header

NOTES = """\
How it is measured. Inference: in one process, each group's arms interleaved (the order rotates every repeat),
one warm-up round; per arm the median with quartiles [q1-q3] and min-max of wall time and of process CPU time
(`time.process_time`, all threads); x base = median over the base arm's median; "paired" = the quartiles of the
per-round ratios (arm and base timed back to back). Adapted arms share the base's weight tensors; fused arms fuse
before their call and unfuse after it (untimed); adapter values are perturbed off their no-op initialisation.
Training: one fresh process per arm and round (rounds rotate the arms): one warm-up step, then timed steps (forward,
loss, backward, clipping, AdamW), on a fixed pre-encoded batch; peak = the process's resident-set high-water mark
(VmHWM, reset after the frozen host and the batch are built) minus its resident set at that point, i.e. everything
the arm adds: adapter, gradients, optimizer state, activations, workspaces and allocator slack, not the weights. A
fresh process per arm because torch's CPU allocator keeps no peak statistics, tracemalloc does not see tensor
memory, and a process that ran another arm keeps that arm's high-water mark and pages. Gates are read on process
CPU time (steadier than wall time on this shared 2-core machine, which runs other jobs); wall time is beside it.
"""


# What a failed gate's profile shows, where the cause is known (written from the profiles; the numbers are above)
EXPLAIN = {
    "SaRA step time <= 1.3x LoRA's": (
        "Two costs are the method's own. (1) SaRA trains entries scattered through every weight, so its backward "
        "computes each targeted weight's full gradient (`convolution_backward` and `mm` for the weights; LoRA's "
        "backward only carries input gradients through the frozen base) and keeps the selected entries, as the "
        "official implementation does; computing only the selected entries would need sampled products (a gather "
        "and a scatter per entry and token) in place of the weight-gradient GEMMs, slower than the GEMMs on CPU at "
        "this density. (2) The paper's nuclear-norm term takes one SVD of a randomly drawn matrix per step "
        "(`_linalg_svd`; its expected cost is measured below; a fixed cost per step, independent of batch and "
        "resolution, so its share falls as the batch grows; the official default optimizer adds the term to "
        "tensors its step never reads, so there it costs nothing and does nothing). Fixed here: each forward used to "
        "compose a full copy of every weight (`aten::copy_` 3,037 ms per step in the first run); the live composed "
        "weight (`vadapters/methods/sara/live.py`) rewrites only the selected entries (`copy_` about 140 ms). What "
        "remains is the weight gradients: SaRA's step sits between LoRA's and full fine-tuning's, because it needs "
        "full fine-tuning's gradients but not its optimizer state. The timed steps draw their SVD matrices by step "
        "number (here large ones); the expected figure below averages over every eligible matrix."
    ),
}


def _s(stats: dict[str, float]) -> str:
    return f"{stats['median']:.4g} [{stats['q1']:.4g}-{stats['q3']:.4g}]"


def _gate_table(gates: list[dict[str, Any]]) -> list[str]:
    lines = ["| gate | host | measured (CPU) | paired CPU [q1-q3] | wall | limit | repeats | met |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for g in gates:
        if g.get("memory_ratio") is not None:
            measured, paired, wall = f"peak x{g['memory_ratio']:.3f}", "-", "-"
        else:
            measured = f"x{g['cpu_ratio']:.3f}"
            p = g.get("paired_cpu")
            paired = f"x{p['median']:.3f} [{p['q1']:.3f}-{p['q3']:.3f}]" if p else "-"
            wall = f"x{g['wall_ratio']:.3f}" + ("" if g.get("wall_passed", True) else " (over)")
        limit = "< 1" if g.get("memory_ratio") is not None else f"<= {g['limit']}"
        met = "yes" if g["passed"] else "**no**"
        lines.append(
            f"| {g['gate']} | {g['host']} | {measured} | {paired} | {wall} | {limit} | {g['repeats']} | {met} |"
        )
    return lines


def _gates(result: dict[str, Any]) -> list[str]:
    host = result["gate_host"]
    gated = [g for g in result["gates"] if g["host"] == host]
    lines = ["## Gates", "", *_gate_table(gated)]
    others = [g for g in result["gates"] if g["host"] != host]
    if others:
        lines += ["", "The same comparisons on the tiny hosts, for reference (not the issue's gates: millisecond calls "
                  "whose Python and memory overheads weigh what the compute does on real sizes):", "",
                  *_gate_table(others)]  # fmt: skip
    if result.get("replaced_gates"):
        lines += ["", "Figures of the first run that a re-run (above) replaced, kept here:", "",
                  *_gate_table(result["replaced_gates"])]  # fmt: skip
    for g in gated:
        ops = g.get("operators")
        if ops:
            what = (f"runs exactly the base's operators ({ops['operator_kinds']} kinds of operator and input shape, "
                    "same counts): the same computation, so a time difference is noise or the idle wrappers' Python"
                    if ops["identical"] else "differs from the base's operators: " + "; ".join(ops["differences"]))  # fmt: skip
            lines += ["", f"{g['gate']} ({g['host']}): the fused model {what}."]
        extra = g.get("extra_operators")
        if extra:
            tops = "; ".join(
                f"`{e['op']}` {e['shapes']} x{e['extra_calls']}: {e['self_ms']:.0f} ms" for e in extra["top"][:5]
            )
            lines += ["", f"{g['gate']} ({g['host']}): the operators the adapted model runs beyond the base's (by name, "
                      f"input shapes and count) took {extra['extra_ms']:.0f} ms of self CPU time in one profiled call, "
                      f"against {extra['base_ms']:.0f} ms for all of the base's: an estimated x{extra['estimated_ratio']:.3f}. "
                      f"Largest: {tops}."]  # fmt: skip
    for g in gated:
        if "profile" in g:
            lines += ["", f"Profile of the failed gate {g['gate']} ({g['host']}): top operators by self CPU time, "
                      "one call each", "", "| arm | operator | self ms | calls |", "|---|---|---|---|"]  # fmt: skip
            for arm, rows in g["profile"].items():
                lines += [f"| {arm} | `{r['op']}` | {r['self_ms']:.1f} | {r['calls']} |" for r in rows]
            if g["gate"] in EXPLAIN:
                lines += ["", EXPLAIN[g["gate"]]]
        d = g.get("decomposition")
        if d:
            lines += ["", f"{g['gate']} ({g['host']}), decomposed: SaRA with the nuclear-norm term off "
                      f"(`lambda_rank=0`, arm `sara_no_rank`) x{d['no_rank_ratio']:.3f} LoRA's CPU time."]  # fmt: skip
            if d.get("rank_cost"):
                c = d["rank_cost"]
                shapes = "; ".join(f"{k} x{v['count']}: {v['cpu_s']:.2f} s" for k, v in c["per_shape"].items())
                lines += [f"The term's expected CPU time per step (one of the {c['eligible']} eligible matrices drawn "
                          f"uniformly, forward and backward, each shape timed once): {d['rank_term_mean_cpu_s']:.2f} s, "
                          f"so SaRA's expected step is x{d['expected_ratio']:.3f} LoRA's. By shape: {shapes}."]  # fmt: skip
    return lines


def _inference(result: dict[str, Any]) -> list[str]:
    lines = ["## Inference", ""]
    for key, group in result["inference"].items():
        facts = ", ".join(f"{k} {v}" for k, v in group.items() if k not in ("arms", "reference"))
        facts += f", calls per sample {next(iter(group['arms'].values()))['calls_per_sample']}"
        lines += [f"### {key}: {facts}", "",
                  "| arm | wall s [q1-q3] | CPU s [q1-q3] | x base wall | x base CPU | paired CPU [q1-q3] | min-max CPU |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for arm, t in group["arms"].items():
            p, c = t["cpu"]["paired_ratio"], t["cpu"]["seconds"]
            lines.append(
                f"| {arm} | {_s(t['wall']['seconds'])} | {_s(c)} | {t['wall']['ratio']:.3f} | {t['cpu']['ratio']:.3f} "
                f"| {p['median']:.3f} [{p['q1']:.3f}-{p['q3']:.3f}] | {c['min']:.4g}-{c['max']:.4g} |"
            )
        lines.append("")
    return lines


def _training(result: dict[str, Any]) -> list[str]:
    lines = ["## Training step", ""]
    for size, runs in result["training"].items():
        lines += [f"### {size}", "", "| host / arm | trainable | optimizer state | step wall s | step CPU s | "
                  "peak MiB (per round) | rounds x steps |", "|---|---|---|---|---|---|---|"]  # fmt: skip
        for key, rounds in runs.items():
            good = [r for r in rounds if "error" not in r]
            if not good:
                lines.append(f"| {key} | - | - | - | - | {rounds[0]['error'][:120]!r} | - |")
                continue
            walls = [v for r in good for v in r["wall"]]
            cpus = [v for r in good for v in r["cpu"]]
            peaks = ", ".join(f"{r['peak_bytes'] / 2**20:.0f}" if r["peak_bytes"] is not None else "n/a" for r in good)
            lines.append(
                f"| {key} | {good[0]['trainable']:,} | {good[0]['optimizer_state']:,} | {statistics.median(walls):.4g} "
                f"| {statistics.median(cpus):.4g} | {peaks} | {len(good)} x {good[0]['steps']} |"
            )
        lines.append("")
    return lines


def _compile(result: dict[str, Any]) -> list[str]:
    if not result["compile"]:
        return []
    lines = ["## torch.compile (inductor, CPU, 1 thread)", "",
             "| model | compile s | max abs diff (output scale) | speedup wall | speedup CPU | eager CPU s | compiled CPU s |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for size, cases in result["compile"].items():
        for name, c in cases.items():
            t = c["timing"]
            lines.append(
                f"| {size}: {name} | {c['compile_seconds']:.1f} | {c['max_abs_difference']:.2e} ({c['reference_scale']:.2g}) "
                f"| {c['speedup_wall']:.2f} | {c['speedup_cpu']:.2f} | {_s(t['eager']['cpu']['seconds'])} "
                f"| {_s(t['compiled']['cpu']['seconds'])} |"
            )
    return [*lines, ""]


def render(name: str, result: dict[str, Any]) -> str:
    intro = (
        f"Mode {result['mode']}, seed {result['seed']}, threads {result['threads']}, OMP_WAIT_POLICY "
        f"{result['omp_wait_policy']}; gates read on the {result['gate_host']} hosts.\n\n"
    )
    for u in result.get("updates", []):
        intro += (  # the reason is the command's --update argument
            f"Sections {', '.join(u['sections'])} re-run by `{u['command']}` (OMP_WAIT_POLICY {u['omp_wait_policy']}, "
            f"{u['seconds']} s); what that run replaced is listed below the gates.\n\n"
        )
    for note in result.get("dropped", []):
        intro += f"Dropped from the first run: {note}.\n\n"
    body = [*_gates(result), "", *_inference(result), *_training(result), *_compile(result), "## Method", "", NOTES]
    return header(name, result) + intro + "\n".join(body) + "\n"
