"""Test configuration: offline before anything imports huggingface_hub, few threads, shared tiny hosts."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("VADAPTERS_NO_PROGRESS", "1")

import pathlib  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = pathlib.Path(__file__).resolve().parents[1]
OFFICIAL = REPO.parent / "shared" / "fixtures" / "official" / "resadapter"


@pytest.fixture(scope="session")
def official_dir() -> pathlib.Path:
    if not OFFICIAL.is_dir():
        pytest.skip(f"official ResAdapter fixtures not found at {OFFICIAL}")
    return OFFICIAL


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest single-threaded; two spinning threads on a loaded 2-core machine cost 10x CPU.
    Use with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def cnn():
    """A random-init timm `test_resnet` (BatchNorm) classifier, 10 classes, 32 px."""
    from vadapters.models import tiny_timm_classifier

    return tiny_timm_classifier("test_resnet", seed=0)


@pytest.fixture(scope="module")
def vit():
    """A random-init timm `test_vit` (LayerNorm, patch 4) classifier, 10 classes, 32 px."""
    from vadapters.models import tiny_timm_classifier

    return tiny_timm_classifier("test_vit", seed=0)


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` need a CUDA device; where there is none they skip, naming what is missing."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
