"""The common shape of every test-time adaptation wrapper in `vadapters.tta`.

A wrapper takes a classifier (a timm model, or any module with user-given `features_fn` / `head_fn`), receives
batches of images **in [0, 1]** (`[B, 3, H, W]`), normalises them with the model's `pretrained_cfg` mean and std
(or the config's), and returns **probabilities** `[B, K]`:

    adapted = vadapters.tta.LAME(model)       # or TENT, CoTTA, BNAdapt, Source, VDP
    probs = adapted(images)                   # predict (and adapt, for methods that learn)
    adapted.reset()                           # back to the source state
    state = adapted.state_dict()              # what adaptation changed (tensors only)
    adapted.save_pretrained("run/")           # adapter_config.json + adapter_model.safetensors, atomic

`episodic=True` resets before every batch; otherwise the wrapper adapts continually. The user's model is never
modified: methods that train parameters (TENT, CoTTA) work on a private copy, the others only read it.

The configs are `vadapters.core.AdapterConfig`s and the files are the core's (`adapter_config.json` stamped with the
method and version, `adapter_model.safetensors`, both written atomically, read strictly). The runtime stays here:
a TTA wrapper is a policy around a frozen classifier, called per batch by the stream runner, not an adapter
injected into a host, so the wrappers are not in `vadapters.core.registry` (whose methods must pass the method
matrix: zero-init no-op, fuse, unload); `vadapters.tta.METHODS` names them for the runner and the CLI.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import torch
from torch import nn

from vadapters.core.config import AdapterConfig, config_from_file, read_config_dict
from vadapters.core.io import CONFIG_NAME, WEIGHTS_NAME, load_tensors, save_tensors
from vadapters.core.validation import check_field_types
from vadapters.errors import BadInputError, CheckpointError

_CORE_KEYS = ("method", "vadapters_version", "base_model_name_or_path", "base_signature", "target_component")


@dataclasses.dataclass
class TTAConfig(AdapterConfig):
    """Settings shared by every wrapper (plus `AdapterConfig`'s provenance fields).

    Args:
        episodic (`bool`): reset to the source state before every batch (otherwise continual).
        mean (`tuple[float, ...]`, optional): input normalisation mean; default: the model's `pretrained_cfg`.
        std (`tuple[float, ...]`, optional): input normalisation std; default: the model's `pretrained_cfg`.
        seed (`int`): seed of the wrapper's own random numbers (augmentations, stochastic restore).
    """

    method: ClassVar[str] = "tta"
    episodic: bool = dataclasses.field(default=False, metadata={"help": "reset before every batch"})
    mean: tuple[float, ...] | None = dataclasses.field(default=None, metadata={"help": "input mean"})
    std: tuple[float, ...] | None = dataclasses.field(default=None, metadata={"help": "input std"})
    seed: int = dataclasses.field(default=0, metadata={"help": "seed of augmentations and restores"})

    def __post_init__(self) -> None:
        check_field_types(self)  # before the conversion below: a text is not a float
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, tuple(float(v) for v in value))
        super().__post_init__()

    def validate(self) -> None:
        if self.std is not None and min(self.std) <= 0:
            raise BadInputError(f"std must be positive, got {self.std}")


def split_classifier(
    model: nn.Module, features_fn: Callable | None = None, head_fn: Callable | None = None
) -> tuple[Callable, Callable]:
    """`(features_fn, head_fn)` with `head_fn(features_fn(x))` the logits and `features_fn(x)` pooled features.

    timm models use `forward_features` + `forward_head(pre_logits=True)` / the classifier; other models need both
    callables. The timm logits are computed as `forward_head(forward_features(x))`, bit-equal to `model(x)`.

    Example:
        >>> from vadapters.models import tiny_timm_classifier
        >>> model = tiny_timm_classifier("test_vit")
        >>> feats, head = split_classifier(model)
        >>> x = torch.zeros(2, 3, 32, 32)
        >>> tuple(feats(x).shape), bool(torch.equal(head(feats(x)), model(x)))
        ((2, 64), True)
    """
    if features_fn is not None and head_fn is not None:
        return features_fn, head_fn
    if features_fn is not None or head_fn is not None:
        raise BadInputError("give both features_fn and head_fn, or neither (timm models need neither)")
    if not (hasattr(model, "forward_features") and hasattr(model, "forward_head")):
        raise BadInputError(
            f"{type(model).__name__} has no forward_features/forward_head (timm's seams); pass features_fn=(x -> "
            "pooled features) and head_fn=(features -> logits)"
        )
    return _TimmSplit(model).features, _TimmSplit.head_of(model)


class _TimmSplit:
    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    @staticmethod
    def head_of(model: nn.Module) -> Callable:
        classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
        if classifier is None:
            raise BadInputError(f"{type(model).__name__} exposes no get_classifier(); pass features_fn and head_fn")
        return classifier


def normalisation(model: nn.Module, config: TTAConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """`(mean, std)` as `[1, 3, 1, 1]` tensors from the config, else the model's `pretrained_cfg`, else (0, 1)."""
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    mean = config.mean if config.mean is not None else cfg.get("mean", (0.0, 0.0, 0.0))
    std = config.std if config.std is not None else cfg.get("std", (1.0, 1.0, 1.0))
    return torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), torch.tensor(std).float().view(1, -1, 1, 1)


