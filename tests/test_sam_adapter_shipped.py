"""Trained adapters shipped in `weights/` load by name through `vadapters.load` ("vadapters:NAME", hash-verified),
and the shipped SAM-Adapters (shadow, camouflage) beat the zero-shot tiny SAM on held-out scenes."""

from __future__ import annotations

import warnings

import pytest
import torch

import vadapters
from vadapters.core.bases import BaseModelWarning
from vadapters.methods.sam_adapter import SAMAdapterConfig
from vadapters.methods.sam_adapter.data import SAMSegmentationDataset, make_segmentation_source
from vadapters.methods.sam_adapter.train import evaluate, predict_logits
from vadapters.models import load_sam, tiny_sam
from vadapters.models.weights import read_manifest, record_entry

SHIPPED = {"sam-adapter-shadow": "synthetic:shadow", "sam-adapter-camouflage": "synthetic:camouflage-texture"}


def test_load_by_embedded_name_is_verified(tmp_path, monkeypatch):
    monkeypatch.setenv("VADAPTERS_WEIGHTS", str(tmp_path))
    sam = tiny_sam(seed=0)
    vadapters.inject(sam, SAMAdapterConfig(scale_factor=8), adapter_name="mine")
    with torch.no_grad():
        for name, p in sam.named_parameters():
            if "mine" in name:
                p.add_(torch.randn_like(p) * 0.05)
    vadapters.save_pretrained(sam, tmp_path / "sam-x", ["mine"])
    record_entry("sam-x", command="python make.py", seed=0, train_seconds=1.0, metrics={}, root=tmp_path)
    x = torch.randn(1, 3, 64, 64)

    loaded = vadapters.load(tiny_sam(seed=0), "vadapters:sam-x", adapter_name="mine")
    with torch.no_grad():
        assert torch.equal(predict_logits(loaded, x), predict_logits(sam, x))
    assert vadapters.list_adapters(loaded) == {"mine": "sam_adapter"}

    with pytest.raises(vadapters.CheckpointError, match="have: \\['sam-x'\\]"):
        vadapters.load(tiny_sam(seed=0), "vadapters:sam-y")
    (tmp_path / "sam-x" / "adapter_model.safetensors").write_bytes(b"edited")
    fresh = tiny_sam(seed=0)
    with pytest.raises(vadapters.CheckpointError, match="python make.py"):  # names how to regenerate it
        vadapters.load(fresh, "vadapters:sam-x")
    assert vadapters.list_adapters(fresh) == {}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_sam_adapter_loads_by_name_and_beats_zero_shot(name):
    entry = read_manifest()["entries"][name]
    assert entry["base"] == "vadapters:tiny-sam" and entry["total_bytes"] < 2**20 and "command" in entry
    base = load_sam(None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BaseModelWarning)  # made on the embedded tiny SAM: loads silently
        adapted = vadapters.load(load_sam(None), f"vadapters:{name}")
    assert vadapters.list_adapters(adapted) == {"sam_adapter": "sam_adapter"}
    source = make_segmentation_source(SHIPPED[name], num_items=24, seed=999, size=(64, 64))
    test = SAMSegmentationDataset(source, base)
    zero, ours = evaluate(base, test), evaluate(adapted, test)
    assert ours["S"] > zero["S"] + 0.1 and ours["BER"] < zero["BER"] - 10.0, (zero, ours)
    recorded = entry["metrics"]["sam_adapter"]  # the manifest's figures are those of the full test set
    assert recorded["S"] > entry["metrics"]["zero_shot"]["S"] + 0.1


def test_shipped_adapter_through_the_predictor_and_cli_name():
    from vadapters.pipelines.sam import SAMAdapterPredictor

    predictor = SAMAdapterPredictor(adapter="vadapters:sam-adapter-shadow")
    item = make_segmentation_source("synthetic:shadow", num_items=1, seed=5, size=(64, 64)).load(0)
    image = (item["image"].permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(multimask_output=False)
    assert masks.shape == (1, 64, 64) and masks.any()
