"""vadapters studio through `gradio_client` against an in-process launch on 127.0.0.1 (tiny models, few steps)."""

from __future__ import annotations

import os
import time
import warnings

import numpy as np
import pytest

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """An allowed root holding a fresh (untrained) ResAdapter and SAM-Adapter, as a user's own folders."""
    import vadapters
    from vadapters.methods.res_adapter import ResAdapterConfig
    from vadapters.methods.sam_adapter import SAMAdapterConfig
    from vadapters.models import load_sam
    from vadapters.pipelines import load_pipeline

    root = tmp_path_factory.mktemp("studio_root")
    pipe = load_pipeline(None)
    vadapters.inject(pipe, ResAdapterConfig(rank=2, alpha=2.0), adapter_name="res")
    vadapters.save_pretrained(pipe, str(root / "adapters" / "res"), ["res"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sam = load_sam(None)
    vadapters.inject(sam, SAMAdapterConfig(scale_factor=8), adapter_name="sam_adapter")
    vadapters.save_pretrained(sam, str(root / "adapters" / "sam"), ["sam_adapter"])
    return root


@pytest.fixture(scope="module")
def client(root):
    from vadapters.apps.studio import build_demo, launch

    demo = build_demo([str(root)], max_queue=8)
    _, url, _ = launch(demo, host="127.0.0.1", port=None, prevent_thread_lock=True, quiet=True)
    assert url.startswith("http://127.0.0.1:")
    try:
        yield Client(url, verbose=False)
    finally:
        demo.close()


def _image(item) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(item["image"]))


def test_build_demo_loads_no_model_and_sets_api_names_and_queue(monkeypatch, tmp_path):
    import vadapters.models
    import vadapters.pipelines
    import vadapters.tta.runner
    from vadapters.apps.cache import CACHE
    from vadapters.apps.studio import HEAVY_CONCURRENCY_ID, build_demo

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded while building the app")

    monkeypatch.setattr(vadapters.pipelines, "load_pipeline", refuse)
    monkeypatch.setattr(vadapters.models, "load_sam", refuse)
    monkeypatch.setattr(vadapters.tta.runner, "load_classifier", refuse)
    before = CACHE.keys()
    demo = build_demo([str(tmp_path)], max_queue=5)
    assert CACHE.keys() == before
    fns = {d.api_name: d for d in demo.fns.values() if d.fn is not None}
    for name in ("generate", "generate_multiview", "image_to_video", "segment", "adapt"):
        assert fns[name].concurrency_id == HEAVY_CONCURRENCY_ID
        assert fns[name].concurrency_limit == 1
    assert fns["train"].concurrency_id != HEAVY_CONCURRENCY_ID  # a training job must not hold the heavy slot
    assert fns["train_stop"].concurrency_id != HEAVY_CONCURRENCY_ID  # Stop must not wait behind training
    assert demo._queue.max_size == 5


def test_generate_with_adapter_side_by_side_and_sweep(client):
    gallery, info = client.predict(
        "", "adapters/res:0.7", "a red circle", "", 0, 2, 32, 32, 1.0, True, "16,24x32", api_name="/generate"
    )
    assert [g["caption"] for g in gallery] == [
        "16x16 without adapters",
        "16x16 with adapters",
        "24x32 without adapters",
        "24x32 with adapters",
    ]
    assert _image(gallery[2]).shape[:2] == (24, 32)
    assert info["adapters"] == {"adapter0": 0.7}
    listed = client.predict(api_name="/generate_list_adapters")
    assert "adapters/res" in str(listed)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", "", "a red circle", "", 0, 2, 30, 32, 1.0, False, ""), "multiples of 8"),
        (("", "../../etc:1", "a red circle", "", 0, 2, 32, 32, 1.0, False, ""), "outside the allowed folders"),
        (("/etc", "", "a red circle", "", 0, 2, 32, 32, 1.0, False, ""), "outside the allowed folders"),
        (("", "", "", "", 0, 2, 32, 32, 1.0, False, ""), "prompt"),
        (("", "", "a red circle", "", 0, 500, 32, 32, 1.0, False, ""), "maximum value 100|steps must be in"),
    ],
)
def test_generate_rejects_bad_input_readably(client, args, message):
    with pytest.raises(AppError, match=message):
        client.predict(*args, api_name="/generate")


