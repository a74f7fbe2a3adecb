"""Does the embedded tiny-animatediff use the caption's motion words? A held-out denoising-loss probe.

AnimateDiff's motion modules are temporal self-attention only: the caption reaches them solely through the frozen
spatial UNet's cross-attention features. This probe measures, on held-out motion clips with the same noise and
timesteps, the epsilon loss of the video UNet given

- the true caption ("a red square moving left slowly"),
- the caption with the direction replaced by its opposite ("... moving right slowly"),
- the caption with the speed word swapped ("... moving left quickly"),
- the empty caption,

for the trained motion adapter and for the untrained one (zero-initialised output, i.e. independent frames). If
the trained adapter's loss is lower with the true direction than with the opposite one, the direction words reach
the motion modules; if the two are equal, the text path carries no usable motion information. It also reports how
far apart the frozen text encoder puts captions that differ only in direction, compared with ones that differ only
in colour or shape.

Usage:
    python benchmarks/animatediff_caption_dependence.py [--clips 64] [--timesteps 100,300,500,700,900]

Writes benchmarks/results/animatediff_caption_dependence.{json,md} with the command, seed and machine.
"""

from __future__ import annotations

import argparse
import os
import re
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _report import command, header, machine, write_report  # noqa: E402 (sibling module, after the env)

OPPOSITE = {
    "right": "left", "left": "right", "up": "down", "down": "up",
    "up-right": "down-left", "down-left": "up-right", "up-left": "down-right", "down-right": "up-left",
}  # fmt: skip
OTHER_SPEED = {"slowly": "quickly", "quickly": "slowly"}


def swap(caption: str, table: dict[str, str]) -> str:
    """Replace the one word of `caption` that is a key of `table` (longest keys first, whole words)."""
    words = sorted(table, key=len, reverse=True)
    pattern = r"(?<![\w-])(" + "|".join(re.escape(w) for w in words) + r")(?![\w-])"
    out, n = re.subn(pattern, lambda m: table[m.group(1)], caption, count=1)
    if n != 1:
        raise ValueError(f"no word of {sorted(table)} in {caption!r}")
    return out


