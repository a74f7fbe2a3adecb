"""How a 32x32 judge reads an image of another size or aspect ratio.

`ShapeColourJudge` was trained on 32x32 scenes. A square image of another size is resized to 32x32 (antialiased
bilinear), as the judge itself does. A non-square image needs a rule; three are offered and measured against
ground truth by `benchmarks/resolution_judges.py`:

- `"letterbox"` (the default): pad the short side with the image's ground colour (the per-channel median of its
  border) to a square, then resize. Nothing is cut off and nothing is distorted; a shape of size s (a fraction of
  the short side, as `ShapeScenes` sizes are) fills s x short / long of the judge's frame: the large shapes of a
  2:1 image (0.4-0.7) become 0.2-0.35, inside the small-shape distribution the v2 judge was trained on (0.2-0.45).
- `"centre_crop"`: the central square. Undistorted, but a shape away from the centre is cut or lost.
- `"squash"`: resize to 32x32 regardless of the aspect ratio. Keeps everything, but a circle becomes an ellipse.

Example:
    >>> import torch
    >>> wide = torch.zeros(2, 3, 32, 64)
    >>> [tuple(judge_view(wide, mode).shape) for mode in FRAMINGS]
    [(2, 3, 32, 32), (2, 3, 32, 32), (2, 3, 32, 32)]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["FRAMINGS", "judge_view"]

FRAMINGS = ("letterbox", "centre_crop", "squash")


def _ground(images: torch.Tensor) -> torch.Tensor:
    """Per-image, per-channel median of the one-pixel border: `[N, 3]`."""
    top, bottom = images[..., 0, :], images[..., -1, :]
    left, right = images[..., 1:-1, 0], images[..., 1:-1, -1]
    return torch.cat([top, bottom, left, right], dim=-1).median(dim=-1).values


def judge_view(images: torch.Tensor, mode: str = "letterbox", size: int = 32) -> torch.Tensor:
    """`images` `[N, 3, H, W]` in [-1, 1] as the judge reads them: `[N, 3, size, size]` (see the module doc)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [N, 3, H, W], got {tuple(images.shape)}")
    if mode not in FRAMINGS:
        raise ValueError(f"unknown framing {mode!r}; expected one of {', '.join(FRAMINGS)}")
    n, _, h, w = images.shape
    x = images.float()
    if h != w and mode == "letterbox":
        side = max(h, w)
        canvas = _ground(x)[:, :, None, None].expand(n, 3, side, side).clone()
        top, left = (side - h) // 2, (side - w) // 2
        canvas[:, :, top : top + h, left : left + w] = x
        x = canvas
    elif h != w and mode == "centre_crop":
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        x = x[:, :, top : top + side, left : left + side]
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x
