"""SaRA benchmark on the embedded tiny-sd (issues 4 and 19): premise, new-domain fit vs forgetting, memory, speed.

1. Premise (paper: the smallest-magnitude weights are "ineffective"): on the base UNet, zero the smallest q% of
   all weights (one global magnitude threshold) vs a random q% (3 draws), and report the change of the
   domain-A validation denoising loss.
2. Fine-tune from domain A (one large shape on a flat background, what tiny-sd is trained on) to domain B (the
   same shapes on a textured background, captions say "textured background") with equal step budgets: full
   fine-tune, peft LoRA (attention + FF, rank chosen by --lora-rank), SaRA with the quantile that matches LoRA's
   trainable count, random sparse selection with the same count. Each of these arms gets its own learning rate,
   tuned on a validation split over one grid (`--lr-grid`, the same for every arm; `_sara_tuning.py` says how),
   then runs --seeds seeds at that rate; SaRA without the nuclear norm and without progressive re-selection run at
   SaRA's rate (ablations). Denoising MSE on B (fit) and on A (forgetting) on fixed noise and timesteps, every
   --eval-every steps, on test scenes (reported) and validation scenes (for the choice only). "Forgetting at equal
   fit" reads the A-loss increase of SaRA and of each other arm at the B loss both reached, per seed.
3. Cost (`_sara_cost.py`): trainable count, optimizer-state and gradient elements kept by a step (exact); median
   step time with the variants interleaved step by step in one process; peak memory of training in a fresh
   single-threaded process per variant (glibc bytes in use sampled after every aten op, and the RSS high-water
   mark), at the benchmark batch and at batch 1; plus SaRA implemented with gradient hooks on full weights instead
   of the parametrisation, the alternative the implementation was chosen against.

The UNet is trained on pre-encoded latents and text embeddings (frozen VAE and text encoder), so every variant
pays only for its UNet steps. `vadapters.pipelines.load_pipeline(None)` gives the embedded tiny-sd, or the tiny
architecture with random weights when none is committed: then the base is first trained on domain A for
--pretrain-steps (full fine-tune), so "forgetting" means something. `--pipeline DIR` takes another base (the proof
world v2 tiny-sd).

Usage:
    python benchmarks/sara_benchmark.py --quick      # tiny budgets: checks that everything runs
    python benchmarks/sara_benchmark.py              # full: lr sweep (4 arms x 5 rates) + 3 seeds x 300 steps

Writes benchmarks/results/sara_benchmark[_quick].json and .md (command, seeds, machine, torch version).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VADAPTERS_NO_PROGRESS", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _sara_common import LORA_TARGETS, Denoising, build_variant, encode_domain, finetune  # noqa: E402
from _sara_cost import cost  # noqa: E402
from _sara_tuning import ABLATIONS, ARMS, equal_fit, lr_sweep, markdown_sections  # noqa: E402

DEFAULT_GRID = "3e-5,1e-4,3e-4,1e-3,3e-3"


# ------------------------------------------------------------------------------------------------- experiments
def premise(base_unet, task: Denoising, qs: list[float], draws: int) -> dict[str, Any]:
    """Validation loss on A after zeroing the smallest q of all weights vs a random q (mean over draws)."""
    import torch

    from vadapters.methods.sara import SaRAConfig
    from vadapters.methods.sara.sparse import find_targets, select

    base = task.validate(base_unet)
    rows = []
    for q in qs:
        row = {"q": q}
        for rule in ("magnitude", "random"):
            losses = []
            for draw in range(draws if rule == "random" else 1):
                unet = copy.deepcopy(base_unet)
                config = SaRAConfig(quantile=q, rule=rule, random_seed=draw)
                targets = find_targets(unet, config)
                _, indices = select(targets, config)
                with torch.no_grad():
                    for t in targets:
                        if t.name in indices:
                            t.base.view(-1)[indices[t.name].long()] = 0.0
                losses.append(task.validate(unet))
            row[rule] = {
                d: {"loss": statistics.fmean(x[d] for x in losses), "change": statistics.fmean(x[d] for x in losses) - base[d]}
                for d in ("A", "B")
            }  # fmt: skip
            if rule == "random":
                row[rule]["A"]["std"] = statistics.stdev([x["A"] for x in losses]) if len(losses) > 1 else 0.0
        rows.append(row)
    return {"base": base, "rows": rows, "random_draws": draws}


# ---------------------------------------------------------------------------------------------------- reporting
def summarise(results: dict) -> dict[str, Any]:
    runs = results["runs"]
    table = {}
    for method in (*ARMS, *ABLATIONS):
        rs = [r for r in runs if r["method"] == method]
        if not rs:
            continue
        table[method] = {
            "trainable": rs[0]["trainable"],
            "lr": rs[0]["lr"],
            "B_loss": _ms([r["curve"][-1]["B"] for r in rs]),
            "A_forgetting": _ms([r["curve"][-1]["A"] - r["curve"][0]["A"] for r in rs]),
            "B_start": statistics.fmean(r["curve"][0]["B"] for r in rs),
            "A_start": statistics.fmean(r["curve"][0]["A"] for r in rs),
        }
    c = results["cost"]["variants"]
    claims = {
        "retained_state_sara_over_full": c["sara"]["retained_state_elements"] / c["full"]["retained_state_elements"],
        "peak_allocated_sara_over_full": c["sara"]["peak_allocated_mb"] / c["full"]["peak_allocated_mb"],
        "peak_allocated_batch1_sara_over_full": c["sara"]["peak_allocated_mb_batch1"]
        / c["full"]["peak_allocated_mb_batch1"],
        "peak_rss_sara_over_full": c["sara"]["peak_rss_mb"] / c["full"]["peak_rss_mb"],
        "peak_rss_batch1_sara_over_full": c["sara"]["peak_rss_mb_batch1"] / c["full"]["peak_rss_mb_batch1"],
        "step_time_sara_over_lora": c["sara"]["step_seconds_median"] / c["lora"]["step_seconds_median"],
        "step_time_sara_over_full": c["sara"]["step_seconds_median"] / c["full"]["step_seconds_median"],
        "step_time_hooks_over_parametrisation": c["sara_hooks"]["step_seconds_median"]
        / c["sara"]["step_seconds_median"],
        "peak_allocated_hooks_over_parametrisation": c["sara_hooks"]["peak_allocated_mb"]
        / c["sara"]["peak_allocated_mb"],
    }
    lora = results["equal_fit"]["by_arm"].get("lora", {})
    claims["goals"] = {
        "retained_state_at_most_one_third_of_full": claims["retained_state_sara_over_full"] <= 1 / 3,
        "peak_step_memory_below_full": claims["peak_allocated_sara_over_full"] < 1,
        "step_time_within_1.3x_lora": claims["step_time_sara_over_lora"] <= 1.3,
        "less_forgetting_than_lora_and_random_sparse_at_equal_fit": results["equal_fit"]["gate"]["holds"],
        "less_forgetting_than_lora_seeds": f"{lora.get('reference_lower', 0)} of {lora.get('seeds', 0)}",
    }
    return {"table": table, "claims": claims}


def _ms(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def markdown(results: dict, summary: dict) -> str:
    st = results["settings"]
    lines = [
        f"# {results['name']}",
        "",
        f"`{results['command']}` on {results['machine']}, {results['seconds']} s.",
        "",
        f"Base: {results['base']}. Domain A: one large shape on a flat background; domain B: the same on a textured"
        f" background. {st['steps']} steps, batch {st['batch_size']}, seeds {st['seeds']}; {st['n_val']} items x 2 "
        "noise draws per domain and split (test: reported; validation: learning-rate choice only).",
        "",
        "## Premise: zero the smallest q% vs a random q% of all UNet weights (domain-A loss change)",
        "",
        f"Base test loss: A {results['premise']['base']['A']:.4f}, B {results['premise']['base']['B']:.4f}.",
        "",
        "| q | smallest q%: A change | random q%: A change (mean +- std over draws) |",
        "|---|---|---|",
    ]
    for row in results["premise"]["rows"]:
        lines.append(
            f"| {row['q']:.0%} | {row['magnitude']['A']['change']:+.5f} | "
            f"{row['random']['A']['change']:+.5f} +- {row['random']['A']['std']:.5f} |"
        )
    lines += [
        "",
        "## Fine-tuning A -> B at the tuned learning rates (test split, mean +- std over seeds; lower is better)",
        "",
        "| method | trainable | lr | B loss (start -> end) | A forgetting (end - start) |",
        "|---|---|---|---|---|",
    ]
    for m, row in summary["table"].items():
        lines.append(
            f"| {m} | {row['trainable']:,} | {row['lr']:.2e} | {row['B_start']:.4f} -> {row['B_loss']['mean']:.4f} +- "
            f"{row['B_loss']['std']:.4f} | {row['A_forgetting']['mean']:+.4f} +- {row['A_forgetting']['std']:.4f} |"
        )
    lines += ["", *markdown_sections(results)]
    c = results["cost"]["variants"]
    lines += [
        f"## Cost (step time: one process, variants interleaved over {results['cost']['rounds']} steps, median; "
        "memory: one fresh single-threaded process per variant, peak above the frozen model + data of its training "
        "steps - glibc bytes in use sampled after every aten op, and RSS high-water mark)",
        "",
        "| variant | trainable | optimizer state | grads kept by a step | index elements | retained total "
        f"| peak allocated / RSS, batch {st['batch_size']} (MB) | same, batch 1 (MB) | step time (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m, v in c.items():
        lines.append(
            f"| {m} | {v['trainable']:,} | {v['optimizer_state_elements']:,} | {v['grad_elements']:,} | "
            f"{v['index_elements']:,} | {v['retained_state_elements']:,} | {v['peak_allocated_mb']:.1f} / "
            f"{v['peak_rss_mb']:.1f} | {v['peak_allocated_mb_batch1']:.1f} / {v['peak_rss_mb_batch1']:.1f} | "
            f"{v['step_seconds_median']:.4f} |"
        )
    claims = summary["claims"]
    g = claims["goals"]
    lines += [
        "",
        "## The issues' goals, as measured here",
        "",
        f"- Retained training state SaRA / full: {claims['retained_state_sara_over_full']:.3f} "
        f"(goal <= 1/3: {'met' if g['retained_state_at_most_one_third_of_full'] else 'NOT met'}).",
        f"- Peak memory of a training step SaRA / full (allocator bytes in use above the frozen model): "
        f"{claims['peak_allocated_sara_over_full']:.3f} (goal < 1: "
        f"{'met' if g['peak_step_memory_below_full'] else 'NOT met'}); at batch 1, where activations weigh less "
        f"against the parameter state: {claims['peak_allocated_batch1_sara_over_full']:.3f}. Peak RSS ratios: "
        f"{claims['peak_rss_sara_over_full']:.3f} and {claims['peak_rss_batch1_sara_over_full']:.3f}.",
        f"- Step time SaRA / LoRA: {claims['step_time_sara_over_lora']:.3f} "
        f"(goal <= 1.3: {'met' if g['step_time_within_1.3x_lora'] else 'NOT met'}); SaRA / full: "
        f"{claims['step_time_sara_over_full']:.3f}.",
        f"- Less forgetting than LoRA and random sparse at equal fit, tuned rates: "
        f"{'met' if g['less_forgetting_than_lora_and_random_sparse_at_equal_fit'] else 'NOT met'} (vs LoRA: "
        f"{g['less_forgetting_than_lora_seeds']} seeds).",
        f"- Gradient hooks vs parametrisation: step time {claims['step_time_hooks_over_parametrisation']:.3f}x, "
        f"peak memory {claims['peak_allocated_hooks_over_parametrisation']:.3f}x (the parametrisation is kept: hooks "
        "need requires_grad on the full weights, which breaks DDP; see vadapters/methods/sara/sparse.py).",
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------- main
def _pretrain_on_a(base_unet, task, train_a, args, steps: int) -> dict:
    """A random base has no domain to forget: teach it domain A first (full fine-tune)."""
    import torch

    base_unet.requires_grad_(True).train()
    opt = torch.optim.AdamW(base_unet.parameters(), lr=5e-4)
    g = torch.Generator().manual_seed(99)
    for _ in range(steps):
        idx = torch.randint(0, args.n_train, (args.batch_size,), generator=g)
        loss = task.loss(base_unet, train_a["latents"][idx], train_a["emb"][idx], g)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    base_unet.requires_grad_(False).eval()
    return {"steps": steps, "lr": 5e-4, "val_after": task.validate(base_unet)}


def main(argv: list[str] | None = None) -> dict:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets: checks that everything runs")
    parser.add_argument("--pipeline", default=None, help="diffusers folder (default: the embedded tiny-sd)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--eval-every", type=int, default=None)
    parser.add_argument("--n-train", type=int, default=None)
    parser.add_argument("--n-val", type=int, default=None)
    parser.add_argument("--size", type=int, default=32, help="image size (latents are size / 2 for tiny-sd)")
    parser.add_argument("--pretrain-steps", type=int, default=None, help="domain-A steps for a random base")
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--lr-grid", default=None, help=f"learning rates every arm tries (default {DEFAULT_GRID})")
    parser.add_argument("--lambda-rank", type=float, default=5e-4)
    parser.add_argument("--rank-min-dim", type=int, default=16, help="tiny-sd matrices are at most 64 wide")
    parser.add_argument("--progressive-at", type=float, default=0.5)
    parser.add_argument("--no-ablations", action="store_true", help="skip SaRA without nuclear norm / progressive")
    parser.add_argument("--cost-rounds", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", default=None)
    parser.add_argument("--out", default="benchmarks/results", help="folder of the result files")
    args = parser.parse_args(argv)
    q = args.quick
    args.steps = args.steps or (6 if q else 300)
    args.batch_size = args.batch_size or (8 if q else 16)
    args.seeds = args.seeds or (1 if q else 3)
    args.eval_every = args.eval_every or (3 if q else 25)
    args.n_train = args.n_train or (32 if q else 256)
    args.n_val = args.n_val or (8 if q else 64)
    args.cost_rounds = args.cost_rounds or (2 if q else 20)
    grid = sorted(float(x) for x in (args.lr_grid or ("1e-4,1e-3" if q else DEFAULT_GRID)).split(",") if x.strip())
    name = args.name or ("sara_benchmark_quick" if q else "sara_benchmark")
    torch.set_num_threads(args.threads)
    start = time.time()

    from vadapters.methods.sara import SaRAConfig, upstream_lr
    from vadapters.methods.sara.sparse import find_targets, select
    from vadapters.models.weights import read_manifest
    from vadapters.pipelines import load_pipeline

    pipe = load_pipeline(args.pipeline)
    embedded = args.pipeline is not None or "tiny-sd" in read_manifest()["entries"]
    train_a = encode_domain(pipe, "A", args.n_train, 0, args.size)
    train_b = encode_domain(pipe, "B", args.n_train, 1, args.size)
    splits = {"A": 100, "B": 101, "A_val": 200, "B_val": 201}  # test scenes (reported) and validation scenes
    val = {k: encode_domain(pipe, k[0], args.n_val, seed, args.size) for k, seed in splits.items()}
    task = Denoising(pipe.scheduler.config, val)
    base_unet = pipe.unet.eval()
    base_desc = args.pipeline or "embedded tiny-sd"
    pretrain = {}
    if not embedded:
        steps = args.pretrain_steps if args.pretrain_steps is not None else (20 if q else 600)
        pretrain = _pretrain_on_a(base_unet, task, train_a, args, steps)
        base_desc = (
            f"tiny architecture with random weights (no tiny-sd committed), pretrained {steps} steps on domain A"
        )

    total = sum(p.numel() for p in base_unet.parameters())
    probe = build_variant("lora", base_unet, 0.1, args, 0, 1e-3)
    lora_count = sum(p.numel() for p in probe["params"])
    quantile = lora_count / total
    del probe
    args.matched_quantile = quantile
    tau = select(find_targets(base_unet, SaRAConfig(quantile=quantile)), SaRAConfig(quantile=quantile))[0]

    results: dict[str, Any] = {
        "name": name,
        "command": " ".join(["python", *sys.argv]) if argv is None else "main(" + " ".join(argv) + ")",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {args.threads} threads, torch {torch.__version__}",
        "base": base_desc,
        "pretrain": pretrain,
        "settings": {
            **vars(args),
            "lr_grid": grid,
            "seeds": list(range(args.seeds)),
            "unet_parameters": total,
            "lora_targets": LORA_TARGETS,
            "matched_quantile": quantile,
            "splits": splits,
        },
        "upstream_lr": upstream_lr(tau),
    }
    print(
        f"base: {base_desc}; UNet {total:,} params; LoRA r={args.lora_rank}: {lora_count:,} -> SaRA q={quantile:.4f}"
    )
    results["premise"] = premise(base_unet, task, [0.05, 0.1, 0.2], draws=2 if q else 3)
    print("premise:", json.dumps(results["premise"]["rows"])[:300])

    def run(method, lr, seed=0):
        torch.manual_seed(seed)
        r = finetune(method, base_unet, quantile, task, train_b, args, seed, lr)
        c0, c1 = r["curve"][0], r["curve"][-1]
        print(f"seed {seed} {method:<20} lr {lr:<8g} B {c0['B']:.4f}->{c1['B']:.4f}  A {c0['A']:.4f}->{c1['A']:.4f}"
              f"  {r['seconds']} s")  # fmt: skip
        return r

    sweep = lr_sweep(ARMS, grid, run)
    lrs = dict(sweep["chosen"])
    lrs.update(dict.fromkeys(ABLATIONS, lrs["sara"]))
    runs = [sweep["runs"][arm][f"{lrs[arm]:g}"] for arm in ARMS]  # seed 0 at the chosen rate: already run
    methods = [*ARMS, *(() if args.no_ablations else ABLATIONS)]
    for seed in range(args.seeds):
        for method in methods:
            if seed == 0 and method in ARMS:
                continue
            runs.append(run(method, lrs[method], seed))
    results["sweep"] = {k: v for k, v in sweep.items() if k != "runs"}
    results["sweep"]["lrs"] = lrs
    results["runs"] = runs
    results["equal_fit"] = equal_fit(runs)
    results["cost"] = cost(base_unet, quantile, task, train_b, args, lrs)
    results["seconds"] = round(time.time() - start, 1)
    summary = summarise(results)
    results["summary"] = summary
    from vadapters.core.io import atomic_write_text

    os.makedirs(args.out, exist_ok=True)
    atomic_write_text(os.path.join(args.out, f"{name}.json"), json.dumps(results, indent=2, default=float) + "\n")
    md = markdown(results, summary)
    atomic_write_text(os.path.join(args.out, f"{name}.md"), md)
    print(md)
    return results


if __name__ == "__main__":
    main()
