"""MV-Adapter with a ControlNet and I2V-Adapter with IP-Adapter(-Plus) image embeddings, on the embedded trained
tiny-sd / tiny-animatediff of the real diffusers classes (`StableDiffusionControlNetPipeline`, `load_ip_adapter`,
`I2VPipeline`). See docs/interop.md."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from interop_fixtures import ip_adapter_files, randomize_adapter, tiny_controlnet, tiny_image_encoder

import vadapters
from vadapters.methods.i2v_adapter import I2VAdapterConfig
from vadapters.methods.mv_adapter import MVAdapterConfig, multiview_state
from vadapters.methods.mv_adapter.cameras import camera_maps, orbit_cameras
from vadapters.pipelines import load_pipeline

pytestmark = pytest.mark.usefixtures("one_thread")
VIEWS, SIDE = 4, 16


# ------------------------------------------------------------------------------------ MV-Adapter + ControlNet
def _run(pipe, control: torch.Tensor, **kwargs) -> torch.Tensor:
    out = pipe(["a red box"] * VIEWS, image=control, height=SIDE, width=SIDE, num_inference_steps=2,
               guidance_scale=1.0, generator=torch.Generator().manual_seed(0), output_type="pt", **kwargs)  # fmt: skip
    return out.images


def _views(pipe, control: torch.Tensor, condition: torch.Tensor | None, **kwargs) -> torch.Tensor:
    with multiview_state(pipe, num_views=VIEWS, condition=condition):
        return _run(pipe, control, **kwargs)


def test_mv_adapter_with_controlnet():
    """One object's views share attention (and camera maps through the T2I-Adapter encoder) while a ControlNet
    steers each view by its own control image: the two residual paths of the UNet work together."""
    from diffusers import StableDiffusionControlNetPipeline

    pipe = load_pipeline(None)
    controlnet = tiny_controlnet(pipe.unet, pipe.vae_scale_factor)
    pipe = StableDiffusionControlNetPipeline.from_pipe(pipe, controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)
    control = torch.rand(VIEWS, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(3))
    plain = _run(pipe, control)

    vadapters.inject(pipe, MVAdapterConfig(num_views=VIEWS, topology="row", condition_channels=6), adapter_name="mv")
    randomize_adapter(pipe, "mv", std=0.1)
    maps = camera_maps(orbit_cameras([0, 90, 180, 270]), SIDE, SIDE)
    views = _views(pipe, control, maps)
    assert views.shape == (VIEWS, 3, SIDE, SIDE) and torch.isfinite(views).all()
    assert (views - plain).abs().max() > 1e-3
    with vadapters.disabled(pipe):
        assert torch.equal(_views(pipe, control, maps), plain)  # adapter off: the ControlNet pipeline exactly

    # Another control image for the last view changes the first view only through multi-view attention
    moved = control.clone()
    moved[-1] = torch.rand(3, SIDE, SIDE, generator=torch.Generator().manual_seed(4))
    assert (_views(pipe, moved, maps)[0] - views[0]).abs().max() > 1e-4
    with vadapters.disabled(pipe):
        assert torch.equal(_views(pipe, moved, maps)[0], plain[0])
    assert (_views(pipe, control, maps.flip(0)) - views).abs().max() > 1e-4  # the camera maps reach the UNet
    assert (_views(pipe, control, maps, controlnet_conditioning_scale=0.0) - views).abs().max() > 1e-3  # CN acts
    vadapters.unload(pipe)
    assert torch.equal(_run(pipe, control), plain)


# --------------------------------------------------------------------------- I2V-Adapter + IP-Adapter-Plus
@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """The embedded video model as an `I2VPipeline` and a tiny IP-Adapter-Plus for its UNet."""
    from vadapters.pipelines.image2video import load_video_pipeline

    folder = tmp_path_factory.mktemp("ip")
    base = load_video_pipeline(None)
    encoder = tiny_image_encoder(str(folder / "models"))
    files = ip_adapter_files(str(folder), base.unet, encoder, plus=True, num_tokens=4)
    return base, files


def _frame(seed: int):
    from PIL import Image

    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8))


def _animate(pipe, first, **kwargs) -> torch.Tensor:
    out = pipe("a red square moving right", image=first, num_frames=3, height=SIDE, width=SIDE,
               num_inference_steps=2, guidance_scale=2.0, generator=torch.Generator().manual_seed(0),
               output_type="pt", **kwargs)  # fmt: skip
    return out.frames


def _i2v(pipe) -> None:
    torch.manual_seed(0)
    vadapters.inject(pipe, I2VAdapterConfig(), adapter_name="i2v")
    randomize_adapter(pipe, "i2v", std=0.1)


def test_i2v_adapter_with_ip_adapter_plus_image_embeddings(video):
    """As the official I2V-Adapter runs: IP-Adapter-Plus embeds the first frame (content branch), the adapter's
    first-frame attention keeps the video on it. Both orders of loading give the same video (I2V-Adapter first:
    load the IP-Adapter inside `vadapters.unwrapped`; diffusers' loader rebuilds self-attention processors by
    class and cannot rebuild a vadapters wrapper)."""
    from vadapters.pipelines.image2video import I2VPipeline

    base, (folder, subfolder, weight_name) = video
    pipe = I2VPipeline.from_pipe(base)
    first, other = _frame(0), _frame(1)
    plain = _animate(pipe, first)
    videos = []
    for ip_first in (True, False):
        if ip_first:
            pipe.load_ip_adapter(folder, subfolder=subfolder, weight_name=weight_name,
                                 image_encoder_folder="image_encoder")  # fmt: skip
            _i2v(pipe)
        else:
            _i2v(pipe)
            with vadapters.unwrapped(pipe):
                pipe.load_ip_adapter(folder, subfolder=subfolder, weight_name=weight_name,
                                     image_encoder_folder="image_encoder")  # fmt: skip
        clip = _animate(pipe, first, ip_adapter_image=first)
        assert clip.shape == (1, 3, 3, SIDE, SIDE) and torch.isfinite(clip).all()
        assert torch.allclose(clip[:, 0], plain[:, 0], atol=1e-6)  # frame 0 is the given image's, whatever acts
        assert (clip - _animate(pipe, first, ip_adapter_image=other)).abs().max() > 1e-4  # the image embeds act
        assert (clip - _animate(pipe, first, ip_adapter_image=first, i2v_scale=0.0)).abs().max() > 1e-4  # and I2V

        # Precomputed image embeddings (as a user caches them) give the same video as the image
        embeds = pipe.prepare_ip_adapter_image_embeds(first, None, "cpu", 1, True)
        assert torch.equal(_animate(pipe, first, ip_adapter_image_embeds=embeds), clip)
        with vadapters.disabled(pipe):
            ip_only = _animate(pipe, first, ip_adapter_image=first)
        pipe.set_ip_adapter_scale(0.0)
        with vadapters.disabled(pipe):
            assert torch.allclose(_animate(pipe, first, ip_adapter_image=first), plain, atol=1e-6)
        pipe.set_ip_adapter_scale(1.0)
        vadapters.unload(pipe)
        assert torch.equal(_animate(pipe, first, ip_adapter_image=first), ip_only)
        pipe.unload_ip_adapter()
        assert torch.equal(_animate(pipe, first), plain)
        videos.append(clip)
    assert torch.equal(videos[0], videos[1])
