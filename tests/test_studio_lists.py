"""Studio adapter lists: filled when the page loads, and each tab offers only adapters it can run."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def demo(tmp_path):
    from vadapters.apps.studio import build_demo

    for method in ("res_adapter", "sara", "mv_adapter", "i2v_adapter", "sam_adapter"):
        folder = tmp_path / "adapters" / method
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text(json.dumps({"method": method}))
    return build_demo([str(tmp_path)])


def _choices(update) -> list[str]:
    return [c[0] if isinstance(c, (tuple, list)) else c for c in update.choices]


def test_each_tab_lists_only_the_adapters_it_can_run(demo):
    fns = {d.api_name: d.fn for d in demo.fns.values() if d.fn is not None}
    expected = {
        "generate_list_adapters": {"adapters/res_adapter", "adapters/sara"},  # MV / I2V run in their own modes
        "generate_list_mv_adapters": {"adapters/mv_adapter"},
        "image_to_video_list_adapters": {"adapters/i2v_adapter"},
        "segment_list_adapters": {"adapters/sam_adapter"},
    }
    for api_name, names in expected.items():
        assert set(_choices(fns[api_name]())) == names, api_name


def test_adapter_lists_are_filled_when_the_page_loads(demo):
    on_load = [d for d in demo.fns.values() if any(event == "load" for _, event in d.targets)]
    refreshers = {d.fn for d in demo.fns.values() if "_list_" in (d.api_name or "")}  # the Refresh buttons' functions
    assert len(refreshers) == 4 and refreshers <= {d.fn for d in on_load}
