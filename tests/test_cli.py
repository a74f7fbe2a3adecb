"""The `vadapters` CLI end to end on the embedded tiny pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from matrix_cases import perturb_adapter
from PIL import Image

import vadapters
from vadapters.cli import main
from vadapters.methods.res_adapter import ResAdapterConfig


@pytest.fixture
def saved_adapter(tmp_path):
    from vadapters.models import tiny_sd_pipeline

    pipe = tiny_sd_pipeline()
    vadapters.inject(pipe, ResAdapterConfig(rank=4, alpha=2.0), adapter_name="res")
    perturb_adapter(pipe.unet, "res", scale=0.3, seed=0)
    vadapters.save_pretrained(pipe, tmp_path / "res")
    return tmp_path / "res"


def test_entry_point_help_and_list():
    out = subprocess.run([sys.executable, "-m", "vadapters.cli", "--help"], capture_output=True, text=True, check=True)
    assert "generate" in out.stdout and "train" in out.stdout
    out = subprocess.run([sys.executable, "-m", "vadapters.cli", "list"], capture_output=True, text=True, check=True)
    assert "res_adapter" in out.stdout


def test_generate_with_adapter_compare_and_sweep(saved_adapter, tmp_path):
    out = tmp_path / "x.png"
    argv = ["generate", "--adapter", f"{saved_adapter}:0.8", "--height", "24", "--width", "40", "--steps", "2"]
    assert main([*argv, "--compare", "--out", str(out)]) == 0
    image = np.asarray(Image.open(out))
    assert image.shape == (24, 40 * 2 + 2, 3)
    left, right = image[:, :40], image[:, 42:]
    assert not np.array_equal(left, right), "adapter output must differ from the base"
    sweep = tmp_path / "sweep.png"
    assert (
        main(["generate", "--adapter", str(saved_adapter), "--sweep", "16,24x32", "--steps", "2", "--out", str(sweep)])
        == 0
    )
    assert np.asarray(Image.open(sweep)).shape == (24, 16 + 32 + 2, 3)


def test_info_and_export_round_trip(saved_adapter, tmp_path, capsys):
    assert main(["info", str(saved_adapter)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["method"] == "res_adapter" and info["tensors"] > 0
    assert main(["export", str(saved_adapter), "--to", "official", "--out", str(tmp_path / "off")]) == 0
    assert sorted(os.listdir(tmp_path / "off")) == [
        "diffusion_pytorch_model.safetensors",
        "pytorch_lora_weights.safetensors",
    ]
    assert main(["export", str(tmp_path / "off"), "--to", "vadapters", "--out", str(tmp_path / "back")]) == 0
    assert main(["export", str(saved_adapter), "--to", "single-file", "--out", str(tmp_path / "one.safetensors")]) == 0
    import torch

    from vadapters.models import tiny_sd_pipeline

    outs = []
    for source in (saved_adapter, tmp_path / "back", tmp_path / "one.safetensors"):
        pipe = tiny_sd_pipeline()
        vadapters.load(pipe, source)
        gen = torch.Generator().manual_seed(0)
        outs.append(pipe("a disc", height=16, width=24, num_inference_steps=2, generator=gen, output_type="np").images)
    np.testing.assert_allclose(outs[1], outs[0], atol=2e-3)  # official LoRA file is fp16
    np.testing.assert_array_equal(outs[2], outs[0])


def test_errors_are_reported_not_raised(tmp_path, capsys):
    (tmp_path / "bad.bin").write_bytes(b"\x80\x04junk")
    assert (
        main(["generate", "--adapter", str(tmp_path / "bad.bin"), "--steps", "1", "--out", str(tmp_path / "o.png")])
        == 2
    )
    assert "pickle" in capsys.readouterr().err


def test_train_then_resume_then_generate(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "res_adapter", "--out", str(out), "--batch-size", "2", "--resolutions", "16,24", "--rank", "2"]
    assert main([*argv, "--steps", "4", "--checkpoint-every", "2"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["steps"] == 4 and (out / "adapter_config.json").is_file()
    assert main([*argv, "--steps", "6", "--checkpoint-every", "2"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["steps"] == 6 and second["resumed_from"] == 4
    assert main(["generate", "--adapter", str(out), "--steps", "1", "--out", str(tmp_path / "g.png")]) == 0


def test_demo_quick_writes_a_page_whose_images_exist(tmp_path):
    import re

    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    page = (tmp_path / "index.html").read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) >= 7 and all((tmp_path / s).is_file() for s in sources)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["res_adapter"]["train_steps"] == 30 and "judge-shape-colour" in metrics["embedded_defaults"]


def test_generate_with_image_routes_to_image_to_video(tmp_path, capsys):
    first = np.zeros((32, 32, 3), np.uint8)
    first[8:20, 10:22] = (220, 40, 40)
    Image.fromarray(first).save(tmp_path / "first.png")
    argv = ["generate", "--image", str(tmp_path / "first.png"), "--pipeline", "tiny", "--frames", "4", "--steps", "2"]
    frames = []
    for seed in (0, 1):
        out = tmp_path / f"clip{seed}.gif"
        assert main([*argv, "--seed", str(seed), "--out", str(out)]) == 0
        with Image.open(out) as gif:
            assert gif.n_frames == 4 and gif.size == (32, 32)
            clip = []
            for i in range(4):
                gif.seek(i)
                clip.append(np.asarray(gif.convert("RGB"), dtype=np.int16))
        frames.append(clip)
    assert "4 frames" in capsys.readouterr().out
    # frame 0 is the given image, kept clean and never stepped: the seed changes frames 1..3, never frame 0
    assert np.abs(frames[0][0] - frames[1][0]).max() <= 8  # GIF palette quantisation only
    assert max(np.abs(a - b).mean() for a, b in zip(frames[0][1:], frames[1][1:])) > 2
