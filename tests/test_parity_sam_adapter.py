"""SAM-Adapter against the official code (tianrun-chen/SAM-Adapter-PyTorch, golden outputs in
shared/fixtures/parity/sam_adapter).

A tiny segment-anything `Sam` gets the fixture's image-encoder weights; the official-layout prompt generator is
written to a safetensors file and loaded the way a user would (`vadapters.load`: detection, conversion, strict
load), and the image encoder's output is compared with the official encoder's.
"""

from __future__ import annotations

import pytest
from parity_cases import sam_encode, sam_host, sam_official, sam_prompts
from parity_fixtures import load_parity, max_abs

import vadapters

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fixture():
    return load_parity("sam_adapter")


def test_plain_encoder_matches_official_host(fixture):
    out = sam_encode(sam_host(fixture), fixture)
    assert max_abs(out, fixture["outputs/plain"]) <= fixture.spec["tolerance"]["encoder_output"]


def test_official_checkpoint_gives_official_encoder_output(fixture, tmp_path):
    sam = sam_official(fixture, tmp_path)
    config = vadapters.get_adapter_config(sam, "official")
    inferred = fixture.spec["vadapters_inferred_config"]
    for field in ("scale_factor", "freq_rate", "official_token_layout"):
        assert getattr(config, field) == inferred[field], field
    out = sam_encode(sam, fixture)
    assert max_abs(out, fixture["outputs/official"]) <= fixture.spec["tolerance"]["encoder_output"]
    assert max_abs(out, fixture["outputs/plain"]) > 1.0  # the adapter moves the output: the check can fail


def test_per_block_prompts_match_official(fixture, tmp_path):
    """Intermediate: the prompt each block receives, as the official `get_prompt` output."""
    tol = fixture.spec["tolerance"]["encoder_output"]
    for i, prompt in enumerate(sam_prompts(sam_official(fixture, tmp_path), fixture)):
        official = fixture[f"outputs/prompts/{i}"]
        assert max_abs(prompt, official) <= tol, i
        assert float(official.abs().max()) > 0.1


def test_default_token_layout_differs_from_official_by_design(fixture, tmp_path):
    """vadapters' default (correct) token layout is a documented deviation: it must not reach the official output."""
    sam = sam_official(fixture, tmp_path, official_token_layout=False)
    assert max_abs(sam_encode(sam, fixture), fixture["outputs/official"]) > 1e-3
