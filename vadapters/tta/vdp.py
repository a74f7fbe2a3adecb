"""Visual domain prompts for continual test-time adaptation ("Decorate the Newcomers", Gan et al., AAAI 2023).

VDP has no official code; this follows the reconstruction in `perception-adapters.md` section 3 (what is verified:
two image-level additive prompts on a frozen model, a student/teacher EMA over the prompts only, augmentation-
averaged teacher pseudo-labels, homeostasis regularisation of the domain-agnostic prompt with importance
re-estimated at detected domain changes). Shapes, optimiser and thresholds are our choices, all configurable.

* Two prompts of the same shape, applied in **normalised input space**: `x_p = x + m * (dsp + dap)` with a fixed
  binary mask `m`: "pad" (border ring of width `prompt_size`), "patch" (`prompt_size` square at the top-left
  corner) or "full" (whole image). Zero init, so adaptation starts exactly at the source model.
* Teacher prompts are the EMA of the student's: `t <- ema * t + (1 - ema) * s`, after each step.
* Both prompts get the same task gradient (they are summed), so until the first detected domain change gives the
  DAP an importance, DSP and DAP stay equal and their sum moves at about twice the Adam step.
* Teacher target: mean softmax over the clean view and `n_aug` CoTTA augmentations (only when the frozen model's
  batch-mean confidence is below `ap`; `ap=1` always augments). Student loss: cross-entropy to the target's argmax
  (`soft_targets=True`: soft cross-entropy) plus `L_reg = reg_weight * sum(importance * (dap - dap_anchor)^2)`.
* Homeostasis (synaptic-intelligence style): each step accumulates `path += -g * delta` (task-loss gradient times
  the DAP update). When the teacher's batch-mean confidence jumps by more than `shift_threshold` between batches
  (a detected domain change), `importance += path / ((dap - dap_anchor)^2 + xi)`, clipped at 0 and scaled to
  [0, 1]; then `dap_anchor <- dap` and `path <- 0`.
* The backbone never changes and never receives a gradient (gradients are taken w.r.t. the prompts only).
  `bn_mode`: "frozen" (running statistics) or "batch_stats" (test-batch statistics, buffers untouched) - for BN
  models this matters more than the prompts do.
* The returned prediction is the teacher prompts' on the clean batch, made before the update.

Example:
    >>> import torch
    >>> from vadapters.models import tiny_timm_classifier
    >>> model = tiny_timm_classifier("test_vit")
    >>> vdp = VDP(model, n_aug=1)
    >>> x = torch.rand(4, 3, 32, 32)
    >>> bool(torch.equal(vdp(x), model((x - 0.5) / 0.5).softmax(1)))   # zero prompts: the source prediction
    True
    >>> float(vdp.student_dsp.detach().abs().sum()) > 0                         # the student prompt has moved
    True
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from vadapters.errors import BadInputError
from vadapters.tta.augment import CoTTAAugment
from vadapters.tta.base import TTAConfig, TTAMethod, batch_statistics, eval_mode
from vadapters.tta.baselines import _check_optimiser, ema_update, make_optimiser

PROMPT_SHAPES = ("pad", "patch", "full")
BN_MODES = ("frozen", "batch_stats")


def prompt_mask(shape: str, size: int, height: int, width: int) -> torch.Tensor:
    """Binary mask `[1, 3, H, W]` of the prompt's pixels.

    Example:
        >>> int(prompt_mask("pad", 4, 32, 32).sum()) == 3 * (32 * 32 - 24 * 24)
        True
        >>> int(prompt_mask("patch", 5, 32, 32).sum()), int(prompt_mask("full", 0, 8, 8).sum())
        (75, 192)
    """
    mask = torch.zeros(1, 3, height, width)
    if shape == "full":
        mask.fill_(1.0)
    elif shape == "pad":
        if not 0 < 2 * size < min(height, width):
            raise BadInputError(f"pad width must be in 1..{(min(height, width) - 1) // 2} for {height}x{width}")
        mask.fill_(1.0)
        mask[..., size : height - size, size : width - size] = 0.0
    elif shape == "patch":
        if not 0 < size <= min(height, width):
            raise BadInputError(f"patch side must be in 1..{min(height, width)} for {height}x{width}, got {size}")
        mask[..., :size, :size] = 1.0
    else:
        raise BadInputError(f"prompt shape must be one of {', '.join(PROMPT_SHAPES)}, got {shape!r}")
    return mask


def homeostasis_loss(dap: torch.Tensor, anchor: torch.Tensor, importance: torch.Tensor, weight: float) -> torch.Tensor:
    """`L_reg = weight * sum(importance * (dap - anchor)^2)`; its gradient is `2 weight importance (dap - anchor)`.

    Example:
        >>> dap = torch.ones(3, requires_grad=True)
        >>> float(homeostasis_loss(dap, torch.ones(3), torch.ones(3), 2.0).detach())
        0.0
    """
    return weight * (importance * (dap - anchor) ** 2).sum()


class DomainShiftDetector:
    """Fires when the batch-mean confidence moves by more than `threshold` from the previous batch's.

    Example:
        >>> detector = DomainShiftDetector(0.1)
        >>> [detector.update(c) for c in (0.9, 0.9, 0.88, 0.5, 0.52)]
        [False, False, False, True, False]
    """

    def __init__(self, threshold: float) -> None:
        self.threshold = float(threshold)
        self.previous: float | None = None

    def update(self, confidence: float) -> bool:
        fired = self.previous is not None and abs(confidence - self.previous) > self.threshold
        self.previous = float(confidence)
        return fired

    def reset(self) -> None:
        self.previous = None


@dataclasses.dataclass
class VDPConfig(TTAConfig):
    """Visual domain prompt settings (see the module docstring).

    Args:
        prompt (`str`): "pad", "patch" or "full". prompt_size (`int`): pad width or patch side (pixels).
        image_size (`tuple[int, int]`, optional): prompt height and width; default: the first batch's.
        init (`str`): "zero" (source model at start) or "randn" (`init_std * N(0, 1)`, as SVDP).
        lr (`float`), optimizer (`str`): the student prompts' optimiser (Adam 1e-2).
        ema (`float`): teacher EMA rate. n_aug (`int`): augmented views in the teacher target.
        ap (`float`): augment only when the frozen model's batch-mean confidence is below this (1 = always).
        soft_targets (`bool`): soft cross-entropy to the teacher instead of its argmax.
        reg_weight (`float`): lambda of `L_reg`. xi (`float`): damping of the importance estimate.
        shift_threshold (`float`): S, the confidence jump that signals a new domain.
        bn_mode (`str`): "frozen" or "batch_stats". clamp (`bool`): keep prompted images in the valid pixel range.
        hflip (`bool`), aug_strength (`float`): augmentation options (see `CoTTAAugment`).
    """

    method: ClassVar[str] = "vdp"
    prompt: str = dataclasses.field(default="pad", metadata={"help": "pad | patch | full"})
    prompt_size: int = dataclasses.field(default=4, metadata={"help": "pad width or patch side"})
    image_size: tuple[int, int] | None = dataclasses.field(default=None, metadata={"help": "prompt H, W"})
    init: str = dataclasses.field(default="zero", metadata={"help": "zero | randn"})
    init_std: float = dataclasses.field(default=0.1, metadata={"help": "std of randn init"})
    lr: float = dataclasses.field(default=1e-2, metadata={"help": "prompt learning rate"})
    optimizer: str = dataclasses.field(default="adam", metadata={"help": "adam | sgd"})
    ema: float = dataclasses.field(default=0.99, metadata={"help": "teacher EMA rate"})
    n_aug: int = dataclasses.field(default=4, metadata={"help": "augmented views for the teacher"})
    ap: float = dataclasses.field(default=1.0, metadata={"help": "anchor confidence gate (1 = always augment)"})
    soft_targets: bool = dataclasses.field(default=False, metadata={"help": "soft CE to the teacher"})
    reg_weight: float = dataclasses.field(default=1.0, metadata={"help": "homeostasis weight lambda"})
    xi: float = dataclasses.field(default=1e-3, metadata={"help": "importance damping"})
    shift_threshold: float = dataclasses.field(default=0.1, metadata={"help": "domain-change confidence jump S"})
    bn_mode: str = dataclasses.field(default="frozen", metadata={"help": "frozen | batch_stats"})
    clamp: bool = dataclasses.field(default=False, metadata={"help": "clamp prompted images to valid pixels"})
    hflip: bool = dataclasses.field(default=True, metadata={"help": "horizontal flips in augmentation"})
    aug_strength: float = dataclasses.field(default=1.0, metadata={"help": "augmentation range scale"})

    def validate(self) -> None:
        super().validate()
        _check_optimiser(self.optimizer, self.lr)
        if self.image_size is not None:
            self.image_size = tuple(int(v) for v in self.image_size)
        if self.prompt not in PROMPT_SHAPES or self.bn_mode not in BN_MODES or self.init not in ("zero", "randn"):
            raise BadInputError(
                f"need prompt in {PROMPT_SHAPES}, bn_mode in {BN_MODES}, init in ('zero', 'randn'); got "
                f"{self.prompt!r}, {self.bn_mode!r}, {self.init!r}"
            )
        if not (0 <= self.ema <= 1 and self.n_aug >= 0 and self.reg_weight >= 0 and self.xi > 0):
            raise BadInputError(f"need 0 <= ema <= 1, n_aug >= 0, reg_weight >= 0, xi > 0; got {self}")


class VDP(TTAMethod):
    """Visual domain prompts around a frozen classifier (any module taking normalised images)."""

    config_cls = VDPConfig

    def __init__(self, model: nn.Module, config: VDPConfig | None = None, **overrides: Any) -> None:
        super().__init__(model, config, **overrides)
        self.detector = DomainShiftDetector(self.config.shift_threshold)
        self.augment = CoTTAAugment(self.config.seed, self.config.hflip, self.config.aug_strength)
        self.domain_changes = 0
        self.mask: torch.Tensor | None = None
        self._tensors: dict[str, torch.Tensor] = {}
        if self.config.image_size is not None:
            self._build(*self.config.image_size)

    # ------------------------------------------------------------------------------------------------ state
    def _build(self, height: int, width: int) -> None:
        cfg = self.config
        self.config.image_size = (int(height), int(width))
        self.mask = prompt_mask(cfg.prompt, cfg.prompt_size, height, width).to(self.device)
        gen = torch.Generator().manual_seed(cfg.seed)
        shape = (1, 3, height, width)

        def init() -> torch.Tensor:
            if cfg.init == "zero":
                return torch.zeros(shape, device=self.device)
            return (cfg.init_std * torch.randn(shape, generator=gen)).to(self.device) * self.mask

        self.student_dsp, self.student_dap = nn.Parameter(init()), nn.Parameter(init())
        self._tensors = {
            "student.dsp": self.student_dsp,
            "student.dap": self.student_dap,
            "teacher.dsp": self.student_dsp.detach().clone(),
            "teacher.dap": self.student_dap.detach().clone(),
            "homeostasis.anchor": self.student_dap.detach().clone(),
            "homeostasis.importance": torch.zeros(shape, device=self.device),
            "homeostasis.path": torch.zeros(shape, device=self.device),
        }
        self._snapshot_source()
        self._reset_extra()

    def _state(self) -> dict[str, torch.Tensor]:
        return dict(self._tensors)

    def load_state_dict(self, state: dict[str, torch.Tensor], strict: bool = True) -> None:
        if self.mask is None and "student.dsp" in state:
            self._build(*state["student.dsp"].shape[-2:])
        super().load_state_dict(state, strict)

    def _reset_extra(self) -> None:
        cfg = self.config
        if self._tensors:
            self.optimizer = make_optimiser([self.student_dsp, self.student_dap], cfg.optimizer, cfg.lr)
        self.detector.reset()
        self.augment = CoTTAAugment(cfg.seed, cfg.hflip, cfg.aug_strength)
        self.domain_changes = 0

    # --------------------------------------------------------------------------------------------- forward
    def _bn_context(self):
        if self.config.bn_mode == "batch_stats":
            return batch_statistics(self.source_model)
        return contextlib.nullcontext()

    def prompted(self, xn: torch.Tensor, dsp: torch.Tensor, dap: torch.Tensor) -> torch.Tensor:
        """`xn + mask * (dsp + dap)` (optionally clamped to the valid normalised pixel range)."""
        out = xn + self.mask * (dsp + dap)
        if self.config.clamp:
            low, high = (0.0 - self.mean) / self.std, (1.0 - self.mean) / self.std
            out = torch.maximum(torch.minimum(out, high), low)
        return out

    def logits(self, x: torch.Tensor, teacher: bool = True) -> torch.Tensor:
        """Logits of images in [0, 1] with the teacher's (default) or the student's prompts, no adaptation."""
        x = x.to(self.device)
        if self.mask is None:
            self._build(*x.shape[-2:])
        names = ("teacher.dsp", "teacher.dap") if teacher else ("student.dsp", "student.dap")
        with torch.no_grad(), eval_mode(self.source_model), self._bn_context():
            return self.source_model(self.prompted(self.normalise(x), *(self._tensors[n] for n in names)))

    def _teacher_target(self, x: torch.Tensor, xn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
        t = self._tensors
        clean = self.source_model(self.prompted(xn, t["teacher.dsp"], t["teacher.dap"]))
        augment = self.config.n_aug > 0
        if augment and self.config.ap < 1.0:
            augment = float(self.source_model(xn).softmax(1).max(1).values.mean()) < self.config.ap
        if not augment:
            return clean, clean.softmax(1), False
        probs = [clean.softmax(1)]
        for _ in range(self.config.n_aug):
            view = self.normalise(self.augment(x))
            probs.append(self.source_model(self.prompted(view, t["teacher.dsp"], t["teacher.dap"])).softmax(1))
        return clean, torch.stack(probs).mean(0), True

    def _consolidate(self) -> None:
        """Re-estimate the DAP importance at a detected domain change; move the anchor; clear the path."""
        t = self._tensors
        with torch.no_grad():
            drift = (self.student_dap - t["homeostasis.anchor"]) ** 2
            importance = (t["homeostasis.importance"] + t["homeostasis.path"] / (drift + self.config.xi)).clamp_min(0)
            peak = importance.max()
            t["homeostasis.importance"].copy_(importance / peak if peak > 0 else importance)
            t["homeostasis.anchor"].copy_(self.student_dap)
            t["homeostasis.path"].zero_()
        self.domain_changes += 1

    def _step(self, x: torch.Tensor) -> torch.Tensor:
        if self.mask is None:
            self._build(*x.shape[-2:])
        if tuple(x.shape[-2:]) != self.config.image_size:
            raise BadInputError(f"prompts are {self.config.image_size}, got images of size {tuple(x.shape[-2:])}")
        cfg, t = self.config, self._tensors
        xn = self.normalise(x)
        with eval_mode(self.source_model), self._bn_context():
            with torch.no_grad():
                clean, target, augmented = self._teacher_target(x, xn)
            confidence = float(clean.softmax(1).max(1).values.mean())
            changed = self.detector.update(confidence)
            if changed:
                self._consolidate()
            student = self.source_model(self.prompted(xn, self.student_dsp, self.student_dap))
        if cfg.soft_targets:
            task = -(target * student.log_softmax(1)).sum(1).mean()
        else:
            task = nn.functional.cross_entropy(student, target.argmax(1))
        grad_dsp, grad_dap = torch.autograd.grad(task, [self.student_dsp, self.student_dap])
        reg = homeostasis_loss(self.student_dap, t["homeostasis.anchor"], t["homeostasis.importance"], cfg.reg_weight)
        grad_reg = torch.autograd.grad(reg, self.student_dap)[0] if reg.requires_grad else torch.zeros_like(grad_dap)
        self.student_dsp.grad, self.student_dap.grad = grad_dsp, grad_dap + grad_reg
        before = self.student_dap.detach().clone()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            t["homeostasis.path"].add_(-grad_dap * (self.student_dap - before))
        ema_update(
            {"dsp": t["teacher.dsp"], "dap": t["teacher.dap"]},
            {"dsp": self.student_dsp, "dap": self.student_dap},
            cfg.ema,
        )
        self.diagnostics = {
            "confidence": confidence,
            "domain_change": changed,
            "augmented": augmented,
            "task_loss": float(task.detach()),
            "reg_loss": float(reg.detach()),
        }
        return clean.softmax(1)
