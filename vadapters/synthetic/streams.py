"""CIFAR-10-C-like corruptions and test-time adaptation streams (i.i.d., class-sorted, label shift, continual).

`corrupt` applies one of the 15 standard corruptions (`CORRUPTIONS`, in the standard order) of the
`imagecorruptions` package at severity 1-5, deterministically: each image's randomness comes from
`(seed, name, severity, index)`. The stream builders turn a dataset (with `images_uint8()` and `labels`, like
`ShapeClasses`, or a tuple `(images_uint8, labels)`) into a `Stream`: a list of batches `{"x": float32
[B, 3, H, W] in [0, 1], "y": int64 [B], "domain": str, "index": int64 [B] (positions in the dataset)}` with a
`StreamSpec` as `.spec`. Batches never straddle two domains: each domain's last batch may be smaller.

Example:
    >>> from vadapters.synthetic.classification import ShapeClasses
    >>> from vadapters.synthetic.streams import continual_stream
    >>> stream = continual_stream(ShapeClasses(8), ["contrast", "pixelate"], severity=5, batch_size=4)
    >>> [b["domain"] for b in stream], tuple(stream[0]["x"].shape)
    (['contrast', 'contrast', 'pixelate', 'pixelate'], (4, 3, 32, 32))
    >>> stream.spec.to_dict()["domains"]
    ['contrast', 'pixelate']
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import tempfile
import zlib
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch

from vadapters.errors import BadInputError

_STANDARD = (
    "gaussian_noise shot_noise impulse_noise defocus_blur glass_blur motion_blur zoom_blur snow frost fog "
    "brightness contrast elastic_transform pixelate jpeg_compression"
)
CORRUPTIONS: tuple[str, ...] = tuple(_STANDARD.split())
"""The 15 standard corruptions of CIFAR-10-C / ImageNet-C, in the standard order."""

EXTRA_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
"""The 4 held-out "validation" corruptions of `imagecorruptions`, also accepted by `corrupt`."""

CLEAN = "clean"
DatasetLike = object  # a dataset with images_uint8() and labels, or a tuple (images_uint8, labels)
StrPath = str | os.PathLike | None
_SEEDED_BY_ARGUMENT = ("impulse_noise", "glass_blur")  # these draw from their own RNG, seeded by a keyword
_ORDERINGS = ("iid", "class_sorted")


@dataclasses.dataclass(frozen=True)
class StreamSpec:
    """What a stream is, for reports; `to_dict()` gives JSON-ready values.

    `kind` is "iid", "class_sorted", "label_shift" or "continual"; `domains` lists the domains in stream order
    ("clean" or corruption names); `ordering` is the order within a domain ("iid" or "class_sorted");
    `num_samples` and `num_batches` count the whole stream, `class_counts` one pass over a domain;
    `label_proportions` holds the drawn Zipf class proportions (label shift only); `dataset` describes the source.
    """

    kind: str
    domains: tuple[str, ...]
    severity: int
    batch_size: int
    seed: int
    ordering: str
    num_samples: int
    num_batches: int
    dataset: str
    class_counts: tuple[int, ...] = ()
    label_proportions: tuple[float, ...] | None = None

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


class Stream(list):
    """A list of batch dicts with the `StreamSpec` that describes it as `.spec`."""

    def __init__(self, batches: Sequence[dict], spec: StreamSpec) -> None:
        super().__init__(batches)
        self.spec = spec


def _check_int(value: object, name: str, low: int, high: int | None = None) -> int:
    ok = not isinstance(value, bool) and isinstance(value, (int, np.integer))
    if not ok or value < low or (high is not None and value > high):
        span = f"in {low}-{high}" if high is not None else f">= {low}"
        raise BadInputError(f"{name} must be an int {span}, got {value!r}")
    return int(value)


def _check_name(name: str, allow_clean: bool = False) -> str:
    valid = CORRUPTIONS + EXTRA_CORRUPTIONS + ((CLEAN,) if allow_clean else ())
    if name not in valid:
        raise BadInputError(f"unknown corruption {name!r}; valid names: {', '.join(valid)}")
    return name


def _check_images(images: object) -> np.ndarray:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        found = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        raise BadInputError(f"images must be a uint8 numpy array [N, H, W, 3], got {found}")
    if images.shape[1] < 32 or images.shape[2] < 32:
        raise BadInputError(f"imagecorruptions needs images >= 32x32, got {images.shape[1:3]}; use size >= 32")
    return images


def _image_seed(seed: int, name: str, severity: int, index: int) -> int:
    entropy = [seed, zlib.crc32(name.encode()), severity, index]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint32)[0])


def _cache_file(cache_dir: str | os.PathLike, images: np.ndarray, name: str, severity: int, seed: int) -> Path:
    try:
        package = version("imagecorruptions-imaug")
    except PackageNotFoundError:
        package = "?"
    digest = hashlib.sha256(f"{images.shape}|{name}|{severity}|{seed}|{package}|".encode())
    digest.update(np.ascontiguousarray(images).data)
    return Path(cache_dir) / f"corrupt-{name}-s{severity}-seed{seed}-{digest.hexdigest()[:16]}.npz"


def _apply(images: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    from imagecorruptions import corrupt as corrupt_one

    out = np.empty_like(images)
    state = np.random.get_state()
    try:
        for i, image in enumerate(images):
            image_seed = _image_seed(seed, name, severity, i)
            np.random.seed(image_seed)
            kwargs = {"seed": image_seed} if name in _SEEDED_BY_ARGUMENT else {}
            out[i] = corrupt_one(image, severity=severity, corruption_name=name, **kwargs)
    finally:
        np.random.set_state(state)
    return out


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0, cache_dir: StrPath = None) -> np.ndarray:
    """Corrupt every image with `imagecorruptions.corrupt(image, severity, name)`, deterministically.

    `imagecorruptions` draws from numpy's global RNG (and impulse noise and glass blur from their own seeded
    ones): image `i` is corrupted with all of them seeded from `(seed, name, severity, i)`, and the global RNG
    state is restored afterwards (so not thread-safe). With `cache_dir`, the result is stored in (and later read
    from) an `.npz` named after the corruption and a hash of the images and settings, written atomically. The
    first `glass_blur` call JIT-compiles for about 3 s.

    Args:
        images (`np.ndarray`): uint8 `[N, H, W, 3]`, H and W >= 32; returns the same shape and dtype.
        name (`str`): one of `CORRUPTIONS` (or `EXTRA_CORRUPTIONS`); severity (`int`): 1-5; seed (`int`): >= 0.
        cache_dir (`str` or `os.PathLike`, optional): folder for cached results (created if needed).

    Example:
        >>> import numpy as np
        >>> clean = np.full((2, 32, 32, 3), 128, dtype=np.uint8)
        >>> noisy = corrupt(clean, "gaussian_noise", severity=3, seed=0)
        >>> noisy.shape, noisy.dtype.name, bool((noisy == corrupt(clean, "gaussian_noise", 3, seed=0)).all())
        ((2, 32, 32, 3), 'uint8', True)
    """
    images = _check_images(images)
    _check_name(name)
    severity = _check_int(severity, "severity", 1, 5)
    seed = _check_int(seed, "seed", 0)
    if cache_dir is None:
        return _apply(images, name, severity, seed)

    path = _cache_file(cache_dir, images, name, severity, seed)
    if path.is_file():
        try:
            with np.load(path) as stored:
                cached = stored["images"]
            if cached.shape == images.shape and cached.dtype == np.uint8:
                return cached
        except (OSError, ValueError, KeyError, zlib.error):
            pass  # unreadable or foreign: recompute and overwrite
    result = _apply(images, name, severity, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, images=result)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return result


def _arrays(dataset: object) -> tuple[np.ndarray, np.ndarray, str]:
    pair = isinstance(dataset, (tuple, list)) and len(dataset) == 2
    if not pair and not (hasattr(dataset, "images_uint8") and hasattr(dataset, "labels")):
        raise BadInputError(f"dataset must have images_uint8() and labels, got {type(dataset).__name__}")
    images, labels = (dataset[0], dataset[1]) if pair else (dataset.images_uint8(), dataset.labels)
    images, labels = np.asarray(images), np.asarray(labels, dtype=np.int64)
    shapes_ok = images.ndim == 4 and images.shape[-1] == 3 and labels.shape == (len(images),) and len(images) > 0
    if not shapes_ok or images.dtype != np.uint8 or labels.min() < 0:
        raise BadInputError(
            "dataset must hold uint8 images [N, H, W, 3] and labels [N] >= 0 with N >= 1, got "
            f"{images.dtype} {images.shape} and {labels.shape}"
        )
    return images, labels, f"arrays(n={len(labels)})" if pair else repr(dataset)


def _order(labels: np.ndarray, indices: np.ndarray, ordering: str, rng: np.random.Generator) -> np.ndarray:
    """Shuffle `indices`; for "class_sorted" then stable-sort them by label (shuffled within each class)."""
    shuffled = rng.permutation(indices)
    if ordering == "class_sorted":
        shuffled = shuffled[np.argsort(labels[shuffled], kind="stable")]
    return shuffled


def _batches(images: np.ndarray, labels: np.ndarray, order: np.ndarray, batch_size: int, domain: str) -> list[dict]:
    batches = []
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        x = torch.from_numpy(np.ascontiguousarray(images[idx])).permute(0, 3, 1, 2).float().div_(255.0)
        y = torch.from_numpy(labels[idx].copy())
        batches.append({"x": x.contiguous(), "y": y, "domain": domain, "index": torch.from_numpy(idx.copy())})
    return batches


def _build(kind, dataset, domains, severity, batch_size, seed, ordering, cache_dir, subset=None, proportions=None):
    images, labels, description = _arrays(dataset)
    if ordering not in _ORDERINGS:
        raise BadInputError(f"ordering must be one of {', '.join(_ORDERINGS)}; got {ordering!r}")
    batch_size, seed = _check_int(batch_size, "batch_size", 1), _check_int(seed, "seed", 0)
    severity = _check_int(severity, "severity", 1, 5)
    domains = [_check_name(d, allow_clean=True) for d in domains]
    indices = np.arange(len(labels)) if subset is None else subset
    corrupted: dict[str, np.ndarray] = {}
    batches: list[dict] = []
    for position, domain in enumerate(domains):
        if domain not in corrupted:
            corrupted[domain] = images if domain == CLEAN else corrupt(images, domain, severity, seed, cache_dir)
        rng = np.random.default_rng([seed, position, zlib.crc32(domain.encode())])
        order = _order(labels, indices, ordering, rng)
        batches.extend(_batches(corrupted[domain], labels, order, batch_size, domain))
    counts = np.bincount(labels[indices], minlength=int(labels.max()) + 1)
    size, shares = len(indices) * len(domains), None if proportions is None else tuple(map(float, proportions))
    spec = StreamSpec(kind, tuple(domains), severity, batch_size, seed, ordering, size, len(batches), description)
    return Stream(batches, dataclasses.replace(spec, class_counts=tuple(map(int, counts)), label_proportions=shares))


def iid_stream(
    dataset: DatasetLike,
    batch_size: int = 64,
    seed: int = 0,
    corruption: str = CLEAN,
    severity: int = 5,
    cache_dir: StrPath = None,
) -> Stream:
    """One domain (`corruption`, or "clean"), samples in a random order (scenario "i.i.d.").

    Example:
        >>> from vadapters.synthetic.classification import ShapeClasses
        >>> stream = iid_stream(ShapeClasses(10), batch_size=4, corruption="pixelate", severity=1)
        >>> [len(b["y"]) for b in stream], stream[0]["domain"]
        ([4, 4, 2], 'pixelate')
    """
    return _build("iid", dataset, [corruption], severity, batch_size, seed, "iid", cache_dir)


def class_sorted_stream(
    dataset: DatasetLike,
    batch_size: int = 64,
    seed: int = 0,
    corruption: str = CLEAN,
    severity: int = 5,
    cache_dir: StrPath = None,
) -> Stream:
    """One domain with samples grouped by class in ascending label order, shuffled within each class (non-i.i.d.).

    Example:
        >>> from vadapters.synthetic.classification import ShapeClasses
        >>> stream = class_sorted_stream(ShapeClasses(20), batch_size=8)
        >>> stream[0]["y"].tolist()
        [0, 0, 1, 1, 2, 2, 3, 3]
    """
    return _build("class_sorted", dataset, [corruption], severity, batch_size, seed, "class_sorted", cache_dir)


def label_shift_counts(
    available: Sequence[int],
    a: float = 2.0,
    seed: int = 0,
    top_fraction: float = 0.1,
    max_share: float = 0.9,
    max_tries: int = 10_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Samples to take per class for a Zipf label shift (LAME's "prior shift" scenario).

    Class weights are drawn i.i.d. from Zipf(`a`) and normalised to proportions `p`; the counts are
    `floor(p * n)` with the largest `n` that no class's availability limits (no sample is repeated). Draws are
    repeated until the `ceil(top_fraction * K)` most frequent classes hold less than `max_share` of the counts.
    Returns `(counts, proportions)`, int64 `[K]` and float64 `[K]`.

    Example:
        >>> counts, p = label_shift_counts([100] * 10, seed=0)
        >>> int(counts.max()) == 100, bool(counts.max() < 0.9 * counts.sum())
        (True, True)
    """
    available = np.asarray(available, dtype=np.int64)
    if available.ndim != 1 or len(available) < 2 or available.min() < 1:
        raise BadInputError(f"label shift needs >= 2 classes with >= 1 sample each; got counts {available.tolist()}")
    if not (a > 1.0 and 0.0 < top_fraction < 1.0 and 0.0 < max_share <= 1.0):
        raise BadInputError(
            f"need a > 1, 0 < top_fraction < 1, 0 < max_share <= 1; got {a}, {top_fraction}, {max_share}"
        )
    rng = np.random.default_rng([_check_int(seed, "seed", 0), 0x21FF])
    top = max(1, math.ceil(top_fraction * len(available) - 1e-9))
    for _ in range(max_tries):
        proportions = rng.zipf(a, size=len(available)).astype(np.float64)
        proportions /= proportions.sum()
        counts = np.floor(proportions * np.min(available / proportions) + 1e-9).astype(np.int64)
        counts = np.minimum(counts, available)
        if np.sort(counts)[::-1][:top].sum() < max_share * counts.sum():
            return counts, proportions
    raise BadInputError(
        f"no Zipf(a={a}) draw in {max_tries} tries gave the top {top} classes less than {max_share:.0%} of the "
        "samples; raise max_share or top_fraction"
    )


