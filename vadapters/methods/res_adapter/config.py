"""ResAdapter configuration."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from vadapters.core.config import AdapterConfig


@dataclass
class ResAdapterConfig(AdapterConfig):
    """ResAdapter (Cheng et al. 2024): a resolution adapter for diffusers UNets.

    Two parts, both on a frozen UNet: ResCLoRA, a conv LoRA on every down/upsampler conv (resolution
    interpolation), and ResENorm, trainable affine parameters of every resnet GroupNorm (extrapolation).
    Unlike the official loader, the base norms are kept: `unload` restores them exactly and `norm_blend`
    interpolates `w = w_base + norm_blend * (w_res - w_base)`. The adapter weight (`set_adapters`) scales
    the LoRA only, as the official alpha does.

    Args:
        rank (`int`): LoRA rank (official files: 16).
        alpha (`float`): LoRA alpha; the LoRA output is scaled by `alpha / rank` (official: 8, so 0.5).
        use_lora (`bool`): add ResCLoRA on the sampler convs.
        use_norms (`bool`): add ResENorm on the resnet GroupNorms.
        norm_blend (`float`): how much of the adapter's norms to use (1 = as trained, 0 = base norms).
    """

    method: ClassVar[str] = "res_adapter"

    rank: int = field(default=16, metadata={"help": "LoRA rank on the down/upsampler convs (official: 16)."})
    alpha: float = field(default=8.0, metadata={"help": "LoRA alpha; output scaled by alpha/rank (official: 8)."})
    use_lora: bool = field(default=True, metadata={"help": "Add the conv LoRA (ResCLoRA) on sampler convs."})
    use_norms: bool = field(default=True, metadata={"help": "Train resnet GroupNorm affines (ResENorm)."})
    norm_blend: float = field(
        default=1.0, metadata={"help": "Blend of adapter norms into base norms: 0 = base, 1 = adapter."}
    )

    def validate(self) -> None:
        self._require(isinstance(self.rank, int) and self.rank >= 1, f"rank must be a positive int, got {self.rank!r}")
        self._require(math.isfinite(float(self.alpha)), f"alpha must be finite, got {self.alpha!r}")
        self._require(self.use_lora or self.use_norms, "at least one of use_lora / use_norms must be True")
        self._require(
            math.isfinite(float(self.norm_blend)) and self.norm_blend >= 0,
            f"norm_blend must be a finite number >= 0, got {self.norm_blend!r}",
        )
        self.alpha = float(self.alpha)
        self.norm_blend = float(self.norm_blend)

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank
