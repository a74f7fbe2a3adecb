"""Tests of ``vadapters.models``: the offline CLIP tokenizer, the tiny hosts and the real-size architectures."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from vadapters.models import (  # noqa: E402
    build_unet,
    clip_bpe_files,
    clip_tokenizer,
    fill_deterministic_,
    make_scheduler,
    sam_state_dict_keys,
    sam_vit_b,
    sd15_unet_config,
    sdxl_unet_config,
    seeded,
    tiny_animatediff_pipeline,
    tiny_sam,
    tiny_sd_pipeline,
    tiny_sdxl_pipeline,
    tiny_timm_classifier,
    tiny_unet,
    tiny_unet_config,
)

CAPTIONS = [
    "a photo of a cat",
    "A Red Disc, on grass!!  ",
    "naïve café 123 résumé",
    "it's the dog's toy",
    "Double  SPACES\tand tabs; émojis 🐱 & ünïcode",
]


def _spatial_attn1(unet) -> list[str]:
    return [n for n in unet.attn_processors if ".attentions." in n and n.endswith("attn1.processor")]


def _sampler_convs(unet) -> list[str]:
    return sorted(
        name for name, _ in unet.named_modules() if name.endswith(("downsamplers.0.conv", "upsamplers.0.conv"))
    )


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.fixture(scope="module")
def tokenizer():
    return clip_tokenizer()


@pytest.fixture(scope="module")
def sd_pipe():
    return tiny_sd_pipeline(seed=0)


# --------------------------------------------------------------------------------------------------- tokenizer


def test_tokenizer_matches_open_clip(tokenizer):
    import open_clip

    reference = open_clip.tokenize(CAPTIONS)  # pads with 0
    for caption, ref in zip(CAPTIONS, reference):
        expected = [int(i) for i in ref if int(i) != 0]
        assert tokenizer(caption).input_ids == expected, caption


def test_tokenizer_specials_and_padding(tokenizer):
    assert len(tokenizer) == 49408
    assert tokenizer.vocab_size == 49408
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (49406, 49407, 49407)
    assert tokenizer.model_max_length == 77
    ids = tokenizer("a cat", padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    assert ids.shape == (1, 77)
    assert ids[0, :4].tolist() == [49406, 320, 2368, 49407]
    assert set(ids[0, 4:].tolist()) == {49407}
    long = tokenizer("cat " * 200, padding="max_length", truncation=True).input_ids
    assert len(long) == 77 and long[-1] == 49407
    assert tokenizer.decode(tokenizer("a photo of a cat").input_ids, skip_special_tokens=True) == "a photo of a cat"
    assert clip_tokenizer(max_length=32).model_max_length == 32


def test_bpe_files_written_once(tmp_path, monkeypatch):
    monkeypatch.setenv("VADAPTERS_CACHE", str(tmp_path))
    vocab, merges = clip_bpe_files()
    assert vocab.parent == tmp_path / "clip_bpe"
    stamps = (vocab.stat().st_mtime_ns, merges.stat().st_mtime_ns)
    assert clip_bpe_files() == (vocab, merges)
    assert (vocab.stat().st_mtime_ns, merges.stat().st_mtime_ns) == stamps
    assert sorted(p.name for p in vocab.parent.iterdir()) == ["merges.txt", "vocab.json"]  # no tmp leftovers
    lines = merges.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#version: 0.2" and len(lines) == 1 + 49152 - 256 - 2
    assert len(clip_tokenizer()) == 49408  # built from the fresh files


# --------------------------------------------------------------------------------------------------- tiny hosts


def test_tiny_sd_structure(sd_pipe):
    unet = sd_pipe.unet
    assert type(sd_pipe).__name__ == "StableDiffusionPipeline"
    assert dict(unet.config)["block_out_channels"] in ((32, 64, 64), [32, 64, 64])
    assert _sampler_convs(unet) == [
        "down_blocks.0.downsamplers.0.conv",
        "down_blocks.1.downsamplers.0.conv",
        "up_blocks.0.upsamplers.0.conv",
        "up_blocks.1.upsamplers.0.conv",
    ]
    assert len(_spatial_attn1(unet)) == 2 * 1 + 2 * 2 + 1  # down: 2 blocks x 1 layer, up: 2 x 2 layers, mid: 1
    assert sd_pipe.vae_scale_factor == 2
    assert sd_pipe.text_encoder.config.hidden_size == unet.config.cross_attention_dim == 32
    assert sd_pipe.safety_checker is None
    for module in (unet, sd_pipe.vae, sd_pipe.text_encoder):
        assert not module.training
        assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in module.parameters())


@pytest.mark.parametrize("size", [(32, 48), (24, 40)])
def test_tiny_sd_generates(sd_pipe, size):
    height, width = size
    gen = torch.Generator().manual_seed(0)
    out = sd_pipe("a red disc", num_inference_steps=2, height=height, width=width, output_type="np", generator=gen)
    image = out.images
    assert image.shape == (1, height, width, 3)
    assert np.isfinite(image).all() and image.min() >= 0 and image.max() <= 1
    assert image.std() > 1e-3  # not a constant image
    again = sd_pipe(
        "a red disc",
        num_inference_steps=2,
        height=height,
        width=width,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).images
    np.testing.assert_array_equal(image, again)


@pytest.mark.parametrize(
    ("name", "cls"), [("ddim", "DDIMScheduler"), ("ddpm", "DDPMScheduler"), ("euler", "EulerDiscreteScheduler")]
)
def test_make_scheduler(name, cls):
    sched = make_scheduler(name)
    assert type(sched).__name__ == cls
    assert sched.config.beta_schedule == "scaled_linear"
    assert sched.config.num_train_timesteps == 1000


def test_make_scheduler_rejects_unknown():
    with pytest.raises(ValueError, match="unknown scheduler"):
        make_scheduler("pndm++")


def test_tiny_sd_pipeline_scheduler_choice():
    pipe = tiny_sd_pipeline(scheduler="euler")
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    assert pipe("x", num_inference_steps=2, height=16, width=16, output_type="np").images.shape == (1, 16, 16, 3)


def test_tiny_sdxl_generates():
    pipe = tiny_sdxl_pipeline(seed=0)
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"
    assert pipe.unet.config.addition_embed_type == "text_time"
    assert len(_sampler_convs(pipe.unet)) == 2
    image = pipe("a cat", num_inference_steps=2, height=32, width=32, output_type="np").images
    assert image.shape == (1, 32, 32, 3) and np.isfinite(image).all()


def test_tiny_animatediff_generates():
    pipe = tiny_animatediff_pipeline(seed=0)
    assert type(pipe.unet).__name__ == "UNetMotionModel"
    assert any("motion_modules" in name for name, _ in pipe.unet.named_modules())
    out = pipe("a cat", num_frames=4, num_inference_steps=2, height=32, width=32, output_type="np")
    frames = np.asarray(out.frames)
    assert frames.shape == (1, 4, 32, 32, 3) and np.isfinite(frames).all()


def test_tiny_sam_predictor():
    from segment_anything import SamPredictor

    sam = tiny_sam(seed=0)
    assert type(sam).__name__ == "Sam" and not sam.training
    assert len(sam.image_encoder.blocks) == 2 and sam.image_encoder.img_size == 64
    predictor = SamPredictor(sam)
    image = np.random.default_rng(0).integers(0, 256, size=(48, 80, 3), dtype=np.uint8)
    predictor.set_image(image)
    assert predictor.features.shape == (1, 32, 8, 8)
    masks, scores, low_res = predictor.predict(point_coords=np.array([[20.0, 10.0]]), point_labels=np.array([1]))
    assert masks.shape == (3, 48, 80) and masks.dtype == bool
    assert scores.shape == (3,) and low_res.shape == (3, 32, 32)
    single, _, _ = predictor.predict(
        point_coords=np.array([[20.0, 10.0]]), point_labels=np.array([1]), multimask_output=False
    )
    assert single.shape == (1, 48, 80)


def test_tiny_sam_rejects_bad_patch():
    with pytest.raises(ValueError, match="multiple"):
        tiny_sam(img_size=60, patch_size=8)


@pytest.mark.parametrize(("name", "features"), [("test_vit", 3), ("test_resnet", 4)])
def test_tiny_timm(name, features):
    model = tiny_timm_classifier(name, num_classes=10, img_size=32, seed=0)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.forward_features(x)
        pre = model.forward_head(feats, pre_logits=True)
        logits = model.forward_head(feats)
    assert feats.ndim == features and feats.shape[0] == 2
    assert pre.ndim == 2 and pre.shape[0] == 2 and pre.shape[1] == model.num_features
    assert logits.shape == (2, 10)
    torch.testing.assert_close(logits, model(x))
    if name == "test_vit":
        assert model.patch_embed.patch_size == (4, 4) and feats.shape[1] == 1 + 8 * 8


def test_builders_deterministic_and_leave_global_rng():
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    first = [tiny_unet(seed=3), tiny_sam(seed=3), tiny_timm_classifier("test_vit", seed=3)]
    assert torch.equal(torch.get_rng_state(), state)
    second = [tiny_unet(seed=3), tiny_sam(seed=3), tiny_timm_classifier("test_vit", seed=3)]
    for a, b in zip(first, second):
        _assert_same_state(a, b)
    other = tiny_unet(seed=4)
    assert not torch.equal(other.conv_in.weight, first[0].conv_in.weight)
    assert torch.equal(torch.get_rng_state(), state)


def test_pipelines_deterministic(sd_pipe):
    state = torch.get_rng_state()
    again = tiny_sd_pipeline(seed=0)
    assert torch.equal(torch.get_rng_state(), state)
    for name in ("unet", "vae", "text_encoder"):
        _assert_same_state(getattr(sd_pipe, name), getattr(again, name))
    a, b = tiny_animatediff_pipeline(seed=1), tiny_animatediff_pipeline(seed=1)
    _assert_same_state(a.unet, b.unet)
    assert torch.equal(torch.get_rng_state(), state)


def test_seeded_restores_rng():
    state = torch.get_rng_state()
    with seeded(5):
        x = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), state)
    with seeded(5):
        assert torch.equal(torch.rand(3), x)


# --------------------------------------------------------------------------------------------------- real size


@pytest.mark.parametrize(
    ("config_fn", "millions", "attn1", "samplers"),
    [(sd15_unet_config, 859.5, 16, 6), (sdxl_unet_config, 2567.5, 70, 4)],
)
def test_real_unet_on_meta(config_fn, millions, attn1, samplers):
    config = config_fn()
    unet = build_unet(config)
    params = list(unet.parameters())
    assert all(p.device.type == "meta" for p in params)
    assert abs(sum(p.numel() for p in params) / 1e6 - millions) < 0.1
    assert len(_spatial_attn1(unet)) == attn1
    convs = _sampler_convs(unet)
    assert len(convs) == samplers
    assert all(name.startswith(("down_blocks.", "up_blocks.")) for name in convs)
    for key, value in config.items():
        got = unet.config[key]
        assert (list(got) if isinstance(got, tuple) else got) == value, key


def test_real_configs_published_values():
    sd15, sdxl = sd15_unet_config(), sdxl_unet_config()
    assert sd15["block_out_channels"] == [320, 640, 1280, 1280] and sd15["cross_attention_dim"] == 768
    assert sd15["sample_size"] == 64 and sd15["attention_head_dim"] == 8
    assert sdxl["transformer_layers_per_block"] == [1, 2, 10] and sdxl["attention_head_dim"] == [5, 10, 20]
    assert sdxl["projection_class_embeddings_input_dim"] == 6 * sdxl["addition_time_embed_dim"] + 1280
    assert sd15_unet_config() is not sd15  # fresh dict each call
    sd15["cross_attention_dim"] = 1
    assert sd15_unet_config()["cross_attention_dim"] == 768


def test_build_unet_cpu_is_deterministic_and_finite():
    config = tiny_unet_config()
    a = build_unet(config, device="cpu", seed=7)
    b = build_unet(config, device="cpu", seed=7)
    c = build_unet(config, device="cpu", seed=8)
    _assert_same_state(a, b)
    assert not torch.equal(a.conv_in.weight, c.conv_in.weight)
    weight = a.down_blocks[0].resnets[0].conv1.weight.detach()
    assert abs(float(weight.std()) - 0.02) < 0.004 and abs(float(weight.mean())) < 0.005
    norm = a.conv_norm_out.weight.detach()
    assert abs(float(norm.mean()) - 1.0) < 0.05 and float(norm.std()) > 0.05
    with torch.no_grad():
        out = a(torch.randn(1, 4, 16, 16), 10, encoder_hidden_states=torch.randn(1, 5, 32)).sample
    assert out.shape == (1, 4, 16, 16) and torch.isfinite(out).all()


def test_fill_deterministic_covers_everything():
    module = torch.nn.Sequential(torch.nn.Linear(300, 5000), torch.nn.LayerNorm(5000), torch.nn.BatchNorm1d(5000))
    fill_deterministic_(module, seed=1)
    lin, ln, bn = module
    assert lin.weight.std() > 0.015 and lin.bias.abs().max() > 0
    assert torch.allclose(ln.weight.mean(), torch.tensor(1.0), atol=0.02)
    assert bn.num_batches_tracked.item() == 0 and bn.running_var.std() > 0.5
    rows = lin.weight
    assert not torch.equal(rows[0], rows[1])


@pytest.mark.slow
def test_real_sd15_unet_on_cpu():
    unet = build_unet(sd15_unet_config(), device="cpu", seed=0)
    assert unet.device.type == "cpu"
    with torch.no_grad():
        out = unet(torch.randn(1, 4, 16, 16), 10, encoder_hidden_states=torch.randn(1, 7, 768)).sample
    assert out.shape == (1, 4, 16, 16) and torch.isfinite(out).all()


def test_sam_vit_b_on_meta():
    sam = sam_vit_b()
    assert type(sam).__name__ == "Sam"
    assert abs(sum(p.numel() for p in sam.parameters()) / 1e6 - 93.7) < 0.1
    assert len(sam.image_encoder.blocks) == 12 and sam.image_encoder.img_size == 1024
    assert {t.device.type for t in (*sam.parameters(), *sam.buffers())} == {"meta"}
    keys = sam_state_dict_keys("vit_b")
    assert keys == list(sam.state_dict())
    assert (
        "image_encoder.blocks.11.attn.rel_pos_h" in keys and "mask_decoder.iou_prediction_head.layers.2.weight" in keys
    )
    assert any(k.startswith("image_encoder.blocks.31.") for k in sam_state_dict_keys("vit_h"))
    with pytest.raises(ValueError, match="unknown SAM variant"):
        sam_state_dict_keys("vit_x")


def test_sam_vit_b_filled_on_cpu():
    sam = sam_vit_b(device="cpu", seed=0)
    assert sam.pixel_mean.flatten().tolist() == pytest.approx([123.675, 116.28, 103.53])
    gauss = sam.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix
    assert gauss.std() > 0.5
    assert torch.isfinite(sam.image_encoder.pos_embed).all() and sam.image_encoder.pos_embed.std() > 0
