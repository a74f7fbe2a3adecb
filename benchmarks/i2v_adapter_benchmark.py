"""I2V-Adapter benchmark on a tiny AnimateDiff pipeline and the synthetic motion clips (issue 9).

The clips (`vadapters.synthetic.motion`) are a pure function of their first frame and caption ("a red square
moving up-left quickly"), so every held-out (first frame, caption) pair has exact ground-truth frames 1..F-1.

Per seed:
1. Train an I2V-Adapter (`train_adapter("i2v_adapter", ...)`: frame 0 clean, loss masked on frame 0, only `to_q_ff` / `to_out_ff`
   trainable) on training clips of the video pipeline (default: the embedded tiny-sd + tiny-animatediff).
2. On held-out clips, sample with the same initial noise per clip:
   - `base_clamped`: the base text-to-video model with frame 0 clamped to the given image (I2VPipeline, no adapter);
   - `i2v_adapter`: the trained adapter (frame 0 clean and never stepped);
   - `i2v_prior_<s>`: the adapter plus the Frame Similarity Prior at strength s (`auto`: the official strength,
     sqrt(alpha_bar) of the first sampling timestep, about 0.08 for 25 DDIM steps).
   References without sampling: `ground_truth` (its motion) and `copy_first_frame` (frame 0 repeated: no motion).
3. Metrics, pixels in [0, 1]: first-frame fidelity (PSNR of decoded frame 0 vs the given image; bounded by the VAE's
   reconstruction), ground-truth PSNR of frames 1..F-1, motion amplitude (mean |frame t+1 - frame t|) and its ratio
   to the ground truth's, and PSNR of frames 1..F-1 to the video's own frame 0 (stability).
4. Cost: seconds per generated frame of one sampling call, relative to the base text-to-video pipeline
   (`AnimateDiffPipeline`, no image) with the same frames, size and steps; the variants' calls are interleaved and
   the median of the repeats is kept (the CPU is shared, so read the ratios, not the absolute times).

Outputs: `benchmarks/results/i2v_adapter_benchmark[_quick].{json,md,png}`; the PNG plots ground-truth PSNR against
motion amplitude (the stability vs motion trade-off of the prior strengths).

Honest caveat: at 16-32 px and CPU budgets the absolute quality is low; compare the rows of one table, not with the
paper. `--quick` on the random-init tiny pipeline is a smoke test of the script, not a result.

Usage:
    python benchmarks/i2v_adapter_benchmark.py --quick --pipeline tiny   # smoke test, < 2 minutes on 2 CPU cores
    python benchmarks/i2v_adapter_benchmark.py                           # full: embedded default, 3 seeds
                                                                         # (about 40 minutes on 2 loaded CPU cores)
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import math
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

HELD_OUT_SEED = 12345
COLOURS = ((90, 90, 90), (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189))


# ----------------------------------------------------------------------------------------------------- metrics
def psnr(a, b) -> float:
    """PSNR in dB of two tensors in [0, 1] (capped at 100 dB for identical inputs)."""
    mse = float((a.double() - b.double()).square().mean())
    return 100.0 if mse <= 1e-10 else 10 * math.log10(1.0 / mse)


def motion_amplitude(video) -> float:
    """Mean |frame t+1 - frame t| of a `(F, 3, H, W)` video in [0, 1]."""
    return float((video[1:].double() - video[:-1].double()).abs().mean())


def clip_metrics(video, truth) -> dict[str, float]:
    """The per-clip metrics of the module docstring; `video`, `truth`: `(F, 3, H, W)` in [0, 1]."""
    motion, truth_motion = motion_amplitude(video), motion_amplitude(truth)
    return {
        "first_frame_psnr": psnr(video[0], truth[0]),
        "gt_psnr": psnr(video[1:], truth[1:]),
        "motion": motion,
        "motion_ratio": motion / truth_motion if truth_motion > 0 else float("nan"),
        "psnr_to_frame0": psnr(video[1:], video[:1].expand_as(video[1:])),
    }


# -------------------------------------------------------------------------------------------------- variants
def prior_label(strength: Any) -> str:
    return "auto" if strength == "auto" else f"{float(strength):g}"


def parse_strengths(text: str) -> list[Any]:
    out: list[Any] = []
    for item in (text or "").split(","):
        item = item.strip().lower()
        if not item:
            continue
        if item == "auto":
            out.append("auto")
            continue
        value = float(item)
        if not 0.0 <= value < 1.0:
            raise SystemExit(f"--prior-strengths: each strength must be 'auto' or in [0, 1), got {item!r}")
        out.append(value)
    return out


def variant_options(strengths: list[Any]) -> dict[str, tuple[bool, dict[str, Any]]]:
    """`{name: (uses the adapter, extra I2VPipeline options)}` in table order."""
    variants: dict[str, tuple[bool, dict[str, Any]]] = {"base_clamped": (False, {}), "i2v_adapter": (True, {})}
    for s in strengths:
        variants[f"i2v_prior_{prior_label(s)}"] = (True, {"prior_strength": s})
    return variants


def i2v_pipeline(pipe):
    from vadapters.pipelines.image2video import I2VPipeline

    out = I2VPipeline(**pipe.components)
    out.set_progress_bar_config(disable=True)
    return out


def sample(pipe, caption: str, first, opts: dict[str, Any], seed: int, **options: Any):
    """One video `(F, 3, H, W)` in [0, 1]; `first`: the given image `(1, 3, H, W)` in [0, 1] (None: text-to-video)."""
    import torch

    kwargs = dict(options)
    if first is not None:
        kwargs.update(image=first, color_match=opts["color_match"])
    out = pipe(
        caption, num_frames=opts["frames"], height=opts["size"], width=opts["size"], output_type="pt",
        num_inference_steps=opts["sample_steps"], guidance_scale=opts["guidance"],
        generator=torch.Generator("cpu").manual_seed(seed), **kwargs,
    )  # fmt: skip
    return out.frames[0].float().cpu()


# ------------------------------------------------------------------------------------------------------ parts
def train_adapter(base, opts: dict[str, Any], seed: int, workdir: str):
    from vadapters import train

    pipe = copy.deepcopy(base)
    summary = train.train_adapter(
        "i2v_adapter", base=pipe, data="synthetic", output_dir=os.path.join(workdir, f"seed-{seed}"),
        num_items=opts["train_clips"], num_frames=opts["frames"], resolutions=str(opts["size"]),
        steps=opts["steps"], batch_size=opts["batch_size"], learning_rate=opts["lr"], seed=seed,
        checkpoint_every=opts["steps"], resume=False,
    )  # fmt: skip
    pipe.unet.requires_grad_(False)
    return pipe, summary


def quality_part(base, opts: dict[str, Any], strengths: list[Any], seed: int, workdir: str) -> dict[str, Any]:
    """Train on seed `seed`, then every variant on the held-out clips; metrics averaged over clips."""
    from vadapters.train.recipes.i2v_adapter import MotionClipSource

    adapted, summary = train_adapter(base, opts, seed, workdir)
    pipes = {False: i2v_pipeline(base), True: i2v_pipeline(adapted)}
    held_out = MotionClipSource(opts["eval_clips"], seed=HELD_OUT_SEED, num_frames=opts["frames"])
    per_variant: dict[str, list[dict[str, float]]] = {"ground_truth": [], "copy_first_frame": []}
    for index in range(opts["eval_clips"]):
        item = held_out.load(index, opts["size"], opts["size"])
        truth = (item["frames"] + 1) / 2
        per_variant["ground_truth"].append(clip_metrics(truth, truth))
        per_variant["copy_first_frame"].append(clip_metrics(truth[:1].expand_as(truth), truth))
        for name, (adapter, options) in variant_options(strengths).items():
            video = sample(pipes[adapter], item["caption"], truth[:1], opts, 1000 * seed + index, **options)
            per_variant.setdefault(name, []).append(clip_metrics(video, truth))
    result = {name: _mean_dicts(rows) for name, rows in per_variant.items()}
    result["i2v_adapter"]["train_final_loss"] = summary["final_loss"]
    result["i2v_adapter"]["train_seconds"] = summary["seconds"]
    return result


def cost_part(base, opts: dict[str, Any], repeats: int) -> dict[str, Any]:
    """Median seconds per generated frame of one sampling call, per variant, and the ratio to text-to-video."""
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
        name: {"ms_per_frame": 1000 * value, "relative_to_t2v": value / per_frame["t2v_base"]}
        for name, value in per_frame.items()
    }


def _mean_dicts(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: _nanmean([r[k] for r in rows]) for k in rows[0]}


def _nanmean(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.mean(values) if values else float("nan")


def aggregate(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and (population) std over seeds of every numeric leaf."""
    out: dict[str, Any] = {}
    for key, value in per_seed[0].items():
        if isinstance(value, dict):
            out[key] = aggregate([s[key] for s in per_seed])
        else:
            values = [s[key] for s in per_seed]
            out[key] = {"mean": _nanmean(values), "std": statistics.pstdev(values) if len(values) > 1 else 0.0}
    return out