def label_shift_stream(
    dataset: DatasetLike,
    batch_size: int = 64,
    seed: int = 0,
    corruption: str = CLEAN,
    severity: int = 5,
    a: float = 2.0,
    ordering: str = "iid",
    cache_dir: StrPath = None,
) -> Stream:
    """One domain over a class-imbalanced subset: Zipf(`a`) proportions (see `label_shift_counts`).

    `ordering="class_sorted"` gives LAME's "label shift + non-i.i.d." scenario. The drawn proportions are in
    `stream.spec.label_proportions` and the realised counts in `stream.spec.class_counts`.

    Example:
        >>> from vadapters.synthetic.classification import ShapeClasses
        >>> stream = label_shift_stream(ShapeClasses(100), batch_size=16, seed=1)
        >>> counts = stream.spec.class_counts
        >>> max(counts) < 0.9 * sum(counts), max(counts) > min(counts)
        (True, True)
    """
    images, labels, _ = _arrays(dataset)
    classes = np.unique(labels)
    available = np.array([(labels == c).sum() for c in classes])
    counts, proportions = label_shift_counts(available, a=a, seed=seed)
    rng = np.random.default_rng([_check_int(seed, "seed", 0), 0x5E1EC7])
    chosen = [rng.choice(np.flatnonzero(labels == c), size=n, replace=False) for c, n in zip(classes, counts)]
    subset = np.sort(np.concatenate(chosen))
    full = np.zeros(int(labels.max()) + 1)
    full[classes] = proportions
    return _build("label_shift", dataset, [corruption], severity, batch_size, seed, ordering, cache_dir, subset, full)


