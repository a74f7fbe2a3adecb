"""Hosts and inference arms of benchmarks/perf.py: tiny hosts and real-size architectures with random weights.

Real size (`vadapters.models.real`, deterministic fill, nothing downloaded): the SD 1.5 UNet and the SDXL UNet at
32x32 latents, an SD 1.5 `UNetMotionModel` (AnimateDiff v1-style motion modules) on 8 frames at 32x32 latents,
SAM ViT-B at 1,024 px and a timm ResNet-50 at 224 px. Tiny: the `vadapters.models` hosts the tests use.

Adapted arms share the base's weight tensors (`shared_copy`: a deep copy whose parameters and buffers are the
base's own), so an SDXL UNet sits in memory once; a fused arm fuses before its timed call and unfuses after it
(untimed), so the base arm always runs the original weights. Adapter values are perturbed away from their no-op
initialisation (zero up-projections would be a special case no trained adapter has).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import torch
from _perf_timing import Arm

import vadapters

LATENT = {"tiny": 16, "real": 32}
MV_LATENT = {"tiny": 16, "real": 16}  # 4 SDXL views at 32x32 latents take minutes per call on this CPU
FRAMES = {"tiny": 8, "real": 4}  # the I2V branch costs the same per frame; 4 frames keep a real call under a minute
VIEWS = 4


def shared_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of `module` whose parameters and buffers are `module`'s own tensors (no weight is copied)."""
    memo = {id(t): t for t in (*module.parameters(), *module.buffers())}
    return copy.deepcopy(module, memo)


def perturb(host: Any, method: str, name: str, scale: float = 0.02, seed: int = 0) -> None:
    """Move every adapter parameter of `host` by `scale` x N(0, 1), so that no branch is a zero no-op."""
    gen = torch.Generator().manual_seed(seed)
    params = vadapters.get_method(method).injector_cls().adapter_parameters(host, name)
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn(p.shape, generator=gen).to(p.dtype) * scale)


def adapted(base: torch.nn.Module, config: Any, name: str) -> torch.nn.Module:
    """A shared-weight copy of `base` with `config` injected as `name` and its values perturbed."""
    model = shared_copy(base)
    vadapters.inject(model, config, adapter_name=name)
    perturb(model, config.method, name)
    model.eval()
    return model


def fused_arm(model: torch.nn.Module, call) -> Arm:
    return Arm(call, enter=lambda: vadapters.fuse(model), exit=lambda: vadapters.unfuse(model))


# ------------------------------------------------------------------------------------------------------- UNets
def build_sd(size: str) -> torch.nn.Module:
    if size == "tiny":
        from vadapters.models import tiny_sd_pipeline

        return tiny_sd_pipeline(seed=0).unet.eval()
    from vadapters.models.real import build_unet, sd15_unet_config

    return build_unet(sd15_unet_config(), device="cpu", seed=0)


def build_sdxl(size: str) -> torch.nn.Module:
    if size == "tiny":
        from vadapters.models import tiny_sdxl_pipeline

        return tiny_sdxl_pipeline(seed=0).unet.eval()
    from vadapters.models.real import build_unet, sdxl_unet_config

    return build_unet(sdxl_unet_config(), device="cpu", seed=0)


def build_motion(size: str) -> torch.nn.Module:
    if size == "tiny":
        from vadapters.models import tiny_animatediff_pipeline

        return tiny_animatediff_pipeline(seed=0).unet.eval()
    from diffusers import MotionAdapter, UNetMotionModel

    from vadapters.models.real import build_unet, fill_deterministic_, sd15_unet_config

    with torch.device("meta"):
        motion = MotionAdapter(
            block_out_channels=(320, 640, 1280, 1280), motion_layers_per_block=2, motion_num_attention_heads=8,
            motion_norm_num_groups=32, motion_max_seq_length=32, use_motion_mid_block=False,
        )  # fmt: skip
        unet = UNetMotionModel.from_unet2d(build_unet(sd15_unet_config()), motion, load_weights=False)
    unet.to_empty(device="cpu")
    fill_deterministic_(unet, seed=0)
    return unet.eval()


