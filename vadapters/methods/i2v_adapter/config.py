"""I2V-Adapter configuration."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from vadapters.core.config import AdapterConfig


@dataclass
class I2VAdapterConfig(AdapterConfig):
    """I2V-Adapter (Guo et al. 2024): image-to-video on an AnimateDiff-style `UNetMotionModel`.

    Every *spatial* self-attention (`attn1` under `.attentions.`, never the motion modules, never the text
    cross-attention `attn2`) gets a parallel first-frame branch: a new query projection `to_q_ff` (copied from the
    frozen `to_q`) attends to the frozen `to_k` / `to_v` of **frame 0 of each clip** (repeated over the clip's
    frames), and a zero-initialised output projection `to_out_ff` adds the result to the base attention output.
    A fresh adapter therefore leaves the video model bit-identical; training learns only `to_q_ff` and
    `to_out_ff` (2 d^2 + d parameters per layer: 24.8M on SD 1.5).

    The number of frames is read from the `(batch, channels, frames, height, width)` input of every UNet call, so
    nothing per call has to be passed (see `vadapters.methods.i2v_adapter.i2v_state` for the branch scale).

    Args:
        scale (`float`): default scale of the first-frame branch (per-call override with `i2v_state`).
        copy_query (`bool`): initialise `to_q_ff` as a copy of the frozen `to_q` (official); False keeps the
            default `nn.Linear` initialisation (an ablation).

    Example:
        >>> cfg = I2VAdapterConfig(scale=0.8)
        >>> I2VAdapterConfig.from_dict(cfg.to_dict()) == cfg
        True
    """

    method: ClassVar[str] = "i2v_adapter"

    scale: float = field(default=1.0, metadata={"help": "Default scale of the first-frame branch (0 turns it off)."})
    copy_query: bool = field(
        default=True, metadata={"help": "Initialise to_q_ff as a copy of the frozen to_q (official)."}
    )

    def validate(self) -> None:
        self._require(
            isinstance(self.scale, (int, float)) and not isinstance(self.scale, bool) and self.scale == self.scale,
            f"scale must be a number, got {self.scale!r}",
        )
        self._require(isinstance(self.copy_query, bool), f"copy_query must be True or False, got {self.copy_query!r}")
