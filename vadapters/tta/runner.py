"""Stream runner: drive any `vadapters.tta` wrapper over a test stream and report per-domain error.

Streams come from `vadapters.synthetic.streams` on a held-out `ShapeClasses` set (seed 1000, the default
classifiers' clean test split) or `ColourDigits("test")`:

* "continual": the corruptions one after another, samples i.i.d. within each, never reset (CoTTA's protocol);
  `repeats=2` gives the revisit pass used to measure forgetting.
* "iid" / "non-iid" (class-sorted) / "label-shift" (Zipf a=2) / "label-shift-non-iid": one independent stream per
  corruption; the method is reset between corruptions (LAME's scenarios).

A *segment* is a run of consecutive batches of one domain; error is reported per segment, with `pass` counting
repeats of a domain.

Example:
    >>> from vadapters.models import tiny_timm_classifier
    >>> from vadapters.tta import LAME
    >>> batches = make_stream("iid", corruptions=["clean"], num_samples=20, batch_size=8)
    >>> result = run_stream(LAME(tiny_timm_classifier("test_resnet")), batches, progress=False)
    >>> [s["domain"] for s in result.segments], result.segments[0]["n"]
    (['clean'], 20)
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch

from vadapters.errors import BadInputError, CheckpointError
from vadapters.tta.base import TTAMethod

STREAMS = ("continual", "iid", "non-iid", "label-shift", "label-shift-non-iid")
DATASETS = ("shapes", "digits")
HELD_OUT_SEED = 1000


def load_classifier(spec: str | None = "cnn") -> torch.nn.Module:
    """A classifier for adaptation: "cnn" / "vit" (the embedded defaults), a folder in their layout, a timm model
    name with its pretrained weights (`"resnet18.a1_in1k"`, `"hf-hub:ORG/NAME"` or `ORG/NAME`, resolved by timm
    through the Hugging Face cache), or "tiny:NAME" (a random-init timm test model, for smoke tests only)."""
    if spec is not None and str(spec).startswith("tiny:"):
        from vadapters.models import tiny_timm_classifier

        return tiny_timm_classifier(str(spec)[5:]).eval()
    from vadapters.models.defaults import CLASSIFIER_KINDS, load_default_classifier, load_pretrained_classifier

    if spec is not None and str(spec) not in CLASSIFIER_KINDS and not os.path.isdir(spec):
        return load_pretrained_classifier(str(spec))
    try:
        return load_default_classifier(spec or "cnn")
    except CheckpointError as err:
        raise CheckpointError(
            f"cannot load the classifier {spec!r}: {err}. Train it with `vadapters train-base tiny-classifier-"
            f"{spec if spec in ('cnn', 'vit') else 'cnn'}`, or use --model tiny:test_resnet for a smoke test"
        ) from err


def held_out_dataset(name: str = "shapes", num_samples: int | None = None):
    """The held-out clean data streams are built from."""
    from vadapters.synthetic.classification import ColourDigits, ShapeClasses

    if name == "shapes":
        return ShapeClasses(num_samples or 1000, seed=HELD_OUT_SEED)
    if name == "digits":
        data = ColourDigits("test")
        if num_samples:
            return data.images_uint8()[:num_samples], data.labels[:num_samples]
        return data
    raise BadInputError(f"dataset must be one of {', '.join(DATASETS)}, got {name!r}")


def make_stream(
    kind: str = "continual",
    corruptions: Sequence[str] | str = "standard",
    severity: int = 5,
    batch_size: int = 64,
    seed: int = 0,
    order: str = "standard",
    repeats: int = 1,
    num_samples: int | None = 1000,
    dataset: Any = "shapes",
    cache_dir: str | None = None,
) -> list[dict]:
    """Batches (dicts with `x`, `y`, `domain`, and `reset` = reset the method before this batch).

    `dataset` is a name in `DATASETS` or anything `vadapters.synthetic.streams` accepts.
    """
    from vadapters.synthetic import streams as S

    if kind not in STREAMS:
        raise BadInputError(f"stream must be one of {', '.join(STREAMS)}, got {kind!r}")
    data = held_out_dataset(dataset, num_samples) if isinstance(dataset, str) else dataset
    names = list(S.CORRUPTIONS) if corruptions == "standard" else list(corruptions)
    if kind == "continual":
        batches = S.continual_stream(data, names, severity, batch_size, order, seed, "iid", repeats, cache_dir)
        return [dict(b, reset=i == 0) for i, b in enumerate(batches)]
    if order == "random":
        import numpy as np

        names = [names[i] for i in np.random.default_rng([seed, 0x0DE5]).permutation(len(names))]
    batches = []
    for _ in range(repeats):
        for name in names:
            if kind in ("iid", "non-iid"):
                build = S.iid_stream if kind == "iid" else S.class_sorted_stream
                part = build(data, batch_size, seed, name, severity, cache_dir)
            else:
                ordering = "iid" if kind == "label-shift" else "class_sorted"
                part = S.label_shift_stream(data, batch_size, seed, name, severity, 2.0, ordering, cache_dir)
            batches += [dict(b, reset=i == 0) for i, b in enumerate(part)]
    return batches


def _rss_peak_reset() -> int | None:
    """Reset the kernel's peak-RSS mark (Linux `clear_refs` 5) and return the current RSS in bytes."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _proc_status("VmRSS")
    except OSError:
        return None


