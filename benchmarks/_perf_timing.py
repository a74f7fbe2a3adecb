"""Timing and memory primitives of benchmarks/perf.py: interleaved arms, medians with spread, peak memory.

Timing: every arm of a group runs once per repeat, the arms' order rotating from one repeat to the next, so a load
spike on this shared machine hits every arm alike and no arm always runs first; each call records wall time
(`time.perf_counter`) and the process's CPU time (`time.process_time`: all threads, user + system). A ratio is the
median of the arm over the median of its reference, with the spread of the paired per-repeat ratios beside it.

Memory of a training step: one fresh process per arm (`perf.py --train-worker`): after the frozen host and the
batch are built, the allocator is trimmed, the kernel's resident-set high-water mark (VmHWM) is reset through
/proc/self/clear_refs, and the step's peak is VmHWM minus the resident set at that point: every byte the arm adds
(adapter, optimizer state, gradients, activations, kernel workspaces, allocator slack), not the weights. Why not in
one process: torch's CPU allocator keeps no peak statistics, tracemalloc does not see tensor memory, and
ru_maxrss / VmHWM of a process that already ran another arm carries that arm's peak and its freed-but-kept pages.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Arm:
    """One thing to time: `call()` is timed; `enter()` / `exit()` (untimed) run around every call."""

    call: Callable[[], Any]
    enter: Callable[[], Any] | None = None
    exit: Callable[[], Any] | None = None


def interleave(
    arms: dict[str, Arm], repeats: int, warmup: int = 1, min_seconds: float = 0.0
) -> dict[str, dict[str, list[float]]]:
    """Run every arm `warmup` + `repeats` times, interleaved with a rotating order; return the timed samples
    `{arm: {"wall": [...], "cpu": [...]}}` in seconds per call (sample `r` of every arm comes from round `r`).

    `min_seconds`: a sample repeats the call `k` times, `k` chosen in the warm-up so that the first arm's sample
    lasts at least this long (millisecond calls of tiny hosts are otherwise below the clocks' noise); every arm uses
    the same `k`, and `enter` / `exit` run once around the `k` calls."""
    names = list(arms)
    samples = {n: {"wall": [], "cpu": []} for n in names}
    inner = 1
    for round_ in range(-(max(1, warmup) if min_seconds > 0 else warmup), repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            arm = arms[name]
            if arm.enter is not None:
                arm.enter()
            try:
                gc.collect()
                c0, t0 = time.process_time(), time.perf_counter()
                for _ in range(inner):
                    arm.call()
                t1, c1 = time.perf_counter(), time.process_time()
            finally:
                if arm.exit is not None:
                    arm.exit()
            if round_ >= 0:
                samples[name]["wall"].append((t1 - t0) / inner)
                samples[name]["cpu"].append((c1 - c0) / inner)
            elif round_ == -1 and name == names[0] and min_seconds > 0:
                inner = max(1, math.ceil(min_seconds / max(t1 - t0, 1e-6)))
    samples["_calls_per_sample"] = inner  # type: ignore[assignment]
    return samples


def spread(values: list[float]) -> dict[str, float]:
    """Median, quartiles, min and max of `values`."""
    values = sorted(values)
    if len(values) >= 4:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    else:
        q1, q3 = values[0], values[-1]
    return {"median": statistics.median(values), "q1": q1, "q3": q3, "min": values[0], "max": values[-1]}


def ratios(samples: dict[str, dict[str, list[float]]], reference: str, per: dict[str, float] | None = None) -> dict:
    """Per arm and clock: seconds (median and spread) and the ratio to `reference` (median over median, and the
    spread of the paired per-round ratios). `per` divides an arm's time (and its reference's) by a count, e.g.
    views, so the ratios read "per view"; it does not change a ratio of equal counts."""
    per = per or {}
    out: dict[str, Any] = {}
    for name, clocks in samples.items():
        if name.startswith("_"):
            continue
        row: dict[str, Any] = {}
        for clock, values in clocks.items():
            ref = samples[reference][clock]
            k, k_ref = per.get(name, 1.0), per.get(reference, 1.0)
            paired = [(v / k) / (r / k_ref) for v, r in zip(values, ref)]
            row[clock] = {
                "seconds": spread(values),
                "ratio": (statistics.median(values) / k) / (statistics.median(ref) / k_ref),
                "paired_ratio": spread(paired),
            }
        row["repeats"] = len(clocks["wall"])
        row["calls_per_sample"] = samples.get("_calls_per_sample", 1)
        out[name] = row
    return out


# ------------------------------------------------------------------------------------------------------ memory
def proc_kib(field: str) -> int:
    """A `/proc/self/status` field in KiB (`VmRSS`, `VmHWM`)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def trim() -> None:
    """Collect garbage and give freed heap pages back to the kernel (glibc), so the baseline is what is live."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def reset_peak() -> bool:
    """Reset VmHWM to the current resident set (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """`with PeakMemory() as m: ...` -> `m.bytes`: the block's resident-set peak above the resident set at entry
    (None where VmHWM cannot be reset)."""

    def __enter__(self) -> PeakMemory:
        trim()
        self.base = proc_kib("VmRSS")
        self.ok = reset_peak()
        self.bytes: int | None = None
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bytes = (proc_kib("VmHWM") - self.base) * 1024 if self.ok else None
