"""Real-size host architectures (Stable Diffusion 1.5 / SDXL UNets, SAM ViT-B) without any download.

These are for shape and compatibility tests: build on the ``meta`` device to inspect module names, parameter counts
and state-dict keys without allocating memory, or materialise on a real device with fast deterministic values (not
a trained model, and not the libraries' slow default initialisation).

Example:
    >>> from vadapters.models.real import build_unet, sd15_unet_config
    >>> unet = build_unet(sd15_unet_config())  # on "meta": nothing allocated
    >>> round(sum(p.numel() for p in unet.parameters()) / 1e6, 1)
    859.5
"""

from __future__ import annotations

import sys
from typing import Any

import torch

__all__ = [
    "SAM_VARIANTS",
    "build_unet",
    "fill_deterministic_",
    "sam_state_dict_keys",
    "sam_vit_b",
    "sam_vit",
    "sd15_unet_config",
    "sdxl_unet_config",
]

SAM_VARIANTS = ("vit_b", "vit_l", "vit_h")
_POOL_SIZE = 1_048_573  # prime, so rows of a weight rarely line up with the pool period
_NORMS = (torch.nn.GroupNorm, torch.nn.LayerNorm, torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d)


def sd15_unet_config() -> dict[str, Any]:
    """Return the published UNet config of Stable Diffusion 1.5 (``unet/config.json``, without the ``_`` keys).

    Example:
        >>> sd15_unet_config()["cross_attention_dim"]
        768
    """
    return {
        "act_fn": "silu",
        "attention_head_dim": 8,
        "block_out_channels": [320, 640, 1280, 1280],
        "center_input_sample": False,
        "cross_attention_dim": 768,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "downsample_padding": 1,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "in_channels": 4,
        "layers_per_block": 2,
        "mid_block_scale_factor": 1,
        "norm_eps": 1e-05,
        "norm_num_groups": 32,
        "out_channels": 4,
        "sample_size": 64,
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    }


def sdxl_unet_config() -> dict[str, Any]:
    """Return the published UNet config of Stable Diffusion XL base 1.0 (without the ``_`` keys).

    Example:
        >>> sdxl_unet_config()["projection_class_embeddings_input_dim"]
        2816
    """
    return {
        "act_fn": "silu",
        "addition_embed_type": "text_time",
        "addition_embed_type_num_heads": 64,
        "addition_time_embed_dim": 256,
        "attention_head_dim": [5, 10, 20],
        "block_out_channels": [320, 640, 1280],
        "center_input_sample": False,
        "class_embed_type": None,
        "class_embeddings_concat": False,
        "conv_in_kernel": 3,
        "conv_out_kernel": 3,
        "cross_attention_dim": 2048,
        "cross_attention_norm": None,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "downsample_padding": 1,
        "dual_cross_attention": False,
        "encoder_hid_dim": None,
        "encoder_hid_dim_type": None,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "in_channels": 4,
        "layers_per_block": 2,
        "mid_block_only_cross_attention": None,
        "mid_block_scale_factor": 1,
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "norm_eps": 1e-05,
        "norm_num_groups": 32,
        "num_attention_heads": None,
        "num_class_embeds": None,
        "only_cross_attention": False,
        "out_channels": 4,
        "projection_class_embeddings_input_dim": 2816,
        "resnet_out_scale_factor": 1.0,
        "resnet_skip_time_act": False,
        "resnet_time_scale_shift": "default",
        "sample_size": 128,
        "time_cond_proj_dim": None,
        "time_embedding_act_fn": None,
        "time_embedding_dim": None,
        "time_embedding_type": "positional",
        "timestep_post_act": None,
        "transformer_layers_per_block": [1, 2, 10],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "upcast_attention": None,
        "use_linear_projection": True,
    }


@torch.no_grad()
def fill_deterministic_(module: torch.nn.Module, seed: int = 0, std: float = 0.02) -> torch.nn.Module:
    """Overwrite every parameter and buffer of ``module`` in place with fast, deterministic pseudo-random values.

    Weights (``ndim > 1``) get ``N(0, std)``; normalisation weights ``1 + 0.1 * N(0, 1)``; biases and other vectors
    ``N(0, std / 2)``; floating buffers ``N(0, 1)`` (e.g. SAM's random Fourier matrix) and other buffers zero. Values are cyclic shifts of one seeded Gaussian pool (about 1M entries, prime
    length) with a per-tensor offset, so filling is a memory copy: a 860M-parameter UNet takes seconds, not minutes.

    Args:
        module: A module whose tensors live on a real device (e.g. after ``to_empty``).
        seed: Selects the pool and the per-tensor offsets.
        std: Standard deviation of the weight matrices.

    Returns:
        ``module``.

    Example:
        >>> lin = fill_deterministic_(torch.nn.Linear(4, 3), seed=0)
        >>> torch.equal(lin.weight, fill_deterministic_(torch.nn.Linear(4, 3), seed=0).weight)
        True
    """
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(_POOL_SIZE, generator=gen)
    offsets = torch.randint(0, _POOL_SIZE, (1 << 16,), generator=gen).tolist()
    pools: dict[tuple[str, torch.device, torch.dtype], torch.Tensor] = {}

    def pool(kind: str, like: torch.Tensor) -> torch.Tensor:
        key = (kind, like.device, like.dtype)
        if key not in pools:
            values = {"weight": base * std, "norm": 1.0 + 0.1 * base, "bias": base * (std / 2), "unit": base}[kind]
            pools[key] = torch.cat([values, values]).to(device=like.device, dtype=like.dtype)
        return pools[key]

    def fill(tensor: torch.Tensor, kind: str, index: int) -> None:
        src = pool(kind, tensor)
        flat = tensor.view(-1)
        start = offsets[index % len(offsets)]
        for begin in range(0, flat.numel(), _POOL_SIZE):
            chunk = flat[begin : begin + _POOL_SIZE]
            chunk.copy_(src[start : start + chunk.numel()])

    index = 0
    for mod in module.modules():
        is_norm = isinstance(mod, _NORMS) or type(mod).__name__ in {"RMSNorm", "LayerNorm2d", "AdaGroupNorm"}
        for name, param in mod.named_parameters(recurse=False):
            if param.ndim > 1:
                kind = "weight"
            elif is_norm and name == "weight":
                kind = "norm"
            else:
                kind = "bias"
            fill(param.data, kind, index)
            index += 1
        for buf in mod.buffers(recurse=False):
            if buf.is_floating_point():
                fill(buf, "unit", index)
                index += 1
            else:
                buf.zero_()
    return module


