"""MV-Adapter configuration."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from vadapters.core.config import AdapterConfig

TOPOLOGIES = ("row", "rowcol6", "full")
ENCODER_TYPES = ("full_adapter", "full_adapter_xl")
CAMERA_CONVENTIONS = ("vadapters", "official")
SD_VAE_SCALE_FACTOR = 8


def fitting_downscale_factor(condition_type: str, vae_scale_factor: int) -> int:
    """The condition encoder's pixel-unshuffle factor that fits a pipeline whose VAE downscales by
    `vae_scale_factor`: its first features must have the latents' size (`full_adapter`), or half of it for
    `full_adapter_xl`, whose features start at SDXL's first cross-attention block.

    Example:
        >>> fitting_downscale_factor("full_adapter", 8), fitting_downscale_factor("full_adapter_xl", 8)
        (8, 16)
    """
    return int(vae_scale_factor) * (2 if condition_type == "full_adapter_xl" else 1)


@dataclass
class MVAdapterConfig(AdapterConfig):
    """MV-Adapter (Huang et al. 2024): multi-view consistent generation with decoupled attention on a frozen UNet.

    Every spatial self-attention (`attn1` under `.attentions.`) gets a parallel multi-view branch that reads the
    same normed input as the frozen attention: `to_q_mv/k/v` copied from the base `to_q/k/v`, `to_out_mv`
    zero-initialised, so a fresh adapter leaves the UNet output bit-identical. The optional reference branch
    (`use_ref`, same initialisation) attends to cached features of a clean reference image. An optional
    condition encoder (a diffusers `T2IAdapter` on camera raymaps or geometry maps) feeds
    `down_intrablock_additional_residuals`. Output of each `attn1`: `base + mv_scale * mv + ref_scale * ref`;
    the adapter weight (`vadapters.set_adapters`) multiplies both branches and the encoder features.

    Args:
        num_views (`int`): default number of views per object (change per call with `multiview_state`).
        topology (`str`): `"row"` (orthographic, elevation 0: a token attends to its row in all views),
            `"rowcol6"` (the official 6-view front/right/back/left/top/bottom rows + columns) or `"full"`
            (all tokens of all views; any cameras).
        use_ref (`bool`): add the reference-image branch (`_ref`) for image-to-multiview.
        condition_channels (`int`): input channels of the condition encoder (6 for raymaps or position +
            normal maps); 0 means no encoder.
        condition_type (`str`): `"full_adapter"` (SD 1.x / 2.x) or `"full_adapter_xl"` (SDXL).
        condition_downscale_factor (`int`, optional): pixel-unshuffle factor of the encoder: the VAE scale factor
            for `full_adapter` (8 for real SD, 2 for the tiny pipelines), twice it for `full_adapter_xl` (16 for the
            official SDXL encoder). `None` (default): `inject` takes it from the pipeline's `vae_scale_factor` (8,
            SD's VAE, on a bare UNet); the multi-view pipelines refuse an encoder that does not fit their VAE.
        condition_num_res_blocks (`int`, optional): residual blocks per encoder level; `None` uses the UNet's
            `layers_per_block`.
        camera_convention (`str`): the world frame of the camera maps the encoder was trained on: `"vadapters"`
            (y-up; vadapters' own adapters) or `"official"` (z-up with azimuth - 90, the released MV-Adapter
            checkpoints; set when an official file is loaded). The pipelines build camera maps in it.

    Example:
        >>> cfg = MVAdapterConfig(num_views=4, topology="full")
        >>> MVAdapterConfig.from_dict(cfg.to_dict()) == cfg
        True
    """

    method: ClassVar[str] = "mv_adapter"

    num_views: int = field(default=6, metadata={"help": "Default number of views per object (per-call override)."})
    topology: str = field(default="row", metadata={"help": "Multi-view attention: 'row', 'rowcol6' or 'full'."})
    use_ref: bool = field(default=False, metadata={"help": "Add the reference-image branch (_ref)."})
    condition_channels: int = field(
        default=0, metadata={"help": "Condition encoder input channels (6 for raymaps); 0 = no encoder."}
    )
    condition_type: str = field(
        default="full_adapter", metadata={"help": "T2IAdapter type: 'full_adapter' or 'full_adapter_xl' (SDXL)."}
    )
    condition_downscale_factor: int | None = field(
        default=None,
        metadata={"help": "Encoder pixel-unshuffle factor; None: from the pipeline's VAE at inject (SDXL: twice it)."},
    )
    condition_num_res_blocks: int | None = field(
        default=None, metadata={"help": "Residual blocks per encoder level; None = UNet layers_per_block."}
    )
    camera_convention: str = field(
        default="vadapters",
        metadata={"help": "Camera-map world frame: 'vadapters' (y-up) or 'official' (z-up, azimuth - 90)."},
    )

    def for_host(self, host: Any) -> MVAdapterConfig:
        """With a condition encoder and no `condition_downscale_factor`: the one that fits `host`'s VAE
        (`vae_scale_factor` of a pipeline; SD's 8 for a bare UNet).

        Example:
            >>> from vadapters.models import tiny_sd_pipeline
            >>> MVAdapterConfig(condition_channels=6).for_host(tiny_sd_pipeline()).condition_downscale_factor
            2
        """
        if not self.condition_channels or self.condition_downscale_factor is not None:
            return self
        vae = getattr(host, "vae_scale_factor", None) or SD_VAE_SCALE_FACTOR
        return self.replace(condition_downscale_factor=fitting_downscale_factor(self.condition_type, vae))

    def validate(self) -> None:
        self._require(
            isinstance(self.num_views, int) and self.num_views >= 1,
            f"num_views must be an int >= 1, got {self.num_views!r}",
        )
        self._require(self.topology in TOPOLOGIES, f"topology must be one of {TOPOLOGIES}, got {self.topology!r}")
        self._require(
            self.topology != "rowcol6" or self.num_views == 6,
            f"topology 'rowcol6' is defined for exactly 6 views (front, right, back, left, top, bottom), "
            f"got num_views={self.num_views}; use 'full' for other view sets",
        )
        self._require(
            isinstance(self.condition_channels, int) and self.condition_channels >= 0,
            f"condition_channels must be an int >= 0, got {self.condition_channels!r}",
        )
        self._require(
            self.condition_type in ENCODER_TYPES,
            f"condition_type must be one of {ENCODER_TYPES}, got {self.condition_type!r}",
        )
        self._require(
            self.condition_downscale_factor is None
            or (isinstance(self.condition_downscale_factor, int) and self.condition_downscale_factor >= 1),
            f"condition_downscale_factor must be None or an int >= 1, got {self.condition_downscale_factor!r}",
        )
        self._require(
            self.condition_num_res_blocks is None
            or (isinstance(self.condition_num_res_blocks, int) and self.condition_num_res_blocks >= 1),
            f"condition_num_res_blocks must be None or an int >= 1, got {self.condition_num_res_blocks!r}",
        )
        self._require(
            self.camera_convention in CAMERA_CONVENTIONS,
            f"camera_convention must be one of {CAMERA_CONVENTIONS}, got {self.camera_convention!r}",
        )
