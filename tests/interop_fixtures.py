"""Tiny models of what users stack on top of vadapters' adapters, built here from the real classes and saved in
the layouts the real loaders read: a ControlNet (`ControlNetModel.from_unet`), an IP-Adapter / IP-Adapter-Plus
weight file with its CLIP image encoder (read by diffusers' `load_ip_adapter`), and a LoRA / LCM-LoRA file
(written by diffusers' `save_lora_weights` from a PEFT adapter, read by `load_lora_weights`). Nothing comes from
a hub; every file is made from seeded random weights.
"""

from __future__ import annotations

import copy
import os

import torch

import vadapters

# The LCM-LoRA training script's default UNet targets (diffusers' train_lcm_distill_lora_sd_wds.py): attention,
# resnet convs and the down/upsampler convs - the very convs ResAdapter's ResCLoRA wraps.
LCM_LORA_TARGETS = [
    "to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1", "conv2",
    "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj",
]  # fmt: skip
IMAGE_ENCODER = "image_encoder"


def randomize_adapter(host, adapter_name: str, std: float = 0.05, seed: int = 0) -> None:
    """Give a fresh (exact no-op) vadapters adapter random values, so that it changes the output."""
    generator = torch.Generator().manual_seed(seed)
    module = getattr(host, "unet", host)
    injector = vadapters.get_method(vadapters.get_adapter_config(host, adapter_name).method).injector_cls()
    with torch.no_grad():
        for param in injector.adapter_parameters(module, adapter_name):
            noise = torch.randn(param.shape, generator=generator) * std
            param.add_(noise.to(param.dtype))


def tiny_controlnet(unet, vae_scale_factor: int):
    """A ControlNet copied from `unet` (its encoder weights, as diffusers' from_unet does); the conditioning
    embedding downsamples the control image by the pipeline's VAE factor, as it must."""
    from diffusers import ControlNetModel

    steps = max(int(vae_scale_factor).bit_length() - 1, 0)
    channels = tuple(16 * 2**i for i in range(steps + 1))
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=channels)
    generator = torch.Generator().manual_seed(1)
    zero_init = ("controlnet_cond_embedding.conv_out", "controlnet_down_blocks", "controlnet_mid_block")
    with torch.no_grad():  # from_unet zero-inits these convs: give them values so the control image acts
        for name, param in controlnet.named_parameters():
            if name.startswith(zero_init):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    return controlnet.eval()


def tiny_image_encoder(folder: str, hidden_size: int = 32, projection_dim: int = 32, image_size: int = 32) -> str:
    """A seeded CLIPVisionModelWithProjection saved with save_pretrained; returns its folder."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=hidden_size, intermediate_size=37, projection_dim=projection_dim, num_hidden_layers=2,
        num_attention_heads=4, image_size=image_size, patch_size=8,
    )  # fmt: skip
    model = CLIPVisionModelWithProjection(config).eval()
    path = os.path.join(folder, IMAGE_ENCODER)
    model.save_pretrained(path)
    return path


def _cross_attention_processors(unet) -> list[tuple[str, int]]:
    """`(processor name, hidden size)` of every cross-attention processor IP-Adapter adds keys for, in the order
    of `unet.attn_processors` (the order the key numbers 1, 3, 5, ... follow)."""
    widths = list(unet.config.block_out_channels)
    out = []
    for name in unet.attn_processors:
        if name.endswith("attn1.processor") or "motion_modules" in name:
            continue
        if name.startswith("mid_block"):
            hidden = widths[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(widths))[int(name.split(".")[1])]
        else:
            hidden = widths[int(name.split(".")[1])]
        out.append((name, hidden))
    return out


def _plus_image_proj(embed_dims: int, output_dims: int, num_queries: int, generator) -> dict[str, torch.Tensor]:
    """IP-Adapter-Plus's Resampler in the released file's key layout (4 blocks, 64-wide heads)."""
    from diffusers.models.embeddings import IPAdapterPlusImageProjection

    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    proj = IPAdapterPlusImageProjection(
        embed_dims=embed_dims, output_dims=output_dims, hidden_dims=64, depth=4, dim_head=64, heads=1,
        num_queries=num_queries,
    )  # fmt: skip
    raw: dict[str, torch.Tensor] = {}
    state = proj.state_dict()
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] != "layers":
            raw[key] = value
            continue
        i, rest = parts[1], ".".join(parts[2:])
        renamed = {"ln0.weight": "0.norm1.weight", "ln0.bias": "0.norm1.bias", "ln1.weight": "0.norm2.weight",
                   "ln1.bias": "0.norm2.bias", "attn.to_q.weight": "0.to_q.weight",
                   "attn.to_out.0.weight": "0.to_out.weight", "ff.0.weight": "1.0.weight", "ff.0.bias": "1.0.bias",
                   "ff.1.net.0.proj.weight": "1.1.weight", "ff.1.net.2.weight": "1.3.weight"}  # fmt: skip
        if rest == "attn.to_k.weight":
            raw[f"layers.{i}.0.to_kv.weight"] = torch.cat([value, state[f"layers.{i}.attn.to_v.weight"]])
        elif rest != "attn.to_v.weight":
            raw[f"layers.{i}.{renamed[rest]}"] = value
    return raw


def ip_adapter_files(
    folder: str, unet, image_encoder_dir: str, plus: bool = False, num_tokens: int = 4, seed: int = 0
) -> tuple[str, str, str]:
    """Write a tiny IP-Adapter (or IP-Adapter-Plus) weight file for `unet` in the released layout
    (`image_proj.*` + `ip_adapter.{1,3,...}.to_{k,v}_ip.weight`) next to its image encoder, as in h94/IP-Adapter's
    `models/` folder. Returns `(folder, subfolder, weight_name)` for `pipe.load_ip_adapter`."""
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig

    generator = torch.Generator().manual_seed(seed)
    vision = CLIPVisionConfig.from_pretrained(image_encoder_dir)
    cross = unet.config.cross_attention_dim
    if plus:
        image_proj = _plus_image_proj(vision.hidden_size, cross, num_tokens, generator)
    else:
        image_proj = {
            "proj.weight": torch.randn(4 * cross, vision.projection_dim, generator=generator) * 0.2,
            "proj.bias": torch.randn(4 * cross, generator=generator) * 0.1,
            "norm.weight": torch.ones(cross),
            "norm.bias": torch.zeros(cross),
        }
    tensors = {f"image_proj.{k}": v.contiguous() for k, v in image_proj.items()}
    for index, (_, hidden) in enumerate(_cross_attention_processors(unet)):
        key_id = 2 * index + 1
        for kind in ("k", "v"):
            tensors[f"ip_adapter.{key_id}.to_{kind}_ip.weight"] = torch.randn(hidden, cross, generator=generator) * 0.2
    name = "ip-adapter-plus_tiny.safetensors" if plus else "ip-adapter_tiny.safetensors"
    subfolder = os.path.relpath(os.path.dirname(image_encoder_dir), folder)
    save_file(tensors, os.path.join(folder, subfolder, name))
    return folder, subfolder, name


def lora_file(pipe, folder: str, targets=tuple(LCM_LORA_TARGETS), rank: int = 4, seed: int = 0) -> str:
    """A PEFT LoRA on a copy of `pipe.unet`, saved by diffusers' `save_lora_weights` (`pytorch_lora_weights.
    safetensors`), with random A and B so that it changes the output."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = copy.deepcopy(pipe.unet)
    torch.manual_seed(seed)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=list(targets), init_lora_weights=False))
    state = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=state, safe_serialization=True)
    return folder
