"""Proof world v2 pieces: the world VAE's data and loss, tiny-clip (open_clip -> transformers text encoder), judges v2."""

from __future__ import annotations

import math

import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")


def test_world_images_mix_cache_and_resize(tmp_path):
    from vadapters.train.base_vae import WorldImages

    cache = str(tmp_path / "world.pt")
    a = WorldImages(16, seed=3, resolution=16, cache=cache)
    b = WorldImages(16, seed=3, resolution=16, cache=cache)  # read back from the cache
    assert torch.equal(a.images, b.images) and sum(a.counts.values()) == len(a) == 16
    assert a.images.min() >= -1 and a.images.max() <= 1
    assert set(a.worlds.tolist()) == {0, 1, 2, 3}
    assert a.load(0, 8, 8)["image"].shape == (3, 8, 8)
    c = WorldImages(16, seed=4, resolution=16, cache=cache)  # another key: re-rendered, not the stale cache
    assert not torch.equal(a.images, c.images)


def test_sobel_sees_edges_and_edge_loss_trains_the_vae():
    from vadapters.models import tiny_vae
    from vadapters.train.base_vae import EdgeAwareVAERecipe, WorldImages, sobel

    flat = torch.zeros(1, 3, 8, 8)
    step = flat.clone()
    step[..., 4:] = 1.0
    assert sobel(flat).abs().max() == 0 and sobel(step).abs().max() > 0.5
    torch.manual_seed(0)
    vae = tiny_vae(0)
    recipe = EdgeAwareVAERecipe(vae, WorldImages(8, seed=0, resolution=16), 16, 4, edge_weight=1.0)
    batch = {"pixel_values": torch.stack([recipe.dataset.source.load(i, 16, 16)["image"] for i in range(4)])}
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        recipe.generator.manual_seed(0)
        loss = recipe.loss(batch, 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_tiny_clip_text_tower_converts_exactly_to_a_transformers_clip_text_model():
    import open_clip

    from vadapters.models.clip import text_encoder_from_open_clip, text_tokens, tiny_clip

    model = tiny_clip(seed=1).eval()
    tokens = open_clip.tokenize(["a red square moving up-left quickly", "a cone"])
    encoder = text_encoder_from_open_clip(model)
    with torch.no_grad():
        ours = encoder(tokens).last_hidden_state
        theirs = text_tokens(model, tokens)
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert encoder.config.hidden_size == model.transformer.width and encoder.config.vocab_size == 49408


def test_trail_image_shows_where_the_sprite_ends():
    from vadapters.synthetic.motion import MotionClips
    from vadapters.train.base_clip import trail_image

    clip = MotionClips(1, seed=0).render(0, 32, 32)
    trail = trail_image(clip["frames"])
    last, first = clip["masks"][-1], clip["masks"][0]
    only_last, only_first = last & ~first, first & ~last
    assert only_last.any() and only_first.any()
    # the sprite's end position is closer to the last frame than its start position is to the first frame
    end_err = (trail - clip["frames"][-1]).abs().mean(0)[only_last].mean()
    start_err = (trail - clip["frames"][0]).abs().mean(0)[only_first].mean()
    assert end_err < start_err


def test_captioned_world_and_probes_run():
    from vadapters.models.clip import tiny_clip
    from vadapters.train.base_clip import CaptionedWorld, caption_probes

    world = CaptionedWorld(8, seed=0)
    assert len(world) == 8 and any("moving" in c for c in world.captions)
    probes = caption_probes(tiny_clip(seed=0).eval())
    assert set(probes) == {"direction", "colour", "shape"} and all(v >= 0 for v in probes.values())


def test_judge_v2_trains_on_several_distributions_with_degradations(tmp_path):
    from vadapters.metrics.judges import ShapeColourJudge, degrade, train_shape_colour_judge

    images = torch.rand(4, 3, 32, 32) * 2 - 1
    out = degrade(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.min() >= -1 and out.max() <= 1 and not torch.equal(out, images)
    dists = {"a": {"background": "flat"}, "b": {"background": "texture"}}
    metrics = train_shape_colour_judge(
        str(tmp_path / "judge"), steps=3, batch_size=8, num_items=50, eval_items=8, distributions=dists, augment=True
    )
    assert set(metrics) == {"a", "b"} and all(m["n"] == 8 for m in metrics.values())
    judge, config = ShapeColourJudge.load(str(tmp_path / "judge"))
    assert set(config["metrics"]) == {"a", "b"}


def test_tiny_sd_v2_pipeline_runs_on_the_tiny_clip_text_tower(tmp_path):
    import json

    from safetensors.torch import save_file

    from vadapters.errors import CheckpointError
    from vadapters.models import tiny_vae
    from vadapters.models.clip import TINY_CLIP_CONFIG, text_encoder_from_open_clip, tiny_clip
    from vadapters.train.base_world import load_tiny_clip, tiny_sd_v2_pipeline

    model = tiny_clip(seed=2)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "open_clip_model.safetensors")
    )
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP_CONFIG}))
    loaded = load_tiny_clip(str(tmp_path))
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    pipe = tiny_sd_v2_pipeline(tiny_vae(0), text_encoder_from_open_clip(loaded), scheduler="ddim")
    assert pipe.unet.config.cross_attention_dim == 64
    image = pipe("a red cone", num_inference_steps=2, height=32, width=32, output_type="np").images
    assert image.shape == (1, 32, 32, 3)
    with pytest.raises(CheckpointError):
        load_tiny_clip(str(tmp_path / "missing"))


