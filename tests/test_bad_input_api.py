"""Bad input through the Python API: one table, each row a call that must be refused with a vadapters error type
and a message that says what is wrong, leaving the host models and the files on disk exactly as they were."""

from __future__ import annotations

import os
import types

import numpy as np
import pytest
import torch
from bad_input_helpers import files, host_state, same_state, write_bad_images, write_config_with

import vadapters
import vadapters.tta
from vadapters.errors import AdapterStateError, BadInputError, CheckpointError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny SD pipeline, a tiny SAM predictor, a saved ResAdapter (folder and single file), bad images."""
    from vadapters.methods.res_adapter import ResAdapterConfig
    from vadapters.models import tiny_sd_pipeline, tiny_timm_classifier
    from vadapters.pipelines import SAMAdapterPredictor

    root = tmp_path_factory.mktemp("bad_input_api")
    pipe = tiny_sd_pipeline()
    vadapters.inject(pipe, ResAdapterConfig(rank=2, alpha=2.0), adapter_name="res")
    vadapters.save_pretrained(pipe, root / "res", ["res"])
    vadapters.save_pretrained(pipe, root / "res.safetensors", ["res"], single_file=True)
    vadapters.unload(pipe)
    for name, changes in {
        "alpha_list": {"alpha": [1, 2]},
        "norm_blend_text": {"norm_blend": "half"},
        "use_lora_text": {"use_lora": "no"},
        "rank_text": {"rank": "4"},
    }.items():
        write_config_with(root / name, root / "res", **changes)
    data = (root / "res.safetensors").read_bytes()
    (root / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    (root / "truncated_header.safetensors").write_bytes(data[:64])
    folder = write_config_with(root / "truncated_folder", root / "res")
    weights = (folder / "adapter_model.safetensors").read_bytes()
    (folder / "adapter_model.safetensors").write_bytes(weights[: len(weights) - 40])
    predictor = SAMAdapterPredictor()
    images = write_bad_images(root / "images")
    classifier = tiny_timm_classifier("test_resnet", seed=0)
    vadapters.tta.LAME(classifier).save_pretrained(root / "lame")
    write_config_with(root / "lame_knn_text", root / "lame", knn="5")
    return types.SimpleNamespace(root=root, pipe=pipe, predictor=predictor, images=images, classifier=classifier)


def _load(name):
    return lambda w: vadapters.load(w.pipe, w.root / name)


def _config(method, **fields):
    return lambda w: vadapters.get_method(method).config_cls(**fields)


def _training_arguments(**fields):
    from vadapters.train import TrainingArguments

    return lambda w: TrainingArguments(output_dir=str(w.root / "never"), **fields)


def _set_image(image):
    return lambda w: w.predictor.set_image(w.images[image] if isinstance(image, str) else image)


def _predict(**prompts):
    def call(w):
        w.predictor.set_image(w.images["good"])
        w.predictor.predict(**prompts)

    return call


def _predict_unset(w):
    from vadapters.pipelines import SAMAdapterPredictor

    SAMAdapterPredictor(w.predictor.model).predict()


def _sizes(*sizes, batch_size=1, training=False):
    from vadapters.core.hosts.diffusers import check_pipeline_sizes

    return lambda w: check_pipeline_sizes(w.pipe, list(sizes), batch_size=batch_size, training=training)


def _train(**options):
    def call(w):
        from vadapters.train import train_adapter

        options.setdefault("steps", 1)
        train_adapter("res_adapter", base=w.pipe, output_dir=str(w.root / "train-never"), **options)

    return call


def _inject_named(name):
    from vadapters.methods.res_adapter import ResAdapterConfig

    return lambda w: vadapters.inject(w.pipe, ResAdapterConfig(rank=2), adapter_name=name)


def _prompt(value):
    from vadapters.core.validation import check_prompt

    return lambda w: check_prompt(value)


CASES = [
    # typed config fields: checked against the declared types, never coerced
    ("config alpha list", _config("res_adapter", alpha=[1, 2]), BadInputError, r"alpha must be a number .*list \[1, 2\]"),
    ("config norm_blend text", _config("res_adapter", norm_blend="half"), BadInputError, r"norm_blend must be a number .*'half'"),
    ("config use_lora text", _config("res_adapter", use_lora="no"), BadInputError, r"use_lora must be true or false .*'no'"),
    ("config rank bool", _config("res_adapter", rank=True), BadInputError, r"rank must be an int, got bool True"),
    ("config rank float", _config("res_adapter", rank=4.0), BadInputError, r"rank must be an int, got float 4.0"),
    ("config tuple field given text", _config("sara", kinds="linear"), BadInputError, r"kinds must be a list of strings"),
    ("config int field given text", _config("mv_adapter", num_views="4"), BadInputError, r"num_views must be an int"),
    ("config bool field given int", _config("i2v_adapter", copy_query=1), BadInputError, r"copy_query must be true or false"),
    ("config int field given float", _config("sam_adapter", scale_factor=8.0), BadInputError, r"scale_factor must be an int"),
    ("tta config int given text", lambda w: vadapters.tta.LAMEConfig(knn="5"), BadInputError, r"LAMEConfig.knn must be an int, got str '5'"),
    ("tta config tuple given text", lambda w: vadapters.tta.LAMEConfig(mean=(0.5, "a", 0.5)), BadInputError, r"LAMEConfig.mean must be a list of numbers or null"),
    ("tta config bool given text", lambda w: vadapters.tta.TENTConfig(episodic="yes"), BadInputError, r"TENTConfig.episodic must be true or false"),
    ("tta file knn text", lambda w: vadapters.tta.from_pretrained(w.classifier, w.root / "lame_knn_text"), CheckpointError, r"lame_knn_text/adapter_config.json: LAMEConfig.knn must be an int"),
    ("training max_steps text", _training_arguments(max_steps="10"), BadInputError, r"max_steps must be an int, got str '10'"),
    ("training learning_rate text", _training_arguments(learning_rate="1e-3"), BadInputError, r"learning_rate must be a number"),
    ("adapter name of a torch module attribute", _inject_named("train"), BadInputError, r"adapter_name 'train' is an attribute of torch modules"),
    ("adapter name with a dot", _inject_named("a.b"), BadInputError, r"adapter_name must be a non-empty string without '\.'"),
    ("load override wrong type", lambda w: vadapters.load(w.pipe, w.root / "res", norm_blend="half"), BadInputError, r"norm_blend must be a number"),
    # adapter_config.json with wrong types: a broken file, named
    ("file alpha list", _load("alpha_list"), CheckpointError, r"alpha_list/adapter_config.json: .*alpha must be a number .*list \[1, 2\]"),
    ("file norm_blend text", _load("norm_blend_text"), CheckpointError, r"norm_blend_text/adapter_config.json: .*norm_blend must be a number"),
    ("file use_lora text", _load("use_lora_text"), CheckpointError, r"use_lora_text/adapter_config.json: .*use_lora must be true or false .*'no'"),
    ("file rank text", _load("rank_text"), CheckpointError, r"rank_text/adapter_config.json: .*rank must be an int, got str '4'"),
    # truncated adapters, single file and folder
    ("truncated single file", _load("truncated.safetensors"), CheckpointError, r"truncated\.safetensors' is (corrupt or )?truncated"),
    ("truncated single-file header", _load("truncated_header.safetensors"), CheckpointError, r"truncated_header\.safetensors' is (corrupt or )?truncated"),
    ("truncated folder weights", _load("truncated_folder"), CheckpointError, r"is (corrupt or )?truncated"),
    # images into the SAM predictor (the one loader)
    ("float image in [0, 255]", _set_image(np.full((32, 32, 3), 200.0)), BadInputError, r"float pixels must lie in \[0, 1\], got values up to 200"),
    ("0x0 image", _set_image(np.zeros((0, 0, 3), np.uint8)), BadInputError, r"image is empty \(0x0 pixels\)"),
    ("1x1 image", _set_image(np.zeros((1, 1, 3), np.uint8)), BadInputError, r"at least 8x8 pixels needed, got 1x1"),
    ("3x500 image", _set_image(np.zeros((500, 3, 3), np.uint8)), BadInputError, r"at least 8x8 pixels needed, got 3x500"),
    ("NaN image", _set_image(np.full((16, 16, 3), np.nan, np.float32)), BadInputError, r"pixels must be finite"),
    ("16-bit values", _set_image(np.full((16, 16, 3), 300, np.int16)), BadInputError, r"integer pixels must lie in \[0, 255\]"),
    ("5 channels", _set_image(np.zeros((16, 16, 5), np.uint8)), BadInputError, r"expected HxW, HxWx1, HxWx3 or HxWx4"),
    ("text pixels", _set_image(np.full((16, 16, 3), "a")), BadInputError, r"pixels must be numbers"),
    ("missing image file", _set_image("missing"), BadInputError, r"file not found"),
    ("non-image file", _set_image("not_an_image"), BadInputError, r"is not an image Pillow can read"),
    ("empty image file", _set_image("empty_file"), BadInputError, r"is not an image Pillow can read"),
    ("truncated image file", _set_image("truncated"), BadInputError, r"is truncated or corrupt"),
    ("3x500 image file", _set_image("3x500"), BadInputError, r"got 3x500"),
    ("1x1 image file", _set_image("1x1"), BadInputError, r"got 1x1"),
    # points and boxes against the image
    ("point outside", _predict(point_coords=[[70, 5]], point_labels=[1]), BadInputError, r"point \(70, 5\) lies outside the 64x64 image"),
    ("negative point", _predict(point_coords=[[-1, 5]], point_labels=[1]), BadInputError, r"lies outside the 64x64 image"),
    ("point without label", _predict(point_coords=[[1, 5]]), BadInputError, r"point labels are missing"),
    ("point label 2", _predict(point_coords=[[1, 5]], point_labels=[2]), BadInputError, r"labels must be 1 values of 1 .* or 0"),
    ("NaN point", _predict(point_coords=[[np.nan, 5]], point_labels=[1]), BadInputError, r"must be finite"),
    ("box outside", _predict(box=[0, 0, 65, 10]), BadInputError, r"box \(0, 0, 65, 10\) must lie inside the 64x64 image"),
    ("reversed box", _predict(box=[10, 10, 2, 20]), BadInputError, r"x0 < x1 and y0 < y1"),
    ("box of 3 numbers", _predict(box=[1, 2, 3]), BadInputError, r"box must be 4 numbers"),
    ("predict before set_image", _predict_unset, AdapterStateError, r"call set_image\(image\) before predict"),
    ("batch point outside", lambda w: w.predictor.predict_batch([w.images["good"]], point_coords=[[[99, 1]]]), BadInputError, r"lies outside"),
    ("batch 1x1 image", lambda w: w.predictor.predict_batch([np.zeros((1, 1, 3), np.uint8)]), BadInputError, r"got 1x1"),
    # sizes and steps against the model's rules and a memory estimate
    ("size 100000", _sizes((100000, 32)), BadInputError, r"100000x32 is larger than 512 px per side \(16x this model's native 32 px\)"),
    ("size not a multiple", _sizes((20, 32)), BadInputError, r"20x32 is not a multiple of 8"),
    ("size zero", _sizes((0, 32)), BadInputError, r"size height must be an int >= 1, got 0"),
    ("size float", _sizes((16.5, 32)), BadInputError, r"size height must be an int >= 1, got float 16.5"),
    ("size over memory", _sizes((512, 512), batch_size=100_000), BadInputError, r"needs about [\d,.]+ GiB of memory, but only"),
    ("train resolutions 100000", _train(resolutions="100000"), BadInputError, r"100000x100000 is larger than 512 px per side"),
    ("train over memory", _train(resolutions="512", batch_size=100_000), BadInputError, r"training at 512x512 with batch 100000 needs about"),
    ("train resolutions malformed", _train(resolutions="16x"), BadInputError, r"resolutions: cannot parse '16x'"),
    ("train steps 0", _train(steps=0), BadInputError, r"max_steps must be an int >= 1, got 0"),
    ("train steps -5", _train(steps=-5), BadInputError, r"max_steps must be an int >= 1, got -5"),
    ("train config wrong type", _train(config_overrides={"use_lora": "no"}), BadInputError, r"use_lora must be true or false"),
    # prompts
    ("prompt not text", _prompt(123), BadInputError, r"prompt must be a string, got int 123"),
    ("prompt too long", _prompt("a" * 5000), BadInputError, r"prompt has 5000 characters; at most 4000"),
    ("prompt control characters", _prompt("a\x00b"), BadInputError, r"control characters \['U\+0000'\]"),
    ("prompt undecodable", _prompt("a\udcffb"), BadInputError, r"not valid UTF-8"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "error", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_and_changes_nothing(world, call, error, message):
    on_disk = files(world.root)
    unet, sam = host_state(world.pipe.unet), host_state(world.predictor.model)
    classifier = host_state(world.classifier)
    with pytest.raises(error, match=message):
        call(world)
    assert files(world.root) == on_disk
    assert same_state(host_state(world.pipe.unet), unet)
    assert same_state(host_state(world.predictor.model), sam)
    assert same_state(host_state(world.classifier), classifier)
    assert vadapters.list_adapters(world.pipe) == {}


def test_the_table_holds_every_case_once():
    assert len({c[0] for c in CASES}) == len(CASES)


def test_good_input_still_passes(world):
    """The checks refuse what the table holds, not the ordinary inputs next to it."""
    from vadapters.core.hosts.diffusers import check_pipeline_sizes
    from vadapters.core.images import load_image

    assert load_image(np.full((8, 8), 1.0)).tolist() == np.full((8, 8, 3), 255).tolist()
    assert load_image(torch.zeros(3, 10, 12)).shape == (10, 12, 3)
    assert load_image(world.images["good"]).shape == (64, 64, 3)
    assert check_pipeline_sizes(world.pipe, [(16, 24), (512, 32)]) == [(16, 24), (512, 32)]
    vadapters.load(world.pipe, world.root / "res")
    vadapters.load(world.pipe, world.root / "res.safetensors")
    assert sorted(vadapters.list_adapters(world.pipe)) == ["res_adapter", "res_adapter_1"]
    vadapters.unload(world.pipe)
    world.predictor.set_image(world.images["good"])
    masks, _, _ = world.predictor.predict(point_coords=[[63.5, 0]], point_labels=[1], box=[0, 0, 64, 64])
    assert masks.shape[-2:] == (64, 64)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_follow_the_umask(tmp_path, umask):
    from vadapters.core.io import atomic_write_bytes

    previous = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "new.bin", b"x")
        vadapters.save_pretrained(_tiny_adapter_host(), tmp_path / "adapter")
    finally:
        os.umask(previous)
    want = 0o666 & ~umask
    assert (tmp_path / "new.bin").stat().st_mode & 0o777 == want
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (tmp_path / "adapter" / name).stat().st_mode & 0o777 == want


def test_rewriting_a_file_keeps_its_mode(tmp_path):
    from vadapters.core.io import atomic_write_bytes

    path = tmp_path / "kept.bin"
    path.write_bytes(b"old")
    path.chmod(0o640)
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new" and path.stat().st_mode & 0o777 == 0o640


def _tiny_adapter_host():
    from vadapters.methods.sara import SaRAConfig

    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    vadapters.inject(model, SaRAConfig(quantile=0.5), adapter_name="s")
    return model
