"""Core mechanics independent of any method: registry, IO, config errors."""

from __future__ import annotations

import pytest
import torch

import vadapters
from vadapters.core.io import load_tensors, save_tensors, sniff_format


def test_registry_lists_self_registered_methods():
    assert "res_adapter" in vadapters.list_methods()
    spec = vadapters.get_method("res_adapter")
    assert spec.config_cls.method == "res_adapter" and spec.supports_merge
    with pytest.raises(vadapters.UnknownMethodError, match="res_adapter"):
        vadapters.get_method("does_not_exist")


def test_atomic_save_leaves_no_temp_files_and_round_trips(tmp_path):
    path = tmp_path / "t.safetensors"
    tensors = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2, dtype=torch.int64)}
    save_tensors(tensors, str(path), {"method": "x"})
    loaded, meta = load_tensors(str(path))
    assert meta["method"] == "x" and all(torch.equal(loaded[k], v) for k, v in tensors.items())
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]
    assert sniff_format(str(path)) == "safetensors"


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "t.safetensors"
    save_tensors({"a": torch.zeros(1)}, str(path))
    import safetensors.torch

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(safetensors.torch, "save", boom)
    with pytest.raises(RuntimeError):
        save_tensors({"a": torch.ones(1)}, str(path))
    assert torch.equal(load_tensors(str(path))[0]["a"], torch.zeros(1))
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]


def test_non_module_host_is_rejected():
    from vadapters.methods.res_adapter import ResAdapterConfig

    with pytest.raises(vadapters.BadInputError, match="expected a torch module"):
        vadapters.inject(object(), ResAdapterConfig())


def test_saving_without_adapters_is_an_error(tmp_path):
    with pytest.raises(vadapters.AdapterStateError, match="no adapters"):
        vadapters.save_pretrained(torch.nn.Linear(2, 2), tmp_path)


def test_hosts_resolve_pipelines_and_tag_model_kinds():
    from vadapters.core import hosts
    from vadapters.models import tiny_sam, tiny_sd_pipeline, tiny_timm_classifier

    pipe = tiny_sd_pipeline()
    assert hosts.is_pipeline(pipe) and hosts.resolve_target(pipe, "unet") is pipe.unet
    with pytest.raises(vadapters.IncompatibleBaseError, match="no 'image_encoder' component"):
        hosts.resolve_target(pipe, "image_encoder")
    assert hosts.host_kind(pipe.unet) == "diffusers.unet"
    assert hosts.host_kind(tiny_sam()) == "sam" and hosts.signature(tiny_sam())["depth"] == 2
    assert hosts.host_kind(tiny_timm_classifier()) == "timm"
    assert hosts.signature(tiny_timm_classifier())["num_classes"] == 10
    assert hosts.host_kind(torch.nn.Linear(2, 2)) == "torch"
