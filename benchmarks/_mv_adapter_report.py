"""The MV-Adapter benchmark's cost part, picture and markdown (split from mv_adapter_benchmark.py)."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import platform
import statistics
import time
from typing import Any

import _fairness as fair

# The paper's claims, quoted from what is reachable here (arXiv 2412.03632, abstract; its tables are not).
CLAIMS = {
    "consistency": "an adapter on a frozen T2I model makes its views multi-view consistent (abstract: 'multi-view "
    "consistent image generation'; 768 px on SDXL)",
    "i2mv": "image-to-multiview from a reference image through image cross-attention to the frozen UNet's clean "
    "reference features (paper, Sec. 3; its GSO PSNR / SSIM / LPIPS table is not reachable here)",
}


def machine() -> dict[str, Any]:
    import torch

    return {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "threads": torch.get_num_threads()}  # fmt: skip


def cost_part(base, views_list, latent, repeats) -> dict[str, Any]:
    """Median ms per UNet forward (batch = views, CFG off) for the base and row / full attention."""
    import torch

    import vadapters
    from vadapters.methods.mv_adapter import MVAdapterConfig, multiview_state

    rows = {}
    for variant in ("base", "row", "full"):
        unet = copy.deepcopy(base.unet)
        if variant != "base":
            vadapters.inject(unet, MVAdapterConfig(num_views=2, topology=variant))
        channels = unet.config.in_channels
        for views in views_list:
            x = torch.randn(views, channels, latent, latent)
            emb = torch.randn(views, 7, unet.config.cross_attention_dim)
            ctx = multiview_state(unet, num_views=views) if variant != "base" else contextlib.nullcontext()
            times = []
            with ctx, torch.no_grad():
                unet(x, torch.tensor(500), encoder_hidden_states=emb)  # warm-up
                for _ in range(repeats):
                    start = time.perf_counter()
                    unet(x, torch.tensor(500), encoder_hidden_states=emb)
                    times.append(time.perf_counter() - start)
            rows.setdefault(variant, {})[views] = statistics.median(times) * 1000
    return rows


def save_gallery(gallery: dict[str, list], path: str, scale: int = 4) -> None:
    """One row per variant (labelled), the views of the first test objects side by side, upscaled."""
    import torch
    import torch.nn.functional as F
    from PIL import Image, ImageDraw

    rows = []
    for name, sets in gallery.items():
        if not sets:
            continue
        views = torch.cat([torch.cat(list(v.float().clamp(0, 1)), dim=2) for v in sets], dim=2)  # [3, H, W*V*n]
        views = F.interpolate(views[None], scale_factor=scale, mode="nearest")[0]
        rows.append((name, (views.permute(1, 2, 0).numpy() * 255).round().astype("uint8")))
    label_w, height = 230, rows[0][1].shape[0]
    width = max(r[1].shape[1] for r in rows)
    canvas = Image.new("RGB", (label_w + width, (height + 4) * len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (name, pixels) in enumerate(rows):
        canvas.paste(Image.fromarray(pixels), (label_w, k * (height + 4)))
        draw.text((6, k * (height + 4) + height // 2 - 6), name, fill="black")
    canvas.save(path)


def write(result: dict, gallery: dict, stem: str) -> None:
    from vadapters.core.io import atomic_write_text

    os.makedirs(os.path.dirname(stem), exist_ok=True)
    atomic_write_text(stem + ".json", json.dumps(result, indent=2, default=str) + "\n")
    save_gallery(gallery, stem + ".png")
    markdown = render_markdown(result) + f"\n![views]({os.path.basename(stem)}.png)\n"
    atomic_write_text(stem + ".md", markdown)
    print(markdown)


def render_markdown(r: dict) -> str:
    o, m = r["options"], r["machine"]
    lines = [
        "# MV-Adapter benchmark" + (" (quick: a smoke test, not results)" if r["quick"] else ""),
        "",
        f"Command: `{r['command']}`; seeds {r['seeds']} (objects: train seed {r['split_seeds']['train']}, validation "
        f"{r['split_seeds']['val']}, test {r['split_seeds']['test']}); base: {r['base']}"
        + (f", fine-tuned {r['pretrain']['steps']} steps on single views" if r["pretrain"] else "")
        + f"; torch {m['torch']}, {m['platform']}, {m['cpus']} CPUs, {m['threads']} threads; {r['seconds']} s.",
        f"Recipe: {o['recipe']}; {o['steps']} steps, warm-up {o['warmup']}, batch 2 objects x 4 views, "
        f"{o['train_objects']} training objects; sampling: {o['sample_steps']} steps, guidance {o['guidance_scale']}, "
        f"base schedule {o['base_scheduler']}, adapters {o['adapter_scheduler']}; {o['size']} px; "
        f"occupancy {o['occupancy']}. Mean ± sample std over seeds.",
        "",
        "## The paper's claims next to ours",
        "",
        "| claim (MV-Adapter paper) | our measure | ours |",
        "|---|---|---|",
    ]
    c = r["consistency"]
    for arm, g in r["gates"].items():
        ours = (f"{arm} {fair.fmt(c[arm]['row_iou'])} vs {g['baseline']} {fair.fmt(c[g['baseline']]['row_iou'])} "
                f"(VAE ceiling {fair.fmt(c['ground_truth_vae']['row_iou'])}); gate: "
                + ("holds" if g["holds"] else "does not hold"))  # fmt: skip
        lines.append(f"| {CLAIMS['consistency']} | row-occupancy IoU across 4 views, test objects | {ours} |")
    p = r["image_to_multiview_psnr"]
    if "mv_ref" in p:
        ours = (f"mv_ref {fair.fmt(p['mv_ref'], 2)} dB vs base {fair.fmt(p['base_no_adapter'], 2)} dB, copy "
                f"reference {fair.fmt(p['copy_reference_vae'], 2)} dB through the VAE (ceiling "
                f"{fair.fmt(p['ground_truth_vae'], 2)} dB)")  # fmt: skip
        lines.append(f"| {CLAIMS['i2mv']} | PSNR of all 4 views vs ground truth, reference a separate view | {ours} |")
    lines += [
        "",
        "## Cross-view consistency (test captions, 4 orthographic views at elevation 0)",
        "",
        "Every row leaves through the same VAE decoder except `ground_truth` (the renders): `ground_truth_vae` is",
        "the ceiling. Row IoU (the gated metric) scores a pair of views 0 when either shows no object (no occupied",
        "row, or every row occupied: noise, a full-frame scene); the lenient IoU counts such pairs as agreeing, as",
        "the earlier runs did. Colour spread: mean pairwise distance of the views' mean object colours (multi-part",
        "objects show different parts per view, so ground truth is not 0).",
        "",
        "| variant | row-occupancy IoU | lenient IoU | occupied-row share | colour spread |",
        "|---|---|---|---|---|",
    ]
    for name, row in c.items():
        cells = (fair.fmt(row["row_iou"]), fair.fmt(row["row_iou_lenient"]), fair.fmt(row["rows_occupied"]),
                 fair.fmt(row["colour_spread"]))  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Gates (issue 19: above independent views by >= 3 std):", ""]
    lines += [fair.gate_line(f"{arm} vs {g['baseline']}, row IoU", g) for arm, g in r["gates"].items()]
    lines += ["", "## Learning rate per arm (validation objects, first seed)", "",
              "| arm | " + " | ".join(f"lr {lr:g}" for lr in o["lrs"]) + " | chosen |",
              "|---|" + "---|" * (len(o["lrs"]) + 1)]  # fmt: skip
    for arm, sw in r["lr_sweeps"].items():
        what = "PSNR dB" if arm == "mv_ref" else "row IoU"
        cells = [f"{sw['scores'][float(lr)]:.3f}" if float(lr) in sw["scores"] else "" for lr in o["lrs"]]
        lines.append(f"| {arm} ({what}) | " + " | ".join(cells) + f" | {sw['chosen']:g} |")
    lines += ["", "## Image-to-multiview PSNR (dB) of the 4 views vs ground truth; the reference is a separately",
              "rendered view (random camera)", "", "| variant | PSNR |", "|---|---|"]  # fmt: skip
    lines += [f"| {k} | {fair.fmt(v, 2)} |" for k, v in p.items()]
    lines += ["", "## Held-out denoising MSE (test view sets, same noise and timesteps, no dropout, plain MSE)", "",
              "Lower with the adapter than without means it uses the other views (and the reference).", "",
              "| arm | with adapter | adapter disabled |", "|---|---|---|"]  # fmt: skip
    for arm, row in r["heldout_loss"].items():
        lines.append(f"| {arm} | {fair.fmt(row['adapter'], 5)} | {fair.fmt(row['base'], 5)} |")
    lines += ["", "| arm | final training loss | seconds |", "|---|---|---|"]
    for arm, row in r["training"].items():
        lines.append(f"| {arm} | {fair.fmt(row['final_loss'], 4)} | {fair.fmt(row['seconds'], 1)} |")
    cost = r["ms_per_unet_step"]
    views = sorted({v for row in cost.values() for v in row}, key=int)
    lines += ["", "## Cost: ms per UNet forward (batch = views)", "",
              "| variant | " + " | ".join(f"{v} views" for v in views) + " |", "|---|" + "---|" * len(views)]  # fmt: skip
    lines += [f"| {k} | " + " | ".join(f"{row[v]:.1f}" for v in views) + " |" for k, row in cost.items()]
    return "\n".join(lines) + "\n"
