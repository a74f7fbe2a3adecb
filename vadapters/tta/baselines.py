"""Baselines for continual test-time adaptation: source, BN adapt, TENT and CoTTA (as run by their official code).

* `Source`: the frozen model in eval mode.
* `BNAdapt`: BatchNorm layers normalise with the test batch's statistics ("norm" / BN-1); nothing is learned.
  A model without BatchNorm (a ViT) gives the source predictions.
* `TENT` (Wang et al., ICLR 2021): BatchNorm uses batch statistics (running statistics dropped); only the affine
  weight and bias of norm layers (BatchNorm, and LayerNorm / GroupNorm for models without BN) train, on the mean
  prediction entropy, one optimiser step per batch (Adam 1e-3); the returned prediction is the one made **before**
  the update. `episodic=True` restores parameters and optimiser before every batch.
* `CoTTA` (Wang et al., CVPR 2022): every parameter named `weight` / `bias` of a batch-statistics student trains on
  the soft cross-entropy to an EMA teacher (alpha 0.999). The teacher target is the mean teacher logits over
  `n_aug` (32) augmented copies when the frozen anchor's batch-**mean** max-softmax confidence is below `ap`
  (0.92 for CIFAR-10), else the teacher on the clean batch. After each step every element of every trained tensor
  returns to its source value with probability `rst` (0.01). The returned prediction is the teacher's.

Dropout stays off in every method (the official `model.train()` only serves to make BN use batch statistics).

Example:
    >>> import torch
    >>> from vadapters.models import tiny_timm_classifier
    >>> model = tiny_timm_classifier("test_resnet")
    >>> tent = TENT(model)
    >>> probs = tent(torch.rand(4, 3, 32, 32))
    >>> tuple(probs.shape), sorted({n.rsplit(".", 1)[-1] for n in tent.state_dict()})
    ((4, 10), ['bias', 'weight'])
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from vadapters.errors import BadInputError
from vadapters.tta.augment import CoTTAAugment
from vadapters.tta.base import TTAConfig, TTAMethod, batch_statistics, batchnorm_modules, entropy, eval_mode

NORM_TYPES = {"batch": nn.modules.batchnorm._BatchNorm, "layer": nn.LayerNorm, "group": nn.GroupNorm}


def _check_optimiser(name: str, lr: float) -> None:
    if name not in ("adam", "sgd") or lr <= 0:
        raise BadInputError(f"optimizer must be 'adam' or 'sgd' with lr > 0, got {name!r}, lr={lr}")


def make_optimiser(params: list[nn.Parameter], name: str, lr: float, momentum: float = 0.9, weight_decay=0.0):
    """Adam (betas 0.9, 0.999) or SGD (momentum, Nesterov when momentum > 0), as in the official configs."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay)


