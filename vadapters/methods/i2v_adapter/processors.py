"""I2V-Adapter's first-frame attention: a wrapper around each spatial `attn1` processor of a `UNetMotionModel`.

The wrapper calls the processor the user had (SDPA, xformers, LoRA-aware, ...) for the frozen per-frame
self-attention and adds, from the **same normed input** `h` of shape `(batch * frames, tokens, d)`:

    ff  = attention(q = to_q_ff(h), k = to_k(h_0), v = to_v(h_0))      # h_0: frame 0 of each clip, repeated
    out = base + scale * to_out_ff(ff)

`to_k` / `to_v` are the attention's own frozen projections, so the first-frame keys and values stay in the base
feature space; `to_q_ff` starts as a copy of `to_q` and `to_out_ff` at zero. Frames are laid out clip-major, as
diffusers' `UNetMotionModel` does (`[clip0 f0, clip0 f1, ..., clip1 f0, ...]`).

Per-call state (number of frames, branch scale) lives on an `I2VRuntime` shared by the processors of one UNet;
a forward pre-hook on the UNet records the frame count of every call from its 5-D `sample`, and repeats
`encoder_hidden_states` per frame when a caller passes one row per clip (diffusers' `UNetMotionModel` wants them
already repeated to `batch * frames`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vadapters.core.layers import clone_linear, zero_linear
from vadapters.core.processors import ProcessorAdapter
from vadapters.errors import BadInputError


class I2VRuntime:
    """Per-call I2V-Adapter state shared by all processors of one UNet.

    Attributes:
        num_frames (`int` or None): frames per clip of the current UNet call (recorded by `record_input`).
        scale (`float`): per-call multiplier of every adapter's branch (1.0; 0 turns the branch off exactly).
        fixed_frames (`bool`): when True, `record_input` leaves `num_frames` alone (set by `i2v_state`).
    """

    def __init__(self) -> None:
        self.num_frames: int | None = None
        self.scale = 1.0
        self.fixed_frames = False
        self.hook_handle: Any = None

    def record_input(self, module: nn.Module, args: tuple, kwargs: dict):
        """UNet forward pre-hook: record the frame count; repeat per-clip `encoder_hidden_states` per frame."""
        sample = args[0] if args else kwargs.get("sample")
        if not (isinstance(sample, torch.Tensor) and sample.ndim == 5):
            return None
        frames = int(sample.shape[2])
        if not self.fixed_frames:
            self.num_frames = frames
        in_args = len(args) > 2
        states = args[2] if in_args else kwargs.get("encoder_hidden_states")
        if not isinstance(states, torch.Tensor) or frames == 1 or states.shape[0] != sample.shape[0]:
            return None
        states = states.repeat_interleave(frames, dim=0)
        if in_args:
            return (*args[:2], states, *args[3:]), kwargs
        return args, {**kwargs, "encoder_hidden_states": states}

    def frames_for(self, batch: int) -> int:
        frames = self.num_frames
        if frames is None:
            raise BadInputError(
                "I2V-Adapter does not know the number of frames: call the UNetMotionModel with a 5-D sample "
                "(batch, channels, frames, height, width), or set it with i2v_state(unet, num_frames=...)"
            )
        if batch % frames:
            raise BadInputError(
                f"I2V-Adapter expects the attention batch to hold whole clips: got {batch} rows, which is not a "
                f"multiple of num_frames={frames}"
            )
        return frames


def first_frame_states(hidden_states: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Frame 0 of each clip, repeated over the clip: `(b * f, n, d)` -> `(b * f, n, d)`.

    Example:
        >>> h = torch.arange(6.0).reshape(6, 1, 1)  # 2 clips x 3 frames
        >>> first_frame_states(h, 3).flatten().tolist()
        [0.0, 0.0, 0.0, 3.0, 3.0, 3.0]
    """
    bf, n, d = hidden_states.shape
    first = hidden_states.reshape(bf // num_frames, num_frames, n, d)[:, :1]
    return first.expand(-1, num_frames, -1, -1).reshape(bf, n, d)


def first_frame_kv(attn: nn.Module, hidden_states: torch.Tensor, num_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen keys and values of frame 0 of each clip, repeated over its frames (computed once per clip)."""
    bf, n, d = hidden_states.shape
    first = hidden_states.reshape(bf // num_frames, num_frames, n, d)[:, 0]
    key, value = attn.to_k(first), attn.to_v(first)
    norm_k = getattr(attn, "norm_k", None)
    if norm_k is not None:
        key = _per_head(norm_k, key, attn.heads)
    return key.repeat_interleave(num_frames, dim=0), value.repeat_interleave(num_frames, dim=0)


def _per_head(norm: nn.Module, x: torch.Tensor, heads: int) -> torch.Tensor:
    shape = x.shape
    return norm(x.reshape(*shape[:-1], heads, shape[-1] // heads)).reshape(shape)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, scale: float | None = None) -> torch.Tensor:
    """Multi-head SDPA on `(B, L, C)` tensors (the pre-projection output, `(B, Lq, C_v)`).

    Example:
        >>> q = torch.randn(2, 5, 8)
        >>> attend(q, q, q, heads=2).shape
        torch.Size([2, 5, 8])
    """
    b, lq, c = q.shape
    q = q.view(b, lq, heads, c // heads).transpose(1, 2)
    k = k.reshape(b, k.shape[1], heads, c // heads).transpose(1, 2)
    v = v.reshape(b, v.shape[1], heads, v.shape[-1] // heads).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v, scale=scale)
    return out.transpose(1, 2).reshape(b, lq, -1)


class I2VAttentionProcessor(ProcessorAdapter):
    """Wraps one spatial `attn1` processor; holds `to_q_ff` and `to_out_ff` of each named adapter.

    Saved keys: `<attn1 path>.processor.to_q_ff.weight`, `...processor.to_out_ff.{weight,bias}`.
    """

    method = "i2v_adapter"
    adapter_layer_names = ("to_q_ff", "to_out_ff")

    def __init__(self, inner: Any, runtime: I2VRuntime) -> None:
        super().__init__(inner)
        object.__setattr__(self, "runtime", runtime)  # shared, not a submodule
        self.to_q_ff = nn.ModuleDict()
        self.to_out_ff = nn.ModuleDict()
        self.scales: dict[str, float] = {}

    def add(self, name: str, attn: nn.Module, scale: float = 1.0, copy_query: bool = True) -> None:
        """Create adapter `name`: `to_q_ff` copied from `attn.to_q` (or fresh), `to_out_ff` zero."""
        self.to_q_ff[name] = clone_linear(attn.to_q, copy_query)
        self.to_out_ff[name] = zero_linear(attn.to_v.out_features, attn.to_out[0].out_features, attn.to_q.weight)
        self.scales[name] = float(scale)

    def on_delete(self, name: str) -> None:
        self.scales.pop(name, None)

    def branch(self, name: str, attn: nn.Module, hidden_states: torch.Tensor, kv=None) -> torch.Tensor:
        """Pre-projection output of adapter `name`'s first-frame branch, `(b * f, n, inner)`."""
        frames = self.runtime.frames_for(hidden_states.shape[0])
        key, value = kv if kv is not None else first_frame_kv(attn, hidden_states, frames)
        query = self.to_q_ff[name](hidden_states)
        norm_q = getattr(attn, "norm_q", None)
        if norm_q is not None:
            query = _per_head(norm_q, query, attn.heads)
        return attend(query, key, value, attn.heads, attn.scale)

    def forward(
        self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs
    ):
        out = self.base_attention(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        adapters = [(n, w) for n, w in self.effective_adapters() if n in self.to_q_ff]
        runtime = self.runtime
        if not adapters or runtime.scale == 0 or hidden_states.ndim != 3 or encoder_hidden_states is not None:
            return out
        frames = runtime.frames_for(hidden_states.shape[0])
        kv = first_frame_kv(attn, hidden_states, frames)
        rescale = getattr(attn, "rescale_output_factor", 1.0)
        for name, weight in adapters:
            factor = weight * self.scales.get(name, 1.0) * runtime.scale
            if factor == 0:
                continue
            ff = self.branch(name, attn, hidden_states, kv)
            out = out + (factor / rescale) * self.to_out_ff[name](ff)
        return out

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scales={self.scales}"
