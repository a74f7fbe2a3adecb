"""torch.compile with adapters: compiled adapted models match eager (inductor on CPU), and what forces a recompile.

Hosts: the tiny SD UNet with a ResAdapter, the tiny SAM image encoder with a SAM-Adapter, a tiny timm classifier
with SaRA (adapter values perturbed off their no-op start). Recompiles are counted with dynamo's `CompileCounter`
backend (graphs compiled so far), next to diffusers' own LoRA on the same UNet prepared for hot-swapping
(`enable_lora_hotswap`, `load_lora_adapter(..., hotswap=True)`): changing adapter weights in place and re-enabling
an adapter recompile nothing, for diffusers and for vadapters; disabling compiles one more graph for both (the
adapter's on/off state is a Python attribute dynamo guards on; the graph is cached, so toggling again is free), and
a new adapter weight compiles once, as diffusers does. Slow: dynamo traces each model in tens of seconds here.
"""

from __future__ import annotations

import pytest
import torch

import vadapters

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
OPS = ("first", "in_place", "disable", "enable", "weight", "weight_again")


def _perturbed(model, method: str, name: str):
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in vadapters.get_method(method).injector_cls().adapter_parameters(model, name):
            p.add_(torch.randn(p.shape, generator=gen) * 0.02)
    return model.eval()


def _unet_case():
    from vadapters.methods.res_adapter import ResAdapterConfig
    from vadapters.models import tiny_unet

    unet = _perturbed(vadapters.inject(tiny_unet(seed=0), ResAdapterConfig(), "a"), "res_adapter", "a")
    gen = torch.Generator().manual_seed(1)
    x, emb = torch.randn(1, 4, 16, 16, generator=gen), torch.randn(1, 7, 32, generator=gen)
    return unet, unet, lambda m: m(x, torch.tensor(500), encoder_hidden_states=emb, return_dict=False)[0]


def _sam_case():
    from vadapters.methods.sam_adapter import SAMAdapterConfig
    from vadapters.models import tiny_sam

    sam = _perturbed(vadapters.inject(tiny_sam(seed=0), SAMAdapterConfig(), "a"), "sam_adapter", "a")
    pixels = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    return sam, sam.image_encoder, lambda m: m(pixels)


def _timm_case():
    from vadapters.methods.sara import SaRAConfig
    from vadapters.models import tiny_timm_classifier

    model = tiny_timm_classifier("test_resnet", seed=0)
    model = _perturbed(vadapters.inject(model, SaRAConfig(quantile=0.05), "a"), "sara", "a")
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return model, model, lambda m: m(images)


CASES = {"unet_res_adapter": _unet_case, "sam_encoder_sam_adapter": _sam_case, "timm_sara": _timm_case}


@pytest.mark.parametrize("case", list(CASES))
def test_compiled_adapted_model_matches_eager(case):
    host, module, run = CASES[case]()
    torch._dynamo.reset()
    compiled = torch.compile(module, backend="inductor")
    with torch.no_grad():
        eager, got = run(module), run(compiled)
        torch.testing.assert_close(got, eager, rtol=1e-4, atol=1e-5)
        with vadapters.disabled(host):  # the base, compiled too
            torch.testing.assert_close(run(compiled), run(module), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(run(compiled), eager, rtol=1e-4, atol=1e-5)


def _count_ours(host, module, run, method: str) -> dict[str, int]:
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    counter = CompileCounter()
    compiled = torch.compile(module, backend=counter)
    counts = {}
    with torch.no_grad():
        run(compiled)
        counts["first"] = counter.frame_count
        before = run(compiled).clone()
        for p in vadapters.get_method(method).injector_cls().adapter_parameters(host, "a"):
            p.add_(0.01)
        changed = run(compiled)
        counts["in_place"] = counter.frame_count
        assert not torch.equal(before, changed)  # the compiled graph reads the new values
        with vadapters.disabled(host):
            run(compiled)
            counts["disable"] = counter.frame_count
        run(compiled)
        counts["enable"] = counter.frame_count
        vadapters.set_adapters(host, ["a"], weights=[0.5])
        run(compiled)
        counts["weight"] = counter.frame_count
        vadapters.set_adapters(host, ["a"], weights=[0.7])
        run(compiled)
        counts["weight_again"] = counter.frame_count
    return counts


def _count_diffusers_lora() -> dict[str, int]:
    """diffusers' LoRA on the same tiny UNet, prepared for compiled hot-swapping as its docs say."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from torch._dynamo.testing import CompileCounter

    from vadapters.models import tiny_unet

    targets = ["to_q", "to_k", "to_v", "to_out.0"]
    source = tiny_unet(seed=0)
    source.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=targets, init_lora_weights=False), "x")
    first = get_peft_model_state_dict(source, adapter_name="x")
    unet = tiny_unet(seed=0).eval()
    unet.enable_lora_hotswap(target_rank=4)
    unet.load_lora_adapter(first, prefix=None, adapter_name="a")
    _, _, run = _unet_case()
    torch._dynamo.reset()
    counter = CompileCounter()
    compiled = torch.compile(unet, backend=counter)
    counts = {}
    with torch.no_grad():
        run(compiled)
        counts["first"] = counter.frame_count
        second = {k: v * 2 for k, v in first.items()}
        unet.load_lora_adapter(second, prefix=None, adapter_name="a", hotswap=True)  # weights swapped in place
        run(compiled)
        counts["in_place"] = counter.frame_count
        unet.disable_adapters()
        run(compiled)
        counts["disable"] = counter.frame_count
        unet.enable_adapters()
        run(compiled)
        counts["enable"] = counter.frame_count
        unet.set_adapters(["a"], weights=[0.5])
        run(compiled)
        counts["weight"] = counter.frame_count
        unet.set_adapters(["a"], weights=[0.7])
        run(compiled)
        counts["weight_again"] = counter.frame_count
    return counts


def _new_graphs(counts: dict[str, int]) -> dict[str, int]:
    return {op: counts[op] - counts[prev] for prev, op in zip(OPS, OPS[1:])}


def test_recompiles_no_more_than_diffusers_lora_hotswap():
    reference = _new_graphs(_count_diffusers_lora())
    assert reference["in_place"] == 0 and reference["enable"] == 0  # what hot-swapping promises
    for case, method in (("unet_res_adapter", "res_adapter"), ("sam_encoder_sam_adapter", "sam_adapter"),
                         ("timm_sara", "sara")):  # fmt: skip
        ours = _new_graphs(_count_ours(*CASES[case](), method))
        assert ours["in_place"] == 0 and ours["enable"] == 0 and ours["weight_again"] == 0, (case, ours)
        worse = {op: (ours[op], reference[op]) for op in ours if ours[op] > reference[op]}
        assert not worse, f"{case}: more new graphs than diffusers' LoRA hot-swap (ours, diffusers): {worse}"
