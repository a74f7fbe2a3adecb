"""Proof world v2, VAE and judge gates (issue 18): does the VAE round trip keep what the judge reads?

For every scene distribution the judge must read (`JUDGE_DISTRIBUTIONS`: large / small shapes, flat / textured
ground), the judge scores held-out ground truth and the same images after a VAE round trip (posterior mode);
"kept" is round-trip accuracy / ground-truth accuracy (gate >= 95 % for shape and colour, judge >= 98 % on ground
truth). PSNR is measured per world (shape scenes, multi-view object views, motion-clip frames; gate >= 30 dB). Every
VAE named is measured in the same run (e.g. tiny-sd v1's VAE beside the v2 one).

    python benchmarks/proof_world_vae.py --vae weights/tiny-world-vae --vae weights/tiny-sd/vae \
        --judge weights/judge-shape-colour --n 1000
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import command, header, machine, write_report  # noqa: E402

PSNR_GATE, KEPT_GATE, JUDGE_GATE = 30.0, 0.95, 0.98


def main(argv: list[str] | None = None) -> dict:
    from diffusers import AutoencoderKL

    from vadapters.metrics.judges import JUDGE_DISTRIBUTIONS, ShapeColourJudge, evaluate_judge
    from vadapters.synthetic.scenes import ShapeScenes
    from vadapters.train.base_vae import WORLD_MIX, psnr, render_world, round_trip

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", action="append", required=True, help="AutoencoderKL folder (repeatable)")
    parser.add_argument("--judge", default="weights/judge-shape-colour")
    parser.add_argument("--n", type=int, default=1000, help="held-out images per distribution")
    parser.add_argument("--seed", type=int, default=2000, help="held-out seed (training used 0..1000 + k)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", default="proof_world_vae")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.time()
    judge, _ = ShapeColourJudge.load(args.judge)
    indices = list(range(args.n))
    result: dict = {"command": command(), "machine": machine(args.threads), "seed": args.seed, "n": args.n}
    result["judge"] = {"path": args.judge, "ground_truth": {}}
    scenes = {
        name: ShapeScenes(args.n, seed=args.seed + k, min_shapes=1, max_shapes=1, **opts)
        for k, (name, opts) in enumerate(JUDGE_DISTRIBUTIONS.items())
    }
    for name, data in scenes.items():
        result["judge"]["ground_truth"][name] = evaluate_judge(judge, data, indices)
    result["vaes"] = {}
    for path in args.vae:
        vae = AutoencoderKL.from_pretrained(path).eval()
        entry: dict = {"psnr_db": {}, "judge": {}, "kept": {}}
        for world in WORLD_MIX:
            images = render_world(world, min(args.n, 512), args.seed, 32)
            entry["psnr_db"][world] = round(psnr(round_trip(vae, images), images), 2)
        for name, data in scenes.items():
            acc = evaluate_judge(judge, data, indices, transform=lambda x, vae=vae: round_trip(vae, x))
            gt = result["judge"]["ground_truth"][name]
            entry["judge"][name] = acc
            entry["kept"][name] = {
                k: round(acc[f"{k}_accuracy"] / max(gt[f"{k}_accuracy"], 1e-9), 4) for k in ("shape", "colour")
            }
        entry["gates"] = {
            "psnr_30db_every_world": all(v >= PSNR_GATE for v in entry["psnr_db"].values()),
            "kept_95pct_every_distribution": all(min(v.values()) >= KEPT_GATE for v in entry["kept"].values()),
        }
        result["vaes"][path] = entry
    gt = result["judge"]["ground_truth"]
    result["judge"]["gate_98pct_every_distribution"] = all(
        min(v["shape_accuracy"], v["colour_accuracy"]) >= JUDGE_GATE for v in gt.values()
    )
    result["seconds"] = round(time.time() - start, 1)
    write_report(args.name, result, _markdown(result))
    return result


def _markdown(r: dict) -> str:
    md = header("Proof world v2: VAE round trip and judge gates", r)
    md += f"Judge `{r['judge']['path']}` on {r['n']} held-out ground-truth scenes per distribution "
    md += f"(gate >= 98 %: {'met' if r['judge']['gate_98pct_every_distribution'] else 'NOT met'}):\n\n"
    md += "| distribution | shape | colour |\n|---|---|---|\n"
    for name, v in r["judge"]["ground_truth"].items():
        md += f"| {name} | {100 * v['shape_accuracy']:.1f} % | {100 * v['colour_accuracy']:.1f} % |\n"
    for path, e in r["vaes"].items():
        md += f"\n## VAE `{path}`\n\nRound-trip PSNR (gate >= 30 dB): "
        md += ", ".join(f"{w} {v:.2f} dB" for w, v in e["psnr_db"].items()) + ".\n\n"
        md += "| distribution | shape after round trip | kept | colour after round trip | kept |\n|---|---|---|---|---|\n"
        for name, acc in e["judge"].items():
            kept = e["kept"][name]
            md += (
                f"| {name} | {100 * acc['shape_accuracy']:.1f} % | {100 * kept['shape']:.1f} % | "
                f"{100 * acc['colour_accuracy']:.1f} % | {100 * kept['colour']:.1f} % |\n"
            )
        md += f"\nGates: PSNR {'met' if e['gates']['psnr_30db_every_world'] else 'NOT met'}; "
        md += f"kept >= 95 % {'met' if e['gates']['kept_95pct_every_distribution'] else 'NOT met'}.\n"
    return md


if __name__ == "__main__":
    main()
