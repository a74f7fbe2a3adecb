"""CLI: `vadapters train mv_adapter ...` (view-set batches on the synthetic 3D objects)."""

from __future__ import annotations

import argparse
import json


def cmd_train_mv_adapter(args: argparse.Namespace) -> int:
    from vadapters.cli import _parse_sets
    from vadapters.methods.mv_adapter.train import train_mv_adapter

    summary = train_mv_adapter(
        pipeline=args.pipeline,
        output_dir=args.out,
        num_items=args.num_items,
        num_views=args.num_views,
        elevation=args.elevation,
        resolutions=args.resolutions,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        config_overrides=_parse_sets(args.set),
        caption_dropout=args.caption_dropout,
        condition_dropout=args.condition_dropout,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        validate_every=args.validate_every,
        lr_warmup_steps=args.warmup_steps,
    )
    print(json.dumps(summary, indent=2, default=str))
    return 0


def register_train(tsub) -> list[str]:
    p = tsub.add_parser("mv_adapter", help="MV-Adapter: multi-view attention + camera encoder on view sets")
    p.add_argument("--pipeline", default=None, help="local diffusers SD pipeline folder; omit for the tiny default")
    p.add_argument("--out", required=True, help="output folder (adapter, checkpoints, validation, logs)")
    p.add_argument("--num-items", type=int, default=200, help="number of synthetic 3D objects")
    p.add_argument("--num-views", type=int, default=6, help="views per object (6: azimuths 0,45,90,180,270,315)")
    p.add_argument("--elevation", type=float, default=0.0, help="camera elevation in degrees")
    p.add_argument("--resolutions", default="16", help="pixel sizes, e.g. '16' or '16,24x32'")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=2, help="objects per batch (x num-views images)")
    p.add_argument("--lr", type=float, default=5e-5, help="AdamW learning rate (official: 5e-5)")
    p.add_argument("--warmup-steps", type=int, default=0, help="linear learning-rate warm-up steps")
    p.add_argument("--caption-dropout", type=float, default=0.1)
    p.add_argument("--condition-dropout", type=float, default=0.1, help="also drops the prompt (as official)")
    p.add_argument("--set", action="append", default=[], help="MVAdapterConfig field KEY=VALUE; repeatable")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--validate-every", type=int, default=0)
    p.set_defaults(func=cmd_train_mv_adapter)
    return ["mv_adapter"]