def _proc_status(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def release_free_heap() -> bool:
    """glibc only: `malloc_trim(0)`, handing every free heap page back to the OS; returns whether it ran.

    Afterwards the resident set holds live memory only, so the kernel's peak-RSS mark over a block measures what
    the block itself needed.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


class PeakMemory:
    """Peak extra memory of a block: CUDA allocator peak on GPU, else the process's peak RSS above its start.

    On CPU this needs Linux (`/proc/self/clear_refs`); free heap pages are released first (`release_free_heap`) so
    that the block cannot hide in memory the allocator already holds. `bytes` is None where no measurement is
    possible.
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.cuda = torch.device(device).type == "cuda"
        self.bytes: int | None = None

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._start = torch.cuda.memory_allocated()
        else:
            release_free_heap()
            self._start = _rss_peak_reset()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.bytes = torch.cuda.max_memory_allocated() - self._start
        elif self._start is not None:
            peak = _proc_status("VmHWM")
            self.bytes = None if peak is None else max(0, peak - self._start)


@dataclasses.dataclass
class StreamResult:
    """Outcome of `run_stream`: per-segment errors, timings and memory."""

    method: str
    config: dict[str, Any]
    segments: list[dict[str, Any]]
    batch_seconds: list[float]
    peak_memory_bytes: int | None
    seconds: float

    @property
    def mean_error(self) -> float:
        """Mean over segments of the per-segment error (CoTTA's "mean error")."""
        return sum(s["error"] for s in self.segments) / max(1, len(self.segments))

    @property
    def overall_error(self) -> float:
        n = sum(s["n"] for s in self.segments)
        return sum(s["errors"] for s in self.segments) / max(1, n)

    @property
    def seconds_per_batch(self) -> float:
        times = self.batch_seconds[1:] or self.batch_seconds  # the first batch pays one-off warm-up costs
        return sum(times) / max(1, len(times))

    def pass_errors(self) -> list[float]:
        """Mean segment error of each pass over the domains (pass 0, 1, ...): forgetting shows as a rise."""
        passes = sorted({s["pass"] for s in self.segments})
        return [
            sum(s["error"] for s in self.segments if s["pass"] == p) / sum(1 for s in self.segments if s["pass"] == p)
            for p in passes
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "config": self.config,
            "mean_error": self.mean_error,
            "overall_error": self.overall_error,
            "pass_errors": self.pass_errors(),
            "seconds_per_batch": self.seconds_per_batch,
            "peak_memory_bytes": self.peak_memory_bytes,
            "seconds": self.seconds,
            "segments": self.segments,
        }


def run_stream(
    method: TTAMethod, batches: Sequence[dict], progress: bool = True, measure_memory: bool = False
) -> StreamResult:
    """Feed `batches` (from `make_stream` or `vadapters.synthetic.streams`) to `method`; reset it where a batch
    says `reset`; collect per-segment errors, per-batch wall time and (with `measure_memory`) peak memory."""
    from tqdm.auto import tqdm

    if not batches:
        raise BadInputError("the stream has no batches")
    disable = not progress or os.environ.get("VADAPTERS_NO_PROGRESS") == "1"
    bar = tqdm(batches, desc=type(method).__name__, disable=disable, dynamic_ncols=True, file=sys.stderr)
    segments: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    times: list[float] = []
    peak: int | None = None
    cuda = method.device.type == "cuda"
    start = time.perf_counter()
    for batch in bar:
        if batch.get("reset", False) and segments:
            method.reset()
        domain = batch["domain"]
        if not segments or segments[-1]["domain"] != domain:
            seen[domain] = seen.get(domain, -1) + 1
            segments.append({"domain": domain, "pass": seen[domain], "n": 0, "errors": 0})
        with PeakMemory(method.device) if measure_memory else _Null() as memory:
            t0 = time.perf_counter()
            probs = method(batch["x"])
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        if measure_memory and memory.bytes is not None:
            peak = max(peak or 0, memory.bytes)
        wrong = int((probs.argmax(1).cpu() != batch["y"]).sum())
        segments[-1]["n"] += len(batch["y"])
        segments[-1]["errors"] += wrong
        segments[-1]["error"] = segments[-1]["errors"] / segments[-1]["n"]
        bar.set_postfix(domain=domain, err=f"{segments[-1]['error']:.3f}")
    return StreamResult(
        method=method.config.method if hasattr(method.config, "method") else type(method).__name__,
        config=method.config.to_dict(),
        segments=segments,
        batch_seconds=times,
        peak_memory_bytes=peak,
        seconds=time.perf_counter() - start,
    )


class _Null:
    bytes = None

    def __enter__(self) -> _Null:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def error_table(results: dict[str, StreamResult], digits: int = 1) -> str:
    """Markdown table: one row per method, one column per segment (error %), then the mean.

    Example:
        >>> seg = [{"domain": "fog", "pass": 0, "n": 10, "errors": 3, "error": 0.3}]
        >>> print(error_table({"source": StreamResult("source", {}, seg, [0.1], None, 0.1)}))
        | method | fog | mean |
        |---|---|---|
        | source | 30.0 | 30.0 |
    """
    first = next(iter(results.values()))
    heads = [s["domain"] + (f"#{s['pass'] + 1}" if s["pass"] else "") for s in first.segments]
    lines = ["| method | " + " | ".join(heads) + " | mean |", "|" + "---|" * (len(heads) + 2)]
    for name, result in results.items():
        cells = [f"{100 * s['error']:.{digits}f}" for s in result.segments]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {100 * result.mean_error:.{digits}f} |")
    return "\n".join(lines)
