"""Every trainer under `accelerate launch` with 2 CPU processes (gloo): both ranks hold identical adapter values, and
they equal one process trained at the same global batch (the trainer splits each global batch across processes and
the recipes draw their rows' noise with `BatchShard`).

One launch trains all five methods (`tests/multiprocess_train.py`), one plain process does the same at twice the
per-process batch; each method is then checked on its own. Slow: about two minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.multiprocess_train import CASES
from vadapters.core.io import load_tensors

SCRIPT = os.path.join(os.path.dirname(__file__), "multiprocess_train.py")
BATCH = 1  # per process; the single process runs at 2 x BATCH
LAUNCH = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
LAUNCH += ["--mixed_precision", "no", "--dynamo_backend", "no"]

pytestmark = pytest.mark.slow
# Attention key biases (SAM's decoder copy): a key bias shifts every logit of a query by the same amount, so the loss
# does not depend on it and its gradient is round-off, which AdamW scales up to full steps; such values differ
# between any two summation orders (all-reduce vs one batch) and say nothing about the trainer.
SHIFT_INVARIANT = ("k_proj.bias",)
TOLERANCE = 2e-5  # trained 3 AdamW steps at lr 1e-3: a step moves a value by up to ~1e-3, unsharded noise by that much


def _run(prefix: list[str], out, batch: int, home) -> None:
    """`python [prefix] multiprocess_train.py OUT BATCH`; a user's accelerate config (under HF_HOME) is kept out."""
    env = {**os.environ, "HF_HOME": str(home), "OMP_NUM_THREADS": "1", "VADAPTERS_NO_PROGRESS": "1"}
    done = subprocess.run(
        [sys.executable, *prefix, SCRIPT, str(out), str(batch)], env=env, capture_output=True, text=True, timeout=1800
    )
    (out / "log.txt").parent.mkdir(parents=True, exist_ok=True)
    (out / "log.txt").write_text(done.stdout + done.stderr)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("multiprocess")
    _run(LAUNCH, root / "two", BATCH, root / "hf_home")
    _run([], root / "one", 2 * BATCH, root / "hf_home")
    return root


def _read(folder, method: str, rank: int):
    error = folder / method / f"rank{rank}.error"
    assert not error.exists(), error.read_text()[-3000:]
    path = folder / method / f"rank{rank}.safetensors"
    assert path.exists(), (folder / "log.txt").read_text()[-3000:]
    tensors, _ = load_tensors(str(path))
    return tensors, json.loads((folder / method / f"rank{rank}.json").read_text())


@pytest.mark.parametrize("method", list(CASES))
def test_two_processes_agree_and_equal_one_process_at_the_global_batch(runs, method):
    rank0, info0 = _read(runs / "two", method, 0)
    rank1, info1 = _read(runs / "two", method, 1)
    single, info = _read(runs / "one", method, 0)
    assert info0["processes"] == info1["processes"] == 2 and info["processes"] == 1
    assert info0["loss"] != info1["loss"]  # each rank saw its own rows of the global batch
    assert rank0.keys() == rank1.keys() == single.keys() and len(rank0) == info0["tensors"] > 0
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0), "the ranks diverged"
    # one process at the global batch: the same numbers up to the order of the gradient sums (all-reduce vs batch)
    worst = max(float((rank0[k] - single[k]).abs().max()) for k in rank0 if not k.endswith(SHIFT_INVARIANT))
    assert worst <= TOLERANCE, f"{method}: 2 processes vs 1 differ by {worst:.3g}"
    assert abs((info0["loss"] + info1["loss"]) / 2 - info["loss"]) <= 1e-4 * max(1.0, abs(info["loss"]))