def continual_stream(
    dataset: DatasetLike,
    corruptions: Sequence[str] | str = "standard",
    severity: int = 5,
    batch_size: int = 64,
    order: str = "standard",
    seed: int = 0,
    ordering: str = "iid",
    repeats: int = 1,
    cache_dir: StrPath = None,
) -> Stream:
    """Domains one after another, each with all the samples in a fresh order (CoTTA's CIFAR-10-C protocol).

    Args:
        corruptions (`Sequence[str]` or `"standard"`): domain names; "standard" means `CORRUPTIONS`.
        order (`str`): "standard" keeps the given order, "random" shuffles it (from `seed`).
        ordering (`str`): within a domain, "iid" or "class_sorted".
        repeats (`int`): passes over the domain sequence (2 gives a "revisit" stream to measure forgetting).

    Example:
        >>> from vadapters.synthetic.classification import ShapeClasses
        >>> stream = continual_stream(ShapeClasses(4), ["brightness", "clean"], batch_size=4, repeats=2)
        >>> [b["domain"] for b in stream]
        ['brightness', 'clean', 'brightness', 'clean']
    """
    domains = list(CORRUPTIONS if corruptions == "standard" else corruptions)
    if (isinstance(corruptions, str) and corruptions != "standard") or not domains:
        raise BadInputError(f"corruptions must be 'standard' or a non-empty list of names, got {corruptions!r}")
    if order not in ("standard", "random"):
        raise BadInputError(f"order must be one of standard, random; got {order!r}")
    if order == "random":
        rng = np.random.default_rng([_check_int(seed, "seed", 0), 0x0DE5])
        domains = [domains[i] for i in rng.permutation(len(domains))]
    domains = domains * _check_int(repeats, "repeats", 1)
    return _build("continual", dataset, domains, severity, batch_size, seed, ordering, cache_dir)
