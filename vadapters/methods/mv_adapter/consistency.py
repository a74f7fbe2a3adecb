"""Cross-view consistency metrics for generated view sets.

For orthographic cameras at elevation 0 rotating about the vertical axis, whether image row `r` contains object
pixels does not depend on the view (a 3D point keeps its row), so the per-row occupancy of a consistent view set is
the same in every view. `row_occupancy_iou` is the mean pairwise IoU of those occupancy vectors (1.0 for ground
truth renders).

Example:
    >>> import torch
    >>> views = torch.full((3, 3, 8, 8), 0.5)
    >>> views[:, :, 2:5, 1:3] = 1.0  # the same rows are occupied in every view
    >>> row_occupancy_iou(views)
    1.0
"""

from __future__ import annotations

import itertools

import torch

from vadapters.errors import BadInputError


def border_background(images: torch.Tensor) -> torch.Tensor:
    """Per-view background colour `[V, 3, 1, 1]`: the per-channel median of each view's outermost pixel ring (the
    renders keep objects off the border; a generator's background may be tinted rather than the renders' grey)."""
    ring = torch.cat([images[..., 0, :], images[..., -1, :], images[..., 1:-1, 0], images[..., 1:-1, -1]], dim=-1)
    return ring.float().median(dim=-1).values[..., None, None]


def occupancy(images: torch.Tensor, background: float | str = 0.5, threshold: float = 0.15) -> torch.Tensor:
    """Object mask `[V, H, W]` of images `[V, 3, H, W]` in [0, 1]: pixels farther than `threshold` from the
    background in any channel. `background` is a grey level, or `"border"` for each view's own border colour
    (`border_background`)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise BadInputError(f"expected images [views, 3, H, W] in [0, 1], got {tuple(images.shape)}")
    if isinstance(background, str):
        if background != "border":
            raise BadInputError(f"background must be a grey level in [0, 1] or 'border', got {background!r}")
        background = border_background(images)
    return (images.float() - background).abs().amax(dim=1) > threshold


def row_occupancy_iou(
    images: torch.Tensor, background: float | str = 0.5, threshold: float = 0.15, strict: bool = False
) -> float:
    """Mean pairwise IoU over views of the per-row occupancy vectors (rows holding any object pixel).

    Lenient (default): two views without object pixels agree (1.0), and so do two views "occupied" in every row
    (noise, a full-frame scene). `strict=True` scores what is not one object on empty ground as a missing object: a
    view with no occupied row or with every row occupied has none, and a pair missing an object scores 0, so blank
    or saturated view sets cannot look consistent.

    Example:
        >>> blank = torch.full((2, 3, 4, 4), 0.5)
        >>> row_occupancy_iou(blank), row_occupancy_iou(blank, strict=True)
        (1.0, 0.0)
    """
    rows = occupancy(images, background, threshold).any(dim=2)  # [V, H]
    if strict:
        rows = rows & ~rows.all(dim=1, keepdim=True)  # a saturated view shows no object
    scores = []
    for a, b in itertools.combinations(range(rows.shape[0]), 2):
        union = (rows[a] | rows[b]).sum().item()
        if union == 0:
            scores.append(0.0 if strict else 1.0)
        elif strict and not (rows[a].any() and rows[b].any()):
            scores.append(0.0)
        else:
            scores.append((rows[a] & rows[b]).sum().item() / union)
    return float(sum(scores) / len(scores)) if scores else 1.0


def occupied_row_fraction(images: torch.Tensor, background: float | str = 0.5, threshold: float = 0.15) -> float:
    """Share of rows holding object pixels, averaged over views: near 1.0 means the "object" fills every row
    (e.g. noise), where `row_occupancy_iou` is trivially high - report both."""
    return float(occupancy(images, background, threshold).any(dim=2).float().mean().item())


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB of images in [0, 1].

    Example:
        >>> round(psnr(torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.1)), 2)
        20.0
    """
    mse = torch.mean((prediction.float() - target.float()) ** 2).item()
    return float("inf") if mse == 0 else float(10.0 * torch.log10(torch.tensor(1.0 / mse)).item())
