"""ResAdapter specifics: official checkpoints, real-size configs, diffusers equivalence, bad input, formats."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from matrix_cases import perturb_adapter
from safetensors.torch import load_file
from torch import nn

import vadapters
from vadapters.core.hosts.diffusers import resnet_norms, sampler_convs
from vadapters.methods.res_adapter import LoraConv2d, ResAdapterConfig, ResNormGroupNorm
from vadapters.methods.res_adapter import conversion as conv

SD15, SDXL = "resadapter_v2_sd1.5", "resadapter_v2_sdxl"


def _meta_unet(kind: str):
    from vadapters.models.real import build_unet, sd15_unet_config, sdxl_unet_config

    return build_unet(sd15_unet_config() if kind == SD15 else sdxl_unet_config(), device="meta")


@pytest.mark.parametrize(("folder", "n_convs", "n_norms"), [(SD15, 6, 44), (SDXL, 4, 34)])
def test_official_files_load_into_real_size_unet_with_exact_key_accounting(official_dir, folder, n_convs, n_norms):
    lora_file = load_file(official_dir / folder / "pytorch_lora_weights.safetensors")
    norm_file = load_file(official_dir / folder / "diffusion_pytorch_model.safetensors")
    assert (len(lora_file), len(norm_file)) == (3 * n_convs, 2 * n_norms)
    unet = _meta_unet(folder)
    assert len(sampler_convs(unet)) == n_convs and len(resnet_norms(unet)) == n_norms
    vadapters.load(unet, official_dir / folder)  # strict: raises on any missing / unexpected key
    config = vadapters.get_adapter_config(unet, "res_adapter")
    assert (config.rank, config.alpha, config.scaling) == (16, 8.0, 0.5)
    slots = vadapters.get_method("res_adapter").injector_cls().adapter_slots(unet, "res_adapter")
    assert len(slots) == 2 * n_convs + 2 * n_norms  # alpha lives in the config, not as a tensor
    for path, layer in sampler_convs(unet).items():
        assert isinstance(layer, LoraConv2d)
        base, down, up = layer.base_layer, layer.lora_down["res_adapter"], layer.lora_up["res_adapter"]
        assert (down.stride, down.padding, down.kernel_size) == (base.stride, base.padding, base.kernel_size)
        assert tuple(down.weight.shape) == (16, base.in_channels, 3, 3)
        assert tuple(up.weight.shape) == (base.out_channels, 16, 1, 1)
        stem = "lora_unet_" + path.replace(".", "_")
        assert torch.equal(down.weight, lora_file[f"{stem}.lora_down.weight"].float())
    for path, layer in resnet_norms(unet).items():
        assert isinstance(layer, ResNormGroupNorm)
        assert torch.equal(layer.norm_weight["res_adapter"], norm_file[f"{path}.weight"])


def test_official_sdxl_into_sd15_is_refused_clearly(official_dir):
    unet = _meta_unet(SD15)
    with pytest.raises(vadapters.IncompatibleBaseError, match="Stable Diffusion XL") as info:
        vadapters.load(unet, official_dir / SDXL)
    assert "Stable Diffusion 1.x" in str(info.value)
    assert vadapters.list_adapters(unet) == {}
    assert not any(isinstance(m, (LoraConv2d, ResNormGroupNorm)) for m in unet.modules())


def test_official_sd15_on_random_real_unet_matches_official_loading_and_unloads_exactly(official_dir):
    """Real-size (860M) SD1.5 UNet with deterministic values: about 25 s and 8 GB; the Done-when proof."""
    from vadapters.models.real import build_unet, sd15_unet_config

    unet = build_unet(sd15_unet_config(), device="cpu", seed=0)
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    vadapters.load(unet, official_dir / SD15)
    norms = load_file(official_dir / SD15 / "diffusion_pytorch_model.safetensors")
    x = torch.randn(1, 4, 16, 24, generator=torch.Generator().manual_seed(0))
    emb = torch.randn(1, 77, 768, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = unet(x, 500, encoder_hidden_states=emb).sample
        vadapters.fuse(unet)
        fused = unet(x, 500, encoder_hidden_states=emb).sample
        vadapters.unfuse(unet)
    torch.testing.assert_close(fused, ours, rtol=1e-3, atol=1e-3)
    vadapters.unload(unet)
    assert all(torch.equal(unet.state_dict()[k], v) for k, v in before.items())
    assert set(unet.state_dict()) == set(before)
    # the official loader overwrites norms in place: ours restored them, the official way would not
    key = next(iter(norms))
    assert not torch.equal(before[key], norms[key])


def test_matches_diffusers_official_loading_path(tmp_path):
    """Our layers == diffusers' `load_lora_weights` + norm `load_state_dict(strict=False)` (the official recipe)."""
    from vadapters.models import tiny_sd_pipeline

    pipe = tiny_sd_pipeline()
    vadapters.inject(pipe, ResAdapterConfig(rank=4, alpha=2.0), adapter_name="res")
    perturb_adapter(pipe.unet, "res", scale=0.1, seed=0)
    g = torch.Generator().manual_seed(0)
    vadapters.save_pretrained(pipe, tmp_path / "ours")
    written = conv.export_official(
        vadapters.get_method("res_adapter").injector_cls().adapter_state_dict(pipe.unet, "res"),
        vadapters.get_adapter_config(pipe, "res"),
        str(tmp_path / "official"),
        lora_dtype=torch.float32,
    )
    assert sorted(os.path.basename(p) for p in written) == sorted([conv.LORA_FILES[0], conv.NORM_FILES[0]])
    x = torch.randn(2, 4, 8, 12, generator=g)
    emb = torch.randn(2, 7, 32, generator=g)
    with torch.no_grad():
        ours = pipe.unet(x, 300, encoder_hidden_states=emb).sample

    ref = tiny_sd_pipeline()
    ref.load_lora_weights(str(tmp_path / "official" / conv.LORA_FILES[0]), adapter_name="res")
    result = ref.unet.load_state_dict(load_file(tmp_path / "official" / conv.NORM_FILES[0]), strict=False)
    assert not result.unexpected_keys
    with torch.no_grad():
        theirs = ref.unet(x, 300, encoder_hidden_states=emb).sample
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)

    # and our loader reads the exported official folder back to the same outputs
    again = tiny_sd_pipeline()
    vadapters.load(again, tmp_path / "official")
    with torch.no_grad():
        torch.testing.assert_close(again.unet(x, 300, encoder_hidden_states=emb).sample, ours, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("height", "width"), [(24, 40), (40, 24), (16, 56)])
