"""MV-Adapter's official training recipe (issue 19): shifted-SNR training noise equal to the sampling schedule,
Min-SNR weighting, camera maps kept when the prompt is dropped, zero prompt embeddings on SD, a separately rendered
reference view, the official optimiser defaults; and the old recipe still reachable (`LEGACY_OPTIONS`)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from vadapters.errors import BadInputError
from vadapters.train.weighting import denoising_mse, min_snr_weights, snr, training_scheduler

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_pipe():
    from vadapters.models import tiny_sd_pipeline

    return tiny_sd_pipeline(seed=0)


def _recipe(pipe, use_ref=False, source=None, **options):
    from vadapters.methods.mv_adapter import MVAdapterConfig
    from vadapters.train.recipes.mv_adapter import MultiViewSource, MVAdapterRecipe

    config = MVAdapterConfig(num_views=3, use_ref=use_ref, condition_channels=6, condition_downscale_factor=2)
    source = source or MultiViewSource(4, num_views=3, reference_views=2 if use_ref else 0)
    return MVAdapterRecipe(copy.deepcopy(pipe), config, source, "16", 2, **options)


def _batch(recipe):
    return recipe.collate([recipe.dataset[(i, 16, 16)] for i in range(2)])


def test_min_snr_weights_follow_the_official_formula():
    from diffusers.training_utils import compute_snr

    sched = training_scheduler({"num_train_timesteps": 1000}, shift=8.0)
    t = torch.tensor([0, 10, 200, 500, 999])
    reference = compute_snr(sched, t)  # what the official systems call
    assert torch.allclose(snr(sched, t), reference, rtol=1e-5)
    eps = min_snr_weights(sched, t, 5.0, "epsilon")
    assert torch.allclose(eps, torch.minimum(reference, torch.tensor(5.0)) / reference, rtol=1e-5)
    v = min_snr_weights(sched, t, 5.0, "v_prediction")
    assert torch.allclose(v, torch.minimum(reference + 1, torch.tensor(5.0)) / (reference + 1), rtol=1e-5)
    assert float(eps[0]) < 0.01 and float(eps[-1]) == 1.0
    with pytest.raises(BadInputError, match="prediction_type"):
        min_snr_weights(sched, t, 5.0, "flow")


def test_denoising_mse_is_plain_mse_without_gamma_and_weights_per_sample_with_it():
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.randn(4, 3, 5, 5, generator=gen), torch.randn(4, 3, 5, 5, generator=gen)
    assert torch.equal(denoising_mse(pred, target), F.mse_loss(pred, target))
    sched, t = training_scheduler({}), torch.tensor([1, 50, 400, 999])
    per_sample = (pred - target).square().mean(dim=(1, 2, 3))
    expected = (per_sample * min_snr_weights(sched, t, 5.0)).mean()
    assert torch.allclose(denoising_mse(pred, target, t, sched, snr_gamma=5.0), expected)
    with pytest.raises(BadInputError, match="one timestep per sample"):
        denoising_mse(pred, target, t[:2], sched, snr_gamma=5.0)


def test_official_recipe_defaults_and_training_noise_equals_the_sampling_schedule(tiny_pipe):
    from vadapters.core.schedules import ShiftSNRScheduler
    from vadapters.train.recipes import find_recipe

    entry = find_recipe("mv_adapter").training
    assert (entry["learning_rate"], entry["lr_warmup_steps"], entry["weight_decay"]) == (5e-5, 2000, 0.01)
    recipe = _recipe(tiny_pipe)
    assert recipe.snr_gamma == 5.0 and recipe.noise_shift == 8.0 and recipe.zero_prompts
    sampling = recipe.sampling_scheduler()
    assert type(sampling) is type(tiny_pipe.scheduler)  # the pipeline's sampler, on the shifted schedule
    assert torch.allclose(sampling.alphas_cumprod.double(), recipe.noise_scheduler.alphas_cumprod.double())
    official = ShiftSNRScheduler.from_scheduler(tiny_pipe.scheduler, shift_scale=8.0, shift_mode="interpolated")
    assert torch.equal(sampling.alphas_cumprod, official.alphas_cumprod)
    plain = _recipe(tiny_pipe, snr_gamma=None, noise_shift=None)
    assert torch.allclose(plain.noise_scheduler.alphas_cumprod, tiny_pipe.scheduler.alphas_cumprod)
    assert plain.sampling_scheduler() is plain.pipe.scheduler
    assert bool(recipe.noise_scheduler.alphas_cumprod[-1] < plain.noise_scheduler.alphas_cumprod[-1] / 4)


def test_dropped_prompts_keep_the_camera_maps(tiny_pipe, monkeypatch):
    import vadapters.train.recipes.mv_adapter as module

    seen = {}
    original = module.multiview_state

    def spy(pipe, **kwargs):
        seen["condition"] = kwargs["condition"]
        return original(pipe, **kwargs)

    monkeypatch.setattr(module, "multiview_state", spy)
    recipe = _recipe(tiny_pipe, condition_dropout=1.0)  # every object's prompt (and reference) dropped
    batch = _batch(recipe)
    unet_calls = []
    handle = recipe.pipe.unet.register_forward_pre_hook(
        lambda m, a, k: unet_calls.append(k["encoder_hidden_states"]), with_kwargs=True
    )
    recipe.loss(batch, 0)
    handle.remove()
    assert torch.equal(seen["condition"], batch["raymaps"])  # official: cond_drop never touches the cameras
    assert unet_calls and float(unet_calls[-1].abs().max()) == 0.0  # SD: the dropped prompt is a zero embedding
    legacy = _recipe(tiny_pipe, condition_dropout=1.0, drop_camera_maps=True, dropped_prompt="empty")
    legacy.loss(_batch(legacy), 0)
    assert float(seen["condition"].abs().max()) == 0.0  # the old recipe zeroed them
    kept = _recipe(tiny_pipe, caption_dropout=0.0, condition_dropout=0.0)
    calls = []
    handle = kept.pipe.unet.register_forward_pre_hook(
        lambda m, a, k: calls.append(k["encoder_hidden_states"]), with_kwargs=True
    )
    kept.loss(_batch(kept), 0)
    handle.remove()
    assert float(calls[-1].abs().max()) > 0  # prompts kept


def test_reference_is_a_separately_rendered_view(tiny_pipe, monkeypatch):
    import vadapters.train.recipes.mv_adapter as module
    from vadapters.train.recipes.mv_adapter import MultiViewSource

    source = MultiViewSource(3, num_views=3, reference_views=4)
    item, again = source.load(1, 16, 16), source.load(1, 16, 16)
    assert item["references"].shape == (4, 3, 16, 16) and torch.equal(item["references"], again["references"])
    for ref in item["references"]:
        assert all((ref - view).abs().max() > 0.05 for view in item["images"])  # never one of the targets
    cams = source.reference_cameras(1)
    assert len(cams) == 4 and all(-10.0 <= c.elevation_deg <= 30.0 for c in cams)
    captured = []
    original = module.record_reference
    monkeypatch.setattr(
        module, "record_reference", lambda pipe, lat, **kw: captured.append(lat) or original(pipe, lat, **kw)
    )
    recipe = _recipe(tiny_pipe, use_ref=True)
    batch = _batch(recipe)
    assert batch["references"].shape == (2, 2, 3, 16, 16)
    loss = recipe.loss(batch, 0)
    loss.backward()
    assert torch.isfinite(loss) and captured[-1].shape[0] == 2
    first = _recipe(tiny_pipe, use_ref=True, reference="first_view")
    batch = _batch(first)
    latents = first._encode_images(batch["pixel_values"])
    assert torch.equal(first._reference_latents(batch, latents, 3), latents[[0, 3]])
    no_refs = _recipe(tiny_pipe, use_ref=True, source=MultiViewSource(4, num_views=3))
    with pytest.raises(BadInputError, match="reference_views"):
        no_refs.loss(_batch(no_refs), 0)
    with pytest.raises(BadInputError, match="dropped_prompt"):
        _recipe(tiny_pipe, dropped_prompt="none")


def test_legacy_options_reproduce_the_old_recipe(tiny_pipe):
    from vadapters.train.recipes.mv_adapter import LEGACY_OPTIONS

    recipe = _recipe(tiny_pipe, **LEGACY_OPTIONS)
    assert recipe.snr_gamma is None and recipe.noise_shift is None and recipe.drop_camera_maps
    assert not recipe.zero_prompts and recipe.reference == "first_view"
    assert torch.allclose(recipe.noise_scheduler.alphas_cumprod, tiny_pipe.scheduler.alphas_cumprod)
