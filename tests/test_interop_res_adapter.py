"""ResAdapter stacked with what users stack on Stable Diffusion, on the embedded trained tiny-sd of the real
diffusers classes: a ControlNet (`ControlNetModel.from_unet`, `StableDiffusionControlNetPipeline`), an
IP-Adapter (diffusers' `load_ip_adapter`, a tiny CLIP image encoder saved locally) and a LoRA / LCM-LoRA through
diffusers + PEFT (`load_lora_weights`, `set_adapters`). See docs/interop.md."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from interop_fixtures import LCM_LORA_TARGETS, ip_adapter_files, lora_file, randomize_adapter, tiny_controlnet
from interop_fixtures import tiny_image_encoder as make_image_encoder

import vadapters
from vadapters.methods.res_adapter import LoraConv2d, ResAdapterConfig
from vadapters.pipelines import load_pipeline

pytestmark = pytest.mark.usefixtures("one_thread")
SIZE = {"height": 24, "width": 40}  # off the tiny base's 32 px: ResAdapter's use case


@pytest.fixture
def pipe():
    pipe = load_pipeline(None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe, **kwargs) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    out = pipe("a red disc", num_inference_steps=2, guidance_scale=1.0, generator=generator, output_type="pt",
               **SIZE, **kwargs)  # fmt: skip
    return out.images


def _add_res(pipe, name: str = "res") -> None:
    torch.manual_seed(0)  # ResCLoRA's down kernels start from torch's generator
    vadapters.inject(pipe, ResAdapterConfig(rank=4, alpha=4.0), adapter_name=name)
    randomize_adapter(pipe, name)


def _image(seed: int, size: int = 32):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def test_with_controlnet(pipe):
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    reference = ControlNetModel.from_unet(pipe.unet, conditioning_embedding_out_channels=(16, 32))
    controlnet = tiny_controlnet(pipe.unet, pipe.vae_scale_factor)
    cpipe = StableDiffusionControlNetPipeline.from_pipe(pipe, controlnet=controlnet)
    cpipe.set_progress_bar_config(disable=True)
    control = torch.rand(1, 3, SIZE["height"], SIZE["width"], generator=torch.Generator().manual_seed(3))
    plain = _run(cpipe, image=control)
    _add_res(cpipe)
    assert isinstance(cpipe.unet.down_blocks[0].downsamplers[0].conv, LoraConv2d)
    assert not any(isinstance(m, LoraConv2d) for m in cpipe.controlnet.modules())  # the UNet only, as official

    adapted = _run(cpipe, image=control)
    assert torch.isfinite(adapted).all() and adapted.shape == (1, 3, SIZE["height"], SIZE["width"])
    assert (adapted - plain).abs().max() > 1e-3
    assert (_run(cpipe, image=control, controlnet_conditioning_scale=0.0) - adapted).abs().max() > 1e-3  # CN acts
    with vadapters.disabled(cpipe):
        assert torch.equal(_run(cpipe, image=control), plain)

    # A ControlNet made from the adapted UNet copies the base weights (the wrappers step aside)
    with vadapters.unwrapped(cpipe):
        again = ControlNetModel.from_unet(cpipe.unet, conditioning_embedding_out_channels=(16, 32))
    assert isinstance(cpipe.unet.down_blocks[0].downsamplers[0].conv, LoraConv2d)  # back on after the block
    mine, theirs = again.state_dict(), reference.state_dict()
    copied = [k for k in mine if k.startswith(("conv_in.", "time_embedding.", "down_blocks.", "mid_block."))]
    assert mine.keys() == theirs.keys() and copied and all(torch.equal(mine[k], theirs[k]) for k in copied)

    vadapters.unload(cpipe)
    assert torch.equal(_run(cpipe, image=control), plain)


@pytest.mark.parametrize("res_first", [False, True])
def test_with_ip_adapter(pipe, tmp_path, res_first):
    encoder = make_image_encoder(str(tmp_path / "models"))
    folder, subfolder, weight_name = ip_adapter_files(str(tmp_path), pipe.unet, encoder)
    base = _run(pipe)
    if res_first:
        _add_res(pipe)
    pipe.load_ip_adapter(folder, subfolder=subfolder, weight_name=weight_name, image_encoder_folder="image_encoder")
    if not res_first:
        _add_res(pipe)
    pipe.set_ip_adapter_scale(1.0)

    red, other = _run(pipe, ip_adapter_image=_image(0)), _run(pipe, ip_adapter_image=_image(1))
    assert torch.isfinite(red).all() and (red - other).abs().max() > 1e-3  # the image prompt reaches the UNet
    with vadapters.disabled(pipe):
        ip_only = _run(pipe, ip_adapter_image=_image(0))
    assert (red - ip_only).abs().max() > 1e-3
    pipe.set_ip_adapter_scale(0.0)
    with vadapters.disabled(pipe):
        assert torch.allclose(_run(pipe, ip_adapter_image=_image(0)), base, atol=1e-6)  # both off: the base
    pipe.set_ip_adapter_scale(1.0)
    vadapters.unload(pipe)
    assert torch.equal(_run(pipe, ip_adapter_image=_image(0)), ip_only)  # IP-Adapter untouched by unload
    pipe.unload_ip_adapter()
    assert torch.equal(_run(pipe), base)


@pytest.mark.parametrize("targets", ["attention", "lcm"])
def test_with_lora_through_diffusers_and_peft(pipe, tmp_path, targets):
    """A diffusers / PEFT LoRA on the attention layers stacks in any order; an LCM-LoRA also wraps the sampler
    convs ResCLoRA wraps: load it first, or inside `vadapters.unwrapped` (PEFT cannot wrap a vadapters layer).
    Both orders give one structure (ResCLoRA around PEFT's layer) and the same images."""
    names = ["to_q", "to_k", "to_v", "to_out.0"] if targets == "attention" else LCM_LORA_TARGETS
    lora = lora_file(pipe, str(tmp_path / "lora"), names)
    base = _run(pipe)
    results = []
    for lora_first in (True, False):
        if lora_first:
            pipe.load_lora_weights(lora, adapter_name="lcm")
            _add_res(pipe)
        else:
            _add_res(pipe)
            with vadapters.unwrapped(pipe):
                pipe.load_lora_weights(lora, adapter_name="lcm")
        conv = pipe.unet.down_blocks[0].downsamplers[0].conv
        assert isinstance(conv, LoraConv2d)
        assert type(conv.base_layer).__module__.startswith("peft") == (targets == "lcm")
        both = _run(pipe)
        with vadapters.disabled(pipe):
            lora_only = _run(pipe)
        pipe.set_adapters(["lcm"], [0.5])
        half = _run(pipe)
        pipe.set_adapters(["lcm"], [0.0])
        res_only = _run(pipe)
        with vadapters.disabled(pipe):
            assert torch.equal(_run(pipe), base)
        for a, b in ((both, base), (lora_only, base), (res_only, base), (half, both)):
            assert (a - b).abs().max() > 1e-3
        pipe.set_adapters(["lcm"], [1.0])
        vadapters.fuse(pipe)  # into the conv inside PEFT's layer
        assert (_run(pipe) - both).abs().max() < 1e-4
        vadapters.unfuse(pipe)
        assert torch.equal(_run(pipe), both)
        results.append(both)
        vadapters.unload(pipe)
        assert torch.equal(_run(pipe), lora_only)  # PEFT's layers stay, as they were
        pipe.unload_lora_weights()
        assert torch.equal(_run(pipe), base)
    assert torch.equal(results[0], results[1])


def test_res_adapter_saved_with_a_lora_loaded_loads_alone(pipe, tmp_path):
    """Keys are the UNet's own paths whatever PEFT wrapped below them: the file loads into a pipeline without it."""
    pipe.load_lora_weights(lora_file(pipe, str(tmp_path / "lora")), adapter_name="lcm")
    _add_res(pipe)
    vadapters.save_pretrained(pipe, str(tmp_path / "res"))
    pipe.set_adapters(["lcm"], [0.0])
    res_only = _run(pipe)
    fresh = load_pipeline(None)
    fresh.set_progress_bar_config(disable=True)
    vadapters.load(fresh, str(tmp_path / "res"), adapter_name="res")
    assert torch.equal(_run(fresh), res_only)


def test_unwrapped_refuses_what_it_cannot_wrap_and_fused_adapters():
    """A module of another kind in a wrapped module's place: the wrapper goes back around the original and the
    block ends with an AdapterStateError naming the path; fused adapters cannot be unwrapped."""
    from vadapters.models import tiny_unet, tiny_unet_config

    unet = tiny_unet(tiny_unet_config())
    original = unet.down_blocks[0].downsamplers[0].conv
    vadapters.inject(unet, ResAdapterConfig(rank=2, alpha=2.0), adapter_name="res")
    refused = r"down_blocks\.0\.downsamplers\.0\.conv.*Identity"
    with pytest.raises(vadapters.AdapterStateError, match=refused), vadapters.unwrapped(unet):
        assert unet.down_blocks[0].downsamplers[0].conv is original
        unet.down_blocks[0].downsamplers[0].conv = torch.nn.Identity()
    layer = unet.down_blocks[0].downsamplers[0].conv
    assert isinstance(layer, LoraConv2d) and layer.base_layer is original
    vadapters.fuse(unet)
    with pytest.raises(vadapters.AdapterStateError, match="fused"), vadapters.unwrapped(unet):
        pass
    vadapters.unfuse(unet)
    vadapters.unload(unet)
    assert unet.down_blocks[0].downsamplers[0].conv is original
