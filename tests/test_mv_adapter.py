"""MV-Adapter specifics: init invariants, topologies, per-call state, reference branch, condition encoder,
official key layout on real-size SD 2.1 / SDXL configs, cameras, shifted-SNR schedule."""

from __future__ import annotations

import copy

import pytest
import torch
from matrix_cases import perturb_adapter
from safetensors.torch import save_file

import vadapters
from vadapters.core.hosts.diffusers import spatial_self_attention_processors
from vadapters.methods.mv_adapter import (
    MVAdapterConfig,
    MVAttentionProcessor,
    ShiftSNRScheduler,
    condition_residuals,
    conversion,
    multiview_attention,
    multiview_state,
    mv_processors,
    record_reference,
)
from vadapters.methods.mv_adapter.cameras import (
    OrthoCamera,
    PerspectiveCamera,
    camera_maps,
    orbit_cameras,
    plucker_raymap,
)
from vadapters.models.tiny import tiny_unet, tiny_unet_config


@pytest.fixture(scope="module")
def base_unet():
    return tiny_unet(tiny_unet_config(), seed=0)  # the UNet of tiny_sd_pipeline(seed=0), without the slow rest


@pytest.fixture
def unet(base_unet):
    return copy.deepcopy(base_unet)


def _inputs(batch: int, h: int = 8, w: int = 12, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, h, w, generator=g), torch.tensor(400), torch.randn(batch, 7, 32, generator=g)


def _run(unet, inputs, **kwargs):
    x, t, emb = inputs
    with torch.no_grad():
        return unet(x, t, encoder_hidden_states=emb, **kwargs).sample


@pytest.mark.parametrize(("topology", "views"), [("row", 3), ("rowcol6", 6), ("full", 3)])
def test_fresh_adapter_is_bit_identical_and_copies_qkv(unet, topology, views):
    inputs = _inputs(views)
    base = _run(unet, inputs)
    vadapters.inject(unet, MVAdapterConfig(num_views=views, topology=topology, use_ref=True))
    assert torch.equal(_run(unet, inputs), base)
    procs = mv_processors(unet)
    assert list(procs) == spatial_self_attention_processors(unet) and len(procs) == 7
    for name, proc in procs.items():
        attn = unet.get_submodule(name.removesuffix(".processor"))
        for p in "qkv":
            for branch in ("mv", "ref"):
                layer = getattr(proc, f"to_{p}_{branch}")["default"]
                assert torch.equal(layer.weight, getattr(attn, f"to_{p}").weight)
                assert layer.weight.data_ptr() != getattr(attn, f"to_{p}").weight.data_ptr()  # a copy, not a share
        for branch in ("mv", "ref"):
            out = getattr(proc, f"to_out_{branch}")["default"][0]
            assert not out.weight.any() and not out.bias.any()
    # attn2 (text cross-attention) keeps the user's processor
    assert not any(isinstance(p, MVAttentionProcessor) for n, p in unet.attn_processors.items() if "attn2" in n)


def test_sdxl_style_unet_fresh_noop_count_and_deepcopy():
    from vadapters.models.tiny import tiny_sdxl_unet_config

    unet = tiny_unet(tiny_sdxl_unet_config(), seed=0)
    g = torch.Generator().manual_seed(0)
    x, emb = torch.randn(4, 4, 8, 12, generator=g), torch.randn(4, 7, 64, generator=g)
    added = {"text_embeds": torch.randn(4, 32, generator=g), "time_ids": torch.rand(4, 6, generator=g)}
    run = lambda m: m(x, torch.tensor(300), encoder_hidden_states=emb, added_cond_kwargs=added).sample  # noqa: E731
    with torch.no_grad():
        base = run(unet)
        vadapters.inject(unet, MVAdapterConfig(num_views=2, topology="full"))
        assert torch.equal(run(unet), base)
        widths = [unet.get_submodule(n.removesuffix(".processor")).to_q.in_features for n in mv_processors(unet)]
        injector = vadapters.get_method("mv_adapter").injector_cls()
        assert sum(p.numel() for p in injector.adapter_parameters(unet, "default")) == sum(
            4 * d * d + d for d in widths
        )
        perturb_adapter(unet, "default", scale=0.2, seed=1)
        twin = copy.deepcopy(unet)  # the copy gets its own per-call state
        with multiview_state(twin, mv_scale=0.0):
            assert torch.equal(run(twin), base)
            assert not torch.allclose(run(unet), base)


