"""MV-Adapter benchmark, fair form (issues 8 and 19): cross-view consistency of MV-Adapter vs independent views.

Arms, all scored through one path: every generated view set and the ground truth's VAE round trip leave through the
same VAE decoder, so `ground_truth_vae` is the ceiling a generator can reach (the plain renders are shown too).
- `base_independent`: the base samples each view independently (same noise per object as every arm), with its own
  schedule; `base_independent_shifted`: the same with the shifted-SNR schedule the adapters sample with. The gate
  is taken against the better of the two.
- `mv_row`, `mv_full`: MV-Adapters trained with the recipe (`--recipe official`, the default: shifted-SNR training
  noise, Min-SNR gamma 5, AdamW weight decay 0.01 with linear warm-up, camera maps kept when the prompt is dropped;
  `legacy`: the recipe before issue 19), sampled with the schedule they were trained on.
- Image-to-multiview (`mv_ref`): row attention + reference branch, conditioned on a separately rendered view (a
  random camera, not one of the targets); PSNR of all views against the ground truth, vs the base without adapter,
  copying the reference into every view (pixels and through the VAE) and the VAE ceiling.
Metrics: row-occupancy IoU across views (view-invariant for orthographic cameras at elevation 0: a 3D point keeps
its row), the occupied-row share (read with the IoU: noise fills every row) and the spread of the views' mean
object colour. The learning rate of each trained arm is chosen on a validation split (its own objects; a small
sweep on the first seed, reported) by that arm's gated metric (row IoU; PSNR for `mv_ref`); then every seed trains
at that rate and is scored on the held-out test objects. Gate (issue 19): MV-Adapter's row IoU above independent
views by >= 3 std (`_fairness.gate`).

The base (`--base`, default the embedded tiny-sd; the proof-world v2 pipeline folder once it exists) may first be
fine-tuned on single views of the training objects (`--pretrain-steps`), so that it draws one object on empty
ground as MV-Adapter's bases draw one object on white.

Usage:
    python benchmarks/mv_adapter_benchmark.py --quick       # smoke test (a few minutes on 2 CPU cores)
    python benchmarks/mv_adapter_benchmark.py --base PIPELINE_FOLDER --pretrain-steps 0   # full: 3 seeds

Writes benchmarks/results/mv_adapter_benchmark[_quick].json, .md and .png (command, seeds, machine, torch).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VADAPTERS_NO_PROGRESS", "1")

import _fairness as fair  # noqa: E402
import _mv_adapter_report as report  # noqa: E402

AZIMUTHS = (0.0, 90.0, 180.0, 270.0)
GALLERY = 3  # test objects shown in the picture (first seed)
# Occupancy: pixels farther than THRESHOLD (any channel) from each view's own border colour (a generator's ground
# may be tinted and grainy; against fixed grey every row would count as occupied).
BACKGROUND, THRESHOLD = "border", 0.3
GUIDANCE = 3.0  # the scale tiny-sd's quality is measured at (benchmarks/results/tiny_sd_quality.md)
VAL_SEED, TEST_SEED, REFERENCES = 777, 12345, 5
ARMS = {"mv_row": ("row", False), "mv_full": ("full", False), "mv_ref": ("row", True)}


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


def pretrain_base(pipe, source, steps: int, size: int, out: str, lr: float) -> dict[str, Any]:
    from vadapters.train import Trainer, TrainingArguments
    from vadapters.train.diffusion import DiffusionAdapterRecipe

    recipe = DiffusionAdapterRecipe(pipe, None, SingleViews(source), str(size), 16, seed=0)
    args = TrainingArguments(output_dir=out, max_steps=steps, learning_rate=lr, batch_size=16, seed=0,
                             checkpoint_every=steps, resume=False)  # fmt: skip
    summary = Trainer(recipe, args).train()
    pipe.unet.requires_grad_(False)
    pipe.text_encoder.requires_grad_(False)
    return {"final_loss": summary["final_loss"], "steps": steps, "lr": lr}


# ----------------------------------------------------------------------------------------------------- scoring
def colour_spread(images) -> float:
    """Mean pairwise L2 distance between the views' mean object colours (views without object pixels skipped)."""
    from vadapters.methods.mv_adapter.consistency import occupancy

    masks = occupancy(images, BACKGROUND, THRESHOLD)
    colours = [images[v][:, masks[v]].mean(dim=1) for v in range(images.shape[0]) if masks[v].any()]
    pairs = list(itertools.combinations(colours, 2))
    return float(sum((a - b).norm().item() for a, b in pairs) / len(pairs)) if pairs else float("nan")


