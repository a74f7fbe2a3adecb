"""VDP gate benchmark (issue 19): visual domain prompts vs source, TENT and CoTTA on the embedded LayerNorm ViT,
continual test-time adaptation at severity 3 and 5, every learning rate chosen on a validation stream.

Gate: "VDP: continual gain over source on the LN ViT at severity 3 and 5". Protocol, the same for every arm:

1. Validation stream (never scored as a result): `ShapeClasses(--val-samples, seed=--val-images-seed)` (images the
   test never sees; the classifier trained on seed 0, the test split is seed 1000), the 15 corruptions with
   corruption seed `--val-seed`, in that seed's random order. Each arm runs once per lr of its grid (`LRS`: its
   default lr x 0.1, 0.3, 1, 3, 10; or `--lrs ARM=a,b,c`); the arm keeps the lr with the lowest mean error (ties:
   the smaller lr). CoTTA's anchor
   threshold is the maintainers' rule (5 % quantile of clean confidence - 0.05) on the validation images.
2. Test: the held-out set (`ShapeClasses(--num-samples, seed=1000)`) at corruption seeds 0..`--seeds`-1, each seed
   its own random domain order, one pass (continual, no reset), batch `--batch-size`. Error = the mean over the 15
   domains of the per-domain error (CoTTA's "mean error"); mean +- sample std (ddof 1) over the seeds.
3. Gate per severity: source's mean error - VDP's >= 3 x the larger of the two sample stds (and > 0). The paired
   per-seed gain (same stream) is reported too.

Every run is cached as one JSON file under `--cache` (settings/severity/phase/arm/lr/seed): a stopped benchmark
resumes where it stopped, and `--report-only` rebuilds the report from what is cached (what is missing is named).

Usage:
    python benchmarks/vdp_benchmark.py --threads 1                   # sweep + test, severity 3 and 5
    python benchmarks/vdp_benchmark.py --report-only                 # the report from the cache
    python benchmarks/vdp_benchmark.py --quick                       # smoke run, < 1 minute (not a result)

Writes benchmarks/results/vdp_benchmark[_quick].{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VADAPTERS_NO_PROGRESS", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _fairness import choose, gate, gate_line, nanmean, std  # noqa: E402 (sibling module, after the env)
from _report import command, machine, write_report  # noqa: E402

ARMS = {  # name -> (method, options); no flips: the shapes' classes are flip-invariant, but keep CoTTA/VDP alike
    "tent": ("tent", {}),
    "cotta": ("cotta", {"hflip": False}),
    "vdp": ("vdp", {"hflip": False}),
    "vdp_full": ("vdp", {"hflip": False, "prompt": "full"}),  # diagnostic: a whole-image prompt (not the paper's)
}
GRID = (0.1, 0.3, 1.0, 3.0, 10.0)  # x each arm's default lr: the same five-point, two-decade sweep for every arm
DEFAULT_LR = {"tent": 1e-3, "cotta": 1e-3, "vdp": 1e-2, "vdp_full": 1e-2}  # TENTConfig / CoTTAConfig / VDPConfig
LRS = {arm: [float(f"{lr * k:.3g}") for k in GRID] for arm, lr in DEFAULT_LR.items()}


def _mean_std(values: list[float]) -> dict:
    return {"mean": nanmean(values), "std": std(values)}


def settings_tag(args) -> str:
    return f"n{args.num_samples}-v{args.val_samples}-b{args.batch_size}-{len(args.corruptions)}dom"


def build_streams(args, severity: int) -> dict:
    """`{"val": stream, 0: stream, 1: ...}` for one severity (corruptions cached under --corruption-cache)."""
    from vadapters.synthetic.classification import ShapeClasses
    from vadapters.tta.runner import make_stream

    common = {"corruptions": args.corruptions, "severity": severity, "batch_size": args.batch_size, "repeats": 1,
              "cache_dir": args.corruption_cache, "order": "random"}  # fmt: skip
    val_data = ShapeClasses(args.val_samples, seed=args.val_images_seed)
    streams = {"val": make_stream("continual", seed=args.val_seed, dataset=val_data, **common)}
    for seed in range(args.seeds):
        streams[seed] = make_stream("continual", seed=seed, num_samples=args.num_samples, **common)
    return streams


def run_one(model, args, severity: int, phase: str, arm: str, lr: float | None, seed, streams, ap: float, log):
    """One stream run of one arm (cached as JSON); `None` under --report-only when it is not cached."""
    import torch

    from vadapters.core.io import atomic_write_text
    from vadapters.tta import build_method
    from vadapters.tta.runner import run_stream

    lr_tag = "none" if lr is None else f"{lr:g}"
    path = os.path.join(
        args.cache, settings_tag(args), f"sev{severity}", phase, arm, f"lr{lr_tag}", f"seed{seed}.json"
    )
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    if args.report_only:
        return None
    if streams.get("_severity") != severity:
        streams.clear()
        streams.update(build_streams(args, severity), _severity=severity)
    name, options = ("source", {}) if arm == "source" else ARMS[arm]
    options = dict(options)
    if lr is not None:
        options["lr"] = lr
    if name == "cotta":
        options["ap"] = ap
    if name in ("cotta", "vdp") and args.n_aug is not None:
        options["n_aug"] = args.n_aug
    stream_seed = args.val_seed if phase == "val" else seed
    torch.manual_seed(stream_seed)
    method = build_method(name, model, seed=stream_seed, **options)
    result = run_stream(method, streams["val" if phase == "val" else seed], progress=False)
    out = {
        "severity": severity, "phase": phase, "arm": arm, "lr": lr, "seed": seed, "stream_seed": stream_seed,
        "mean_error": result.mean_error, "domains": {s["domain"]: s["error"] for s in result.segments},
        "order": [s["domain"] for s in result.segments], "seconds": round(result.seconds, 2),
        "seconds_per_batch": result.seconds_per_batch, "batches": len(result.batch_seconds), "config": result.config,
    }  # fmt: skip
    for attr in ("domain_changes", "augmented_batches"):
        if hasattr(method, attr):
            out[attr] = getattr(method, attr)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_text(path, json.dumps(out, indent=1) + "\n")
    log(f"sev {severity} {phase:<4} {arm:<8} lr {lr_tag:<7} seed {seed}: {100 * out['mean_error']:.2f} % "
        f"({out['seconds']:.0f} s)")  # fmt: skip
    return out


def clean_error(model, args) -> dict:
    """Source error on the clean held-out and validation images (the classifier's ceiling)."""
    import torch

    from vadapters.synthetic.classification import ShapeClasses
    from vadapters.tta import Source
    from vadapters.tta.runner import held_out_dataset

    out = {}
    for key, data in (("test", held_out_dataset("shapes", args.num_samples)),
                      ("val", ShapeClasses(args.val_samples, seed=args.val_images_seed))):  # fmt: skip
        x = torch.from_numpy(data.images_uint8().copy()).permute(0, 3, 1, 2).float() / 255
        pred = Source(model)(x).argmax(1)
        out[key] = float((pred != torch.from_numpy(data.labels.copy())).float().mean())
    return out


def evaluate_severity(model, args, severity: int, ap: float, log) -> dict:
    streams: dict = {}
    seconds: list[float] = []  # every run's, validation included
    missing: list[str] = []
    sweep: dict = {}
    rows: dict = {}
    source_val = run_one(model, args, severity, "val", "source", None, "val", streams, ap, log)
    source = [run_one(model, args, severity, "test", "source", None, s, streams, ap, log) for s in range(args.seeds)]
    seconds += [r["seconds"] for r in [source_val, *source] if r]
    if source_val is None or None in source:
        missing.append("source")
    else:
        rows["source"] = {"lr": None, "runs": source, **_mean_std([r["mean_error"] for r in source])}
        sweep["source"] = {"-": source_val["mean_error"]}
    for arm in args.arms:
        grid = {lr: run_one(model, args, severity, "val", arm, lr, "val", streams, ap, log) for lr in args.lrs[arm]}
        seconds += [r["seconds"] for r in grid.values() if r]
        if None in grid.values():
            missing.append(f"{arm} sweep")
            continue
        sweep[arm] = {f"{lr:g}": r["mean_error"] for lr, r in grid.items()}
        lr = choose({k: r["mean_error"] for k, r in grid.items()}, higher_is_better=False)
        runs = [run_one(model, args, severity, "test", arm, lr, s, streams, ap, log) for s in range(args.seeds)]
        seconds += [r["seconds"] for r in runs if r]
        if None in runs:
            missing.append(f"{arm} test seeds")
            continue
        row = {"lr": lr, "runs": runs, **_mean_std([r["mean_error"] for r in runs])}
        if "source" in rows:
            row["gain"] = _mean_std([s["mean_error"] - r["mean_error"] for s, r in zip(source, runs)])
        rows[arm] = row
    entry = {"rows": rows, "sweep": sweep, "not_run": missing, "seconds": round(sum(seconds), 1)}
    for arm in ("vdp", "vdp_full"):
        if arm in rows and "source" in rows:
            errors = [[r["mean_error"] for r in rows[a]["runs"]] for a in (arm, "source")]
            entry.setdefault("gate", {})[arm] = gate(*errors, higher_is_better=False)  # lower error, by >= 3 std
    return entry


def markdown(report: dict) -> str:
    s = report["settings"]
    lines = [
        f"# VDP gate benchmark{' (quick)' if report['quick'] else ''}", "",
        f"`{report['command']}` on {report['machine']}, {report['seconds']:.0f} s of stream runs.", "",
        f"LayerNorm ViT (`vit`, timm test_vit on 32 px ShapeClasses, 10 classes: chance = 90 % error); "
        f"clean source error {100 * report['clean_error']['test']:.1f} % (test images), "
        f"{100 * report['clean_error']['val']:.1f} % (validation images). Continual stream over "
        f"{len(s['corruptions'])} corruptions, one pass, batch {s['batch_size']}, {s['num_samples']} test images per "
        f"domain ({s['num_samples'] // s['batch_size']} updates per domain), each seed its own random order. "
        f"lr chosen per arm on a validation stream ({s['val_samples']} other images per domain, image seed "
        f"{s['val_images_seed']}, corruption seed {s['val_seed']}); test at corruption seeds {list(range(s['seeds']))}. "
        f"Error % = mean over domains; mean +- sample std over seeds; gain = source - arm, paired per seed.", "",
    ]  # fmt: skip
    if report.get("note"):
        lines += [report["note"], ""]
    for sev, entry in report["severities"].items():
        rows = entry["rows"]
        lines += [f"## Severity {sev}", ""]
        for arm, g in entry.get("gate", {}).items():
            percent = {k: 100 * v if k in ("margin", "needed", "std_method", "std_baseline", "paired_mean",
                                             "paired_std") else v for k, v in g.items()}  # fmt: skip
            lines += [gate_line(f"Gate ({arm} error below source's by >= 3 std)", percent, " points", 2), ""]
        if entry["not_run"]:
            lines += [f"Not run yet: {', '.join(entry['not_run'])}.", ""]
        if "source" in rows:
            per = [statistics.fmean(r["domains"][d] for r in rows["source"]["runs"]) for d in s["corruptions"]]
            lines += [f"Headroom: source error >= 80 % (chance 90 %) on {sum(e >= 0.8 for e in per)} of {len(per)} "
                      f"domains, <= 60 % on {sum(e <= 0.6 for e in per)}.", ""]  # fmt: skip
        notes = []
        for arm, row in rows.items():
            total = {"domain_changes": f"{len(s['corruptions']) - 1} true changes",
                     "augmented_batches": f"{row['runs'][0]['batches']} batches"}  # fmt: skip
            for key, what in (("domain_changes", "domain changes detected"), ("augmented_batches", "augmented")):
                if key in row["runs"][0]:
                    notes.append(f"{arm}: {what} {[r[key] for r in row['runs']]} of {total[key]}")
        if notes:
            lines += ["Diagnostics (test seeds): " + "; ".join(notes) + ".", ""]
        lines += ["| arm | lr (chosen on validation) | test error % | gain vs source (paired) | s per run |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for arm, row in rows.items():
            gain = f"{100 * row['gain']['mean']:+.2f} +- {100 * row['gain']['std']:.2f}" if "gain" in row else "-"
            secs = statistics.fmean(r["seconds"] for r in row["runs"])
            lr = "-" if row["lr"] is None else f"{row['lr']:g}"
            lines.append(f"| {arm} | {lr} | {100 * row['mean']:.2f} +- {100 * row['std']:.2f} | {gain} | {secs:.0f} |")
        lines += ["", "Validation sweep (mean error %, validation stream):", "", "| arm | lr: error |", "|---|---|"]
        for arm, grid in entry["sweep"].items():
            best = min(grid.values())
            cells = ", ".join(
                f"{lr}: **{100 * e:.2f}**" if e == best else f"{lr}: {100 * e:.2f}" for lr, e in grid.items()
            )
            lines.append(f"| {arm} | {cells} |")
        if rows:
            seen = next(iter(rows.values()))["runs"][0]["domains"]
            domains = [d for d in s["corruptions"] if d in seen]  # the standard order, whatever each seed's was
            lines += ["", "Per-domain test error % (mean over seeds):", "",
                      "| arm | " + " | ".join(d[:10] for d in domains) + " |", "|---" * (len(domains) + 1) + "|"]  # fmt: skip
            for arm, row in rows.items():
                cells = [f"{100 * statistics.fmean(r['domains'][d] for r in row['runs']):.1f}" for d in domains]
                lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def parse_lrs(items: list[str], arms: list[str]) -> dict[str, list[float]]:
    lrs = {arm: list(LRS[arm]) for arm in arms}
    for item in items or []:
        arm, _, values = item.partition("=")
        if arm not in ARMS or not values:
            raise SystemExit(f"--lrs takes ARM=lr1,lr2 with ARM in {', '.join(ARMS)}, got {item!r}")
        lrs[arm] = [float(v) for v in values.split(",")]
    return lrs


def main(argv: list[str] | None = None) -> None:
    import torch

    from vadapters.synthetic.classification import ShapeClasses
    from vadapters.synthetic.streams import CORRUPTIONS
    from vadapters.tta import confidence_threshold
    from vadapters.tta.runner import load_classifier

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke settings (not a result)")
    p.add_argument("--severities", nargs="+", type=int, default=[3, 5])
    p.add_argument("--arms", nargs="+", default=["tent", "cotta", "vdp"], choices=list(ARMS))
    p.add_argument("--lrs", nargs="*", default=[], help="ARM=lr1,lr2,... (default: LRS)")
    p.add_argument("--seeds", type=int, default=3, help="test corruption seeds 0..N-1")
    p.add_argument("--num-samples", type=int, default=256, help="held-out test images per domain")
    p.add_argument("--val-samples", type=int, default=256, help="validation images per domain")
    p.add_argument("--val-images-seed", type=int, default=3000)
    p.add_argument("--val-seed", type=int, default=100, help="validation corruption seed and order")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--n-aug", type=int, default=None, help="augmentations for CoTTA and VDP (default: theirs)")
    p.add_argument("--corruptions", default=",".join(CORRUPTIONS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", default=os.path.join("outputs", "vdp_benchmark"))
    p.add_argument("--corruption-cache", default=os.path.join("outputs", "cache", "corruptions"))
    p.add_argument("--report-only", action="store_true", help="only rebuild the report from the cache")
    p.add_argument("--note", default="", help="a paragraph for the report")
    p.add_argument("--name", default="vdp_benchmark")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = p.parse_args(argv)
    args.corruptions = args.corruptions.split(",")
    if args.quick:
        args.severities, args.seeds, args.num_samples, args.val_samples = [5], 2, 16, 16
        args.batch_size, args.corruptions, args.n_aug = 8, ["gaussian_noise", "contrast"], 2
        args.lrs = args.lrs or [f"{arm}=1e-3,1e-2" for arm in args.arms]
        args.cache = args.cache + "_quick"
    args.lrs = parse_lrs(args.lrs, args.arms)
    torch.set_num_threads(args.threads)
    start = time.time()

    def log(text: str) -> None:
        print(f"{time.time() - start:7.1f}s {text}", flush=True)

    model = load_classifier("vit")
    clean_val = ShapeClasses(args.val_samples, seed=args.val_images_seed)
    x = torch.from_numpy(clean_val.images_uint8().copy()).permute(0, 3, 1, 2).float() / 255
    ap = confidence_threshold(model, x)
    report = {
        "command": command().replace(args.note, "<the note below>") if args.note else command(),
        "machine": machine(args.threads),
        "quick": args.quick,
        "note": args.note,
        "settings": {k: getattr(args, k) for k in ("severities", "arms", "lrs", "seeds", "num_samples", "val_samples",
                                                   "val_images_seed", "val_seed", "batch_size", "n_aug", "corruptions")},
        "cotta_ap": ap,
        "clean_error": clean_error(model, args),
        "severities": {},
    }  # fmt: skip
    for severity in args.severities:
        report["severities"][str(severity)] = evaluate_severity(model, args, severity, ap, log)
    report["seconds"] = sum(entry["seconds"] for entry in report["severities"].values())
    write_report(args.name + "_quick" * args.quick, report, markdown(report), folder=args.out)


if __name__ == "__main__":
    main()
