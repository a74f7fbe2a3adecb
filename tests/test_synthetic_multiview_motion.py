"""Tests of the multi-view object renderer (camera maths, maps, determinism) and of the motion clips."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pytest
import torch

from vadapters.errors import BadInputError
from vadapters.synthetic.motion import DIRECTIONS, SPEEDS, FirstFrame, Motion, MotionClips, render_clip
from vadapters.synthetic.multiview import (
    DEFAULT_AZIMUTHS,
    MultiViewObjects,
    OrthoCamera,
    Primitive,
    ortho_cameras,
    raymap,
    render_view,
    render_views,
)

# ----------------------------------------------------------------------------------------------- cameras


def test_camera_frame_and_matrices():
    front, right = OrthoCamera(0.0), OrthoCamera(90.0)
    assert torch.allclose(front.position, torch.tensor([0.0, 0.0, 1.8], dtype=torch.float64))
    assert torch.allclose(right.position, torch.tensor([1.8, 0.0, 0.0], dtype=torch.float64))
    top = OrthoCamera(0.0, 90.0)
    assert torch.allclose(top.view_dir, torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64), atol=1e-12)
    for cam in [front, right, top, OrthoCamera(37.0, -20.0, distance=2.5)]:
        assert torch.allclose(cam.c2w @ cam.w2c, torch.eye(4, dtype=torch.float64), atol=1e-12)
        assert torch.allclose(cam.c2w[:3, 3], cam.position)
        assert torch.allclose(-cam.c2w[:3, 2], cam.view_dir)
        u, v, depth = cam.project(torch.zeros(1, 3), 32, 48)  # the origin lands on the image centre
        assert (float(u), float(v), float(depth)) == pytest.approx((24.0, 16.0, cam.distance))
    # front view: world +x is image right, world +y is image up
    u, v, _ = front.project([[0.1, 0.0, 0.0], [0.0, 0.1, 0.0]], 64, 64)
    assert u[0] > 32 and v[0] == pytest.approx(32) and v[1] < 32 and u[1] == pytest.approx(32)


def test_point_keeps_its_row_across_elevation_zero_views():
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.5, 0.5, size=(20, 3))
    azimuths = [*DEFAULT_AZIMUTHS, *rng.uniform(0, 360, size=6)]
    rows = torch.stack([cam.project(points, 40, 56)[1] for cam in ortho_cameras(azimuths)])
    assert torch.allclose(rows, rows[:1].expand_as(rows), atol=1e-9)
    u0, v0, d0 = OrthoCamera(0.0).project(points, 40, 56)
    u1, v1, d1 = OrthoCamera(360.0).project(points, 40, 56)
    assert torch.allclose(u0, u1, atol=1e-9) and torch.allclose(v0, v1) and torch.allclose(d0, d1)
    # a raised camera does move points across rows
    assert not torch.allclose(OrthoCamera(90.0, 30.0).project(points, 40, 56)[1], v0)


def test_raymap_constant_and_rescaled():
    for cam in ortho_cameras(DEFAULT_AZIMUTHS, elevation=20.0):
        rm = raymap(cam, 5, 7)
        assert rm.shape == (6, 5, 7) and rm.min() >= 0 and rm.max() <= 1
        assert torch.equal(rm, rm[:, :1, :1].expand_as(rm))
        expected = (torch.cat([cam.view_dir, cam.position / cam.position.norm()]) + 1) / 2
        assert torch.allclose(rm[:, 0, 0].double(), expected, atol=1e-6)


# ----------------------------------------------------------------------------------------------- rendering


def test_front_view_of_a_sphere_is_a_centred_disc_facing_the_camera():
    r, size = 0.3, 64
    view = render_view([Primitive("sphere", (0.0, 0.0, 0.0), (r, r, r), "red")], OrthoCamera(0.0), size, size)
    mask = view["mask"]
    assert mask.float().mean().item() == pytest.approx(math.pi * r**2 / (2 * 0.55) ** 2, rel=0.03)
    assert torch.equal(mask, mask.flip(0)) and torch.equal(mask, mask.flip(1)) and torch.equal(mask, mask.T)
    ij = mask.nonzero().double().mean(0)
    assert ij.tolist() == pytest.approx([31.5, 31.5])
    normal = view["normal"][:, 31, 31].double() * 2 - 1  # the pixel next to the centre looks straight back
    assert float(normal @ -OrthoCamera(0.0).view_dir) > 0.999
    assert view["depth"][31, 31].item() == pytest.approx(1.8 - r, abs=1e-3)


def test_all_views_maps_are_consistent():
    data = MultiViewObjects(6, seed=1)
    for index in range(len(data)):
        item = data.render(index, 24, 24)
        masks = item["masks"]
        assert masks.any(dim=(1, 2)).all(), "every view sees the object"
        for v, cam in enumerate(item["cameras"]):
            mask = masks[v]
            # background outside the mask in every map; no object pixel equals the grey background
            assert (item["images"][v][:, ~mask] == 0).all() and (item["images"][v][:, mask] != 0).any(0).all()
            assert (item["positions"][v][:, ~mask] == 0).all() and (item["normals"][v][:, ~mask] == 0.5).all()
            assert (item["depths"][v][~mask] == 0).all()
            # positions project back onto their own pixel centres at their own depth
            ii, jj = mask.nonzero(as_tuple=True)
            xyz = item["positions"][v][:, ii, jj].T.double() - 0.5
            assert xyz.min() >= -0.5 - 1e-6 and xyz.max() <= 0.5 + 1e-6
            u, w, depth = cam.project(xyz, 24, 24)
            assert torch.allclose(u, jj.double() + 0.5, atol=1e-4) and torch.allclose(w, ii.double() + 0.5, atol=1e-4)
            assert torch.allclose(depth, item["depths"][v][ii, jj].double(), atol=1e-4)
            # visible surfaces face the camera and normals are unit vectors
            normals = item["normals"][v][:, ii, jj].T.double() * 2 - 1
            assert torch.allclose(normals.norm(dim=1), torch.ones(len(ii), dtype=torch.float64), atol=1e-5)
            assert (normals @ cam.view_dir <= 1e-5).all()
        # elevation 0: objects stay inside the frame, and every row with object pixels does so in every view
        assert not (masks[:, 0].any() or masks[:, -1].any() or masks[:, :, 0].any() or masks[:, :, -1].any())
        assert torch.allclose(item["raymaps"][0], raymap(item["cameras"][0], 24, 24))


def test_z_buffer_nearest_surface_wins():
    near = Primitive("sphere", (0.0, 0.0, 0.25), (0.2, 0.2, 0.2), "red")
    far = Primitive("box", (0.0, 0.0, -0.1), (0.3, 0.3, 0.3), "blue", yaw_deg=20.0)
    for order in ([near, far], [far, near]):
        out = render_views(order, ortho_cameras([0.0, 180.0]), 32, 32)
        front, back = out["images"][0][:, 16, 16], out["images"][1][:, 16, 16]
        assert front[0] > front[2] and back[2] > back[0]  # red in front, blue from behind
        assert out["depths"][0, 16, 16] == pytest.approx(1.8 - 0.45, abs=3e-3)  # pixel centre is 0.5 px off-axis


def test_each_primitive_kind_and_non_square_and_top_view():
    for kind in ("sphere", "box", "cylinder", "cone"):
        prim = Primitive(kind, (0.0, 0.0, 0.0), (0.3, 0.3, 0.3), "green")
        out = render_views([prim], ortho_cameras([0.0, 45.0], elevation=[0.0, 90.0]), 20, 30)
        assert out["masks"].shape == (2, 20, 30) and out["masks"].any(dim=(1, 2)).all()
    # a box seen from the front is a square; from 45 degrees a wider rectangle of the same height
    box = render_views(
        [Primitive("box", (0.0, 0.0, 0.0), (0.3, 0.3, 0.3), "green")], ortho_cameras([0.0, 45.0]), 44, 66
    )
    rows, cols = box["masks"].any(2).sum(1), box["masks"].any(1).sum(1)
    assert rows.tolist() == [24, 24] and cols[0] == 24 and cols[1] == pytest.approx(24 * math.sqrt(2), abs=1)


def test_dataset_determinism_captions_and_speed():
    a, b = MultiViewObjects(5, seed=3), MultiViewObjects(50, seed=3)
    for i in range(5):
        x, y = a.render(i, 16, 16), b.render(i, 16, 16)
        assert x["caption"] == y["caption"] and torch.equal(x["images"], y["images"])
        assert torch.equal(x["positions"], y["positions"]) and torch.equal(x["normals"], y["normals"])
        assert x["caption"].startswith(("a ", "an ")) and len(x["object"].primitives) in (1, 2, 3, 4)
        for prim in x["object"].primitives:
            assert f"{prim.color} {prim.kind}" in x["caption"]
    other = MultiViewObjects(5, seed=4)
    assert [a.object(i).caption for i in range(5)] != [other.object(i).caption for i in range(5)]
    item = a[0]
    assert item["images"].shape == (6, 3, 32, 32) and item["azimuths"].tolist() == list(DEFAULT_AZIMUTHS)
    assert MultiViewObjects(2, num_views=4).render(0, 8, 8)["azimuths"].tolist() == [0.0, 90.0, 180.0, 270.0]
    a.render(1, 64, 64)  # warm-up
    start = time.perf_counter()
    a.render(2, 64, 64)
    assert time.perf_counter() - start < 2.0  # typically ~0.02 s on a quiet CPU


def test_multiview_bad_options():
    with pytest.raises(BadInputError, match="allowed: sphere"):
        Primitive("torus", (0.0, 0.0, 0.0), (0.1, 0.1, 0.1), "red")
    with pytest.raises(BadInputError, match="allowed: red"):
        Primitive("box", (0.0, 0.0, 0.0), (0.1, 0.1, 0.1), "mauve")
    with pytest.raises(BadInputError):
        Primitive("box", (0.0, 0.0, 0.0), (0.1, -0.1, 0.1), "red")
    with pytest.raises(BadInputError):
        OrthoCamera(0.0, 95.0)
    with pytest.raises(BadInputError):
        ortho_cameras([0.0, 90.0], elevation=[0.0])
    with pytest.raises(BadInputError):
        MultiViewObjects(0)
    with pytest.raises(BadInputError, match="num_views"):
        MultiViewObjects(2, num_views=3, azimuths=[0.0, 90.0])
    with pytest.raises(BadInputError):
        MultiViewObjects(2).render(0, 0, 8)
    with pytest.raises(IndexError):
        MultiViewObjects(2).object(2)


# ----------------------------------------------------------------------------------------------- motion


def _centroids(masks: torch.Tensor) -> torch.Tensor:
    """`[F, 2]` mask centroids `(x, y)` in pixels."""
    out = []
    for mask in masks:
        ii, jj = mask.nonzero(as_tuple=True)
        out.append(torch.stack([jj.double().mean(), ii.double().mean()]))
    return torch.stack(out)


def test_centroid_follows_the_stated_motion():
    clips = MotionClips(24, seed=0, num_frames=12)
    seen = set()
    for index in range(len(clips)):
        clip = clips.render(index, 64, 64)
        motion, masks = clip["motion"], clip["masks"]
        seen.add(motion["direction"])
        assert clip["frames"].shape == (12, 3, 64, 64) and clip["frames"].abs().max() <= 1
        # fully inside the frame, same area in every frame
        assert not (masks[:, 0].any() or masks[:, -1].any() or masks[:, :, 0].any() or masks[:, :, -1].any())
        steps = _centroids(masks).diff(dim=0)
        expected = torch.tensor([motion["dx_px"], motion["dy_px"]], dtype=torch.float64)
        assert (steps - expected).abs().max() < 1.0
        assert motion["dx_px"] == pytest.approx(motion["dx"] * 64) and motion["dy_px"] == pytest.approx(
            motion["dy"] * 64
        )
        assert math.hypot(motion["dx"], motion["dy"]) == pytest.approx(SPEEDS[motion["speed"]])
        # the caption's direction matches the sign of the centroid's total displacement
        assert f"moving {motion['direction']} {motion['speed']}" in clip["caption"]
        total = _centroids(masks[[0, -1]]).diff(dim=0)[0]
        ux, uy = DIRECTIONS[motion["direction"]]
        for got, unit in zip(total.tolist(), (ux, uy)):
            assert (got > 1 if unit > 0 else got < -1) if unit else abs(got) < 1
    assert len(seen) >= 6


def test_clip_is_a_function_of_first_frame_and_caption():
    first = FirstFrame("triangle", "yellow", 0.25, (0.5, 0.5), pattern="rings", background=("purple", "cyan"))
    a = render_clip(first, "a yellow triangle moving left slowly", 8, 32, 48)
    b = render_clip(first, Motion("left", "slowly"), 8, 32, 48)
    assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["masks"], b["masks"])
    assert torch.equal(render_clip(dataclasses.asdict(first), "moving left slowly", 8, 32, 48)["frames"], a["frames"])
    c = render_clip(first, {"direction": "down-right", "speed": "quickly"}, 8, 32, 48)
    assert torch.equal(a["frames"][0], c["frames"][0]) and not torch.equal(a["frames"][1:], c["frames"][1:])
    assert a["motion"]["dx"] < 0 and c["motion"]["dx"] > 0 and c["motion"]["dy"] > 0
    # the returned motion dict reproduces the clip
    assert torch.equal(render_clip(first, c["motion"], 8, 32, 48)["frames"], c["frames"])
    # the dataset's clips are reproducible from their own first frame and caption
    clips = MotionClips(3, seed=5)
    for i in range(3):
        item, (first_i, _) = clips.render(i, 16, 16), clips.scene(i)
        again = render_clip(first_i, item["caption"], 8, 16, 16)
        assert torch.equal(item["frames"], again["frames"]) and again["caption"] == item["caption"]
    # pixels the sprite never covers (plus a margin) are static background
    static = ~torch.nn.functional.max_pool2d(a["masks"].any(0)[None, None].float(), 5, 1, 2)[0, 0].bool()
    assert torch.equal(a["frames"][:, :, static], a["frames"][:1, :, static].expand(8, -1, -1))


def test_motion_is_resolution_independent_and_deterministic():
    clips = MotionClips(4, seed=2, num_frames=16)
    small, large = clips.render(1, 32, 32), clips.render(1, 64, 128)
    assert small["caption"] == large["caption"]
    assert large["motion"]["dx_px"] == pytest.approx(4 * small["motion"]["dx_px"])
    assert large["motion"]["dy_px"] == pytest.approx(2 * small["motion"]["dy_px"])
    assert torch.equal(MotionClips(4, seed=2, num_frames=16)[1]["frames"], clips[1]["frames"])
    assert [clips.caption(i) for i in range(4)] != [MotionClips(4, seed=9).caption(i) for i in range(4)]
    four = MotionClips(12, seed=0, directions=("left", "right", "up", "down"), speeds={"slowly": 1 / 16})
    assert {four.scene(i)[1].direction for i in range(12)} <= {"left", "right", "up", "down"}
    assert four.render(0, 16, 16)["motion"]["dx_px"] ** 2 + four.render(0, 16, 16)["motion"]["dy_px"] ** 2 == 1.0


def test_motion_bad_options():
    first = FirstFrame("square", "red", 0.25, (0.5, 0.9))
    for kwargs in ({"num_frames": 7}, {"num_frames": 17}, {"speeds": {"fast": 0.2}}, {"directions": ("sideways",)}):
        with pytest.raises(BadInputError):
            MotionClips(2, **kwargs)
    with pytest.raises(BadInputError):
        MotionClips(0)
    with pytest.raises(BadInputError, match="allowed: square"):
        FirstFrame("hexagon", "red", 0.25, (0.5, 0.5))
    with pytest.raises(BadInputError, match="moving <direction> <speed>"):
        render_clip(first, "a red square standing still", 8, 16, 16)
    with pytest.raises(BadInputError, match="allowed: right"):
        Motion("sideways", "slowly")
    with pytest.raises(BadInputError, match="leaves the frame"):
        render_clip(first, "a red square moving right quickly", 8, 16, 16)
    with pytest.raises(BadInputError):
        render_clip(first, "a red square moving left quickly", 0, 16, 16)
