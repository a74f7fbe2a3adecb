"""ResAdapter resolution benchmark (issue 19, item 3): a base trained at 32 px only, generating at other sizes, with
and without a ResAdapter trained by the method's own recipe on multi-resolution data.

The paper's claim (Cheng et al. 2024, "ResAdapter: Domain Consistent Resolution Adapter for Diffusion Models"): a
text-to-image model degrades away from the resolution it was trained at (repeated, duplicated objects above it,
broken composition below it), and a resolution adapter that leaves the base's style alone restores it.

What runs:
1. Data: the base's own distribution (one large shape on flat ground, `train.base_vae.LARGE_SCENES`) rendered at
   every bucket of `--train-resolutions` (16-64 px, square and 1:2 / 2:1), as the paper trains on images of many sizes
   and aspect ratios. Training: `vadapters.train_adapter("res_adapter", ...)`, the method's normal recipe (the shared
   latent-diffusion recipe), official adapter shape by default (rank 16, alpha 8).
2. Validation split (captions from seed `--seed + 7919`, never the reported ones): the guidance scale is the base's,
   chosen at 32 px among `--guidance`; ResAdapter's learning rate is chosen among `--lr-grid` by judge accuracy at
   the off-base sizes (seed-0 adapters). Both are reported.
3. Test: `--n` held-out captions at 16, 24, 32, 48, 64, 32x64 and 64x32, base (`vadapters.disabled`) and ResAdapter
   with the same noise, for each of `--seeds` seeds (adapter seed = noise seed). Judge accuracy (shape and colour
   both right; `--judge`, default `weights/judge-shape-colour-v2`, non-square images read letterboxed:
   `vadapters.metrics.framing`) and object counts (`vadapters.metrics.counting`: one object, duplicated, none).
   Ceilings: the test scenes as rendered and through the pipeline's VAE, scored the same way. The judges' own
   ground-truth accuracies at these sizes: `benchmarks/resolution_judges.py`.
Gate (issue 19): ResAdapter beats the base by >= 15 points of judge accuracy (mean over seeds) at >= 2 off-base sizes.

Usage:
    python benchmarks/res_adapter_resolution.py --pipeline DIR          # full: 3 seeds, 4 learning rates
    python benchmarks/res_adapter_resolution.py --quick                 # tiny budgets: checks that it runs

Adapters go to `--work` (default outputs/res_adapter_resolution/NAME; a rerun resumes finished trainings).
Writes benchmarks/results/res_adapter_resolution[_quick].json and .md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VADAPTERS_NO_PROGRESS", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _report import command, machine, write_report  # noqa: E402 (sibling module, after the env)
from _resolution_scoring import (  # noqa: E402
    BASE_SIZE,
    FRAMING,
    SIZES,
    base_scenes,
    mean_std,
    parse_sizes,
    pct,
    score_images,
    size_name,
    summarise_records,
    vae_round_trip,
)

TRAIN_RESOLUTIONS = "16,24,32,40,48,56,64,16x32,32x16,24x48,48x24,32x64,64x32"
GATE_POINTS, GATE_SIZES = 0.15, 2
CLAIM = (
    "ResAdapter paper (Cheng et al. 2024): away from its training resolution a base repeats objects (larger sizes) and "
    "breaks the composition (smaller sizes); ResAdapter restores resolution-consistent images without changing the "
    "base's style."
)


def captions(n: int, seed: int) -> tuple[list[str], list[dict]]:
    scenes = base_scenes(n, seed)
    return [scenes.caption(i) for i in range(n)], [scenes.scene(i)["shapes"][0] for i in range(n)]


def generate(pipe, prompts: list[str], size, seed: int, steps: int, guidance: float, batch: int = 32):
    """Images in [-1, 1]; the noise depends on (seed, batch start) only, so both arms get the same."""
    import torch

    out = []
    for start in range(0, len(prompts), batch):
        generator = torch.Generator().manual_seed(100_003 * seed + start)
        images = pipe(
            prompts[start : start + batch], height=size[0], width=size[1], num_inference_steps=steps,
            guidance_scale=guidance, generator=generator, output_type="pt",
        ).images  # fmt: skip
        out.append(images * 2 - 1)
    return torch.cat(out)


def score_arm(pipe, judge, config, prompts, labels, sizes, seed, args, guidance) -> dict[str, dict]:
    return {
        size_name(s): summarise_records(
            score_images(judge, config, generate(pipe, prompts, s, seed, args.sample_steps, guidance), labels)
        )
        for s in sizes
    }


def train(args, lr: float, seed: int) -> tuple[str, dict]:
    """A ResAdapter trained by the method's own recipe; resumes (or returns at once) when the run exists."""
    from vadapters.train import train_adapter

    out = os.path.join(args.work, f"lr-{lr:g}", f"seed-{seed}")
    t0 = time.time()
    summary = train_adapter(
        "res_adapter",
        output_dir=out,
        base=args.pipeline,
        data=base_scenes(args.train_items, 500 + seed),
        resolutions=args.train_resolutions,
        steps=args.train_steps,
        batch_size=args.batch_size,
        learning_rate=lr,
        config_overrides={"rank": args.rank, "alpha": args.alpha},
        seed=seed,
        checkpoint_every=max(1, args.train_steps // 4),
        validate_every=0,
    )
    info = {"final_loss": _logged_loss(out, summary), "seconds": round(time.time() - t0, 1), "dir": out}
    return out, info


def _logged_loss(out: str, summary: dict) -> float | None:
    """The last logged training loss (a rerun that finds the training finished trains no step)."""
    import json

    loss = summary.get("final_loss")
    path = os.path.join(out, "train_log.jsonl")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            losses = [r["loss"] for r in map(json.loads, filter(str.strip, fh)) if r.get("loss") is not None]
        loss = losses[-1] if losses else loss
    return loss


def adapted_pipeline(args, adapter_dir: str | None):
    import vadapters
    from vadapters.pipelines import load_pipeline

    pipe = load_pipeline(args.pipeline)
    pipe.set_progress_bar_config(disable=True)
    if adapter_dir is not None:
        vadapters.load(pipe, adapter_dir, adapter_name="res")
    return pipe


def arms(args, adapter_dir, judge, config, prompts, labels, sizes, seed, guidance) -> dict[str, Any]:
    """Base (adapter disabled) and ResAdapter on the same pipeline, prompts and noise."""
    import vadapters

    pipe = adapted_pipeline(args, adapter_dir)
    with vadapters.disabled(pipe):
        base = score_arm(pipe, judge, config, prompts, labels, sizes, seed, args, guidance)
    res = score_arm(pipe, judge, config, prompts, labels, sizes, seed, args, guidance)
    return {"base": base, "res_adapter": res}


def ceilings(args, judge, config, prompts_labels, sizes) -> dict[str, dict]:
    """The test scenes themselves (rendered) and through the pipeline's VAE, scored like generated images."""
    import torch

    scenes = base_scenes(args.n, args.seed)
    vae = vae_round_trip(adapted_pipeline(args, None).vae)
    out: dict[str, dict] = {"rendered": {}, "vae": {}}
    for s in sizes:
        images = torch.stack([scenes.render(i, *s)["image"] for i in range(args.n)])
        for name, x in (("rendered", images), ("vae", vae(images))):
            out[name][size_name(s)] = summarise_records(score_images(judge, config, x, prompts_labels[1]))
    return out


def summarise(result: dict) -> dict[str, Any]:
    test = result["test"]
    table: dict[str, Any] = {}
    for s in result["settings"]["sizes"]:
        row = {}
        for arm in ("base", "res_adapter"):
            row[arm] = {
                k: mean_std([test[str(seed)][arm][s][k] for seed in result["settings"]["seeds"]])
                for k in ("both", "shape", "colour", "one_object", "duplicated", "no_object", "both_and_one")
            }
        row["gain_both"] = mean_std(
            [test[str(seed)]["res_adapter"][s]["both"] - test[str(seed)]["base"][s]["both"] for seed in test]
        )
        table[s] = row
    off = [s for s in table if s != size_name(BASE_SIZE)]
    passing = [s for s in off if table[s]["gain_both"]["mean"] >= GATE_POINTS]
    gate = {
        "rule": f"ResAdapter - base >= {GATE_POINTS:.0%} judge accuracy (both) at >= {GATE_SIZES} off-base sizes",
        "sizes_passing": passing,
        "met": len(passing) >= GATE_SIZES,
    }
    return {"table": table, "gate": gate}


def markdown(name: str, r: dict) -> str:
    st, sm = r["settings"], r["summary"]
    lines = [
        f"# {name}",
        "",
        f"`{r['command']}` on {r['machine']}, {r['seconds']} s.",
        "",
        f"**Paper's claim.** {CLAIM}",
        "",
        f"Base: {r['base']} (trained at 32 px only). Judge `{st['judge']}` (non-square images read {FRAMING}); "
        f"object counter `vadapters.metrics.counting` (ground-truth accuracies: `resolution_judges.md`). "
        f"{st['n']} held-out captions (seed {st['seed']}) of the base's distribution, DDIM {st['sample_steps']} steps, "
        f"guidance {r['guidance']['chosen']} (the base's, chosen at 32 px on validation captions among "
        f"{st['guidance']}). Seeds {st['seeds']} (adapter training seed = noise seed; both arms share the noise).",
        "",
        f"ResAdapter: `train_adapter('res_adapter', ...)`, rank {st['rank']}, alpha {st['alpha']}, "
        f"{st['train_steps']} steps at batch {st['batch_size']}, buckets {st['train_resolutions']}, data: the base's "
        f"distribution at those sizes ({st['train_items']} scenes). Learning rate chosen on the validation split: "
        f"**{r['sweep']['chosen']:g}**.",
        "",
        "## Learning-rate sweep (validation captions, seed-0 adapters; judge accuracy, both right, %)",
        "",
        "| lr | " + " | ".join(r["sweep"]["sizes"]) + " | mean off-base | train loss |",
        "|---|" + "---|" * (len(r["sweep"]["sizes"]) + 2),
    ]
    for lr, row in r["sweep"]["rows"].items():
        cells = [pct(row["scores"][s]["both"]) for s in r["sweep"]["sizes"]]
        loss = "n/a" if row["final_loss"] is None else f"{row['final_loss']:.4f}"
        lines.append(f"| {lr} | " + " | ".join(cells) + f" | {pct(row['mean_off_base'])} | {loss} |")
    base_val = r["sweep"]["base"]
    lines.append("| base | " + " | ".join(pct(base_val[s]["both"]) for s in r["sweep"]["sizes"]) + " | | |")
    if r["sweep"]["chosen"] in (min(st["lr_grid"]), max(st["lr_grid"])) and len(st["lr_grid"]) > 1:
        lines += ["", "The chosen rate is at the edge of the grid: a wider grid could move it."]
    lines += [
        "",
        "## Test: judge accuracy and object counts by size (mean +- std over seeds, %)",
        "",
        "| size | judge: base | judge: ResAdapter | gain | one object: base / ResAdapter | duplicated: base / "
        "ResAdapter | no object: base / ResAdapter | right and one: base / ResAdapter | ceiling: rendered / VAE |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s, row in sm["table"].items():
        b, a = row["base"], row["res_adapter"]

        def ms(x):
            return f"{pct(x['mean'])} +- {pct(x['std'])}"

        def pair(k, a=a, b=b):
            return f"{pct(b[k]['mean'])} / {pct(a[k]['mean'])}"

        ceil = f"{pct(r['ceilings']['rendered'][s]['both'])} / {pct(r['ceilings']['vae'][s]['both'])}"
        lines.append(
            f"| {s} | {ms(b['both'])} | {ms(a['both'])} | {ms(row['gain_both'])} | {pair('one_object')} | "
            f"{pair('duplicated')} | {pair('no_object')} | {pair('both_and_one')} | {ceil} |"
        )
    g = sm["gate"]
    lines += [
        "",
        f"**Gate** ({g['rule']}): {'met' if g['met'] else 'NOT met'}; sizes passing: "
        f"{', '.join(g['sizes_passing']) or 'none'}.",
        "",
        "Object counts of the ceilings (rendered / VAE, one object %): "
        + ", ".join(
            f"{s} {pct(r['ceilings']['rendered'][s]['one_object'])} / {pct(r['ceilings']['vae'][s]['one_object'])}"
            for s in sm["table"]
        )
        + ".",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    import torch

    from vadapters.metrics.judges import ShapeColourJudge

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pipeline", default=None, help="the base: a diffusers folder (default: the embedded tiny-sd)")
    p.add_argument("--judge", default="weights/judge-shape-colour-v2")
    p.add_argument("--sizes", default=",".join(size_name(s) for s in SIZES))
    p.add_argument("--train-resolutions", default=TRAIN_RESOLUTIONS)
    p.add_argument("--train-steps", type=int, default=None)
    p.add_argument("--train-items", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=float, default=8.0)
    p.add_argument("--lr-grid", type=float, nargs="+", default=None)
    p.add_argument("--guidance", type=float, nargs="+", default=None)
    p.add_argument("--seeds", type=int, default=None)
    p.add_argument("--n", type=int, default=None, help="test captions")
    p.add_argument("--n-val", type=int, default=None, help="validation captions")
    p.add_argument("--sample-steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=12345, help="test caption seed (validation: + 7919)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--name", default=None)
    p.add_argument("--work", default=None)
    p.add_argument("--out", default="benchmarks/results", help="folder of the result files")
    args = p.parse_args(argv)
    q = args.quick
    args.train_steps = args.train_steps or (4 if q else 1000)
    args.lr_grid = sorted(args.lr_grid or ([1e-3, 3e-3] if q else [3e-4, 1e-3, 3e-3, 1e-2]))
    args.guidance = args.guidance or ([3.0] if q else [1.0, 3.0, 5.0, 7.5])
    args.seeds = args.seeds or (1 if q else 3)
    args.n = args.n or (4 if q else 128)
    args.n_val = args.n_val or (4 if q else 64)
    args.sample_steps = args.sample_steps or (2 if q else 25)
    name = args.name or ("res_adapter_resolution_quick" if q else "res_adapter_resolution")
    args.work = args.work or os.path.join("outputs", "res_adapter_resolution", name)
    torch.set_num_threads(args.threads)
    start = time.time()
    sizes = parse_sizes(args.sizes)
    off_base = [s for s in sizes if tuple(s) != BASE_SIZE]
    judge, config = ShapeColourJudge.load(args.judge)
    val = captions(args.n_val, args.seed + 7919)
    test = captions(args.n, args.seed)

    # Validation: the base's guidance at 32 px, then ResAdapter's learning rate at the off-base sizes.
    base_pipe = adapted_pipeline(args, None)
    by_guidance = {g: score_arm(base_pipe, judge, config, *val, [BASE_SIZE], 0, args, g) for g in args.guidance}
    guidance = max(args.guidance, key=lambda g: by_guidance[g][size_name(BASE_SIZE)]["both"])
    print(f"guidance {guidance} ({ {g: v[size_name(BASE_SIZE)]['both'] for g, v in by_guidance.items()} })")
    sweep_rows, trained = {}, {}
    base_val = score_arm(base_pipe, judge, config, *val, sizes, 0, args, guidance)
    for lr in args.lr_grid:
        adapter, info = train(args, lr, 0)
        trained[(lr, 0)] = info
        scores = score_arm(adapted_pipeline(args, adapter), judge, config, *val, sizes, 0, args, guidance)
        mean_off = sum(scores[size_name(s)]["both"] for s in off_base) / max(1, len(off_base))
        sweep_rows[f"{lr:g}"] = {"scores": scores, "mean_off_base": round(mean_off, 4), **info}
        print(f"lr {lr:g}: off-base judge accuracy {mean_off:.3f}, train loss {info['final_loss']}", flush=True)
    best = max(args.lr_grid, key=lambda lr: (sweep_rows[f"{lr:g}"]["mean_off_base"], -lr))

    results: dict[str, Any] = {"test": {}, "training": {}}
    for seed in range(args.seeds):
        adapter, info = train(args, best, seed)
        results["training"][str(seed)] = info
        results["test"][str(seed)] = arms(args, adapter, judge, config, *test, sizes, seed, guidance)
        print(f"seed {seed}: " + ", ".join(
            f"{size_name(s)} {results['test'][str(seed)]['base'][size_name(s)]['both']:.2f}->"
            f"{results['test'][str(seed)]['res_adapter'][size_name(s)]['both']:.2f}" for s in sizes
        ), flush=True)  # fmt: skip
    settings = {k: v for k, v in vars(args).items() if k not in ("quick",)}
    settings.update(sizes=[size_name(s) for s in sizes], seeds=list(range(args.seeds)))
    result = {
        "name": name,
        "command": command() if argv is None else "main(" + " ".join(argv) + ")",
        "machine": machine(args.threads),
        "base": args.pipeline or "embedded tiny-sd",
        "claim": CLAIM,
        "settings": settings,
        "guidance": {
            "chosen": guidance,
            "validation_both_at_32": {str(g): v[size_name(BASE_SIZE)]["both"] for g, v in by_guidance.items()},
        },
        "sweep": {"chosen": best, "rows": sweep_rows, "base": base_val, "sizes": [size_name(s) for s in sizes]},
        **results,
        "ceilings": ceilings(args, judge, config, test, sizes),
    }
    result["summary"] = summarise(result)
    result["seconds"] = round(time.time() - start, 1)
    write_report(name, result, markdown(name, result), folder=args.out)
    return result


if __name__ == "__main__":
    main()