def use_batch_statistics_permanently(model: nn.Module) -> None:
    """TENT/CoTTA's `configure_model` for BN: drop running statistics so BN always uses the batch's."""
    for module in batchnorm_modules(model):
        module.track_running_stats = False
        module.running_mean = None
        module.running_var = None


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Per-sample `-sum_c softmax(teacher)_c log softmax(student)_c`."""
    return -(teacher_logits.softmax(1) * student_logits.log_softmax(1)).sum(1)


@dataclasses.dataclass
class SourceConfig(TTAConfig):
    """The unadapted model: only the shared settings."""

    method: ClassVar[str] = "source"


@dataclasses.dataclass
class BNConfig(TTAConfig):
    """Test-batch BatchNorm statistics: only the shared settings."""

    method: ClassVar[str] = "bn"


class Source(TTAMethod):
    """The unadapted model: `softmax(model(x))` in eval mode.

    Example:
        >>> from vadapters.models import tiny_timm_classifier
        >>> model = tiny_timm_classifier("test_vit")
        >>> x = torch.rand(2, 3, 32, 32)
        >>> bool(torch.equal(Source(model)(x), model((x - 0.5) / 0.5).softmax(1)))
        True
    """

    config_cls = SourceConfig

    @torch.no_grad()
    def _step(self, x: torch.Tensor) -> torch.Tensor:
        with eval_mode(self.source_model):
            return self.source_model(self.normalise(x)).softmax(1)


class BNAdapt(TTAMethod):
    """BatchNorm with test-batch statistics; no parameter or buffer of the model changes."""

    config_cls = BNConfig

    @torch.no_grad()
    def _step(self, x: torch.Tensor) -> torch.Tensor:
        with eval_mode(self.source_model), batch_statistics(self.source_model):
            return self.source_model(self.normalise(x)).softmax(1)


@dataclasses.dataclass
class TENTConfig(TTAConfig):
    """TENT settings (official CIFAR-10-C: Adam 1e-3, one step, BN affine).

    Args:
        lr (`float`), optimizer (`str`: "adam" | "sgd"), momentum (`float`, SGD), weight_decay (`float`).
        steps (`int`): optimiser steps per batch.
        norm_layers (`tuple[str, ...]`): norm types whose affine parameters train: "batch", "layer", "group".
    """

    method: ClassVar[str] = "tent"
    lr: float = dataclasses.field(default=1e-3, metadata={"help": "learning rate"})
    optimizer: str = dataclasses.field(default="adam", metadata={"help": "adam | sgd"})
    momentum: float = dataclasses.field(default=0.9, metadata={"help": "SGD momentum"})
    weight_decay: float = dataclasses.field(default=0.0, metadata={"help": "weight decay"})
    steps: int = dataclasses.field(default=1, metadata={"help": "optimiser steps per batch"})
    norm_layers: tuple[str, ...] = dataclasses.field(
        default=("batch", "layer", "group"), metadata={"help": "norm types whose affine parameters train"}
    )

    def validate(self) -> None:
        super().validate()
        _check_optimiser(self.optimizer, self.lr)
        self.norm_layers = tuple(self.norm_layers)
        if self.steps < 1 or not self.norm_layers or set(self.norm_layers) - set(NORM_TYPES):
            raise BadInputError(f"need steps >= 1 and norm_layers from {sorted(NORM_TYPES)}, got {self.norm_layers}")


class TENT(TTAMethod):
    """TENT on a private copy of the model (the given model is untouched); see the module docstring."""

    config_cls = TENTConfig

    def __init__(self, model: nn.Module, config: TENTConfig | None = None, **overrides: Any) -> None:
        super().__init__(model, config, **overrides)
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        use_batch_statistics_permanently(self.model)
        types = tuple(NORM_TYPES[name] for name in self.config.norm_layers)
        self.params: dict[str, nn.Parameter] = {}
        for module_name, module in self.model.named_modules():
            if isinstance(module, types):
                for param_name, param in module.named_parameters(recurse=False):
                    if param_name in ("weight", "bias"):
                        param.requires_grad_(True)
                        self.params[f"{module_name}.{param_name}"] = param
        if not self.params:
            raise BadInputError(
                f"{type(model).__name__} has no affine {'/'.join(self.config.norm_layers)} norm parameters for TENT"
            )
        self._snapshot_source()
        self._reset_extra()

    def _state(self) -> dict[str, torch.Tensor]:
        return dict(self.params)

    def _reset_extra(self) -> None:
        cfg = self.config
        self.optimizer = make_optimiser(
            list(self.params.values()), cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay
        )

    def _step(self, x: torch.Tensor) -> torch.Tensor:
        xn = self.normalise(x)
        first = None
        for _ in range(self.config.steps):
            logits = self.model(xn)
            loss = entropy(logits).mean()
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            if first is None:
                first = logits.detach()
                self.diagnostics = {"entropy": float(loss.detach())}
        return first.softmax(1)


@dataclasses.dataclass
class CoTTAConfig(TTAConfig):
    """CoTTA settings (official CIFAR-10-C defaults).

    Args:
        lr (`float`), optimizer (`str`), momentum (`float`), weight_decay (`float`): the student's optimiser.
        ema (`float`): teacher EMA rate alpha in `teacher <- alpha teacher + (1 - alpha) student` (0.999).
        rst (`float`): stochastic-restore probability per element (0.01; ImageNet code: 0.001).
        ap (`float`): anchor-confidence threshold; augment when the batch-mean anchor confidence is below it.
        n_aug (`int`): augmented copies averaged for the teacher target (32).
        symmetric (`bool`): symmetric soft cross-entropy (the ImageNet script) instead of teacher -> student.
        hflip (`bool`): allow horizontal flips in the augmentation (wrong for digits/text).
        aug_strength (`float`): scales the augmentation ranges (1 = official CIFAR).
    """

    method: ClassVar[str] = "cotta"
    lr: float = dataclasses.field(default=1e-3, metadata={"help": "learning rate"})
    optimizer: str = dataclasses.field(default="adam", metadata={"help": "adam | sgd"})
    momentum: float = dataclasses.field(default=0.9, metadata={"help": "SGD momentum"})
    weight_decay: float = dataclasses.field(default=0.0, metadata={"help": "weight decay"})
    ema: float = dataclasses.field(default=0.999, metadata={"help": "teacher EMA rate"})
    rst: float = dataclasses.field(default=0.01, metadata={"help": "stochastic restore probability"})
    ap: float = dataclasses.field(default=0.92, metadata={"help": "anchor confidence threshold"})
    n_aug: int = dataclasses.field(default=32, metadata={"help": "augmentations for the teacher target"})
    symmetric: bool = dataclasses.field(default=False, metadata={"help": "symmetric soft cross-entropy"})
    hflip: bool = dataclasses.field(default=True, metadata={"help": "horizontal flips in augmentation"})
    aug_strength: float = dataclasses.field(default=1.0, metadata={"help": "augmentation range scale"})

    def validate(self) -> None:
        super().validate()
        _check_optimiser(self.optimizer, self.lr)
        if not (0 <= self.ema <= 1 and 0 <= self.rst <= 1 and self.n_aug >= 1 and self.aug_strength >= 0):
            raise BadInputError(
                f"need 0 <= ema <= 1, 0 <= rst <= 1, n_aug >= 1, aug_strength >= 0; got {self.ema}, {self.rst}, "
                f"{self.n_aug}, {self.aug_strength}"
            )


@torch.no_grad()
def ema_update(teacher: dict[str, torch.Tensor], student: dict[str, torch.Tensor], alpha: float) -> None:
    """`teacher <- alpha * teacher + (1 - alpha) * student`, in place, for matching names."""
    for name, value in teacher.items():
        value.mul_(alpha).add_(student[name].detach(), alpha=1.0 - alpha)


@torch.no_grad()
def stochastic_restore(
    params: dict[str, torch.Tensor], source: dict[str, torch.Tensor], p: float, generator: torch.Generator
) -> int:
    """Reset each element to its source value with probability `p`; returns how many elements were restored."""
    restored = 0
    for name, param in params.items():
        mask = (torch.rand(param.shape, generator=generator) < p).to(param.device)
        param.copy_(torch.where(mask, source[name], param))
        restored += int(mask.sum())
    return restored


class CoTTA(TTAMethod):
    """CoTTA: student, EMA teacher and frozen anchor are private copies; see the module docstring.

    `confidence_threshold(model, clean_images)` gives the maintainers' rule for `ap` on a new model.
    """

    config_cls = CoTTAConfig

    def __init__(self, model: nn.Module, config: CoTTAConfig | None = None, **overrides: Any) -> None:
        super().__init__(model, config, **overrides)
        student = copy.deepcopy(model).eval().requires_grad_(False)
        use_batch_statistics_permanently(student)
        self.student = student
        self.teacher = copy.deepcopy(student)
        self.anchor = copy.deepcopy(student)
        self.params = {n: p for n, p in student.named_parameters() if n.rsplit(".", 1)[-1] in ("weight", "bias")}
        for param in self.params.values():
            param.requires_grad_(True)
        teacher = dict(self.teacher.named_parameters())
        self.teacher_params = {name: teacher[name] for name in self.params}
        self.restore_source = {n: p.detach().clone() for n, p in self.params.items()}
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.augment = CoTTAAugment(self.config.seed, self.config.hflip, self.config.aug_strength)
        self.augmented_batches = 0
        self._snapshot_source()
        self._reset_extra()

    def _state(self) -> dict[str, torch.Tensor]:
        state = {f"student.{n}": p for n, p in self.params.items()}
        state.update({f"teacher.{n}": p for n, p in self.teacher_params.items()})
        return state

    def _reset_extra(self) -> None:
        cfg = self.config
        self.optimizer = make_optimiser(
            list(self.params.values()), cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay
        )
        self.generator.manual_seed(cfg.seed)
        self.augment = CoTTAAugment(cfg.seed, cfg.hflip, cfg.aug_strength)

    def _teacher_target(self, x: torch.Tensor, xn: torch.Tensor) -> tuple[torch.Tensor, float, bool]:
        with torch.no_grad():
            anchor_conf = float(self.anchor(xn).softmax(1).max(1).values.mean())
            if anchor_conf < self.config.ap:
                outs = [self.teacher(self.normalise(self.augment(x))) for _ in range(self.config.n_aug)]
                return torch.stack(outs).mean(0), anchor_conf, True
            return self.teacher(xn), anchor_conf, False

    def _step(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        xn = self.normalise(x)
        outputs = self.student(xn)
        target, anchor_conf, augmented = self._teacher_target(x, xn)
        self.augmented_batches += int(augmented)
        loss = soft_cross_entropy(outputs, target)
        if cfg.symmetric:
            loss = 0.5 * loss + 0.5 * soft_cross_entropy(target, outputs)
        loss = loss.mean()
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        ema_update(self.teacher_params, self.params, cfg.ema)
        restored = stochastic_restore(self.params, self.restore_source, cfg.rst, self.generator) if cfg.rst > 0 else 0
        self.diagnostics = {"anchor_confidence": anchor_conf, "augmented": augmented, "loss": float(loss.detach())}
        self.diagnostics["restored"] = restored
        return target.softmax(1)


@torch.no_grad()
def confidence_threshold(model: nn.Module, images: torch.Tensor, batch_size: int = 256, quantile=0.05) -> float:
    """CoTTA's `ap` rule (maintainers, issue #16): the 5 % quantile of source confidence on source data - 0.05.

    Example:
        >>> from vadapters.models import tiny_timm_classifier
        >>> 0.0 <= confidence_threshold(tiny_timm_classifier("test_vit"), torch.rand(8, 3, 32, 32)) < 1.0
        True
    """
    source = Source(model)
    conf = torch.cat([source(images[i : i + batch_size]).max(1).values for i in range(0, len(images), batch_size)])
    return max(0.0, float(torch.quantile(conf.float(), quantile)) - 0.05)
