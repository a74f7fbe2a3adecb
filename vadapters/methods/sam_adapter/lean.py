"""Memory-lean SAM-Adapter training: the frozen ViT keeps far fewer activations while the gradient still reaches
the prompts added at every block.

SAM's encoder is frozen, but the adapter's prompts enter at each block's input, so backpropagation runs through
every block and, in a plain run, every block keeps its activations: in the global-attention blocks that includes a
`heads x N x N` attention matrix (N = 4,096 tokens at 1,024 px: 805 MB per ViT-B block in fp32). Two switches,
both exact up to floating-point rounding:

- `efficient_attention`: each block's `Attention.forward` computes attention in chunks of queries with a custom
  backward that recomputes each chunk's probabilities (as flash attention does), so only `q`, `k`, `v`, the
  decomposed relative-position terms and the output are kept, never the `N x N` matrix; torch's
  `scaled_dot_product_attention` is used where there is no relative position.
- `checkpoint`: every block runs under `torch.utils.checkpoint.checkpoint(..., use_reentrant=False)` when a
  gradient is needed: only its input is kept, the rest is recomputed during backward. The prompt is added by the
  block's pre-hook, outside the checkpoint, so the recomputation never touches the adapter.

Mixed precision (bf16 / fp16) comes from the trainer (`TrainingArguments.mixed_precision`, Accelerate's autocast);
the attention here computes its logits, softmax and gradient sums in fp32 under autocast. Switch it on with
`train_adapter("sam_adapter", ..., lean=True, mixed_precision="bf16")` or `SAMAdapterRecipe(..., lean=True)`;
measured in `benchmarks/sam_lean_memory.py`.

Example:
    >>> import torch, vadapters
    >>> from vadapters.models import tiny_sam
    >>> from vadapters.methods.sam_adapter import SAMAdapterConfig
    >>> sam = tiny_sam()
    >>> _ = vadapters.inject(sam, SAMAdapterConfig(scale_factor=8, init="official"))
    >>> x = torch.randn(1, 3, 64, 64)
    >>> with torch.no_grad():
    ...     plain = sam.image_encoder(x)
    ...     with lean_training(sam, LeanOptions(query_chunk=5)):
    ...         lean = sam.image_encoder(x)
    >>> torch.allclose(plain, lean, atol=1e-5)
    True
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from vadapters.errors import BadInputError

STATE_ATTR = "_vadapters_lean"
CHUNK_ELEMENTS = 1 << 24  # logits per query chunk (64 MB in fp32) when query_chunk is None


@dataclass
class LeanOptions:
    """What memory-lean SAM training changes on the frozen encoder.

    Args:
        efficient_attention (`bool`): chunked attention with a recomputing backward (no `N x N` matrix kept).
        checkpoint (`bool`): activation checkpointing of every encoder block (torch's, `use_reentrant=False`).
        query_chunk (`int`, optional): queries per attention chunk; None sizes chunks so one chunk's logits hold
            at most 2**24 elements.
    """

    efficient_attention: bool = field(default=True, metadata={"help": "Chunked attention, no N x N matrix kept."})
    checkpoint: bool = field(default=True, metadata={"help": "Activation checkpointing of every encoder block."})
    query_chunk: int | None = field(default=None, metadata={"help": "Queries per attention chunk (None: auto)."})

    def __post_init__(self) -> None:
        if self.query_chunk is not None and (not isinstance(self.query_chunk, int) or self.query_chunk < 1):
            raise BadInputError(f"query_chunk must be None or an int >= 1, got {self.query_chunk!r}")

    @classmethod
    def from_value(cls, value: Any) -> LeanOptions | None:
        """`False`/`None` -> None (plain training); `True` -> the defaults; a dict of fields; a `LeanOptions`."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            unknown = sorted(set(value) - {f.name for f in dataclasses.fields(cls)})
            if unknown:
                raise BadInputError(f"unknown lean option(s) {unknown}; expected fields of LeanOptions")
            return cls(**value)
        raise BadInputError(f"lean must be a bool, a dict of LeanOptions fields or LeanOptions, got {value!r}")


# ------------------------------------------------------------------------------------------------- attention
def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)  # fp32 for half precisions, else the dtype itself


