"""Bad input through vadapters studio, driven by `gradio_client` against an in-process launch: one table of
refused calls (each a readable `AppError`, the files under the root untouched), then the training queue: jobs
owned by their session (Stop stops only yours, others queue visibly, the heavy slot stays free), uploads
checked before they are unpacked and removed however the job ends, output files with the user's umask."""

from __future__ import annotations

import os
import re
import time
import types
import zipfile

import pytest

pytest.importorskip("gradio")
pytest.importorskip("gradio_client")

from bad_input_helpers import files, write_bad_images, write_config_with, zeros_zip  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """An allowed root with good and broken adapters, bad images and bad uploads; the studio serving it."""
    import vadapters
    from vadapters.apps.studio import build_demo, launch
    from vadapters.methods.res_adapter import ResAdapterConfig
    from vadapters.methods.sam_adapter import SAMAdapterConfig
    from vadapters.models import tiny_sam, tiny_sd_pipeline

    root = tmp_path_factory.mktemp("bad_input_studio")
    pipe = tiny_sd_pipeline()
    vadapters.inject(pipe, ResAdapterConfig(rank=2, alpha=2.0), adapter_name="res")
    vadapters.save_pretrained(pipe, root / "adapters" / "res", ["res"])
    vadapters.save_pretrained(pipe, root / "adapters" / "res.safetensors", ["res"], single_file=True)
    write_config_with(root / "adapters" / "alpha_list", root / "adapters" / "res", alpha=[1, 2])
    write_config_with(root / "adapters" / "use_lora_text", root / "adapters" / "res", use_lora="no")
    data = (root / "adapters" / "res.safetensors").read_bytes()
    (root / "adapters" / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    sam = tiny_sam()
    vadapters.inject(sam, SAMAdapterConfig(scale_factor=8), adapter_name="sam_adapter")
    vadapters.save_pretrained(sam, root / "adapters" / "sam", ["sam_adapter"])
    write_config_with(root / "adapters" / "sam_scale_text", root / "adapters" / "sam", scale_factor="8")
    images = write_bad_images(root / "images")
    uploads = root / "uploads"
    uploads.mkdir()
    zeros_zip(uploads / "zeros.zip", 150)
    with zipfile.ZipFile(uploads / "escape.zip", "w") as archive:
        archive.writestr("../../escaped.txt", "out")
    with zipfile.ZipFile(uploads / "data.zip", "w") as archive:
        archive.write(images["good"], "data/a.png")
        archive.writestr("data/a.txt", "a red disc")
    (uploads / "notes.zip").write_text("not a zip")
    (root / "work" / "uploads").mkdir(parents=True)  # the studio's own folder for unpacked uploads
    demo = build_demo([str(root)], workdir=str(root / "work"), max_queue=16)
    _, url, _ = launch(demo, host="127.0.0.1", port=None, prevent_thread_lock=True, quiet=True)
    try:
        yield types.SimpleNamespace(
            root=root, images=images, uploads=uploads, url=url, client=Client(url, verbose=False)
        )
    finally:
        demo.close()


def _segment(image="good", points="", box="", adapter="", ground_truth=None):
    def args(w):
        gt = handle_file(w.images[ground_truth]) if ground_truth else None
        return (handle_file(w.images[image]), "", adapter, points, box, gt)

    return "/segment", args


def _generate(adapters="", prompt="a red disc", steps=1, height=16, width=16, sweep=""):
    return "/generate", lambda w: ("", adapters, prompt, "", 0, steps, height, width, 1.0, False, sweep)


def _train(upload=None, steps=4, overrides="rank=2", resolutions="16", base="", run="bad-run"):
    def args(w):
        file = handle_file(str(w.uploads / upload)) if upload else None
        return ("res_adapter", base, "synthetic:shapes", file, steps, 1, 1e-3, overrides, resolutions, 0, run, False)

    return "/train", args


CASES = [
    # images: non-image, truncated, tiny and thin uploads reach the one loader instead of Gradio's preprocessing
    ("segment non-image upload", _segment("not_an_image"), r"image: .* is not an image Pillow can read"),
    ("segment empty upload", _segment("empty_file"), r"image: .* is not an image Pillow can read"),
    ("segment truncated upload", _segment("truncated"), r"image: .* is truncated or corrupt"),
    ("segment 1x1 upload", _segment("1x1"), r"at least 8x8 pixels needed, got 1x1"),
    ("segment 3x500 upload", _segment("3x500"), r"at least 8x8 pixels needed, got 3x500"),
    ("segment ground truth non-image", _segment(ground_truth="not_an_image"), r"ground truth: .* is not an image"),
    ("segment point outside", _segment(points="100,5"), r"point 100,5 lies outside the 64x64 image"),
    ("segment point malformed", _segment(points="1,2,3,4"), r"points are 'x,y' or 'x,y,label'"),
    ("segment box outside", _segment(box="0,0,80,10"), r"must lie inside the 64x64 image"),
    ("segment adapter wrong type", _segment(adapter="adapters/sam_scale_text"), r"scale_factor must be an int, got str '8'"),
    # generation: the model's size rules, adapter files, prompts
    ("generate sweep over the model's size", _generate(sweep="16,1024"), r"1024x1024 is larger than 512 px per side"),
    ("generate sweep malformed", _generate(sweep="16,x"), r"sweep sizes are comma-separated"),
    ("generate height off the grid", _generate(height=1020), r"multiples of 8"),
    ("generate steps 0", _generate(steps=0), r"minimum value 1|steps must be in"),
    ("generate adapter alpha list", _generate(adapters="adapters/alpha_list"), r"adapter_config.json: .*alpha must be a number .*list \[1, 2\]"),
    ("generate adapter use_lora text", _generate(adapters="adapters/use_lora_text"), r"use_lora must be true or false .*'no'"),
    ("generate adapter truncated", _generate(adapters="adapters/truncated.safetensors"), r"is (corrupt or )?truncated"),
    ("generate prompt control", _generate(prompt="a\x01b"), r"prompt contains control characters"),
    # training: sizes, config types, uploads
    ("train resolutions 100000", _train(resolutions="100000"), r"training failed: .*100000x100000 is larger than 512 px"),
    ("train resolutions malformed", _train(resolutions="16x"), r"resolutions: cannot parse '16x'"),
    ("train steps 0", _train(steps=0), r"minimum value 1|steps must be in"),
    ("train override use_lora text", _train(overrides="use_lora=no"), r"use_lora must be true or false .*'no'"),
    ("train override alpha list", _train(overrides="alpha=[1, 2]"), r"alpha must be a number .*list \[1, 2\]"),
    ("train override unknown", _train(overrides="rnak=2"), r"has no field\(s\) \['rnak'\]"),
    ("train zip bomb", _train(upload="zeros.zip"), r"unpacks 150 MiB from .* KiB \(more than 100:1, a zip bomb\?\)"),
    ("train zip escaping its folder", _train(upload="escape.zip"), r"points outside its folder"),
    ("train upload not a zip", _train(upload="notes.zip"), r"must be a \.zip of a folder"),
    ("train upload then bad base", _train(upload="data.zip", base="../../etc"), r"outside the allowed folders"),
    ("train upload then bad size", _train(upload="data.zip", resolutions="100000"), r"training failed: .*larger than 512 px"),
    ("train bad run name", _train(run="../escape"), r"run name must be"),
]  # fmt: skip


@pytest.mark.parametrize(("endpoint", "args", "message"), [c[1] + c[2:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_a_readable_error_and_changes_nothing(world, endpoint, args, message):
    before = files(world.root)
    with pytest.raises(AppError, match=message):
        world.client.predict(*args(world), api_name=endpoint)
    assert files(world.root) == before  # nothing unpacked left behind, no run folder, no file changed


def test_the_table_holds_every_case_once():
    assert len({c[0] for c in CASES}) == len(CASES)


def _wait_for(job, pattern, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for status, *_ in job.outputs():
            if re.search(pattern, status):
                return status
        assert not job.done(), f"ended before {pattern!r}: {job.outputs()[-1:] or job.result()}"
        time.sleep(0.2)
    raise AssertionError(f"no status matching {pattern!r} within {timeout} s")


def test_jobs_belong_to_their_session_and_queue_visibly(world):
    alice, bob = world.client, Client(world.url, verbose=False)
    args = ("res_adapter", "", "synthetic:shapes", None, 400, 1, 1e-3, "rank=2", "16", 0)
    job_a = alice.submit(*args, "alice-run", False, api_name="/train")
    _wait_for(job_a, r"running - step [1-9]")
    # Bob has nothing to stop, and his Stop does not reach Alice's job
    status, *_ = bob.predict(api_name="/train_stop")
    assert status == "You have no training job running or queued."
    job_b = bob.submit(*args, "bob-run", False, api_name="/train")
    assert "queued: 1 job(s) ahead of yours ('alice-run' of another session is training)" in _wait_for(job_b, "queued")
    # training does not hold the heavy slot: a segmentation runs while Alice's job trains
    gallery, _ = bob.predict(handle_file(world.images["good"]), "", "", "", "", None, api_name="/segment")
    assert len(gallery) == 1
    assert any("running" in status for status, *_ in job_a.outputs()[-1:])
    with pytest.raises(AppError, match="your training job 'alice-run' is still running"):
        alice.predict(*args, "alice-again", False, api_name="/train")
    # Alice stops her own job; Bob's starts
    _, _, _, info = alice.predict(api_name="/train_stop")
    assert info["state"] == "stopped" and info["adapter_files"]
    _wait_for(job_b, r"running - ")
    _, _, _, info = bob.predict(api_name="/train_stop")
    assert info["state"] == "stopped"
    # output files follow the server's umask (not mkstemp's 0600)
    umask = os.umask(0o022)
    os.umask(umask)
    run = world.root / "work" / "runs" / "alice-run"
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (run / name).stat().st_mode & 0o777 == 0o666 & ~umask


def test_an_upload_is_removed_when_its_job_ends(world):
    job = world.client.submit(
        "res_adapter", "", "", handle_file(str(world.uploads / "data.zip")), 1, 1, 1e-3, "rank=2", "16", 0,
        "upload-run", False, api_name="/train",
    )  # fmt: skip
    _, _, _, info = job.result(timeout=300)
    assert info["state"] == "finished"
    assert not list((world.root / "work" / "uploads").glob("*"))
