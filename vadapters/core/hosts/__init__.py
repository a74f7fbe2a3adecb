"""Hosts know seams, not methods: where things are in diffusers, timm and segment-anything models.

`resolve_target` turns what the user passed (a pipeline or a model) into the module an adapter lives on, and
`signature` summarises a module's architecture so an adapter can refuse the wrong base with a clear message.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from vadapters.core.hosts import diffusers as diffusers_host
from vadapters.core.hosts import sam as sam_host
from vadapters.core.hosts import timm as timm_host
from vadapters.errors import BadInputError, IncompatibleBaseError


def is_pipeline(obj: Any) -> bool:
    """A diffusers `DiffusionPipeline` (duck-typed: has `components` and is not an `nn.Module`)."""
    return not isinstance(obj, nn.Module) and hasattr(obj, "components") and isinstance(obj.components, dict)


def host_kind(module: nn.Module) -> str:
    """A short tag for a module: `diffusers.unet`, `timm`, `sam`, or `torch`."""
    if diffusers_host.is_unet(module):
        return "diffusers.unet"
    if sam_host.is_sam(module):
        return "sam"
    if timm_host.is_timm_model(module):
        return "timm"
    return "torch"


def resolve_target(host: Any, component: str | None) -> nn.Module:
    """The module an adapter lives on: `host` itself, or `getattr(pipeline, component)`."""
    if is_pipeline(host):
        if component is None:
            raise BadInputError(f"this method cannot be applied to a whole pipeline ({type(host).__name__})")
        target = getattr(host, component, None)
        if not isinstance(target, nn.Module):
            raise IncompatibleBaseError(
                f"{type(host).__name__} has no {component!r} component; this adapter needs one "
                f"(components: {sorted(k for k, v in host.components.items() if isinstance(v, nn.Module))})"
            )
        return target
    if not isinstance(host, nn.Module):
        raise BadInputError(f"expected a torch module or a diffusers pipeline, got {type(host).__name__}")
    return host


def adapted_modules(host: Any) -> list[tuple[str | None, nn.Module]]:
    """(component name or None, module) pairs of `host` that may carry adapters."""
    if is_pipeline(host):
        return [(name, mod) for name, mod in host.components.items() if isinstance(mod, nn.Module)]
    if not isinstance(host, nn.Module):
        raise BadInputError(f"expected a torch module or a diffusers pipeline, got {type(host).__name__}")
    return [(None, host)]


def signature(module: nn.Module) -> dict[str, Any]:
    """JSON-able architecture summary used to refuse adapters made for another base."""
    kind = host_kind(module)
    if kind == "diffusers.unet":
        return diffusers_host.unet_signature(module)
    if kind == "sam":
        return sam_host.sam_signature(module)
    if kind == "timm":
        return timm_host.timm_signature(module)
    return {"class": type(module).__name__}


def describe_signature(sig: dict[str, Any] | None) -> str:
    if not sig:
        return "an unknown base"
    name = diffusers_host.known_unet_name(sig)
    details = ", ".join(f"{k}={v}" for k, v in sig.items() if k != "class")
    return f"{sig.get('class', 'a model')}({details})" + (f" [{name}]" if name else "")


def signature_mismatch(expected: dict[str, Any] | None, found: dict[str, Any]) -> list[str]:
    """Keys whose values differ between two signatures (missing keys are ignored)."""
    if not expected:
        return []
    return [k for k, v in expected.items() if k in found and found[k] != v]
