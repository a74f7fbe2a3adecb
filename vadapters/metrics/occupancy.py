"""Is there one object on plain ground? The check the proof world's object captions are scored with.

The multi-view objects are rendered on a flat grey ground (`synthetic.multiview.BACKGROUND`, 0 in [-1, 1]). An image
passes when its border is that ground (at least `border_share` of the border pixels within `tolerance`) and the
pixels that differ from the ground cover `min_area` to `max_area` of the image: an object, not an empty or a filled
frame. Connected blobs are counted too (specks under 2 % of the foreground ignored) but not gated: an object is a
union of primitives, and 52 % of ground-truth views show it as two or more blobs at 32 px.

Example:
    >>> import torch
    >>> image = torch.zeros(3, 32, 32)
    >>> image[:, 10:20, 12:22] = torch.tensor([1.0, -1.0, -1.0])[:, None, None]
    >>> one_object_on_plain_ground(image)["ok"]
    True
    >>> image[:, 0:6, 0:32] = 1.0
    >>> one_object_on_plain_ground(image)["plain_ground"]
    False
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["object_occupancy_rate", "one_object_on_plain_ground"]


def one_object_on_plain_ground(
    image: torch.Tensor,
    ground: float = 0.0,
    tolerance: float = 0.15,
    border: int = 2,
    border_share: float = 0.9,
    min_area: float = 0.03,
    max_area: float = 0.7,
) -> dict[str, Any]:
    """Score one image `[3, H, W]` in [-1, 1]: `plain_ground`, `objects` (connected blobs), `area`, `ok`."""
    from scipy import ndimage

    x = image.detach().float().cpu().numpy()
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"expected an image [3, H, W], got {tuple(x.shape)}")
    off = np.abs(x - ground).max(0) > tolerance
    edge = np.ones_like(off)
    edge[border:-border, border:-border] = False
    plain = float((~off[edge]).mean()) >= border_share
    labels, count = ndimage.label(off)
    sizes = np.bincount(labels.ravel())[1:] if count else np.zeros(0, dtype=int)
    blobs = sizes[sizes >= max(1, 0.02 * sizes.sum())] if count else sizes
    area = float(off.mean())
    ok = plain and min_area <= area <= max_area
    return {"plain_ground": plain, "objects": int(len(blobs)), "area": round(area, 4), "ok": bool(ok)}


def object_occupancy_rate(images: torch.Tensor, **options: Any) -> dict[str, float]:
    """Share of `images` `[N, 3, H, W]` in [-1, 1] that show one object on plain ground, plus the parts."""
    scores = [one_object_on_plain_ground(im, **options) for im in images]
    n = max(1, len(scores))
    return {
        "one_object_on_plain_ground": round(sum(s["ok"] for s in scores) / n, 4),
        "plain_ground": round(sum(s["plain_ground"] for s in scores) / n, 4),
        "one_blob": round(sum(s["objects"] == 1 for s in scores) / n, 4),
        "mean_area": round(sum(s["area"] for s in scores) / n, 4),
        "n": len(scores),
    }