@pytest.fixture(scope="module")
def mv_adapter(root):
    """An MV-Adapter folder under the root whose multi-view output projections are non-zero (a fresh one would
    leave the views exactly as the base model draws them)."""
    import torch

    import vadapters
    from vadapters.methods.mv_adapter import MVAdapterConfig
    from vadapters.pipelines import load_pipeline

    pipe = load_pipeline(None)
    vadapters.inject(pipe, MVAdapterConfig(num_views=4, topology="full"), adapter_name="mv")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in pipe.unet.named_parameters():
            if "to_out_mv" in name:
                param.copy_(0.2 * torch.randn(param.shape, generator=generator))
    vadapters.save_pretrained(pipe, str(root / "adapters" / "mv"), ["mv"])
    return "adapters/mv"


def test_generate_multiview_grid_with_and_without_adapter(client, mv_adapter):
    assert mv_adapter in str(client.predict(api_name="/generate_list_mv_adapters"))
    assert "adapters/res" not in str(client.predict(api_name="/generate_list_mv_adapters"))
    args = ("", mv_adapter, "a red box", 3, 0, 2, 16, 1.0, 0, 1.0)
    gallery, info = client.predict(*args, True, api_name="/generate_multiview")
    assert [g["caption"] for g in gallery] == [
        *(f"MV-Adapter {a} deg" for a in (0, 120, 240)),
        *(f"independent {a} deg" for a in (0, 120, 240)),
    ]
    images = [_image(g) for g in gallery]
    assert all(im.shape[:2] == (16, 16) for im in images)
    assert info["views"] == 3 and info["azimuths"] == [0.0, 120.0, 240.0] and info["mv_adapter"] == mv_adapter
    assert any(np.abs(a.astype(int) - b.astype(int)).max() > 0 for a, b in zip(images[:3], images[3:]))
    again, _ = client.predict(*args, False, api_name="/generate_multiview")  # same seed: same views, cached model
    assert [np.array_equal(_image(g), im) for g, im in zip(again, images[:3])] == [True] * 3


@pytest.mark.parametrize(
    ("adapter", "size", "message"),
    [
        ("adapters/res", 16, "holds a res_adapter adapter"),
        ("", 16, "MV-Adapter folder: pick one"),
        ("../../etc", 16, "outside the allowed folders"),
        ("adapters/mv", 20, "multiple of 8"),
    ],
)
def test_generate_multiview_rejects_bad_input_readably(client, mv_adapter, adapter, size, message):
    with pytest.raises(AppError, match=message):
        client.predict("", adapter, "a red box", 2, 0, 1, size, 1.0, 0, 1.0, False, api_name="/generate_multiview")


def test_segment_sam_vs_adapter_with_metrics(client, tmp_path):
    image, gt, points, box = client.predict("camouflage scene 1", api_name="/segment_example")
    gallery, metrics = client.predict(
        handle_file(image), "", "adapters/sam", "", "", handle_file(gt), api_name="/segment"
    )
    assert [g["caption"].split(" (")[0] for g in gallery] == ["SAM", "SAM-Adapter", "ground truth"]
    assert [row[0] for row in metrics["data"]] == ["SAM", "SAM-Adapter"]
    assert all(0.0 <= row[1] <= 1.0 for row in metrics["data"])  # S-measure
    # prompted (points + box), no ground truth: masks only
    gallery, metrics = client.predict(
        handle_file(image), "", "", "40,50,1; 5,5,0", "20,20,150,160", None, api_name="/segment"
    )
    assert len(gallery) == 1 and "prompted" in gallery[0]["caption"] and not metrics["data"]
    with pytest.raises(AppError, match="outside the 192x192 image"):
        client.predict(handle_file(image), "", "", "500,5", "", None, api_name="/segment")


