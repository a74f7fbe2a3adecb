"""CLI: `vadapters train sam_adapter ...` and `vadapters segment ...`."""

from __future__ import annotations

import argparse
import json


def _parse_floats(text: str, n: int, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != n:
        raise SystemExit(f"{what} expects {n} comma-separated numbers, got {text!r}")
    return values


def cmd_train_sam_adapter(args: argparse.Namespace) -> int:
    from vadapters.cli import _parse_sets
    from vadapters.methods.sam_adapter.train import train_sam_adapter

    summary = train_sam_adapter(
        args.sam,
        data=args.data,
        output_dir=args.out,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        loss=args.loss,
        config_overrides=_parse_sets(args.set),
        seed=args.seed,
        num_items=args.num_items,
        val_fraction=args.val_fraction,
        checkpoint_every=args.checkpoint_every,
        validate_every=args.validate_every,
    )
    summary.pop("model", None)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def register_train(tsub) -> list[str]:
    p = tsub.add_parser("sam_adapter", help="SAM-Adapter on a segment-anything SAM (prompts + mask decoder)")
    p.add_argument("--sam", default=None, help="official sam_vit_*.pth, a tiny-sam folder, or omit for the default")
    p.add_argument(
        "--data",
        default="synthetic:camouflage",
        help="folder with images/ + masks/, or synthetic:camouflage|shadow|salient",
    )
    p.add_argument("--out", required=True, help="output folder (adapter, checkpoints, validation, logs)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--loss", choices=("iou", "bbce", "bce"), default="iou", help="bbce for shadows")
    p.add_argument("--set", action="append", default=[], help="SAMAdapterConfig field KEY=VALUE; repeatable")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-items", type=int, default=400, help="number of synthetic scenes")
    p.add_argument("--val-fraction", type=float, default=0.1, help="held-out share of the training data")
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--validate-every", type=int, default=0)
    p.set_defaults(func=cmd_train_sam_adapter)
    return ["sam_adapter"]


def cmd_segment(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from vadapters.core.io import atomic_write
    from vadapters.pipelines.sam import SAMAdapterPredictor

    predictor = SAMAdapterPredictor(args.sam, adapter=args.adapter)
    image = np.asarray(Image.open(args.image).convert("RGB"))
    predictor.set_image(image)
    points = labels = box = None
    if args.point:
        points = np.array([_parse_floats(p, 2, "--point") for p in args.point], dtype=np.float32)
        labels = np.ones(len(points), dtype=np.int64)
    if args.box:
        box = np.array(_parse_floats(args.box, 4, "--box"), dtype=np.float32)
    masks, scores, _ = predictor.predict(points, labels, box, multimask_output=False)
    mask = Image.fromarray(masks[0].astype(np.uint8) * 255)

    def write(fh):
        mask.save(fh, format="PNG")

    atomic_write(args.out, write)
    mode = "prompt-free" if points is None and box is None else "prompted"
    print(f"wrote {args.out} ({mode}; foreground {masks[0].mean():.1%}, predicted IoU {float(scores[0]):.3f})")
    return 0


def register(sub) -> None:
    p = sub.add_parser("segment", help="segment an image with SAM (+ a SAM-Adapter), prompt-free or with points/box")
    p.add_argument("--image", required=True)
    p.add_argument("--adapter", default=None, help="SAM-Adapter folder/file, or an official SAM-Adapter checkpoint")
    p.add_argument("--sam", default=None, help="official sam_vit_*.pth (default: the embedded tiny SAM)")
    p.add_argument("--point", action="append", help="foreground point x,y in pixels; repeatable")
    p.add_argument("--box", default=None, help="box x0,y0,x1,y1 in pixels")
    p.add_argument("--out", required=True, help="output mask PNG")
    p.set_defaults(func=cmd_segment)