def view_scores(images) -> dict[str, float]:
    from vadapters.methods.mv_adapter.consistency import occupied_row_fraction, row_occupancy_iou

    return {
        "row_iou": row_occupancy_iou(images, BACKGROUND, THRESHOLD, strict=True),
        "row_iou_lenient": row_occupancy_iou(images, BACKGROUND, THRESHOLD),
        "rows_occupied": occupied_row_fraction(images, BACKGROUND, THRESHOLD),
        "colour_spread": colour_spread(images),
    }


def mean_scores(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: fair.nanmean([r[k] for r in rows]) for k in rows[0]}


def vae_round_trip(pipe, images):
    """Images `[N, 3, H, W]` in [0, 1] through the pipeline's VAE (posterior mode), back in [0, 1]."""
    import torch

    from vadapters.train.base_vae import round_trip

    with torch.no_grad():
        return (round_trip(pipe.vae, images * 2 - 1) + 1) / 2


def truth(source, index: int, size: int):
    item = source.load(index, size, size)
    return (item["images"] + 1) / 2, (item["references"][0:1] + 1) / 2, item["caption"]


# -------------------------------------------------------------------------------------------------- sampling
def sampler(pipe, scheduler):
    """A `MultiViewPipeline` over `pipe` (which holds an MV-Adapter) sampling with `scheduler`."""
    from vadapters.pipelines.multiview import MultiViewPipeline

    components = {k: v for k, v in pipe.components.items() if k != "image_encoder"}
    mv = MultiViewPipeline(**{**components, "scheduler": copy.deepcopy(scheduler)}, requires_safety_checker=False)
    mv.set_progress_bar_config(disable=True)
    return mv


def independent(base, scheduler):
    """The base drawing each view independently (one image per view, the same noise as the multi-view pipeline)."""
    from diffusers import StableDiffusionPipeline

    components = {k: v for k, v in base.components.items() if k != "image_encoder"}
    pipe = StableDiffusionPipeline(
        **{**components, "scheduler": copy.deepcopy(scheduler)}, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, caption: str, size: int, seed: int, steps: int, multiview: bool = True, **kwargs):
    import torch

    gen = torch.Generator().manual_seed(seed)
    options = {"azimuths": AZIMUTHS} if multiview else {"num_images_per_prompt": len(AZIMUTHS)}
    return pipe(caption, height=size, width=size, num_inference_steps=steps, generator=gen,
                guidance_scale=GUIDANCE, output_type="pt", **options, **kwargs).images  # fmt: skip


def consistency(pipe, source, opts, seed: int, multiview: bool = True, gallery: list | None = None) -> dict:
    rows = []
    for i in range(len(source)):
        _, _, caption = truth(source, i, opts["size"])
        images = generate(pipe, caption, opts["size"], 1000 * seed + i, opts["sample_steps"], multiview)
        rows.append(view_scores(images))
        if gallery is not None and i < GALLERY:
            gallery.append(images)
    return mean_scores(rows)


def image_to_multiview(pipe, source, opts, seed: int, use_reference: bool, gallery: list | None = None) -> float:
    """Mean PSNR (dB) of the generated views against every ground-truth view; the reference is a separate view."""
    from vadapters.methods.mv_adapter.consistency import psnr

    scores = []
    for i in range(len(source)):
        views, reference, caption = truth(source, i, opts["size"])
        kwargs = {"reference_image": reference} if use_reference else {}
        multiview = use_reference
        images = generate(pipe, caption, opts["size"], 1000 * seed + i, opts["sample_steps"], multiview, **kwargs)
        scores.append(psnr(images, views))
        if gallery is not None and i < GALLERY:
            gallery.append(images)
    return fair.nanmean(scores)


