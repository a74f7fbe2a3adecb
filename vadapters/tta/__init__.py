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
from vadapters.tta.baselines import TENT, BNAdapt, CoTTA, CoTTAConfig, Source, TENTConfig, confidence_threshold
from vadapters.tta.lame import LAME, LAMEConfig, laplacian_optimisation
from vadapters.tta.runner import StreamResult, error_table, load_classifier, make_stream, run_stream
from vadapters.tta.vdp import VDP, DomainShiftDetector, VDPConfig, homeostasis_loss, prompt_mask

METHODS: dict[str, type[TTAMethod]] = {
    "source": Source,
    "bn": BNAdapt,
    "tent": TENT,
    "cotta": CoTTA,
    "lame": LAME,
    "vdp": VDP,
}
"""CLI / runner names of the wrappers."""


def build_method(name: str, model, **options) -> TTAMethod:
    """`METHODS[name](model, **options)` with a clear error for unknown names.

    Example:
        >>> from vadapters.models import tiny_timm_classifier
        >>> build_method("tent", tiny_timm_classifier("test_vit"), lr=1e-4).config.lr
        0.0001
    """
    from vadapters.errors import BadInputError

    if name not in METHODS:
        raise BadInputError(f"unknown TTA method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name](model, **options)


__all__ = [
    "AFFINITIES",
    "BNAdapt",
    "CoTTA",
    "CoTTAAugment",
    "CoTTAConfig",
    "DomainShiftDetector",
    "LAME",
    "LAMEConfig",
    "METHODS",
    "Source",
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
    "confidence_threshold",
    "error_table",
    "homeostasis_loss",
    "laplacian_optimisation",
    "load_classifier",
    "make_stream",
    "prompt_mask",
    "run_stream",
    "split_classifier",
]
