"""Bad input through the `vadapters` command line: one table, each row a command that must end with exit code 2
and one `error: ...` line (no traceback), writing nothing and changing no file; and Ctrl-C during training: one
line naming the checkpoint and the command to resume, exit code 130."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import types

import pytest
from bad_input_helpers import files, write_bad_images, write_config_with

import vadapters
from vadapters.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Adapters (good, with wrong config types, truncated) and bad images under one folder."""
    from vadapters.methods.res_adapter import ResAdapterConfig
    from vadapters.methods.sam_adapter import SAMAdapterConfig
    from vadapters.models import tiny_sam, tiny_sd_pipeline

    root = tmp_path_factory.mktemp("bad_input_cli")
    pipe = tiny_sd_pipeline()
    vadapters.inject(pipe, ResAdapterConfig(rank=2, alpha=2.0), adapter_name="res")
    vadapters.save_pretrained(pipe, root / "res", ["res"])
    vadapters.save_pretrained(pipe, root / "res.safetensors", ["res"], single_file=True)
    write_config_with(root / "alpha_list", root / "res", alpha=[1, 2])
    write_config_with(root / "norm_blend_text", root / "res", norm_blend="half")
    write_config_with(root / "use_lora_text", root / "res", use_lora="no")
    data = (root / "res.safetensors").read_bytes()
    (root / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    sam = tiny_sam()
    vadapters.inject(sam, SAMAdapterConfig(scale_factor=8), adapter_name="sam_adapter")
    vadapters.save_pretrained(sam, root / "sam", ["sam_adapter"])
    write_config_with(root / "sam_scale_text", root / "sam", scale_factor="8")
    images = write_bad_images(root / "images")
    return types.SimpleNamespace(root=root, images=images)


def _gen(*extra):
    return lambda w: ["generate", "--out", str(w.root / "out" / "image.png"), *extra]


def _train(*extra):
    return lambda w: ["train", "res_adapter", "--out", str(w.root / "out" / "run"), "--resolutions", "16", *extra]


def _segment(image, *extra):
    return lambda w: ["segment", "--image", w.images[image], "--out", str(w.root / "out" / "mask.png"), *extra]


def _cmd(*argv):
    return lambda w: list(argv)


CASES = [
    # sizes, steps and other numbers of `generate`
    ("generate height 100000", _gen("--height", "100000"), r"size 100000x32 is larger than 512 px per side"),
    ("generate steps 0", _gen("--steps", "0"), r"--steps must be an int >= 1, got 0"),
    ("generate steps -5", _gen("--steps", "-5"), r"--steps must be an int >= 1, got -5"),
    ("generate steps 5000", _gen("--steps", "5000"), r"--steps must be an int in \[1, 1000\], got 5000"),
    ("generate width 20", _gen("--width", "20"), r"size 32x20 is not a multiple of 8"),
    ("generate sweep malformed", _gen("--sweep", "16,x"), r"--sweep: cannot parse 'x'"),
    ("generate sweep zero", _gen("--sweep", "0"), r"--sweep: sizes must be positive"),
    ("generate sweep too large", _gen("--sweep", "16,1024"), r"size 1024x1024 is larger than 512 px"),
    ("generate guidance nan", _gen("--guidance-scale", "nan"), r"--guidance-scale must be a finite number"),
    ("generate scale 0", _gen("--scale", "0"), r"--scale must be an int in \[1, 64\], got 0"),
    ("generate prompt control", _gen("--prompt", "a\x01b"), r"--prompt contains control characters"),
    ("generate prompt too long", _gen("--prompt", "a" * 4001), r"--prompt has 4001 characters"),
    # adapter files: wrong config types, truncated, missing
    ("generate adapter alpha list", _gen("--adapter", "{root}/alpha_list"), r"alpha_list/adapter_config.json: .*alpha must be a number .*list \[1, 2\]"),
    ("generate adapter norm_blend text", _gen("--adapter", "{root}/norm_blend_text"), r"norm_blend must be a number .*'half'"),
    ("generate adapter use_lora text", _gen("--adapter", "{root}/use_lora_text"), r"use_lora must be true or false .*'no'"),
    ("generate adapter truncated file", _gen("--adapter", "{root}/truncated.safetensors"), r"truncated\.safetensors' is (corrupt or )?truncated"),
    ("generate adapter missing", _gen("--adapter", "{root}/nowhere"), r"adapter path not found"),
    ("info alpha list", _cmd("info", "{root}/alpha_list"), r"alpha_list/adapter_config.json: .*alpha must be a number"),
    ("info truncated file", _cmd("info", "{root}/truncated.safetensors"), r"is (corrupt or )?truncated"),
    ("export use_lora text", _cmd("export", "{root}/use_lora_text", "--out", "{root}/out/export"), r"use_lora must be true or false"),
    # training
    ("train resolutions 100000", _train("--resolutions", "100000"), r"size 100000x100000 is larger than 512 px per side"),
    ("train over memory", _train("--resolutions", "512", "--batch-size", "100000"), r"training at 512x512 with batch 100000 needs about [\d,.]+ GiB"),
    ("train resolutions malformed", _train("--resolutions", "16x"), r"resolutions: cannot parse '16x'"),
    ("train resolutions 20", _train("--resolutions", "20"), r"not multiples of 8"),
    ("train steps 0", _train("--steps", "0"), r"max_steps must be an int >= 1, got 0"),
    ("train steps -5", _train("--steps", "-5"), r"max_steps must be an int >= 1, got -5"),
    ("train batch 0", _train("--batch-size", "0"), r"batch_size must be None or an int >= 1, got 0"),
    ("train set use_lora text", _train("--set", "use_lora=no"), r"use_lora must be true or false .*'no'"),
    ("train set alpha list", _train("--set", "alpha=[1, 2]"), r"alpha must be a number .*list \[1, 2\]"),
    ("train set unknown field", _train("--set", "rnak=4"), r"has no field\(s\) \['rnak'\]"),
    # segment: images, points, boxes, adapters
    ("segment missing image", _segment("missing"), r"--image: file not found"),
    ("segment non-image", _segment("not_an_image"), r"--image: .* is not an image Pillow can read"),
    ("segment empty file", _segment("empty_file"), r"--image: .* is not an image Pillow can read"),
    ("segment truncated image", _segment("truncated"), r"--image: .* is truncated or corrupt"),
    ("segment 3x500 image", _segment("3x500"), r"--image: at least 8x8 pixels needed, got 3x500"),
    ("segment 1x1 image", _segment("1x1"), r"--image: at least 8x8 pixels needed, got 1x1"),
    ("segment point outside", _segment("good", "--point", "100,5"), r"point \(100, 5\) lies outside the 64x64 image"),
    ("segment negative point", _segment("good", "--point=-1,5"), r"lies outside the 64x64 image"),
    ("segment point malformed", _segment("good", "--point", "7"), r"--point expects 2 comma-separated numbers"),
    ("segment box outside", _segment("good", "--box", "0,0,80,10"), r"box \(0, 0, 80, 10\) must lie inside the 64x64 image"),
    ("segment box reversed", _segment("good", "--box", "10,10,2,20"), r"x0 < x1 and y0 < y1"),
    ("i2v missing image", _cmd("i2v", "--image", "{root}/images/missing.png", "--out", "{root}/out/v.gif"), r"--image: file not found"),
    ("i2v 1x1 image", _cmd("i2v", "--image", "{root}/images/dot.png", "--out", "{root}/out/v.gif"), r"--image: at least 8x8 pixels needed, got 1x1"),
    ("i2v frames 0", _cmd("i2v", "--image", "{root}/images/good.png", "--frames", "0", "--out", "{root}/out/v.gif"), r"--frames must be an int >= 1, got 0"),
    ("i2v frames 1000", _cmd("i2v", "--image", "{root}/images/good.png", "--frames", "1000", "--out", "{root}/out/v.gif"), r"--frames must be an int in \[1, \d+\], got 1000"),
    ("i2v height 100000", _cmd("i2v", "--image", "{root}/images/good.png", "--height", "100000", "--out", "{root}/out/v.gif"), r"size 100000x32 is larger than \d+ px per side"),
    ("i2v steps -5", _cmd("i2v", "--image", "{root}/images/good.png", "--steps=-5", "--out", "{root}/out/v.gif"), r"--steps must be an int >= 1, got -5"),
    ("generate image frames 0", _gen("--image", "{root}/images/good.png", "--frames", "0"), r"--frames must be an int >= 1, got 0"),
    ("segment adapter scale text", _segment("good", "--adapter", "{root}/sam_scale_text"), r"scale_factor must be an int, got str '8'"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_ends_in_one_error_line(world, capsys, argv, message):
    import re

    argv = [a.format(root=world.root) for a in argv(world)]
    before = files(world.root)
    assert main(argv) == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]  # beside progress bars
    assert len(errors) == 1 and "Traceback" not in captured.err + captured.out, captured.err
    assert re.search(message, errors[0]), errors[0]
    assert files(world.root) == before  # nothing written (no --out file, no run folder), nothing changed


def test_the_table_holds_every_case_once():
    assert len({c[0] for c in CASES}) == len(CASES)


def _train_argv(out):
    return ["train", "res_adapter", "--out", str(out), "--steps", "3", "--resolutions", "16", "--batch-size", "1",
            "--checkpoint-every", "100", "--set", "rank=2"]  # fmt: skip


def test_ctrl_c_prints_one_resume_line_and_the_rerun_resumes(tmp_path, capsys):
    from vadapters.train.trainer import observe_steps

    def interrupt_at_step_two(record):
        if record["step"] == 2:
            raise KeyboardInterrupt  # what Ctrl-C raises; the trainer treats both alike

    argv = _train_argv(tmp_path / "run")
    with observe_steps(interrupt_at_step_two):
        assert main(argv) == 130
    captured = capsys.readouterr()
    checkpoint = tmp_path / "run" / "checkpoints" / "step-2"
    lines = [line for line in captured.err.splitlines() if "Loading" not in line and line.strip()]  # progress bars
    assert lines == [
        f"interrupted: checkpoint saved at {checkpoint}; run the same command to resume: vadapters {' '.join(argv)}"
    ]
    assert "Traceback" not in captured.out + captured.err
    assert checkpoint.is_dir() and not (tmp_path / "run" / "adapter_model.safetensors").exists()
    assert main(argv) == 0
    assert '"resumed_from": 2' in capsys.readouterr().out
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file()


def test_sigint_during_train_exits_130_with_one_line(tmp_path):
    """A real Ctrl-C (SIGINT) to a `vadapters train` process."""
    out = tmp_path / "run"
    argv = [*_train_argv(out)]
    argv[argv.index("--steps") + 1] = "100000"
    argv[argv.index("--checkpoint-every") + 1] = "1"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VADAPTERS_NO_PROGRESS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vadapters.cli", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        deadline = time.time() + 300
        # Any complete checkpoint: at checkpoint-every 1 a fast machine writes and rotates step-1 away within one poll.
        while not any((out / "checkpoints").glob("step-*")):
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, "no checkpoint within 300 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = stderr.decode()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len([line for line in lines if "interrupted" in line]) == 1 and lines[-1].startswith(
        f"interrupted: checkpoint saved at {out / 'checkpoints' / 'step-'}"
    ), stderr
    assert lines[-1].endswith("run the same command to resume: vadapters " + " ".join(argv))