# -------------------------------------------------------------------------------------------------- training
def train_arm(base, arm: str, lr: float, seed: int, opts: dict, workdir: str):
    from vadapters.train import train_adapter
    from vadapters.train.recipes.mv_adapter import LEGACY_OPTIONS

    topology, use_ref = ARMS[arm]
    legacy = opts["recipe"] == "legacy"
    extra = {**LEGACY_OPTIONS, "lr_warmup_steps": 0, "weight_decay": 0.0} if legacy else {}
    extra.setdefault("lr_warmup_steps", opts["warmup"])
    pipe = copy.deepcopy(base)
    summary = train_adapter(
        "mv_adapter", base=pipe, output_dir=os.path.join(workdir, f"{arm}-{lr:g}-{seed}"), num_items=opts["train_objects"],
        num_views=len(AZIMUTHS), resolutions=str(opts["size"]), steps=opts["steps"], batch_size=2, learning_rate=lr,
        seed=seed, checkpoint_every=opts["steps"], resume=False, config_overrides={"topology": topology, "use_ref": use_ref},
        **extra,
    )  # fmt: skip
    pipe.unet.requires_grad_(False)
    return pipe, {"final_loss": summary["final_loss"], "seconds": summary["seconds"]}


def arm_score(arm: str, pipe, source, opts, seed: int, gallery: list | None = None) -> dict:
    mv = sampler(pipe, opts["adapter_scheduler"])
    if ARMS[arm][1]:
        return {"psnr": image_to_multiview(mv, source, opts, seed, True, gallery)}
    return consistency(mv, source, opts, seed, True, gallery)


def criterion(arm: str, scores: dict) -> float:
    return scores["psnr"] if ARMS[arm][1] else scores["row_iou"]


def heldout_loss(pipe, base, source, opts) -> dict[str, float]:
    """Held-out denoising MSE (plain, no dropout; the same noise, timesteps and training schedule) with the trained
    adapter and with it disabled: does the adapter use the other views (and the reference) at all?"""
    import torch

    import vadapters
    from vadapters.train.recipes.mv_adapter import LEGACY_OPTIONS, MVAdapterRecipe

    options = dict(LEGACY_OPTIONS) if opts["recipe"] == "legacy" else {}
    options.update(caption_dropout=0, condition_dropout=0, reference_dropout=0, snr_gamma=None, seed=7)
    config = vadapters.get_adapter_config(pipe, "mv_adapter")
    probe = copy.deepcopy(base)  # the recipe injects a fresh adapter; the trained values are then copied in
    recipe = MVAdapterRecipe(probe, config, source, str(opts["size"]), 2, **options)
    probe.unet.load_state_dict(pipe.unet.state_dict())
    out = {}
    for name, ctx in (("adapter", contextlib.nullcontext()), ("base", vadapters.disabled(probe))):
        recipe.generator.manual_seed(7)
        losses = []
        with ctx, torch.no_grad():
            for i in range(0, len(source) - 1, 2):
                batch = recipe.collate([recipe.dataset[(j, opts["size"], opts["size"])] for j in (i, i + 1)])
                losses.append(float(recipe.loss(batch, 0)))
        out[name] = fair.nanmean(losses)
    return out