def test_mv_scale_zero_gives_base_and_scale_changes_output(unet):
    inputs = _inputs(4)
    base = _run(unet, inputs)
    vadapters.inject(unet, MVAdapterConfig(num_views=4))
    perturb_adapter(unet, "default", scale=0.2, seed=3)
    adapted = _run(unet, inputs)
    assert not torch.allclose(adapted, base)
    with multiview_state(unet, mv_scale=0.0):
        assert torch.equal(_run(unet, inputs), base)
    with multiview_state(unet, mv_scale=0.5):
        half = _run(unet, inputs)
    assert not torch.allclose(half, adapted) and not torch.allclose(half, base)
    assert torch.equal(_run(unet, inputs), adapted)  # state restored after the block


@pytest.mark.parametrize("topology", ["row", "full"])
def test_permuting_views_permutes_outputs(unet, topology):
    views, objects = 3, 2
    x, t, emb = _inputs(views * objects, 8, 12, seed=1)
    vadapters.inject(unet, MVAdapterConfig(num_views=views, topology=topology))
    perturb_adapter(unet, "default", scale=0.2, seed=4)
    out = _run(unet, (x, t, emb))
    perm = torch.tensor([2, 0, 1])
    index = torch.cat([perm + o * views for o in range(objects)])
    out_perm = _run(unet, (x[index], t, emb[index]))
    torch.testing.assert_close(out_perm, out[index], rtol=1e-5, atol=1e-5)
    # the multi-view branch really mixes views: changing view 0 changes view 1's output
    x2 = x.clone()
    x2[0] += 1.0
    assert not torch.allclose(_run(unet, (x2, t, emb))[1], out[1])


def test_row_topology_only_mixes_the_same_row_and_full_mixes_everything():
    g = torch.Generator().manual_seed(0)
    h, w, views = 3, 4, 2
    q, k, v = (torch.randn(views, h * w, 8, generator=g) for _ in range(3))
    k2, v2 = k.clone(), v.clone()
    k2[1, :w] += 1.0  # change row 0 of view 1
    v2[1, :w] += 1.0
    for topology in ("row", "full"):
        a = multiview_attention(q, k, v, topology=topology, num_views=views, hw=(h, w), heads=2)
        b = multiview_attention(q, k2, v2, topology=topology, num_views=views, hw=(h, w), heads=2)
        changed = (a - b).abs().amax(dim=-1).reshape(views, h, w).amax(dim=(0, 2)) > 0
        assert changed.tolist() == ([True, False, False] if topology == "row" else [True, True, True])


def test_rowcol6_routes_rows_and_columns():
    g = torch.Generator().manual_seed(0)
    h, w = 3, 4
    q, k, v = (torch.randn(6, h * w, 4, generator=g) for _ in range(3))
    base = multiview_attention(q, k, v, topology="rowcol6", num_views=6, hw=(h, w), heads=1).reshape(6, h, w, 4)
    v2 = v.clone().reshape(6, h, w, 4)
    v2[4, :, 0] += 1.0  # column 0 of the top view
    out = multiview_attention(q, k, v2.reshape(6, h * w, 4), topology="rowcol6", num_views=6, hw=(h, w), heads=1)
    changed = (out.reshape(6, h, w, 4) - base).abs().amax(dim=-1) > 0
    assert not changed[1].any() and not changed[3].any()  # right / left see rows only
    assert changed[2, :, 0].all() and not changed[2, :, 1:].any()  # back: same column
    assert changed[0, :, w - 1].all() and not changed[0, :, : w - 1].any()  # front is mirrored for columns
    with pytest.raises(vadapters.BadInputError, match="exactly 6 views"):
        multiview_attention(q[:4], k[:4], v[:4], topology="rowcol6", num_views=4, hw=(h, w), heads=1)
    with pytest.raises(vadapters.BadInputError, match="exactly 6 views"):
        MVAdapterConfig(num_views=4, topology="rowcol6")


def test_batch_not_divisible_by_num_views_is_a_clear_error(unet):
    vadapters.inject(unet, MVAdapterConfig(num_views=4))
    with pytest.raises(vadapters.BadInputError, match=r"batch 3.*num_views=4"):
        _run(unet, _inputs(3))
    with multiview_state(unet, num_views=3):
        _run(unet, _inputs(3))


