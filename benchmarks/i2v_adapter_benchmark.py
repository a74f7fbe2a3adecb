"""I2V-Adapter benchmark, fair form (issues 9 and 19): first-frame identity at matched motion, scored exactly.

The motion clips (`vadapters.synthetic.motion`) are a pure function of their first frame and caption ("a red square
moving up-left quickly"): every held-out clip has exact ground-truth frames, sprite masks and displacements, so the
metrics of `vadapters.metrics.video` are exact: first-frame identity (the sprite's appearance in frames 1..F-1 vs
frame 0 inside its known mask), the sprite tracked wherever the video put it (its appearance there and its
displacement vs the truth: motion amplitude), ground-truth PSNR, and pixel motion.

Arms, one path: every generated clip and every reference below that a generator could reach leaves through the VAE.
- `ground_truth_vae`: the true clip through the VAE (the ceiling); `copy_frame0_latent`: frame 0's latent repeated
  and decoded (no motion, through the VAE); beside them the pixel-space `ground_truth` and `copy_frame0_pixels`
  (what the earlier benchmark compared with: out of reach of any generator by construction).
- `base_clamped`: the base text-to-video model with frame 0 clamped to the image (I2VPipeline without adapter);
  `i2v_adapter`: the trained adapter. Both are sampled with the same noise per clip, each over the Frame Similarity
  Prior strengths (`--prior-strengths`, "none" = off), which trade motion for stability in either arm.
- Matched motion: per arm and seed, the strength whose tracked motion is closest to the true motion (|log ratio|)
  on the validation clips; the test clips are then scored at that strength. Gate (issue 19): I2V-Adapter's identity
  above the base with frame 0 clamped by >= 3 std at matched motion (`_fairness.gate`).
- The adapter's learning rate is chosen on the validation clips (first seed; by identity at matched motion) from a
  small sweep, reported; then every seed trains at that rate.

Usage:
    python benchmarks/i2v_adapter_benchmark.py --quick --pipeline tiny   # smoke test (a few minutes on 2 CPU cores)
    python benchmarks/i2v_adapter_benchmark.py --pipeline PIPELINE_FOLDER   # full: 3 seeds

Outputs: `benchmarks/results/i2v_adapter_benchmark[_quick].{json,md,png}` (the PNG: identity vs motion per arm and
prior strength).
"""

from __future__ import annotations

import argparse
import copy
import math
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
import _i2v_adapter_report as report  # noqa: E402

VAL_SEED, TEST_SEED = 777, 12345
ARMS = ("base_clamped", "i2v_adapter")


# ---------------------------------------------------------------------------------------------------- the VAE path
def vae_encode(pipe, frames):
    """Latents `[F, C, h, w]` of frames `[F, 3, H, W]` in [0, 1], as the I2V pipeline encodes frame 0 (mode)."""
    import torch

    with torch.no_grad():
        return pipe.vae.encode(frames * 2 - 1).latent_dist.mode() * pipe.vae.config.scaling_factor


def vae_decode(pipe, latents):
    """Frames `[F, 3, H, W]` in [0, 1] from latents `[F, C, h, w]`, through the pipeline's own decode path."""
    import torch

    with torch.no_grad():
        video = pipe.decode_latents(latents.permute(1, 0, 2, 3)[None])
        return pipe.video_processor.postprocess_video(video=video, output_type="pt")[0].float()


def load_clip(clips, index: int, size: int) -> dict[str, Any]:
    item = clips.render(index, size, size)
    motion = item["motion"]
    return {"truth": (item["frames"] + 1) / 2, "masks": item["masks"], "caption": item["caption"],
            "step_px": (motion["dy_px"], motion["dx_px"])}  # fmt: skip


def references(pipe, clip: dict[str, Any]) -> dict[str, Any]:
    truth = clip["truth"]
    frames = truth.shape[0]
    return {
        "ground_truth": truth,
        "ground_truth_vae": vae_decode(pipe, vae_encode(pipe, truth)),
        "copy_frame0_pixels": truth[:1].expand_as(truth),
        "copy_frame0_latent": vae_decode(pipe, vae_encode(pipe, truth[:1]).expand(frames, -1, -1, -1)),
    }