def test_arbitrary_sizes_generate(height, width, tmp_path):
    from vadapters.models import tiny_sd_pipeline

    pipe = tiny_sd_pipeline()
    vadapters.inject(pipe, ResAdapterConfig(rank=4, alpha=2.0))
    out = pipe("a red disc", height=height, width=width, num_inference_steps=2, output_type="np").images
    assert out.shape == (1, height, width, 3) and torch.isfinite(torch.from_numpy(out)).all()


def test_norm_blend_interpolates_base_and_adapter_norms():
    from vadapters.models import tiny_sd_pipeline

    unet = tiny_sd_pipeline().unet
    vadapters.inject(unet, ResAdapterConfig(rank=4, alpha=2.0, norm_blend=0.5), adapter_name="res")
    path, layer = next(iter(resnet_norms(unet).items()))
    with torch.no_grad():
        layer.norm_weight["res"].add_(1.0)
    w, _ = layer._affine(layer.effective_adapters())
    torch.testing.assert_close(w, layer.base_layer.weight + 0.5)


def test_bad_inputs_give_clear_errors_and_leave_host_unchanged(tmp_path):
    from vadapters.models import tiny_sd_pipeline

    pipe = tiny_sd_pipeline()
    unet = pipe.unet
    vadapters.inject(pipe, ResAdapterConfig(rank=4, alpha=2.0), adapter_name="res")
    vadapters.save_pretrained(pipe, tmp_path / "good")
    vadapters.unload(pipe)
    before = {k: v.clone() for k, v in unet.state_dict().items()}

    # truncated safetensors
    data = (tmp_path / "good" / "adapter_model.safetensors").read_bytes()
    (tmp_path / "trunc").mkdir()
    (tmp_path / "trunc" / "adapter_config.json").write_bytes((tmp_path / "good" / "adapter_config.json").read_bytes())
    (tmp_path / "trunc" / "adapter_model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(vadapters.CheckpointError, match="truncated"):
        vadapters.load(pipe, tmp_path / "trunc")

    # a pickle is never unpickled, even a malicious one
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "evil.bin").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(vadapters.CheckpointError, match="pickle"):
        vadapters.load(pipe, tmp_path / "evil.bin")
    torch.save({"x": torch.zeros(1)}, tmp_path / "zip.bin")
    with pytest.raises(vadapters.CheckpointError, match="pickle"):
        vadapters.load(pipe, tmp_path / "zip.bin", method="res_adapter")
    assert not marker.exists()

    # a folder that is not an adapter, a foreign JSON
    (tmp_path / "empty").mkdir()
    with pytest.raises(vadapters.CheckpointError, match="no adapter_config.json"):
        vadapters.load(pipe, tmp_path / "empty")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    with pytest.raises(vadapters.CheckpointError, match="method"):
        vadapters.load(pipe, tmp_path / "foreign")

    # an adapter made on another UNet
    other = tiny_sd_pipeline().unet
    big = type(other).from_config({**other.config, "cross_attention_dim": 16})
    with pytest.raises(vadapters.IncompatibleBaseError, match="cross_attention_dim"):
        vadapters.load(big, tmp_path / "good")

    # wrong host type
    with pytest.raises(vadapters.IncompatibleBaseError, match="diffusers UNet"):
        vadapters.inject(nn.Linear(2, 2), ResAdapterConfig())
    with pytest.raises(vadapters.BadInputError, match="rank"):
        ResAdapterConfig(rank=0)

    assert vadapters.list_adapters(pipe) == {}
    assert all(torch.equal(unet.state_dict()[k], v) for k, v in before.items())


