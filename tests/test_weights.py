"""The embedded-defaults manifest: hashes recorded, verified on load, clear errors with the fix."""

from __future__ import annotations

import json

import pytest

import vadapters
from vadapters.models import weights


def test_record_verify_and_tamper(tmp_path):
    (tmp_path / "tiny-x" / "sub").mkdir(parents=True)
    (tmp_path / "tiny-x" / "sub" / "a.safetensors").write_bytes(b"abc" * 100)
    entry = weights.record_entry(
        "tiny-x",
        command="vadapters train-base tiny-x --seed 0",
        seed=0,
        train_seconds=1.5,
        metrics={"acc": 0.9},
        root=tmp_path,
    )
    assert entry["files"]["sub/a.safetensors"]["size"] == 300 and entry["metrics"] == {"acc": 0.9}
    assert json.loads((tmp_path / "manifest.json").read_text())["entries"]["tiny-x"]["seed"] == 0
    assert weights.verify("tiny-x", root=tmp_path) == tmp_path / "tiny-x"

    (tmp_path / "tiny-x" / "sub" / "a.safetensors").write_bytes(b"abc" * 99 + b"abd")
    with pytest.raises(vadapters.CheckpointError, match="train-base tiny-x --seed 0"):
        weights.verify("tiny-x", root=tmp_path)
    (tmp_path / "tiny-x" / "sub" / "a.safetensors").unlink()
    with pytest.raises(vadapters.CheckpointError, match="missing"):
        weights.verify("tiny-x", root=tmp_path)
    with pytest.raises(vadapters.CheckpointError, match="vadapters train-base tiny-y"):
        weights.verify("tiny-y", root=tmp_path)


def test_committed_manifest_matches_committed_files():
    manifest = weights.read_manifest()
    for name in manifest["entries"]:
        weights.verify(name)
    total = sum(e["total_bytes"] for e in manifest["entries"].values())
    assert total <= 60 * 2**20, f"weights/ holds {total / 2**20:.1f} MB; the budget is 60 MB"


def test_committed_shape_colour_judge_reads_ground_truth():
    from vadapters.metrics.judges import ShapeColourJudge, evaluate_judge
    from vadapters.synthetic.scenes import ShapeScenes

    judge, config = ShapeColourJudge.load(str(weights.default_path("judge-shape-colour")))
    scenes = ShapeScenes(200, seed=777, min_shapes=1, max_shapes=1)
    assert config["shapes"] == list(scenes.shapes) and config["colours"] == list(scenes.colours)
    metrics = evaluate_judge(judge, scenes, list(range(200)))
    assert metrics["shape_accuracy"] >= 0.95 and metrics["colour_accuracy"] >= 0.95, metrics