# -------------------------------------------------------------------------------------------------- sampling
def label(strength: Any) -> str:
    return "none" if strength is None else "auto" if strength == "auto" else f"{float(strength):g}"


def parse_strengths(text: str) -> list[Any]:
    out: list[Any] = []
    for item in (t.strip().lower() for t in text.split(",")):
        if item in ("", "none", "off"):
            out += [None] if item else []
        elif item == "auto":
            out.append("auto")
        elif 0.0 <= float(item) < 1.0:
            out.append(float(item))
        else:
            raise SystemExit(f"--prior-strengths: each must be none, auto or in [0, 1), got {item!r}")
    return out


def i2v_pipeline(pipe):
    from vadapters.pipelines.image2video import I2VPipeline

    out = I2VPipeline(**pipe.components)
    out.set_progress_bar_config(disable=True)
    return out


def sample(pipe, caption: str, first, opts: dict[str, Any], seed: int, **options: Any):
    """One video `(F, 3, H, W)` in [0, 1]; `first`: the given image `(1, 3, H, W)` in [0, 1] (None: text-to-video)."""
    import torch

    kwargs = {k: v for k, v in options.items() if v is not None}
    if first is not None:
        kwargs.update(image=first, color_match=opts["color_match"])
    out = pipe(
        caption, num_frames=opts["frames"], height=opts["size"], width=opts["size"], output_type="pt",
        num_inference_steps=opts["sample_steps"], guidance_scale=opts["guidance"],
        generator=torch.Generator("cpu").manual_seed(seed), **kwargs,
    )  # fmt: skip
    return out.frames[0].float().cpu()


def score_arm(pipe, clips, opts: dict[str, Any], seed: int, keep: list | None = None) -> dict[str, dict]:
    """Mean clip scores per prior strength over `clips` (a list of `load_clip` dicts)."""
    from vadapters.metrics.video import clip_scores

    rows: dict[str, list[dict]] = {}
    for index, clip in enumerate(clips):
        for strength in opts["strengths"]:
            video = sample(
                pipe, clip["caption"], clip["truth"][:1], opts, 1000 * seed + index, prior_strength=strength
            )
            rows.setdefault(label(strength), []).append(
                clip_scores(video, clip["truth"], clip["masks"], clip["step_px"])
            )
            if keep is not None and index == 0:
                keep.append((label(strength), video))
    return {name: {k: fair.nanmean([r[k] for r in values]) for k in values[0]} for name, values in rows.items()}


def matched(scores: dict[str, dict]) -> str:
    """The strength whose tracked motion is closest to the true motion (|log ratio|; no motion is infinitely far)."""

    def distance(name: str) -> float:
        ratio = scores[name]["motion_ratio"]
        return abs(math.log(ratio)) if ratio == ratio and ratio > 0 else math.inf

    return min(scores, key=distance)


# -------------------------------------------------------------------------------------------------- training
def train(base, lr: float, seed: int, opts: dict[str, Any], workdir: str):
    from vadapters import train as vtrain

    pipe = copy.deepcopy(base)
    summary = vtrain.train_adapter(
        "i2v_adapter", base=pipe, data="synthetic", output_dir=os.path.join(workdir, f"lr{lr:g}-seed{seed}"),
        num_items=opts["train_clips"], num_frames=opts["frames"], resolutions=str(opts["size"]),
        steps=opts["steps"], batch_size=opts["batch_size"], learning_rate=lr, seed=seed,
        checkpoint_every=opts["steps"], resume=False,
    )  # fmt: skip
    pipe.unet.requires_grad_(False)
    return pipe, {"final_loss": summary["final_loss"], "seconds": summary["seconds"]}