def _probabilities(q, kt, rel_h, rel_w, scale, start, end):
    """Rows `[start, end)` of `softmax(scale * q k^T + rel_h[key row] + rel_w[key column])` (fp32 for half
    precisions), and the scaled query chunk."""
    hk, wk = rel_h.shape[-1], rel_w.shape[-1]
    q_chunk = q[:, start:end] * scale
    logits = torch.bmm(q_chunk, kt).to(_accumulation_dtype(q.dtype)).view(q.shape[0], end - start, hk, wk)
    logits += rel_h[:, start:end, :, None]
    logits += rel_w[:, start:end, None, :]
    return torch.softmax(logits.view(q.shape[0], end - start, hk * wk), -1), q_chunk


def _accumulate(total: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """`total += a @ b` (batched), with `total` in fp32 whatever the operands' precision."""
    if a.dtype == total.dtype:
        total.baddbmm_(a, b)
    else:
        total += torch.bmm(a, b).to(total.dtype)


class _RelPosAttention(torch.autograd.Function):
    """softmax(scale q k^T + decomposed relative position) v, one chunk of queries at a time; backward recomputes
    each chunk's probabilities, so only the inputs and the output are kept."""

    @staticmethod
    def forward(ctx, q, k, v, rel_h, rel_w, scale, chunk):
        out = torch.empty_like(v)
        kt = k.transpose(1, 2)
        for start in range(0, q.shape[1], chunk):
            end = min(start + chunk, q.shape[1])
            probs, _ = _probabilities(q, kt, rel_h, rel_w, scale, start, end)
            out[:, start:end] = torch.bmm(probs.to(v.dtype), v)
        ctx.save_for_backward(q, k, v, rel_h, rel_w, out)
        ctx.scale, ctx.chunk = scale, chunk
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, rel_h, rel_w, out = ctx.saved_tensors
        hk, wk = rel_h.shape[-1], rel_w.shape[-1]
        acc = _accumulation_dtype(q.dtype)
        grad_out = grad_out.contiguous()
        dq, dh, dw = torch.empty_like(q), torch.empty_like(rel_h), torch.empty_like(rel_w)
        dk = torch.zeros_like(k, dtype=acc)  # summed over chunks: in fp32 under mixed precision
        dv = torch.zeros_like(v, dtype=acc)
        delta = (grad_out.to(acc) * out.to(acc)).sum(-1, keepdim=True)  # rowsum(P * dP) = rowsum(dO * O)
        kt, vt = k.transpose(1, 2), v.transpose(1, 2)
        for start in range(0, q.shape[1], ctx.chunk):
            end = min(start + ctx.chunk, q.shape[1])
            probs, q_chunk = _probabilities(q, kt, rel_h, rel_w, ctx.scale, start, end)
            g = grad_out[:, start:end]
            _accumulate(dv, probs.transpose(1, 2).to(g.dtype), g)
            dlogits = torch.bmm(g, vt).to(acc).sub_(delta[:, start:end]).mul_(probs)
            grid = dlogits.view(q.shape[0], end - start, hk, wk)
            dh[:, start:end] = grid.sum(-1)
            dw[:, start:end] = grid.sum(-2)
            dlogits = dlogits.to(q.dtype)
            dq[:, start:end] = torch.bmm(dlogits, k).mul_(ctx.scale)
            _accumulate(dk, dlogits.transpose(1, 2), q_chunk)
        return dq, dk.to(k.dtype), dv.to(v.dtype), dh, dw, None, None


def rel_pos_attention(q, k, v, rel_h, rel_w, scale: float = 1.0, query_chunk: int | None = None) -> torch.Tensor:
    """Attention with SAM's decomposed relative position, without keeping the attention matrix.

    Args:
        q, k, v (`torch.Tensor`): `[B, N, d]`; keys on an `Hk x Wk` grid (row-major).
        rel_h, rel_w (`torch.Tensor`): `[B, N, Hk]` and `[B, N, Wk]`, added to the logits of each key's row /
            column (SAM's `add_decomposed_rel_pos` terms).
        scale (`float`): multiplies `q k^T`.
        query_chunk (`int`, optional): queries per chunk (None: at most 2**24 logits per chunk).

    Returns:
        `[B, N, d]`, equal to `softmax(scale q k^T + rel_h[..., row] + rel_w[..., col]) v`.
    """
    if query_chunk is None:
        query_chunk = max(1, CHUNK_ELEMENTS // max(1, q.shape[0] * k.shape[1]))
    with torch.autocast(q.device.type, enabled=False):
        return _RelPosAttention.apply(q, k, v, rel_h, rel_w, float(scale), int(query_chunk))


def efficient_attention_forward(attention: nn.Module, x: torch.Tensor, query_chunk: int | None = None):
    """segment-anything's `Attention.forward` (NHWC in and out) without a kept attention matrix."""
    from segment_anything.modeling.image_encoder import get_rel_pos

    b, h, w, _ = x.shape
    heads = attention.num_heads
    qkv = attention.qkv(x).reshape(b, h * w, 3, heads, -1).permute(2, 0, 3, 1, 4)
    if not attention.use_rel_pos:
        q, k, v = qkv.unbind(0)  # [B, heads, N, d]; SDPA's default scale is SAM's head_dim ** -0.5
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)
    else:
        # own copies, so that the qkv projection's output is not kept alive by views of it
        q, k, v = (t.contiguous() for t in qkv.reshape(3, b * heads, h * w, -1).unbind(0))
        dtype = q.dtype
        rows, cols = get_rel_pos(h, h, attention.rel_pos_h), get_rel_pos(w, w, attention.rel_pos_w)
        grid = q.view(b * heads, h, w, -1)
        rel_h = torch.einsum("bhwc,hkc->bhwk", grid, rows.to(dtype)).reshape(b * heads, h * w, h)
        rel_w = torch.einsum("bhwc,wkc->bhwk", grid, cols.to(dtype)).reshape(b * heads, h * w, w)
        out = rel_pos_attention(q, k, v, rel_h.to(dtype), rel_w.to(dtype), attention.scale, query_chunk)
        out = out.view(b, heads, h * w, -1).transpose(1, 2)
    return attention.proj(out.reshape(b, h, w, -1))


# ---------------------------------------------------------------------------------------------- install / undo
class _AttentionForward:
    def __init__(self, attention: nn.Module, query_chunk: int | None) -> None:
        self.attention, self.query_chunk = attention, query_chunk

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return efficient_attention_forward(self.attention, x, self.query_chunk)


class _CheckpointedForward:
    """A block's forward under `torch.utils.checkpoint` when a gradient is needed (its input requires grad)."""

    def __init__(self, forward) -> None:
        self.forward = forward

    def __call__(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return checkpoint(self.forward, x, *args, use_reentrant=False, **kwargs)
        return self.forward(x, *args, **kwargs)


def _set_forward(module: nn.Module, forward) -> None:
    object.__setattr__(module, "forward", forward)  # an instance attribute: state_dict and hooks stay as they are


def enable_lean_training(sam: nn.Module, options: Any = True, trainable: Any = None) -> LeanOptions | None:
    """Make `sam`'s frozen image encoder memory-lean for training (see the module docstring); undo with
    `disable_lean_training`. Enabling again replaces the previous options.

    Args:
        sam: a segment-anything `Sam` (or anything with `image_encoder.blocks`).
        options: `True`, a dict of `LeanOptions` fields, or `LeanOptions`; `False`/None only disables.
        trainable: if given, the parameters to train: every other parameter of `sam` gets `requires_grad=False`,
            so no frozen weight ever holds a gradient.

    Returns:
        The options in effect (None when disabled).
    """
    disable_lean_training(sam)
    options = LeanOptions.from_value(options)
    if trainable is not None:
        keep = {id(p) for p in trainable}
        for p in sam.parameters():
            if id(p) not in keep:
                p.requires_grad_(False)
    if options is None:
        return None
    encoder = sam.image_encoder
    patched = []
    for block in encoder.blocks:
        if options.efficient_attention and hasattr(block, "attn") and hasattr(block.attn, "qkv"):
            _set_forward(block.attn, _AttentionForward(block.attn, options.query_chunk))
            patched.append(block.attn)
        if options.checkpoint:
            _set_forward(block, _CheckpointedForward(type(block).forward.__get__(block)))
            patched.append(block)
    object.__setattr__(encoder, STATE_ATTR, (options, patched))
    return options


def disable_lean_training(sam: nn.Module) -> None:
    """Give the encoder its plain forwards back (parameters' `requires_grad` flags are left as they are)."""
    encoder = sam.image_encoder
    state = encoder.__dict__.pop(STATE_ATTR, None)
    if state is None:
        return
    for module in state[1]:
        module.__dict__.pop("forward", None)


def lean_options(sam: nn.Module) -> LeanOptions | None:
    """The lean options active on `sam`'s encoder, or None."""
    state = sam.image_encoder.__dict__.get(STATE_ATTR)
    return state[0] if state is not None else None


@contextlib.contextmanager
def lean_training(sam: nn.Module, options: Any = True):
    """`enable_lean_training` for the duration of a `with` block (restores the previous state)."""
    previous = lean_options(sam)
    enable_lean_training(sam, options)
    try:
        yield lean_options(sam)
    finally:
        enable_lean_training(sam, previous) if previous is not None else disable_lean_training(sam)
