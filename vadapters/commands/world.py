"""`vadapters train-base` for the proof world v2 bases: tiny-world-vae, tiny-clip, tiny-sd-v2, judge-shape-colour-v2.

Each run goes to `--out` (default `outputs/train-base/NAME`, resumable: re-run the same command); `--install` then
copies the result into `weights/NAME` and records it in the manifest (command, seed, machine, time, metrics).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from typing import Any

__all__ = ["WORLD_BASES", "train_world_base"]

WORLD_BASES = ("tiny-world-vae", "tiny-clip", "tiny-sd-v2", "judge-shape-colour-v2")


def _install(name: str, produced: str, args: argparse.Namespace, seconds: float, metrics: dict[str, Any]) -> str:
    """Copy `produced` (a folder) to `weights/NAME` atomically and record its manifest entry."""
    from vadapters.models.weights import record_entry, weights_dir

    target = weights_dir() / name
    tmp = weights_dir() / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(produced, tmp, ignore=shutil.ignore_patterns("checkpoint*", "*.pt", "train_log.jsonl"))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    record_entry(
        name,
        command="vadapters " + " ".join(sys.argv[1:])
        if sys.argv[1:2] == ["train-base"]
        else f"vadapters train-base {name}",
        seed=args.seed,
        train_seconds=seconds,
        metrics=metrics,
    )
    return str(target)


def _parse_mix(text: str | None) -> dict[str, float] | None:
    """`scenes_small=0.6,scenes_large=0.2` -> `{"scenes_small": 0.6, "scenes_large": 0.2}` (None when not given)."""
    if not text:
        return None
    from vadapters.errors import BadInputError

    try:
        return {k.strip(): float(v) for k, v in (part.split("=") for part in text.split(","))}
    except ValueError as exc:
        raise BadInputError(f"--mix takes WORLD=SHARE pairs separated by commas, got {text!r}") from exc


def train_world_base(args: argparse.Namespace) -> int:
    """Run one v2 base training from the parsed `train-base` arguments; prints the summary as JSON."""
    out = args.out or os.path.join("outputs", "train-base", args.name)
    items = {"num_items": args.num_items} if args.num_items else {}
    start = time.time()
    if args.name == "tiny-world-vae":
        from vadapters.train.base_vae import train_world_vae

        summary = train_world_vae(
            out, steps=args.steps or 4000, batch_size=args.batch_size or 64,
            learning_rate=args.lr if args.lr is not None else 5e-4, resolution=args.resolution, seed=args.seed,
            init=args.init, edge_weight=args.edge_weight, checkpoint_every=args.checkpoint_every,
            decoder_only=getattr(args, "decoder_only", False), mix=_parse_mix(getattr(args, "mix", None)), **items,
        )  # fmt: skip
        produced, metrics = summary["vae"], {"held_out_psnr_db": summary["psnr_db"]}
    elif args.name == "tiny-clip":
        from vadapters.train.base_clip import train_tiny_clip

        summary = train_tiny_clip(
            out, steps=args.steps or 3000, batch_size=args.batch_size or 256,
            learning_rate=args.lr if args.lr is not None else 1e-3, seed=args.seed, init=args.init,
            motion_group=getattr(args, "motion_group", 0), **items,
        )  # fmt: skip
        produced, metrics = out, summary["metrics"]
    elif args.name == "tiny-sd-v2":
        from vadapters.train.base_world import train_tiny_sd_v2

        summary = train_tiny_sd_v2(
            out, vae=args.vae or "weights/tiny-world-vae", clip=args.clip or "weights/tiny-clip",
            steps=args.steps or 8000, batch_size=args.batch_size or 32,
            learning_rate=args.lr if args.lr is not None else 5e-4, resolution=args.resolution, seed=args.seed,
            checkpoint_every=args.checkpoint_every, validate_every=args.validate_every, init=args.init, **items,
        )  # fmt: skip
        produced, metrics = summary["pipeline"], {"final_loss": summary["train"].get("final_loss")}
    else:
        from vadapters.metrics.judges import JUDGE_DISTRIBUTIONS, train_shape_colour_judge

        produced = out
        metrics = train_shape_colour_judge(
            out, steps=args.steps or 1500, batch_size=args.batch_size or 128,
            learning_rate=args.lr if args.lr is not None else 2e-3, seed=args.seed,
            distributions=JUDGE_DISTRIBUTIONS, augment=True, width=48, **items,
        )  # fmt: skip
        summary = {"held_out_ground_truth": metrics}
    if args.install:
        summary["installed"] = _install(args.name, produced, args, time.time() - start, metrics)
    print(json.dumps(summary, indent=2, default=str))
    return 0
