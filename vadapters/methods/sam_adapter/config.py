"""SAM-Adapter configuration."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from vadapters.core.config import AdapterConfig


@dataclass
class SAMAdapterConfig(AdapterConfig):
    """SAM-Adapter (Chen et al., ICCV 2023): explicit visual prompts added at every ViT block input of a frozen SAM.

    The prompt features are `f = F_pe + F_hfc`: `F_pe = Linear(C -> C/s)` of the patch-embedding tokens (taken
    before the absolute position embedding) and `F_hfc = Conv(k = stride = patch)` of the high-frequency components
    of the normalised image (FFT high-pass removing a centred square of `freq_rate` of the bins, then `|real|`).
    Block `i` gets `P_i = shared_up(GELU(tune_i(f)))` added to its input. The mask decoder (a trainable copy; the
    original stays frozen) and `no_mask_embed` are part of the adapter, as in the paper.

    Args:
        scale_factor (`int`): hidden width is `embed_dim // scale_factor` (official: 32, hard-coded).
        use_embedding (`bool`): use the patch-embedding feature `F_pe`.
        use_hfc (`bool`): use the high-frequency feature `F_hfc`. With both off there are no encoder prompts
            (decoder-only tuning, a baseline).
        freq_rate (`float`): fraction of the FFT bins (a centred low-frequency square) removed (official 0.25).
        init (`str`): `"zero"`: the shared up-projection starts at zero, so the adapted SAM starts bit-identical to
            SAM; `"official"`: the official init (trunc-normal 0.02 linears, He-normal conv; small non-zero prompts).
        official_token_layout (`bool`): reproduce the official `init_embeddings` reshape, which reads the NHWC patch
            tokens as if they were NCHW and so mixes channels of tokens across the image (needed for official
            checkpoints to behave as trained). Default: the correct per-token layout.
        train_decoder (`bool`): give the adapter its own trainable copy of the mask decoder (official: yes).
        train_no_mask_embed (`bool`): give the adapter its own trainable `no_mask_embed` (official: yes).
        official_positional_encoding (`bool`): the adapter carries its own dense positional-encoding matrix; set by
            the official-checkpoint converter, because the official code trains its decoder against a random
            matrix instead of SAM's (it never loads `prompt_encoder.pe_layer`).
    """

    method: ClassVar[str] = "sam_adapter"

    scale_factor: int = field(
        default=32, metadata={"help": "Adapter width = embed_dim // scale_factor (official 32)."}
    )
    use_embedding: bool = field(default=True, metadata={"help": "Use the patch-embedding feature F_pe."})
    use_hfc: bool = field(default=True, metadata={"help": "Use the high-frequency-component feature F_hfc."})
    freq_rate: float = field(
        default=0.25, metadata={"help": "Fraction of FFT bins (centred low-frequency square) removed (official 0.25)."}
    )
    init: str = field(default="zero", metadata={"help": "'zero' (starts identical to SAM) or 'official'."})
    official_token_layout: bool = field(
        default=False, metadata={"help": "Reproduce the official scrambled token reshape (official checkpoints)."}
    )
    train_decoder: bool = field(default=True, metadata={"help": "The adapter holds a trainable mask-decoder copy."})
    train_no_mask_embed: bool = field(default=True, metadata={"help": "The adapter holds a trainable no_mask_embed."})
    official_positional_encoding: bool = field(
        default=False, metadata={"help": "Carry the dense positional-encoding matrix (official checkpoints)."}
    )

    def validate(self) -> None:
        self._require(
            isinstance(self.scale_factor, int) and not isinstance(self.scale_factor, bool) and self.scale_factor >= 1,
            f"scale_factor must be a positive int, got {self.scale_factor!r}",
        )
        self._require(
            math.isfinite(float(self.freq_rate)) and 0.0 <= float(self.freq_rate) <= 1.0,
            f"freq_rate must be in [0, 1], got {self.freq_rate!r}",
        )
        self._require(self.init in ("zero", "official"), f"init must be 'zero' or 'official', got {self.init!r}")
        self._require(
            self.uses_prompts or self.train_decoder or self.train_no_mask_embed,
            "nothing to train: enable use_embedding / use_hfc, train_decoder or train_no_mask_embed",
        )
        self.freq_rate = float(self.freq_rate)

    @property
    def uses_prompts(self) -> bool:
        """Whether the adapter adds prompts in the image encoder."""
        return bool(self.use_embedding or self.use_hfc)
