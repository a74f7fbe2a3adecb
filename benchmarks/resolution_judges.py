"""Ground-truth accuracy of the judges the ResAdapter resolution benchmark uses, at each of its sizes (issue 19).

1. The object counter (`vadapters.metrics.counting.count_objects`) on rendered flat-ground scenes with a known number
   of visible shapes: one large shape (the base's distribution, what the benchmark's captions ask for), 1-3 large
   shapes, 1-3 small shapes; each as rendered, mildly degraded (`vadapters.metrics.judges.degrade`: blur and grain,
   what generated images show) and through the pipeline's VAE (encode mean, decode: what every generated image
   passes).
2. The shape / colour judge (default `weights/judge-shape-colour-v2`) on one large shape per scene at each size, read
   with each framing of `vadapters.metrics.framing` (letterbox, centre crop, squash), as rendered and through the VAE.

The counter's settings were chosen on other scenes (seed 7); the scenes here come from `--seed` (default 2024).

Usage:
    python benchmarks/resolution_judges.py [--pipeline DIR | --vae VAE_DIR] [--n 300] [--threads 1]
    python benchmarks/resolution_judges.py --quick     # a few scenes per cell: checks that it runs

Writes benchmarks/results/resolution_judges[_quick].json and .md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _report import command, header, machine, write_report  # noqa: E402 (sibling module, after the env)
from _resolution_scoring import SIZES, base_scenes, parse_sizes, pct, size_name, vae_round_trip  # noqa: E402

COUNT_DISTRIBUTIONS = {
    "one_large": {"min_shapes": 1, "max_shapes": 1},
    "1-3_large": {"min_shapes": 1, "max_shapes": 3},
    "1-3_small": {"min_shapes": 1, "max_shapes": 3, "min_size": 0.2, "max_size": 0.45},
}


def counter_accuracy(n: int, seed: int, sizes, transforms: dict) -> dict:
    from vadapters.metrics.counting import COUNTER_DEFAULTS, count_accuracy

    out = {"settings": dict(COUNTER_DEFAULTS), "cells": {}}
    for k, (dist, options) in enumerate(COUNT_DISTRIBUTIONS.items()):
        scenes = base_scenes(n, seed + k, **options)
        for size in sizes:
            for tname, transform in transforms.items():
                cell = count_accuracy(scenes, range(n), *size, transform=transform)
                out["cells"][f"{dist}|{size_name(size)}|{tname}"] = cell
                print(f"count {dist:10s} {size_name(size):6s} {tname:8s} {cell['accuracy']:.3f}", flush=True)
    return out


def judge_accuracy(judge, config: dict, n: int, seed: int, sizes, transforms: dict) -> dict:
    import torch

    from vadapters.metrics.framing import FRAMINGS, judge_view

    scenes = base_scenes(n, seed + 10)
    shape_idx = torch.tensor([config["shapes"].index(scenes.scene(i)["shapes"][0]["shape"]) for i in range(n)])
    colour_idx = torch.tensor([config["colours"].index(scenes.scene(i)["shapes"][0]["colour"]) for i in range(n)])
    cells = {}
    for size in sizes:
        images = torch.stack([scenes.render(i, *size)["image"] for i in range(n)])
        for tname, transform in transforms.items():
            x = images if transform is None else transform(images)
            for framing in FRAMINGS if size[0] != size[1] else ("letterbox",):
                with torch.no_grad():
                    s, c = judge(judge_view(x, framing))
                ok_s, ok_c = s.argmax(1) == shape_idx, c.argmax(1) == colour_idx
                cells[f"{size_name(size)}|{tname}|{framing}"] = {
                    "shape": round(float(ok_s.float().mean()), 4),
                    "colour": round(float(ok_c.float().mean()), 4),
                    "both": round(float((ok_s & ok_c).float().mean()), 4),
                    "n": n,
                }
                cell = cells[f"{size_name(size)}|{tname}|{framing}"]
                print(f"judge {size_name(size):6s} {tname:8s} {framing:12s} {cell['both']:.3f}", flush=True)
    return {"cells": cells}


def markdown(name: str, result: dict) -> str:
    sizes = result["sizes"]
    lines = [header(name, result).rstrip("\n"), ""]
    lines += [
        f"Pipeline (its VAE): {result['pipeline']}; judge `{result['judge']}`; {result['n']} scenes per cell, seed "
        f"{result['seed']} (the counter's settings were chosen on seed 7). Accuracy in %.",
        "",
        "## Object counter: exact count on rendered flat-ground scenes",
        "",
        f"Settings: `{result['counter']['settings']}`. Columns: as rendered / degraded (blur, grain) / VAE round trip.",
        "",
        "| scenes | " + " | ".join(sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    cells = result["counter"]["cells"]
    for dist in COUNT_DISTRIBUTIONS:
        row = [" / ".join(pct(cells[f"{dist}|{s}|{t}"]["accuracy"]) for t in result["transforms"]) for s in sizes]
        lines.append(f"| {dist} | " + " | ".join(row) + " |")
    lines += [
        "",
        "## Shape / colour judge on one large shape (both right, %), by framing of non-square sizes",
        "",
        "| size | "
        + " | ".join(f"{t}: letterbox / centre crop / squash" for t in result["transforms"] if t != "degraded")
        + " |",
        "|---|" + "---|" * sum(t != "degraded" for t in result["transforms"]),
    ]
    jc = result["judge_accuracy"]["cells"]
    for s in sizes:
        row = []
        for t in result["transforms"]:
            if t == "degraded":
                continue
            frames = ("letterbox", "centre_crop", "squash") if "x" in s else ("letterbox",)
            row.append(" / ".join(pct(jc[f"{s}|{t}|{f}"]["both"]) for f in frames))
        lines.append(f"| {s} | " + " | ".join(row) + " |")
    lines += [
        "",
        "Square sizes are resized to 32 px (every framing is the same there). The benchmark reads non-square images "
        "letterboxed: nothing is cut off (a centre crop would hide shapes and duplicates away from the centre) and "
        "nothing is distorted (squashing makes circles ellipses).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    import torch

    from vadapters.metrics.judges import ShapeColourJudge, degrade
    from vadapters.pipelines import load_pipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pipeline", default=None, help="diffusers folder whose VAE to use (default: embedded tiny-sd)"
    )
    parser.add_argument("--vae", default=None, help="an AutoencoderKL folder instead of the pipeline's VAE")
    parser.add_argument("--judge", default="weights/judge-shape-colour-v2")
    parser.add_argument("--sizes", default=",".join(size_name(s) for s in SIZES))
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--name", default=None)
    parser.add_argument("--out", default="benchmarks/results", help="folder of the result files")
    args = parser.parse_args(argv)
    n = args.n or (8 if args.quick else 300)
    name = args.name or ("resolution_judges_quick" if args.quick else "resolution_judges")
    torch.set_num_threads(args.threads)
    start = time.time()
    sizes = parse_sizes(args.sizes)
    if args.vae:
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_pretrained(args.vae).eval()
    else:
        vae = load_pipeline(args.pipeline).vae
    g = torch.Generator().manual_seed(args.seed)
    transforms = {"rendered": None, "degraded": lambda x: degrade(x, g), "vae": vae_round_trip(vae)}
    judge, config = ShapeColourJudge.load(args.judge)
    result = {
        "command": command() if argv is None else "main(" + " ".join(argv) + ")",
        "machine": machine(args.threads),
        "pipeline": args.vae or args.pipeline or "embedded tiny-sd",
        "judge": args.judge,
        "n": n,
        "seed": args.seed,
        "sizes": [size_name(s) for s in sizes],
        "transforms": list(transforms),
        "counter": counter_accuracy(n, args.seed, sizes, transforms),
        "judge_accuracy": judge_accuracy(
            judge, config, n, args.seed, sizes, {k: v for k, v in transforms.items() if k != "degraded"}
        ),
    }
    result["seconds"] = round(time.time() - start, 1)
    write_report(name, result, markdown(name, result), folder=args.out)
    return result


if __name__ == "__main__":
    main()
