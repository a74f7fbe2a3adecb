"""SAM-Adapter against the official code (tianrun-chen/SAM-Adapter-PyTorch, golden outputs in
shared/fixtures/parity/sam_adapter).

A tiny segment-anything `Sam` gets the fixture's image-encoder weights; the official-layout prompt generator is
written to a safetensors file and loaded the way a user would (`vadapters.load`: detection, conversion, strict
load), and the image encoder's output is compared with the official encoder's.
"""

from __future__ import annotations

import pytest
import torch
from parity_fixtures import load_parity, max_abs, write_official

import vadapters
from vadapters.models import tiny_sam

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fixture():
    return load_parity("sam_adapter")


def _sam(fixture):
    cfg = fixture.spec["host"]["config"]
    assert (cfg["in_chans"], cfg["mlp_ratio"], cfg["qkv_bias"], cfg["use_rel_pos"]) == (3, 4.0, True, True)
    sam = tiny_sam(
        img_size=cfg["img_size"],
        patch_size=cfg["patch_size"],
        embed_dim=cfg["embed_dim"],
        depth=cfg["depth"],
        num_heads=cfg["num_heads"],
        window_size=cfg["window_size"],
        global_attn_indexes=tuple(cfg["global_attn_indexes"]),
        prompt_dim=cfg["out_chans"],
    )
    sam.image_encoder.load_state_dict(fixture.group("host/"), strict=True)
    return sam.eval()


def test_plain_encoder_matches_official_host(fixture):
    sam = _sam(fixture)
    with torch.no_grad():
        out = sam.image_encoder(fixture["inputs/images"])
    assert max_abs(out, fixture["outputs/plain"]) <= fixture.spec["tolerance"]["encoder_output"]


def test_official_checkpoint_gives_official_encoder_output(fixture, tmp_path):
    sam = _sam(fixture)
    path = write_official(fixture.group("official_ckpt/"), tmp_path / "sam_adapter_official.safetensors")
    vadapters.load(sam, path, adapter_name="official")
    config = vadapters.get_adapter_config(sam, "official")
    inferred = fixture.spec["vadapters_inferred_config"]
    for field in ("scale_factor", "freq_rate", "official_token_layout"):
        assert getattr(config, field) == inferred[field], field
    with torch.no_grad():
        out = sam.image_encoder(fixture["inputs/images"])
    official = fixture["outputs/official"]
    assert max_abs(out, official) <= fixture.spec["tolerance"]["encoder_output"]
    assert max_abs(out, fixture["outputs/plain"]) > 1.0  # the adapter moves the output: the check can fail


def test_per_block_prompts_match_official(fixture, tmp_path):
    """Intermediate: prompt i is what the adapter adds to the input of block i (block input minus the previous
    block's output, or minus the patch + position embedding for block 0), as the official `get_prompt` output."""
    sam = _sam(fixture)
    vadapters.load(sam, write_official(fixture.group("official_ckpt/"), tmp_path / "official.safetensors"))
    encoder, inputs, outputs = sam.image_encoder, {}, {}
    hooks = [
        b.register_forward_pre_hook(lambda m, a, i=i: inputs.__setitem__(i, a[0]))
        for i, b in enumerate(encoder.blocks)
    ]
    hooks += [
        b.register_forward_hook(lambda m, a, o, i=i: outputs.__setitem__(i, o)) for i, b in enumerate(encoder.blocks)
    ]
    images = fixture["inputs/images"]
    try:
        with torch.no_grad():
            encoder(images)
            embedded = encoder.patch_embed(images) + encoder.pos_embed
    finally:
        for hook in hooks:
            hook.remove()
    for i in range(len(encoder.blocks)):
        prompt = inputs[i] - (embedded if i == 0 else outputs[i - 1])
        official = fixture[f"outputs/prompts/{i}"]
        assert max_abs(prompt.reshape(official.shape), official) <= fixture.spec["tolerance"]["encoder_output"], i
        assert float(official.abs().max()) > 0.1


def test_default_token_layout_differs_from_official_by_design(fixture, tmp_path):
    """vadapters' default (correct) token layout is a documented deviation: it must not reach the official output."""
    sam = _sam(fixture)
    path = write_official(fixture.group("official_ckpt/"), tmp_path / "sam_adapter_official.safetensors")
    vadapters.load(sam, path, official_token_layout=False)
    with torch.no_grad():
        out = sam.image_encoder(fixture["inputs/images"])
    assert max_abs(out, fixture["outputs/official"]) > 1e-3
