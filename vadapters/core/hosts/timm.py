"""Seams of timm classifiers: `forward_features` + `forward_head(pre_logits=True)`."""

from __future__ import annotations

from typing import Any

from torch import nn


def is_timm_model(module: Any) -> bool:
    return (
        isinstance(module, nn.Module)
        and hasattr(module, "forward_features")
        and hasattr(module, "forward_head")
        and (hasattr(module, "pretrained_cfg") or hasattr(module, "default_cfg"))
    )


def timm_signature(model: nn.Module) -> dict[str, Any]:
    return {
        "class": type(model).__name__,
        "num_features": getattr(model, "num_features", None),
        "num_classes": getattr(model, "num_classes", None),
    }


def features_and_head(model: nn.Module):
    """`(features_fn, head_fn)` where `head_fn(feats)` gives logits and `features_fn(x)` pooled features."""

    def features(x):
        return model.forward_head(model.forward_features(x), pre_logits=True)

    def logits(x):
        return model.forward_head(model.forward_features(x))

    return features, logits
