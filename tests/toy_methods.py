"""A toy attention-processor method, registered only in tests, to prove the core's processor-wrapping path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from vadapters.core.config import AdapterConfig
from vadapters.core.hosts import diffusers as diffusers_host
from vadapters.core.injector import BaseInjector
from vadapters.core.processors import ProcessorAdapter, wrap_processors
from vadapters.core.registry import MethodSpec, register_method
from vadapters.errors import IncompatibleBaseError


@dataclass
class ToyProcessorConfig(AdapterConfig):
    method: ClassVar[str] = "toy_processor"


class ToyProcessor(ProcessorAdapter):
    """Original attention + a zero-initialised linear branch on the same input."""

    method = "toy_processor"
    adapter_layer_names = ("toy_proj",)

    def __init__(self, inner, dim: int) -> None:
        super().__init__(inner)
        self.dim = dim
        self.toy_proj = nn.ModuleDict()

    def add(self, name: str) -> None:
        proj = nn.Linear(self.dim, self.dim)
        nn.init.zeros_(proj.weight)
        nn.init.zeros_(proj.bias)
        self.toy_proj[name] = proj

    def forward(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        out = self.base_attention(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        for name, weight in self.effective_adapters():
            out = out + weight * self.toy_proj[name](hidden_states)
        return out


class ToyInjector(BaseInjector):
    method = "toy_processor"
    component = "unet"

    def check_host(self, module, config):
        if not diffusers_host.is_unet(module):
            raise IncompatibleBaseError("toy_processor needs a diffusers UNet")

    def add_adapter(self, module, config, adapter_name):
        names = diffusers_host.spatial_self_attention_processors(module)

        def factory(name, original):
            attn = module.get_submodule(name.removesuffix(".processor"))
            return ToyProcessor(original, attn.to_q.in_features)

        for wrapper in wrap_processors(module, names, factory, self.method):
            wrapper.add(adapter_name)


register_method(
    MethodSpec(
        name="toy_processor",
        config_cls=ToyProcessorConfig,
        injector_cls=ToyInjector,
        hosts=("diffusers.unet",),
        description="test-only processor wrapper",
    )
)
