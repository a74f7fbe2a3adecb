"""Shared by the resolution benchmarks: sizes, the judge read at any size, the object count, per-image records.

Imported by sibling scripts run as `python benchmarks/<name>.py` (the script's folder is on sys.path).
"""

from __future__ import annotations

import statistics
from typing import Any

# The sizes of issue 19 (height, width), with the base's own 32 x 32 as the reference.
SIZES = ((16, 16), (24, 24), (32, 32), (48, 48), (64, 64), (32, 64), (64, 32))
BASE_SIZE = (32, 32)
FRAMING = "letterbox"  # how the 32 px judge reads other shapes (vadapters.metrics.framing; resolution_judges.md)


def size_name(size: tuple[int, int]) -> str:
    h, w = size
    return str(h) if h == w else f"{h}x{w}"


def parse_sizes(text: str) -> list[tuple[int, int]]:
    from vadapters.train.buckets import parse_resolutions

    return [tuple(s) for s in parse_resolutions(text)]


def base_scenes(n: int, seed: int, **overrides: Any):
    """The base's training distribution (one large shape on flat ground), `n` scenes from `seed`."""
    from vadapters.synthetic.scenes import ShapeScenes
    from vadapters.train.base_vae import LARGE_SCENES

    return ShapeScenes(n, seed=seed, **{**LARGE_SCENES, **overrides})


def vae_round_trip(vae):
    """images in [-1, 1] -> the same through `vae` (encode mean, decode), in batches of 64."""
    import torch

    def run(images):
        with torch.no_grad():
            parts = [
                vae.decode(vae.encode(images[i : i + 64]).latent_dist.mean).sample
                for i in range(0, len(images), 64)
            ]  # fmt: skip
        return torch.cat(parts).clamp(-1, 1)

    return run


def score_images(judge, config: dict, images, labels: list[dict], framing: str = FRAMING) -> list[dict]:
    """Per image: the judge's shape / colour verdicts (read with `framing`) and the object count.

    `images` `[N, 3, H, W]` in [-1, 1]; `labels` the scene labels of the one shape each caption asked for.
    """
    import torch

    from vadapters.metrics.counting import count_objects
    from vadapters.metrics.framing import judge_view

    with torch.no_grad():
        shape_logits, colour_logits = judge(judge_view(images, framing))
    shapes, colours = config["shapes"], config["colours"]
    out = []
    for image, label, s, c in zip(images, labels, shape_logits.argmax(1).tolist(), colour_logits.argmax(1).tolist()):
        out.append(
            {
                "shape_ok": shapes[s] == label["shape"],
                "colour_ok": colours[c] == label["colour"],
                "count": count_objects(image)["count"],
            }
        )
    return out


def summarise_records(records: list[dict]) -> dict[str, float]:
    """Rates over per-image records: judge accuracy (shape, colour, both), object counts (one, more, none) and
    `both_and_one` (the right shape and colour, drawn exactly once)."""
    n = max(1, len(records))

    def rate(pred) -> float:
        return round(sum(bool(pred(r)) for r in records) / n, 4)

    return {
        "shape": rate(lambda r: r["shape_ok"]),
        "colour": rate(lambda r: r["colour_ok"]),
        "both": rate(lambda r: r["shape_ok"] and r["colour_ok"]),
        "one_object": rate(lambda r: r["count"] == 1),
        "duplicated": rate(lambda r: r["count"] > 1),
        "no_object": rate(lambda r: r["count"] == 0),
        "both_and_one": rate(lambda r: r["shape_ok"] and r["colour_ok"] and r["count"] == 1),
        "n": len(records),
    }


def mean_std(values: list[float]) -> dict[str, float]:
    return {
        "mean": round(statistics.fmean(values), 4),
        "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
        "values": [round(v, 4) for v in values],
    }


def pct(x: float) -> str:
    return f"{100 * x:.1f}"
