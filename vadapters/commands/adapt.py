"""`vadapters adapt`: run a test-time adaptation method over a corrupted stream and print per-domain error.

Example (shell):
    vadapters adapt --model vit --method vdp --stream continual --corruptions standard --severity 5 --batch-size 64
    vadapters adapt --model cnn --method lame --stream non-iid --set affinity=rbf --out run.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from vadapters.commands.options import parse_sets


def _options(items: list[str]) -> dict[str, Any]:
    return {key.replace("-", "_"): value for key, value in parse_sets(items).items()}


def cmd_adapt(args: argparse.Namespace) -> int:
    import platform

    import torch

    from vadapters.core.io import atomic_write_text
    from vadapters.tta import build_method
    from vadapters.tta.runner import error_table, load_classifier, make_stream, run_stream

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_classifier(args.model)
    if args.device:
        model = model.to(args.device)
    corruptions = "standard" if args.corruptions == "standard" else [c for c in args.corruptions.split(",") if c]
    batches = make_stream(
        args.stream,
        corruptions=corruptions,
        severity=args.severity,
        batch_size=args.batch_size,
        seed=args.seed,
        order=args.order,
        repeats=args.repeats,
        num_samples=args.num_samples,
        dataset=args.dataset,
        cache_dir=args.cache_dir,
    )
    options = _options(args.set)
    if args.episodic:
        options["episodic"] = True
    options.setdefault("seed", args.seed)
    method = build_method(args.method, model, **options)
    result = run_stream(method, batches, progress=not args.no_progress, measure_memory=args.memory)
    table = error_table({args.method: result})
    print(table)
    print(
        f"mean error {100 * result.mean_error:.2f} %, {1000 * result.seconds_per_batch:.1f} ms/batch, "
        f"{len(batches)} batches, {result.seconds:.1f} s"
        + (f", peak {result.peak_memory_bytes / 2**20:.1f} MiB" if result.peak_memory_bytes is not None else "")
    )
    if args.out:
        record = {
            "command": "vadapters adapt "
            + " ".join(sys.argv[sys.argv.index("adapt") + 1 :] if "adapt" in sys.argv else []),
            "model": args.model,
            "stream": {
                "kind": args.stream,
                "corruptions": corruptions,
                "severity": args.severity,
                "batch_size": args.batch_size,
                "seed": args.seed,
                "order": args.order,
                "repeats": args.repeats,
                "num_samples": args.num_samples,
                "dataset": args.dataset,
            },
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
            "created": time.strftime("%Y-%m-%d %H:%M"),
            "result": result.to_dict(),
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


def register(sub: Any) -> None:
    """Add `vadapters adapt`."""
    from vadapters.tta import METHODS
    from vadapters.tta.runner import DATASETS, STREAMS

    p = sub.add_parser("adapt", help="test-time adaptation over a corrupted stream (LAME, VDP, TENT, CoTTA, ...)")
    p.add_argument(
        "--model",
        default="cnn",
        help="cnn | vit (embedded defaults), a classifier folder, a timm model with pretrained weights "
        "(resnet18.a1_in1k, ORG/NAME: through the Hugging Face cache), or tiny:NAME",
    )
    p.add_argument("--method", choices=tuple(METHODS), default="lame")
    p.add_argument("--stream", choices=STREAMS, default="continual")
    p.add_argument("--corruptions", default="standard", help="'standard' (the 15) or a comma list, 'clean' allowed")
    p.add_argument("--severity", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-samples", type=int, default=1000, help="images per domain (held-out ShapeClasses)")
    p.add_argument("--dataset", choices=DATASETS, default="shapes")
    p.add_argument("--order", choices=("standard", "random"), default="standard", help="corruption order")
    p.add_argument("--repeats", type=int, default=1, help="passes over the domains (2 = revisit for forgetting)")
    p.add_argument("--episodic", action="store_true", help="reset the method before every batch")
    p.add_argument(
        "--set", action="append", default=[], help="method option KEY=VALUE (e.g. affinity=rbf); repeatable"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="torch device (default: cpu)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--cache-dir", default=None, help="cache corrupted images here")
    p.add_argument("--out", default=None, help="write the result JSON here")
    p.add_argument("--memory", action="store_true", help="also record peak memory per batch")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_adapt)