def test_train_tiny_sd_v2_trains_only_the_unet_and_exports_a_checkpoint(tmp_path):
    import json

    from safetensors.torch import save_file

    from vadapters.models import tiny_vae
    from vadapters.models.clip import TINY_CLIP_CONFIG, tiny_clip
    from vadapters.train.base_world import export_tiny_sd_v2_checkpoint, load_tiny_clip, train_tiny_sd_v2

    clip_dir, vae_dir = tmp_path / "clip", tmp_path / "vae"
    clip_dir.mkdir()
    save_file({k: v.contiguous() for k, v in tiny_clip(seed=3).state_dict().items()},
              str(clip_dir / "open_clip_model.safetensors"))  # fmt: skip
    (clip_dir / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP_CONFIG}))
    tiny_vae(0).save_pretrained(str(vae_dir))
    run = tmp_path / "run"
    summary = train_tiny_sd_v2(
        str(run), vae=str(vae_dir), clip=str(clip_dir), steps=2, batch_size=2, resolution=16, num_items=8,
        checkpoint_every=1,
    )  # fmt: skip
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(summary["pipeline"])
    before = load_tiny_clip(str(clip_dir)).token_embedding.weight
    assert torch.equal(pipe.text_encoder.get_input_embeddings().weight, before)  # the text tower stayed frozen
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"
    exported = export_tiny_sd_v2_checkpoint(str(run), str(tmp_path / "exp"), vae=str(vae_dir), clip=str(clip_dir))
    again = StableDiffusionPipeline.from_pretrained(exported)
    assert all(torch.equal(a, b) for a, b in zip(again.unet.state_dict().values(), pipe.unet.state_dict().values()))
    with pytest.raises(Exception, match="step-7"):
        export_tiny_sd_v2_checkpoint(str(run), str(tmp_path / "x"), vae=str(vae_dir), clip=str(clip_dir), step=7)


def test_cli_train_base_knows_the_v2_bases(tmp_path, capsys):
    from vadapters.cli import main

    out = tmp_path / "clip"
    assert (
        main(["train-base", "tiny-clip", "--out", str(out), "--steps", "2", "--batch-size", "4", "--num-items", "40"])
        == 0
    )
    printed = capsys.readouterr().out
    assert '"caption_probes"' in printed and (out / "open_clip_model.safetensors").is_file()
    with pytest.raises(SystemExit):
        main(["train-base", "tiny-nothing"])


def test_object_occupancy_passes_ground_truth_objects_and_fails_scenes_and_noise():
    from vadapters.metrics.occupancy import object_occupancy_rate
    from vadapters.train.base_vae import render_world

    assert object_occupancy_rate(render_world("objects", 24, 1000, 32))["one_object_on_plain_ground"] == 1.0
    assert object_occupancy_rate(render_world("scenes_large", 12, 1000, 32))["one_object_on_plain_ground"] == 0.0
    noise = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert object_occupancy_rate(noise)["one_object_on_plain_ground"] == 0.0
    assert object_occupancy_rate(torch.zeros(4, 3, 32, 32))["one_object_on_plain_ground"] == 0.0  # empty ground


