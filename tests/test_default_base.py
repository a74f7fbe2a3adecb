"""One default base: the trained embedded tiny-sd trains and generates unless a base is named; adapters record
their base and every method treats another base the one documented way (`vadapters.core.bases`); what
`print_trainable_parameters` counts is what trains; MV-Adapter's condition encoder fits the pipeline's VAE."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

import vadapters
from vadapters.core.bases import BaseModelWarning
from vadapters.errors import IncompatibleBaseError
from vadapters.methods.mv_adapter import MVAdapterConfig
from vadapters.methods.res_adapter import ResAdapterConfig
from vadapters.methods.sara import SaRAConfig
from vadapters.models import load_pipeline, tiny_unet, tiny_unet_config
from vadapters.pipelines import MultiViewPipeline

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained():
    return load_pipeline(None)


@pytest.fixture(scope="module")
def random_tiny():
    return load_pipeline("tiny")


def test_the_default_base_is_the_trained_tiny_sd_and_the_random_one_only_by_name(trained, random_tiny):
    from vadapters.train.diffusion import load_training_pipeline

    assert load_training_pipeline(None)[1] == "vadapters:tiny-sd"  # train_adapter / vadapters train / studio
    assert load_training_pipeline("tiny")[1] == "vadapters:tiny"
    assert load_pipeline("vadapters:tiny-sd").name_or_path == trained.name_or_path
    key = "conv_in.weight"
    assert not torch.equal(trained.unet.state_dict()[key], random_tiny.unet.state_dict()[key])


@pytest.mark.parametrize(
    ("config", "refuses"),
    [(ResAdapterConfig(rank=4), False), (MVAdapterConfig(num_views=2), False), (SaRAConfig(quantile=0.1), True)],
    ids=["res_adapter", "mv_adapter", "sara"],
)
def test_another_base_is_treated_the_documented_way(trained, random_tiny, tmp_path, config, refuses):
    """Same architecture, other weights: every method warns naming both bases; SaRA refuses (fingerprint)."""
    vadapters.inject(trained, config, adapter_name="a")
    try:
        vadapters.save_pretrained(trained, tmp_path)
    finally:
        vadapters.unload(trained)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["base_model_name_or_path"] == "vadapters:tiny-sd"
    with warnings.catch_warnings():
        warnings.simplefilter("error", BaseModelWarning)
        vadapters.load(trained, tmp_path)  # its own base: silent
    vadapters.unload(trained)
    both = r"'vadapters:tiny-sd'.*'vadapters:tiny'"
    try:
        if refuses:
            with pytest.raises(IncompatibleBaseError, match=rf"differ from the base.*{both}"):
                vadapters.load(random_tiny, tmp_path)
        else:
            with pytest.warns(BaseModelWarning, match=both):
                vadapters.load(random_tiny, tmp_path)
    finally:
        vadapters.unload(random_tiny)


def test_sam_adapter_on_another_sam_warns_naming_both(tmp_path):
    from vadapters.methods.sam_adapter import SAMAdapterConfig
    from vadapters.models import load_sam

    sam = vadapters.inject(load_sam(None), SAMAdapterConfig(scale_factor=8))
    vadapters.save_pretrained(sam, tmp_path)
    other = load_sam(None)
    other.name_or_path = "ORG/another-sam"
    with pytest.warns(BaseModelWarning, match=r"'vadapters:tiny-sam'.*'ORG/another-sam'"):
        vadapters.load(other, tmp_path)


def test_print_trainable_parameters_counts_what_trains(trained, capsys):
    encoder_flags = [p.requires_grad for p in trained.text_encoder.parameters()]
    vadapters.inject(trained, ResAdapterConfig(rank=4), adapter_name="res")
    try:
        trainable, total = vadapters.print_trainable_parameters(trained)
        really = {
            id(p): p for m in trained.components.values() if isinstance(m, torch.nn.Module) for p in m.parameters()
        }
        assert trainable == sum(p.numel() for p in really.values() if p.requires_grad)
        assert trainable == sum(p.numel() for p in trained.unet.parameters() if p.requires_grad)
        assert trainable / total < 0.01  # the adapter only: text encoder and VAE are frozen, as PEFT freezes
        assert "trainable%: 0.3" in capsys.readouterr().out
    finally:
        vadapters.unload(trained)
    assert [p.requires_grad for p in trained.text_encoder.parameters()] == encoder_flags  # restored


def test_mv_adapter_condition_encoder_follows_the_pipelines_vae(trained):
    pipe = MultiViewPipeline.from_pipe(trained)
    vadapters.inject(pipe, MVAdapterConfig(num_views=4, condition_channels=6))  # no downscale given
    try:
        assert vadapters.get_adapter_config(pipe, "default").condition_downscale_factor == pipe.vae_scale_factor
        views = pipe("a red box", azimuths=[0, 90, 180, 270], height=16, width=16, num_inference_steps=1)
        assert len(views.images) == 4
    finally:
        vadapters.unload(pipe)


def test_mv_adapter_encoder_for_another_vae_is_refused_clearly(trained):
    unet = tiny_unet(tiny_unet_config())
    vadapters.inject(unet, MVAdapterConfig(num_views=2, condition_channels=6))  # a bare UNet: SD's VAE, 8
    assert vadapters.get_adapter_config(unet, "default").condition_downscale_factor == 8
    pipe = MultiViewPipeline(**{**trained.components, "unet": unet})
    with pytest.raises(IncompatibleBaseError, match=r"downscales images by 8.*VAE downscales by 2.*factor=2"):
        pipe("a red box", azimuths=[0, 180], height=16, width=16, num_inference_steps=1)


def test_an_i2v_adapter_made_on_the_random_video_model_names_it_where_the_default_refuses_it(tmp_path):
    from vadapters.methods.i2v_adapter import I2VAdapterConfig
    from vadapters.pipelines.image2video import load_video_pipeline

    made_on = vadapters.inject(load_video_pipeline("tiny"), I2VAdapterConfig())
    vadapters.save_pretrained(made_on, tmp_path)
    with pytest.raises(IncompatibleBaseError, match=r"trained on: 'vadapters:tiny'.*made on 'vadapters:tiny'"):
        vadapters.load(load_video_pipeline(None), tmp_path)  # what `vadapters i2v` without --pipeline loads
    vadapters.load(load_video_pipeline("tiny"), tmp_path)  # `--pipeline tiny`, as the message says