def test_coexists_with_a_peft_attention_lora():
    from peft import LoraConfig

    from vadapters.models import tiny_sd_pipeline

    pipe = tiny_sd_pipeline()
    pipe.unet.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_v"], init_lora_weights=False))
    g = torch.Generator().manual_seed(0)
    x, emb = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 7, 32, generator=g)
    with torch.no_grad():
        with_peft = pipe.unet(x, 10, encoder_hidden_states=emb).sample
        vadapters.inject(pipe, ResAdapterConfig(rank=4, alpha=2.0), adapter_name="res")
        assert torch.equal(pipe.unet(x, 10, encoder_hidden_states=emb).sample, with_peft)
        vadapters.unload(pipe)
        assert torch.equal(pipe.unet(x, 10, encoder_hidden_states=emb).sample, with_peft)


def test_works_on_animatediff_motion_unet_and_unloads_exactly():
    from vadapters.models import tiny_animatediff_pipeline

    pipe = tiny_animatediff_pipeline()
    assert type(pipe.unet).__name__ == "UNetMotionModel"
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    vadapters.inject(pipe, ResAdapterConfig(rank=4, alpha=2.0), adapter_name="res")
    assert any(isinstance(m, LoraConv2d) for m in pipe.unet.modules())
    frames = pipe("a disc", num_frames=4, height=32, width=32, num_inference_steps=2, output_type="np").frames
    assert frames.shape[:2] == (1, 4)
    vadapters.unload(pipe)
    assert all(torch.equal(pipe.unet.state_dict()[k], v) for k, v in before.items())


def test_old_official_file_names_load(official_dir, tmp_path):
    import shutil

    folder = tmp_path / "old"
    folder.mkdir()
    shutil.copy(official_dir / SD15 / "pytorch_lora_weights.safetensors", folder / "resolution_lora.safetensors")
    shutil.copy(
        official_dir / SD15 / "diffusion_pytorch_model.safetensors", folder / "resolution_normalization.safetensors"
    )
    unet = _meta_unet(SD15)
    vadapters.load(unet, folder, adapter_name="old")
    assert vadapters.get_adapter_config(unet, "old").use_norms
