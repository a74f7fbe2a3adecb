"""SAM-Adapter on the embedded tiny SAM: zero-shot vs decoder-only vs SAM-Adapter vs HFC-only vs embedding-only vs
full fine-tuning, equal steps and learning rate, several seeds, on camouflage and shadow scenes; plus trainable
ratio, training step time, encoder inference overhead (tiny and one real-size ViT-B forward, random weights).

Usage:
    python benchmarks/sam_adapter_benchmark.py            # full: 3 seeds, 300 steps per arm
    python benchmarks/sam_adapter_benchmark.py --quick    # smoke run (< 2 min on 2 CPU cores)

Without trained embedded weights (`weights/tiny-sam`), the base SAM is first trained in full on salient scenes
(the source domain), then frozen; the adaptation arms train on camouflage / shadow scenes and are scored on a
separate test set (another seed), never used for validation. Writes benchmarks/results/sam_adapter[_quick].{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import sys
import tempfile
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VADAPTERS_NO_PROGRESS", "1")

ARMS = {  # name -> (mode, SAMAdapterConfig overrides); scale_factor 4 on the 32-wide tiny encoder (C/32 = 1)
    "decoder_only": ("adapter", {"use_embedding": False, "use_hfc": False}),
    "sam_adapter": ("adapter", {"scale_factor": 4}),
    "hfc_only": ("adapter", {"scale_factor": 4, "use_embedding": False}),
    "embedding_only": ("adapter", {"scale_factor": 4, "use_hfc": False}),
    "full_finetune": ("full", {}),
}
DOMAINS = {"camouflage": "iou", "shadow": "bbce"}
METRICS = ("S", "E", "wF", "MAE", "BER", "mIoU")


def base_sam(args, workdir):
    import torch

    from vadapters.errors import CheckpointError
    from vadapters.models import load_default_sam, tiny_sam
    from vadapters.train import train_adapter

    try:
        return load_default_sam(), "embedded weights/tiny-sam"
    except CheckpointError:
        pass
    sam = tiny_sam(seed=0)
    summary = train_adapter(
        "sam_adapter",
        base=sam,
        data="synthetic:salient",
        output_dir=os.path.join(workdir, "base"),
        steps=args.base_steps,
        batch_size=args.batch_size,
        learning_rate=1e-3,
        num_items=args.num_items,
        mode="full",
        seed=0,
        checkpoint_every=0,
    )
    sam.requires_grad_(False).eval()
    torch.manual_seed(0)
    return sam, f"tiny_sam trained here in full on salient scenes ({args.base_steps} steps): {summary['validation']}"


def overhead(sam_factory, config, x, repeats):
    """Min-of-`repeats` encoder time with the adapter disabled vs enabled, alternated on one model (shared CPU)."""
    import torch

    import vadapters

    sam = sam_factory()
    vadapters.inject(sam, config)
    with torch.no_grad():  # non-zero prompts: the real cost
        for p in vadapters.get_method("sam_adapter").injector_cls().adapter_parameters(sam, "sam_adapter"):
            p.add_(torch.randn_like(p) * 0.02)
    plain, adapted = [], []
    with torch.no_grad():
        sam.image_encoder(x)
        for _ in range(repeats):
            for times, enabled in ((plain, False), (adapted, True)):
                with vadapters.disabled(sam) if not enabled else contextlib.nullcontext():
                    start = time.perf_counter()
                    sam.image_encoder(x)
                    times.append(time.perf_counter() - start)
    a, b = min(plain), min(adapted)
    return {"sam_seconds": round(a, 5), "adapted_seconds": round(b, 5), "overhead": round(b / a - 1, 4)}


def main() -> None:
    import numpy as np
    import torch

    from vadapters.methods.sam_adapter import SAMAdapterConfig
    from vadapters.methods.sam_adapter.data import SAMSegmentationDataset, make_segmentation_source
    from vadapters.methods.sam_adapter.train import evaluate
    from vadapters.train import train_adapter

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--base-steps", type=int, default=None)
    parser.add_argument("--num-items", type=int, default=None)
    parser.add_argument("--test-items", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-vit-b", action="store_true", help="skip the real-size ViT-B overhead measurement")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args()
    q = args.quick
    args.seeds = args.seeds or (1 if q else 3)
    args.steps = args.steps or (3 if q else 300)
    args.base_steps = args.base_steps or (3 if q else 1500)
    args.num_items = args.num_items or (12 if q else 600)
    args.test_items = args.test_items or (4 if q else 200)
    args.batch_size = 4 if q else args.batch_size
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    start = time.time()
    workdir = tempfile.mkdtemp(prefix="sam_adapter_bench_")
    base, base_note = base_sam(args, workdir)
    total = sum(p.numel() for p in base.parameters())
    results: dict = {}
    for domain, loss in DOMAINS.items():
        size = (base.image_encoder.img_size,) * 2
        test = SAMSegmentationDataset(
            make_segmentation_source(f"synthetic:{domain}", num_items=args.test_items, seed=999, size=size), base
        )
        rows = {"zero_shot": {"metrics": [evaluate(base, test)], "trainable_ratio": 0.0}}
        for arm, (mode, overrides) in ARMS.items():
            runs = []
            for seed in range(args.seeds):
                sam = copy.deepcopy(base)
                torch.manual_seed(seed)
                summary = train_adapter(
                    "sam_adapter",
                    base=sam,
                    data=f"synthetic:{domain}",
                    output_dir=os.path.join(workdir, domain, arm, str(seed)),
                    steps=args.steps,
                    batch_size=args.batch_size,
                    learning_rate=args.lr,
                    loss=loss,
                    config_overrides=overrides,
                    seed=100 + seed,
                    num_items=args.num_items,
                    mode=mode,
                    checkpoint_every=0,
                )
                runs.append(
                    {
                        **evaluate(sam, test),
                        "sec_per_step": summary["sec_per_step"],
                        "trainable": summary["trainable_parameters"],
                    }
                )
            rows[arm] = {
                "metrics": runs,
                "trainable_ratio": runs[0]["trainable"] / total,
                "sec_per_step": float(np.mean([r["sec_per_step"] for r in runs])),
            }
        for row in rows.values():
            ms = row["metrics"]
            row["mean"] = {k: float(np.mean([m[k] for m in ms])) for k in METRICS}
            row["std"] = {k: float(np.std([m[k] for m in ms])) for k in METRICS}
        results[domain] = rows
    x = torch.randn(8, 3, base.image_encoder.img_size, base.image_encoder.img_size)
    tiny_overhead = overhead(lambda: copy.deepcopy(base), SAMAdapterConfig(scale_factor=4), x, 5 if q else 30)
    vit_b = "skipped (--quick or --skip-vit-b)"
    if not (q or args.skip_vit_b):
        from vadapters.models import sam_vit

        vit_b = overhead(
            lambda: sam_vit("vit_b", device="cpu", seed=0), SAMAdapterConfig(), torch.randn(1, 3, 1024, 1024), 2
        )
    report = {
        "command": " ".join(["python", *sys.argv]),
        "seeds": list(range(args.seeds)),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {args.threads} threads, torch {torch.__version__}",
        "settings": {
            k: getattr(args, k) for k in ("steps", "base_steps", "num_items", "test_items", "batch_size", "lr")
        },
        "base": base_note,
        "total_parameters": total,
        "results": results,
        "inference_overhead_tiny_batch8": tiny_overhead,
        "inference_overhead_vit_b_1024": vit_b,
        "seconds": round(time.time() - start, 1),
    }
    os.makedirs(args.out, exist_ok=True)
    name = "sam_adapter_quick" if q else "sam_adapter"
    with open(os.path.join(args.out, f"{name}.json"), "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2, default=str)
    lines = [
        f"# SAM-Adapter benchmark{' (quick smoke run, not a result)' if q else ''}",
        "",
        f"`{report['command']}` - {report['machine']} - {report['seconds']} s",
        "",
        f"Base: {base_note}",
        "",
    ]
    for domain, rows in results.items():
        lines += [
            f"## {domain} (test set: seed 999, {args.test_items} scenes; mean +- std over {args.seeds} seed(s))",
            "",
            "| arm | S | E | wF | MAE | BER % | mIoU | trainable % | s/step |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for arm, row in rows.items():
            m, s = row["mean"], row["std"]
            cells = [f"{m[k]:.3f} +- {s[k]:.3f}" for k in METRICS]
            step = f"{row['sec_per_step']:.3f}" if "sec_per_step" in row else "-"
            lines.append(f"| {arm} | " + " | ".join(cells) + f" | {100 * row['trainable_ratio']:.2f} | {step} |")
        lines.append("")
    lines += [
        f"Encoder inference overhead (tiny, batch 8): {tiny_overhead}",
        "",
        f"Encoder inference overhead (real-size ViT-B, 1024 px, random weights): {vit_b}",
        "",
    ]
    with open(os.path.join(args.out, f"{name}.md"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
