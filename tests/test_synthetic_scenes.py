"""Synthetic scenes: shapes, multi-shape scenes with captions, salient / camouflage / shadow segmentation scenes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vadapters.errors import BadInputError
from vadapters.synthetic.scenes import PALETTE, ShapeScenes, position_word
from vadapters.synthetic.segmentation import (
    CamouflageScenes,
    SalientScenes,
    ShadowScenes,
    available_photos,
    save_folder,
)
from vadapters.synthetic.shapes import SHAPES, Shape, coverage, mask, value_noise

SEG_CLASSES = (SalientScenes, CamouflageScenes, ShadowScenes)
TEXTURES = [["noise"]] + ([["photo"]] if available_photos() else [])


def _dilate(m: torch.Tensor, k: int) -> torch.Tensor:
    return F.max_pool2d(m.float()[None], 2 * k + 1, 1, k)[0] > 0


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a & b).sum() / (a | b).sum().clamp(min=1)).item()


def _down(m: torch.Tensor, factor: int) -> torch.Tensor:
    return F.avg_pool2d(m.float()[None], factor)[0] > 0.5


# shapes ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", SHAPES)
def test_shape_mask_is_coverage_half_and_centred(kind):
    shape = Shape(kind, cx=0.4, cy=0.6, size=0.7, rotation=0.3)
    cov, m = coverage(shape, 30, 50), mask(shape, 30, 50)
    assert cov.min() >= 0.0 and cov.max() <= 1.0 and np.array_equal(cov >= 0.5, m)
    assert 0 < m.sum() < m.size
    ys, xs = np.nonzero(m)
    # Inside the bounding circle: diameter 0.7 of the short side (30 px) around (0.4 * 50, 0.6 * 30).
    assert np.hypot(xs + 0.5 - 20.0, ys + 0.5 - 18.0).max() <= 0.35 * 30 + 1e-6
    edge = (cov > 0) & (cov < 1)
    assert edge.any() and (_dilate(torch.from_numpy(m), 1).numpy() | ~edge).all()  # soft only near the edge


def test_shape_bad_kind_and_value_noise():
    with pytest.raises(BadInputError, match="circle"):
        Shape("hexagon", 0.5, 0.5, 0.5)
    with pytest.raises(BadInputError):
        Shape("circle", 0.5, 0.5, 0.0)
    a, b = value_noise(3, 16, 24), value_noise(3, 16, 24)
    assert np.array_equal(a, b) and 0.0 <= a.min() <= a.max() <= 1.0 and a.std() > 0.02


# ShapeScenes -----------------------------------------------------------------------------------------------------


def test_shape_scenes_deterministic_and_any_size():
    a, b = ShapeScenes(10, seed=3), ShapeScenes(50, seed=3)
    r1, r2 = a.render(4, 20, 36), b.render(4, 20, 36)
    assert torch.equal(r1["image"], r2["image"]) and torch.equal(r1["masks"], r2["masks"])
    assert r1["caption"] == r2["caption"] and r1["image"].dtype == torch.float32
    assert r1["image"].shape == (3, 20, 36) and r1["masks"].shape[1:] == (20, 36)
    assert r1["image"].min() >= -1.0 and r1["image"].max() <= 1.0
    assert not torch.equal(a.render(5, 20, 36)["image"], r1["image"])
    assert not torch.equal(ShapeScenes(10, seed=4).render(4, 20, 36)["image"], r1["image"])
    assert a.scene(-1) == a.scene(9) and len(a) == 10
    with pytest.raises(IndexError):
        a.scene(10)


def test_shape_scenes_masks_match_pixels():
    scenes = ShapeScenes(12, seed=1, max_shapes=1, background="flat", min_size=0.3)
    for i in range(len(scenes)):
        item = scenes.render(i, 40, 48)
        (m,), (label,) = item["masks"], item["labels"]
        image = (item["image"] + 1.0) / 2.0
        shape_rgb = torch.tensor(PALETTE[label["colour"]])[:, None]
        bg_rgb = torch.tensor(PALETTE[item["scene"]["background"]["colours"][0]])[:, None]
        inner = ~_dilate(~m, 1)  # away from the anti-aliased edge (a star's thin tips soften up to 2 px away)
        outer = ~_dilate(m, 2)
        assert inner.any() and outer.any()
        assert torch.allclose(image[:, inner], shape_rgb.expand(-1, int(inner.sum())), atol=1e-5)
        assert torch.allclose(image[:, outer], bg_rgb.expand(-1, int(outer.sum())), atol=1e-5)
        # At the edge the colour is a blend: nearer the shape's colour exactly where the mask says so.
        d_shape = (image - shape_rgb[..., None]).abs().sum(0)
        d_bg = (image - bg_rgb[..., None]).abs().sum(0)
        assert ((d_shape <= d_bg + 1e-5) == m).float().mean() > 0.99


def test_shape_scenes_scale_invariant():
    scenes = ShapeScenes(16, seed=2)
    instance_ious = []
    for i in range(len(scenes)):
        small, big = scenes.render(i, 32, 32)["masks"], scenes.render(i, 96, 96)["masks"]
        assert _iou(small.any(0), _down(big.any(0), 3)) > 0.9
        instance_ious += [_iou(s, _down(b, 3)) for s, b in zip(small, big)]
    assert np.mean(instance_ious) > 0.9


def test_shape_scenes_captions_labels_and_disjoint_masks():
    scenes = ShapeScenes(30, seed=0, min_shapes=1, max_shapes=3)
    counts = set()
    for i in range(len(scenes)):
        item = scenes.render(i, 48, 48)
        labels, masks, caption = item["labels"], item["masks"], item["caption"]
        counts.add(len(labels))
        assert caption == scenes.caption(i) and len(labels) == masks.shape[0] >= 1
        assert (masks.sum(0) <= 1).all()  # disjoint: the front-most shape wins
        assert all(m.any() for m in masks)
        bg = item["scene"]["background"]
        assert not {lab["colour"] for lab in labels} & set(bg["colours"])
        for lab in labels:
            assert f"{lab['colour']} {lab['shape']}" in caption
            assert lab["position"] == position_word(lab["cx"], lab["cy"])
        if len(labels) == 1:
            assert caption.endswith(", " + labels[0]["position"])
    assert counts == {1, 2, 3}
    assert (
        ShapeScenes(1, max_shapes=1, shapes=["star"], colours=["orange"], background="flat")
        .caption(0)
        .startswith("an orange star on a")
    )


def test_shape_scenes_dataset_and_training_source():
    from vadapters.train.buckets import BucketBatchSampler
    from vadapters.train.data import BucketedDataset, collate_image_caption

    scenes = ShapeScenes(6, seed=0, size=(24, 16))
    assert isinstance(scenes, torch.utils.data.Dataset)
    assert scenes[2]["image"].shape == (3, 24, 16)
    loader = torch.utils.data.DataLoader(
        BucketedDataset(scenes), batch_sampler=BucketBatchSampler(6, 3, [(16, 16)]), collate_fn=collate_image_caption
    )
    batch = next(iter(loader))
    assert batch["pixel_values"].shape == (3, 3, 16, 16) and all(isinstance(c, str) for c in batch["captions"])


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"shapes": ["hexagon"]}, "circle"),
        ({"colours": ["purple"]}, "magenta"),
        ({"background": "stripes"}, "gradient"),
        ({"min_size": 0.0}, "min_size"),
        ({"min_size": -0.1}, "min_size"),
        ({"min_size": 0.5, "max_size": 0.3}, "max_size"),
        ({"min_shapes": 3, "max_shapes": 2}, "max_shapes"),
        ({"max_shapes": 8}, "max_shapes"),
        ({"size": (0, 8)}, "size"),
    ],
)
def test_shape_scenes_bad_options(kwargs, needle):
    with pytest.raises(BadInputError, match=needle):
        ShapeScenes(4, **kwargs)


def test_bad_num_items_and_canvas():
    with pytest.raises(BadInputError):
        ShapeScenes(0)
    with pytest.raises(BadInputError):
        ShapeScenes(2).render(0, 0, 8)
    with pytest.raises(BadInputError):
        SalientScenes(2, textures=["noise"]).render(0, 8, 0)


# segmentation scenes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("textures", TEXTURES)
@pytest.mark.parametrize("cls", SEG_CLASSES)
def test_segmentation_deterministic_scale_invariant(cls, textures):
    a, b = cls(8, seed=5, textures=textures), cls(8, seed=5, textures=textures)
    for i in range(3):
        r1, r2 = a.render(i, 32, 32), b.render(i, 32, 32)
        assert torch.equal(r1["image"], r2["image"]) and torch.equal(r1["mask"], r2["mask"])
        assert r1["kind"] == cls.kind and r1["mask"].dtype == torch.bool and r1["mask"].any()
        assert r1["image"].dtype == torch.float32 and -1.0 <= r1["image"].min() <= r1["image"].max() <= 1.0
        big = a.render(i, 96, 96)["mask"]
        assert _iou(r1["mask"], _down(big, 3)) > 0.9
    assert not torch.equal(a.render(0, 32, 32)["image"], a.render(1, 32, 32)["image"])
    odd = a[3]
    assert odd["image"].shape == (3, 64, 64) and a.render(3, 17, 40)["mask"].shape == (17, 40)


@pytest.mark.parametrize("textures", TEXTURES)
def test_camouflage_blends_in_and_salient_stands_out(textures):
    camo, salient = CamouflageScenes(10, textures=textures), SalientScenes(10, textures=textures)
    diffs = {"camo": [], "salient": []}
    for name, scenes in (("camo", camo), ("salient", salient)):
        for i in range(len(scenes)):
            item = scenes.render(i, 48, 48)
            m, image = item["mask"], item["image"]
            ring = _dilate(m, 5) & ~_dilate(m, 1)
            assert m.sum() > 20 and ring.any()
            diffs[name].append((image[:, m].mean(1) - image[:, ring].mean(1)).abs().max().item())
    assert np.mean(diffs["camo"]) < 0.12 and max(diffs["camo"]) < 0.4
    assert np.mean(diffs["salient"]) > 3 * np.mean(diffs["camo"])


@pytest.mark.parametrize("visible", [False, True])
def test_shadow_is_darker_than_surroundings(visible):
    scenes = ShadowScenes(8, seed=1, textures=TEXTURES[-1], object_visible=visible)
    for i in range(len(scenes)):
        item = scenes.render(i, 48, 48)
        m, obj = item["mask"], item["object_mask"]
        assert item["scene"]["object_visible"] is visible and bool(obj.any()) is visible
        assert not (m & obj).any()
        ring = _dilate(m | obj, 5) & ~_dilate(m | obj, 2)
        luma = item["image"].mean(0)
        assert luma[m].mean() < luma[ring].mean() - 0.1


def test_segmentation_bad_options_and_save_folder(tmp_path):
    from PIL import Image

    for kwargs, needle in (
        ({"textures": ["plasma"]}, "noise"),
        ({"shapes": ["blob"]}, "circle"),
        ({"min_size": 0.0}, "min_size"),
        ({"min_size": 0.6, "max_size": 0.4}, "max_size"),
        ({"blob_prob": 2.0}, "blob_prob"),
    ):
        with pytest.raises(BadInputError, match=needle):
            SalientScenes(4, **kwargs)
    with pytest.raises(BadInputError, match="jitter"):
        CamouflageScenes(4, textures=["noise"], jitter=-0.1)
    scenes = ShadowScenes(5, textures=["noise"], size=(20, 24))
    paths = save_folder(scenes, tmp_path, n=3)
    assert len(paths) == 3 and sorted(p.name for p in (tmp_path / "masks").iterdir()) == [
        "00000.png",
        "00001.png",
        "00002.png",
    ]
    saved = np.asarray(Image.open(tmp_path / "masks" / "00001.png"))
    assert saved.shape == (20, 24) and np.array_equal(saved > 127, scenes[1]["mask"].numpy())
    assert np.asarray(Image.open(paths[0])).shape == (20, 24, 3)
