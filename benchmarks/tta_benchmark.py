"""Test-time adaptation benchmark on the embedded classifiers (issue 6).

1. Continual: the 15 standard corruptions at severity 5, streamed twice (the second pass is the revisit that
   measures forgetting), for each classifier (BN CNN, LN ViT) x seed x corruption order: source, BN adapt, TENT,
   CoTTA, VDP (and VDP with test-batch BN statistics on the CNN). Per-domain and mean error per pass.
2. LAME scenarios: i.i.d., non-i.i.d. (class-sorted), label shift (Zipf a=2) and combined, batch 16 / 64 / 200,
   kNN / RBF (official) / row-normalised RBF / linear, against source, BN adapt and TENT; with the collapse-alarm
   rate. The method is reset between domains (independent streams).
3. Cost: per-batch wall time and peak memory of every method relative to a plain forward, measured in the same run
   on the same batches.

Usage:
    python benchmarks/tta_benchmark.py --quick                 # < 2 minutes on 2 CPU cores
    python benchmarks/tta_benchmark.py                         # full: 3 seeds x 2 orders, both classifiers
                                                               # (about 1 h on 2 CPU cores at 300 images/domain)
    python benchmarks/tta_benchmark.py --device cuda           # same on a GPU (memory = CUDA allocator peak)

Writes benchmarks/results/tta_benchmark[_quick].json and .md with the command, seeds, machine and torch version.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LAME_AFFINITIES = ("knn", "rbf", "rbf_normalized", "linear")
LAME_SCENARIOS = ("iid", "non-iid", "label-shift", "label-shift-non-iid")


ONLY: set[str] = set()  # --methods


def continual_methods(bn_model: bool, cotta_ap: float) -> dict[str, tuple[str, dict]]:
    methods = {
        "source": ("source", {}),
        "bn": ("bn", {}),
        "tent": ("tent", {}),
        "cotta": ("cotta", {"ap": cotta_ap, "hflip": False}),
        "vdp": ("vdp", {"hflip": False}),
    }
    if bn_model:
        methods["vdp+bn"] = ("vdp", {"hflip": False, "bn_mode": "batch_stats"})
    else:
        methods.pop("bn")  # a LayerNorm model has no BN statistics: BN adapt == source
    return {k: v for k, v in methods.items() if not ONLY or k in ONLY or k == "source"}


def _mean_std(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def run_continual(model, kind, args, log) -> dict:
    import torch

    from vadapters.tta import build_method, confidence_threshold
    from vadapters.tta.runner import held_out_dataset, make_stream, run_stream

    clean = held_out_dataset("shapes", args.num_samples)
    clean_x = torch.from_numpy(clean.images_uint8().copy()).permute(0, 3, 1, 2).float() / 255
    ap = confidence_threshold(model, clean_x.to(args.device))
    bn_model = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    runs = []
    for seed in args.seeds:
        for order in args.orders:
            stream = make_stream(
                "continual", args.corruptions, args.severity, args.batch_size, seed, order, args.repeats, args.num_samples,
                cache_dir=args.cache_dir,
            )  # fmt: skip
            for label, (name, options) in continual_methods(bn_model, ap).items():
                torch.manual_seed(seed)
                method = build_method(name, model, seed=seed, **options)
                result = run_stream(method, stream, progress=args.progress)
                runs.append({**result.to_dict(), "seed": seed, "order": order, "method": label})
                log(
                    f"[{kind}] seed {seed} {order:<8} {label:<7} pass errors {[round(100 * e, 1) for e in result.pass_errors()]}"
                )
    summary = {}
    for label in continual_methods(bn_model, ap):
        mine = [r for r in runs if r["method"] == label]
        per_pass = list(zip(*[r["pass_errors"] for r in mine]))
        domains: dict[str, list[float]] = {}
        for r in mine:
            for s in r["segments"]:
                if s["pass"] == 0:
                    domains.setdefault(s["domain"], []).append(s["error"])
        summary[label] = {
            "pass_errors": [_mean_std(list(p)) for p in per_pass],
            "forgetting": _mean_std([r["pass_errors"][-1] - r["pass_errors"][0] for r in mine]),
            "per_domain_first_pass": {d: statistics.fmean(v) for d, v in domains.items()},
        }
    return {"cotta_ap": ap, "runs": runs, "summary": summary}


def run_lame(model, kind, args, log) -> dict:
    import torch

    from vadapters.tta import build_method
    from vadapters.tta.lame import LAME
    from vadapters.tta.runner import make_stream

    rows = []
    for scenario in LAME_SCENARIOS:
        for batch_size in args.lame_batch_sizes:
            for seed in args.seeds:
                stream = make_stream(scenario, args.lame_corruptions, args.severity, batch_size, seed, "standard", 1, args.num_samples,
                                     cache_dir=args.cache_dir)  # fmt: skip
                lame = LAME(model)
                others = {name: build_method(name, model, seed=seed) for name in ("bn", "tent")}
                errors = dict.fromkeys(("source", *others, *(f"lame-{a}" for a in LAME_AFFINITIES)), 0)
                alarms = dict.fromkeys(LAME_AFFINITIES, 0)
                total = 0
                for batch in stream:
                    if batch["reset"]:
                        for method in others.values():
                            method.reset()
                    y = batch["y"].to(args.device)
                    logits, feats = lame.logits_and_features(batch["x"].to(args.device))
                    errors["source"] += int((logits.argmax(1) != y).sum())
                    for name, method in others.items():
                        errors[name] += int((method(batch["x"]).argmax(1) != y).sum())
                    for affinity in LAME_AFFINITIES:  # the same frozen forward feeds every affinity
                        lame.config.affinity = affinity
                        errors[f"lame-{affinity}"] += int((lame.adjust(logits, feats).argmax(1) != y).sum())
                        alarms[affinity] += int(lame.diagnostics["collapse_alarm"])
                    total += len(y)
                row = {"scenario": scenario, "batch_size": batch_size, "seed": seed, "n": total,
                       "errors": {k: v / total for k, v in errors.items()},
                       "collapse_alarm_rate": {k: v / len(stream) for k, v in alarms.items()}}  # fmt: skip
                rows.append(row)
                log(f"[{kind}] LAME {scenario:<20} B={batch_size:<4} seed {seed}: "
                    + ", ".join(f"{k} {100 * v:.1f}" for k, v in row["errors"].items()))  # fmt: skip
    _ = torch
    return {"rows": rows}


def run_cost(model, kind, args, log, memory: bool = False, out: dict | None = None) -> dict:
    """Median per-batch time (`memory=False`) or peak memory (`memory=True`) relative to a plain forward.

    The two are measured in separate passes, so that the memory probe (`malloc_trim` + `/proc` reads on CPU) never
    runs inside a timed call.
    """
    import torch

    from vadapters.tta import build_method
    from vadapters.tta.runner import PeakMemory, make_stream

    out = {} if out is None else out
    bn_model = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    methods = {label: spec for label, spec in continual_methods(bn_model, 0.0).items() if label != "source"}
    methods["cotta"] = ("cotta", {"ap": 1.0, "hflip": False})  # augmentation always on: CoTTA's worst case
    methods.update({f"lame-{a}": ("lame", {"affinity": a}) for a in LAME_AFFINITIES})
    for batch_size in args.cost_batch_sizes:
        n = max(args.num_samples, batch_size)
        stream = make_stream("iid", ["gaussian_noise"], 5, batch_size, 0, "standard", 1, n, cache_dir=args.cache_dir)
        batches = [b["x"].to(args.device) for b in stream if len(b["x"]) == batch_size][: args.cost_batches]
        batches = batches or [stream[0]["x"].to(args.device)]

        def measure(fn, batches=batches) -> float | int | None:
            fn(batches[0])  # warm-up
            values = []
            for x in batches:
                if memory:
                    with PeakMemory(args.device) as peak:
                        fn(x)
                    values.append(peak.bytes)
                else:
                    t0 = time.perf_counter()
                    fn(x)
                    if args.device.startswith("cuda"):
                        torch.cuda.synchronize()
                    values.append(time.perf_counter() - t0)
            if memory:
                return None if any(v is None for v in values) else max(values)
            return statistics.median(values)

        mean = torch.tensor(model.pretrained_cfg["mean"], device=args.device).view(1, -1, 1, 1)
        std = torch.tensor(model.pretrained_cfg["std"], device=args.device).view(1, -1, 1, 1)

        @torch.no_grad()
        def plain(x, mean=mean, std=std):
            return model((x - mean) / std).softmax(1)

        key = "peak_bytes" if memory else "seconds"
        rows = out.setdefault(str(batch_size), {})
        base = measure(plain)
        rows.setdefault("plain_forward", {}).update({key: base, "plain_" + key: base})
        for label, (name, options) in methods.items():
            method = build_method(name, model, **options)
            reference = measure(plain)  # re-measured next to each method: load drifts on a shared machine
            value = measure(method)
            rows.setdefault(label, {}).update({key: value, "plain_" + key: reference})
        for row in rows.values():
            if memory:
                ok = row.get("peak_bytes") is not None and row.get("plain_peak_bytes")
                row["memory_ratio"] = row["peak_bytes"] / row["plain_peak_bytes"] if ok else None
            else:
                row["time_ratio"] = row["seconds"] / row["plain_seconds"]
        ratio = "memory_ratio" if memory else "time_ratio"
        log(f"[{kind}] {'memory' if memory else 'time'} B={batch_size}: "
            + ", ".join(f"{k} x{v[ratio]:.2f}" if v[ratio] is not None else f"{k} n/a" for k, v in rows.items()))  # fmt: skip
    return out


def markdown(result: dict) -> str:
    lines = [f"# TTA benchmark{' (quick)' if result['quick'] else ''}", "",
             f"`{result['command']}` on {result['machine']}, {result['seconds']:.0f} s; seeds {result['seeds']}, "
             f"orders {result['orders']}, {result['num_samples']} held-out ShapeClasses images per domain, severity {result['severity']}.",
             ""]  # fmt: skip
    for kind, data in result["models"].items():
        if isinstance(data, str):
            lines += [f"## {kind}: {data}", ""]
            continue
        cont = data["continual"]["summary"]
        if "command" in data and data["command"] != result["command"]:
            lines += [f"{kind}: `{data['command']}`.", ""]
        lines += [f"## {kind}: continual stream (error %, mean +- std over runs)", "",
                  f"CoTTA anchor threshold (5 % quantile of clean confidence - 0.05): {data['continual']['cotta_ap']:.3f}",
                  "", "| method | pass 1 | pass 2 (revisit) | pass 2 - pass 1 |", "|---|---|---|---|"]  # fmt: skip
        for label, s in cont.items():
            passes = [f"{100 * p['mean']:.1f} +- {100 * p['std']:.1f}" for p in s["pass_errors"]]
            passes += ["-"] * (2 - len(passes))
            f = s["forgetting"]
            lines.append(f"| {label} | {passes[0]} | {passes[1]} | {100 * f['mean']:+.1f} |")
        domains = list(next(iter(cont.values()))["per_domain_first_pass"])
        lines += ["", "Per-domain error, first pass (%):", "", "| method | " + " | ".join(d[:10] for d in domains) + " |",
                  "|---" * (len(domains) + 1) + "|"]  # fmt: skip
        for label, s in cont.items():
            lines.append(
                f"| {label} | " + " | ".join(f"{100 * s['per_domain_first_pass'][d]:.1f}" for d in domains) + " |"
            )
        lines += [
            "",
            f"## {kind}: LAME scenarios (error %, mean over seeds; alarm = collapse-alarm rate per batch)",
            "",
        ]
        rows = data["lame"]["rows"]
        names = list(rows[0]["errors"])
        lines += [
            "| scenario | B | " + " | ".join(names) + " | alarms knn/rbf/rbf_n/lin |",
            "|---" * (len(names) + 3) + "|",
        ]
        keys = sorted(
            {(r["scenario"], r["batch_size"]) for r in rows}, key=lambda k: (LAME_SCENARIOS.index(k[0]), k[1])
        )
        for scenario, b in keys:
            mine = [r for r in rows if r["scenario"] == scenario and r["batch_size"] == b]
            errs = " | ".join(f"{100 * statistics.fmean(r['errors'][n] for r in mine):.1f}" for n in names)
            alarm = "/".join(
                f"{statistics.fmean(r['collapse_alarm_rate'][a] for r in mine):.2f}" for a in LAME_AFFINITIES
            )
            lines.append(f"| {scenario} | {b} | {errs} | {alarm} |")
        lines += ["", f"## {kind}: cost per batch relative to a plain forward (median over batches)", "",
                  "| method | " + " | ".join(f"B={b} time x | B={b} memory x" for b in data["cost"]) + " |",
                  "|---" * (2 * len(data["cost"]) + 1) + "|"]  # fmt: skip
        for label in next(iter(data["cost"].values())):
            cells = []
            for rows_b in data["cost"].values():
                r = rows_b[label]
                mem = "n/a" if r.get("memory_ratio") is None else f"{r['memory_ratio']:.2f}"
                cells += [f"{r['time_ratio']:.2f}", mem]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        for b, rows_b in data["cost"].items():
            plain = rows_b["plain_forward"]
            mib = "n/a" if plain.get("peak_bytes") is None else f"{plain['peak_bytes'] / 2**20:.1f} MiB"
            lines.append(f"\nPlain forward at B={b}: {1000 * plain['seconds']:.1f} ms, peak extra memory {mib}.")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    import torch

    from vadapters.core.io import atomic_write_text
    from vadapters.errors import CheckpointError
    from vadapters.synthetic.streams import CORRUPTIONS
    from vadapters.tta.runner import load_classifier

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny settings that finish in under 2 minutes")
    p.add_argument("--models", default="cnn,vit")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--orders", default="standard,random")
    p.add_argument("--num-samples", type=int, default=300, help="held-out images per domain")
    p.add_argument("--severity", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64, help="continual stream batch size")
    p.add_argument("--repeats", type=int, default=2, help="passes over the continual stream (2 = revisit)")
    p.add_argument("--lame-corruptions", default="clean,gaussian_noise,defocus_blur,snow,contrast,jpeg_compression")
    p.add_argument("--lame-batch-sizes", default="16,64,200")
    p.add_argument("--cost-batch-sizes", default="64,200")
    p.add_argument("--cost-batches", type=int, default=10)
    p.add_argument("--methods", default="", help="comma list to restrict the continual methods (default: all)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-dir", default=os.path.join("outputs", "cache", "corruptions"))
    p.add_argument("--name", default=None)
    p.add_argument("--progress", action="store_true")
    p.add_argument(
        "--update",
        action="store_true",
        help="replace only --models' entries in the existing results file (e.g. after retraining one default); "
        "the other models keep theirs, and each model records the command and time that produced it",
    )
    args = p.parse_args(argv)
    ONLY.update(m for m in args.methods.split(",") if m)
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.orders = args.orders.split(",")
    args.corruptions = list(CORRUPTIONS)
    args.lame_corruptions = args.lame_corruptions.split(",")
    args.lame_batch_sizes = [int(b) for b in args.lame_batch_sizes.split(",")]
    args.cost_batch_sizes = [int(b) for b in args.cost_batch_sizes.split(",")]
    if args.quick:  # checks that every part runs; the numbers mean little
        args.seeds, args.orders, args.num_samples, args.batch_size = args.seeds[:1], args.orders[:1], 32, 32
        args.corruptions = ["gaussian_noise", "contrast"]
        args.lame_corruptions, args.lame_batch_sizes = ["clean", "contrast"], [16]
        args.cost_batch_sizes, args.cost_batches = [32], 2
    torch.set_num_threads(args.threads)
    start = time.time()

    def log(text: str) -> None:
        print(f"{time.time() - start:7.1f}s {text}", flush=True)

    models: dict = {}
    loaded: dict = {}
    for kind in args.models.split(","):
        try:
            model = loaded[kind] = load_classifier(kind).to(args.device)
        except CheckpointError as err:
            models[kind] = f"skipped ({err})"
            log(f"[{kind}] skipped: {err}")
            continue
        model_start = time.time()
        models[kind] = {
            "command": " ".join(["python", *sys.argv]),
            "continual": run_continual(model, kind, args, log),
            "lame": run_lame(model, kind, args, log),
            "cost": run_cost(model, kind, args, log),
        }
        models[kind]["seconds"] = round(time.time() - model_start, 1)  # without the memory pass below
    for kind, model in loaded.items():
        run_cost(model, kind, args, log, memory=True, out=models[kind]["cost"])
    name = args.name or ("tta_benchmark_quick" if args.quick else "tta_benchmark")
    os.makedirs(os.path.join("benchmarks", "results"), exist_ok=True)
    base = os.path.join("benchmarks", "results", name)
    seconds = time.time() - start
    previous = {}
    if args.update:
        if not os.path.isfile(base + ".json"):
            raise SystemExit(f"--update: {base}.json does not exist; run without --update first")
        with open(base + ".json", encoding="utf-8") as fh:
            previous = json.load(fh)
        for key in ("seeds", "orders", "num_samples", "severity", "corruptions"):
            if previous[key] != getattr(args, key):
                raise SystemExit(f"--update: {key} differs from {base}.json ({getattr(args, key)} vs {previous[key]})")
        kept = {  # older files record the command once, at the top
            kind: {"command": previous["command"], **data} if "command" not in data else data
            for kind, data in previous["models"].items()
            if kind not in models and isinstance(data, dict)
        }
        order = [*previous["models"], *models]
        models = {
            kind: models.get(kind, kept.get(kind)) for kind in dict.fromkeys(order) if kind in models or kind in kept
        }
    result = {
        "command": " ".join(["python", *sys.argv]),
        "quick": args.quick,
        "seeds": args.seeds,
        "orders": args.orders,
        "num_samples": args.num_samples,
        "severity": args.severity,
        "corruptions": args.corruptions,
        "device": args.device,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {args.threads} threads, torch {torch.__version__}, "
        f"{torch.cuda.get_device_name() if args.device.startswith('cuda') else 'cpu'}",
        "seconds": seconds + (previous.get("seconds", 0) if args.update else 0),
        "models": models,
    }
    atomic_write_text(base + ".json", json.dumps(result, indent=1) + "\n")
    atomic_write_text(base + ".md", markdown(result))
    print(markdown(result))
    print(f"wrote {base}.json and {base}.md")


if __name__ == "__main__":
    main()
