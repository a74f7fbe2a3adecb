"""CLI: `vadapters train mv_adapter ...` (view-set batches on the synthetic 3D objects)."""

from __future__ import annotations

import argparse

from vadapters.commands.options import add_training_arguments, run_training


def cmd_train_mv_adapter(args: argparse.Namespace) -> int:
    options = ("num_items", "num_views", "elevation", "resolutions", "caption_dropout", "condition_dropout")
    options += ("reference_dropout", "reference", "drop_camera_maps", "snr_gamma", "noise_shift")
    return run_training("mv_adapter", args, *options)


def _optional_float(text: str) -> float | None:
    return None if text.strip().lower() in ("none", "off") else float(text)


def register_train(tsub) -> list[str]:
    p = tsub.add_parser("mv_adapter", help="MV-Adapter: multi-view attention + camera encoder on view sets")
    base = ("--pipeline", "local diffusers SD pipeline folder; omit for the tiny default")
    add_training_arguments(p, base=base, data=None, batch_size=2, lr=5e-5, config="MVAdapterConfig")
    p.add_argument("--num-items", type=int, default=200, help="number of synthetic 3D objects")
    p.add_argument("--num-views", type=int, default=6, help="views per object (6: azimuths 0,45,90,180,270,315)")
    p.add_argument("--elevation", type=float, default=0.0, help="camera elevation in degrees")
    p.add_argument("--resolutions", default="16", help="pixel sizes, e.g. '16' or '16,24x32'")
    p.add_argument("--caption-dropout", type=float, default=0.1)
    p.add_argument("--condition-dropout", type=float, default=0.1, help="drops prompt and reference (official)")
    p.add_argument("--reference-dropout", type=float, default=0.1, help="with use_ref: a zero reference")
    p.add_argument("--reference", choices=("random_view", "first_view"), default="random_view",
                   help="reference image: a separately rendered view (official) or the first target view")  # fmt: skip
    p.add_argument("--drop-camera-maps", action="store_true", help="zero the camera maps with a dropped condition "
                   "(the recipe before issue 19; official keeps them)")  # fmt: skip
    p.add_argument(
        "--snr-gamma", type=_optional_float, default=5.0, help="Min-SNR gamma (official 5; none: plain MSE)"
    )
    p.add_argument("--noise-shift", type=_optional_float, default=8.0,
                   help="shifted-SNR training noise scale (official 8; none: the pipeline's schedule)")  # fmt: skip
    p.set_defaults(func=cmd_train_mv_adapter)
    return ["mv_adapter"]