def test_parameter_count_is_4d2_plus_d_per_attn1_plus_ref_and_encoder(unet):
    widths = [
        unet.get_submodule(n.removesuffix(".processor")).to_q.in_features
        for n in mv_processors(unet) or spatial_self_attention_processors(unet)
    ]
    expected = sum(4 * d * d + d for d in widths)
    vadapters.inject(unet, MVAdapterConfig(num_views=2), adapter_name="mv")
    vadapters.inject(
        unet,
        MVAdapterConfig(num_views=2, use_ref=True, condition_channels=6, condition_downscale_factor=2),
        adapter_name="all",
    )
    injector = vadapters.get_method("mv_adapter").injector_cls()
    count = lambda name: sum(p.numel() for p in injector.adapter_parameters(unet, name))  # noqa: E731
    encoder = sum(p.numel() for p in unet.mv_condition_encoder.cond_encoder["all"].parameters())
    assert count("mv") == expected
    assert count("all") == 2 * expected + encoder and encoder > 0


def test_unload_restores_processors_hooks_and_attributes(unet):
    processors = dict(unet.attn_processors)
    hooks = dict(unet._forward_pre_hooks)
    inputs = _inputs(2)
    base = _run(unet, inputs)
    config = MVAdapterConfig(num_views=2, use_ref=True, condition_channels=6, condition_downscale_factor=2)
    vadapters.inject(unet, config, adapter_name="a")
    vadapters.inject(unet, config.replace(topology="full"), adapter_name="b")
    vadapters.delete_adapter(unet, "a")
    assert hasattr(unet, "mv_condition_encoder") and len(mv_processors(unet)) == 7
    vadapters.unload(unet)
    assert all(unet.attn_processors[n] is p for n, p in processors.items())
    assert dict(unet._forward_pre_hooks) == hooks
    assert not hasattr(unet, "mv_condition_encoder") and not hasattr(unet, "_vadapters_mv_runtime")
    assert torch.equal(_run(unet, inputs), base)


