"""Camouflage scenes with a learnable texture cue (`CamouflageScenes(texture_scale=...)`, the data of
`synthetic:camouflage-texture`) beside the hard variant, which stays exactly the scenes of earlier versions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vadapters.errors import BadInputError
from vadapters.methods.sam_adapter.data import make_segmentation_source
from vadapters.synthetic.segmentation import CAMOUFLAGE_TEXTURE_CUE, CamouflageScenes, available_photos
from vadapters.synthetic.shapes import compound_distance

TEXTURES = [["noise"]] + ([["photo"]] if available_photos() else [])


def _grain(item) -> float:
    """Mean |Laplacian| of the luminance 2 px inside the object over that in a ring 3-6 px around it."""
    luma = item["image"].mean(0)[None, None]
    lap = F.conv2d(luma, torch.tensor([[[[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]]]), padding=1)[0, 0].abs()
    m = item["mask"][None, None].float()
    inside = -F.max_pool2d(-m, 5, 1, 2)[0, 0] > 0.5
    inside = inside if inside.any() else m[0, 0] > 0.5
    ring = (F.max_pool2d(m, 13, 1, 6)[0, 0] > 0.5) & ~(F.max_pool2d(m, 5, 1, 2)[0, 0] > 0.5)
    ring[:2], ring[-2:], ring[:, :2], ring[:, -2:] = False, False, False, False
    return float(lap[inside].mean() / lap[ring].mean())


def test_hard_variant_is_unchanged():
    # Sums of CamouflageScenes(4, seed=11, textures=["noise"]) at 32x32 as rendered before `texture_scale` existed.
    for scenes in (
        CamouflageScenes(4, seed=11, textures=["noise"]),
        CamouflageScenes(4, 11, textures=["noise"], texture_scale=1.0),
    ):
        items = [scenes.render(i, 32, 32) for i in range(4)]
        sums = [float(it["image"].double().sum()) for it in items]
        assert np.allclose(sums, [-86.07, -292.3324, -499.9754, 710.6227], atol=1e-3), sums
        assert [int(it["mask"].sum()) for it in items] == [43, 104, 55, 232]


@pytest.mark.parametrize("textures", TEXTURES)
def test_texture_variant_deterministic_mask_exact_background_kept(textures):
    cue = CamouflageScenes(6, seed=3, textures=textures, texture_scale=2.0)
    again = CamouflageScenes(6, seed=3, textures=textures, texture_scale=2.0)
    hard = CamouflageScenes(6, seed=3, textures=textures)
    for i in range(6):
        a, b, h = cue.render(i, 40, 56), again.render(i, 40, 56), hard.render(i, 40, 56)
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
        obj = a["scene"]["object"]  # the mask is exactly the object's signed distance <= 0, as in the hard variant
        distance = compound_distance(obj["parts"], (obj["cx"], obj["cy"]), 40, 56, obj["smooth"])
        assert torch.equal(a["mask"], torch.from_numpy(distance <= 0.0)) and torch.equal(a["mask"], h["mask"])
        far = torch.from_numpy(distance >= 1.0)  # beyond the 2 px feather: the background, as in the hard variant
        assert torch.equal(a["image"][:, far], h["image"][:, far])
        assert not torch.equal(a["image"][:, a["mask"]], h["image"][:, h["mask"]])
        assert a["scene"]["fill"]["source"] == a["scene"]["texture"]["source"]


@pytest.mark.parametrize("textures", TEXTURES)
def test_texture_cue_is_measurable_and_colours_still_match(textures):
    cue = CamouflageScenes(24, seed=1, textures=textures, **CAMOUFLAGE_TEXTURE_CUE)
    hard = CamouflageScenes(24, seed=1, textures=textures)
    ratios, colour = [], []
    for i in range(24):
        a, h = cue.render(i, 64, 64), hard.render(i, 64, 64)
        ratios.append(_grain(a) / _grain(h))  # same scene, same background: only the fill's grain differs
        m, ring = a["mask"], (F.max_pool2d(a["mask"][None].float(), 11, 1, 5)[0] > 0) & ~a["mask"]
        colour.append((a["image"][:, m].mean(1) - a["image"][:, ring].mean(1)).abs().max().item())
    paired = float(np.exp(np.mean(np.log(ratios))))
    assert paired > (1.8 if textures == ["noise"] else 1.15), paired
    assert np.mean(colour) < 0.12  # still camouflaged in colour (the hard variant's bound)
    if textures == ["noise"]:
        hard_grain = float(np.exp(np.mean([np.log(_grain(hard.render(i, 64, 64))) for i in range(24)])))
        assert 0.75 < hard_grain < 1.5, hard_grain  # no grain cue in the hard variant


def test_texture_scale_bounds_and_named_source():
    for bad in (0.1, 5.0):
        with pytest.raises(BadInputError, match="texture_scale"):
            CamouflageScenes(4, textures=["noise"], texture_scale=bad)
    cue = make_segmentation_source("synthetic:camouflage-texture", num_items=3, seed=0, size=(32, 32))
    hard = make_segmentation_source("synthetic:camouflage", num_items=3, seed=0, size=(32, 32))
    assert cue.scenes.texture_scale == CAMOUFLAGE_TEXTURE_CUE["texture_scale"] == 3.0
    assert hard.scenes.texture_scale == 1.0
    assert torch.equal(cue.load(0)["mask"], hard.load(0)["mask"])
    coarse = CamouflageScenes(3, seed=0, textures=["noise"], texture_scale=0.5)
    assert coarse.scene(0)["fill"]["cells"] == max(1, round(coarse.scene(0)["texture"]["cells"] * 0.5))
