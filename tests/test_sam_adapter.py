"""SAM-Adapter specifics: identity at init, the official forward, token layout, HFC, trainable set, frozen weights
after training, batching, predictor, CLI, and official-checkpoint conversion (ViT-B shapes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vadapters
from vadapters.core.hosts.sam import decode_masks
from vadapters.methods.sam_adapter import (
    PromptedPatchEmbed,
    SAMAdapterConfig,
    high_frequency_components,
    patch_tokens,
)
from vadapters.methods.sam_adapter import conversion as conv
from vadapters.models import load_sam, tiny_sam


def _images(b=2, seed=0):
    return torch.randn(b, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def _injector():
    return vadapters.get_method("sam_adapter").injector_cls()


def test_zero_init_is_bit_identical_and_official_init_is_not():
    sam, x = tiny_sam(), _images()
    with torch.no_grad():
        base = sam.image_encoder(x)
        vadapters.inject(sam, SAMAdapterConfig(scale_factor=8), adapter_name="zero")
        assert torch.equal(sam.image_encoder(x), base)
        vadapters.inject(sam, SAMAdapterConfig(scale_factor=8, init="official"), adapter_name="official")
        vadapters.set_adapters(sam, "official")
        assert not torch.equal(sam.image_encoder(x), base)


def _official_forward(encoder, generator, x, rate=0.25):
    """The official ImageEncoderViT.forward, written out: every prompt materialised first, scrambled layout."""
    t = encoder.patch_embed.base_layer(x)
    b, h, w, c = t.shape
    emb = generator.embedding_generator(t.reshape(b, c, h * w).permute(0, 2, 1))
    hfc = generator.hfc_embed(high_frequency_components(x, rate)).flatten(2).permute(0, 2, 1)
    prompts = [generator.shared_up(F.gelu(generator.tune[i](hfc + emb))) for i in range(len(encoder.blocks))]
    y = t + encoder.pos_embed
    for i, block in enumerate(encoder.blocks):
        y = block(y + prompts[i].reshape(b, h, w, -1))  # the hooks are off: called on the unhooked blocks below
    return encoder.neck(y.permute(0, 3, 1, 2))


def test_injected_forward_matches_the_official_algorithm():
    sam, x = tiny_sam(), _images()
    vadapters.inject(sam, SAMAdapterConfig(scale_factor=4, init="official", official_token_layout=True))
    generator = sam.image_encoder.patch_embed.prompt_generator["default"]
    with torch.no_grad():
        ours = sam.image_encoder(x)
        with vadapters.disabled(sam):  # hooks add nothing while disabled
            reference = _official_forward(sam.image_encoder, generator, x)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    assert sam.image_encoder.patch_embed._pending is None  # features released after the last block


def test_prompts_are_computed_lazily_one_block_at_a_time():
    sam = tiny_sam()
    vadapters.inject(sam, SAMAdapterConfig(scale_factor=8, init="official"))
    generator = sam.image_encoder.patch_embed.prompt_generator["default"]
    events = []
    original = generator.prompt
    generator.prompt = lambda i, f: (events.append(("prompt", i)), original(i, f))[1]
    for i, block in enumerate(sam.image_encoder.blocks):
        block.register_forward_hook(lambda m, a, o, i=i: events.append(("block", i)))
    with torch.no_grad():
        sam.image_encoder(_images(1))
    assert events == [("prompt", 0), ("block", 0), ("prompt", 1), ("block", 1)]


def test_token_layout_correct_and_official_scramble():
    t = torch.arange(4 * 4 * 3, dtype=torch.float32).reshape(1, 4, 4, 3)  # value = token * 3 + channel
    ours = patch_tokens(t)
    for h in range(4):
        for w in range(4):
            assert torch.equal(ours[0, h * 4 + w], t[0, h, w])
    official = patch_tokens(t, official_layout=True)
    assert official.shape == (1, 16, 3)
    token, channel = divmod(int(official[0, 0, 1]), 3)  # token 0's channel 1 comes from token 5
    assert (token, channel) == (5, 1)
    assert divmod(int(official[0, 0, 2]), 3) == (10, 2)


def test_high_frequency_components():
    constant = torch.full((2, 3, 32, 32), -1.3)
    hfc = high_frequency_components(constant, 0.25)
    assert hfc.shape == constant.shape and float(hfc.abs().max()) < 1e-5
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(high_frequency_components(x, 0.0), x.abs(), atol=1e-5, rtol=0)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    smooth = torch.cos(2 * torch.pi * xx / 32).expand(1, 3, 32, 32)  # lowest frequency: removed
    checker = ((xx + yy) % 2 * 2 - 1).expand(1, 3, 32, 32)  # Nyquist: kept
    assert float(high_frequency_components(smooth).abs().max()) < 1e-5
    torch.testing.assert_close(high_frequency_components(checker), checker.abs(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("train_decoder", [True, False])
def test_requires_grad_is_exactly_adapter_decoder_copy_and_no_mask_embed(train_decoder):
    sam = tiny_sam()
    vadapters.inject(sam, SAMAdapterConfig(scale_factor=8, train_decoder=train_decoder), adapter_name="a")
    trainable = {n for n, p in sam.named_parameters() if p.requires_grad}
    expected = {n for n, _ in sam.named_parameters() if ".prompt_generator.a." in n}
    expected |= {"prompt_encoder.no_mask_embed.adapter_weight.a"}
    if train_decoder:
        expected |= {n for n, _ in sam.named_parameters() if n.startswith("mask_decoder.decoder.a.")}
    assert trainable == expected
    assert {id(p) for p in _injector().adapter_parameters(sam, "a")} == {
        id(p) for p in sam.parameters() if p.requires_grad
    }
    n_prompt = sum(p.numel() for n, p in sam.named_parameters() if ".prompt_generator." in n)
    assert n_prompt == (32 * 4 + 4) + (3 * 64 * 4 + 4) + 2 * (4 * 4 + 4) + (4 * 32 + 32)


def test_frozen_tensors_bit_identical_after_training(tmp_path):
    from vadapters.train import train_adapter

    sam = tiny_sam()
    before = {k: v.clone() for k, v in sam.state_dict().items()}
    summary = train_adapter(
        "sam_adapter",
        base=sam,
        data="synthetic:camouflage",
        output_dir=tmp_path,
        steps=3,
        batch_size=2,
        num_items=6,
        learning_rate=1e-2,
        config_overrides={"scale_factor": 8},
        checkpoint_every=0,
    )
    after = sam.state_dict()
    originals = {  # where each original tensor lives once wrapped
        k: k.replace("image_encoder.patch_embed.", "image_encoder.patch_embed.base_layer.")
        .replace("mask_decoder.", "mask_decoder.base_layer.")
        .replace("prompt_encoder.no_mask_embed.", "prompt_encoder.no_mask_embed.base_layer.")
        for k in before
    }
    for key, value in before.items():
        assert torch.equal(after[originals[key]], value), key
    up = after["image_encoder.patch_embed.prompt_generator.sam_adapter.shared_up.weight"]
    assert up.abs().sum() > 0  # zero-init up-projection moved
    assert summary["trainable_parameters"] < summary["total_parameters"]
    assert {"S", "E", "wF", "MAE", "BER"} <= set(summary["validation"])


def test_batch_equals_single_calls_and_prompt_broadcast_trick():
    sam = tiny_sam()
    vadapters.inject(sam, SAMAdapterConfig(scale_factor=8, init="official"))
    x = _images(3)
    with torch.no_grad():
        batched = decode_masks(sam, sam.image_encoder(x))
        singles = torch.cat([decode_masks(sam, sam.image_encoder(x[i : i + 1])) for i in range(3)])
        torch.testing.assert_close(batched, singles, rtol=1e-5, atol=1e-5)
        # SAM's decoder repeats image embeddings per prompt: prompts expanded to B fail, batch-1 prompts broadcast
        sparse, dense = sam.prompt_encoder(None, None, None)
        with pytest.raises(RuntimeError):
            sam.mask_decoder(
                sam.image_encoder(x),
                sam.prompt_encoder.get_dense_pe(),
                sparse.expand(3, -1, -1),
                dense.expand(3, -1, -1, -1),
                False,
            )


def test_predictor_batch_equals_single_images_prompt_free_and_prompted():
    from vadapters.pipelines import SAMAdapterPredictor

    sam = tiny_sam()
    vadapters.inject(sam, SAMAdapterConfig(scale_factor=8, init="official"))
    predictor = SAMAdapterPredictor(sam)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in ((40, 64), (64, 30), (50, 50))]
    batch = predictor.predict_batch(images, return_logits=True)
    points = [np.array([[10.0, 12.0]]), None, np.array([[25.0, 25.0], [5.0, 5.0]])]
    prompted = predictor.predict_batch(images, point_coords=points, return_logits=True)
    for i, image in enumerate(images):
        predictor.set_image(image)
        masks, scores, low = predictor.predict(return_logits=True)
        assert masks.shape == (1, *image.shape[:2])
        np.testing.assert_allclose(batch[i][0], masks, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(batch[i][1], scores, rtol=1e-4, atol=1e-4)
        if points[i] is not None:
            masks, _, _ = predictor.predict(
                points[i], np.ones(len(points[i])), multimask_output=False, return_logits=True
            )
        np.testing.assert_allclose(prompted[i][0], masks, rtol=1e-4, atol=1e-4)
    assert predictor.predict(np.array([[10.0, 10.0]]), np.array([1]))[0].shape[0] == 3  # SAM default: 3 masks


def test_official_checkpoint_pth_round_trip(tmp_path):
    from vadapters.pipelines.sam import load_adapter

    config = SAMAdapterConfig(
        scale_factor=4, init="official", official_token_layout=True, official_positional_encoding=True
    )
    sam = tiny_sam()
    vadapters.inject(sam, config, adapter_name="a")
    with torch.no_grad():
        sam.prompt_encoder.pe_layer.gaussian_matrix["a"].positional_encoding_gaussian_matrix.normal_()
        sam.mask_decoder.decoder["a"].iou_token.weight.add_(1.0)
    x = _images()
    with torch.no_grad():
        expected = decode_masks(sam, sam.image_encoder(x))
    official = conv.to_official_state_dict(_injector().adapter_state_dict(sam, "a"))
    official["image_encoder.pos_embed"] = tiny_sam().image_encoder.pos_embed.detach()  # frozen SAM weights ride along
    assert "image_encoder.prompt_generator.lightweight_mlp_1.0.weight" in official
    assert "pe_layer.positional_encoding_gaussian_matrix" in official and "no_mask_embed.weight" in official
    path = tmp_path / "model_epoch_best.pth"
    torch.save({"model": {"name": "sam", "sd": official}}, path)
    fresh = tiny_sam()
    load_adapter(fresh, path)
    loaded = vadapters.get_adapter_config(fresh, "sam_adapter")
    assert (loaded.scale_factor, loaded.official_token_layout, loaded.official_positional_encoding) == (4, True, True)
    with torch.no_grad():
        assert torch.equal(decode_masks(fresh, fresh.image_encoder(x)), expected)


def _official_vit_b_state_dict():
    """Official SAM-Adapter key names with ViT-B shapes (C = 768, s = 32, 12 blocks, 256-wide decoder)."""
    from vadapters.models import sam_vit

    meta = sam_vit("vit_b", device="meta")
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g) * 0.02

    sd = {
        "image_encoder.prompt_generator.shared_mlp.weight": rand(768, 24),
        "image_encoder.prompt_generator.shared_mlp.bias": rand(768),
        "image_encoder.prompt_generator.embedding_generator.weight": rand(24, 768),
        "image_encoder.prompt_generator.embedding_generator.bias": rand(24),
        "image_encoder.prompt_generator.prompt_generator.proj.weight": rand(24, 3, 16, 16),
        "image_encoder.prompt_generator.prompt_generator.proj.bias": rand(24),
        "image_encoder.pos_embed": rand(1, 64, 64, 768),
        "image_encoder.blocks.0.norm1.weight": rand(768),  # frozen SAM weight: dropped
        "pe_layer.positional_encoding_gaussian_matrix": rand(2, 128),
        "no_mask_embed.weight": rand(1, 256),
    }
    for i in range(12):
        sd[f"image_encoder.prompt_generator.lightweight_mlp_{i}.0.weight"] = rand(24, 24)
        sd[f"image_encoder.prompt_generator.lightweight_mlp_{i}.0.bias"] = rand(24)
    for name, p in meta.mask_decoder.named_parameters():
        sd[f"mask_decoder.{name}"] = rand(*p.shape)
    return sd, meta


def test_official_vit_b_key_layout_converts_and_loads_strictly_into_real_size_sam():
    sd, meta_sam = _official_vit_b_state_dict()
    config, ours = conv.convert_state_dict({"model": {"sd": sd}})
    assert (config.scale_factor, config.base_signature) == (32, {"embed_dim": 768, "depth": 12, "img_size": 1024})
    assert config.official_token_layout and config.official_positional_encoding and config.train_decoder
    assert not any(k.startswith("image_encoder.blocks") for k in ours)
    vadapters.inject(meta_sam, config, adapter_name="official")
    slots = _injector().adapter_slots(meta_sam, "official")
    assert set(slots) == set(ours)  # exact key accounting, both ways
    vadapters.core.load_adapter_state_dict(meta_sam, "official", ours)  # strict: shapes and keys
    n_prompt = sum(v.numel() for k, v in ours.items() if ".prompt_generator." in k)
    assert n_prompt == 63_312  # the documented ViT-B adapter size
    back = conv.to_official_state_dict(ours)
    assert set(back) == set(sd) - {"image_encoder.pos_embed", "image_encoder.blocks.0.norm1.weight"}
    assert all(torch.equal(back[k], sd[k]) for k in back)


def test_bad_inputs_are_refused_clearly(tmp_path):
    with pytest.raises(vadapters.BadInputError, match="scale_factor"):
        SAMAdapterConfig(scale_factor=0)
    with pytest.raises(vadapters.BadInputError, match="nothing to train"):
        SAMAdapterConfig(use_embedding=False, use_hfc=False, train_decoder=False, train_no_mask_embed=False)
    with pytest.raises(vadapters.IncompatibleBaseError, match="adapter width"):
        vadapters.inject(tiny_sam(), SAMAdapterConfig(scale_factor=64))
    with pytest.raises(vadapters.IncompatibleBaseError, match="segment_anything Sam"):
        vadapters.inject(torch.nn.Linear(2, 2), SAMAdapterConfig())
    bad = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(2)}, bad)
    with pytest.raises(vadapters.CheckpointError, match="segment-anything checkpoint"):
        load_sam(str(bad))
    with pytest.raises(vadapters.CheckpointError, match="shared_mlp"):
        conv.convert(bad)
    sam = tiny_sam()
    vadapters.inject(sam, SAMAdapterConfig(scale_factor=8))
    assert isinstance(sam.image_encoder.patch_embed, PromptedPatchEmbed)
    vadapters.unload(sam)
    assert not any(b._forward_pre_hooks for b in sam.image_encoder.blocks)


def test_cli_segment_prompt_free_and_with_point(tmp_path):
    from PIL import Image

    from vadapters.cli import main
    from vadapters.synthetic.segmentation import CamouflageScenes, save_folder

    save_folder(CamouflageScenes(1, textures=["noise"]), tmp_path / "data", size=(40, 56))
    sam = load_sam(None)  # the CLI's default SAM (the embedded tiny-sam once it is committed)
    vadapters.inject(sam, SAMAdapterConfig(scale_factor=8, init="official"))
    vadapters.save_pretrained(sam, tmp_path / "adapter")
    image = str(tmp_path / "data" / "images" / "00000.png")
    assert (
        main(["segment", "--image", image, "--adapter", str(tmp_path / "adapter"), "--out", str(tmp_path / "a.png")])
        == 0
    )
    assert main(["segment", "--image", image, "--point", "10,12", "--out", str(tmp_path / "b.png")]) == 0
    assert Image.open(tmp_path / "a.png").size == (56, 40)


@pytest.mark.slow
def test_real_size_vit_b_zero_init_identity_and_overhead():
    """Real-size ViT-B (random deterministic weights) at 1024 px: identity at init and a working adapted forward."""
    from vadapters.models import sam_vit

    sam = sam_vit("vit_b", device="cpu", seed=0)
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        base = sam.image_encoder(x)
        vadapters.inject(sam, SAMAdapterConfig(), adapter_name="sam_adapter")
        assert torch.equal(sam.image_encoder(x), base)
        vadapters.set_adapters(sam, "sam_adapter")
        for p in _injector().adapter_parameters(sam, "sam_adapter"):
            p.add_(torch.randn_like(p) * 0.02)
        out = sam.image_encoder(x)
    assert out.shape == (1, 256, 64, 64) and not torch.equal(out, base)