def run(base, opts: dict[str, Any], seeds: list[int], workdir: str) -> dict[str, Any]:
    from vadapters.synthetic.motion import MotionClips

    splits = {name: MotionClips(opts[f"{name}_clips"], seed=s, num_frames=opts["frames"])
              for name, s in (("val", VAL_SEED), ("test", TEST_SEED))}  # fmt: skip
    val = [load_clip(splits["val"], i, opts["size"]) for i in range(opts["val_clips"])]
    test = [load_clip(splits["test"], i, opts["size"]) for i in range(opts["test_clips"])]
    trained: dict[float, tuple] = {}

    def on_validation(lr: float) -> float:
        trained[lr] = (*train(base, lr, seeds[0], opts, workdir), None)
        scores = score_arm(i2v_pipeline(trained[lr][0]), val, opts, seeds[0])
        trained[lr] = (trained[lr][0], trained[lr][1], scores)
        return scores[matched(scores)]["identity_psnr"]

    sweep = fair.sweep(opts["lrs"], on_validation)
    chosen = sweep["chosen"]
    from vadapters.metrics.video import clip_scores

    refs = {}
    for clip in test:
        for name, video in references(base, clip).items():
            refs.setdefault(name, []).append(clip_scores(video, clip["truth"], clip["masks"], clip["step_px"]))
    refs = {name: {k: fair.nanmean([r[k] for r in rows]) for k in rows[0]} for name, rows in refs.items()}
    per_seed, gallery = [], {"ground truth": [("", test[0]["truth"])]}
    for k, seed in enumerate(seeds):
        adapted, summary, val_adapter = (
            trained[chosen] if k == 0 else (*train(base, chosen, seed, opts, workdir), None)
        )
        pipes = {"base_clamped": i2v_pipeline(base), "i2v_adapter": i2v_pipeline(adapted)}
        row: dict[str, Any] = {"training": summary, "matched": {}, "quality": {}}
        for arm, pipe in pipes.items():
            val_scores = (
                val_adapter if arm == "i2v_adapter" and val_adapter is not None else score_arm(pipe, val, opts, seed)
            )
            row["matched"][arm] = matched(val_scores)
            row["quality"][arm] = score_arm(pipe, test, opts, seed, gallery.setdefault(arm, []) if k == 0 else None)
            row["quality"][f"{arm}@matched"] = row["quality"][arm][row["matched"][arm]]
        per_seed.append(row)
    gates = {}
    for metric in ("identity_psnr", "tracked_identity_psnr"):
        values = {arm: [s["quality"][f"{arm}@matched"][metric] for s in per_seed] for arm in ARMS}
        gates[metric] = fair.gate(values["i2v_adapter"], values["base_clamped"])
    return {"sweep": sweep, "references": refs, "per_seed": per_seed, "gates": gates, "gallery": gallery}


def cost_part(base, opts: dict[str, Any], repeats: int) -> dict[str, Any]:
    """Median seconds per generated frame of one sampling call, per variant, and the ratio to text-to-video."""
    import statistics

    import torch

    import vadapters
    from vadapters.methods.i2v_adapter import I2VAdapterConfig

    adapted = copy.deepcopy(base)
    vadapters.inject(adapted, I2VAdapterConfig())  # a fresh adapter costs what a trained one does
    clamped, i2v = i2v_pipeline(base), i2v_pipeline(adapted)
    first = torch.rand(1, 3, opts["size"], opts["size"], generator=torch.Generator().manual_seed(0))
    caption = "a red square moving right slowly"
    calls = {
        "t2v_base": lambda: sample(base, caption, None, opts, 0),
        "base_clamped": lambda: sample(clamped, caption, first, opts, 0),
        "i2v_adapter": lambda: sample(i2v, caption, first, opts, 0),
        "i2v_prior_auto": lambda: sample(i2v, caption, first, opts, 0, prior_strength="auto"),
    }
    times: dict[str, list[float]] = {name: [] for name in calls}
    with torch.no_grad():
        for call in calls.values():  # warm-up
            call()
        for _ in range(repeats):  # interleaved, so a load spike hits every variant alike
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
    per_frame = {name: statistics.median(t) / opts["frames"] for name, t in times.items()}
    return {
        name: {"ms_per_frame": 1000 * v, "relative_to_t2v": v / per_frame["t2v_base"]} for name, v in per_frame.items()
    }


