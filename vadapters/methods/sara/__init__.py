"""SaRA: progressive sparse low-rank fine-tuning of the smallest-magnitude weights, memory-lean, DDP-safe.

Example:
    >>> import vadapters
    >>> from vadapters.models import tiny_sd_pipeline
    >>> from vadapters.methods.sara import SaRAConfig, sara_summary
    >>> pipe = vadapters.inject(tiny_sd_pipeline(), SaRAConfig(quantile=0.1), adapter_name="sara")
    >>> s = sara_summary(pipe.unet, "sara")
    >>> s["trainable"] == s["selected"] and 0.09 < s["selected"] / s["targeted"] < 0.11
    True
"""

from typing import Any

from vadapters.core.registry import MethodSpec, register_method
from vadapters.methods.sara.config import SaRAConfig, upstream_lr
from vadapters.methods.sara.conversion import convert_official, load_official
from vadapters.methods.sara.model import SaRAInjector
from vadapters.methods.sara.regularizers import nuclear_norm_penalty
from vadapters.methods.sara.sparse import SaRATensor, SparseDelta
from vadapters.methods.sara.train import SaRATrainingHooks, reselect

register_method(
    MethodSpec(
        name="sara",
        config_cls=SaRAConfig,
        injector_cls=SaRAInjector,
        hosts=("diffusers.unet", "timm", "sam", "any"),
        supports_merge=True,
        description="SaRA: train the smallest-magnitude entries of every weight (sparse, low-rank, progressive)",
        training_hooks=SaRATrainingHooks,
    )
)


def sara_summary(module: Any, adapter_name: str) -> dict[str, Any]:
    """Counts of adapter `adapter_name` on `module` (a model or pipeline): targeted entries, selected (nnz),
    still trainable, tensors touched, and the threshold used."""
    from vadapters.core import hosts
    from vadapters.methods.sara.model import adapter_config
    from vadapters.methods.sara.sparse import find_targets

    if hosts.is_pipeline(module):
        module = hosts.resolve_target(module, SaRAInjector.component)
    config = adapter_config(module, adapter_name)
    deltas = SaRAInjector().deltas(module, adapter_name)
    return {
        "targeted": sum(t.base.numel() for t in find_targets(module, config)),
        "selected": sum(d.nnz for d in deltas.values()),
        "trainable": sum(d.num_trainable for d in deltas.values()),
        "tensors": len(deltas),
        "threshold": config.realised_threshold,
    }


__all__ = [
    "SaRAConfig",
    "SaRAInjector",
    "SaRATensor",
    "SaRATrainingHooks",
    "SparseDelta",
    "convert_official",
    "load_official",
    "nuclear_norm_penalty",
    "reselect",
    "sara_summary",
    "upstream_lr",
]
