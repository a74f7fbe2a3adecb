"""Issue 19's fair SaRA benchmark: the learning rate is chosen per arm on the validation split, forgetting is compared
at equal fit per seed, and the gate needs every seed; (slow) a smoke run of the benchmark at tiny settings."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import _sara_tuning as tuning  # noqa: E402
from _sara_common import forgetting_at_fit  # noqa: E402


def _run(method: str, seed: int, b: list[float], a: list[float]) -> dict:
    curve = [{"step": 10 * i, "B": bi, "A": ai, "B_val": bi, "A_val": ai} for i, (bi, ai) in enumerate(zip(b, a))]
    return {"method": method, "seed": seed, "curve": curve}


def test_choose_lr_takes_the_best_finite_validation_fit_and_ties_go_low():
    assert tuning.choose_lr({1e-4: 0.03, 1e-3: 0.02, 3e-3: 0.025}) == 1e-3
    assert tuning.choose_lr({1e-4: 0.02, 1e-3: 0.02}) == 1e-4
    assert tuning.choose_lr({1e-4: 0.03, 1e-2: float("nan"), 3e-2: math.inf}) == 1e-4
    assert tuning.choose_lr({1e-3: float("nan"), 1e-4: float("nan")}) == 1e-4


def test_sweep_runs_every_arm_on_the_same_grid_and_reports_it():
    calls = []

    def run(arm, lr):
        calls.append((arm, lr))
        best = {"lora": 1e-3, "sara": 3e-4}[arm]
        return _run(arm, 0, [0.05, 0.02 + abs(math.log10(lr / best))], [0.01, 0.012])

    sweep = tuning.lr_sweep(["lora", "sara"], [1e-4, 3e-4, 1e-3], run)
    assert calls == [(a, lr) for a in ("lora", "sara") for lr in (1e-4, 3e-4, 1e-3)]
    assert sweep["chosen"] == {"lora": 1e-3, "sara": 3e-4}
    assert sweep["at_grid_edge"] == {"lora": True, "sara": False}
    assert sweep["table"]["sara"]["0.0003"]["A_val_forgetting"] == pytest.approx(0.002)
    lines = "\n".join(
        tuning.markdown_sections(
            {
                "sweep": sweep,
                "equal_fit": tuning.equal_fit([]),
                "settings": {"steps": 20},
                "upstream_lr": 1.02e-4,
            }
        )
    )
    assert "*0.0200 / +0.0020" in lines and "Paper's claim" in lines and "lora" in lines


def test_forgetting_is_read_where_the_fit_level_is_first_reached():
    run = _run("sara", 0, [0.05, 0.03, 0.01], [0.010, 0.012, 0.020])
    assert forgetting_at_fit(run, 0.02) == pytest.approx(0.006)  # halfway between 0.012 and 0.020
    assert forgetting_at_fit(run, 0.05) == 0.0
    assert forgetting_at_fit(run, 0.005) is None


def _seeds(sara_forgets_less_in: set[int], others=("lora", "random_sparse", "full"), seeds=(0, 1, 2)) -> list[dict]:
    runs = []
    for seed in seeds:
        for arm in ("sara", *others):
            worse = (
                arm != "sara" and seed in sara_forgets_less_in or arm == "sara" and seed not in sara_forgets_less_in
            )
            runs.append(_run(arm, seed, [0.05, 0.03, 0.02], [0.01, 0.011, 0.014 if worse else 0.012]))
    return runs


def test_equal_fit_gate_needs_less_forgetting_than_lora_and_random_sparse_in_every_seed():
    every = tuning.equal_fit(_seeds({0, 1, 2}))
    assert every["gate"]["holds"]
    lora = every["by_arm"]["lora"]
    assert lora["reference_lower"] == 3 and lora["difference"]["mean"] == pytest.approx(0.002)
    assert not tuning.equal_fit(_seeds({0, 1}))["gate"]["holds"]
    assert not tuning.equal_fit(_seeds({0, 1}, seeds=(0, 1)))["gate"]["holds"]  # fewer than 3 seeds
    assert not tuning.equal_fit(_seeds({0, 1, 2}, others=("lora", "full")))["gate"]["holds"]  # no random sparse


@pytest.mark.slow
def test_quick_run_tunes_every_arm_and_writes_the_report(tmp_path):
    command = [sys.executable, str(REPO / "benchmarks" / "sara_benchmark.py"), "--quick", "--threads", "1"]
    command += ["--steps", "2", "--eval-every", "1", "--n-train", "8", "--n-val", "4", "--cost-rounds", "1"]
    command += ["--lr-grid", "1e-4,1e-3", "--no-ablations", "--out", str(tmp_path)]
    subprocess.run(command, check=True, cwd=REPO, capture_output=True, timeout=1800)
    report = json.loads((tmp_path / "sara_benchmark_quick.json").read_text())
    assert set(report["sweep"]["chosen"]) == set(tuning.ARMS)
    assert {r["method"] for r in report["runs"]} == set(tuning.ARMS)
    assert all(r["lr"] == report["sweep"]["lrs"][r["method"]] for r in report["runs"])
    assert "Paper's claim" in (tmp_path / "sara_benchmark_quick.md").read_text()
