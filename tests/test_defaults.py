"""The embedded perception defaults in weights/: they load, verify their hashes, and are as good as recorded."""

from __future__ import annotations

import shutil

import pytest
import torch

from vadapters.errors import BadInputError, CheckpointError
from vadapters.models import load_default_classifier, load_default_sam, load_sam
from vadapters.models.weights import read_manifest

ENTRIES = read_manifest()["entries"]


def _needs(name):
    return pytest.mark.skipif(name not in ENTRIES, reason=f"{name} is not committed under weights/")


@pytest.mark.parametrize("kind", ["cnn", "vit"])
def test_default_classifier_matches_its_recorded_accuracy(kind):
    name = f"tiny-classifier-{kind}"
    if name not in ENTRIES:
        pytest.skip(f"{name} is not committed")
    from vadapters.synthetic.classification import ShapeClasses

    model = load_default_classifier(kind)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    cfg = model.pretrained_cfg
    data = ShapeClasses(300, seed=1000)  # the first 300 of the held-out set the manifest figure was measured on
    images = torch.from_numpy(data.images_uint8().copy()).permute(0, 3, 1, 2).float() / 255
    mean, std = torch.tensor(cfg["mean"]).view(1, 3, 1, 1), torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        acc = (model((images - mean) / std).argmax(1) == torch.from_numpy(data.labels.copy())).float().mean()
    recorded = ENTRIES[name]["metrics"]["clean_test_accuracy"]
    assert abs(float(acc) - recorded) < 0.05
    assert cfg["class_names"] == data.class_names


@_needs("tiny-sam")
def test_default_sam_segments_salient_scenes_with_a_box():
    from vadapters.synthetic.segmentation import SalientScenes
    from vadapters.train.perception import render_segmentation_set, sam_miou

    sam = load_sam(None)
    images, masks = render_segmentation_set(SalientScenes(24, seed=1000), sam.image_encoder.img_size)
    miou = sam_miou(sam, images, masks, "box")
    assert miou > ENTRIES["tiny-sam"]["metrics"]["salient_miou_box"] - 0.15


@_needs("tiny-sam")
def test_default_sam_loads_from_its_pth_like_an_official_checkpoint():
    from vadapters.models.weights import weights_dir

    a = load_sam(weights_dir() / "tiny-sam" / "sam_tiny.pth")
    b = load_default_sam()
    for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(v, w), k


@_needs("tiny-sam")
def test_edited_default_is_refused_with_the_regeneration_command(tmp_path, monkeypatch):
    from vadapters.models import weights

    root = tmp_path / "weights"
    shutil.copytree(weights.weights_dir(), root)
    target = root / "tiny-sam" / "sam_tiny.pth"
    target.write_bytes(target.read_bytes()[:-10])
    monkeypatch.setattr(weights, "weights_dir", lambda: root)
    with pytest.raises(CheckpointError, match="train-base tiny-sam"):
        load_default_sam()


def test_load_sam_explains_bad_inputs(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_sam(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        load_sam(junk)
    torch.save({"foo": torch.zeros(1)}, tmp_path / "foreign.pth")
    with pytest.raises(CheckpointError, match="not a segment-anything checkpoint"):
        load_sam(tmp_path / "foreign.pth")
    with pytest.raises(BadInputError):
        load_sam(42)
    with pytest.raises(BadInputError):
        load_default_classifier("resnet50")


def test_train_base_recipes_write_loadable_defaults(tmp_path):
    """The scripts behind weights/ (a few steps): their folders load with the same loaders as the defaults."""
    from vadapters.train.perception import train_tiny_classifier, train_tiny_sam

    metrics = train_tiny_classifier("cnn", str(tmp_path / "cnn"), steps=2, batch_size=8, num_items=32)
    assert 0.0 <= metrics["clean_test_accuracy"] <= 1.0 and metrics["train_steps"] == 2
    model = load_default_classifier(tmp_path / "cnn")
    assert model.pretrained_cfg["class_names"][0] == "solid circle"
    metrics = train_tiny_sam(str(tmp_path / "sam"), steps=2, batch_size=2, num_items=8, eval_items=2)
    assert set(metrics) >= {"salient_miou_box", "camouflage_miou_none", "shadow_miou_point"}
    sam = load_sam(tmp_path / "sam")
    assert sam.image_encoder.img_size == 64 and len(sam.image_encoder.blocks) == 4
    assert load_sam(tmp_path / "sam" / "sam_tiny.pth").image_encoder.patch_embed.proj.weight.shape[0] == 48