# ------------------------------------------------------------------------------------------------------- main
def run(base, sources: dict, opts: dict, seeds: list[int], workdir: str) -> dict[str, Any]:
    """The sweep, then per seed every arm on the test objects."""
    gallery: dict[str, list] = {}
    val, test = sources["val"], sources["test"]
    sweeps, trained = {}, {}
    for arm in opts["arms"]:  # learning rate per arm on the validation objects, first seed
        pipes = {}

        def run_lr(lr, arm=arm, pipes=pipes):
            pipes[lr] = train_arm(base, arm, lr, seeds[0], opts, workdir)
            return criterion(arm, arm_score(arm, pipes[lr][0], val, opts, seeds[0]))

        sweeps[arm] = fair.sweep(opts["lrs"], run_lr)
        trained[arm] = pipes[sweeps[arm]["chosen"]]
    ground = [truth(test, i, opts["size"]) for i in range(len(test))]
    gallery["ground truth"] = [g[0] for g in ground[:GALLERY]]
    vae_views = [vae_round_trip(base, g[0]) for g in ground]
    gallery["ground truth through the VAE"] = vae_views[:GALLERY]
    from vadapters.methods.mv_adapter.consistency import psnr

    fixed = {
        "ground_truth": mean_scores([view_scores(g[0]) for g in ground]),
        "ground_truth_vae": mean_scores([view_scores(v) for v in vae_views]),
    }
    i2mv_fixed = {
        "ground_truth_vae": fair.nanmean([psnr(v, g[0]) for v, g in zip(vae_views, ground)]),
        "copy_reference": fair.nanmean([psnr(g[1].expand_as(g[0]), g[0]) for g in ground]),
        "copy_reference_vae": fair.nanmean([psnr(vae_round_trip(base, g[1]).expand_as(g[0]), g[0]) for g in ground]),
    }
    per_seed = []
    for k, seed in enumerate(seeds):
        show = k == 0
        t2mv = dict(fixed)
        for name, scheduler in (
            ("base_independent", opts["base_scheduler"]),
            ("base_independent_shifted", opts["shifted_scheduler"]),
        ):
            pipe = independent(base, scheduler)
            t2mv[name] = consistency(pipe, test, opts, seed, False, gallery.setdefault(name, []) if show else None)
        i2mv = dict(i2mv_fixed)
        i2mv["base_no_adapter"] = image_to_multiview(
            independent(base, opts["base_scheduler"]), test, opts, seed, False
        )
        losses, training = {}, {}
        for arm in opts["arms"]:
            pipe, summary = (
                trained[arm] if k == 0 else train_arm(base, arm, sweeps[arm]["chosen"], seed, opts, workdir)
            )
            scores = arm_score(arm, pipe, test, opts, seed, gallery.setdefault(arm, []) if show else None)
            if ARMS[arm][1]:
                i2mv[arm] = scores["psnr"]
            else:
                t2mv[arm] = scores
            losses[arm] = heldout_loss(pipe, base, test, opts)
            training[arm] = summary
        per_seed.append({"consistency": t2mv, "image_to_multiview_psnr": i2mv, "heldout_loss": losses,
                         "training": training})  # fmt: skip
    gates = {}
    for arm in (a for a in opts["arms"] if not ARMS[a][1]):
        values = [s["consistency"][arm]["row_iou"] for s in per_seed]
        bases = {
            n: [s["consistency"][n]["row_iou"] for s in per_seed]
            for n in ("base_independent", "base_independent_shifted")
        }
        best = max(bases, key=lambda n: fair.nanmean(bases[n]))
        gates[arm] = {"baseline": best, **fair.gate(values, bases[best])}
    return {"sweeps": sweeps, "per_seed": per_seed, "gates": gates, "gallery": gallery}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, tiny budgets: a smoke test, not results")
    parser.add_argument("--base", default=None, help="Stable Diffusion pipeline folder (default: embedded tiny-sd)")
    parser.add_argument("--recipe", choices=("official", "legacy"), default="official", help="MV-Adapter recipe")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2; quick: 0)")
    parser.add_argument(
        "--lrs", default=None, help="learning rates swept per arm (default 5e-5,2e-4,1e-3; quick 5e-5,1e-3)"
    )
    parser.add_argument("--warmup", type=int, default=None, help="warm-up steps (default steps // 10; official 2000)")
    parser.add_argument(
        "--arms", default=None, help="trained arms (default mv_row,mv_full,mv_ref; quick mv_row,mv_ref)"
    )
    parser.add_argument("--steps", type=int, default=None, help="adapter training steps (default 600; quick 4)")
    parser.add_argument("--pretrain-steps", type=int, default=None, help="single-view fine-tune of the base first "
                        "(default 1500; quick 0; 0: off)")  # fmt: skip
    parser.add_argument("--size", type=int, default=None, help="image size in px (default 32; quick 16)")
    parser.add_argument("--objects", default=None, help="train,val,test objects (default 400,8,16; quick 8,2,2)")
    parser.add_argument("--sample-steps", type=int, default=None, help="sampling steps (default 25; quick 3)")
    parser.add_argument("--base-cache", default=None, help="folder for the fine-tuned base (loaded if present)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--name", default=None, help="results file stem (default mv_adapter_benchmark[_quick])")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args(argv)

    import torch

    from vadapters.core.schedules import ShiftSNRScheduler
    from vadapters.pipelines import load_pipeline
    from vadapters.train.recipes.mv_adapter import MultiViewSource

    quick = args.quick
    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = [int(s) for s in (args.seeds or ("0" if quick else "0,1,2")).split(",")]
    counts = [int(x) for x in (args.objects or ("8,2,2" if quick else "400,8,16")).split(",")]
    steps = args.steps or (4 if quick else 600)
    opts = {
        "recipe": args.recipe,
        "size": args.size or (16 if quick else 32),
        "steps": steps,
        "warmup": steps // 10 if args.warmup is None else args.warmup,
        "lrs": fair.parse_floats(args.lrs or ("5e-5,1e-3" if quick else "5e-5,2e-4,1e-3")),
        "arms": (args.arms or ("mv_row,mv_ref" if quick else "mv_row,mv_full,mv_ref")).split(","),
        "pretrain_steps": args.pretrain_steps if args.pretrain_steps is not None else (0 if quick else 1500),
        "train_objects": counts[0], "val_objects": counts[1], "test_objects": counts[2],
        "sample_steps": args.sample_steps or (3 if quick else 25),
        "guidance_scale": GUIDANCE,
        "occupancy": {"background": BACKGROUND, "threshold": THRESHOLD},
    }  # fmt: skip
    unknown = set(opts["arms"]) - set(ARMS)
    if unknown:
        raise SystemExit(f"--arms: unknown {sorted(unknown)}; choose from {sorted(ARMS)}")
    workdir = tempfile.mkdtemp(prefix="mv_adapter_benchmark_")  # adapters and checkpoints; removed at the end
    start = time.time()
    torch.manual_seed(0)
    base = load_pipeline(args.base)
    views = len(AZIMUTHS)
    sources = {
        "train": MultiViewSource(opts["train_objects"], seed=0, num_views=views),
        "val": MultiViewSource(opts["val_objects"], seed=VAL_SEED, num_views=views, reference_views=REFERENCES),
        "test": MultiViewSource(opts["test_objects"], seed=TEST_SEED, num_views=views, reference_views=REFERENCES),
    }
    pretrain = None
    cached = bool(args.base_cache) and os.path.isfile(os.path.join(args.base_cache, "model_index.json"))
    if cached:
        base = load_pipeline(args.base_cache)
        with open(os.path.join(args.base_cache, "pretrain.json"), encoding="utf-8") as fh:
            pretrain = json.load(fh)
    elif opts["pretrain_steps"] > 0:
        pretrain = pretrain_base(base, sources["train"], opts["pretrain_steps"], opts["size"],
                                 os.path.join(workdir, "base"), lr=3e-4)  # fmt: skip
        if args.base_cache:
            base.save_pretrained(args.base_cache)
            with open(os.path.join(args.base_cache, "pretrain.json"), "w", encoding="utf-8") as fh:
                json.dump(pretrain, fh)
    base.set_progress_bar_config(disable=True)
    base.unet.requires_grad_(False)
    opts["base_scheduler"] = base.scheduler
    opts["shifted_scheduler"] = ShiftSNRScheduler.from_scheduler(
        base.scheduler, shift_scale=8.0, shift_mode="interpolated"
    )
    opts["adapter_scheduler"] = base.scheduler if args.recipe == "legacy" else opts["shifted_scheduler"]
    try:
        out = run(base, sources, opts, seeds, workdir)
        cost = report.cost_part(base, [2, 4] if quick else [2, 4, 6, 8], 16 if quick else 32, 2 if quick else 5)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for key in ("base_scheduler", "adapter_scheduler", "shifted_scheduler"):
        shifted = key == "shifted_scheduler" or (key == "adapter_scheduler" and args.recipe == "official")
        opts[key] = type(opts[key]).__name__ + (" (shifted SNR, 8, interpolated)" if shifted else "")
    result = {
        "command": " ".join(
            ["python", "benchmarks/mv_adapter_benchmark.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "quick": quick,
        "seeds": seeds,
        "split_seeds": {"train": 0, "val": VAL_SEED, "test": TEST_SEED},
        "options": opts,
        "base": args.base or "embedded tiny-sd",
        "pretrain": pretrain,
        "machine": report.machine(),
        "seconds": round(time.time() - start, 1),
        "lr_sweeps": out["sweeps"],
        "consistency": fair.aggregate([s["consistency"] for s in out["per_seed"]]),
        "image_to_multiview_psnr": fair.aggregate([s["image_to_multiview_psnr"] for s in out["per_seed"]]),
        "heldout_loss": fair.aggregate([s["heldout_loss"] for s in out["per_seed"]]),
        "training": fair.aggregate([s["training"] for s in out["per_seed"]]),
        "gates": out["gates"],
        "per_seed": out["per_seed"],
        "ms_per_unet_step": cost,
    }
    stem = os.path.join(args.out, args.name or ("mv_adapter_benchmark" + ("_quick" if quick else "")))
    report.write(result, out["gallery"], stem)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
