"""tiny-animatediff: the MotionAdapter fits tiny-sd, training touches only the motion modules, runs resume, the
saved adapter loads into an AnimateDiffPipeline, and the motion metric tells moving clips from still ones."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from vadapters.errors import CheckpointError, IncompatibleBaseError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory):
    from vadapters.models import tiny_sd_pipeline

    path = tmp_path_factory.mktemp("tiny-sd") / "pipeline"
    tiny_sd_pipeline(seed=0, scheduler="ddpm").save_pretrained(path, safe_serialization=True)
    return path


def test_untrained_adapter_is_the_image_model_on_every_frame():
    from diffusers import UNetMotionModel

    from vadapters.models import tiny_unet
    from vadapters.models.video import tiny_motion_adapter

    unet2d = tiny_unet()
    unet = UNetMotionModel.from_unet2d(unet2d, tiny_motion_adapter(unet2d.config)).eval()
    b, f = 2, 8
    gen = torch.Generator().manual_seed(0)
    x, text = torch.randn(b, 4, f, 8, 8, generator=gen), torch.randn(b, 77, 32, generator=gen)
    t = torch.tensor([900, 10])
    with torch.no_grad():
        video = unet(x, t, encoder_hidden_states=text.repeat_interleave(f, 0)).sample
        frames = unet2d(
            x.transpose(1, 2).flatten(0, 1), t.repeat_interleave(f), encoder_hidden_states=text.repeat_interleave(f, 0)
        ).sample
    torch.testing.assert_close(video.transpose(1, 2).flatten(0, 1), frames, atol=1e-5, rtol=0)
    # ... and with a non-zero output projection the frames are no longer independent
    with torch.no_grad():
        unet.down_blocks[0].motion_modules[0].proj_out.weight.normal_(generator=gen)
        changed = unet(x, t, encoder_hidden_states=text.repeat_interleave(f, 0)).sample
    assert (changed - video).abs().max() > 1e-3


def test_mismatched_adapter_and_missing_folders_are_explained(tmp_path, monkeypatch, sd_dir):
    from vadapters.models import tiny_sd_pipeline
    from vadapters.models.video import animatediff_from_sd, load_animatediff_pipeline, tiny_motion_adapter

    config = {**tiny_sd_pipeline().unet.config, "block_out_channels": (32, 64)}
    with pytest.raises(IncompatibleBaseError, match="tiny_motion_adapter"):
        animatediff_from_sd(tiny_sd_pipeline(), tiny_motion_adapter(config))
    monkeypatch.setenv("VADAPTERS_WEIGHTS", str(tmp_path))  # an empty weights/ folder
    with pytest.raises(CheckpointError, match="train-base tiny-sd"):
        load_animatediff_pipeline()
    with pytest.raises(CheckpointError, match="train-base tiny-animatediff"):
        load_animatediff_pipeline(sd_dir)
    with pytest.raises(CheckpointError, match="no config.json"):
        load_animatediff_pipeline(sd_dir, tmp_path)


def test_recipe_trains_only_motion_modules(sd_dir, tmp_path):
    from vadapters.models.video import motion_state_dict, tiny_motion_adapter
    from vadapters.pipelines import load_pipeline
    from vadapters.synthetic.motion import MotionClips
    from vadapters.train.trainer import Trainer, TrainingArguments
    from vadapters.train.video import MotionModuleRecipe

    sd = load_pipeline(str(sd_dir))
    before = {f"{name}.{k}": v.clone() for name in ("unet", "vae", "text_encoder")
              for k, v in getattr(sd, name).state_dict().items()}  # fmt: skip
    recipe = MotionModuleRecipe(sd, tiny_motion_adapter(sd.unet.config), MotionClips(8, size=(16, 16)), 16, 2)
    motion_before = {k: v.clone() for k, v in motion_state_dict(recipe.unet).items()}
    args = TrainingArguments(tmp_path, max_steps=2, learning_rate=1e-3, batch_size=2, checkpoint_every=0)
    Trainer(recipe, args).train()
    spatial = {k: v for k, v in recipe.unet.state_dict().items() if ".motion_modules." not in k}
    assert spatial and all(torch.equal(v, before[f"unet.{k}"]) for k, v in spatial.items())
    for name in ("vae", "text_encoder"):
        assert all(torch.equal(v, before[f"{name}.{k}"]) for k, v in getattr(sd, name).state_dict().items())
    motion_after = motion_state_dict(recipe.unet)
    changed = [k for k in motion_after if not torch.equal(motion_after[k], motion_before[k])]
    assert any(k.endswith("proj_out.weight") for k in changed), "the zero-initialised outputs must learn"
    assert sum(recipe.motion_adapter_state().state_dict()["down_blocks.0.motion_modules.0.proj_out.weight"].abs()
               .flatten()) > 0  # fmt: skip


def test_train_base_tiny_animatediff_cli_resumes_and_loads(sd_dir, tmp_path, capsys):
    from vadapters.cli import main
    from vadapters.models.video import load_animatediff_pipeline

    argv = ["train-base", "tiny-animatediff", "--sd", str(sd_dir), "--out", str(tmp_path), "--batch-size", "2"]
    argv += ["--resolution", "16", "--checkpoint-every", "1", "--eval-clips", "0"]
    assert main([*argv, "--steps", "2"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["train"]["steps"] == 2 and first["train"]["resumed_from"] is None
    assert main([*argv, "--steps", "3"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["train"]["resumed_from"] == 2 and summary["train"]["steps_this_run"] == 1
    assert json.loads((tmp_path / "summary.json").read_text())["train"]["steps"] == 3
    folder = tmp_path / "motion_adapter"
    assert (folder / "diffusion_pytorch_model.safetensors").is_file() and not list(folder.glob("*.bin"))
    pipe = load_animatediff_pipeline(sd_dir, folder)
    out = pipe("a red square moving left slowly", num_frames=8, num_inference_steps=2, height=16, width=16,
               output_type="np")  # fmt: skip
    assert out.frames.shape == (1, 8, 16, 16, 3) and np.isfinite(out.frames).all()


def test_motion_metric_separates_moving_from_independent_frames():
    from vadapters.synthetic.motion import MotionClips
    from vadapters.train.video import direction_accuracy, estimate_motion, frame_difference

    clips = MotionClips(24, seed=11, size=(32, 32))
    truth = [clips.render(i)["frames"] for i in range(24)]
    captions = [clips.caption(i) for i in range(24)]
    assert direction_accuracy(truth, captions) >= 0.9
    # the same first frames, every frame an unrelated still: no consistent motion
    stills = [torch.stack([truth[(i + k) % 24][0] for k in range(8)]) for i in range(24)]
    assert direction_accuracy(stills, captions) < 0.5
    assert frame_difference(stills) > 5 * frame_difference(truth)
    vx, vy = estimate_motion(torch.stack([truth[0][0]] * 8))  # a still clip does not move
    assert abs(vx) < 1e-9 and abs(vy) < 1e-9


@pytest.mark.slow
def test_train_summary_reports_trained_and_untrained_metrics(sd_dir, tmp_path):
    from vadapters.train.video import train_tiny_animatediff

    summary = train_tiny_animatediff(
        tmp_path, sd_dir, steps=1, batch_size=2, resolution=16, checkpoint_every=0, eval_clips=2, eval_steps=2
    )
    metrics = json.loads((tmp_path / "summary.json").read_text())["metrics"]
    assert metrics == json.loads(json.dumps(summary["metrics"]))
    assert (
        set(metrics["trained"]) == {"direction_accuracy", "frame_diff", "clips"} and metrics["trained"]["clips"] == 2
    )
    assert metrics["ground_truth_direction_accuracy"] >= 0.5 and 0 <= metrics["untrained"]["direction_accuracy"] <= 1


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_uninterrupted_result(sd_dir, tmp_path):
    from safetensors.torch import load_file

    from vadapters.train.trainer import observe_steps
    from vadapters.train.video import train_tiny_animatediff

    def stop_at_2(record):
        if record["step"] == 2:
            raise KeyboardInterrupt

    options = {"steps": 3, "batch_size": 2, "resolution": 16, "checkpoint_every": 0, "eval_clips": 0}
    with observe_steps(stop_at_2), pytest.raises(KeyboardInterrupt):
        train_tiny_animatediff(tmp_path / "resumed", sd_dir, **options)
    assert train_tiny_animatediff(tmp_path / "resumed", sd_dir, **options)["train"]["resumed_from"] == 2
    train_tiny_animatediff(tmp_path / "straight", sd_dir, **options)
    resumed, straight = (load_file(tmp_path / run / "motion_adapter" / "diffusion_pytorch_model.safetensors")
                         for run in ("resumed", "straight"))  # fmt: skip
    assert resumed.keys() == straight.keys()
    assert all(torch.equal(resumed[k], straight[k]) for k in resumed)


def test_recipe_can_train_the_text_encoder_too(sd_dir, tmp_path):
    from transformers import CLIPTextModel

    from vadapters.models.video import tiny_motion_adapter
    from vadapters.pipelines import load_pipeline
    from vadapters.synthetic.motion import MotionClips
    from vadapters.train.trainer import Trainer, TrainingArguments
    from vadapters.train.video import MotionModuleRecipe

    sd = load_pipeline(str(sd_dir))
    before = {
        name: {k: v.clone() for k, v in getattr(sd, name).state_dict().items()} for name in ("vae", "text_encoder")
    }
    spatial_before = {k: v.clone() for k, v in sd.unet.state_dict().items()}
    clips = MotionClips(8, size=(16, 16))
    recipe = MotionModuleRecipe(sd, tiny_motion_adapter(sd.unet.config), clips, 16, 2, train_text_encoder=True)
    assert set(recipe.model) == {"unet", "text_encoder"}
    assert {id(p) for p in sd.text_encoder.parameters()} <= {id(p) for p in recipe.trainable_parameters()}
    args = TrainingArguments(tmp_path, max_steps=2, learning_rate=1e-3, batch_size=2, checkpoint_every=0)
    Trainer(recipe, args).train()
    assert all(torch.equal(v, before["vae"][k]) for k, v in sd.vae.state_dict().items())
    spatial = {k: v for k, v in recipe.unet.state_dict().items() if ".motion_modules." not in k}
    assert all(torch.equal(v, spatial_before[k]) for k, v in spatial.items())
    trained = sd.text_encoder.state_dict()
    assert any(not torch.equal(v, before["text_encoder"][k]) for k, v in trained.items())
    saved = recipe.save(str(tmp_path / "out"))
    assert [os.path.basename(p) for p in saved] == ["motion_adapter", "text_encoder"]
    reloaded = CLIPTextModel.from_pretrained(saved[1], local_files_only=True).state_dict()
    assert reloaded.keys() == trained.keys() and all(torch.equal(reloaded[k], v) for k, v in trained.items())
