"""The SaRA benchmark's cost part: step time (variants interleaved in one process) and peak memory of training (one
fresh single-threaded process per variant), plus exact element counts of what a step keeps.

Run by `benchmarks/sara_benchmark.py`; this file is also the memory probe's child process
(`python benchmarks/_sara_cost.py --memory-child VARIANT --memory-payload FILE --batch-size N`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _perf_timing import reset_peak  # noqa: E402 (sibling module: VmHWM reset, one implementation)
from _sara_common import Denoising, build_variant, train_step  # noqa: E402 (sibling module)


def _proc_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        return int(re.search(rf"{field}:\s+(\d+)", fh.read()).group(1))


COST_VARIANTS = ("full", "lora", "sara", "sara_hooks")


def _lr(lrs: dict[str, float], variant: str) -> float:
    """The tuned rate of an arm; SaRA with gradient hooks is SaRA (the rate changes no cost)."""
    return float(lrs["sara" if variant == "sara_hooks" else variant])


def cost(base_unet, quantile, task, train_b, args, lrs: dict[str, float]) -> dict[str, Any]:
    """Step time (variants interleaved step by step, in this process) and peak memory (one fresh subprocess per
    variant: VmHWM of its training steps above the RSS with the frozen model and data loaded), plus exact
    element counts of what a step keeps."""
    import tempfile

    import torch

    variants = {m: build_variant(m, base_unet, quantile, args, 0, _lr(lrs, m)) for m in COST_VARIANTS}
    generators = {m: torch.Generator().manual_seed(7) for m in COST_VARIANTS}
    times: dict[str, list[float]] = {m: [] for m in COST_VARIANTS}
    counts: dict[str, dict[str, int]] = {}
    for round_ in range(args.cost_rounds + 1):
        for m in COST_VARIANTS:
            t0 = time.perf_counter()
            _, counts[m] = train_step(variants[m], task, train_b, round_, args.batch_size, generators[m])
            if round_:  # round 0 warms up (optimizer state, allocator, kernels)
                times[m].append(time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as tmp:
        payload = os.path.join(tmp, "payload.pt")
        torch.save(
            {
                "config": dict(base_unet.config),
                "state": base_unet.state_dict(),
                "train_b": {k: train_b[k] for k in ("latents", "emb")},
                "val": task.val,
                "scheduler": dict(task.scheduler.config),
                "quantile": quantile,
                "lrs": dict(lrs),
                "args": vars(args),
            },
            payload,
        )
        memory = {m: _memory_in_subprocess(payload, m, args.batch_size) for m in COST_VARIANTS}
        small = {m: _memory_in_subprocess(payload, m, 1) for m in COST_VARIANTS}
        for m in COST_VARIANTS:
            memory[m]["peak_rss_mb_batch1"] = small[m]["peak_rss_mb"]
            memory[m]["peak_allocated_mb_batch1"] = small[m]["peak_allocated_mb"]
    out = {}
    for m in COST_VARIANTS:
        counts[m]["trainable"] = sum(p.numel() for p in variants[m]["params"])
        extra = counts[m]["index_elements"] = variants[m]["index_elements"]
        counts[m]["retained_state_elements"] = (
            counts[m]["optimizer_state_elements"] + counts[m]["grad_elements"] + extra
        )
        out[m] = {**counts[m], "step_seconds_median": statistics.median(times[m]), **memory[m]}
    return {"rounds": args.cost_rounds, "variants": out}


def _memory_in_subprocess(payload: str, variant: str, batch_size: int) -> dict[str, float]:
    """Peak RSS (MB) of training `variant` in a fresh single-threaded process with one malloc arena (so that
    allocator noise stays below the differences being measured)."""
    import subprocess

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "1"}
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", variant, "--memory-payload", payload]
    done = subprocess.run(
        [*cmd, "--batch-size", str(batch_size)],
        capture_output=True, text=True, env=env, timeout=1800,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"memory probe of {variant} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_child(variant: str, payload: str, batch_size: int) -> None:
    """Child process: rebuild the frozen UNet and data, set up `variant`, then measure the peak RSS of its
    training steps above the RSS before the set-up (so the variant's own tensors and optimizer state count)."""
    import ctypes
    import gc

    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils._python_dispatch import TorchDispatchMode

    data = torch.load(payload, weights_only=True)  # our own payload: tensors, dicts, lists and numbers only
    args = argparse.Namespace(**{**data["args"], "batch_size": batch_size})
    torch.set_num_threads(1)
    unet = UNet2DConditionModel.from_config(data["config"])
    unet.load_state_dict(data["state"])
    unet.requires_grad_(False).eval()
    task = Denoising.__new__(Denoising)
    from diffusers import DDPMScheduler

    task.scheduler = DDPMScheduler.from_config(data["scheduler"])
    task.steps = task.scheduler.config.num_train_timesteps
    task.val = data["val"]
    train_b, data_lrs = data["train_b"], data["lrs"]
    del data
    gc.collect()
    with contextlib.suppress(OSError):  # non-glibc: no malloc_trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    inuse = _malloc_in_use()
    baseline, baseline_inuse = _proc_kb("VmRSS"), inuse()
    v = build_variant(variant, unet, args.matched_quantile, args, 0, _lr(data_lrs, variant))
    gc.collect()  # the selection's transient copies are set-up, not training: drop them from the peak
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    reset = reset_peak()
    generator = torch.Generator().manual_seed(7)
    steps = max(3, args.cost_rounds)
    for step in range(steps):
        train_step(v, task, train_b, step, args.batch_size, generator)
    peak = _proc_kb("VmHWM")
    peak_inuse = [inuse()]

    class Sampler(TorchDispatchMode):  # allocator bytes in use after every aten op of one more step
        def __torch_dispatch__(self, func, types, args_=(), kwargs=None):
            out = func(*args_, **(kwargs or {}))
            peak_inuse[0] = max(peak_inuse[0], inuse())
            return out

    with Sampler():
        train_step(v, task, train_b, steps, args.batch_size, generator)
    print(
        json.dumps(
            {
                "peak_rss_mb": (peak - baseline) / 1024 if reset else float("nan"),
                "peak_allocated_mb": (peak_inuse[0] - baseline_inuse) / 2**20,
                "hwm_reset": reset,
            }
        )
    )


def _malloc_in_use():
    """A function giving glibc's bytes in use (`mallinfo2`: heap + mmap'd chunks), or NaN elsewhere."""
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (n, ctypes.c_size_t)
            for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                      "keepcost")
        ]  # fmt: skip

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = MallInfo2
    except (OSError, AttributeError):
        return lambda: float("nan")

    def inuse() -> float:
        info = libc.mallinfo2()
        return float(info.uordblks + info.hblkhd)

    return inuse


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--memory-child", required=True)
    parser.add_argument("--memory-payload", required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    cli = parser.parse_args()
    memory_child(cli.memory_child, cli.memory_payload, cli.batch_size)
