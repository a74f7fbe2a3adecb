"""Issue 19's ResAdapter resolution benchmark: the object counter, how the 32 px judge reads other sizes, the gate
rule, and (slow) a smoke run of both benchmark scripts' `--quick` modes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vadapters.metrics.counting import count_accuracy, count_objects, count_rates
from vadapters.metrics.framing import FRAMINGS, judge_view
from vadapters.synthetic.scenes import PALETTE, ShapeScenes

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import res_adapter_resolution as bench  # noqa: E402


def _colour(name: str) -> torch.Tensor:
    return torch.tensor(PALETTE[name]) * 2 - 1


def _canvas(ground: str, h: int = 32, w: int = 32) -> torch.Tensor:
    return _colour(ground)[:, None, None].expand(3, h, w).clone()


def test_counter_counts_blobs_and_touching_shapes_of_two_colours():
    image = _canvas("blue")
    assert count_objects(image)["count"] == 0
    image[:, 4:12, 4:12] = _colour("red")[:, None, None]
    assert count_objects(image)["count"] == 1
    image[:, 20:28, 18:28] = _colour("red")[:, None, None]  # a duplicate, apart from the first
    assert count_objects(image) | {"ground": None} == {"count": 2, "blobs": 2, "area": 0.1406, "ground": None}
    image[:, 12:18, 4:12] = _colour("green")[:, None, None]  # touches the first red square: one blob, two shapes
    result = count_objects(image)
    assert result["blobs"] == 2 and result["count"] == 3
    assert count_objects(image, split_colours=False)["count"] == 2


def test_a_blurred_edge_is_not_a_second_object():
    """A red disc on yellow ground has an orange rim (a palette colour) once blurred: still one object."""
    image = _canvas("yellow", 64, 64)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    inside = ((yy - 32) ** 2 + (xx - 32) ** 2) < 18**2
    image[:, inside] = _colour("red")[:, None]
    blurred = torch.nn.functional.avg_pool2d(image[None], 5, stride=1, padding=2, count_include_pad=False)[0]
    assert count_objects(blurred)["count"] == 1
    assert count_objects(blurred, mix_tolerance=0.0)["count"] == 2  # without the mixture rule the rim would count


def test_counter_matches_rendered_ground_truth():
    one = ShapeScenes(24, seed=99, max_shapes=1, background="flat", min_size=0.4, max_size=0.7)
    for size in ((16, 16), (32, 32), (32, 64)):
        assert count_accuracy(one, range(24), *size)["accuracy"] == 1.0
    several = ShapeScenes(40, seed=98, min_shapes=1, max_shapes=3, background="flat", min_size=0.4, max_size=0.7)
    result = count_accuracy(several, range(40), 48, 48)
    assert result["accuracy"] >= 0.9 and set(result["by_truth"]) <= {"1", "2", "3"}
    assert result["over"] + result["under"] == pytest.approx(1 - result["accuracy"], abs=1e-3)


def test_count_rates_and_bad_input():
    rates = count_rates([0, 1, 1, 2, 3])
    assert (rates["none"], rates["exact"], rates["more"], rates["fewer"], rates["n"]) == (0.2, 0.4, 0.4, 0.2, 5)
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        count_objects(torch.zeros(1, 3, 8, 8))


def test_letterbox_pads_with_the_ground_and_keeps_the_whole_image():
    image = _canvas("white", 32, 64)
    image[:, 8:24, 0:16] = _colour("black")[:, None, None]  # at the left edge: a centre crop loses it
    x = image[None]
    boxed = judge_view(x, "letterbox")
    assert tuple(boxed.shape) == (1, 3, 32, 32)
    assert torch.allclose(boxed[0, :, 0, 16], _colour("white"), atol=1e-5)  # the padding is the ground colour
    assert float(boxed[0, :, 14:18, 1:3].mean()) < -0.5  # the shape at the left edge is still there
    assert float(judge_view(x, "centre_crop").min()) > 0.5  # ... and gone from the centre crop
    square = torch.rand(2, 3, 48, 48) * 2 - 1
    views = [judge_view(square, m) for m in FRAMINGS]
    assert all(torch.equal(views[0], v) for v in views[1:])  # one rule for square images
    with pytest.raises(ValueError, match="framing"):
        judge_view(x, "zoom")


def test_judge_reads_letterboxed_ground_truth_at_other_aspect_ratios():
    from vadapters.metrics.judges import ShapeColourJudge

    judge, config = ShapeColourJudge.load(str(REPO / "weights" / "judge-shape-colour-v2"))
    scenes = ShapeScenes(40, seed=321, max_shapes=1, background="flat", min_size=0.4, max_size=0.7)
    for size in ((32, 64), (64, 32)):
        images = torch.stack([scenes.render(i, *size)["image"] for i in range(40)])
        labels = [scenes.scene(i)["shapes"][0] for i in range(40)]
        records = bench.score_images(judge, config, images, labels)
        rates = bench.summarise_records(records)
        assert rates["both"] >= 0.9 and rates["one_object"] == 1.0


KEYS = ("both", "shape", "colour", "one_object", "duplicated", "no_object", "both_and_one")


def _result(gains: dict[str, float], seeds=(0, 1, 2)) -> dict:
    test = {}
    for seed in seeds:
        test[str(seed)] = {}
        for arm in ("base", "res_adapter"):
            test[str(seed)][arm] = {
                s: dict.fromkeys(KEYS, 0.3 + (g if arm == "res_adapter" else 0.0) + 0.01 * seed)
                for s, g in gains.items()
            }
    return {"test": test, "settings": {"sizes": list(gains), "seeds": list(seeds)}}


def test_gate_needs_fifteen_points_at_two_off_base_sizes():
    summary = bench.summarise(_result({"16": 0.2, "32": 0.5, "64": 0.16, "32x64": 0.0}))
    assert summary["gate"]["sizes_passing"] == ["16", "64"] and summary["gate"]["met"]
    assert summary["table"]["16"]["gain_both"]["mean"] == pytest.approx(0.2)
    one = bench.summarise(_result({"16": 0.2, "32": 0.5, "64": 0.14}))  # 32 px is the base's size: not counted
    assert one["gate"]["sizes_passing"] == ["16"] and not one["gate"]["met"]


@pytest.mark.slow
def test_quick_runs_write_their_reports(tmp_path):
    env_cmd = [sys.executable, "-X", "utf8"]
    judges = [
        *env_cmd,
        str(REPO / "benchmarks" / "resolution_judges.py"),
        "--quick",
        "--n",
        "3",
        "--sizes",
        "16,32x64",
    ]
    subprocess.run([*judges, "--out", str(tmp_path)], check=True, cwd=REPO, capture_output=True, timeout=900)
    report = json.loads((tmp_path / "resolution_judges_quick.json").read_text())
    assert set(report["counter"]["cells"]) >= {"one_large|16|rendered", "1-3_small|32x64|vae"}
    res = [*env_cmd, str(REPO / "benchmarks" / "res_adapter_resolution.py"), "--quick", "--sizes", "16,32,32x64"]
    res += ["--lr-grid", "1e-3", "--train-steps", "2", "--work", str(tmp_path / "work"), "--out", str(tmp_path)]
    subprocess.run(res, check=True, cwd=REPO, capture_output=True, timeout=1800)
    report = json.loads((tmp_path / "res_adapter_resolution_quick.json").read_text())
    assert set(report["summary"]["table"]) == {"16", "32", "32x64"} and "met" in report["summary"]["gate"]
    assert (tmp_path / "res_adapter_resolution_quick.md").read_text().count("Paper's claim") == 1
