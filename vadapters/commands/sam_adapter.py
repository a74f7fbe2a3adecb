"""CLI: `vadapters train sam_adapter ...` and `vadapters segment ...`."""

from __future__ import annotations

import argparse

from vadapters.commands.options import add_training_arguments, run_training


def _parse_floats(text: str, n: int, what: str) -> list[float]:
    from vadapters.errors import BadInputError

    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != n:
        raise BadInputError(f"{what} expects {n} comma-separated numbers, got {text!r}")
    return values


def cmd_train_sam_adapter(args: argparse.Namespace) -> int:
    return run_training("sam_adapter", args, "loss", "num_items", "val_fraction")


def register_train(tsub) -> list[str]:
    p = tsub.add_parser("sam_adapter", help="SAM-Adapter on a segment-anything SAM (prompts + mask decoder)")
    base = ("--sam", "vit_b | vit_l | vit_h (official, cached), a sam_vit_*.pth, a tiny-sam folder; omit: default")
    data = (
        "synthetic:camouflage",
        "folder with images/ + masks/, or synthetic:camouflage|camouflage-texture|shadow|salient",
    )
    add_training_arguments(p, base=base, data=data, batch_size=4, lr=2e-4, config="SAMAdapterConfig")
    p.add_argument("--loss", choices=("iou", "bbce", "bce"), default="iou", help="bbce for shadows")
    p.add_argument("--num-items", type=int, default=400, help="number of synthetic scenes")
    p.add_argument("--val-fraction", type=float, default=0.1, help="held-out share of the training data")
    p.set_defaults(func=cmd_train_sam_adapter)
    return ["sam_adapter"]


def cmd_segment(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from vadapters.core.images import load_image
    from vadapters.core.io import atomic_write
    from vadapters.core.validation import check_box, check_points
    from vadapters.pipelines.sam import SAMAdapterPredictor

    image = load_image(args.image, name="--image")  # every input is checked before a model loads
    height, width = image.shape[:2]
    points = labels = box = None
    if args.point:
        points = np.array([_parse_floats(p, 2, "--point") for p in args.point], dtype=np.float32)
        points, labels = check_points(points, np.ones(len(points), dtype=np.int64), height, width)
    if args.box:
        box = check_box(_parse_floats(args.box, 4, "--box"), height, width)
    predictor = SAMAdapterPredictor(args.sam, adapter=args.adapter)
    predictor.set_image(image)
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
    p.add_argument(
        "--sam", default=None, help="vit_b | vit_l | vit_h (official, cached), a sam_vit_*.pth (default: the tiny SAM)"
    )
    p.add_argument("--point", action="append", help="foreground point x,y in pixels; repeatable")
    p.add_argument("--box", default=None, help="box x0,y0,x1,y1 in pixels")
    p.add_argument("--out", required=True, help="output mask PNG")
    p.set_defaults(func=cmd_segment)
