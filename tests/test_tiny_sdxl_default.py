"""`vadapters train-base tiny-sdxl` at toy length: a loadable SDXL pipeline on tiny-sd's frozen VAE, resume, errors."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from vadapters.errors import BadInputError, CheckpointError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory):
    """A tiny-sd folder of its own (not weights/), so nothing depends on the committed default."""
    from vadapters.models import tiny_sd_pipeline

    path = tmp_path_factory.mktemp("tiny-sd")
    tiny_sd_pipeline(seed=7).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def run(sd_dir, tmp_path_factory):
    from vadapters.train.base_sdxl import train_tiny_sdxl

    out = str(tmp_path_factory.mktemp("tiny-sdxl"))
    summary = train_tiny_sdxl(out, sd=sd_dir, unet_steps=2, batch_size=2, num_items=8, checkpoint_every=1)
    return out, summary


def _changed(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return any(not torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_recipe_trains_both_sdxl_text_encoders():
    from vadapters.models import tiny_sdxl_pipeline
    from vadapters.train.base import TINY_SD_SCENES, scene_source
    from vadapters.train.diffusion import DiffusionAdapterRecipe

    pipe = tiny_sdxl_pipeline()
    recipe = DiffusionAdapterRecipe(pipe, None, scene_source(4, 0, **TINY_SD_SCENES), "32", 2)
    assert set(recipe.model) == {"unet", "text_encoder", "text_encoder_2"}
    assert not any(p.requires_grad for p in pipe.vae.parameters())
    batch = recipe.collate([recipe.dataset[(i, 32, 32)] for i in range(2)])
    recipe.loss(batch, 0).backward()
    for name in ("unet", "text_encoder", "text_encoder_2"):
        grads = [p.grad for p in getattr(pipe, name).parameters() if p.grad is not None]
        assert grads and any(bool(g.abs().sum() > 0) for g in grads), name


def test_train_tiny_sdxl_writes_a_loadable_sdxl_pipeline(run, sd_dir):
    from diffusers import DDIMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    from vadapters.models import tiny_sdxl_pipeline

    out, summary = run
    assert summary["pipeline"] == os.path.join(out, "pipeline") and summary["unet"]["steps"] == 2
    assert summary["resumed_from"] is None and summary["sd"] == os.path.abspath(sd_dir)
    pipe = StableDiffusionXLPipeline.from_pretrained(summary["pipeline"], local_files_only=True)
    assert isinstance(pipe.scheduler, DDIMScheduler) and not pipe.config.force_zeros_for_empty_prompt
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a red disc", height=32, width=32, num_inference_steps=2, guidance_scale=2.0, output_type="np")
    assert image.images.shape == (1, 32, 32, 3)

    sd = StableDiffusionPipeline.from_pretrained(sd_dir, local_files_only=True)
    for a, b in zip(pipe.vae.state_dict().items(), sd.vae.state_dict().items()):
        assert a[0] == b[0] and torch.equal(a[1], b[1]), a[0]  # the VAE is tiny-sd's, bit for bit
    fresh = tiny_sdxl_pipeline(seed=0)
    assert _changed(pipe.unet, fresh.unet)
    assert _changed(pipe.text_encoder_2, fresh.text_encoder_2)
    assert _changed(pipe.text_encoder, sd.text_encoder)  # tiny-sd's encoder was the start, and it trained on


def test_rerun_with_more_steps_resumes(run, sd_dir, tmp_path):
    from vadapters.train.base_sdxl import train_tiny_sdxl

    out = str(tmp_path / "run")
    shutil.copytree(run[0], out)
    summary = train_tiny_sdxl(out, sd=sd_dir, unet_steps=3, batch_size=2, num_items=8, checkpoint_every=1)
    assert summary["resumed_from"] == 2 and summary["unet"]["steps"] == 3
    assert summary["unet"]["steps_this_run"] == 1


def test_bad_sd_folder_is_a_clear_error(run, tmp_path):
    from vadapters.train.base_sdxl import train_tiny_sdxl

    with pytest.raises(CheckpointError, match="not found.*train-base tiny-sd"):
        train_tiny_sdxl(str(tmp_path / "out"), sd=str(tmp_path / "missing"), unet_steps=1, batch_size=2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no model_index.json"):
        train_tiny_sdxl(str(tmp_path / "out"), sd=str(tmp_path / "empty"), unet_steps=1, batch_size=2)
    with pytest.raises(BadInputError, match="StableDiffusionXLPipeline.*tiny-sd"):
        train_tiny_sdxl(str(tmp_path / "out"), sd=run[1]["pipeline"], unet_steps=1, batch_size=2)


def test_cli_train_base_tiny_sdxl(sd_dir, tmp_path, capsys):
    from vadapters.cli import main

    out = str(tmp_path / "out")
    argv = ["train-base", "tiny-sdxl", "--sd", sd_dir, "--unet-steps", "1", "--batch-size", "2", "--out", out]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["unet"]["steps"] == 1
    assert os.path.isfile(os.path.join(out, "pipeline", "model_index.json"))
    assert main(["train-base", "tiny-sdxl", "--sd", str(tmp_path / "nope"), "--out", out]) == 2
    assert "train-base tiny-sd" in capsys.readouterr().err
