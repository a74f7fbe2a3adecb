"""Studio Train trains every method with its own recipe: view sets for MV-Adapter, clips for I2V-Adapter."""

from __future__ import annotations

import json
import warnings

import pytest

import vadapters
from vadapters.apps.cache import ModelCache
from vadapters.apps.context import StudioContext
from vadapters.apps.tab_train import make_job
from vadapters.core.bases import BaseModelWarning

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("method", "data"), [("mv_adapter", "synthetic:views"), ("i2v_adapter", "synthetic:motion")])
def test_train_tab_trains_with_the_methods_recipe_on_the_default_base(tmp_path, method, data):
    ctx = StudioContext([str(tmp_path)], cache=ModelCache())
    job = make_job(ctx, method, "", data, None, 1, 1, 1e-4, "", "16", 0, f"run-{method}", False)
    job.start()
    assert job.wait(900), "the job did not finish"
    assert job.state == "finished", job.message
    out = tmp_path / "outputs" / "studio" / "runs" / f"run-{method}"
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["method"] == method
    if method == "mv_adapter":
        from vadapters.pipelines import MultiViewPipeline, load_pipeline

        assert config["num_views"] == 6 and config["base_model_name_or_path"] == "vadapters:tiny-sd"
        host = MultiViewPipeline.from_pipe(load_pipeline(None))  # what Generate's multi-view mode loads
    else:
        from vadapters.pipelines.image2video import load_video_pipeline

        assert config["base_model_name_or_path"] == "vadapters:tiny-animatediff"
        host = load_video_pipeline(None)  # what the Video tab and `vadapters i2v` load
    with warnings.catch_warnings():
        warnings.simplefilter("error", BaseModelWarning)
        vadapters.load(host, out)


def test_train_tab_refuses_a_folder_for_mv_adapter(tmp_path):
    ctx = StudioContext([str(tmp_path)], cache=ModelCache())
    with pytest.raises(vadapters.BadInputError, match="mv_adapter trains on synthetic:views here"):
        make_job(ctx, "mv_adapter", "", "images", None, 1, 1, 1e-4, "", "16", 0, "run", False)
