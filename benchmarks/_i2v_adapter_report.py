"""The I2V-Adapter benchmark's markdown, picture and JSON (split from i2v_adapter_benchmark.py)."""

from __future__ import annotations

import io
import json
import os
import platform
from typing import Any

import _fairness as fair

# The paper's claims, quoted from its abstract (arXiv 2312.16693); its tables are not reachable here.
CLAIMS = {
    "identity": "'propagates the unnoised input image to subsequent noised frames through a cross-frame attention "
    "mechanism, maintaining the identity of the input image'",
    "prior": "'a novel Frame Similarity Prior to balance the motion amplitude and the stability of generated videos'",
}
COLUMNS = (
    ("gt_psnr", "GT PSNR 1..F-1 (dB)", 2),
    ("identity_psnr", "identity in known mask (dB)", 2),
    ("tracked_identity_psnr", "tracked identity (dB)", 2),
    ("motion_ratio", "tracked motion / GT", 2),
    ("motion_error_px", "motion error (px)", 2),
    ("motion", "pixel motion", 4),
    ("first_frame_psnr", "frame 0 (dB)", 2),
)
COLOURS = {"base_clamped": (31, 119, 180), "i2v_adapter": (214, 39, 40)}


def machine() -> dict[str, Any]:
    import torch

    return {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "threads": torch.get_num_threads()}  # fmt: skip


def write(result: dict, gallery: dict, stem: str) -> None:
    from vadapters.core.io import atomic_write, atomic_write_text

    os.makedirs(os.path.dirname(stem), exist_ok=True)
    atomic_write_text(stem + ".json", json.dumps(result, indent=2, default=str) + "\n")
    buffer = io.BytesIO()
    picture(result, gallery).save(buffer, format="PNG")
    atomic_write(stem + ".png", lambda fh: fh.write(buffer.getvalue()))
    markdown = render_markdown(result) + f"\n![identity vs motion, frames]({os.path.basename(stem)}.png)\n"
    atomic_write_text(stem + ".md", markdown)
    print(markdown)