def build_unet(
    config: dict[str, Any],
    device: str | torch.device = "meta",
    seed: int | None = None,
    dtype: torch.dtype = torch.float32,
):
    """Build a ``diffusers.UNet2DConditionModel`` of any size without a download or a slow initialisation.

    Args:
        config: UNet config, e.g. :func:`sd15_unet_config` or :func:`sdxl_unet_config`.
        device: ``"meta"`` (no memory allocated) or a real device; a real device gets the values of
            :func:`fill_deterministic_`.
        seed: Fill seed on a real device (``None`` means 0); ignored on ``"meta"``.
        dtype: Parameter dtype.

    Returns:
        The UNet in eval mode.

    Example:
        >>> unet = build_unet(sdxl_unet_config())
        >>> unet.device.type, unet.config.cross_attention_dim
        ('meta', 2048)
    """
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**config)
    if dtype != torch.float32:
        unet = unet.to(dtype=dtype)
    unet.eval()
    device = torch.device(device)
    if device.type == "meta":
        return unet
    unet.to_empty(device=device)
    fill_deterministic_(unet, seed=0 if seed is None else seed)
    return unet


def _sam_builder(variant: str):
    import segment_anything  # noqa: F401  (registers the submodule)

    # ``segment_anything.build_sam`` is shadowed by the function of the same name; go through sys.modules.
    registry = sys.modules["segment_anything.build_sam"].sam_model_registry
    if variant not in SAM_VARIANTS:
        raise ValueError(f"unknown SAM variant {variant!r}; expected one of {SAM_VARIANTS}")
    return registry[variant]


def sam_vit(variant: str = "vit_b", device: str | torch.device = "meta", seed: int | None = None):
    """Build the real ``segment_anything`` SAM of ``variant`` (1024-pixel input, 256-wide prompt/mask decoder).

    Args:
        variant: ``"vit_b"``, ``"vit_l"`` or ``"vit_h"``.
        device: ``"meta"`` (no memory allocated, every tensor on meta) or a real device.
        seed: On a real device, ``None`` keeps SAM's own initialisation (slow-ish for ViT-H); an int fills with
            :func:`fill_deterministic_` instead, after which the pixel mean/std buffers are restored.

    Example:
        >>> len(sam_vit("vit_l").image_encoder.blocks)
        24
    """
    builder = _sam_builder(variant)
    device = torch.device(device)
    if device.type != "meta" and seed is None:
        return builder(checkpoint=None).to(device).eval()
    with torch.device("meta"):
        sam = builder(checkpoint=None)
    # ``torch.Tensor(list)`` ignores the device context, so pixel_mean/std were made on the CPU.
    mean, std = sam.pixel_mean.clone(), sam.pixel_std.clone()
    sam = sam.to("meta")
    if device.type == "meta":
        return sam.eval()
    sam.to_empty(device=device)
    fill_deterministic_(sam, seed=seed)
    sam.pixel_mean.copy_(mean)
    sam.pixel_std.copy_(std)
    return sam.eval()


def sam_vit_b(device: str | torch.device = "meta", seed: int | None = None):
    """Build the real SAM ViT-B (93.7M parameters, 12 encoder blocks); see :func:`sam_vit`.

    Args:
        device: ``"meta"`` or a real device.
        seed: See :func:`sam_vit`.

    Example:
        >>> sam = sam_vit_b()
        >>> len(sam.image_encoder.blocks), sam.image_encoder.img_size
        (12, 1024)
    """
    return sam_vit("vit_b", device=device, seed=seed)


def sam_state_dict_keys(variant: str = "vit_b") -> list[str]:
    """Return the state-dict keys (in order) of an official SAM checkpoint of ``variant``; nothing is allocated.

    Args:
        variant: ``"vit_b"``, ``"vit_l"`` or ``"vit_h"``.

    Example:
        >>> sam_state_dict_keys("vit_b")[:2]
        ['image_encoder.pos_embed', 'image_encoder.patch_embed.proj.weight']
    """
    return list(sam_vit(variant, device="meta").state_dict().keys())