def test_segment_rejects_non_images(client, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    with pytest.raises(AppError):
        client.predict(handle_file(str(bad)), "", "", "", "", None, api_name="/segment")


def test_adapt_streams_live_updates(client):
    job = client.submit("cnn", "continual", ["gaussian_noise", "fog"], 5, 16, 8, ["source", "bn"], api_name="/adapt")
    plot, table, summary = job.result(timeout=240)
    assert len(job.outputs()) >= 2  # one update per (method, domain)
    assert [row[0] for row in table["data"]][:2] == ["01 gaussian_noise", "02 fog"]
    assert [row[1:3] for row in table["data"]] == [
        ["gaussian_noise", "source"],
        ["fog", "source"],
        ["gaussian_noise", "bn"],
        ["fog", "bn"],
    ]
    assert all(0.0 <= row[3] <= 100.0 for row in table["data"])
    assert set(summary) >= {"source", "bn"}
    # the plot really draws one line per method (an earlier LinePlot showed axes without lines)
    import numpy as np
    from PIL import Image

    from vadapters.demos.tta import COLOURS

    path = plot if isinstance(plot, str) else plot["path"]
    pixels = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)
    for colour in COLOURS[:2]:
        assert (pixels == np.array(colour[:3])).all(1).sum() > 30


def test_train_progress_stop_keeps_checkpoint_and_adapter(client, root):
    run = root / "outputs" / "studio" / "runs" / "ui-run"
    job = client.submit(
        "res_adapter", "", "synthetic:shapes", None, 400, 1, 1e-3, "rank=2\nalpha=2.0", "16", 0, "ui-run", False,
        api_name="/train",
    )  # fmt: skip
    steps_seen = []
    deadline = time.time() + 240
    while time.time() < deadline:
        status = job.status()
        units = status.progress_data or []
        if units and units[0].index is not None:
            steps_seen.append(units[0].index)
            assert units[0].length == 400
        if steps_seen and steps_seen[-1] >= 2:
            break
        assert not job.done(), f"training ended early: {job.outputs()}"
        time.sleep(0.2)
    assert steps_seen and steps_seen[-1] >= 2, "no progress updates arrived"
    status_md, loss, previews, info = client.predict(api_name="/train_stop")
    assert info["state"] == "stopped", status_md
    stopped_at = int(os.path.basename(info["checkpoint"]).removeprefix("step-"))
    assert 2 <= stopped_at < 400
    assert (run / "checkpoints" / f"step-{stopped_at}").is_dir()
    assert (run / "adapter_config.json").is_file() and (run / "adapter_model.safetensors").is_file()
    assert [r[0] for r in loss["data"]][-1] >= stopped_at - 1
    # the stopped run's adapter is what Generate now lists and loads
    assert "outputs/studio/runs/ui-run" in str(client.predict(api_name="/generate_list_adapters"))
    gallery, _ = client.predict(
        "", "outputs/studio/runs/ui-run", "a red circle", "", 0, 1, 16, 16, 1.0, True, "", api_name="/generate"
    )
    assert len(gallery) == 2
    # the same run name is refused unless Continue is ticked
    with pytest.raises(AppError, match="already exists"):
        client.predict(
            "res_adapter", "", "synthetic:shapes", None, 4, 1, 1e-3, "", "16", 0, "ui-run", False, api_name="/train"
        )


def test_cli_studio_binds_localhost_by_default():
    from vadapters.cli import build_parser

    args = build_parser().parse_args(["studio"])
    assert (args.host, args.port, args.root) == ("127.0.0.1", 7860, None)
    args = build_parser().parse_args(["studio", "--root", "a", "--root", "b", "--port", "7999"])
    assert args.root == ["a", "b"] and args.port == 7999
