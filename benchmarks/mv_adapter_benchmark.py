"""MV-Adapter benchmark on the embedded tiny-sd and the synthetic multi-view objects (issue 8).

1. Cross-view consistency (text-to-multiview): train MV-Adapters with `row` and `full` attention (+ the camera
   encoder) on view sets of training objects; on held-out objects' captions, generate view sets (orthographic,
   elevation 0) with the base model sampling every view independently (adapter disabled, same noise) and with
   each adapter. Metrics: mean pairwise IoU of per-row occupancy across views (view-invariant for these cameras,
   so ground truth scores ~1; pixel sampling of thin parts keeps it slightly below), and the spread of the
   per-view mean object colour (an identity proxy: one object should have one colour in every view).
   Also the held-out denoising loss of each adapter vs the base on the same noise: the direct check that the
   adapter uses the other views at all, before sampling noise enters.
2. Image-to-multiview: an adapter with the reference branch, trained with view 0 as the reference; on held-out
   objects, PSNR of views 1..V-1 against the ground-truth renders, vs copying the reference into every view and
   vs the base model without adapter.
3. Cost per denoising step (one UNet forward, batch = views, CFG off) vs number of views for base, row and full.

The base: `load_pipeline(None)` (the embedded tiny-sd), first fine-tuned on single views of the training objects
(--pretrain-steps, UNet + text encoder, full fine-tune), so the adapters start from a model that draws one object
on an empty grey ground, as MV-Adapter's base models draw one object on white. The embedded tiny-sd alone draws
full-frame scenes, on which the row-occupancy metric saturates for every arm (the 2026-12-06 runs
`mv_adapter_benchmark_{16,32}px`). Honest caveat: at 32 px and CPU budgets the absolute quality is low; compare
the rows of one table, not with the paper.

Usage:
    python benchmarks/mv_adapter_benchmark.py --quick   # ~2 minutes on 2 CPU cores (1 seed, few steps)
    python benchmarks/mv_adapter_benchmark.py           # full: 3 seeds

Writes benchmarks/results/mv_adapter_benchmark[_quick].json and .md (command, seeds, machine, torch version).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VADAPTERS_NO_PROGRESS", "1")

AZIMUTHS = (0.0, 90.0, 180.0, 270.0)
GALLERY = 3  # held-out objects shown in the picture (first seed)
# Occupancy: pixels farther than THRESHOLD (any channel) from each view's own border colour. The renders' ground is
# flat grey, but a generator's may be tinted and grainy: against fixed grey every row of such a view counts as
# occupied and the row IoU saturates (the 2026-12-06 runs). Ground truth scores ~1 either way.
BACKGROUND, THRESHOLD = "border", 0.3
GUIDANCE = 3.0  # the scale tiny-sd's quality is measured at (benchmarks/results/tiny_sd_quality.md)


class SingleViews:
    """Single random views of the multi-view objects, as a `DiffusionAdapterRecipe` source (base pretraining)."""

    def __init__(self, source) -> None:
        self.source, self.views = source, source.num_views

    def __len__(self) -> int:
        return len(self.source) * self.views

    def caption(self, index: int) -> str:
        return self.source.caption(index // self.views)

    def load(self, index: int, height: int, width: int) -> dict[str, Any]:
        item = self.source.load(index // self.views, height, width)
        return {"image": item["images"][index % self.views], "caption": item["caption"]}


def pretrain_base(pipe, source, steps: int, size: int, seed: int, out: str, lr: float = 1e-3) -> dict[str, Any]:
    from vadapters.train import Trainer, TrainingArguments
    from vadapters.train.diffusion import DiffusionAdapterRecipe

    recipe = DiffusionAdapterRecipe(pipe, None, SingleViews(source), str(size), 16, seed=seed)
    args = TrainingArguments(output_dir=out, max_steps=steps, learning_rate=lr, batch_size=16, seed=seed,
                             checkpoint_every=steps, resume=False)  # fmt: skip
    summary = Trainer(recipe, args).train()
    pipe.unet.requires_grad_(False)
    pipe.text_encoder.requires_grad_(False)
    return summary


def colour_spread(images, threshold: float = THRESHOLD) -> float:
    """Mean pairwise L2 distance between the views' mean object colours (views without object pixels skipped)."""
    from vadapters.methods.mv_adapter.consistency import occupancy

    masks = occupancy(images, BACKGROUND, threshold)
    colours = [images[v][:, masks[v]].mean(dim=1) for v in range(images.shape[0]) if masks[v].any()]
    pairs = list(itertools.combinations(colours, 2))
    return float(sum((a - b).norm().item() for a, b in pairs) / len(pairs)) if pairs else float("nan")


