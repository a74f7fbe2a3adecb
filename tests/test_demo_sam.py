"""The demo's SAM-Adapter section loads the shipped adapters (no training) and shows them beating SAM, live."""

from __future__ import annotations

import json
import os


def test_demo_sam_section_loads_the_shipped_adapters_and_scores_them_live(tmp_path):
    from vadapters.demo import run_demo

    metrics = run_demo(str(tmp_path), quick=True, only=["sam_adapter"])
    sam = metrics["sam_adapter"]
    assert sam["source"] == "shipped adapters" and not os.path.isdir(tmp_path / "sam_adapter")  # nothing trained
    for task in ("shadow", "camouflage"):
        row = sam[task]
        assert row["adapter"] == f"vadapters:sam-adapter-{'shadow' if task == 'shadow' else 'camouflage'}"
        assert row["sam_adapter"]["S"] > row["sam"]["S"] + 0.1  # the adapter's effect, measured on held-out scenes
        assert row["sam_adapter"]["BER"] < row["sam"]["BER"] - 10
        assert (tmp_path / f"sam_adapter_{task}.png").is_file()
        gate = row["gate"]  # the fair benchmark's gate (3 seeds, lr tuned per arm), carried from the manifest
        assert gate["holds"] and gate["result"].endswith("sam_adapter_fair_sweep3.md")
        assert gate["sam_adapter"]["S"]["mean"] - gate["decoder_only"]["S"]["mean"] >= 3 * max(
            gate["sam_adapter"]["S"]["std"], gate["decoder_only"]["S"]["std"]
        )
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["sam_adapter"]["shadow"]["recorded_200_scenes"]["sam_adapter"]["S"] > 0.8
    assert "shadow" in (tmp_path / "index.html").read_text()