def test_reference_branch_uses_cached_clean_features(unet):
    views = 2
    inputs = _inputs(views)
    vadapters.inject(unet, MVAdapterConfig(num_views=views, use_ref=True))
    perturb_adapter(unet, "default", scale=0.2, seed=5)
    without = _run(unet, inputs)
    g = torch.Generator().manual_seed(9)
    cache = record_reference(unet, torch.randn(1, 4, 8, 12, generator=g), torch.randn(1, 7, 32, generator=g))
    assert set(cache) == set(mv_processors(unet))
    assert all(p.reference_states is None for p in mv_processors(unet).values())  # nothing left behind
    with multiview_state(unet, reference=cache):
        with_ref = _run(unet, inputs)
        with multiview_state(unet, ref_scale=0.0):
            assert torch.equal(_run(unet, inputs), without)
    assert not torch.allclose(with_ref, without)
    assert torch.equal(_run(unet, inputs), without)
    # classifier-free guidance layout: [unconditional object, conditional object], zero reference for the first
    cfg_cache = {k: torch.cat([torch.zeros_like(v), v]) for k, v in cache.items()}
    x, t, emb = inputs
    with multiview_state(unet, reference=cfg_cache):
        both = _run(unet, (torch.cat([x, x]), t, torch.cat([emb, emb])))
    torch.testing.assert_close(both[views:], with_ref, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(both[:views], with_ref)


def test_condition_state_feeds_the_encoder_like_explicit_residuals(unet):
    vadapters.inject(unet, MVAdapterConfig(num_views=2, condition_channels=6, condition_downscale_factor=2))
    maps = camera_maps(orbit_cameras([0, 90]), 16, 24)
    inputs = _inputs(4)  # two objects of two views: the maps are tiled
    explicit = _run(
        unet, inputs, down_intrablock_additional_residuals=condition_residuals(unet, maps.repeat(2, 1, 1, 1), 0.7)
    )
    with multiview_state(unet, condition=maps, condition_scale=0.7):
        assert torch.equal(_run(unet, inputs), explicit)
    assert not torch.allclose(_run(unet, inputs), explicit)
    bad = maps[:1].expand(3, -1, -1, -1)
    with multiview_state(unet, condition=bad), pytest.raises(vadapters.BadInputError, match="condition holds 3"):
        _run(unet, inputs)


def test_official_flat_file_loads_and_round_trips(unet, tmp_path):
    inputs = _inputs(2)
    vadapters.inject(unet, MVAdapterConfig(num_views=2, condition_channels=6, condition_downscale_factor=2))
    perturb_adapter(unet, "default", scale=0.2, seed=6)
    expected = _run(unet, inputs, down_intrablock_additional_residuals=None)
    injector = vadapters.get_method("mv_adapter").injector_cls()
    official = conversion.to_official(injector.adapter_state_dict(unet, "default"))
    assert any(k.startswith("adapter.body.") for k in official)
    assert "down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_out_mv.0.bias" in official
    path = tmp_path / "mvadapter_t2mv_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in official.items()}, path)
    assert conversion.detect(str(path))
    fresh = tiny_unet(tiny_unet_config(), seed=0)
    vadapters.load(fresh, path)  # detected as official; strict
    config = vadapters.get_adapter_config(fresh, "mv_adapter")
    assert (config.condition_downscale_factor, config.condition_num_res_blocks, config.use_ref) == (2, 1, False)
    with multiview_state(fresh, num_views=2):
        assert torch.equal(_run(fresh, inputs, down_intrablock_additional_residuals=None), expected)
    save_file({**{k: v.contiguous() for k, v in official.items()}, "text_model.x": torch.zeros(1)}, path)
    with pytest.raises(vadapters.CheckpointError, match="text_model.x"):
        vadapters.load(tiny_unet(tiny_unet_config(), seed=0), path)


def _official_state_dict(unet, encoder_kwargs, use_ref):
    """Official names and shapes, built independently of our wrapper: processor names + a bare T2IAdapter."""
    from diffusers import T2IAdapter

    out = {}
    for name in unet.attn_processors:
        if ".attentions." not in name or not name.endswith("attn1.processor"):
            continue
        attn = unet.get_submodule(name.removesuffix(".processor"))
        d, inner = attn.to_q.in_features, attn.to_q.out_features
        for branch in ("mv", "ref") if use_ref else ("mv",):
            for p in "qkv":
                out[f"{name}.to_{p}_{branch}.weight"] = torch.empty(inner, d, device="meta")
            out[f"{name}.to_out_{branch}.0.weight"] = torch.empty(d, inner, device="meta")
            out[f"{name}.to_out_{branch}.0.bias"] = torch.empty(d, device="meta")
    with torch.device("meta"):
        encoder = T2IAdapter(in_channels=6, **encoder_kwargs)
    out.update(encoder.state_dict())
    return out


@pytest.mark.slow
@pytest.mark.parametrize("base", ["sdxl", "sd21"])
def test_official_layout_loads_strictly_into_real_size_unets(base):
    from vadapters.core.api import load_adapter_state_dict
    from vadapters.models.real import build_unet, sd15_unet_config, sdxl_unet_config

    if base == "sdxl":
        unet = build_unet(sdxl_unet_config())
        encoder = {"channels": [320, 640, 1280, 1280], "num_res_blocks": 2, "downscale_factor": 16}
        encoder["adapter_type"] = "full_adapter_xl"
        expected_mv, expected_encoder, processors = 409_683_200, 81_240_000, 70
    else:
        config = {
            **sd15_unet_config(),
            "cross_attention_dim": 1024,
            "attention_head_dim": [5, 10, 20, 20],
            "use_linear_projection": True,
        }
        unet = build_unet(config)
        encoder = {"channels": [320, 640, 1280, 1280], "num_res_blocks": 2, "downscale_factor": 8}
        expected_mv, expected_encoder, processors = 49_574_080, 77_922_240, 16
    official = _official_state_dict(unet, encoder, use_ref=True)
    config = conversion.infer_config(official)
    assert config.use_ref and config.condition_channels == 6 and config.condition_num_res_blocks == 2
    vadapters.inject(unet, config, adapter_name="official")
    ours = conversion.convert_official(official)
    injector = vadapters.get_method("mv_adapter").injector_cls()
    slots = injector.adapter_slots(unet, "official")
    assert set(slots) == set(ours)  # zero missing, zero unexpected
    load_adapter_state_dict(unet, "official", ours, strict=True)  # also checks every shape
    assert len(mv_processors(unet)) == processors
    sizes = {k: v.numel() for k, v in ours.items()}
    assert sum(n for k, n in sizes.items() if "_mv." in k) == expected_mv
    assert sum(n for k, n in sizes.items() if k.startswith(conversion.ENCODER_PREFIX)) == expected_encoder
    assert conversion.to_official(ours).keys() == official.keys()


def test_cameras_plucker_and_ortho_maps():
    cam = PerspectiveCamera(30.0, 20.0, 2.5, 50.0)
    rays = plucker_raymap(cam, 6, 10, unit_range=False)
    d, m = rays[:3], rays[3:]
    torch.testing.assert_close(d.norm(dim=0), torch.ones(6, 10))
    torch.testing.assert_close((d * m).sum(0), torch.zeros(6, 10), atol=1e-6, rtol=0)  # moment ⟂ direction
    # every ray passes through the camera centre: o x d is the same for o = centre
    centre = cam.position.float()
    torch.testing.assert_close(m, torch.cross(centre[:, None, None].expand(3, 6, 10), d, dim=0), atol=1e-6, rtol=0)
    ortho = camera_maps([OrthoCamera(90.0)], 4, 6)[0]
    assert (ortho == ortho[:, :1, :1]).all()  # constant per view
    torch.testing.assert_close(ortho[:, 0, 0], torch.tensor([0.0, 0.5, 0.5, 1.0, 0.5, 0.5]), atol=1e-6, rtol=0)
    assert [c.elevation_deg for c in orbit_cameras([0, 90], [0, 30], kind="perspective")] == [0.0, 30.0]
    with pytest.raises(vadapters.BadInputError):
        orbit_cameras([0, 90], [0.0], kind="perspective")


def test_shift_snr_scheduler_lowers_snr_and_keeps_t0():
    from diffusers import DDIMScheduler

    base = DDIMScheduler(beta_schedule="scaled_linear")
    shifted = ShiftSNRScheduler.from_scheduler(base, shift_scale=8.0)
    assert isinstance(shifted, DDIMScheduler)
    snr = lambda a: a / (1 - a)  # noqa: E731
    ratio = snr(base.alphas_cumprod.double()) / snr(shifted.alphas_cumprod.double())
    torch.testing.assert_close(ratio[0], torch.tensor(1.0, dtype=torch.float64), rtol=1e-4, atol=0)
    torch.testing.assert_close(ratio[-1], torch.tensor(8.0, dtype=torch.float64), rtol=1e-3, atol=0)
    assert (ratio[1:] >= ratio[:-1] - 1e-6).all()
    with pytest.raises(vadapters.BadInputError):
        ShiftSNRScheduler.from_scheduler(base, shift_mode="sideways")


@pytest.fixture(scope="module")
def tiny_pipe():
    from vadapters.models import tiny_sd_pipeline

    return tiny_sd_pipeline(seed=0)


@pytest.mark.slow
def test_multiview_pipeline_conventions_and_base_equivalence(tiny_pipe):
    from vadapters.pipelines import MultiViewPipeline

    components = {k: v for k, v in tiny_pipe.components.items() if k != "image_encoder"}
    pipe = MultiViewPipeline(**components, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    kw = {"height": 16, "width": 16, "num_inference_steps": 2, "output_type": "pt"}
    with pytest.raises(vadapters.AdapterStateError, match="needs an MV-Adapter"):
        pipe("a red box", **kw)
    base = tiny_pipe("a red box", num_images_per_prompt=3, generator=torch.Generator().manual_seed(0), **kw).images
    config = MVAdapterConfig(num_views=3, use_ref=True, condition_channels=6, condition_downscale_factor=2)
    vadapters.inject(pipe, config)
    perturb_adapter(pipe.unet, "default", scale=0.1, seed=7)
    with vadapters.disabled(pipe):  # no adapter: exactly the parent pipeline with one image per view
        off = pipe("a red box", azimuths=[0, 90, 180], generator=torch.Generator().manual_seed(0), **kw).images
    assert torch.equal(off, base)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    out = pipe(["a red box", "a blue cone"], azimuths=[0, 90, 180], num_images_per_prompt=2, generator=gen(), **kw)
    assert out.images.shape == (12, 3, 16, 16)
    again = pipe(["a red box", "a blue cone"], azimuths=[0, 90, 180], num_images_per_prompt=2, generator=gen(), **kw)
    assert torch.equal(out.images, again.images)
    one = pipe("a red box", azimuths=[0, 90, 180], generator=gen(), **kw).images
    assert not torch.allclose(one, base)
    ref = pipe("a red box", azimuths=[0, 90, 180], generator=gen(), reference_image=torch.rand(1, 3, 16, 16), **kw)
    assert not torch.allclose(ref.images, one)
    with pytest.raises(vadapters.BadInputError, match="condition maps for 3 views"):
        pipe("a red box", num_views=3, control_image=torch.rand(2, 6, 16, 16), **kw)
    with pytest.raises(vadapters.AdapterStateError, match="xformers|MV-Adapter"):
        pipe.enable_xformers_memory_efficient_attention()


@pytest.mark.slow
def test_training_recipe_shares_timesteps_per_object_and_trains_only_the_adapter(tiny_pipe, tmp_path, monkeypatch):
    from vadapters.train import train_adapter
    from vadapters.train.recipes.mv_adapter import MultiViewSource, MVAdapterRecipe

    pipe = copy.deepcopy(tiny_pipe)
    config = MVAdapterConfig(num_views=3, use_ref=True, condition_channels=6, condition_downscale_factor=2)
    source = MultiViewSource(4, num_views=3, reference_views=2)  # separately rendered references (official)
    recipe = MVAdapterRecipe(pipe, config, source, "16", 2, adapter_name="mv")
    names = {n for n, p in pipe.unet.named_parameters() if p.requires_grad}
    assert names and all(("_mv." in n or "_ref." in n or "cond_encoder" in n) for n in names)
    assert {id(p) for p in recipe.trainable_parameters()} == {id(p) for p in pipe.unet.parameters() if p.requires_grad}
    seen = []
    original = recipe.noise_scheduler.add_noise
    monkeypatch.setattr(recipe.noise_scheduler, "add_noise", lambda x, n, t: seen.append(t) or original(x, n, t))
    batch = recipe.collate([recipe.dataset[(i, 16, 16)] for i in range(2)])
    loss = recipe.loss(batch, 0)
    loss.backward()
    t = seen[0]
    assert t.shape == (6,) and (t[:3] == t[0]).all() and (t[3:] == t[3]).all()
    assert all(p.grad is not None for p in recipe.trainable_parameters())  # _mv, _ref and the encoder
    options = {"num_items": 4, "num_views": 3, "batch_size": 2, "checkpoint_every": 1}
    summary = train_adapter(
        "mv_adapter",
        base=copy.deepcopy(tiny_pipe),
        output_dir=tmp_path,
        steps=2,
        config_overrides={"use_ref": True},
        **options,
    )
    assert summary["steps"] == 2 and (tmp_path / "checkpoints" / "step-2").is_dir()
    resumed = train_adapter(
        "mv_adapter",
        base=copy.deepcopy(tiny_pipe),
        output_dir=tmp_path,
        steps=3,
        config_overrides={"use_ref": True},
        **options,
    )
    assert resumed["resumed_from"] is not None and resumed["steps"] == 3
    fresh = copy.deepcopy(tiny_pipe)
    vadapters.load(fresh, tmp_path)
    assert vadapters.get_adapter_config(fresh, "mv_adapter").use_ref


def test_occupancy_against_each_views_border_colour():
    from vadapters.errors import BadInputError
    from vadapters.methods.mv_adapter.consistency import occupancy, occupied_row_fraction, row_occupancy_iou

    views = torch.empty(2, 3, 8, 8)
    views[0] = torch.tensor([0.9, 0.8, 0.2])[:, None, None]  # a tinted, not grey, background
    views[1] = torch.tensor([0.1, 0.3, 0.6])[:, None, None]
    views[0, :, 2:4, 3:5] = 0.0
    views[1, :, 2:4, 1:3] = 1.0
    assert occupancy(views).all()  # against grey every pixel of a tinted view is "object"
    assert row_occupancy_iou(views) == 1.0 and occupied_row_fraction(views) == 1.0  # saturated
    mask = occupancy(views, background="border", threshold=0.3)
    assert mask.sum().item() == 8 and mask[0, 2:4, 3:5].all() and mask[1, 2:4, 1:3].all()
    assert occupied_row_fraction(views, "border", 0.3) == 0.25
    views[1, :, 2:4] = views[1, :, 0:2].clone()  # view 1's object moves down two rows
    views[1, :, 4:6, 1:3] = 1.0
    assert row_occupancy_iou(views, "border", 0.3) == pytest.approx(0.0)
    with pytest.raises(BadInputError, match="border"):
        occupancy(views, background="median")
