"""Shared rules of the fair MV-Adapter / I2V-Adapter benchmarks (issue 19): seeds, learning-rate sweeps, gates.

- Every number is a mean over seeds with its sample standard deviation (n - 1), `aggregate`.
- A learning rate is chosen per arm on a validation split, never on the test split (`choose`), and the whole sweep
  is reported.
- A gate "method beats baseline by >= k std" holds when the difference of the seed means is at least `k` times the
  larger of the two arms' standard deviations over seeds (`gate`); the paired (same seed) difference's own mean and
  standard deviation are reported beside it.

Imported by sibling scripts run as `python benchmarks/<name>.py` (the script's folder is on sys.path).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any


def nanmean(values: Sequence[float]) -> float:
    kept = [float(v) for v in values if v == v]
    return statistics.mean(kept) if kept else float("nan")


def std(values: Sequence[float]) -> float:
    """Sample standard deviation (n - 1) of the finite values; 0 for fewer than two."""
    kept = [float(v) for v in values if v == v]
    return statistics.stdev(kept) if len(kept) > 1 else 0.0


def aggregate(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """`{"mean", "std"}` over seeds for every numeric leaf of the per-seed dicts (same keys in each); strings and
    other leaves are kept from the first seed."""
    out: dict[str, Any] = {}
    for key, value in per_seed[0].items():
        if isinstance(value, dict):
            out[key] = aggregate([s[key] for s in per_seed])
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            values = [s[key] for s in per_seed]
            out[key] = {"mean": nanmean(values), "std": std(values)}
        else:
            out[key] = value
    return out


def gate(method: Sequence[float], baseline: Sequence[float], k: float = 3.0, higher_is_better: bool = True) -> dict:
    """Does `method` beat `baseline` by at least `k` standard deviations (per-seed values of one metric)?"""
    sign = 1.0 if higher_is_better else -1.0
    margin = sign * (nanmean(method) - nanmean(baseline))
    spread = max(std(method), std(baseline))
    paired = [sign * (m - b) for m, b in zip(method, baseline)]
    return {
        "margin": margin,
        "std_method": std(method),
        "std_baseline": std(baseline),
        "needed": k * spread,
        "k": k,
        "paired_mean": nanmean(paired),
        "paired_std": std(paired),
        "seeds": len(paired),
        "holds": bool(len(paired) >= 3 and margin > 0 and margin >= k * spread),
    }


def choose(scores: dict[float, float], higher_is_better: bool = True) -> float:
    """The key (a learning rate) with the best finite validation score; ties go to the smaller key."""
    finite = {lr: s for lr, s in scores.items() if s == s and math.isfinite(s)}
    if not finite:
        return min(scores)
    best = max if higher_is_better else min
    target = best(finite.values())
    return min(lr for lr, s in finite.items() if s == target)


def sweep(lrs: Sequence[float], run: Callable[[float], float], higher_is_better: bool = True) -> dict[str, Any]:
    """Run `run(lr) -> validation score` for each learning rate; `{"scores": {lr: score}, "chosen": lr}`."""
    scores = {float(lr): float(run(float(lr))) for lr in lrs}
    return {"scores": scores, "chosen": choose(scores, higher_is_better), "higher_is_better": higher_is_better}


def parse_floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def fmt(cell: dict[str, float] | float, places: int = 3) -> str:
    if isinstance(cell, dict):
        return f"{cell['mean']:.{places}f} ± {cell['std']:.{places}f}"
    return f"{cell:.{places}f}"


def gate_line(name: str, result: dict, unit: str = "", places: int = 3) -> str:
    """One markdown line stating a gate and whether it holds."""
    verdict = "**holds**" if result["holds"] else "**does not hold**"
    return (
        f"- {name}: margin {result['margin']:.{places}f}{unit} vs needed {result['needed']:.{places}f}{unit} "
        f"({result['k']:g} x max std: method {result['std_method']:.{places}f}, baseline "
        f"{result['std_baseline']:.{places}f}; paired difference {result['paired_mean']:.{places}f} ± "
        f"{result['paired_std']:.{places}f} over {result['seeds']} seeds): {verdict}"
    )