def test_tiny_sd_v2_init_loads_a_half_precision_unet_strictly(tmp_path):
    from safetensors.torch import save_file

    from vadapters.errors import CheckpointError
    from vadapters.models import tiny_unet
    from vadapters.train.base_world import load_unet_weights, tiny_sd_v2_unet_config

    source = tiny_unet(tiny_sd_v2_unet_config(64), 5)
    save_file({"unet." + k: v.half().contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "u.st"))
    target = tiny_unet(tiny_sd_v2_unet_config(64), 6)
    load_unet_weights(target, str(tmp_path / "u.st"))
    for (name, a), b in zip(target.state_dict().items(), source.state_dict().values()):
        assert a.dtype == torch.float32 and torch.equal(a, b.half().float()), name
    save_file({"conv_in.weight": torch.zeros(1)}, str(tmp_path / "bad.st"))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_unet_weights(target, str(tmp_path / "bad.st"))


def test_clip_hard_negative_batches_group_motion_clips_that_differ_only_in_direction():
    from vadapters.train.base_clip import CaptionedWorld, grouped_batches, motion_key

    assert motion_key("a red square moving up-left quickly") == "a red square / quickly"
    world = CaptionedWorld(600, seed=0)
    batches = grouped_batches(world, 32, 4, seed=1, group=4)
    assert batches.shape == (4, 32)
    motion_world = list(world.counts).index("motion")
    for batch in batches:
        motion = [i for i in batch.tolist() if world.worlds[i] == motion_world]
        assert len(motion) == round(32 * world.counts["motion"] / len(world))
        keys = [motion_key(world.captions[i]) for i in motion]
        # runs of up to 4 share a key: far fewer distinct keys than clips
        assert len(set(keys)) <= -(-len(keys) // 2)


def test_world_vae_decoder_only_keeps_the_latent_space(tmp_path):
    from diffusers import AutoencoderKL

    from vadapters.models import tiny_vae
    from vadapters.train.base_vae import train_world_vae

    start = tmp_path / "start"
    tiny_vae(0).save_pretrained(str(start))
    summary = train_world_vae(
        str(tmp_path / "run"), steps=2, batch_size=4, num_items=8, resolution=16, init=str(start),
        decoder_only=True, mix={"scenes_small": 3, "scenes_large": 1}, checkpoint_every=1,
    )  # fmt: skip
    before, after = AutoencoderKL.from_pretrained(str(start)), AutoencoderKL.from_pretrained(summary["vae"])
    for name, a in before.state_dict().items():
        same = torch.equal(a, after.state_dict()[name])
        assert same == (not name.startswith(("decoder.", "post_quant_conv."))) or name.endswith("num_batches_tracked")
    assert summary["counts"] == {"scenes_small": 6, "scenes_large": 2}
    # the saved VAE carries the calibrated latent scale, not Stable Diffusion's constant
    assert after.config.scaling_factor == summary["scaling_factor"] != 0.18215


def test_latent_scaling_factor_gives_unit_variance_latents():
    from vadapters.models import tiny_vae
    from vadapters.train.base_vae import latent_scaling_factor, render_world

    vae = tiny_vae(0).eval()
    images = render_world("scenes_small", 64, 5, 16)
    factor = latent_scaling_factor(vae, images)
    with torch.no_grad():
        latents = vae.encode(images).latent_dist.sample(torch.Generator().manual_seed(1)) * factor
    assert abs(float(latents.std()) - 1.0) < 0.05
    with torch.no_grad():  # posterior means and stds 4x larger (log-variance + log 16): the factor divides by 4
        half = vae.quant_conv.out_channels // 2
        vae.quant_conv.weight[:half].mul_(4.0)
        vae.quant_conv.bias[:half].mul_(4.0)
        vae.quant_conv.bias[half:].add_(math.log(16.0))
    assert latent_scaling_factor(vae, images) == pytest.approx(factor / 4, rel=1e-3)


def test_shipped_world_vae_latents_have_unit_variance_under_its_scaling_factor():
    """tiny-sd v2 noises `latents * scaling_factor`; the schedule assumes unit variance there (LDM, SD)."""
    from diffusers import AutoencoderKL

    from vadapters.train.base_vae import WORLD_MIX, render_world

    vae = AutoencoderKL.from_pretrained("weights/tiny-world-vae").eval()
    images = torch.cat([render_world(w, 32, 77, 32) for w in WORLD_MIX])
    with torch.no_grad():
        latents = vae.encode(images).latent_dist.sample(torch.Generator().manual_seed(0))
    assert 0.85 < float(latents.std()) * vae.config.scaling_factor < 1.15
