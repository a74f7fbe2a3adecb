"""Studio adapter lists by method AND base (the library's one base rule, `vadapters.core.bases.base_verdict`):
adapters made on the tab's selected base are offered, those made on another base of the same architecture are
offered marked (they load with a BaseModelWarning), those the load would refuse are left out; the Segment tab
takes SAM model types (`vit_b`, ...) resolved by `load_sam`."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch

import vadapters
from vadapters.core.bases import BaseModelWarning, weights_dir
from vadapters.errors import CheckpointError, IncompatibleBaseError

pytestmark = pytest.mark.usefixtures("one_thread")
OTHER_SD = "ORG/tiny-sd-finetune"  # another base of tiny-sd's architecture (a fine-tune, by name)


def _save(host, config, folder) -> None:
    torch.manual_seed(0)
    vadapters.inject(host, config, adapter_name="a")
    vadapters.save_pretrained(host, str(folder))
    vadapters.unload(host)


def _variant(folder, new, **changes) -> None:
    """A copy of an adapter folder whose config records another base (as if made elsewhere)."""
    shutil.copytree(folder, new)
    config = json.loads((new / "adapter_config.json").read_text())
    for key, value in changes.items():
        if key == "block_out_channels":
            config["base_signature"][key] = value
        else:
            config[key] = value
    (new / "adapter_config.json").write_text(json.dumps(config))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Adapters made on the embedded defaults by `inject` + `save_pretrained` (they record their bases), and copies
    that record another base or another architecture."""
    from vadapters.methods.i2v_adapter import I2VAdapterConfig
    from vadapters.methods.mv_adapter import MVAdapterConfig
    from vadapters.methods.res_adapter import ResAdapterConfig
    from vadapters.methods.sam_adapter import SAMAdapterConfig
    from vadapters.methods.sara import SaRAConfig
    from vadapters.models import load_sam
    from vadapters.models.defaults import SAM_CHECKPOINTS, SAM_URL
    from vadapters.pipelines import load_pipeline
    from vadapters.pipelines.image2video import load_video_pipeline

    root = tmp_path_factory.mktemp("studio")
    made = root / "made"
    sd = load_pipeline(None)
    _save(sd, ResAdapterConfig(rank=2, alpha=2.0), made / "res")
    _save(sd, SaRAConfig(), made / "sara")
    _save(sd, MVAdapterConfig(num_views=4), made / "mv")
    _save(load_video_pipeline(None), I2VAdapterConfig(), made / "i2v")
    _save(load_video_pipeline("tiny"), I2VAdapterConfig(), made / "i2v_random_video_model")
    _save(load_sam(), SAMAdapterConfig(), made / "sam")
    _variant(made / "res", made / "res_other", base_model_name_or_path=OTHER_SD)
    _variant(made / "res", made / "res_arch", block_out_channels=[32, 64])
    _save(load_pipeline("tiny"), SaRAConfig(), made / "sara_other")  # same architecture, other weights
    _variant(made / "mv", made / "mv_arch", block_out_channels=[32, 64])
    vit_b = {"class": "Sam", "img_size": 1024, "embed_dim": 768, "depth": 12}
    _variant(made / "sam", made / "sam_vit_b", base_model_name_or_path=SAM_URL + SAM_CHECKPOINTS["vit_b"],
             base_signature=vit_b)  # fmt: skip
    shutil.copytree(weights_dir() / "tiny-sd", root / "my-sd")  # a user's own copy: another base by name
    return root


@pytest.fixture(scope="module")
def demo(root):
    from vadapters.apps.studio import build_demo

    return build_demo([str(root)])


def _lists(demo) -> dict:
    return {d.api_name: d.fn for d in demo.fns.values() if d.fn is not None and "_list_" in (d.api_name or "")}


def _offered(update) -> dict[str, str]:
    """`{folder: label}` of a dropdown update."""
    return {value.removeprefix("made/"): label for label, value in update.choices}


