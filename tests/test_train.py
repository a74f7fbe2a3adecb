"""Training: synthetic discs, buckets, image folders, the Accelerate trainer, resume and interrupt."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vadapters
from vadapters.core.io import load_tensors
from vadapters.errors import BadInputError
from vadapters.methods.res_adapter import ResAdapterConfig
from vadapters.synthetic.discs import DiscScenes
from vadapters.train import (
    BucketBatchSampler,
    ImageCaptionFolder,
    Trainer,
    TrainingArguments,
    make_source,
    parse_resolutions,
    train_adapter,
)
from vadapters.train.checkpoints import list_checkpoints

TRAIN = {"resolutions": "16,24", "batch_size": 2, "learning_rate": 1e-3, "num_items": 8, "seed": 0}
CONFIG = {"rank": 4, "alpha": 2.0}


# ------------------------------------------------------------------------------------------------------ discs
def test_discs_are_deterministic_and_captioned():
    a, b = DiscScenes(6, seed=3), DiscScenes(6, seed=3)
    for i in range(6):
        x, y = a.render(i, 20, 28), b.render(i, 20, 28)
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["mask"], y["mask"])
        assert x["caption"] == y["caption"] == a.caption(i)
        scene = a.scene(i)
        assert x["caption"].startswith(f"a {scene.disc_color} disc on a ")
        assert scene.disc_color not in scene.background
        assert 0.15 <= scene.radius <= 0.3
    assert a.render(0, 16, 16)["caption"] != DiscScenes(6, seed=4).render(0, 16, 16)["caption"] or not torch.equal(
        a.render(0, 16, 16)["image"], DiscScenes(6, seed=4).render(0, 16, 16)["image"]
    )
    image = a.render(1, 16, 16)["image"]
    assert image.dtype == torch.float32 and image.shape == (3, 16, 16)
    assert image.min() >= -1 and image.max() <= 1
    with pytest.raises(ValueError, match="at least 3"):
        DiscScenes(2, palette={"red": (1, 0, 0), "blue": (0, 0, 1)})
    with pytest.raises(IndexError):
        a.render(6, 8, 8)


def test_disc_mask_matches_pixels_and_stays_inside():
    scenes = DiscScenes(8, seed=0, antialias=False)
    for i in range(8):
        for h, w in ((16, 16), (24, 40), (40, 24)):
            item = scenes.render(i, h, w)
            mask, image = item["mask"], item["image"]
            colour = torch.tensor(scenes.palette[item["scene"].disc_color]) * 2 - 1
            assert mask.any()
            assert torch.allclose(image[:, mask], colour[:, None], atol=1e-6)
            assert not torch.isclose(image[:, ~mask], colour[:, None], atol=1e-3).all(0).any()
            (cy, cx), r = item["scene"].center, item["radius_px"]
            assert r <= cy * h <= h - r and r <= cx * w <= w - r  # the whole disc is on the canvas
    # anti-aliased: the interior keeps the exact colour, the mask is unchanged
    soft = DiscScenes(8, seed=0).render(0, 32, 32)
    hard = scenes.render(0, 32, 32)
    assert torch.equal(soft["mask"], hard["mask"])
    inner = F.max_pool2d((~soft["mask"]).float()[None, None], 3, 1, 1)[0, 0] == 0
    assert torch.allclose(soft["image"][:, inner], hard["image"][:, inner], atol=1e-6)


def test_disc_layout_is_scale_invariant():
    scenes = DiscScenes(10, seed=1)
    for i in range(10):
        small = scenes.render(i, 32, 32)["mask"].float()[None, None]
        large = scenes.render(i, 96, 96)["mask"]
        resized = F.interpolate(small, size=(96, 96), mode="bilinear", align_corners=False)[0, 0] > 0.5
        iou = (resized & large).sum() / (resized | large).sum()
        assert iou > 0.9, (i, float(iou))


# ---------------------------------------------------------------------------------------------------- buckets
def test_parse_resolutions():
    assert parse_resolutions("16,24x32,32") == [(16, 16), (24, 32), (32, 32)]
    assert parse_resolutions(" 16 , 16X24 ") == [(16, 16), (16, 24)]
    assert parse_resolutions([16, (24, 32), "8x8"]) == [(16, 16), (24, 32), (8, 8)]
    assert parse_resolutions(16) == [(16, 16)]
    for bad in ("", "16,,24", "16x", "axb", "0", "16x-8", [], [1.5]):
        with pytest.raises(ValueError):
            parse_resolutions(bad)


def test_bucket_sampler_properties():
    res = [(16, 16), (24, 32), (32, 32)]
    sampler = BucketBatchSampler(10, 3, res, seed=5)
    assert len(sampler) == 3
    batches = list(sampler)
    assert len(batches) == 3 and all(len(b) == 3 for b in batches)
    assert all(len({(h, w) for _, h, w in b}) == 1 for b in batches)
    indices = [i for b in batches for i, _, _ in b]
    assert len(set(indices)) == 9 and set(indices) <= set(range(10))
    assert batches == list(BucketBatchSampler(10, 3, res, seed=5))  # same (seed, epoch) -> same batches
    sampler.set_epoch(1)
    assert list(sampler) != batches and list(sampler) == sampler.batches(1)
    assert list(BucketBatchSampler(10, 3, res, seed=6)) != batches
    keep = BucketBatchSampler(10, 3, res, drop_last=False, shuffle=False)
    assert len(keep) == 4 and [i for b in keep for i, _, _ in b] == list(range(10))
    used = {b[0][1:] for e in range(20) for b in sampler.batches(e)}
    assert used == set(res)
    with pytest.raises(ValueError, match="larger than the dataset"):
        BucketBatchSampler(2, 3, res)


# ------------------------------------------------------------------------------------------------------- data
def _write_png(path, size, colour):
    from PIL import Image

    Image.new("RGB", size, colour).save(path)


def test_image_caption_folder(tmp_path):
    _write_png(tmp_path / "a.png", (40, 20), (255, 0, 0))
    (tmp_path / "a.txt").write_text("a red thing\n")
    os.makedirs(tmp_path / "sub")
    _write_png(tmp_path / "sub" / "b.png", (16, 16), (0, 0, 255))
    _write_png(tmp_path / "c.png", (20, 30), (0, 255, 0))
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "sub/b.png", "text": "blue"}) + "\n")
    folder = make_source(str(tmp_path))
    assert isinstance(folder, ImageCaptionFolder) and len(folder) == 3
    assert [folder.caption(i) for i in range(3)] == ["a red thing", "", "blue"]
    item = folder.load(0, 16, 24)
    assert item["image"].shape == (3, 16, 24) and item["caption"] == "a red thing"
    assert torch.allclose(item["image"][:, 4, 4], torch.tensor([1.0, -1.0, -1.0]), atol=0.02)
    assert folder.load(1, 8, 8)["image"].shape == (3, 8, 8)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    folder = ImageCaptionFolder(tmp_path)
    with pytest.raises(BadInputError, match="broken.jpg"):
        folder.load(folder.files.index(str(tmp_path / "broken.jpg")), 8, 8)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInputError, match="no images"):
        ImageCaptionFolder(empty)
    with pytest.raises(BadInputError, match="neither"):
        make_source(str(tmp_path / "missing"))
    assert make_source("synthetic:discs", num_items=3).load(2, 16, 8)["image"].shape == (3, 16, 8)


# ---------------------------------------------------------------------------------------------------- trainer
def _recipe(seed=0, cls=None, **kwargs):
    from vadapters.models import load_pipeline
    from vadapters.train.diffusion import DiffusionAdapterRecipe

    cls = cls or DiffusionAdapterRecipe
    source = make_source("synthetic", num_items=TRAIN["num_items"], seed=seed)
    return cls(
        load_pipeline(None),  # the one default base, as train_adapter(base=None)
        ResAdapterConfig(**CONFIG),
        source,
        TRAIN["resolutions"],
        TRAIN["batch_size"],
        adapter_name="res_adapter",
        seed=seed,
        **kwargs,
    )


def _args(out, steps, **kwargs):
    return TrainingArguments(output_dir=str(out), max_steps=steps, learning_rate=TRAIN["learning_rate"], **kwargs)


def _adapter(out):
    return load_tensors(os.path.join(out, "adapter_model.safetensors"))[0]


def test_training_changes_only_the_adapter(tmp_path):
    recipe = _recipe(validation_prompts=["a red disc"], validation_kwargs={"num_inference_steps": 2})
    pipe = recipe.pipe
    trainable = {id(p) for p in recipe.trainable_parameters()}
    assert trainable and all(p.requires_grad for p in recipe.trainable_parameters())

    def frozen_tensors():
        out = {}
        for part in ("unet", "vae", "text_encoder"):
            module = getattr(pipe, part)
            for name, t in [*module.named_parameters(), *module.named_buffers()]:
                if id(t) not in trainable:
                    out[f"{part}.{name}"] = t.detach().clone()
        return out

    before_frozen = frozen_tensors()
    before = {k: v.clone() for k, v in recipe.model.state_dict().items()}
    summary = Trainer(recipe, _args(tmp_path, 4, checkpoint_every=2, validate_every=4, log_every=1)).train()
    assert summary["steps"] == 4 and np.isfinite(summary["final_loss"])
    after_frozen = frozen_tensors()
    assert before_frozen.keys() == after_frozen.keys()
    assert all(torch.equal(before_frozen[k], after_frozen[k]) for k in before_frozen)
    after = recipe.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all(("lora_" in k or ".norm_" in k) for k in changed)
    assert any("lora_up" in k for k in changed)  # zero-initialised up-projections moved
    # checkpoints: complete, the last two kept; log lines; validation grid; saved adapter matches the model
    assert [s for s, _ in list_checkpoints(str(tmp_path))] == [2, 4]
    for _, path in list_checkpoints(str(tmp_path)):
        names = set(os.listdir(path))
        assert {"trainer_state.json", "trainable_parameters.safetensors", "optimizer.bin", "scheduler.bin"} <= names
    assert not [n for n in os.listdir(tmp_path / "checkpoints") if n.startswith(".tmp")]
    lines = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    steps = [x for x in lines if "loss" in x]
    assert [x["step"] for x in steps] == [1, 2, 3, 4] and all(np.isfinite(x["loss"]) for x in steps)
    assert {"step", "loss", "lr", "seconds"} <= set(steps[0])
    assert (tmp_path / "validation" / "step-4.png").is_file()
    from vadapters.methods.res_adapter import ResAdapterInjector
    from vadapters.models import tiny_sd_pipeline

    saved = _adapter(str(tmp_path))
    ours = ResAdapterInjector().adapter_state_dict(recipe.model, "res_adapter")
    fresh = vadapters.load(tiny_sd_pipeline(), str(tmp_path), adapter_name="res")
    theirs = ResAdapterInjector().adapter_state_dict(fresh.unet, "res")
    assert saved.keys() == ours.keys() == theirs.keys()
    assert all(torch.equal(saved[k], ours[k]) and torch.equal(saved[k], theirs[k]) for k in saved)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("full"))
    summary = train_adapter(
        "res_adapter", output_dir=out, steps=6, config_overrides=CONFIG, checkpoint_every=3, **TRAIN
    )
    assert summary["steps"] == 6 and summary["resumed_from"] is None
    return _adapter(out)


def test_resume_matches_uninterrupted_run(tmp_path, uninterrupted):
    out = str(tmp_path)
    first = train_adapter("res_adapter", output_dir=out, steps=3, config_overrides=CONFIG, checkpoint_every=3, **TRAIN)
    assert first["steps"] == 3
    second = train_adapter(
        "res_adapter", output_dir=out, steps=6, config_overrides=CONFIG, checkpoint_every=3, **TRAIN
    )
    assert second["resumed_from"] == 3 and second["steps_this_run"] == 3
    resumed = _adapter(out)
    assert resumed.keys() == uninterrupted.keys()
    for key in resumed:
        assert torch.equal(resumed[key], uninterrupted[key]), key
    with open(os.path.join(out, "train_log.jsonl")) as fh:
        log = [json.loads(x)["step"] for x in fh]
    assert log == [3, 6]  # log_every=10: the last step of each run


def test_keyboard_interrupt_leaves_a_resumable_checkpoint(tmp_path, uninterrupted):
    from vadapters.train.diffusion import DiffusionAdapterRecipe

    class Interrupted(DiffusionAdapterRecipe):
        def loss(self, batch, step):
            value = super().loss(batch, step)  # draws noise first: the checkpoint must not see that
            if step == 2:
                raise KeyboardInterrupt
            return value

    with pytest.raises(KeyboardInterrupt):
        Trainer(_recipe(cls=Interrupted), _args(tmp_path, 6, checkpoint_every=100)).train()
    assert [s for s, _ in list_checkpoints(str(tmp_path))] == [2]
    assert not (tmp_path / "adapter_model.safetensors").exists()
    summary = Trainer(_recipe(), _args(tmp_path, 6, checkpoint_every=100)).train()
    assert summary["resumed_from"] == 2 and summary["steps"] == 6
    resumed = _adapter(str(tmp_path))
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)


def test_train_adapter_rejects_bad_input(tmp_path, monkeypatch):
    with pytest.raises(BadInputError, match="multiples of 8"):
        train_adapter("res_adapter", output_dir=str(tmp_path), resolutions="16,20", steps=1)
    with pytest.raises(BadInputError, match="no field"):
        train_adapter("res_adapter", output_dir=str(tmp_path), steps=1, config_overrides={"rnak": 4})
    with pytest.raises(BadInputError, match="unknown training option"):
        train_adapter("res_adapter", output_dir=str(tmp_path), steps=1, max_stepz=3)
    with pytest.raises(BadInputError, match="max_steps"):
        TrainingArguments(output_dir=str(tmp_path), max_steps=0)
    from dataclasses import replace

    from vadapters.core import registry

    spec = registry.get_method("res_adapter")
    monkeypatch.setitem(registry._REGISTRY, "fake_timm", replace(spec, name="fake_timm", hosts=("timm",)))
    with pytest.raises(BadInputError, match="diffusion adapters"):
        train_adapter("fake_timm", output_dir=str(tmp_path), steps=1)


def test_sdxl_loss_runs():
    from vadapters.models import tiny_sdxl_pipeline
    from vadapters.train.diffusion import DiffusionAdapterRecipe

    recipe = DiffusionAdapterRecipe(
        tiny_sdxl_pipeline(), ResAdapterConfig(**CONFIG), make_source("synthetic", 4), 32, 2
    )
    batch = recipe.collate([recipe.dataset[(i, 32, 32)] for i in range(2)])
    loss = recipe.loss(batch, 0)
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None for p in recipe.trainable_parameters())


def test_learning_rate_schedule_and_arguments(tmp_path):
    from vadapters.train.trainer import _lr_lambda

    constant, cosine = _lr_lambda(2, 6, "constant"), _lr_lambda(2, 6, "cosine")
    assert [constant(i) for i in range(4)] == [0.5, 1.0, 1.0, 1.0]
    assert [round(cosine(i), 6) for i in (0, 1, 2, 4, 6)] == [0.5, 1.0, 1.0, 0.5, 0.0]
    assert "output_dir = (required)" in TrainingArguments.help()
    with pytest.raises(BadInputError, match="lr_scheduler"):
        TrainingArguments(output_dir=str(tmp_path), lr_scheduler="linear")


def test_method_trainers_refuse_typos_before_loading_models(tmp_path):
    """SAM-Adapter and MV-Adapter training share the checks of `train_adapter` (unknown options / config fields)."""
    for method in ("sam_adapter", "mv_adapter", "i2v_adapter"):
        with pytest.raises(BadInputError, match="unknown training option"):
            train_adapter(method, output_dir=str(tmp_path), steps=1, max_stepz=3)
        with pytest.raises(BadInputError, match="has no field"):
            train_adapter(method, output_dir=str(tmp_path), steps=1, config_overrides={"no_such_field": 1})
