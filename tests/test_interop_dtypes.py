"""What `disabled`, `fuse` / `unfuse` and `unload` guarantee per dtype (fp32, bf16, fp16), measured on the
embedded trained tiny-sd / tiny-animatediff on CPU; the numbers are quoted in docs/interop.md.

- `disabled()` runs the base exactly, `unfuse()` restores the pre-fuse weights exactly and `unload()` restores
  every weight of the host exactly, in every dtype (the originals are backed up, never recomputed).
- A fused adapter's output differs from the unfused adapter's by the rounding of the fused weights to the host's
  dtype (merging is done in fp32, then cast): bounded below per dtype.
"""

from __future__ import annotations

import pytest
import torch
from interop_fixtures import randomize_adapter

import vadapters
from vadapters.methods.i2v_adapter import I2VAdapterConfig
from vadapters.methods.mv_adapter import MVAdapterConfig
from vadapters.methods.res_adapter import ResAdapterConfig
from vadapters.methods.sara import SaRAConfig
from vadapters.pipelines import load_pipeline

pytestmark = pytest.mark.usefixtures("one_thread")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Max |fused - unfused| on the decoded image in [0, 1] (24x40, 2 steps). Measured on this machine's CPU: ResAdapter
# 8.3e-7 / 1.2e-2 / 2.4e-3, SaRA 8.6e-7 / 0 / 0 (its fused entries are the trained values, already in the dtype).
FUSE_BOUND = {"fp32": 1e-5, "bf16": 3e-2, "fp16": 1e-2}
CONFIGS = {"res_adapter": lambda: ResAdapterConfig(rank=4, alpha=4.0), "sara": lambda: SaRAConfig()}


def _weights(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("method", list(CONFIGS))
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_fuse_unfuse_unload_per_dtype(method, dtype):
    pipe = load_pipeline(None, dtype=DTYPES[dtype])
    pipe.set_progress_bar_config(disable=True)

    def run() -> torch.Tensor:
        out = pipe("a red disc", height=24, width=40, num_inference_steps=2, guidance_scale=1.0,
                   generator=torch.Generator().manual_seed(0), output_type="pt")  # fmt: skip
        return out.images.float()

    original, base = _weights(pipe.unet), run()
    torch.manual_seed(0)
    vadapters.inject(pipe, CONFIGS[method](), adapter_name="a")
    randomize_adapter(pipe, "a", std=0.05)
    assert all(p.dtype == DTYPES[dtype] for p in pipe.unet.parameters())  # the adapter takes the host's dtype
    adapted = run()
    assert torch.isfinite(adapted).all() and (adapted - base).abs().max() > 1e-3
    with vadapters.disabled(pipe):
        assert torch.equal(run(), base)

    before_fuse = _weights(pipe.unet)
    vadapters.fuse(pipe)
    fused = run()
    assert (fused - adapted).abs().max() <= FUSE_BOUND[dtype]
    vadapters.unfuse(pipe)
    assert _same(_weights(pipe.unet), before_fuse) and torch.equal(run(), adapted)

    vadapters.unload(pipe)
    assert _same(_weights(pipe.unet), original) and torch.equal(run(), base)


def test_bf16_multiview_and_video_pipelines_with_adapters_on_cpu():
    """MV-Adapter (with its camera encoder) and I2V-Adapter in bf16 pipelines: they generate finite outputs, the
    adapters act, and `disabled` / `unload` give the bf16 base exactly."""
    from vadapters.pipelines import MultiViewPipeline
    from vadapters.pipelines.image2video import I2VPipeline, load_video_pipeline

    sd = load_pipeline(None, dtype=torch.bfloat16)
    original = _weights(sd.unet)
    vadapters.inject(sd, MVAdapterConfig(num_views=4, condition_channels=6), adapter_name="mv")
    randomize_adapter(sd, "mv", std=0.1)
    mv = MultiViewPipeline(**{k: v for k, v in sd.components.items() if k != "image_encoder"},
                           requires_safety_checker=False)  # fmt: skip
    mv.set_progress_bar_config(disable=True)

    def views() -> torch.Tensor:
        return mv("a red box", azimuths=[0, 90, 180, 270], height=16, width=16, num_inference_steps=2, guidance_scale=1.0,
                  generator=torch.Generator().manual_seed(0), output_type="pt").images.float()  # fmt: skip

    out = views()
    assert out.shape == (4, 3, 16, 16) and torch.isfinite(out).all()
    with vadapters.disabled(mv):
        off = views()
    assert (out - off).abs().max() > 1e-3
    vadapters.unload(sd)
    assert _same(_weights(sd.unet), original)

    video = I2VPipeline.from_pipe(load_video_pipeline(None)).to(torch.bfloat16)
    video.set_progress_bar_config(disable=True)
    first = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))

    def clip() -> torch.Tensor:
        return video("a red square moving right", image=first, num_frames=3, height=16, width=16,
                     num_inference_steps=2, guidance_scale=2.0, generator=torch.Generator().manual_seed(0),
                     output_type="pt").frames.float()  # fmt: skip

    base, weights = clip(), _weights(video.unet)
    torch.manual_seed(0)
    vadapters.inject(video, I2VAdapterConfig(), adapter_name="i2v")
    randomize_adapter(video, "i2v", std=0.1)
    adapted = clip()
    assert torch.isfinite(adapted).all() and (adapted - base).abs().max() > 1e-3
    with vadapters.disabled(video):
        assert torch.equal(clip(), base)
    vadapters.unload(video)
    assert _same(_weights(video.unet), weights) and torch.equal(clip(), base)
