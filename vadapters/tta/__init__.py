"""Test-time adaptation for classifiers: LAME, visual domain prompts (VDP) and the source / BN / TENT / CoTTA
baselines, plus a stream runner.

Every wrapper takes a timm classifier (or any module with `features_fn` / `head_fn` for LAME), is called on
images in [0, 1] and returns probabilities; `.reset()`, `.state_dict()` / `.load_state_dict()`,
`.save_pretrained(dir)` / `.from_pretrained(model, dir)`, `episodic=True` for per-batch resets.

Example:
    >>> import torch
    >>> import vadapters.tta as tta
    >>> from vadapters.models import tiny_timm_classifier
    >>> model = tiny_timm_classifier("test_resnet")
    >>> adapted = tta.LAME(model, knn=5)
    >>> adapted(torch.rand(6, 3, 32, 32)).shape
    torch.Size([6, 10])
    >>> sorted(tta.METHODS)
    ['bn', 'cotta', 'lame', 'source', 'tent', 'vdp']
"""

from __future__ import annotations

from vadapters.tta.affinity import AFFINITIES, build_affinity
from vadapters.tta.augment import CoTTAAugment
from vadapters.tta.base import TTAConfig, TTAMethod, batch_statistics, split_classifier
from vadapters.tta.baselines import (
    TENT,
    BNAdapt,
    BNConfig,
    CoTTA,
    CoTTAConfig,
    Source,
    SourceConfig,
    TENTConfig,
    confidence_threshold,
)
from vadapters.tta.lame import LAME, LAMEConfig, laplacian_optimisation
from vadapters.tta.runner import StreamResult, error_table, load_classifier, make_stream, run_stream
from vadapters.tta.vdp import VDP, DomainShiftDetector, VDPConfig, homeostasis_loss, prompt_mask

METHODS: dict[str, type[TTAMethod]] = {cls.config_cls.method: cls for cls in (Source, BNAdapt, TENT, CoTTA, LAME, VDP)}
"""The wrappers by the `method` their configs write (the runner's and the CLI's names)."""


def from_pretrained(model, directory) -> TTAMethod:
    """Rebuild whichever wrapper `save_pretrained` wrote in `directory` around `model` (strict).

    Example:
        >>> import tempfile
        >>> from vadapters.models import tiny_timm_classifier
        >>> model, folder = tiny_timm_classifier("test_resnet"), tempfile.mkdtemp()
        >>> _ = TENT(model, lr=1e-4).save_pretrained(folder)
        >>> type(from_pretrained(model, folder)).__name__
        'TENT'
    """
    from vadapters.core.config import read_config_dict

    return build_method_class(read_config_dict(directory)["method"]).from_pretrained(model, directory)


def build_method_class(name: str) -> type[TTAMethod]:
    """`METHODS[name]`, with a clear error for unknown names."""
    from vadapters.errors import BadInputError

    if name not in METHODS:
        raise BadInputError(f"unknown TTA method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def build_method(name: str, model, **options) -> TTAMethod:
    """`METHODS[name](model, **options)` with a clear error for unknown names.

    Example:
        >>> from vadapters.models import tiny_timm_classifier
        >>> build_method("tent", tiny_timm_classifier("test_vit"), lr=1e-4).config.lr
        0.0001
    """
    return build_method_class(name)(model, **options)


__all__ = [
    "AFFINITIES",
    "BNAdapt",
    "BNConfig",
    "CoTTA",
    "CoTTAAugment",
    "CoTTAConfig",
    "DomainShiftDetector",
    "LAME",
    "LAMEConfig",
    "METHODS",
    "Source",
    "SourceConfig",
    "StreamResult",
    "TENT",
    "TENTConfig",
    "TTAConfig",
    "TTAMethod",
    "VDP",
    "VDPConfig",
    "batch_statistics",
    "build_affinity",
    "build_method",
    "build_method_class",
    "confidence_threshold",
    "error_table",
    "from_pretrained",
    "homeostasis_loss",
    "laplacian_optimisation",
    "load_classifier",
    "make_stream",
    "prompt_mask",
    "run_stream",
    "split_classifier",
]
