"""Hub ids wherever a path is accepted, resolved offline from a throwaway Hugging Face cache in its real layout.

Nothing here is stubbed: huggingface_hub (`hf_hub_download` / `snapshot_download`), diffusers (`from_pretrained`) and
timm (`pretrained=True`) resolve the ids themselves with `HF_HUB_OFFLINE=1`, from files put where `hf download`
puts them (`tests/hub_cache.py`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings

import pytest
import torch
from conftest import OFFICIAL
from hub_cache import put_in_cache, use_cache
from matrix_cases import perturb_adapter

import vadapters
from vadapters.core.bases import BaseModelWarning
from vadapters.errors import CheckpointError, IncompatibleBaseError
from vadapters.methods.res_adapter import ResAdapterConfig
from vadapters.models import load_pipeline, tiny_sd_pipeline

pytestmark = pytest.mark.usefixtures("one_thread")

PIPELINE_ID = "vadapters-test/tiny-sd"
ADAPTER_ID = "vadapters-test/res-tiny"
OFFICIAL_ID = "jiaxiangc/res-adapter"
SD15 = "resadapter_v2_sd1.5"


@pytest.fixture(scope="module")
def filled_cache(tmp_path_factory):
    """The cache a user has after `hf download` of a tiny pipeline, a ResAdapter trained on it, and the official
    ResAdapter SD1.5 folder (when the official fixtures are present)."""
    root = tmp_path_factory.mktemp("hf")
    cache = root / "hub"
    tiny_sd_pipeline().save_pretrained(root / "pipe")
    put_in_cache(cache, PIPELINE_ID, root / "pipe")
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_cache(monkeypatch, cache)
        on_hub = load_pipeline(PIPELINE_ID)  # the adapter's author worked on the pipeline from the Hub
        vadapters.inject(on_hub, ResAdapterConfig(rank=4, alpha=4.0), adapter_name="res")
        perturb_adapter(on_hub.unet, "res", scale=0.05, seed=0)
        vadapters.save_pretrained(on_hub, root / "res")
    put_in_cache(cache, ADAPTER_ID, root / "res", prefix="res")
    if (OFFICIAL / SD15).is_dir():
        put_in_cache(cache, OFFICIAL_ID, OFFICIAL / SD15, prefix=SD15)
        put_in_cache(cache, OFFICIAL_ID, OFFICIAL / "README.md")
    return cache


@pytest.fixture
def cache(filled_cache, monkeypatch):
    use_cache(monkeypatch, filled_cache)
    return filled_cache


def test_pipeline_by_hub_id_loads_from_the_cache(cache):
    pipe = load_pipeline(PIPELINE_ID)
    assert pipe.name_or_path == PIPELINE_ID
    reference = tiny_sd_pipeline()
    for key, value in reference.unet.state_dict().items():
        assert torch.equal(pipe.unet.state_dict()[key], value)


def test_adapter_by_hub_id_with_subfolder_loads_and_matches_the_local_file(cache):
    pipe = load_pipeline(PIPELINE_ID)
    vadapters.load(pipe, ADAPTER_ID, subfolder="res", adapter_name="hub")  # as diffusers' subfolder=
    vadapters.load(pipe, f"{ADAPTER_ID}/res", adapter_name="joined")  # ORG/NAME/FOLDER: the CLI's form
    hub = vadapters.get_method("res_adapter").injector_cls().adapter_state_dict(pipe.unet, "hub")
    joined = vadapters.get_method("res_adapter").injector_cls().adapter_state_dict(pipe.unet, "joined")
    assert hub.keys() == joined.keys() and all(torch.equal(hub[k], joined[k]) for k in hub)
    assert any(v.abs().sum() > 0 for v in hub.values())
    config = vadapters.get_adapter_config(pipe, "hub")
    assert config.base_model_name_or_path == "vadapters-test/tiny-sd"  # recorded from the cache snapshot path


def test_weight_name_fetches_one_file(cache):
    from vadapters.core.hub import resolve

    path = resolve(ADAPTER_ID, subfolder="res", weight_name="adapter_model.safetensors")
    assert os.path.isfile(path) and path.startswith(str(cache)) and path.endswith("res/adapter_model.safetensors")


def test_official_resadapter_by_hub_id_as_its_readme_fetches_it(cache):
    """`hf_hub_download(repo_id="jiaxiangc/res-adapter", subfolder="resadapter_v2_sd1.5", ...)` in the official
    README; here `vadapters.load(unet, "jiaxiangc/res-adapter", subfolder=...)` into a real-size SD1.5 UNet."""
    if not (OFFICIAL / SD15).is_dir():
        pytest.skip(f"official ResAdapter fixtures not found at {OFFICIAL}")
    from vadapters.models.real import build_unet, sd15_unet_config

    unet = build_unet(sd15_unet_config(), device="meta")
    vadapters.load(unet, OFFICIAL_ID, subfolder=SD15)  # strict: every key of both files accounted for
    assert vadapters.list_adapters(unet) == {"res_adapter": "res_adapter"}
    with pytest.raises(IncompatibleBaseError, match="Stable Diffusion 1.x"):  # the tiny pipeline is not SD1.5
        vadapters.load(load_pipeline(PIPELINE_ID), OFFICIAL_ID, subfolder=SD15)


def test_missing_from_the_cache_names_what_to_fetch(cache):
    with pytest.raises(CheckpointError, match=r"hf download vadapters-test/absent") as info:
        load_pipeline("vadapters-test/absent")
    assert "HF_HUB_OFFLINE" in str(info.value)
    with pytest.raises(CheckpointError, match=r"hf download vadapters-test/res-tiny --include 'other/\*'"):
        vadapters.load(tiny_sd_pipeline(), ADAPTER_ID, subfolder="other")
    with pytest.raises(CheckpointError, match=r"hf download vadapters-test/res-tiny res/absent.safetensors"):
        vadapters.load(tiny_sd_pipeline(), ADAPTER_ID, subfolder="res", weight_name="absent.safetensors")
    with pytest.raises(CheckpointError, match="not a local path"):
        vadapters.load(tiny_sd_pipeline(), "runs/never-trained")


def test_an_adapter_on_another_base_warns_naming_both(cache):
    pipe = load_pipeline(None)  # the embedded trained tiny-sd: same architecture, other weights
    with pytest.warns(BaseModelWarning, match=r"'vadapters-test/tiny-sd'.*'vadapters:tiny-sd'"):
        vadapters.load(pipe, ADAPTER_ID, subfolder="res")
    with warnings.catch_warnings():
        warnings.simplefilter("error", BaseModelWarning)
        vadapters.load(load_pipeline(PIPELINE_ID), ADAPTER_ID, subfolder="res")  # its own base: silent


def _cli(env, *args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "vadapters.cli", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def test_cli_generates_with_a_hub_pipeline_and_a_hub_adapter(filled_cache, monkeypatch, tmp_path):
    env = {**use_cache(monkeypatch, filled_cache), "OMP_NUM_THREADS": "1", "VADAPTERS_NO_PROGRESS": "1"}
    out = tmp_path / "x.png"
    args = ["generate", "--pipeline", PIPELINE_ID, "--adapter", f"{ADAPTER_ID}/res:0.8", "--steps", "2"]
    result = _cli(env, *args, "--compare", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.is_file() and "'res_adapter': 0.8" in result.stdout
    missing = _cli(env, "generate", "--pipeline", "vadapters-test/absent", "--out", str(out), cwd=tmp_path)
    assert missing.returncode != 0 and "hf download vadapters-test/absent" in missing.stderr
    assert "Traceback" not in missing.stderr
    if (OFFICIAL / SD15).is_dir():
        info = _cli(env, "info", f"{OFFICIAL_ID}/{SD15}", cwd=tmp_path)
        assert info.returncode == 0, info.stderr[-2000:]
        assert '"method": "res_adapter"' in info.stdout and '"rank": 16' in info.stdout


def test_local_paths_keep_working_and_shadow_hub_ids(cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    local = tmp_path / "vadapters-test" / "res-tiny"  # a local folder spelled like the Hub id
    shutil.copytree(os.path.join(cache, "models--vadapters-test--res-tiny", "snapshots"), local / "snap")
    rev = next((local / "snap").iterdir())
    shutil.copytree(rev / "res", local, dirs_exist_ok=True)
    pipe = tiny_sd_pipeline()
    vadapters.load(pipe, "vadapters-test/res-tiny", adapter_name="local")  # the local folder wins
    assert "local" in vadapters.list_adapters(pipe)


def test_sam_model_type_reads_the_official_file_from_torch_hubs_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    from vadapters.models import load_sam
    from vadapters.models.defaults import SAM_URL

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "sam_vit_b_01ec64.pth"
    with pytest.raises(CheckpointError, match=rf"{SAM_URL}sam_vit_b_01ec64.pth.*HF_HUB_OFFLINE=1.*{cached}"):
        load_sam("vit_b")
    cached.parent.mkdir(parents=True)
    torch.save({"not": torch.zeros(1)}, cached)  # found in the cache and read: the shapes say it is no SAM
    with pytest.raises(CheckpointError, match=rf"{cached}.*not a segment-anything checkpoint"):
        load_sam("vit_b")
    with pytest.raises(vadapters.BadInputError, match="vit_b"):
        from vadapters.models.defaults import official_sam_checkpoint

        official_sam_checkpoint("vit_x")


@pytest.mark.slow
def test_sam_model_type_loads_a_real_size_vit_b_from_the_cache(tmp_path, monkeypatch):
    """A ViT-B checkpoint in the official key layout (deterministic values, 375 MB) where torch.hub keeps it."""
    from vadapters.models import load_sam
    from vadapters.models.real import sam_vit

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "sam_vit_b_01ec64.pth"
    cached.parent.mkdir(parents=True)
    reference = sam_vit("vit_b", device="cpu", seed=0)
    torch.save(reference.state_dict(), cached)
    sam = load_sam("vit_b")
    assert sam.name_or_path.endswith("sam_vit_b_01ec64.pth")
    key = "image_encoder.blocks.11.attn.qkv.weight"
    assert torch.equal(sam.state_dict()[key], reference.state_dict()[key])


@pytest.fixture
def timm_cache(tmp_path, monkeypatch):
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(0)
    model = timm.create_model("test_resnet.r160_in1k", pretrained=False)
    save_for_hf(model, str(tmp_path / "repo"), safe_serialization="both")
    put_in_cache(tmp_path / "hub", "timm/test_resnet.r160_in1k", tmp_path / "repo")
    use_cache(monkeypatch, tmp_path / "hub")
    return model


@pytest.mark.parametrize(
    "name", ["test_resnet.r160_in1k", "hf-hub:timm/test_resnet.r160_in1k", "timm/test_resnet.r160_in1k"]
)
def test_timm_names_load_pretrained_weights_through_the_cache(timm_cache, name):
    from vadapters.tta.runner import load_classifier

    model = load_classifier(name)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    for key, value in timm_cache.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_timm_names_missing_or_unknown_say_what_to_do(timm_cache):
    from vadapters.tta.runner import load_classifier

    with pytest.raises(CheckpointError, match=r"hf download timm/test_vit.r160_in1k"):
        load_classifier("test_vit.r160_in1k")
    with pytest.raises(vadapters.BadInputError, match="not a timm model name"):
        load_classifier("no_such_net")


def test_cli_adapt_runs_lame_on_a_timm_model_from_the_cache(timm_cache, tmp_path, capsys):
    from vadapters.cli import main

    argv = ["adapt", "--model", "test_resnet.r160_in1k", "--method", "lame", "--stream", "iid"]
    argv += ["--corruptions", "clean", "--num-samples", "16", "--batch-size", "8", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "lame.json")]) == 0, capsys.readouterr().err
    assert (tmp_path / "lame.json").is_file() and "mean error" in capsys.readouterr().out


def test_studio_generates_with_a_hub_pipeline_and_a_hub_adapter(cache, tmp_path):
    from vadapters.apps.cache import ModelCache
    from vadapters.apps.context import StudioContext
    from vadapters.apps.tab_generate import generate

    ctx = StudioContext([str(tmp_path)], cache=ModelCache())
    images, summary = generate(
        ctx, PIPELINE_ID, f"{ADAPTER_ID}/res:0.8", "a red disc", "", 0, 2, 16, 16, 1.0, True, ""
    )
    assert [caption for _, caption in images] == ["16x16 without adapters", "16x16 with adapters"]
    assert not (images[0][0] == images[1][0]).all()
    with pytest.raises(vadapters.BadInputError, match="outside the allowed folders"):
        ctx.optional_path("/etc", "pipeline folder", kind="dir")  # paths stay confined; ids are not paths


def test_motion_adapter_by_hub_id_loads_from_the_cache(tmp_path, monkeypatch):
    """`load_animatediff_pipeline(motion_dir="ORG/NAME")` as users name an official AnimateDiff motion adapter."""
    from vadapters.models import weights
    from vadapters.models.video import load_animatediff_pipeline

    cache = tmp_path / "hub"
    put_in_cache(cache, "vadapters-test/motion", weights.default_path("tiny-animatediff"))
    use_cache(monkeypatch, cache)
    pipe = load_animatediff_pipeline(motion_dir="vadapters-test/motion")
    local = load_animatediff_pipeline()
    hub_state, local_state = pipe.unet.state_dict(), local.unet.state_dict()
    assert hub_state.keys() == local_state.keys()
    assert all(torch.equal(hub_state[k], local_state[k]) for k in hub_state)
    with pytest.raises(CheckpointError, match="vadapters-test/absent"):
        load_animatediff_pipeline(motion_dir="vadapters-test/absent")
