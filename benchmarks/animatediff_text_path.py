"""Is the frozen text encoder why tiny-animatediff ignores the caption's direction? A two-arm continuation.

`animatediff_caption_dependence.py` found that the embedded motion adapter's held-out loss is the same with the
true and the opposite direction in the caption, and that tiny-sd's frozen text encoder puts captions differing only
in direction ~30x closer than captions differing in colour. This experiment continues the embedded adapter for the
same number of steps in two arms:

- `frozen`: AnimateDiff's recipe (motion modules only; UNet, VAE and text encoder frozen), i.e. just more steps;
- `text`: motion modules *and* the text encoder trained (a deviation from AnimateDiff, used only as a diagnostic:
  if direction becomes usable here, the frozen text path is the bottleneck).

For each arm it reports the held-out loss gap (opposite direction - true caption) and the direction accuracy of
generated clips. Nothing here is embedded.

Usage:
    python benchmarks/animatediff_text_path.py [--steps 400] [--clips 32]

Writes benchmarks/results/animatediff_text_path.{json,md} with the command, seed and machine.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _report import command, header, machine, write_report  # noqa: E402 (sibling module, after the env)


def direction_gap(sd, unet, clips, n: int, timesteps: list[int], seed: int) -> dict:
    """Held-out loss with the true caption and with the opposite direction (same noise), and their paired gap."""
    import numpy as np
    from animatediff_caption_dependence import OPPOSITE, held_out_losses, swap

    variants = {"true": lambda c: c, "opposite": lambda c: swap(c, OPPOSITE)}
    losses = held_out_losses(sd, {"unet": unet}, clips, n, timesteps, seed, variants, time.time())["unet"]
    true, opposite = losses["true"].mean(1), losses["opposite"].mean(1)
    gap = opposite - true
    return {
        "loss_true": round(float(true.mean()), 6),
        "loss_opposite": round(float(opposite.mean()), 6),
        "gap": round(float(gap.mean()), 7),
        "gap_std_err": round(float(gap.std(ddof=1) / np.sqrt(n)), 7),
        "clips_true_lower": round(float((gap > 0).mean()), 3),
    }


def main() -> None:
    import torch
    from diffusers import MotionAdapter

    from vadapters.models.video import animatediff_from_sd
    from vadapters.models.weights import default_path
    from vadapters.pipelines import load_pipeline
    from vadapters.synthetic.motion import MotionClips
    from vadapters.train.trainer import Trainer, TrainingArguments
    from vadapters.train.video import MotionModuleRecipe, evaluate_motion

    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--clips", type=int, default=32, help="held-out clips for the loss gap and generation")
    parser.add_argument("--arms", default="frozen,text")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="outputs/animatediff_text_path")
    parser.add_argument("--name", default="animatediff_text_path")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()
    train_clips = MotionClips(20000, seed=args.seed, num_frames=8, size=(32, 32))
    held_out = MotionClips(args.clips, seed=args.seed + 1, num_frames=8, size=(32, 32))
    captions = [held_out.caption(i) for i in range(args.clips)]
    results = {}
    for arm in args.arms.split(","):
        arm_start = time.time()
        sd = load_pipeline(str(default_path("tiny-sd")))
        adapter = MotionAdapter.from_pretrained(str(default_path("tiny-animatediff")), local_files_only=True)
        recipe = MotionModuleRecipe(sd, adapter, train_clips, 32, 8, 0.1, args.seed, train_text_encoder=arm == "text")
        options = {"lr_scheduler": "constant", "lr_warmup_steps": 0}
        targs = TrainingArguments.from_options(
            os.path.join(args.out, arm), max_steps=args.steps, learning_rate=1e-4, batch_size=8, seed=args.seed,
            checkpoint_every=100, **options,
        )  # fmt: skip
        trained = Trainer(recipe, targs).train()
        sd.text_encoder.eval()
        unet = recipe.unet.eval()
        gap = direction_gap(sd, unet, held_out, args.clips, [100, 300, 500, 700, 900], args.seed + 1)
        pipe = animatediff_from_sd(sd, recipe.motion_adapter_state())
        gen = evaluate_motion(pipe, captions, num_frames=8, resolution=32, guidance_scale=3.0, seed=args.seed)
        results[arm] = {"loss_gap": gap, "generation": gen, "final_loss": trained.get("final_loss"),
                        "seconds": round(time.time() - arm_start, 1)}  # fmt: skip
        print(arm, results[arm], flush=True)

    result = {
        "command": command(),
        "seed": args.seed,
        "machine": machine(args.threads),
        "start": "embedded weights/tiny-animatediff (1,200 steps) on embedded weights/tiny-sd",
        "continuation": f"{args.steps} steps, batch 8, lr 1e-4 constant, caption dropout 0.1",
        "held_out_clips": args.clips,
        "chance": 1 / 8,
        "arms": results,
        "seconds": round(time.time() - start, 1),
    }
    rows = "\n".join(
        f"| {arm} | {r['loss_gap']['loss_true']:.6f} | {r['loss_gap']['gap']:+.6f} ± {r['loss_gap']['gap_std_err']:.6f}"
        f" | {r['loss_gap']['clips_true_lower']:.2f} | {r['generation']['direction_accuracy']:.3f}"
        f" | {r['generation']['frame_diff']:.4f} |"
        for arm, r in results.items()
    )
    md = header(args.name, result) + (
        f"Start: {result['start']}; each arm continues for {result['continuation']}. {args.clips} held-out clips "
        f"(seed {args.seed + 1}): loss gap = loss(opposite direction) - loss(true caption), same noise, timesteps 100-900; "
        "direction accuracy of generated clips (CFG 3, 20 steps; chance 0.125).\n\n"
        "| arm | held-out loss | gap ± s.e. | clips where true is lower | direction accuracy | frame diff |\n"
        f"|---|---|---|---|---|---|\n{rows}\n"
    )
    write_report(args.name, result, md)


if __name__ == "__main__":
    main()