def picture(r: dict, gallery: dict):
    """Left: identity in the known mask (y) vs tracked motion / GT (x) per arm and prior strength (first seed's
    test clips are in the table; here the seed means), references in grey. Right: the first test clip's frames."""
    import torch
    import torch.nn.functional as F
    from PIL import Image, ImageDraw

    points = [(f"{arm} {name}", q["motion_ratio"]["mean"], q["identity_psnr"]["mean"], COLOURS[arm])
              for arm in COLOURS for name, q in r["quality"][arm].items()]  # fmt: skip
    points += [(name, q["motion_ratio"], q["identity_psnr"], (120, 120, 120)) for name, q in r["references"].items()
               if q["identity_psnr"] < 99]  # fmt: skip
    finite = [(n, x, y, c) for n, x, y, c in points if x == x and y == y]
    width, height, left, top, bottom = 420, 320, 50, 20, 40
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    if finite:
        x_hi = max(1.2, max(p[1] for p in finite) * 1.1)
        y_lo, y_hi = min(p[2] for p in finite) - 1, max(p[2] for p in finite) + 1
        plot_w, plot_h = width - left - 10, height - top - bottom
        xy = lambda x, y: (left + plot_w * x / x_hi, top + plot_h * (1 - (y - y_lo) / (y_hi - y_lo)))  # noqa: E731
        draw.rectangle([left, top, left + plot_w, top + plot_h], outline="black")
        gx, _ = xy(1.0, y_lo)
        draw.line([(gx, top), (gx, top + plot_h)], fill=(44, 160, 44))
        for name, x, y, colour in finite:
            px, py = xy(x, y)
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
            draw.text((px + 4, py - 10), name.split(" ")[-1], fill=colour)
        draw.text((left, height - 30), "tracked motion / ground truth (green: 1)", fill="black")
        draw.text((4, 4), f"identity dB ({y_lo:.0f}..{y_hi:.0f}); blue base_clamped, red i2v_adapter", fill="black")
    rows = [torch.cat(list(video.clamp(0, 1)), dim=2) for _, videos in gallery.items() for _, video in videos]
    names = [f"{arm} {name}".strip() for arm, videos in gallery.items() for name, _ in videos]
    if not rows:
        return image
    strip = F.interpolate(torch.cat(rows, dim=1)[None], scale_factor=3, mode="nearest")[0]
    frames = Image.fromarray((strip.permute(1, 2, 0).numpy() * 255).round().astype("uint8"))
    canvas = Image.new("RGB", (width + 150 + frames.width, max(height, frames.height)), "white")
    canvas.paste(image, (0, 0))
    canvas.paste(frames, (width + 150, 0))
    row_h = frames.height // len(rows)
    cdraw = ImageDraw.Draw(canvas)
    for k, name in enumerate(names):
        cdraw.text((width + 4, k * row_h + row_h // 2 - 6), name, fill="black")
    return canvas


def _row(name: str, q: dict, matched: str = "") -> str:
    cells = [fair.fmt(q[key], places) if key in q else "" for key, _, places in COLUMNS]
    return f"| {name}{matched} | " + " | ".join(cells) + " |"


def render_markdown(r: dict) -> str:
    o, m, g = r["options"], r["machine"], r["gates"]
    q, refs = r["quality"], r["references"]
    single = {name: {k: {"mean": v, "std": 0.0} for k, v in row.items()} for name, row in refs.items()}
    matched = {arm: sorted({s[arm] for s in r["matched"]}) for arm in ("base_clamped", "i2v_adapter")}
    lines = [
        "# I2V-Adapter benchmark" + (" (quick: a smoke test, not results)" if r["quick"] else ""),
        "",
        f"Command: `{r['command']}`; seeds {r['seeds']} (clips: validation seed {r['split_seeds']['val']}, test "
        f"{r['split_seeds']['test']}; training clips from the training seed); base: {r['base']}; torch {m['torch']}, "
        f"{m['platform']}, {m['cpus']} CPUs, {m['threads']} threads; {r['seconds']} s.",
        f"{o['test_clips']} test clips, {o['val_clips']} validation clips, {o['frames']} frames at {o['size']} px; "
        f"{o['sample_steps']} DDIM steps, guidance {o['guidance']}; prior strengths {o['strengths']} (auto = "
        f"{r['auto_prior_strength']:.3f}); adapter: {o['steps']} steps, batch {o['batch_size']} clips, "
        f"{o['train_clips']} clips, lr {r['lr_sweep']['chosen']:g} (chosen on validation). Mean ± sample std over seeds.",
        "",
        "## The paper's claims next to ours",
        "",
        "| claim (I2V-Adapter paper, abstract) | our measure | ours |",
        "|---|---|---|",
        f"| {CLAIMS['identity']} | sprite identity in its known mask, frames 1..F-1, at matched motion (strength "
        f"matched on validation: adapter {matched['i2v_adapter']}, base {matched['base_clamped']}) | I2V-Adapter "
        f"{fair.fmt(q['i2v_adapter@matched']['identity_psnr'], 2)} dB vs base with frame 0 clamped "
        f"{fair.fmt(q['base_clamped@matched']['identity_psnr'], 2)} dB (VAE ceiling "
        f"{refs['ground_truth_vae']['identity_psnr']:.2f} dB; a latent copy of frame 0 "
        f"{refs['copy_frame0_latent']['identity_psnr']:.2f} dB); gate: "
        + ("holds" if g["identity_psnr"]["holds"] else "does not hold")
        + " |",
        f"| {CLAIMS['prior']} | tracked motion / GT and identity over the prior strengths | see the strength rows "
        "below and the picture |",
        "",
        "Gates (issue 19: identity above the base with frame 0 clamped by >= 3 std at matched motion):",
        "",
        fair.gate_line("identity in the known mask", g["identity_psnr"], " dB", 2),
        fair.gate_line("tracked identity (beside it; not the gate)", g["tracked_identity_psnr"], " dB", 2),
        "",
        "## References (test clips; one path: the rows a generator can reach leave through the VAE)",
        "",
        "`ground_truth_vae` is the ceiling; `copy_frame0_latent` repeats frame 0's latent (no motion). The pixel rows are",
        "what the earlier benchmark compared with: no generated clip can reach them.",
        "",
        "| variant | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    lines += [_row(name, row) for name, row in single.items()]
    lines += ["", "## Arms (test clips), per prior strength; `@matched`: the strength matched on validation", "",
              "| variant | " + " | ".join(title for _, title, _ in COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]  # fmt: skip
    for arm in ("base_clamped", "i2v_adapter"):
        lines += [_row(f"{arm} prior {name}", row) for name, row in q[arm].items()]
        lines.append(_row(f"**{arm}@matched**", q[f"{arm}@matched"], f" ({', '.join(matched[arm])})"))
    sweep = r["lr_sweep"]
    lines += ["", "## Learning rate (validation clips, first seed: identity at matched motion, dB)", "",
              "| " + " | ".join(f"lr {lr:g}" for lr in sweep["scores"]) + " | chosen |",
              "|" + "---|" * (len(sweep["scores"]) + 1),
              "| " + " | ".join(f"{v:.2f}" for v in sweep["scores"].values()) + f" | {sweep['chosen']:g} |"]  # fmt: skip
    t = r["training"]
    lines += [
        "",
        f"Adapter training: final loss {fair.fmt(t['final_loss'], 4)}, {fair.fmt(t['seconds'], 1)} s per seed.",
    ]
    lines += ["", f"## Sampling cost per generated frame ({o['frames']} frames, {o['sample_steps']} steps)", "",
              "| variant | ms / frame | relative to text-to-video |", "|---|---|---|"]  # fmt: skip
    lines += [f"| {k} | {v['ms_per_frame']:.1f} | {v['relative_to_t2v']:.2f} |" for k, v in r["cost"].items()]
    return "\n".join(lines) + "\n"
