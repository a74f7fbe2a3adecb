"""Shifted-SNR noise schedules (MV-Adapter trains and samples with one), as a wrapper over any diffusers scheduler.

One implementation for every user: the MV-Adapter method re-exports it (`vadapters.methods.mv_adapter`), and the
training recipes draw their training noise from it (`vadapters.train.weighting.training_scheduler`).

`interpolated` mode: `log SNR'(t) = (1 - w) log SNR(t) + w log(SNR(t) / s)` with `w = t / (T - 1)`, i.e.
`log SNR'(t) = log SNR(t) - w log s`: `t = 0` is unchanged and the noisiest step gets `s` times lower SNR.
`shifted` mode lowers every step's SNR by `s`. The new schedule is handed to the scheduler as `trained_betas`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from vadapters.errors import BadInputError

SHIFT_MODES = ("interpolated", "shifted")


def shift_snr_betas(betas: torch.Tensor, shift_scale: float = 8.0, mode: str = "interpolated") -> torch.Tensor:
    """Betas whose SNR is the shifted SNR of `betas` (float64).

    Example:
        >>> betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
        >>> new = shift_snr_betas(betas, 8.0)
        >>> ac, ac2 = torch.cumprod(1 - betas, 0), torch.cumprod(1 - new, 0)
        >>> snr = lambda a: a / (1 - a)
        >>> round(float(snr(ac)[-1] / snr(ac2)[-1]), 6), round(float(snr(ac)[0] / snr(ac2)[0]), 6)
        (8.0, 1.0)
    """
    if mode not in SHIFT_MODES:
        raise BadInputError(f"shift mode must be one of {SHIFT_MODES}, got {mode!r}")
    if not (shift_scale > 0 and math.isfinite(shift_scale)):
        raise BadInputError(f"shift_scale must be a positive number, got {shift_scale!r}")
    betas = torch.as_tensor(betas, dtype=torch.float64)
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    log_snr = torch.log(alphas_cumprod) - torch.log1p(-alphas_cumprod)
    steps = len(betas)
    w = torch.arange(steps, dtype=torch.float64) / max(steps - 1, 1) if mode == "interpolated" else torch.ones(steps)
    new_cumprod = torch.sigmoid(log_snr - w * math.log(shift_scale))
    previous = torch.cat([torch.ones(1, dtype=torch.float64), new_cumprod[:-1]])
    return (1.0 - new_cumprod / previous).clamp(0.0, 0.9999)


class ShiftSNRScheduler:
    """Factory: `ShiftSNRScheduler.from_scheduler(scheduler)` returns a scheduler of the same class whose betas
    follow the shifted SNR (the official `ShiftSNRScheduler` API; the result is a plain diffusers scheduler).

    Example:
        >>> from diffusers import DDPMScheduler
        >>> sched = ShiftSNRScheduler.from_scheduler(DDPMScheduler(), shift_scale=8.0)
        >>> type(sched).__name__, bool(sched.alphas_cumprod[-1] < DDPMScheduler().alphas_cumprod[-1])
        ('DDPMScheduler', True)
    """

    @staticmethod
    def from_scheduler(
        scheduler: Any,
        shift_scale: float = 8.0,
        shift_mode: str = "interpolated",
        scheduler_class: type | None = None,
        **overrides: Any,
    ) -> Any:
        if not hasattr(scheduler, "alphas_cumprod") or not hasattr(scheduler, "config"):
            raise BadInputError(
                f"expected a diffusers DDPM-family scheduler with alphas_cumprod, got {type(scheduler)}"
            )
        alphas_cumprod = scheduler.alphas_cumprod.double()
        previous = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
        betas = 1.0 - alphas_cumprod / previous
        new_betas = shift_snr_betas(betas, shift_scale, shift_mode)
        cls = scheduler_class or type(scheduler)
        config = {k: v for k, v in dict(scheduler.config).items() if not k.startswith("_")}
        config.update(overrides)
        config["trained_betas"] = new_betas.tolist()
        return cls.from_config(config)
