"""Peak memory and step time of one SAM-Adapter training step, plain vs memory-lean, at 1,024 px, batch 1.

Usage:
    OMP_NUM_THREADS=2 python benchmarks/sam_lean_memory.py            # ViT-B plain vs lean, ViT-H projection
    OMP_NUM_THREADS=2 python benchmarks/sam_lean_memory.py --vit-l    # also ViT-L (if the time budget allows)
    python benchmarks/sam_lean_memory.py --size 256 --repeats 1 --folder /tmp   # smoke run (smaller input)

Every run is one fresh subprocess (`--worker`): it builds a real segment-anything SAM with random weights
(`vadapters.models.sam_vit`, deterministic fill), the SAM-Adapter recipe (`SAMAdapterRecipe`, adapter-only
training: prompts + decoder copy + no_mask_embed), one batch and AdamW, then runs `--steps` optimizer steps.
Plain and lean runs are interleaved (plain, lean, plain, lean, ...) and medians reported, so machine load hits
both alike. The first repeat of each saves its adapter gradients, compared at the end.

Memory: on CUDA, `torch.cuda.max_memory_allocated` minus the allocation after construction. On CPU, the process's
peak resident set (VmHWM, reset through /proc/self/clear_refs after construction) minus its resident set at that
point: everything the step allocates (activations, gradients, optimizer state, kernel workspaces), not the
weights. Step time: the last step's wall time.

ViT-H projection: in lean mode a block keeps only its checkpointed input until backward, and one block is
recomputed at a time, so the step's peak grows linearly with depth. Two truncated encoders made of ViT-H's own
blocks, [7] (global) and [4, 5, 6, 7] (three windowed + that global), both in lean mode, give the per-block
slope; projected peak = peak([4..7]) + 28 * slope, and the total adds the full ViT-H weights in fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VADAPTERS_NO_PROGRESS", "1")

from _report import command, header, machine, write_report  # noqa: E402 (sibling module, after the env)

ARMS = {  # name -> lean option of SAMAdapterRecipe
    "plain": False,
    "lean": True,  # the default LeanOptions: efficient attention + checkpointing of every block
    "attention_only": {"checkpoint": False},  # efficient attention, no checkpointing
}
GIB = 1024**3


# ------------------------------------------------------------------------------------------------------- worker
def _rss(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current resident set (Linux >= 4.0)
        return True
    except OSError:
        return False


def build_sam(variant: str, blocks: list[int] | None, seed: int, device: str):
    """The real SAM of `variant` (random deterministic weights); `blocks` keeps only those encoder blocks."""
    import torch

    from vadapters.models import fill_deterministic_, sam_vit

    if blocks is None:
        return sam_vit(variant, device=device, seed=seed)
    sam = sam_vit(variant, device="meta")
    sam.image_encoder.blocks = torch.nn.ModuleList(sam.image_encoder.blocks[i] for i in blocks)
    sam.to_empty(device=device)
    fill_deterministic_(sam, seed=seed)
    sam.pixel_mean.copy_(torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1))
    sam.pixel_std.copy_(torch.tensor([58.395, 57.12, 57.375]).view(-1, 1, 1))
    return sam.eval()


def worker(spec: dict) -> dict:
    import gc

    import torch

    from vadapters.methods.sam_adapter import SAMAdapterConfig
    from vadapters.methods.sam_adapter.data import make_segmentation_source
    from vadapters.methods.sam_adapter.train import SAMAdapterRecipe

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    sam = build_sam(spec["variant"], spec["blocks"], spec["seed"], device)
    if spec["size"] != sam.image_encoder.img_size:  # smoke runs: a smaller input (SAM interpolates rel-pos)
        from segment_anything.modeling import ImageEncoderViT

        grid = spec["size"] // 16
        sam.image_encoder.img_size = spec["size"]
        sam.image_encoder.pos_embed = torch.nn.Parameter(sam.image_encoder.pos_embed[:, :grid, :grid].clone())
        sam.prompt_encoder.image_embedding_size = (grid, grid)
        sam.prompt_encoder.input_image_size = (spec["size"],) * 2
        assert isinstance(sam.image_encoder, ImageEncoderViT)
    source = make_segmentation_source("synthetic:camouflage", num_items=2, seed=spec["seed"], size=(64, 64))
    recipe = SAMAdapterRecipe(sam, SAMAdapterConfig(), source, 1, "iou", 0.0, spec["seed"], lean=ARMS[spec["arm"]])
    if spec["precision"] != "fp32":
        from accelerate import Accelerator

        recipe.setup(Accelerator(cpu=not cuda, mixed_precision=spec["precision"]), sam)
    batch = recipe.collate([recipe.dataset[0]])
    params = recipe.trainable_parameters()
    optimizer = torch.optim.AdamW(params, lr=2e-4)
    gc.collect()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        reset = _reset_peak()
        base = _rss("VmRSS")
    times, frozen_grads = [], None
    for step in range(spec["steps"]):
        start = time.perf_counter()
        loss = recipe.loss(batch, step)
        loss.backward()
        if step == 0:
            frozen_grads = sum(1 for p in sam.parameters() if not p.requires_grad and p.grad is not None)
            if spec.get("grad_file"):
                names = {id(p): n for n, p in sam.named_parameters()}
                grads = {names[id(p)]: p.grad.detach().cpu() for p in params if p.grad is not None}
                torch.save(grads, spec["grad_file"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if cuda:
        peak, how = torch.cuda.max_memory_allocated() - base, "cuda max_memory_allocated - after construction"
    else:
        peak = _rss("VmHWM") - base
        how = "VmHWM (reset after construction) - VmRSS after construction" if reset else "VmHWM - VmRSS (no reset)"
    return {
        **spec,
        "peak_bytes": peak,
        "step_seconds": times[-1],
        "all_step_seconds": times,
        "loss": float(loss.detach()),
        "memory_measure": how,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "weights_bytes": sum(p.numel() * p.element_size() for p in sam.parameters()),
        "trainable_parameters": sum(p.numel() for p in params),
        "frozen_parameters_with_grad": frozen_grads,
    }


# ------------------------------------------------------------------------------------------------------- parent
def run(spec: dict, log) -> dict:
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": str(spec["threads"])},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {spec} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    label = f"{spec['variant']}{'' if spec['blocks'] is None else spec['blocks']} {spec['arm']}"
    print(f"{label}: {result['peak_bytes'] / GIB:.3f} GiB, {result['step_seconds']:.1f} s", file=log, flush=True)
    return result


def median_of(results: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in results)


def params_of(variant: str) -> int:
    from vadapters.models import sam_vit

    return sum(p.numel() for p in sam_vit(variant, device="meta").parameters())


def projection(variant: str, short: dict, long: dict, depth: int) -> dict:
    n_short, n_long = len(short["blocks"]), len(long["blocks"])
    slope = (long["peak_bytes"] - short["peak_bytes"]) / (n_long - n_short)
    projected = long["peak_bytes"] + (depth - n_long) * slope
    weights = params_of(variant) * 4
    return {
        "blocks": [short["blocks"], long["blocks"]],
        "measured_truncated_gib": [short["peak_bytes"] / GIB, long["peak_bytes"] / GIB],
        "step_seconds": [short["step_seconds"], long["step_seconds"]],
        "per_block_bytes": slope,
        "projected_peak_bytes": projected,
        "weights_fp32_bytes": weights,
        "projected_total_bytes": projected + weights,
        "formula": f"peak(blocks {long['blocks']}) + ({depth} - {n_long}) * (peak(blocks {long['blocks']}) - "
        f"peak(block {short['blocks']})) / {n_long - n_short}, lean, {variant}'s own blocks; total = that + the full "
        f"{variant} weights in fp32 ({weights / GIB:.2f} GiB)",
    }


def gradient_agreement(plain_file: str, lean_file: str) -> dict:
    import torch

    plain, lean = torch.load(plain_file, weights_only=True), torch.load(lean_file, weights_only=True)
    assert plain.keys() == lean.keys()
    a = torch.cat([plain[k].flatten() for k in plain])
    b = torch.cat([lean[k].flatten() for k in plain])
    prompts = [k for k in plain if ".prompt_generator." in k and float(plain[k].norm()) > 0]
    worst = max(float((lean[k] - plain[k]).norm() / plain[k].norm()) for k in prompts)
    return {"all_adapter_relative": float((b - a).norm() / a.norm()), "worst_prompt_tensor_relative": worst}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of the plain and lean arms")
    parser.add_argument("--steps", type=int, default=1, help="steps per process; the last one is timed")
    parser.add_argument("--precision", default="fp32", help="fp32, or bf16 / fp16 (Accelerate autocast)")
    parser.add_argument("--vit-l", action="store_true", help="also ViT-L, lean and plain, one run each")
    parser.add_argument("--budget", type=float, default=1200, help="seconds; optional runs start only within it")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    parser.add_argument("--name", default="sam_lean_memory")
    parser.add_argument("--folder", default="benchmarks/results")
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    import tempfile

    started, log = time.time(), sys.stderr
    common = {"size": args.size, "seed": args.seed, "threads": args.threads, "precision": args.precision}
    spec = {**common, "variant": "vit_b", "blocks": None, "steps": args.steps}
    vit_b = {"plain": [], "lean": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for arm in vit_b:
                grad_file = os.path.join(tmp, f"{arm}.pt") if repeat == 0 else None
                vit_b[arm].append(run({**spec, "arm": arm, "grad_file": grad_file}, log))
        gradients = gradient_agreement(os.path.join(tmp, "plain.pt"), os.path.join(tmp, "lean.pt"))
    projections = {}
    vit_h = [run({**spec, "variant": "vit_h", "blocks": b, "arm": "lean"}, log) for b in ([7], [4, 5, 6, 7])]
    projections["vit_h"] = projection("vit_h", vit_h[0], vit_h[1], 32)
    skipped = []
    plain_b = median_of(vit_b["plain"], "peak_bytes")
    optional = [("vit_b", "attention_only")] + ([("vit_l", "lean"), ("vit_l", "plain")] if args.vit_l else [])
    for variant, arm in optional:
        if time.time() - started > args.budget:
            skipped.append(f"{variant} {arm} (time budget {args.budget:.0f} s spent)")
            continue
        if (variant, arm) == ("vit_l", "plain") and plain_b * 2 * 16 / 12 > 16 * GIB:  # 2x blocks, 16/12 heads
            skipped.append(f"vit_l plain (estimated {plain_b * 2 * 16 / 12 / GIB:.1f} GiB from ViT-B's)")
            continue
        key = arm if variant == "vit_b" else f"{variant} {arm}"
        vit_b.setdefault(key, []).append(run({**spec, "variant": variant, "arm": arm}, log))

    rows = {}
    for key, results in vit_b.items():
        name = key if " " in key else f"vit_b {key}"
        rows[name] = {
            "peak_gib": median_of(results, "peak_bytes") / GIB,
            "step_seconds": median_of(results, "step_seconds"),
            "repeats": len(results),
            "frozen_parameters_with_grad": max(r["frozen_parameters_with_grad"] for r in results),
        }
    plain = rows["vit_b plain"]
    for name, row in rows.items():
        if name.startswith("vit_b"):
            row["memory_vs_plain"] = row["peak_gib"] / plain["peak_gib"]
            row["time_vs_plain"] = row["step_seconds"] / plain["step_seconds"]
    lean = rows["vit_b lean"]
    total_h = projections["vit_h"]["projected_total_bytes"]
    gates = {
        "vit_b_memory_ratio": lean["memory_vs_plain"],
        "memory_gate_0.5x": lean["memory_vs_plain"] <= 0.5,
        "vit_b_time_ratio": lean["time_vs_plain"],
        "time_gate_1.4x": lean["time_vs_plain"] <= 1.4,
        "vit_h_projected_total_gb": total_h / 1e9,
        "vit_h_fits_24gb": total_h < 24e9,
        "vit_b_adapter_gradient_relative_error": gradients["all_adapter_relative"],
        "gradient_gate_1e-4": gradients["all_adapter_relative"] <= 1e-4
        and gradients["worst_prompt_tensor_relative"] <= 1e-4,
    }
    result = {"command": command(), "seed": args.seed, "machine": machine(args.threads)}
    result.update(device=vit_b["plain"][0]["device"], size=args.size, batch=1, precision=args.precision)
    result.update(rows=rows, projections=projections, gradients=gradients, gates=gates, skipped=skipped)
    result["runs"] = {
        k: [{x: r[x] for x in ("peak_bytes", "step_seconds", "loss")} for r in v] for k, v in vit_b.items()
    }
    result["memory_measure"] = vit_b["plain"][0]["memory_measure"]
    result["seconds"] = round(time.time() - started, 1)
    write_report(args.name, result, markdown(args.name, result), args.folder)


def markdown(name: str, result: dict) -> str:
    lines = [header(name, result)]
    lines.append(
        f"One SAM-Adapter training step (adapter-only: prompts, decoder copy, no_mask_embed; AdamW), "
        f"{result['size']} px, batch 1, {result['precision']}, random weights, device: {result['device']}. Each "
        f"run is a fresh process; plain and lean interleaved, medians. Memory: {result['memory_measure']} "
        "(activations, gradients, optimizer state and workspaces of the step; weights excluded).\n\n"
        "| model / arm | peak step memory (GiB) | x plain | step (s) | x plain | runs |\n|---|---|---|---|---|---|\n"
    )
    for key, row in result["rows"].items():
        mem, tim = row.get("memory_vs_plain"), row.get("time_vs_plain")
        lines.append(
            f"| {key} | {row['peak_gib']:.3f} | {'' if mem is None else f'{mem:.2f}'} | {row['step_seconds']:.1f} | "
            f"{'' if tim is None else f'{tim:.2f}'} | {row['repeats']} |\n"
        )
    for variant, p in result["projections"].items():
        measured = ", ".join(f"{g:.3f}" for g in p["measured_truncated_gib"])
        lines.append(
            f"\n**{variant} projection (lean)**: {p['formula']}. Measured {measured} GiB; per block "
            f"{p['per_block_bytes'] / 2**20:.1f} MiB; projected step memory {p['projected_peak_bytes'] / GIB:.2f} GiB, "
            f"total **{p['projected_total_bytes'] / 1e9:.2f} GB** ({p['projected_total_bytes'] / GIB:.2f} GiB; "
            "a CUDA context, about 0.5 GB, comes on top).\n"
        )
    g = result["gradients"]
    lines.append(
        f"\nAdapter gradients, lean vs plain, first step (same batch and flips): {g['all_adapter_relative']:.2e} "
        f"relative over all adapter tensors, worst prompt-generator tensor {g['worst_prompt_tensor_relative']:.2e}.\n"
    )
    if result["skipped"]:
        lines.append("\nSkipped: " + "; ".join(result["skipped"]) + ".\n")
    lines.append(
        "\nGates: "
        + ", ".join(f"{k} = {v if isinstance(v, bool) else f'{v:.3g}'}" for k, v in result["gates"].items())
        + "\n"
    )
    return "".join(lines)


if __name__ == "__main__":
    main()