def train(pipe, out, *, topology, use_ref, steps, size, seed, num_items):
    from vadapters.train import train_adapter

    return train_adapter(
        "mv_adapter", base=pipe, output_dir=out, num_items=num_items, num_views=len(AZIMUTHS), resolutions=str(size),
        steps=steps, batch_size=2, learning_rate=1e-3, seed=seed, checkpoint_every=steps, resume=False,
        config_overrides={"topology": topology, "use_ref": use_ref},
    )  # fmt: skip


def heldout_loss(pipe, base, held_out, size: int, repeats: int = 3) -> dict[str, float]:
    """Held-out view-set denoising loss (no dropout; the same noise and per-object timesteps for both) with the
    trained adapter and with it disabled: does the adapter use the other views (and the reference) at all?"""
    import torch

    import vadapters
    from vadapters.train.recipes.mv_adapter import MVAdapterRecipe

    probe = copy.deepcopy(base)  # the recipe injects a fresh adapter; the trained one is then copied in
    recipe = MVAdapterRecipe(probe, vadapters.get_adapter_config(pipe, "mv_adapter"), held_out, str(size), 4,
                             caption_dropout=0, condition_dropout=0, reference_dropout=0, seed=7)  # fmt: skip
    probe.unet.load_state_dict(pipe.unet.state_dict())
    out = {}
    for name, ctx in (("adapter", contextlib.nullcontext()), ("base", vadapters.disabled(probe))):
        recipe.generator.manual_seed(7)
        losses = []
        with ctx, torch.no_grad():
            for _ in range(repeats):
                for i in range(0, len(held_out) - 3, 4):
                    batch = recipe.collate([recipe.dataset[(j, size, size)] for j in range(i, i + 4)])
                    losses.append(recipe.loss(batch, 0).item())
        out[name] = statistics.mean(losses)
    return out


def mv_pipe(pipe):
    from vadapters.pipelines.multiview import MultiViewPipeline

    components = {k: v for k, v in pipe.components.items() if k != "image_encoder"}
    mv = MultiViewPipeline(**components, requires_safety_checker=False)
    mv.set_progress_bar_config(disable=True)
    return mv


def generate(pipe, caption, size, seed, steps, **kwargs):
    import torch

    gen = torch.Generator().manual_seed(seed)
    return pipe(caption, azimuths=AZIMUTHS, height=size, width=size, num_inference_steps=steps, generator=gen,
                guidance_scale=GUIDANCE, output_type="pt", **kwargs).images  # fmt: skip


def consistency_part(base, held_out, opts, seed, workdir, gallery=None) -> dict[str, Any]:
    import vadapters
    from vadapters.methods.mv_adapter.consistency import occupied_row_fraction, row_occupancy_iou

    size, results = opts["size"], {}
    gt = [(held_out.load(i, size, size)["images"] + 1) / 2 for i in range(opts["eval_objects"])]
    if gallery is not None:
        gallery["ground truth"] = gt[:GALLERY]
    results["ground_truth"] = {
        "row_iou": statistics.mean(row_occupancy_iou(g, BACKGROUND, THRESHOLD) for g in gt),
        "rows_occupied": statistics.mean(occupied_row_fraction(g, BACKGROUND, THRESHOLD) for g in gt),
        "colour_spread": statistics.mean(colour_spread(g) for g in gt),
    }
    for topology in ("row", "full"):
        pipe = copy.deepcopy(base)
        summary = train(pipe, os.path.join(workdir, f"{topology}-{seed}"), topology=topology, use_ref=False,
                        steps=opts["steps"], size=size, seed=seed, num_items=opts["train_objects"])  # fmt: skip
        loss = heldout_loss(pipe, base, held_out, size)
        results.setdefault("heldout_loss_base", {"loss": loss["base"]})
        results[f"heldout_loss_{topology}"] = {"loss": loss["adapter"]}
        mv = mv_pipe(pipe)
        variants = {"base_independent": vadapters.disabled(mv), f"mv_{topology}": contextlib.nullcontext()}
        for name, ctx in variants.items():
            if name in results:
                continue
            ious, spreads, rows = [], [], []
            with ctx:
                for i in range(opts["eval_objects"]):
                    images = generate(mv, held_out.caption(i), size, 1000 * seed + i, opts["sample_steps"])
                    ious.append(row_occupancy_iou(images, BACKGROUND, THRESHOLD))
                    rows.append(occupied_row_fraction(images, BACKGROUND, THRESHOLD))
                    spreads.append(colour_spread(images))
                    if gallery is not None and i < GALLERY:
                        gallery.setdefault(name, []).append(images)
            results[name] = {
                "row_iou": statistics.mean(ious),
                "rows_occupied": statistics.mean(rows),
                "colour_spread": _nanmean(spreads),
            }
        results[f"mv_{topology}"]["final_loss"] = summary["final_loss"]
    return results


