"""I2V-Adapter specifics beyond the shared matrix: the issue's invariants, conversion, sampler, recipe, CLI."""

from __future__ import annotations

import copy
import json

import pytest
import torch

import vadapters
from vadapters.methods.i2v_adapter import (
    I2VAdapterConfig,
    conversion,
    first_frame_kv,
    i2v_processors,
    i2v_state,
    spatial_self_attention_names,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is ~10x faster on a loaded 2-core CPU


@pytest.fixture(scope="module")
def base_pipe():
    """One tiny AnimateDiff pipeline per module (frozen UNet, as `inject` leaves it); tests work on copies."""
    from vadapters.models import tiny_animatediff_pipeline

    pipe = tiny_animatediff_pipeline(seed=0)
    pipe.unet.requires_grad_(False)
    return pipe


@pytest.fixture
def pipe(base_pipe):
    return copy.deepcopy(base_pipe)


@pytest.fixture
def unet(base_pipe):
    return copy.deepcopy(base_pipe.unet)


def _inputs(clips=2, frames=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(clips, 4, frames, 8, 8, generator=g), torch.tensor(600), torch.randn(clips, 7, 32, generator=g)


def _attn(unet, name):
    return unet.get_submodule(name.removesuffix(".processor"))


def test_only_spatial_self_attention_is_wrapped(unet):
    before = dict(unet.attn_processors)
    vadapters.inject(unet, I2VAdapterConfig())
    wrapped = i2v_processors(unet)
    assert set(wrapped) == set(spatial_self_attention_names(unet))
    assert all(".attentions." in n and n.endswith("attn1.processor") and "motion" not in n for n in wrapped)
    for name, proc in unet.attn_processors.items():  # motion modules and attn2 keep their processor objects
        if name not in wrapped:
            assert proc is before[name], name


def test_fresh_adapter_bit_identical_and_per_clip_text_states_are_repeated_inside(unet):
    x, t, emb = _inputs()
    with torch.no_grad():
        base = unet(x, t, encoder_hidden_states=emb.repeat_interleave(3, dim=0)).sample
        vadapters.inject(unet, I2VAdapterConfig())
        assert torch.equal(unet(x, t, encoder_hidden_states=emb.repeat_interleave(3, dim=0)).sample, base)
        assert torch.equal(unet(x, t, encoder_hidden_states=emb).sample, base)  # one row per clip is accepted


def test_query_copied_from_to_q_and_output_zero_at_init(unet):
    vadapters.inject(unet, I2VAdapterConfig())
    vadapters.inject(unet, I2VAdapterConfig(copy_query=False), adapter_name="fresh_q")
    for name, proc in i2v_processors(unet).items():
        attn = _attn(unet, name)
        assert torch.equal(proc.to_q_ff["default"].weight, attn.to_q.weight)
        assert proc.to_q_ff["default"].weight.data_ptr() != attn.to_q.weight.data_ptr()  # a copy, not a share
        assert not torch.equal(proc.to_q_ff["fresh_q"].weight, attn.to_q.weight)
        assert proc.to_q_ff["default"].bias is None  # SD's to_q has no bias, nor has the official to_q_ff
        assert not proc.to_out_ff["default"].weight.any() and not proc.to_out_ff["default"].bias.any()


def test_trainable_count_is_sum_of_2d2_plus_d(unet):
    vadapters.inject(unet, I2VAdapterConfig())
    dims = [_attn(unet, n).to_q.in_features for n in spatial_self_attention_names(unet)]
    trainable = sum(p.numel() for p in unet.parameters() if p.requires_grad)
    assert trainable == sum(2 * d * d + d for d in dims) > 0


def test_first_frame_branch_equals_base_attention_on_frame_0(unet):
    """With to_q_ff = to_q, frame 0's branch output (before projection) is frame 0's self-attention."""
    vadapters.inject(unet, I2VAdapterConfig())
    name = spatial_self_attention_names(unet)[0]
    proc, attn = unet.attn_processors[name], _attn(unet, name)
    h = torch.randn(2 * 3, 64, attn.to_q.in_features)
    with torch.no_grad(), i2v_state(unet, num_frames=3):
        branch = proc.branch("default", attn, h)
        from vadapters.methods.i2v_adapter.processors import attend

        own = attend(attn.to_q(h), attn.to_k(h), attn.to_v(h), attn.heads, attn.scale)
    torch.testing.assert_close(branch[0::3], own[0::3], rtol=0, atol=1e-6)
    assert not torch.allclose(branch[1::3], own[1::3], atol=1e-4)  # other frames look at frame 0, not themselves


def test_branch_depends_only_on_frame_0_keys_and_values(unet):
    vadapters.inject(unet, I2VAdapterConfig())
    name = spatial_self_attention_names(unet)[-1]
    proc, attn = unet.attn_processors[name], _attn(unet, name)
    frames = 4
    h = torch.randn(2 * frames, 16, attn.to_q.in_features)
    perturbed = h.clone().reshape(2, frames, 16, -1)
    perturbed[:, 1:] += torch.randn_like(perturbed[:, 1:])
    perturbed = perturbed.reshape_as(h)
    with torch.no_grad(), i2v_state(unet, num_frames=frames):
        k, v = first_frame_kv(attn, h, frames)
        k2, v2 = first_frame_kv(attn, perturbed, frames)
        out, out2 = proc.branch("default", attn, h), proc.branch("default", attn, perturbed)
    assert torch.equal(k, k2) and torch.equal(v, v2)
    assert torch.equal(out[0::frames], out2[0::frames])  # frame 0 of each clip untouched
    assert not torch.allclose(out[1::frames], out2[1::frames])  # a frame's own query still matters
    changed_clip = h.clone().reshape(2, frames, 16, -1)
    changed_clip[1, 0] += 1.0  # clip 1's first frame: clip 0 must not see it
    with torch.no_grad(), i2v_state(unet, num_frames=frames):
        out3 = proc.branch("default", attn, changed_clip.reshape_as(h))
    assert torch.equal(out3[:frames], out[:frames]) and not torch.allclose(out3[frames:], out[frames:])


def test_scale_state_and_weights(unet):
    x, t, emb = _inputs()
    vadapters.inject(unet, I2VAdapterConfig())
    with torch.no_grad():
        base = unet(x, t, encoder_hidden_states=emb).sample
        for proc in i2v_processors(unet).values():
            torch.nn.init.normal_(proc.to_out_ff["default"].weight, std=0.2)
        adapted = unet(x, t, encoder_hidden_states=emb).sample
        assert not torch.allclose(adapted, base)
        with i2v_state(unet, scale=0.0):
            assert torch.equal(unet(x, t, encoder_hidden_states=emb).sample, base)
        assert torch.equal(unet(x, t, encoder_hidden_states=emb).sample, adapted)


def test_refuses_image_unet():
    from vadapters.models import tiny_unet

    with pytest.raises(vadapters.IncompatibleBaseError, match="motion modules"):
        vadapters.inject(tiny_unet(), I2VAdapterConfig())


def test_save_keys_are_only_ff_and_unload_restores_processors(tmp_path, pipe):
    before = dict(pipe.unet.attn_processors)
    vadapters.inject(pipe, I2VAdapterConfig())
    vadapters.save_pretrained(pipe, tmp_path)
    from safetensors.torch import load_file

    keys = load_file(tmp_path / "adapter_model.safetensors")
    assert keys and all(k.endswith(("to_q_ff.weight", "to_out_ff.weight", "to_out_ff.bias")) for k in keys)
    vadapters.unload(pipe)
    assert all(pipe.unet.attn_processors[n] is p for n, p in before.items())
    assert not pipe.unet._forward_pre_hooks  # the frame-count hook is gone


def _official_state_dict(unet, seed=0):
    """Official-layout tensors shaped like `unet`'s spatial attn1 layers (to_q_ff without bias)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in spatial_self_attention_names(unet):
        attn, prefix = _attn(unet, name), name.removesuffix(".processor")
        d, inner = attn.to_q.in_features, attn.to_q.out_features
        out[f"{prefix}.to_q_ff.weight"] = torch.randn(inner, d, generator=g)
        out[f"{prefix}.to_out_ff.weight"] = torch.randn(d, inner, generator=g)
        out[f"{prefix}.to_out_ff.bias"] = torch.randn(d, generator=g)
    return out


def test_official_conversion_round_trip_pth_and_detect(tmp_path, unet, base_pipe):
    official = _official_state_dict(unet)
    ours = conversion.convert_official(official)
    assert conversion.to_official(ours) == official
    with pytest.raises(vadapters.CheckpointError, match="unexpected key"):
        conversion.convert_official({**official, "down_blocks.0.motion_modules.0.proj_in.weight": torch.zeros(1)})
    pth = tmp_path / "i2v_module.pth"
    torch.save(official, pth)
    conversion.load_official(unet, pth)
    proc = unet.attn_processors[spatial_self_attention_names(unet)[0]]
    key = spatial_self_attention_names(unet)[0].removesuffix(".processor") + ".to_out_ff.bias"
    assert torch.equal(proc.to_out_ff["i2v_adapter"].bias, official[key])
    from safetensors.torch import save_file

    save_file(official, tmp_path / "official.safetensors")
    assert conversion.detect(str(tmp_path / "official.safetensors"))
    other = copy.deepcopy(base_pipe.unet)
    vadapters.load(other, tmp_path / "official.safetensors")  # detected, converted, loaded strictly
    assert vadapters.list_adapters(other) == {"i2v_adapter": "i2v_adapter"}


def test_official_layout_loads_strictly_into_real_size_sd15_motion_unet():
    """A synthetic checkpoint with the official names and real SD 1.5 shapes fits a real-size UNetMotionModel
    (built on meta from the published SD 1.5 config plus an AnimateDiff v1 motion adapter)."""
    from diffusers import MotionAdapter, UNetMotionModel

    from vadapters.models.real import build_unet, sd15_unet_config

    with torch.device("meta"):
        adapter = MotionAdapter(block_out_channels=(320, 640, 1280, 1280), motion_layers_per_block=2,
                                motion_num_attention_heads=8, motion_norm_num_groups=32, motion_max_seq_length=24,
                                use_motion_mid_block=False)  # fmt: skip
        unet = UNetMotionModel.from_unet2d(build_unet(sd15_unet_config()), adapter, load_weights=False)
    names = spatial_self_attention_names(unet)
    assert len(names) == 16
    official = {}
    for name in names:
        prefix, d = name.removesuffix(".processor"), _attn(unet, name).to_q.in_features
        official[f"{prefix}.to_q_ff.weight"] = torch.empty(d, d, device="meta")
        official[f"{prefix}.to_out_ff.weight"] = torch.empty(d, d, device="meta")
        official[f"{prefix}.to_out_ff.bias"] = torch.empty(d, device="meta")
    total = sum(t.numel() for t in official.values())
    assert round(total / 1e6, 2) == 24.79  # sum of 2 d^2 + d over the 16 layers (5x320, 5x640, 6x1280)
    vadapters.inject(unet, I2VAdapterConfig())
    from vadapters.core.api import load_adapter_state_dict

    load_adapter_state_dict(unet, "default", conversion.convert_official(official), strict=True)
    bad = dict(official)
    bad.pop(next(iter(bad)))
    with pytest.raises(vadapters.CheckpointError, match="missing"):
        load_adapter_state_dict(unet, "default", conversion.convert_official(bad), strict=True)


# ------------------------------------------------------------------------------------------------ pipeline
def _i2v_pipe(pipe, adapter=True):
    from vadapters.pipelines.image2video import I2VPipeline

    pipe = I2VPipeline.from_pipe(pipe)
    if adapter:
        vadapters.inject(pipe, I2VAdapterConfig())
        for proc in i2v_processors(pipe.unet).values():  # a non-zero branch, so it really acts
            torch.nn.init.normal_(proc.to_out_ff["default"].weight, std=0.3)
    return pipe


@pytest.mark.parametrize("prior", [None, "auto", 0.5])
def test_sampler_never_changes_frame_0_latents(prior, pipe):
    pipe = _i2v_pipe(pipe)
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    first = pipe.encode_first_frame(image, 16, 16, 1)
    seen, unet_inputs = [], []
    pipe.unet.register_forward_pre_hook(lambda m, a, k: unet_inputs.append((a[0] if a else k["sample"]).clone()),
                                        with_kwargs=True)  # fmt: skip

    def record(p, step, t, kwargs):
        seen.append(kwargs["latents"].clone())
        return {}

    out = pipe("a red square moving right slowly", image=image, num_frames=4, height=16, width=16,
               num_inference_steps=3, guidance_scale=2.0, generator=torch.Generator().manual_seed(0),
               output_type="latent", prior_strength=prior, callback_on_step_end=record)  # fmt: skip
    assert len(seen) == 3 and len(unet_inputs) == 3
    for latents in [*seen, out.frames]:
        assert torch.equal(latents[:, :, 0], first)
    for sample in unet_inputs:  # CFG batch: both halves see the clean first frame
        assert sample.shape[0] == 2 and torch.equal(sample[:, :, 0], first.expand(2, -1, -1, -1))
    assert not torch.equal(out.frames[:, :, 1], first)


def test_prior_strength_moves_initial_latents_towards_first_frame():
    from vadapters.methods.i2v_adapter.sampling import prior_latents

    first, noise = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 6, 8, 8)
    gaps = []
    for s in (0.0, 0.5, 0.9):
        lat = prior_latents(first, noise, s, mask_prob=0.0)
        gaps.append(float((lat - first[:, :, None]).abs().mean()))
    assert gaps[0] > gaps[1] > gaps[2]
    with pytest.raises(vadapters.BadInputError):
        prior_latents(first, noise, 1.0)


def test_pipeline_outputs_video_and_writes_gif_webp(tmp_path, pipe):
    from PIL import Image

    from vadapters.pipelines.image2video import save_video

    pipe = _i2v_pipe(pipe)
    image = Image.fromarray((torch.rand(16, 16, 3) * 255).byte().numpy())
    out = pipe("a cat", image=image, num_frames=3, height=16, width=16, num_inference_steps=2, guidance_scale=1.0,
               output_type="np", color_match=True, prior_strength="auto")  # fmt: skip
    assert out.frames.shape == (1, 3, 16, 16, 3)
    for ext in ("gif", "webp"):
        path = save_video(out.frames[0], tmp_path / f"v.{ext}", scale=2)
        with Image.open(path) as im:
            assert im.n_frames == 3 and im.size == (32, 32)
    with pytest.raises(vadapters.BadInputError, match="extension"):
        save_video(out.frames[0], tmp_path / "v.avi")


def test_without_adapter_the_pipeline_is_frame0_clamped_t2v(pipe):
    pipe = _i2v_pipe(pipe, adapter=False)
    image = torch.rand(1, 3, 16, 16)
    out = pipe("a cat", image=image, num_frames=3, height=16, width=16, num_inference_steps=2, guidance_scale=1.0,
               output_type="latent")  # fmt: skip
    assert torch.equal(out.frames[:, :, 0], pipe.encode_first_frame(image, 16, 16, 1))


def test_first_frame_of_another_size_is_resized_to_the_video(pipe):
    """AnimateDiff's video processor does not resize; a 48x32 upload must still condition a 16x16 video."""
    from PIL import Image

    pipe = _i2v_pipe(pipe, adapter=False)
    array = (torch.rand(32, 48, 3, generator=torch.Generator().manual_seed(1)) * 255).byte().numpy()
    latents = pipe.encode_first_frame(Image.fromarray(array), 16, 16, 1)
    assert latents.shape == (1, 4, 8, 8)
    small = torch.nn.functional.interpolate(torch.from_numpy(array).permute(2, 0, 1)[None].float() / 255, size=(16, 16),
                                            mode="bilinear", antialias=True)  # fmt: skip
    torch.testing.assert_close(latents, pipe.encode_first_frame(small, 16, 16, 1), atol=1e-4, rtol=0)
    with pytest.raises(vadapters.BadInputError, match="RGB"):
        pipe.encode_first_frame(Image.fromarray(array[..., 0]), 16, 16, 1)


# ------------------------------------------------------------------------------------------------ training
def test_recipe_masks_frame_0_and_trains_only_the_adapter(pipe):
    from vadapters.train.recipes.i2v_adapter import I2VAdapterRecipe, MotionClipSource

    recipe = I2VAdapterRecipe(pipe, I2VAdapterConfig(), MotionClipSource(4, num_frames=8), "16", 2, seed=0)
    batch = recipe.collate([recipe.dataset[(i, 16, 16)] for i in range(2)])
    assert tuple(batch["pixel_values"].shape) == (16, 3, 16, 16) and batch["num_frames"] == 8
    captured = {}
    recipe._unet = _capture(pipe.unet, captured)
    encode = recipe._encode_images
    recipe._encode_images = lambda pixels: captured.setdefault("latents", encode(pixels))
    loss = recipe.loss(batch, 0)
    loss.backward()
    names = {id(p) for p in recipe.trainable_parameters()}
    assert {id(p) for p in pipe.unet.parameters() if p.requires_grad} == names
    assert all(p.grad is not None for p in recipe.trainable_parameters())
    latents = captured["latents"].reshape(2, 8, *captured["latents"].shape[1:])
    assert torch.equal(captured["sample"][:, :, 0], latents[:, 0])  # the UNet saw the clean first frame
    assert not torch.allclose(captured["sample"][:, :, 1], latents[:, 1])  # the others are noised
    grad_out = captured["grad"]
    assert grad_out is not None and not grad_out[:, :, 0].any() and grad_out[:, :, 1:].abs().sum() > 0


def _capture(unet, store):
    def run(sample, timesteps, **kwargs):
        store["sample"] = sample.detach().clone()
        out = unet(sample, timesteps, **kwargs)
        out[0].register_hook(lambda g: store.__setitem__("grad", g.clone()))
        return out

    return run


def test_cli_train_resume_and_i2v(tmp_path, monkeypatch, capsys, base_pipe):
    from PIL import Image

    from vadapters.cli import main
    from vadapters.pipelines import image2video

    monkeypatch.setattr(image2video, "load_video_pipeline", lambda spec=None: copy.deepcopy(base_pipe))
    out = tmp_path / "run"
    args = ["train", "i2v_adapter", "--out", str(out), "--num-items", "4", "--steps", "2", "--batch-size", "2",
            "--checkpoint-every", "1", "--resolutions", "16"]  # fmt: skip
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["steps"] == 2 and (out / "adapter_model.safetensors").is_file()
    assert main([*args[:7], "3", *args[8:]]) == 0  # resumes from step 2
    assert json.loads(capsys.readouterr().out)["steps"] == 3
    Image.fromarray((torch.rand(16, 16, 3) * 255).byte().numpy()).save(tmp_path / "first.png")
    gif = tmp_path / "v.gif"
    assert main(["i2v", "--image", str(tmp_path / "first.png"), "--adapter", str(out), "--frames", "3",
                 "--height", "16", "--width", "16", "--steps", "2", "--out", str(gif)]) == 0  # fmt: skip
    with Image.open(gif) as im:
        assert im.n_frames == 3
