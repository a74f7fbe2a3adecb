"""Issue 19's fair MV-Adapter / I2V-Adapter benchmarks: the exact video metrics, the strict consistency metric, the
gate and learning-rate rules, and (slow) a smoke run of each benchmark's `--quick` mode."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vadapters.metrics.video import clip_scores, erode, masked_psnr, sprite_identity, track_sprite
from vadapters.synthetic.motion import FirstFrame, MotionClips, render_clip

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import _fairness as fair  # noqa: E402


def _clip(caption="a red square moving right quickly", size=32, frames=6, center=(0.5, 0.3)):
    clip = render_clip(FirstFrame("square", "red", 0.3, center, pattern="checker"), caption, frames, size, size)
    step = (clip["motion"]["dy_px"], clip["motion"]["dx_px"])
    return (clip["frames"] + 1) / 2, clip["masks"], step


def test_ground_truth_scores_perfect_and_a_frozen_copy_has_no_motion():
    truth, masks, step = _clip()
    perfect = clip_scores(truth, truth, masks, step)
    assert perfect["identity_psnr"] == 100.0 and perfect["gt_psnr"] == 100.0
    assert perfect["motion_ratio"] == pytest.approx(1.0) and perfect["motion_error_px"] == pytest.approx(0.0)
    frozen = clip_scores(truth[:1].expand_as(truth), truth, masks, step)
    assert frozen["motion_ratio"] == 0.0 and frozen["motion"] == 0.0
    assert frozen["tracked_identity_psnr"] == 100.0  # the sprite looks exactly like frame 0 ...
    assert frozen["identity_psnr"] < 25.0  # ... but is not where the caption moves it


def test_identity_sees_a_changed_sprite_that_moves_right():
    truth, masks, step = _clip()
    recoloured = truth.clone()
    for t in range(1, truth.shape[0]):
        recoloured[t, :, masks[t]] = recoloured[t, :, masks[t]].flip(0)  # RGB -> BGR inside the sprite
    scores = clip_scores(recoloured, truth, masks, step)
    assert scores["identity_psnr"] < 15.0 and scores["tracked_identity_psnr"] < 15.0
    assert scores["gt_psnr"] > scores["identity_psnr"]  # the background is right


def test_tracking_recovers_integer_and_subpixel_shifts():
    truth, masks, _ = _clip()
    shifted = torch.roll(truth, shifts=(2, -3), dims=(2, 3))
    track = track_sprite(shifted[:1], truth[0], masks[0], max_shift=5)
    assert track["shifts"][0].tolist() == [2.0, -3.0] and float(track["psnr"][0]) == 100.0
    clips = MotionClips(12, seed=12345, num_frames=8)
    errors = []
    for index in range(12):  # the clips move by fractions of a pixel per frame
        item = clips.render(index, 32, 32)
        video = (item["frames"] + 1) / 2
        step = (item["motion"]["dy_px"], item["motion"]["dx_px"])
        errors.append(clip_scores(video, video, item["masks"], step)["motion_error_px"])
    assert max(errors) < 0.25


def test_masks_helpers():
    zeros, ones = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    assert math.isnan(masked_psnr(zeros, ones, torch.zeros(1, 4, 4)))  # no pixel to compare
    assert masked_psnr(zeros, ones, torch.ones(1, 4, 4)) == 0.0
    tiny = torch.zeros(2, 5, 5, dtype=torch.bool)
    tiny[:, 2, 2] = True
    assert torch.equal(erode(tiny), tiny)  # would vanish: kept
    block = torch.zeros(1, 6, 6, dtype=torch.bool)
    block[:, 1:5, 1:5] = True
    assert int(erode(block).sum()) == 4
    truth, masks, _ = _clip()
    assert sprite_identity(truth, truth, masks) == 100.0


def test_strict_row_iou_gives_blank_and_saturated_view_sets_no_credit():
    from vadapters.methods.mv_adapter.consistency import row_occupancy_iou

    blank = torch.full((3, 3, 8, 8), 0.5)
    noise = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    for views in (blank, noise):
        assert row_occupancy_iou(views, "border", 0.3, strict=True) == 0.0
    good = blank.clone()
    good[:, :, 2:5, 3:5] = 1.0
    assert row_occupancy_iou(good, "border", 0.3, strict=True) == 1.0
    half = good.clone()
    half[1] = 0.5  # the object is missing from one view
    assert row_occupancy_iou(half, "border", 0.3, strict=True) == pytest.approx(1 / 3)
    assert row_occupancy_iou(blank) == 1.0  # the lenient default is unchanged


def test_gate_and_learning_rate_rules():
    assert fair.gate([0.9, 0.91, 0.92], [0.5, 0.52, 0.51])["holds"]
    assert not fair.gate([0.9, 0.7, 1.1], [0.5, 0.52, 0.51])["holds"]  # a wide spread
    assert not fair.gate([0.9], [0.5])["holds"]  # fewer than 3 seeds never pass
    assert not fair.gate([0.4, 0.41, 0.42], [0.5, 0.52, 0.51])["holds"]
    lower = fair.gate([1.0, 1.1, 1.0], [2.0, 2.1, 2.0], higher_is_better=False)
    assert lower["holds"] and lower["margin"] > 0
    assert fair.choose({1e-4: 0.5, 1e-3: 0.7, 3e-4: 0.7}) == 3e-4  # ties: the smaller rate
    assert fair.choose({1e-4: float("nan"), 1e-3: 0.2}) == 1e-3
    sweep = fair.sweep([1e-3, 1e-4], lambda lr: -abs(lr - 1e-4))
    assert sweep["chosen"] == 1e-4 and set(sweep["scores"]) == {1e-3, 1e-4}
    agg = fair.aggregate([{"a": 1.0, "b": {"c": 2.0}, "s": "x"}, {"a": 3.0, "b": {"c": 2.0}, "s": "y"}])
    assert agg["a"] == {"mean": 2.0, "std": pytest.approx(2**0.5)} and agg["b"]["c"]["std"] == 0.0 and agg["s"] == "x"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "extra"), [("mv_adapter_benchmark.py", []), ("i2v_adapter_benchmark.py", ["--pipeline", "tiny"])]
)
def test_quick_benchmarks_run_and_report_their_gates(script, extra, tmp_path):
    command = [sys.executable, str(REPO / "benchmarks" / script), "--quick", "--threads", "1", "--out", str(tmp_path)]
    subprocess.run([*command, *extra], check=True, cwd=REPO, capture_output=True, timeout=900)
    stem = script.replace(".py", "_quick")
    result = json.loads((tmp_path / f"{stem}.json").read_text())
    markdown = (tmp_path / f"{stem}.md").read_text()
    assert result["gates"] and "The paper's claims next to ours" in markdown and (tmp_path / f"{stem}.png").is_file()
    assert "ground_truth_vae" in markdown and "Learning rate" in markdown