def image_to_multiview_part(base, held_out, opts, seed, workdir, gallery=None) -> dict[str, Any]:
    import vadapters
    from vadapters.methods.mv_adapter.consistency import psnr

    size = opts["size"]
    pipe = copy.deepcopy(base)
    train(pipe, os.path.join(workdir, f"ref-{seed}"), topology="row", use_ref=True, steps=opts["steps"], size=size,
          seed=seed, num_items=opts["train_objects"])  # fmt: skip
    loss = heldout_loss(pipe, base, held_out, size)
    mv = mv_pipe(pipe)
    scores: dict[str, list[float]] = {"mv_adapter_ref": [], "copy_reference": [], "base_no_adapter": []}
    for i in range(opts["eval_objects"]):
        truth = (held_out.load(i, size, size)["images"] + 1) / 2
        reference, targets = truth[:1], truth[1:]
        images = generate(
            mv, held_out.caption(i), size, 1000 * seed + i, opts["sample_steps"], reference_image=reference
        )
        scores["mv_adapter_ref"].append(psnr(images[1:], targets))
        if gallery is not None and i < GALLERY:
            gallery.setdefault("image-to-multiview (view 0 given)", []).append(images)
        scores["copy_reference"].append(psnr(reference.expand_as(targets), targets))
        with vadapters.disabled(mv):
            images = generate(mv, held_out.caption(i), size, 1000 * seed + i, opts["sample_steps"])
        scores["base_no_adapter"].append(psnr(images[1:], targets))
    return {**{k: statistics.mean(v) for k, v in scores.items()}, "heldout_loss_ref": loss["adapter"]}


def cost_part(base, views_list, latent, repeats) -> dict[str, Any]:
    import torch

    import vadapters
    from vadapters.methods.mv_adapter import MVAdapterConfig, multiview_state

    rows = {}
    for variant in ("base", "row", "full"):
        unet = copy.deepcopy(base.unet)
        if variant != "base":
            vadapters.inject(unet, MVAdapterConfig(num_views=2, topology=variant))
        for views in views_list:
            x = torch.randn(views, 4, latent, latent)
            emb = torch.randn(views, 7, unet.config.cross_attention_dim)
            ctx = multiview_state(unet, num_views=views) if variant != "base" else contextlib.nullcontext()
            times = []
            with ctx, torch.no_grad():
                unet(x, torch.tensor(500), encoder_hidden_states=emb)  # warm-up
                for _ in range(repeats):
                    start = time.perf_counter()
                    unet(x, torch.tensor(500), encoder_hidden_states=emb)
                    times.append(time.perf_counter() - start)
            rows.setdefault(variant, {})[views] = statistics.median(times) * 1000
    return rows


def _nanmean(values):
    values = [v for v in values if v == v]
    return statistics.mean(values) if values else float("nan")


