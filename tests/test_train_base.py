"""`vadapters train-base tiny-sd` end to end at toy length: both stages run, resume, and save a real pipeline."""

from __future__ import annotations

import json

from vadapters.cli import main


def test_train_base_tiny_sd_smoke_and_resume(tmp_path, capsys):
    argv = ["train-base", "tiny-sd", "--out", str(tmp_path), "--batch-size", "4", "--resolution", "16"]
    assert main([*argv, "--vae-steps", "2", "--unet-steps", "2", "--checkpoint-every", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["unet"]["steps"] == 2 and summary["vae_psnr_db"] > 0
    assert main([*argv, "--vae-steps", "2", "--unet-steps", "3", "--checkpoint-every", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["unet"]["resumed_from"] == 2 and summary["vae"]["steps_this_run"] == 0

    from vadapters.pipelines import load_pipeline

    pipe = load_pipeline(summary["pipeline"])
    image = pipe("a red star", height=16, width=16, num_inference_steps=2, output_type="np").images
    assert image.shape == (1, 16, 16, 3)
    # calibrated between the stages (unit-variance latents), and export_tiny_sd_checkpoint's VAE agrees
    from diffusers import AutoencoderKL

    stage1 = AutoencoderKL.from_pretrained(str(tmp_path / "stage1-vae" / "vae"))
    assert pipe.vae.config.scaling_factor == stage1.config.scaling_factor != 0.18215