def held_out_losses(sd, unets: dict, clips, n: int, timesteps: list[int], seed: int, variants: dict, start: float):
    """Epsilon MSE of each video UNet on clips `0..n-1` with each caption variant, one shared noise per clip and
    timestep (so differences between variants are paired). Returns `{unet: {variant: array [n, len(timesteps)]}}`.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(sd.scheduler.config)
    losses = {a: {c: np.zeros((n, len(timesteps))) for c in variants} for a in unets}
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for i in range(n):
            clip = clips.render(i)
            latents = sd.vae.encode(clip["frames"]).latent_dist.mean * sd.vae.config.scaling_factor  # [F, C, h, w]
            latents = latents.transpose(0, 1)[None]  # [1, C, F, h, w]
            texts = [fn(clip["caption"]) for fn in variants.values()]
            emb = sd.encode_prompt(texts, "cpu", 1, False)[0].repeat_interleave(latents.shape[2], dim=0)
            emb = emb.unflatten(0, (len(texts), latents.shape[2]))  # [variant, F, tokens, dim]
            for j, t in enumerate(timesteps):
                noise = torch.randn(latents.shape, generator=gen)
                tt = torch.tensor([t])
                noisy = scheduler.add_noise(latents, noise, tt)
                for a, unet in unets.items():
                    for k, c in enumerate(variants):
                        pred = unet(noisy, tt, encoder_hidden_states=emb[k], return_dict=False)[0]
                        losses[a][c][i, j] = F.mse_loss(pred, noise).item()
            if (i + 1) % 8 == 0:
                print(f"{i + 1}/{n} clips, {time.time() - start:.0f} s", flush=True)
    return losses


def main() -> None:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from diffusers import MotionAdapter, UNetMotionModel

    from vadapters.models.video import tiny_motion_adapter
    from vadapters.models.weights import default_path
    from vadapters.pipelines import load_pipeline
    from vadapters.synthetic.motion import MotionClips

    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--timesteps", default="100,300,500,700,900")
    parser.add_argument("--seed", type=int, default=1, help="held-out clip seed (training used 0)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="animatediff_caption_dependence")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()
    timesteps = [int(t) for t in args.timesteps.split(",")]

    sd = load_pipeline(str(default_path("tiny-sd")))
    trained = MotionAdapter.from_pretrained(str(default_path("tiny-animatediff")), local_files_only=True)
    adapters = {
        "trained": trained,
        "untrained": tiny_motion_adapter(sd.unet.config, seed=0, max_seq_length=trained.config.motion_max_seq_length),
    }
    unets = {k: UNetMotionModel.from_unet2d(sd.unet, a).eval() for k, a in adapters.items()}
    clips = MotionClips(args.clips, seed=args.seed, num_frames=8, size=(32, 32))

    def encode_text(captions: list[str]) -> torch.Tensor:
        return sd.encode_prompt(captions, "cpu", 1, False)[0]

    variants = {
        "true": lambda c: c,
        "opposite direction": lambda c: swap(c, OPPOSITE),
        "other speed": lambda c: swap(c, OTHER_SPEED),
        "empty": lambda c: "",
    }
    conditions = tuple(variants)
    losses = held_out_losses(sd, unets, clips, args.clips, timesteps, args.seed, variants, start)
    with torch.no_grad():
        # how far apart the frozen text encoder puts captions differing in one attribute (pooled, cosine distance)
        base = [clips.caption(i) for i in range(args.clips)]
        edits = {
            "direction": [swap(c, OPPOSITE) for c in base],
            "speed": [swap(c, OTHER_SPEED) for c in base],
            "colour": [re.sub(r"^an? (\w+)", lambda m: "a " + ("blue" if m.group(1) != "blue" else "red"), c)
                       for c in base],
            "shape": [re.sub(r"(square|circle|triangle|diamond)",
                             lambda m: "circle" if m.group(1) != "circle" else "square", c, count=1) for c in base],
        }  # fmt: skip
        e0 = encode_text(base).flatten(1)
        text_distance = {
            k: round(float(1 - F.cosine_similarity(e0, encode_text(v).flatten(1)).mean()), 5) for k, v in edits.items()
        }

    def summary(a: str) -> dict:
        true = losses[a]["true"]
        out = {c: round(float(losses[a][c].mean()), 6) for c in conditions}
        for c in conditions[1:]:
            diff = losses[a][c] - true  # > 0: the true caption explains the clip better
            out[f"{c} - true"] = round(float(diff.mean()), 7)
            out[f"{c} - true, std err"] = round(float(diff.mean(1).std(ddof=1) / np.sqrt(args.clips)), 7)
            out[f"{c}: clips where true is lower"] = round(float((diff.mean(1) > 0).mean()), 3)
        out["per timestep, true"] = {t: round(float(true[:, j].mean()), 6) for j, t in enumerate(timesteps)}
        out["per timestep, opposite - true"] = {
            t: round(float((losses[a]["opposite direction"][:, j] - true[:, j]).mean()), 7)
            for j, t in enumerate(timesteps)
        }
        return out

    result = {
        "command": command(),
        "seed": args.seed,
        "machine": machine(args.threads),
        "clips": args.clips,
        "timesteps": timesteps,
        "adapters": {a: summary(a) for a in unets},
        "text_encoder_cosine_distance": text_distance,
        "seconds": round(time.time() - start, 1),
    }
    rows = []
    for a, s in result["adapters"].items():
        for c in conditions:
            delta = "" if c == "true" else (
                f"{s[f'{c} - true']:+.6f} ± {s[f'{c} - true, std err']:.6f} | {s[f'{c}: clips where true is lower']:.2f}"
            )  # fmt: skip
            rows.append(f"| {a} | {c} | {s[c]:.6f} | {delta or ' | '} |")
    md = header(args.name, result) + (
        f"Held-out denoising loss of the video UNet on {args.clips} motion clips (8 frames, 32 px, seed {args.seed}), "
        f"timesteps {timesteps}, same noise for every condition.\n\n"
        "| adapter | caption | loss | loss - loss(true) ± s.e. | clips where true is lower |\n|---|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n\nFrozen text encoder, mean cosine distance between a caption and the same caption with one attribute "
        "changed: " + ", ".join(f"{k} {v}" for k, v in text_distance.items()) + ".\n"
    )
    write_report(args.name, result, md)


if __name__ == "__main__":
    main()