def unet_inputs(unet: torch.nn.Module, batch: int, latent: int, frames: int | None = None, seed: int = 0) -> dict:
    """Keyword inputs of one denoising call: latents, timestep, 77 text tokens (SDXL: pooled text and time ids);
    a motion UNet gets `(batch, 4, frames, h, w)` latents and per-frame text."""
    gen = torch.Generator().manual_seed(seed)
    cfg = unet.config
    shape = (batch, cfg.in_channels, frames, latent, latent) if frames else (batch, cfg.in_channels, latent, latent)
    texts = batch * (frames or 1)
    out = {
        "sample": torch.randn(shape, generator=gen),
        "timestep": torch.tensor(500),
        "encoder_hidden_states": torch.randn(texts, 77, cfg.cross_attention_dim, generator=gen),
    }
    if cfg.get("addition_embed_type") == "text_time":
        pooled = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
        out["added_cond_kwargs"] = {
            "text_embeds": torch.randn(batch, pooled, generator=gen),
            "time_ids": torch.tensor([[8.0 * latent, 8.0 * latent, 0, 0, 8.0 * latent, 8.0 * latent]]).repeat(
                batch, 1
            ),
        }
    return out


def caller(model: torch.nn.Module, inputs: dict, context=None):
    """`call()` running `model(**inputs)` without gradients (inside `context()` when given)."""

    def call():
        with torch.no_grad(), context() if context else contextlib.nullcontext():
            return model(**inputs, return_dict=False)[0]

    return call


def sd_arms(size: str) -> Iterator[tuple[str, dict[str, Arm], dict]]:
    """SD 1.5: base vs ResAdapter and SaRA, unfused and fused (one UNet call, batch 1)."""
    from vadapters.methods.res_adapter import ResAdapterConfig
    from vadapters.methods.sara import SaRAConfig

    base = build_sd(size)
    inputs = unet_inputs(base, 1, LATENT[size])
    res = adapted(base, ResAdapterConfig(), "res")
    sara = adapted(base, SaRAConfig(), "sara")
    arms = {
        "base": Arm(caller(base, inputs)),
        "res_adapter": Arm(caller(res, inputs)),
        "res_adapter_fused": fused_arm(res, caller(res, inputs)),
        "sara": Arm(caller(sara, inputs)),
        "sara_fused": fused_arm(sara, caller(sara, inputs)),
    }
    selected = sum((vadapters.get_adapter_config(sara, "sara").selection or {}).values())
    total = sum(p.numel() for p in base.parameters())
    host = "SD 1.5 UNet" if size == "real" else "tiny SD UNet"
    yield "sd", arms, {"host": host, "latent": LATENT[size], "batch": 1, "sara_selected": selected / total}


def sdxl_arms(size: str) -> Iterator[tuple[str, dict[str, Arm], dict]]:
    """SDXL: base vs ResAdapter (unfused, fused), then base vs MV-Adapter row attention at 4 views (batch = views),
    and (tiny only) with the camera-map encoder (an SDXL T2I-Adapter, run once per call) as well."""
    from vadapters.methods.mv_adapter import MVAdapterConfig, multiview_state
    from vadapters.methods.res_adapter import ResAdapterConfig

    base = build_sdxl(size)
    latent = LATENT[size]
    host = "SDXL UNet" if size == "real" else "tiny SDXL UNet"
    inputs = unet_inputs(base, 1, latent)
    res = adapted(base, ResAdapterConfig(), "res")
    arms = {
        "base": Arm(caller(base, inputs)),
        "res_adapter": Arm(caller(res, inputs)),
        "res_adapter_fused": fused_arm(res, caller(res, inputs)),
    }
    yield "sdxl", arms, {"host": host, "latent": latent, "batch": 1}
    del arms, res
    latent = MV_LATENT[size]
    views = unet_inputs(base, VIEWS, latent)
    info = {"host": host, "latent": latent, "views": VIEWS, "batch": VIEWS}
    row = adapted(base, MVAdapterConfig(num_views=VIEWS, topology="row"), "mv")
    arms = {
        "base_4_views": Arm(caller(base, views)),
        "mv_adapter_row": Arm(caller(row, views, lambda row=row: multiview_state(row, num_views=VIEWS))),
    }
    yield "sdxl_multiview", arms, info
    del arms, row  # one adapted copy at a time: its new projections weigh 1.6 GB on SDXL
    if size == "real":
        return
    config = MVAdapterConfig(num_views=VIEWS, topology="row", condition_channels=6, condition_type="full_adapter_xl")
    cams = adapted(base, config.for_host(_scale_host(size)), "mv")
    vae_scale = _scale_host(size).vae_scale_factor
    raymaps = torch.randn(VIEWS, 6, latent * vae_scale, latent * vae_scale, generator=torch.Generator().manual_seed(1))
    arms = {
        "base_4_views": Arm(caller(base, views)),
        "mv_adapter_row_cameras": Arm(
            caller(cams, views, lambda: multiview_state(cams, num_views=VIEWS, condition=raymaps))
        ),
    }
    yield "sdxl_multiview_cameras", arms, info