def batchnorm_modules(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextlib.contextmanager
def batch_statistics(model: nn.Module) -> Iterator[None]:
    """Within the block, every BatchNorm normalises with the current batch's statistics, changing no buffer.

    The running mean and variance are detached for the duration (PyTorch then uses batch statistics even in eval
    mode and updates nothing) and put back afterwards, so the model's `state_dict` stays bit-identical.

    Example:
        >>> bn = nn.BatchNorm1d(2).eval()
        >>> x = torch.tensor([[0.0, 1.0], [2.0, 5.0]])
        >>> with batch_statistics(bn):
        ...     y = bn(x)
        >>> [round(v, 4) for v in y[:, 0].tolist()], bn.running_mean.tolist()
        ([-1.0, 1.0], [0.0, 0.0])
    """
    stash = []
    for module in batchnorm_modules(model):
        stash.append((module, module.running_mean, module.running_var, module.track_running_stats))
        module.running_mean, module.running_var, module.track_running_stats = None, None, False
    try:
        yield
    finally:
        for module, mean, var, track in stash:
            module.running_mean, module.running_var, module.track_running_stats = mean, var, track


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put `model` in eval mode for the block and restore each module's previous `training` flag after."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, flag in flags:
            module.training = flag


def check_images(x: torch.Tensor, channels: int | None = 3) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or (channels is not None and x.shape[1] != channels):
        found = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise BadInputError(f"expected images [B, {channels}, H, W] in [0, 1], got {found}")
    if x.shape[0] == 0:
        raise BadInputError("got an empty batch; every batch needs at least one image")
    return x if x.is_floating_point() else x.float().div(255.0)


class TTAMethod:
    """Base class: normalisation, episodic reset, state IO. Subclasses implement `_step(x) -> probs`.

    Subclasses set `config_cls`, call `super().__init__(model, config)` and then `_snapshot_source()` once their
    adaptable state exists; `_state()` returns the tensors adaptation changes (by name), which `state_dict`,
    `load_state_dict` and `reset` use.
    """

    config_cls: ClassVar[type[TTAConfig]] = TTAConfig

    def __init__(self, model: nn.Module, config: TTAConfig | None = None, **overrides: Any) -> None:
        if not isinstance(model, nn.Module):
            raise BadInputError(f"model must be a torch.nn.Module classifier, got {type(model).__name__}")
        if config is None:
            config = self.config_cls(**overrides)
        elif overrides:
            config = dataclasses.replace(config, **overrides)
        if not isinstance(config, self.config_cls):
            raise BadInputError(
                f"{type(self).__name__} needs a {self.config_cls.__name__}, got {type(config).__name__}"
            )
        self.config = config
        self.source_model = model
        self.device = next(model.parameters(), torch.empty(0)).device
        self.mean, self.std = (t.to(self.device) for t in normalisation(model, config))
        self.diagnostics: dict[str, Any] = {}
        self.steps = 0
        self._source_state: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------------------------------ subclass API
    def _state(self) -> dict[str, torch.Tensor]:
        """Name -> live tensor for everything adaptation changes (default: nothing)."""
        return {}

    def _reset_extra(self) -> None:
        """Reset non-tensor state (optimisers, detectors, counters)."""

    def _step(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _snapshot_source(self) -> None:
        self._source_state = {k: v.detach().clone() for k, v in self._state().items()}

    # ------------------------------------------------------------------------------------------- public API
    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> the model's input space."""
        return (x - self.mean) / self.std

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Predict class probabilities `[B, K]` for images `[B, 3, H, W]` in [0, 1] (adapting when it learns)."""
        x = check_images(x).to(self.device)
        if self.config.episodic:
            self.reset()
        probs = self._step(x)
        self.steps += 1
        return probs

    forward = __call__

    def reset(self) -> None:
        """Return exactly to the source state (tensors copied back bit-exactly, optimiser state cleared)."""
        with torch.no_grad():
            for name, tensor in self._state().items():
                tensor.copy_(self._source_state[name])
        self._reset_extra()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Copies of the tensors adaptation changes (optimiser moments are not included)."""
        return {k: v.detach().clone() for k, v in self._state().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor], strict: bool = True) -> None:
        """Copy `state` into the wrapper; with `strict`, missing or unexpected keys raise `CheckpointError`."""
        live = self._state()
        missing, unexpected = sorted(set(live) - set(state)), sorted(set(state) - set(live))
        if strict and (missing or unexpected):
            raise CheckpointError(
                f"{type(self).__name__} state mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}; the "
                "state was saved by another method or model (pass strict=False to load the overlap)"
            )
        with torch.no_grad():
            for key in set(live) & set(state):
                if live[key].shape != state[key].shape:
                    raise CheckpointError(
                        f"{key}: expected shape {tuple(live[key].shape)}, got {tuple(state[key].shape)}"
                    )
                live[key].copy_(state[key])

    def save_pretrained(self, directory: str | os.PathLike) -> list[str]:
        """Write `adapter_config.json` and `adapter_model.safetensors` (atomic); returns the written paths."""
        state_path = os.path.join(directory, WEIGHTS_NAME)
        save_tensors(self.state_dict(), state_path, metadata={"method": self.config.method})
        return [self.config.save_pretrained(directory), state_path]

    @classmethod
    def from_pretrained(cls, model: nn.Module, directory: str | os.PathLike, **kwargs: Any) -> TTAMethod:
        """Rebuild a wrapper around `model` from `save_pretrained` output (strict)."""
        config = config_from_file(cls.config_cls, read_config_dict(directory), os.path.join(directory, CONFIG_NAME))
        wrapper = cls(model, config, **kwargs)
        tensors, _ = load_tensors(os.path.join(directory, WEIGHTS_NAME))
        wrapper.load_state_dict(tensors)
        return wrapper

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.config.to_dict().items() if k not in _CORE_KEYS)
        return f"{type(self).__name__}({fields})"


def entropy(probs_or_logits: torch.Tensor, logits: bool = True) -> torch.Tensor:
    """Per-row Shannon entropy (nats) of softmax(logits) or of probabilities."""
    if logits:
        log_p = torch.log_softmax(probs_or_logits, dim=1)
        return -(log_p.exp() * log_p).sum(1)
    p = probs_or_logits
    return -(p * torch.log(p.clamp_min(1e-20))).sum(1)