def _agg(per_seed: list[dict]) -> dict:
    """Mean and std over seeds of every numeric leaf."""
    out = {}
    for key in per_seed[0]:
        if isinstance(per_seed[0][key], dict):
            out[key] = _agg([s[key] for s in per_seed])
        else:
            vals = [s[key] for s in per_seed]
            out[key] = {"mean": statistics.mean(vals), "std": statistics.pstdev(vals) if len(vals) > 1 else 0.0}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, few steps (about 2 minutes)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2; quick: 0)")
    parser.add_argument("--steps", type=int, default=None, help="adapter training steps (default 600; quick 15)")
    parser.add_argument(
        "--pretrain-steps",
        type=int,
        default=None,
        help="fine-tune the base on single views first (default 1500; quick 20; 0: off)",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="image size in px (default: 32, tiny-sd's training size, with the embedded tiny-sd; else 16)",
    )
    parser.add_argument(
        "--base-cache",
        default=None,
        help="folder for the fine-tuned base: loaded if it holds one (no fine-tuning), else written after it",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--name", default=None, help="results file stem (default mv_adapter_benchmark[_quick])")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args(argv)

    import torch

    from vadapters.models.weights import read_manifest
    from vadapters.pipelines import load_pipeline
    from vadapters.train.recipes.mv_adapter import MultiViewSource

    quick = args.quick
    if args.threads:
        torch.set_num_threads(args.threads)
    trained_default = "tiny-sd" in read_manifest()["entries"]
    seeds = [int(s) for s in (args.seeds or ("0" if quick else "0,1,2")).split(",")]
    opts = {
        "size": args.size or (32 if trained_default and not quick else 16),
        "steps": args.steps or (15 if quick else 600),
        "pretrain_steps": args.pretrain_steps if args.pretrain_steps is not None else (20 if quick else 1500),
        "train_objects": 16 if quick else 400,
        "eval_objects": 2 if quick else 16,
        "sample_steps": 5 if quick else 25,
        "guidance_scale": GUIDANCE,
        "occupancy": {"background": BACKGROUND, "threshold": THRESHOLD},
    }
    workdir = tempfile.mkdtemp(prefix="mv_adapter_benchmark_")  # adapters and checkpoints; removed at the end
    start = time.time()
    torch.manual_seed(0)
    base = load_pipeline(None)
    train_source = MultiViewSource(opts["train_objects"], seed=0, num_views=len(AZIMUTHS))
    held_out = MultiViewSource(opts["eval_objects"], seed=12345, num_views=len(AZIMUTHS))
    pretrain = None
    cached = bool(args.base_cache) and os.path.isfile(os.path.join(args.base_cache, "model_index.json"))
    if cached:
        base = load_pipeline(args.base_cache)
        with open(os.path.join(args.base_cache, "pretrain.json"), encoding="utf-8") as fh:
            pretrain = json.load(fh)
    elif opts["pretrain_steps"] > 0:  # a trained default is fine-tuned more gently than a random UNet is trained
        pretrain = pretrain_base(base, train_source, opts["pretrain_steps"], opts["size"], 0,
                                 os.path.join(workdir, "base"), lr=3e-4 if trained_default else 1e-3)  # fmt: skip
        pretrain = {"final_loss": pretrain["final_loss"], "steps": opts["pretrain_steps"]}
        if args.base_cache:
            base.save_pretrained(args.base_cache)
            with open(os.path.join(args.base_cache, "pretrain.json"), "w", encoding="utf-8") as fh:
                json.dump(pretrain, fh)
    base.set_progress_bar_config(disable=True)
    gallery: dict[str, list] = {}
    consistency = [consistency_part(base, held_out, opts, s, workdir, gallery if k == 0 else None)
                   for k, s in enumerate(seeds)]  # fmt: skip
    i2mv = [image_to_multiview_part(base, held_out, opts, s, workdir, gallery if k == 0 else None)
            for k, s in enumerate(seeds)]  # fmt: skip
    cost = cost_part(base, [2, 4] if quick else [2, 4, 6, 8], 16 if quick else 32, 2 if quick else 5)
    result = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "quick": quick,
        "seeds": seeds,
        "options": opts,
        "base": ("embedded tiny-sd" if trained_default else "random tiny architecture")
        + (f", fine-tuned {pretrain['steps']} steps on single views" if pretrain else ""),
        "pretrain_final_loss": pretrain["final_loss"] if pretrain else None,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "torch": torch.__version__,
        "seconds": round(time.time() - start, 1),
        "consistency": _agg(consistency),
        "image_to_multiview_psnr": _agg(i2mv),
        "ms_per_unet_step": cost,
    }
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, args.name or ("mv_adapter_benchmark" + ("_quick" if quick else "")))
    with open(stem + ".json", "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
    save_gallery(gallery, stem + ".png")
    with open(stem + ".md", "w", encoding="utf-8") as fh:
        fh.write(render_markdown(result) + f"\n![views]({os.path.basename(stem)}.png)\n")
    print(render_markdown(result))
    return 0


def save_gallery(gallery: dict[str, list], path: str, scale: int = 4) -> None:
    """One row per variant (labelled), the views of the first held-out objects side by side, upscaled."""
    import torch
    import torch.nn.functional as F
    from PIL import Image, ImageDraw

    rows = []
    for name, sets in gallery.items():
        views = torch.cat([torch.cat(list(v.float().clamp(0, 1)), dim=2) for v in sets], dim=2)  # [3, H, W*V*n]
        views = F.interpolate(views[None], scale_factor=scale, mode="nearest")[0]
        rows.append((name, (views.permute(1, 2, 0).numpy() * 255).round().astype("uint8")))
    label_w, height = 220, rows[0][1].shape[0]
    canvas = Image.new("RGB", (label_w + rows[0][1].shape[1], (height + 4) * len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (name, pixels) in enumerate(rows):
        canvas.paste(Image.fromarray(pixels), (label_w, k * (height + 4)))
        draw.text((6, k * (height + 4) + height // 2 - 6), name, fill="black")
    canvas.save(path)


def render_markdown(r: dict) -> str:
    fmt = lambda d: f"{d['mean']:.3f} ± {d['std']:.3f}"  # noqa: E731
    lines = [
        "# MV-Adapter benchmark" + (" (quick: a smoke test, not results)" if r["quick"] else ""),
        "",
        f"Command: `{r['command']}`; seeds {r['seeds']}; base: {r['base']}; torch {r['torch']}; "
        f"{r['machine']['platform']}, {r['machine']['cpus']} CPUs; {r['seconds']} s.",
        f"Options: {r['options']}",
        "",
        "## Cross-view consistency (held-out captions, 4 orthographic views at elevation 0)",
        "",
        "A pixel is 'occupied' when it differs from its view's border colour by more than the threshold (options).",
        "Row IoU is trivially 1 when every row is 'occupied' (noise, or an object filling the frame): read it",
        "together with the occupied-row share, which should be near ground truth. Colour spread is the mean",
        "pairwise distance of the views' mean object colours; multi-part objects show different parts per view,",
        "so ground truth is not 0 - closer to ground truth is better.",
        "",
        "| variant | row-occupancy IoU | occupied-row share | colour spread |",
        "|---|---|---|---|",
    ]
    for name, row in r["consistency"].items():
        if name.startswith("heldout_loss"):
            continue
        cells = (fmt(row["row_iou"]), fmt(row["rows_occupied"]), fmt(row["colour_spread"]))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    losses = {k.removeprefix("heldout_loss_"): v["loss"] for k, v in r["consistency"].items() if "heldout" in k}
    if "heldout_loss_ref" in r["image_to_multiview_psnr"]:
        losses["row + reference"] = r["image_to_multiview_psnr"]["heldout_loss_ref"]
    if losses:
        lines += ["", "## Held-out denoising loss (held-out view sets, the same noise and timesteps, no dropout)", "",
                  "Lower than the base means the adapter uses the other views (and the reference) to denoise.", "",
                  "| variant | MSE |", "|---|---|"]  # fmt: skip
        lines += [f"| {k} | {d['mean']:.5f} ± {d['std']:.5f} |" for k, d in losses.items()]
    lines += ["", "## Image-to-multiview PSNR (dB) of views 1-3 vs ground truth, view 0 as reference", "",
              "| variant | PSNR |", "|---|---|"]  # fmt: skip
    lines += [f"| {k} | {fmt(v)} |" for k, v in r["image_to_multiview_psnr"].items() if not k.startswith("heldout")]
    cost = r["ms_per_unet_step"]
    views = sorted({v for row in cost.values() for v in row}, key=int)
    lines += ["", "## Cost: ms per UNet forward (batch = views)", "",
              "| variant | " + " | ".join(f"{v} views" for v in views) + " |",
              "|---|" + "---|" * len(views)]  # fmt: skip
    lines += [f"| {k} | " + " | ".join(f"{row[v]:.1f}" for v in views) + " |" for k, row in cost.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