# ------------------------------------------------------------------------------------------------------- main
def load_base(spec: str | None, quick: bool) -> tuple[Any, str]:
    from vadapters.errors import CheckpointError
    from vadapters.pipelines.image2video import load_video_pipeline

    if spec is not None:
        name = "random-init tiny AnimateDiff (smoke test)" if spec == "tiny" else f"pipeline {spec}"
        return load_video_pipeline(spec), name
    try:
        return load_video_pipeline(None), "embedded tiny-sd + tiny-animatediff"
    except CheckpointError as err:
        if not quick:
            raise SystemExit(f"{err}\nPass --pipeline FOLDER (or 'tiny' for a smoke test)") from None
        return load_video_pipeline("tiny"), "random-init tiny AnimateDiff (no embedded video default yet)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, tiny budgets: a smoke test, not results")
    parser.add_argument("--pipeline", default=None, help="AnimateDiff folder, MotionAdapter folder, or 'tiny' "
                        "(default: the embedded tiny-sd + tiny-animatediff)")  # fmt: skip
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2; quick: 0)")
    parser.add_argument(
        "--lrs", default=None, help="adapter learning rates swept (default 1e-4,3e-4,1e-3; quick 1e-3)"
    )
    parser.add_argument("--steps", type=int, default=None, help="adapter training steps (default 300; quick 4)")
    parser.add_argument("--batch-size", type=int, default=2, help="clips per training batch")
    parser.add_argument("--size", type=int, default=None, help="frame size in px (default 32; quick 16)")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip (8-16)")
    parser.add_argument("--clips", default=None, help="train,val,test clips (default 400,6,12; quick 8,2,2)")
    parser.add_argument("--sample-steps", type=int, default=None, help="DDIM steps (default 25; quick 3)")
    parser.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale")
    parser.add_argument("--prior-strengths", default=None, help="Frame Similarity Prior strengths, both arms "
                        "(default none,auto,0.2,0.4,0.6; quick none,0.4)")  # fmt: skip
    parser.add_argument("--color-match", action="store_true", help="colour-match every frame to frame 0")
    parser.add_argument("--cost-repeats", type=int, default=None, help="timed calls per variant (default 5; quick 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args(argv)

    import torch

    quick = args.quick
    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = [int(s) for s in (args.seeds or ("0" if quick else "0,1,2")).split(",")]
    counts = [int(x) for x in (args.clips or ("8,2,2" if quick else "400,6,12")).split(",")]
    opts = {
        "size": args.size or (16 if quick else 32), "frames": args.frames, "steps": args.steps or (4 if quick else 300),
        "lrs": fair.parse_floats(args.lrs or ("1e-3" if quick else "1e-4,3e-4,1e-3")), "batch_size": args.batch_size,
        "train_clips": counts[0], "val_clips": counts[1], "test_clips": counts[2],
        "sample_steps": args.sample_steps or (3 if quick else 25), "guidance": args.guidance,
        "strengths": parse_strengths(args.prior_strengths or ("none,0.4" if quick else "none,auto,0.2,0.4,0.6")),
        "color_match": bool(args.color_match),
    }  # fmt: skip
    start = time.time()
    torch.manual_seed(0)
    base, base_label = load_base(args.pipeline, quick)
    base.unet.requires_grad_(False)
    base.set_progress_bar_config(disable=True)
    from vadapters.methods.i2v_adapter.sampling import first_timestep_strength

    scheduler = copy.deepcopy(base.scheduler)
    scheduler.set_timesteps(opts["sample_steps"])
    workdir = tempfile.mkdtemp(prefix="i2v_adapter_benchmark_")  # adapters and checkpoints; removed at the end
    try:
        out = run(base, opts, seeds, workdir)
        cost = cost_part(base, opts, args.cost_repeats or (1 if quick else 5))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    opts["strengths"] = [label(s) for s in opts["strengths"]]
    quality = fair.aggregate([s["quality"] for s in out["per_seed"]])
    result = {
        "command": " ".join(
            ["python", "benchmarks/i2v_adapter_benchmark.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "quick": quick,
        "seeds": seeds,
        "split_seeds": {"train": "the training seed", "val": VAL_SEED, "test": TEST_SEED},
        "options": opts,
        "auto_prior_strength": first_timestep_strength(scheduler),
        "base": base_label,
        "machine": report.machine(),
        "seconds": round(time.time() - start, 1),
        "lr_sweep": out["sweep"],
        "references": out["references"],
        "quality": quality,
        "matched": [s["matched"] for s in out["per_seed"]],
        "training": fair.aggregate([s["training"] for s in out["per_seed"]]),
        "gates": out["gates"],
        "per_seed": out["per_seed"],
        "cost": cost,
    }
    stem = os.path.join(args.out, "i2v_adapter_benchmark" + ("_quick" if quick else ""))
    report.write(result, out["gallery"], stem)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
