"""Studio image-to-video mode (`apps/tab_video.py`) through `gradio_client`, on a small `gr.Blocks` that mounts it
with a context like the studio's (tiny AnimateDiff pipeline saved under an allowed root, few steps)."""

from __future__ import annotations

import json

import numpy as np
import pytest

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

HEAVY = {"concurrency_id": "heavy", "concurrency_limit": 1}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """An allowed root with a tiny AnimateDiff pipeline folder, an I2V-Adapter whose output projections are
    non-zero (a fresh one leaves the video as the base draws it), and a folder of another method."""
    import torch

    import vadapters
    from vadapters.methods.i2v_adapter import I2VAdapterConfig, i2v_processors
    from vadapters.models import tiny_animatediff_pipeline

    root = tmp_path_factory.mktemp("video_root")
    pipe = tiny_animatediff_pipeline(seed=0)
    pipe.save_pretrained(str(root / "pipelines" / "video"))
    vadapters.inject(pipe, I2VAdapterConfig(), adapter_name="i2v")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for proc in i2v_processors(pipe.unet).values():
            proc.to_out_ff["i2v"].weight.copy_(
                0.3 * torch.randn(proc.to_out_ff["i2v"].weight.shape, generator=generator)
            )
    vadapters.save_pretrained(pipe, str(root / "adapters" / "i2v"), ["i2v"])
    other = root / "adapters" / "res"
    other.mkdir(parents=True)
    (other / "adapter_config.json").write_text(json.dumps({"method": "res_adapter"}))
    return root


def _blocks(root, cache=None):
    from vadapters.apps.cache import ModelCache
    from vadapters.apps.context import StudioContext
    from vadapters.apps.tab_video import build_video_tab

    ctx = StudioContext([str(root)], cache=cache or ModelCache())
    with gr.Blocks() as demo:
        build_video_tab(ctx, HEAVY)
    demo.queue(default_concurrency_limit=1, max_size=8)
    return demo


@pytest.fixture(scope="module")
def client(root):
    from vadapters.apps.studio import launch

    demo = _blocks(root)
    _, url, _ = launch(demo, host="127.0.0.1", port=None, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(url, verbose=False)
    finally:
        demo.close()


def _frames(path) -> list[np.ndarray]:
    from PIL import Image, ImageSequence

    with Image.open(path) as im:
        return [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(im)]


def test_building_loads_no_model_and_puts_animate_on_the_heavy_slot(monkeypatch, tmp_path):
    from vadapters.apps.cache import ModelCache
    from vadapters.pipelines import image2video

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded while building the tab")

    monkeypatch.setattr(image2video, "load_video_pipeline", refuse)
    cache = ModelCache()
    demo = _blocks(tmp_path, cache)
    assert cache.keys() == []
    fns = {d.api_name: d for d in demo.fns.values() if d.fn is not None}
    assert fns["image_to_video"].concurrency_id == "heavy" and fns["image_to_video"].concurrency_limit == 1
    assert {"image_to_video_example", "image_to_video_list_adapters"} <= set(fns)


def test_example_then_base_and_adapter_gifs_side_by_side(client, tmp_path):
    from PIL import Image

    listed = client.predict(api_name="/image_to_video_list_adapters")
    assert "adapters/i2v" in str(listed) and "adapters/res" not in str(listed)
    image, caption = client.predict("motion clip 1", api_name="/image_to_video_example")
    assert " moving " in caption
    first = tmp_path / "first.png"
    Image.open(image).convert("RGB").save(first)
    args = (handle_file(str(first)), caption, "pipelines/video", "adapters/i2v", 4, 2, 0, 16, 1.0)
    base_gif, adapter_gif, info = client.predict(*args, "off", False, api_name="/image_to_video")
    base, adapted = _frames(base_gif), _frames(adapter_gif)
    assert len(base) == len(adapted) == 4
    assert base[0].shape == (256, 256, 3)  # 16 px upscaled for display
    assert np.array_equal(base[0], adapted[0])  # frame 0 is the given image's latent in both, never stepped
    assert any(not np.array_equal(a, b) for a, b in zip(base[1:], adapted[1:]))  # the adapter acts
    assert info["i2v_adapter"] == "adapters/i2v" and info["frames"] == 4 and info["prior_strength"] is None
    again, adapter_again, _ = client.predict(*args, "auto", False, api_name="/image_to_video")  # cached model
    assert all(np.array_equal(a, b) for a, b in zip(_frames(again), base))  # base: same seed, options not applied
    assert not all(np.array_equal(a, b) for a, b in zip(_frames(adapter_again), adapted))  # the prior changes it


def test_without_adapter_only_the_base_video(client, tmp_path):
    from vadapters.apps.tab_video import load_example

    image, caption = load_example("motion clip 0")
    first = tmp_path / "first.png"
    from PIL import Image

    Image.fromarray(image).save(first)
    base_gif, adapter_gif, info = client.predict(
        handle_file(str(first)), caption, "pipelines/video", "", 3, 1, 0, 16, 1.0, "0.4", True,
        api_name="/image_to_video",
    )  # fmt: skip
    assert len(_frames(base_gif)) == 3 and adapter_gif is None
    assert (
        info["i2v_adapter"] is None and info["prior_strength"] == 0.4 and info["options_apply_to"].startswith("base")
    )


@pytest.mark.parametrize(
    ("pipeline", "adapter", "size", "prior", "message"),
    [
        ("pipelines/video", "adapters/res", 16, "off", "holds a res_adapter adapter"),
        ("pipelines/video", "../../etc", 16, "off", "outside the allowed folders"),
        ("/etc", "", 16, "off", "outside the allowed folders"),
        ("pipelines/video", "", 20, "off", "multiple of 8"),
        ("pipelines/video", "", 16, "1.5", "prior strength"),
    ],
)
def test_rejects_bad_input_readably(client, tmp_path, pipeline, adapter, size, prior, message):
    from PIL import Image

    first = tmp_path / "first.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(first)
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(str(first)), "a cat", pipeline, adapter, 3, 1, 0, size, 1.0, prior, False,
                       api_name="/image_to_video")  # fmt: skip


def test_missing_first_frame_is_a_readable_error(client):
    with pytest.raises(AppError, match="first frame"):
        client.predict(
            None, "a cat", "pipelines/video", "", 3, 1, 0, 16, 1.0, "off", False, api_name="/image_to_video"
        )