def _scale_host(size: str) -> Any:
    """What `MVAdapterConfig.for_host` reads the VAE scale factor from (8 for real SD / SDXL, 2 for the tiny)."""

    class Host:
        vae_scale_factor = 8 if size == "real" else 2

    return Host()


def video_arms(size: str) -> Iterator[tuple[str, dict[str, Arm], dict]]:
    """SD 1.5 UNetMotionModel: base vs I2V-Adapter, one clip of 8 frames."""
    from vadapters.methods.i2v_adapter import I2VAdapterConfig

    base = build_motion(size)
    inputs = unet_inputs(base, 1, LATENT[size], frames=FRAMES[size])
    i2v = adapted(base, I2VAdapterConfig(), "i2v")
    arms = {"base": Arm(caller(base, inputs)), "i2v_adapter": Arm(caller(i2v, inputs))}
    host = "SD 1.5 UNetMotionModel" if size == "real" else "tiny UNetMotionModel"
    yield "video", arms, {"host": host, "latent": LATENT[size], "frames": FRAMES[size], "batch": 1}


# ---------------------------------------------------------------------------------------------------------- SAM
def build_sam(size: str) -> torch.nn.Module:
    if size == "tiny":
        from vadapters.models import tiny_sam

        return tiny_sam(seed=0).eval()
    from vadapters.models.real import sam_vit

    return sam_vit("vit_b", device="cpu", seed=0)


def sam_arms(size: str) -> Iterator[tuple[str, dict[str, Arm], dict]]:
    """SAM image encoder: base vs SAM-Adapter (batch 1 at the encoder's input size)."""
    from vadapters.methods.sam_adapter import SAMAdapterConfig

    base = build_sam(size)
    side = base.image_encoder.img_size
    x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    sam = adapted(base, SAMAdapterConfig(), "sam")

    def encode(model):
        def call():
            with torch.no_grad():
                return model.image_encoder(x)

        return call

    arms = {"base": Arm(encode(base)), "sam_adapter": Arm(encode(sam))}
    yield "sam", arms, {"host": "SAM ViT-B" if size == "real" else "tiny SAM", "pixels": side, "batch": 1}


# ---------------------------------------------------------------------------------------------------------- TTA
def build_classifier(size: str) -> torch.nn.Module:
    if size == "tiny":
        from vadapters.models import tiny_timm_classifier

        return tiny_timm_classifier("test_resnet", seed=0).eval()
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return timm.create_model("resnet50", pretrained=False).eval()


def tta_arms(size: str) -> Iterator[tuple[str, dict[str, Arm], dict]]:
    """Test-time adaptation at batch 64: a plain forward (normalise, classify, softmax) vs each wrapper. Real size
    runs LAME only (the gate; TENT / CoTTA cost several forwards and are measured on the tiny classifier)."""
    from vadapters.tta import build_method

    model = build_classifier(size)
    side = 224 if size == "real" else 32
    x = torch.rand(64, 3, side, side, generator=torch.Generator().manual_seed(0))
    mean = torch.tensor(model.pretrained_cfg["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(model.pretrained_cfg["std"]).view(1, -1, 1, 1)

    def plain():
        with torch.no_grad():
            return model((x - mean) / std).softmax(1)

    arms = {"plain_forward": Arm(plain), "lame": Arm(_wrapped(build_method("lame", model), x))}
    if size == "tiny":
        for name, options in {"bn": {}, "tent": {}, "vdp": {}, "cotta": {"ap": 1.0}}.items():
            arms[name] = Arm(_wrapped(build_method(name, copy.deepcopy(model), **options), x))
    host = "timm ResNet-50" if size == "real" else "timm test_resnet"
    yield "tta", arms, {"host": host, "pixels": side, "batch": 64}


def _wrapped(method, x):
    def call():
        return method(x)

    return call


GROUPS = {"sd": sd_arms, "sdxl": sdxl_arms, "video": video_arms, "sam": sam_arms, "tta": tta_arms}
