"""I2V-Adapter against the official code (KwaiVGI/I2V-Adapter, golden outputs in shared/fixtures/parity/i2v_adapter).

The official-layout `to_q_ff` / `to_out_ff` tensors are written to a safetensors file and loaded the way a user
would (`vadapters.load`: detection, conversion, strict load) onto a tiny diffusers `UNetMotionModel`; the whole
UNet and two single `attn1` modules are compared with the official `MixedCausalAttention2D`, and the Frame
Similarity Prior with the official `downgrade_input` + DDIM `add_noise` initial latents.
"""

from __future__ import annotations

import pytest
import torch
from parity_fixtures import load_parity, max_abs, write_official

import vadapters
from vadapters.methods.i2v_adapter import i2v_state
from vadapters.methods.i2v_adapter.sampling import degrade_prior, first_timestep_strength, prior_latents

pytestmark = pytest.mark.usefixtures("one_thread")

LAYERS = ("down_blocks.0.attentions.0.transformer_blocks.0.attn1", "mid_block.attentions.0.transformer_blocks.0.attn1")


@pytest.fixture(scope="module")
def fixture():
    return load_parity("i2v_adapter")


@pytest.fixture(scope="module")
def tol(fixture):
    return fixture.spec["tolerance"]["all"]


def _host(fixture):
    from diffusers import UNetMotionModel

    unet = UNetMotionModel(**fixture.spec["host"]["config"])
    unet.load_state_dict(fixture.group("host/"), strict=True)
    return unet.requires_grad_(False).eval()


@pytest.fixture(scope="module")
def adapted(fixture, tmp_path_factory):
    unet = _host(fixture)
    path = write_official(fixture.group("official_ckpt/"), tmp_path_factory.mktemp("i2v") / "i2v_module.safetensors")
    vadapters.load(unet, path, adapter_name="official")
    assert all(not p.requires_grad for p in unet.parameters())  # loads frozen, like the fixture's host
    return unet


def _unet_call(unet, fixture):
    inputs = fixture.group("inputs/unet/")
    with torch.no_grad():
        return unet(inputs["sample"], inputs["timestep"], encoder_hidden_states=inputs["encoder_hidden_states"]).sample


def test_plain_host_matches_official_base(fixture, tol):
    assert max_abs(_unet_call(_host(fixture), fixture), fixture["outputs/unet/base"]) <= tol


def test_unet_output_matches_official(fixture, adapted, tol):
    out = _unet_call(adapted, fixture)
    assert max_abs(out, fixture["outputs/unet/official"]) <= tol
    assert max_abs(out, fixture["outputs/unet/base"]) > 0.1  # the adapter moves the output: the check can fail


@pytest.mark.parametrize("layer", LAYERS)
def test_single_attention_module_matches_official(fixture, adapted, tol, layer):
    """Intermediate: one adapted `attn1` on the stored `(clips * frames, tokens, C)` input, 8 frames per clip."""
    hidden = fixture[f"inputs/module/{layer}/hidden_states"]
    attn = adapted.get_submodule(layer)
    with torch.no_grad(), i2v_state(adapted, num_frames=8):
        out = attn(hidden)
    assert max_abs(out, fixture[f"outputs/module/{layer}/official"]) <= tol
    with torch.no_grad(), i2v_state(adapted, scale=0.0, num_frames=8):
        assert max_abs(attn(hidden), fixture[f"outputs/module/{layer}/base"]) <= tol


def test_frame_similarity_prior_matches_official(fixture, tol):
    from diffusers import DDIMScheduler

    fsp, expected = fixture.group("inputs/fsp/"), fixture.group("outputs/fsp/")
    first = fsp["first_frame_latents"][:, :, 0]
    frames = fsp["noise"].shape[2]
    seed = int(fsp["generator_seed"])
    repeated = first[:, :, None].expand(-1, -1, frames, -1, -1)
    degraded = degrade_prior(repeated, 0.5, 18.0, 9, torch.Generator().manual_seed(seed))
    assert max_abs(degraded[:, :, 1:], expected["degraded"][:, :, 1:]) <= tol  # the official restores frame 0
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear")
    scheduler.set_timesteps(25)
    assert int(scheduler.timesteps[0]) == int(expected["first_timestep"])
    assert max_abs(scheduler.alphas_cumprod, expected["alphas_cumprod"]) <= tol
    strength = first_timestep_strength(scheduler)
    latents = prior_latents(first, fsp["noise"], strength, generator=torch.Generator().manual_seed(seed))
    latents[:, :, 0] = first
    assert max_abs(latents, expected["initial_latents"]) <= tol
    assert max_abs(latents[:, :, 1:], fsp["noise"][:, :, 1:]) > 1e-2  # the prior is visible: the check can fail
