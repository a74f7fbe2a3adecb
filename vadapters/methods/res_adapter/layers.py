"""ResAdapter layers: a conv LoRA for sampler convs and a reversible, blendable GroupNorm affine."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vadapters.core.layers import AdapterLayer, innermost


class LoraConv2d(AdapterLayer):
    """`base(x) + w * scaling * up(down(x))`, where `down` copies the base conv's kernel, stride and padding.

    `down` is `[rank, C_in, k, k]` and `up` is `[C_out, rank, 1, 1]` - the official ResCLoRA shapes.

    `base_layer` is the `nn.Conv2d`, or another library's wrapper of it (a PEFT LoRA layer from diffusers'
    `load_lora_weights`, e.g. an LCM-LoRA that targets the same sampler convs): the wrapper runs as it is and the
    ResCLoRA branch is added to its output; fusing writes into the conv inside it.
    """

    method = "res_adapter"
    adapter_layer_names = ("lora_down", "lora_up")

    def __init__(self, base_layer: nn.Module) -> None:
        if not isinstance(innermost(base_layer), nn.Conv2d):
            raise TypeError(f"LoraConv2d wraps nn.Conv2d (or a wrapper of one), got {type(base_layer).__name__}")
        super().__init__(base_layer)
        self.lora_down = nn.ModuleDict()
        self.lora_up = nn.ModuleDict()
        self.scaling: dict[str, float] = {}

    @property
    def conv(self) -> nn.Conv2d:
        """The original conv (inside any wrapper)."""
        return self.weight_owner()

    def add(self, name: str, rank: int, alpha: float) -> None:
        base = self.conv
        kw = {"device": base.weight.device, "dtype": base.weight.dtype}
        down = nn.Conv2d(
            base.in_channels, rank, base.kernel_size, base.stride, base.padding, base.dilation, bias=False, **kw
        )
        up = nn.Conv2d(rank, base.out_channels, 1, bias=False, **kw)
        if not base.weight.is_meta:
            nn.init.kaiming_uniform_(down.weight, a=math.sqrt(5))
            nn.init.zeros_(up.weight)
        self.lora_down[name] = down
        self.lora_up[name] = up
        self.scaling[name] = alpha / rank

    def on_delete(self, name: str) -> None:
        self.scaling.pop(name, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        for name, weight in self.effective_adapters():
            if weight == 0.0:
                continue
            down, up = self.lora_down[name], self.lora_up[name]
            delta = up(down(x.to(down.weight.dtype)))
            out = out + (delta * (self.scaling[name] * weight)).to(out.dtype)
        return out

    def delta_weight(self, name: str) -> torch.Tensor:
        """The LoRA as a dense conv kernel, in fp32: `up @ down` reshaped like the base weight."""
        down = self.lora_down[name].weight.float()
        up = self.lora_up[name].weight.float()
        kernel = up.flatten(1) @ down.flatten(1)
        return kernel.reshape(self.conv.weight.shape) * self.scaling[name]

    def merged_parameters(self, adapters):
        weight = self.conv.weight.float().clone()
        for name, w in adapters:
            weight += w * self.delta_weight(name)
        return {"weight": weight}


class ResNormGroupNorm(AdapterLayer):
    """GroupNorm whose affine parameters come from the adapter, with the base ones kept for `unload`.

    With one active adapter at `norm_blend == 1` the adapter's values are used as they are (bit-exact with
    the official in-place overwrite); otherwise `w = w_base + sum_a blend_a * (w_a - w_base)`.
    """

    method = "res_adapter"
    adapter_layer_names = ("norm_weight", "norm_bias")

    def __init__(self, base_layer: nn.GroupNorm) -> None:
        if not isinstance(base_layer, nn.GroupNorm) or not base_layer.affine:
            raise TypeError(f"ResNormGroupNorm wraps an affine nn.GroupNorm, got {base_layer!r}")
        super().__init__(base_layer)
        self.norm_weight = nn.ParameterDict()
        self.norm_bias = nn.ParameterDict()
        self.blend: dict[str, float] = {}

    def add(self, name: str, blend: float) -> None:
        self.norm_weight[name] = nn.Parameter(self.base_layer.weight.detach().clone())
        self.norm_bias[name] = nn.Parameter(self.base_layer.bias.detach().clone())
        self.blend[name] = blend

    def on_delete(self, name: str) -> None:
        self.blend.pop(name, None)

    def _affine(self, adapters) -> tuple[torch.Tensor, torch.Tensor]:
        base_w, base_b = self.base_layer.weight, self.base_layer.bias
        if len(adapters) == 1 and self.blend[adapters[0][0]] == 1.0:
            name = adapters[0][0]
            return self.norm_weight[name], self.norm_bias[name]
        w, b = base_w, base_b
        for name, _ in adapters:
            t = self.blend[name]
            if t != 0.0:
                w = w + t * (self.norm_weight[name] - base_w)
                b = b + t * (self.norm_bias[name] - base_b)
        return w, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        adapters = self.effective_adapters()
        if not adapters:
            return self.base_layer(x)
        w, b = self._affine(adapters)
        g = self.base_layer
        return F.group_norm(x, g.num_groups, w.to(x.dtype), b.to(x.dtype), g.eps)

    def merged_parameters(self, adapters):
        w, b = self._affine(adapters)
        return {"weight": w.detach().float().clone(), "bias": b.detach().float().clone()}
