"""SAM-Adapter's explicit visual prompts: embedding and high-frequency features, per-block tune layers, shared
up-projection, and the wrapper that computes them next to SAM's own patch embedding.

Example:
    >>> import torch
    >>> hfc = high_frequency_components(torch.full((1, 3, 32, 32), 0.7), rate=0.25)
    >>> float(hfc.abs().max()) < 1e-6
    True
    >>> x = torch.randn(1, 3, 8, 8)
    >>> torch.allclose(high_frequency_components(x, rate=0.0), x.abs(), atol=1e-6)
    True
"""

from __future__ import annotations

import math
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from vadapters.core.layers import AdapterLayer


def high_frequency_components(image: torch.Tensor, rate: float = 0.25) -> torch.Tensor:
    """`|real(ifft(highpass(fft(image))))|` per channel, as the paper's HFC of the normalised image.

    The 2-D spectrum (`norm="forward"`, centred with `fftshift`) loses a centred square of side `2 * line`,
    `line = int(sqrt(H * W * rate) // 2)`, i.e. about `rate` of the bins around DC. `rate = 0` keeps every bin
    (the output is `|image|`); a constant image has only a DC bin, so its HFC is ~0.

    Args:
        image (`torch.Tensor`): `[B, C, H, W]`.
        rate (`float`): fraction of the bins removed, in [0, 1].
    """
    h, w = image.shape[-2:]
    line = int(math.sqrt(h * w * rate) // 2)
    spectrum = torch.fft.fftshift(torch.fft.fft2(image.float(), norm="forward"), dim=(-2, -1))
    if line > 0:
        keep = torch.ones(h, w, device=image.device)
        keep[max(h // 2 - line, 0) : h // 2 + line, max(w // 2 - line, 0) : w // 2 + line] = 0.0
        spectrum = spectrum * keep
    spatial = torch.fft.ifft2(torch.fft.ifftshift(spectrum, dim=(-2, -1)), norm="forward").real
    return spatial.abs().to(image.dtype)


def patch_tokens(tokens: torch.Tensor, official_layout: bool = False) -> torch.Tensor:
    """NHWC patch tokens `[B, H, W, C]` -> `[B, H*W, C]` with `out[b, h*W + w] == tokens[b, h, w]`.

    `official_layout=True` reproduces the official reshape, which reads NHWC memory as `[B, C, H*W]` and then
    transposes: token `j` then holds channels of tokens spread over the whole image.
    """
    b, h, w, c = tokens.shape
    if official_layout:
        return tokens.reshape(b, c, h * w).transpose(1, 2)
    return tokens.reshape(b, h * w, c)


class PromptGenerator(nn.Module):
    """The adapter's parameters (one per adapter name): `embedding_generator`, `hfc_embed`, `tune.i`, `shared_up`.

    Args:
        embed_dim (`int`): the ViT width C.
        hidden (`int`): the prompt width C / s.
        depth (`int`): number of encoder blocks (one tune layer each).
        patch_size (`int`): the encoder's patch size (the HFC conv's kernel and stride).
        use_embedding, use_hfc (`bool`): which features exist.
    """

    def __init__(
        self,
        embed_dim: int,
        hidden: int,
        depth: int,
        patch_size: int,
        use_embedding: bool = True,
        use_hfc: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.embedding_generator = nn.Linear(embed_dim, hidden, **kw) if use_embedding else None
        self.hfc_embed = nn.Conv2d(3, hidden, patch_size, stride=patch_size, **kw) if use_hfc else None
        self.tune = nn.ModuleList(nn.Linear(hidden, hidden, **kw) for _ in range(depth))
        self.shared_up = nn.Linear(hidden, embed_dim, **kw)

    def reset_parameters(self, init: str) -> None:
        """`"official"`: trunc-normal(0.02) linears with zero bias, He-normal (fan-out) conv; `"zero"`: the same,
        then a zero shared up-projection (every prompt is exactly 0 until trained)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
                nn.init.zeros_(module.bias)
        if init == "zero":
            nn.init.zeros_(self.shared_up.weight)
            nn.init.zeros_(self.shared_up.bias)

    def features(self, image: torch.Tensor, tokens: torch.Tensor, rate: float, official_layout: bool) -> torch.Tensor:
        """`f = F_pe + F_hfc` as `[B * H * W, C/s]` rows (token-major), from the normalised image and the patch
        tokens (before pos_embed). Linears run on 2-D inputs so the result does not depend on `requires_grad`
        (3-D matmuls pick kernels by autograd state)."""
        f = None
        if self.embedding_generator is not None:
            weight = self.embedding_generator.weight
            rows = patch_tokens(tokens, official_layout).reshape(-1, weight.shape[1])
            f = self.embedding_generator(rows.to(weight.dtype))
        if self.hfc_embed is not None:
            weight = self.hfc_embed.weight
            hfc = self.hfc_embed(high_frequency_components(image, rate).to(weight.dtype))
            hfc = hfc.flatten(2).transpose(1, 2).reshape(-1, weight.shape[0])
            f = hfc if f is None else f + hfc
        return f

    def prompt(self, index: int, features: torch.Tensor) -> torch.Tensor:
        """`P_i = shared_up(GELU(tune_i(f)))`, `[B * H * W, C]` rows."""
        return self.shared_up(F.gelu(self.tune[index](features)))


class PromptedPatchEmbed(AdapterLayer):
    """Wraps SAM's `image_encoder.patch_embed`: returns its tokens unchanged and keeps, for the blocks that follow,
    each active adapter's prompt features (`PromptGenerator.features`) of this forward pass.

    Prompts are computed lazily, one block at a time, by a forward pre-hook on each `image_encoder.blocks[i]`
    (installed by the injector), so at most one block's prompts are materialised at once.
    """

    method = "sam_adapter"
    adapter_layer_names = ("prompt_generator",)

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.prompt_generator = nn.ModuleDict()
        self.settings: dict[str, tuple[float, bool]] = {}
        self._pending: list[tuple[PromptGenerator, float, torch.Tensor]] | None = None

    def add(self, name: str, config, depth: int) -> None:
        proj = self.base_layer.proj
        embed_dim, patch = proj.out_channels, proj.kernel_size[0]
        hidden = embed_dim // config.scale_factor
        generator = PromptGenerator(
            embed_dim,
            hidden,
            depth,
            patch,
            config.use_embedding,
            config.use_hfc,
            proj.weight.device,
            proj.weight.dtype,
        )
        if not proj.weight.is_meta:
            generator.reset_parameters(config.init)
        self.prompt_generator[name] = generator
        self.settings[name] = (config.freq_rate, config.official_token_layout)

    def on_delete(self, name: str) -> None:
        self.settings.pop(name, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.base_layer(x)
        pending = []
        for name, weight in self.effective_adapters():
            if weight == 0.0:
                continue
            rate, official = self.settings[name]
            generator = self.prompt_generator[name]
            pending.append((generator, weight, generator.features(x, tokens, rate, official)))
        self._pending = pending or None
        return tokens

    def add_prompt(self, index: int, x: torch.Tensor, last: bool) -> torch.Tensor:
        """`x + sum_a w_a * P_i^a` for block `index`; the last block releases the features."""
        pending = self._pending
        if last:
            self._pending = None
        if not pending:
            return x
        for generator, weight, features in pending:
            prompt = generator.prompt(index, features).reshape(x.shape)
            x = x + (prompt if weight == 1.0 else prompt * weight).to(x.dtype)
        return x


def _block_pre_hook(encoder_ref: weakref.ref, index: int, last: bool, module: nn.Module, args: tuple):
    encoder = encoder_ref()
    layer = getattr(encoder, "patch_embed", None) if encoder is not None else None
    if not isinstance(layer, PromptedPatchEmbed):
        return None
    return (layer.add_prompt(index, args[0], last), *args[1:])


def install_block_hooks(encoder: nn.Module) -> list:
    """Forward pre-hooks on every `encoder.blocks[i]` that add the active adapters' prompt `P_i` to its input."""
    ref = weakref.ref(encoder)
    depth = len(encoder.blocks)
    handles = []
    for i, block in enumerate(encoder.blocks):
        hook = _BlockHook(ref, i, i == depth - 1)
        handles.append(block.register_forward_pre_hook(hook))
    return handles


class _BlockHook:
    """A picklable, inspectable pre-hook (`vadapters` SAM-Adapter prompt for block `index`)."""

    def __init__(self, encoder_ref: weakref.ref, index: int, last: bool) -> None:
        self.encoder_ref, self.index, self.last = encoder_ref, index, last

    def __call__(self, module: nn.Module, args: tuple):
        return _block_pre_hook(self.encoder_ref, self.index, self.last, module, args)

    def __repr__(self) -> str:
        return f"SAMAdapterPromptHook(block={self.index})"
