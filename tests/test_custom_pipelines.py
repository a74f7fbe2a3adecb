"""Our pipelines load as diffusers custom pipelines from a local folder (`custom_pipeline=`, `trust_remote_code`)."""

from __future__ import annotations

import pytest
import torch
from diffusers import DiffusionPipeline

import vadapters
from vadapters.methods.mv_adapter import MVAdapterConfig
from vadapters.pipelines import CUSTOM_PIPELINES, custom_pipeline


@pytest.fixture(scope="module")
def tiny_pipe():
    from vadapters.models import tiny_sd_pipeline

    pipe = tiny_sd_pipeline(seed=0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _load(folder, name, **kwargs):
    pipe = DiffusionPipeline.from_pretrained(
        str(folder), custom_pipeline=custom_pipeline(name), trust_remote_code=True, local_files_only=True, **kwargs
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_multiview_custom_pipeline_loads_a_plain_sd_folder(tiny_pipe, tmp_path):
    from vadapters.pipelines import MultiViewPipeline

    tiny_pipe.save_pretrained(tmp_path / "sd")
    pipe = _load(tmp_path / "sd", "mv_adapter")
    assert type(pipe) is MultiViewPipeline  # the installed class itself, not a copy from the modules cache
    kw = {"height": 16, "width": 16, "num_inference_steps": 2, "output_type": "pt"}
    base = tiny_pipe("a red box", num_images_per_prompt=2, generator=torch.Generator().manual_seed(0), **kw).images
    vadapters.inject(pipe, MVAdapterConfig(num_views=2))
    out = pipe("a red box", azimuths=[0, 180], generator=torch.Generator().manual_seed(0), **kw).images
    assert torch.equal(out, base)  # fresh adapter: the saved weights round-tripped and the branch is a no-op

    pipe.save_pretrained(tmp_path / "saved")  # model_index names MultiViewPipeline, which diffusers lacks
    with pytest.raises((AttributeError, ValueError)):
        DiffusionPipeline.from_pretrained(str(tmp_path / "saved"), local_files_only=True)
    assert type(_load(tmp_path / "saved", "mv_adapter")) is MultiViewPipeline


@pytest.mark.parametrize("name", sorted(CUSTOM_PIPELINES))
def test_each_custom_pipeline_file_names_exactly_its_class(name):
    """diffusers' own rule (exactly one non-diffusers DiffusionPipeline subclass in the file) finds our class."""
    import importlib.util

    from diffusers.utils.dynamic_modules_utils import find_pipeline_class

    import vadapters.pipelines as pipelines

    spec = importlib.util.spec_from_file_location(f"_custom_{name}", custom_pipeline(name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert find_pipeline_class(module) is getattr(pipelines, CUSTOM_PIPELINES[name])


def test_custom_pipeline_needs_trust_remote_code_and_a_known_name(tiny_pipe, tmp_path):
    tiny_pipe.save_pretrained(tmp_path / "sd")
    with pytest.raises(ValueError, match="trust_remote_code"):
        DiffusionPipeline.from_pretrained(
            str(tmp_path / "sd"), custom_pipeline=custom_pipeline("mv_adapter"), local_files_only=True
        )
    with pytest.raises(vadapters.BadInputError, match="mv_adapter_xl"):
        custom_pipeline("mv-adapter")


def test_i2v_custom_pipeline_loads_a_plain_animatediff_folder(tmp_path):
    from vadapters.models import tiny_animatediff_pipeline
    from vadapters.pipelines import I2VPipeline

    tiny_animatediff_pipeline(seed=0).save_pretrained(tmp_path / "ad")
    pipe = _load(tmp_path / "ad", "i2v_adapter")
    assert type(pipe) is I2VPipeline
    out = pipe(
        "a red square",
        image=torch.rand(1, 3, 16, 16),
        num_frames=2,
        height=16,
        width=16,
        num_inference_steps=1,
        output_type="np",
    )
    assert out.frames.shape == (1, 2, 16, 16, 3)
