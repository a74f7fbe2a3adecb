"""Score a text-to-image pipeline with the shape/colour judge on held-out single-shape captions.

Usage:
    python benchmarks/tiny_sd_quality.py PIPELINE_DIR [--name NAME] [--n 128] [--steps 25]

Writes benchmarks/results/<name>.json and .md with the command, seed and machine. The untrained tiny pipeline
(same architecture as PIPELINE_DIR, SD or SDXL, seeded random weights) is scored too, as the floor.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _report import command, header, machine, write_report  # noqa: E402 (sibling module, after the env)


def main() -> None:
    import torch
    from diffusers import DDIMScheduler

    from vadapters.metrics.judges import ShapeColourJudge, score_text_to_image
    from vadapters.models import tiny_sd_pipeline, tiny_sdxl_pipeline
    from vadapters.models.weights import default_path
    from vadapters.pipelines import load_pipeline

    parser = argparse.ArgumentParser()
    parser.add_argument("pipeline")
    parser.add_argument("--name", default="tiny_sd_quality")
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()
    judge, config = ShapeColourJudge.load(str(default_path("judge-shape-colour")))
    pipe = load_pipeline(args.pipeline)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    floor = tiny_sdxl_pipeline() if type(pipe).__name__ == "StableDiffusionXLPipeline" else tiny_sd_pipeline()
    floor.set_progress_bar_config(disable=True)
    kw = {"n": args.n, "steps": args.steps, "seed": args.seed}
    scores = {
        "trained_cfg1": score_text_to_image(pipe, judge, config, guidance_scale=1.0, **kw),
        "trained_cfg3": score_text_to_image(pipe, judge, config, guidance_scale=3.0, **kw),
        "untrained_cfg3": score_text_to_image(floor, judge, config, guidance_scale=3.0, **kw),
    }
    result = {
        "command": command(),
        "seed": args.seed,
        "machine": machine(args.threads),
        "pipeline": args.pipeline,
        "judge_held_out_accuracy": config["metrics"],
        "scores": scores,
        "seconds": round(time.time() - start, 1),
    }
    rows = "\n".join(
        f"| {k} | {v['shape_accuracy']:.3f} | {v['colour_accuracy']:.3f} | {v['both_accuracy']:.3f} |"
        for k, v in scores.items()
    )
    chance = scores["trained_cfg1"]
    md = header(args.name, result) + (
        f"Judge on {args.n} held-out single-shape captions, DDIM {args.steps} steps "
        f"(chance: shape {chance['chance_shape']}, colour {chance['chance_colour']}).\n\n"
        f"| pipeline | shape | colour | both |\n|---|---|---|---|\n{rows}\n"
    )
    write_report(args.name, result, md)


if __name__ == "__main__":
    main()