def test_generate_offers_by_base_marks_other_bases_and_leaves_out_refusals(demo):
    update = _lists(demo)["generate_list_adapters"]()
    offered = _offered(update)
    assert set(offered) == {"res", "res_other", "sara"}
    assert offered["res"] == "made/res" and offered["sara"] == "made/sara"  # made on the default: as they are
    assert OTHER_SD in offered["res_other"] and "warning" in offered["res_other"]
    assert "base: vadapters:tiny-sd" in update.info and "2 left out" in update.info
    assert "res_arch" in update.info and "sara_other" in update.info


def test_a_typed_pipeline_changes_what_is_offered_and_marked(demo, root):
    offered = _offered(_lists(demo)["generate_list_adapters"]("my-sd"))
    assert set(offered) == {"res", "res_other"}  # SaRA is tied to the weights it was made on
    assert "vadapters:tiny-sd" in offered["res"] and OTHER_SD in offered["res_other"]
    update = _lists(demo)["generate_list_adapters"]("../outside")
    assert "res_arch" in _offered(update) and "outside" in update.info  # unresolved: by method, reason noted


def test_multiview_video_and_segment_lists_follow_their_bases(demo):
    lists = _lists(demo)
    assert set(_offered(lists["generate_list_mv_adapters"]())) == {"mv"}
    video = lists["image_to_video_list_adapters"]()
    assert set(_offered(video)) == {"i2v"} and "vadapters:tiny-animatediff" in video.info
    assert "i2v_random_video_model" in video.info  # another architecture: the load would refuse it
    assert set(_offered(lists["segment_list_adapters"]())) == {"sam"}
    assert set(_offered(lists["segment_list_adapters"]("vit_b"))) == {"sam_vit_b"}
    assert set(_offered(lists["segment_list_adapters"]("vit_l"))) == set()


def test_what_a_list_says_is_what_loading_does(root):
    """Offered as is: loads silently; marked: loads with a BaseModelWarning; left out: the load refuses."""
    from vadapters.apps.context import StudioContext
    from vadapters.apps.tab_generate import load_generation_pipeline

    ctx = StudioContext([str(root)])
    for folder, expected in (("res", None), ("res_other", BaseModelWarning), ("sara", None),
                             ("res_arch", IncompatibleBaseError), ("sara_other", IncompatibleBaseError)):  # fmt: skip
        path = str(root / "made" / folder)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if expected is IncompatibleBaseError:
                with pytest.raises(IncompatibleBaseError):
                    load_generation_pipeline(ctx, None, [path])
                continue
            load_generation_pipeline(ctx, None, [path])
        found = [w.category for w in caught if issubclass(w.category, BaseModelWarning)]
        assert found == ([expected] if expected else []), folder


def test_segment_takes_sam_model_types_through_load_sam(root, tmp_path, monkeypatch):
    """`vit_b` goes to `load_sam`, which looks in torch.hub's cache; offline and missing, the error names the
    official file and where to put it."""
    import huggingface_hub.constants as constants

    from vadapters.apps.context import StudioContext
    from vadapters.apps.tab_segment import load_example, segment

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    image, _ = load_example("salient scene 0")
    ctx = StudioContext([str(root)])
    with pytest.raises(CheckpointError, match=r"sam_vit_b_01ec64\.pth.*torch.*checkpoints"):
        segment(ctx, image, "vit_b", "", "", "", None)
    with pytest.raises(vadapters.BadInputError, match="does not exist"):
        segment(ctx, image, "vit_q", "", "", "", None)  # not a model type: a path, confined to the roots


@pytest.mark.slow
def test_segment_runs_an_official_vit_b_by_model_type(root, tmp_path, monkeypatch):
    """A ViT-B checkpoint in the official layout (deterministic values, 375 MB) where torch.hub keeps it: the
    Segment tab runs it by model type."""
    from vadapters.apps.context import StudioContext
    from vadapters.apps.tab_segment import load_example, segment
    from vadapters.models.real import sam_vit

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "sam_vit_b_01ec64.pth"
    cached.parent.mkdir(parents=True)
    torch.save(sam_vit("vit_b", device="cpu", seed=0).state_dict(), cached)
    image, _ = load_example("salient scene 0")
    gallery, _ = segment(StudioContext([str(root)]), image, "vit_b", "", "96,96", "", None)
    assert len(gallery) == 1 and gallery[0][0].shape == image.shape and np.isfinite(gallery[0][0]).all()