# ------------------------------------------------------------------------------------------------------- plot
def tradeoff_plot(quality: dict[str, Any], strengths: list[Any], title: str):
    """Ground-truth PSNR (y) vs motion amplitude (x) per variant as a PIL image (matplotlib is not a dependency).

    The prior strengths are joined by a line, from the adapter without prior; the ground truth's motion is a dashed
    vertical line and `copy_first_frame` (no motion) a grey point.
    """
    from PIL import Image, ImageDraw

    names = [n for n in quality if n != "ground_truth"]
    xs = [quality[n]["motion"]["mean"] for n in names] + [quality["ground_truth"]["motion"]["mean"]]
    ys = [quality[n]["gt_psnr"]["mean"] for n in names]
    x_hi = max(xs) * 1.15 or 1.0
    y_lo, y_hi = min(ys), max(ys)
    pad = max(0.5, 0.1 * (y_hi - y_lo))
    y_lo, y_hi = y_lo - pad, y_hi + pad
    width, height, left, right, top, bottom = 560, 380, 60, 210, 36, 50
    image = Image.new("RGB", (width + right, height), "white")
    draw = ImageDraw.Draw(image)
    plot_w, plot_h = width - left - 20, height - top - bottom

    def xy(x: float, y: float) -> tuple[float, float]:
        return left + plot_w * x / x_hi, top + plot_h * (1 - (y - y_lo) / (y_hi - y_lo))

    for k in range(6):
        y = y_lo + (y_hi - y_lo) * k / 5
        _, py = xy(0, y)
        draw.line([(left, py), (left + plot_w, py)], fill=(228, 228, 228))
        draw.text((6, py - 6), f"{y:.1f}", fill="black")
        x = x_hi * k / 5
        px, _ = xy(x, y_lo)
        draw.text((px - 14, top + plot_h + 6), f"{x:.3f}", fill="black")
    draw.rectangle([left, top, left + plot_w, top + plot_h], outline="black")
    draw.text((left + plot_w // 2 - 110, height - 18), "motion amplitude: mean |frame t+1 - frame t|", fill="black")
    draw.text((6, 14), "dB", fill="black")
    gx, _ = xy(quality["ground_truth"]["motion"]["mean"], y_lo)
    for y0 in range(top, top + plot_h, 8):
        draw.line([(gx, y0), (gx, min(y0 + 4, top + plot_h))], fill=(44, 160, 44))
    series = ["i2v_adapter", *(f"i2v_prior_{prior_label(s)}" for s in strengths)]
    line = [xy(quality[n]["motion"]["mean"], quality[n]["gt_psnr"]["mean"]) for n in series if n in quality]
    if len(line) > 1:
        draw.line(line, fill=COLOURS[2], width=2)
    legend = [("ground truth motion (dashed)", (44, 160, 44))]
    for name in names:
        colour = COLOURS[0] if name == "copy_first_frame" else COLOURS[1] if name == "base_clamped" else COLOURS[2]
        if name == "i2v_adapter":
            colour = COLOURS[4]
        x, y = xy(quality[name]["motion"]["mean"], quality[name]["gt_psnr"]["mean"])
        draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=colour)
        short = name.replace("i2v_prior_", "prior ")
        if name.startswith("i2v_prior_"):
            draw.text((x + 5, y - 12), short.removeprefix("prior "), fill=colour)
        legend.append((f"{short}: {quality[name]['gt_psnr']['mean']:.2f} dB, {quality[name]['motion']['mean']:.4f}",
                       colour))  # fmt: skip
    for k, (text, colour) in enumerate(legend):
        draw.text((width + 2, top + 16 * k), text, fill=colour)
    draw.text((left, 8), title, fill="black")
    return image


# ------------------------------------------------------------------------------------------------------- main
def load_base(spec: str | None, quick: bool) -> tuple[Any, str]:
    from vadapters.errors import CheckpointError
    from vadapters.pipelines.image2video import load_video_pipeline

    if spec is not None:
        label = "random-init tiny AnimateDiff (smoke test)" if spec == "tiny" else f"pipeline {spec}"
        return load_video_pipeline(spec), label
    try:
        return load_video_pipeline(None), "embedded tiny-sd + tiny-animatediff"
    except CheckpointError as err:
        if not quick:
            raise SystemExit(
                f"{err}\nThe full benchmark runs on the embedded video model; pass --pipeline FOLDER (or 'tiny' for "
                "a smoke test)"
            ) from None
        return load_video_pipeline("tiny"), "random-init tiny AnimateDiff (no embedded video default yet)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, tiny budgets: a smoke test (< 2 minutes)")
    parser.add_argument("--pipeline", default=None, help="AnimateDiff folder, MotionAdapter folder, or 'tiny' "
                        "(default: the embedded tiny-sd + tiny-animatediff)")  # fmt: skip
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2; quick: 0)")
    parser.add_argument("--steps", type=int, default=None, help="adapter training steps (default 300; quick 4)")
    parser.add_argument("--lr", type=float, default=1e-3, help="adapter learning rate")
    parser.add_argument("--batch-size", type=int, default=None, help="clips per training batch (default 2)")
    parser.add_argument("--size", type=int, default=None, help="frame size in px (default 32; quick 16)")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip (8-16)")
    parser.add_argument("--train-clips", type=int, default=None, help="training clips (default 400; quick 8)")
    parser.add_argument("--eval-clips", type=int, default=None, help="held-out clips (default 6; quick 2)")
    parser.add_argument("--sample-steps", type=int, default=None, help="DDIM steps (default 25; quick 3)")
    parser.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale")
    parser.add_argument("--prior-strengths", default="auto,0.2,0.4,0.6", help="Frame Similarity Prior strengths")
    parser.add_argument("--color-match", action="store_true", help="colour-match every frame to frame 0")
    parser.add_argument("--cost-repeats", type=int, default=None, help="timed calls per variant (default 5; quick 2)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args(argv)

    import torch

    quick = args.quick
    seeds = [int(s) for s in (args.seeds or ("0" if quick else "0,1,2")).split(",")]
    strengths = parse_strengths(args.prior_strengths)
    opts = {
        "size": args.size or (16 if quick else 32),
        "frames": args.frames,
        "steps": args.steps or (4 if quick else 300),
        "lr": args.lr,
        "batch_size": args.batch_size or 2,
        "train_clips": args.train_clips or (8 if quick else 400),
        "eval_clips": args.eval_clips or (2 if quick else 6),
        "sample_steps": args.sample_steps or (3 if quick else 25),
        "guidance": args.guidance,
        "color_match": bool(args.color_match),
    }
    repeats = args.cost_repeats or (2 if quick else 5)
    start = time.time()
    torch.manual_seed(0)
    base, base_label = load_base(args.pipeline, quick)
    base.unet.requires_grad_(False)
    from vadapters.methods.i2v_adapter.sampling import first_timestep_strength

    scheduler = copy.deepcopy(base.scheduler)
    scheduler.set_timesteps(opts["sample_steps"])
    workdir = tempfile.mkdtemp(prefix="i2v_adapter_benchmark_")  # adapters and checkpoints; removed at the end
    try:
        per_seed = [quality_part(base, opts, strengths, seed, workdir) for seed in seeds]
        cost = cost_part(base, opts, repeats)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = {
        "command": " ".join(
            ["python", "benchmarks/i2v_adapter_benchmark.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "quick": quick,
        "seeds": seeds,
        "held_out_seed": HELD_OUT_SEED,
        "options": opts,
        "prior_strengths": [prior_label(s) for s in strengths],
        "auto_prior_strength": first_timestep_strength(scheduler),
        "base": base_label,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
        },
        "torch": torch.__version__,
        "seconds": round(time.time() - start, 1),
        "quality": aggregate(per_seed),
        "quality_per_seed": per_seed,
        "cost": cost,
    }
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "i2v_adapter_benchmark" + ("_quick" if quick else ""))
    write_outputs(result, stem, strengths)
    print(render_markdown(result))
    return 0


def write_outputs(result: dict[str, Any], stem: str, strengths: list[Any]) -> None:
    from vadapters.core.io import atomic_write, atomic_write_text

    atomic_write_text(stem + ".json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(stem + ".md", render_markdown(result))
    title = "I2V-Adapter: ground-truth PSNR of frames 1..F-1 vs motion" + (" (quick)" if result["quick"] else "")
    buffer = io.BytesIO()
    tradeoff_plot(result["quality"], strengths, title).save(buffer, format="PNG")
    atomic_write(stem + ".png", lambda fh: fh.write(buffer.getvalue()))


def render_markdown(r: dict[str, Any]) -> str:
    fmt = lambda d, p=2: f"{d['mean']:.{p}f} ± {d['std']:.{p}f}"  # noqa: E731
    o = r["options"]
    lines = [
        "# I2V-Adapter benchmark" + (" (quick: a smoke test, not results)" if r["quick"] else ""),
        "",
        f"Command: `{r['command']}`; seeds {r['seeds']} (held-out clips: seed {r['held_out_seed']}); base: "
        f"{r['base']}; torch {r['torch']}; {r['machine']['platform']}, {r['machine']['cpus']} CPUs, "
        f"{r['machine']['threads']} torch threads; {r['seconds']} s.",
        f"Options: {o}; prior strengths {r['prior_strengths']} (auto = {r['auto_prior_strength']:.3f} for "
        f"{o['sample_steps']} DDIM steps).",
        "",
        f"## Quality on {o['eval_clips']} held-out clips ({o['frames']} frames, {o['size']}x{o['size']} px), "
        "mean ± std over seeds",
        "",
        "First-frame PSNR compares the decoded frame 0 with the given image (bounded by the VAE). GT PSNR compares",
        "frames 1..F-1 with the true continuation. Motion is the mean |frame t+1 - frame t| (ratio: to the ground",
        "truth's). PSNR to frame 0 is the stability of frames 1..F-1 with respect to the video's own first frame.",
        "",
        "| variant | first-frame PSNR (dB) | GT PSNR 1..F-1 (dB) | motion | motion / GT | PSNR to frame 0 (dB) |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in r["quality"].items():
        cells = (fmt(row["first_frame_psnr"]), fmt(row["gt_psnr"]), fmt(row["motion"], 4), fmt(row["motion_ratio"]),
                 fmt(row["psnr_to_frame0"]))  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    adapter = r["quality"]["i2v_adapter"]
    lines += [
        "",
        f"Adapter training: {o['steps']} steps, batch {o['batch_size']} clips, lr {o['lr']}, {o['train_clips']} "
        f"clips; final loss {fmt(adapter['train_final_loss'], 4)}, {fmt(adapter['train_seconds'], 1)} s per seed.",
        "",
        f"## Sampling cost per generated frame ({o['frames']} frames, {o['sample_steps']} steps, guidance "
        f"{o['guidance']})",
        "",
        "| variant | ms / frame | relative to text-to-video |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {v['ms_per_frame']:.1f} | {v['relative_to_t2v']:.2f} |" for k, v in r["cost"].items()]
    stem = "i2v_adapter_benchmark" + ("_quick" if r["quick"] else "")
    lines += ["", f"Stability vs motion trade-off: `{stem}.png`."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
