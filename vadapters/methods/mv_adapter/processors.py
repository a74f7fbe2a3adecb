"""MV-Adapter's decoupled attention: a wrapper around each spatial `attn1` processor with parallel branches.

The wrapper calls the processor the user had (SDPA, xformers, IP-Adapter, LoRA-aware, ...) for the frozen
self-attention and adds, computed from the **same normed input**, a multi-view branch (`to_q_mv/k/v` cloned from
the base `to_q/k/v`, `to_out_mv` zero-initialised) and optionally a reference branch (`_ref`, same init) that
attends to cached tokens of a clean reference image. Output: `base + mv_scale * mv + ref_scale * ref`.

Batches are laid out view-major per object: `[obj0 view0, obj0 view1, ..., obj1 view0, ...]`, so the batch must be
a multiple of `num_views` (classifier-free guidance stacks whole objects, which keeps the layout).

Topologies (which tokens of the other views a query sees):
- `row`: a token of row `i` attends to row `i` of every view (orthographic cameras at elevation 0 keep a 3D point
  on the same row in all views). Equivariant under view permutations.
- `rowcol6`: the official 6-view scheme [front, right, back, left, top, bottom]: rows over views 0-3, columns
  over views 0, 2, 4, 5 (view 0 mirrored left-right for the column pass); front and back average both.
- `full`: every token of every view (any cameras or elevations). Equivariant under view permutations.

Per-call state (number of views, scales, reference cache) lives on a `MVRuntime` shared by the processors of
one UNet and is set with `vadapters.methods.mv_adapter.multiview_state` - never via `cross_attention_kwargs`.
The spatial size of each level is derived from the latent size recorded by a UNet forward pre-hook, so
non-square latents work (no `isqrt`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vadapters.core.layers import clone_linear, zero_linear
from vadapters.core.processors import ProcessorAdapter
from vadapters.errors import BadInputError


class MVRuntime:
    """Per-call multi-view state shared by all MV-Adapter processors of one UNet.

    Attributes:
        num_views (`int`): views per object in the current batch.
        mv_scale (`float`), ref_scale (`float`): branch scales.
        latent_hw (`tuple[int, int]` or None): spatial size of the UNet input, recorded on every forward.
        recording (`bool`): when True, processors only run the base attention and cache their input as the
            reference tokens (the clean reference pass at t=0).
    """

    def __init__(self, num_views: int) -> None:
        self.num_views = int(num_views)
        self.mv_scale = 1.0
        self.ref_scale = 1.0
        self.latent_hw: tuple[int, int] | None = None
        self.recording = False
        self.condition: torch.Tensor | None = None
        self.condition_scale = 1.0
        self.hook_handle: Any = None

    def record_input(self, module: nn.Module, args: tuple, kwargs: dict):
        """UNet forward pre-hook: record the latent size; feed the condition encoder's residuals when set."""
        sample = args[0] if args else kwargs.get("sample")
        if not (isinstance(sample, torch.Tensor) and sample.ndim >= 4):
            return None
        self.latent_hw = (int(sample.shape[-2]), int(sample.shape[-1]))
        if self.condition is None or self.recording or kwargs.get("down_intrablock_additional_residuals") is not None:
            return None
        from vadapters.methods.mv_adapter.condition import condition_residuals

        batch, given = sample.shape[0], self.condition.shape[0]
        if batch % given:
            raise BadInputError(
                f"the MV-Adapter condition holds {given} map(s) but the UNet batch is {batch}; pass one map per view "
                "(tiled over objects and guidance halves) or one per batch item"
            )
        residuals = condition_residuals(module, self.condition.repeat(batch // given, 1, 1, 1), self.condition_scale)
        if residuals is None:
            return None
        return args, {**kwargs, "down_intrablock_additional_residuals": residuals}


def level_size(latent_hw: tuple[int, int] | None, seq_len: int) -> tuple[int, int]:
    """Height and width of a UNet level with `seq_len` tokens, from the latent size (ceil-halving per level).

    Example:
        >>> level_size((8, 12), 24)
        (4, 6)
        >>> level_size((7, 9), 20)
        (4, 5)
    """
    if latent_hw is not None:
        h, w = latent_hw
        for _ in range(12):
            if h * w == seq_len:
                return h, w
            h, w = (h + 1) // 2, (w + 1) // 2
    side = math.isqrt(seq_len)
    if side * side == seq_len:
        return side, side
    raise BadInputError(
        f"MV-Adapter cannot tell the spatial size of an attention level with {seq_len} tokens "
        f"(latent size recorded: {latent_hw}); call the UNet with a 4D `sample` so the size is recorded"
    )


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, scale: float | None) -> torch.Tensor:
    """Multi-head SDPA on `(G, L, C)` groups."""
    g, lq, c = q.shape
    d = c // heads
    q = q.view(g, lq, heads, d).transpose(1, 2)
    k = k.reshape(k.shape[0], k.shape[1], heads, d).transpose(1, 2)
    v = v.reshape(v.shape[0], v.shape[1], heads, v.shape[-1] // heads).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v, scale=scale)
    return out.transpose(1, 2).reshape(g, lq, -1)


def _rows(x: torch.Tensor, nv: int, h: int, w: int) -> torch.Tensor:
    """`(b*nv, h*w, C)` -> `(b*h, nv*w, C)`: one group per (object, row) holding that row of every view."""
    c = x.shape[-1]
    return x.reshape(-1, nv, h, w, c).permute(0, 2, 1, 3, 4).reshape(-1, nv * w, c)


def _unrows(y: torch.Tensor, nv: int, h: int, w: int) -> torch.Tensor:
    c = y.shape[-1]
    return y.reshape(-1, h, nv, w, c).permute(0, 2, 1, 3, 4).reshape(-1, h * w, c)


def multiview_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    topology: str,
    num_views: int,
    hw: tuple[int, int],
    heads: int,
    scale: float | None = None,
) -> torch.Tensor:
    """Attention across the views of each object. `q, k, v`: `(b * num_views, h * w, C)`; returns the same shape.

    Example:
        >>> q = torch.randn(4, 6, 8)
        >>> multiview_attention(q, q, q, topology="row", num_views=2, hw=(2, 3), heads=2).shape
        torch.Size([4, 6, 8])
    """
    h, w = hw
    if topology == "full":
        bn, n, c = q.shape
        group = lambda x: x.reshape(-1, num_views * n, x.shape[-1])  # noqa: E731
        return _attend(group(q), group(k), group(v), heads, scale).reshape(bn, n, -1)
    if topology == "row":
        out = _attend(_rows(q, num_views, h, w), _rows(k, num_views, h, w), _rows(v, num_views, h, w), heads, scale)
        return _unrows(out, num_views, h, w)
    if topology == "rowcol6":
        if num_views != 6:
            raise BadInputError(
                f"topology 'rowcol6' needs exactly 6 views (front, right, back, left, top, bottom), got {num_views}"
            )
        return _rowcol6(q, k, v, hw, heads, scale)
    raise BadInputError(f"unknown MV-Adapter topology {topology!r}; expected 'row', 'rowcol6' or 'full'")


def _rowcol6(q, k, v, hw, heads, scale):
    h, w = hw
    c_out = v.shape[-1]

    def split(x):
        return x.reshape(-1, 6, h, w, x.shape[-1])

    def row_part(x):  # views 0-3 (front, right, back, left), grouped by row
        return _rows(x[:, :4].reshape(-1, h * w, x.shape[-1]), 4, h, w)

    def col_part(x):  # views 0 (mirrored), 2, 4, 5 (front, back, top, bottom), grouped by column
        views = torch.stack([x[:, 0].flip(2), x[:, 2], x[:, 4], x[:, 5]], dim=1)  # (b, 4, h, w, C)
        return views.permute(0, 3, 1, 2, 4).reshape(-1, 4 * h, x.shape[-1])

    qs, ks, vs = split(q), split(k), split(v)
    rows = _unrows(_attend(row_part(qs), row_part(ks), row_part(vs), heads, scale), 4, h, w).reshape(
        -1, 4, h, w, c_out
    )
    cols = _attend(col_part(qs), col_part(ks), col_part(vs), heads, scale)
    cols = cols.reshape(-1, w, 4, h, c_out).permute(0, 2, 3, 1, 4)  # (b, 4, h, w, C)
    front = 0.5 * (rows[:, 0] + cols[:, 0].flip(2))
    back = 0.5 * (rows[:, 2] + cols[:, 1])
    out = torch.stack([front, rows[:, 1], back, rows[:, 3], cols[:, 2], cols[:, 3]], dim=1)
    return out.reshape(-1, h * w, c_out)


def _zero_out(inner: int, dim: int, like: torch.Tensor) -> nn.Sequential:
    """`Linear(inner, dim)` zero-initialised (weights and bias) + `Dropout(0)`, the official `to_out_*` layout."""
    return nn.Sequential(zero_linear(inner, dim, like), nn.Dropout(0.0))


class MVAttentionProcessor(ProcessorAdapter):
    """Wraps one spatial `attn1` processor; holds the `_mv` (and `_ref`) layers of each named adapter.

    Saved keys follow the official layout: `<attn1 path>.processor.to_q_mv.weight`, `...to_out_mv.0.bias`.
    """

    method = "mv_adapter"
    adapter_layer_names = (
        "to_q_mv",
        "to_k_mv",
        "to_v_mv",
        "to_out_mv",
        "to_q_ref",
        "to_k_ref",
        "to_v_ref",
        "to_out_ref",
    )

    def __init__(self, inner: Any, runtime: MVRuntime) -> None:
        super().__init__(inner)
        object.__setattr__(self, "runtime", runtime)  # shared, not a submodule
        for container in self.adapter_layer_names:
            setattr(self, container, nn.ModuleDict())
        self.topologies: dict[str, str] = {}
        self.reference_states: torch.Tensor | None = None

    def add(self, name: str, attn: nn.Module, topology: str, use_ref: bool) -> None:
        """Create adapter `name`: q/k/v cloned from `attn.to_q/k/v`, zero `to_out`."""
        dim = attn.to_out[0].out_features
        branches = ("mv", "ref") if use_ref else ("mv",)
        for branch in branches:
            for proj in ("q", "k", "v"):
                getattr(self, f"to_{proj}_{branch}")[name] = clone_linear(getattr(attn, f"to_{proj}"))
            getattr(self, f"to_out_{branch}")[name] = _zero_out(attn.to_v.out_features, dim, attn.to_v.weight)
        self.topologies[name] = topology

    def on_delete(self, name: str) -> None:
        self.topologies.pop(name, None)

    def _check_batch(self, batch: int, nv: int) -> None:
        if batch % nv:
            raise BadInputError(
                f"MV-Adapter expects the batch to hold whole view sets: got batch {batch}, which is not a multiple "
                f"of num_views={nv}. Pass all views of each object together, or set num_views with "
                "multiview_state(pipe_or_unet, num_views=...)"
            )

    def _mv_branch(self, name: str, attn: nn.Module, h: torch.Tensor, nv: int) -> torch.Tensor:
        q, k, v = self.to_q_mv[name](h), self.to_k_mv[name](h), self.to_v_mv[name](h)
        q, k = _qk_norm(attn, q, k)
        topology = self.topologies.get(name, "row")
        hw = (1, h.shape[1]) if topology == "full" else level_size(self.runtime.latent_hw, h.shape[1])
        out = multiview_attention(q, k, v, topology=topology, num_views=nv, hw=hw, heads=attn.heads, scale=attn.scale)
        return self.to_out_mv[name](out)

    def _ref_branch(self, name: str, attn: nn.Module, h: torch.Tensor, nv: int) -> torch.Tensor:
        ref = self.reference_states.to(device=h.device, dtype=h.dtype)
        objects = h.shape[0] // nv
        if ref.shape[0] == 1:
            ref = ref.expand(objects, -1, -1)
        if ref.shape[0] != objects or ref.shape[2] != h.shape[2]:
            raise BadInputError(
                f"MV-Adapter reference cache has shape {tuple(ref.shape)} but the batch holds {objects} object(s) "
                f"of {h.shape[1]} tokens x {h.shape[2]} channels; record one reference per object (or one for all)"
            )
        q = self.to_q_ref[name](h)
        k = self.to_k_ref[name](ref).repeat_interleave(nv, dim=0)
        v = self.to_v_ref[name](ref).repeat_interleave(nv, dim=0)
        q, k = _qk_norm(attn, q, k)
        return self.to_out_ref[name](_attend(q, k, v, attn.heads, attn.scale))

    def forward(
        self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs
    ):
        out = self.base_attention(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        runtime = self.runtime
        if runtime.recording:
            self.reference_states = hidden_states.detach()
            return out
        adapters = self.effective_adapters()
        if not adapters or hidden_states.ndim != 3 or encoder_hidden_states is not None:
            return out
        nv = runtime.num_views
        self._check_batch(hidden_states.shape[0], nv)
        rescale = getattr(attn, "rescale_output_factor", 1.0)
        for name, weight in adapters:
            if runtime.mv_scale != 0 and name in self.to_q_mv:
                branch = self._mv_branch(name, attn, hidden_states, nv)
                out = out + (weight * runtime.mv_scale / rescale) * branch
            if runtime.ref_scale != 0 and name in self.to_q_ref and self.reference_states is not None:
                branch = self._ref_branch(name, attn, hidden_states, nv)
                out = out + (weight * runtime.ref_scale / rescale) * branch
        return out

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, topologies={self.topologies}"


def _qk_norm(attn: nn.Module, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the base attention's q/k norms (None on SD / SDXL) per head, as the base processor does."""
    norm_q, norm_k = getattr(attn, "norm_q", None), getattr(attn, "norm_k", None)
    if norm_q is None and norm_k is None:
        return q, k
    heads = attn.heads

    def apply(norm, x):
        if norm is None:
            return x
        shape = x.shape
        return norm(x.reshape(*shape[:-1], heads, shape[-1] // heads)).reshape(shape)

    return apply(norm_q, q), apply(norm_k, k)
