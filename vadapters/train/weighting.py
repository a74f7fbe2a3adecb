"""Training noise schedules and loss weighting shared by the diffusion recipes (one implementation for all).

- `training_scheduler`: the `DDPMScheduler` a recipe draws its training noise from, optionally on the shifted-SNR
  schedule (`vadapters.core.schedules`), as MV-Adapter's official training does (`shift_noise_scale: 8`,
  `interpolated`: `DDPMScheduler.from_config(pipe.scheduler.config)` then `ShiftSNRScheduler.from_scheduler(...,
  scheduler_class=DDPMScheduler)` in `mvadapter/systems/*.py`). Sample with the same shift
  (`ShiftSNRScheduler.from_scheduler(pipe.scheduler, 8.0)`), as the official inference scripts do.
- `min_snr_weights` / `denoising_mse`: Min-SNR-gamma loss weighting (Hang et al. 2023, arXiv 2303.09556), per
  sample, computed on the training scheduler's (possibly shifted) `alphas_cumprod`, with MV-Adapter's convention
  for each prediction type: epsilon `min(SNR, gamma) / SNR`; v-prediction `min(SNR + 1, gamma) / (SNR + 1)`;
  sample (x0) `min(SNR, gamma)` (the paper's x0 form). Per-sample squared errors are averaged over every other
  dimension, weighted, then averaged over the batch (the official `loss.mean(dim=1..) * weights; loss.mean()`).

Example:
    >>> import torch
    >>> sched = training_scheduler({"num_train_timesteps": 1000}, shift=8.0)
    >>> t = torch.tensor([0, 999])
    >>> w = min_snr_weights(sched, t, gamma=5.0)
    >>> float(w[0]) < 1e-3, float(w[1])  # clean steps weigh little, noisy ones (SNR < 5) fully
    (True, 1.0)
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from vadapters.core.schedules import SHIFT_MODES, ShiftSNRScheduler
from vadapters.errors import BadInputError

__all__ = ["check_snr_gamma", "denoising_mse", "min_snr_weights", "snr", "training_scheduler"]


def training_scheduler(config: Any, shift: float | None = None, mode: str = "interpolated") -> Any:
    """A `DDPMScheduler` from a scheduler config (dict or diffusers `FrozenDict`); with `shift` (> 0, != 1) its SNR
    is shifted down by up to `shift` (`mode`: `"interpolated"` or `"shifted"`, see `vadapters.core.schedules`).

    Example:
        >>> base, shifted = training_scheduler({}), training_scheduler({}, shift=8.0)
        >>> bool(shifted.alphas_cumprod[-1] < base.alphas_cumprod[-1]), type(shifted).__name__
        (True, 'DDPMScheduler')
    """
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(dict(config))
    if shift is None or float(shift) == 1.0:
        return scheduler
    if mode not in SHIFT_MODES:
        raise BadInputError(f"noise_shift_mode must be one of {SHIFT_MODES}, got {mode!r}")
    return ShiftSNRScheduler.from_scheduler(
        scheduler, shift_scale=float(shift), shift_mode=mode, scheduler_class=DDPMScheduler
    )


def check_snr_gamma(gamma: Any) -> float | None:
    """`None` (plain MSE) or a positive finite float; `BadInputError` otherwise."""
    if gamma is None:
        return None
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not (math.isfinite(gamma) and gamma > 0):
        raise BadInputError(f"snr_gamma must be None (plain MSE) or a positive number, got {gamma!r}")
    return float(gamma)


def snr(scheduler: Any, timesteps: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio `alpha_bar / (1 - alpha_bar)` of each timestep (float32, on `timesteps`' device)."""
    alphas_cumprod = scheduler.alphas_cumprod.to(timesteps.device)[timesteps.long()].float()
    return alphas_cumprod / (1.0 - alphas_cumprod)


def min_snr_weights(
    scheduler: Any, timesteps: torch.Tensor, gamma: float, prediction_type: str = "epsilon"
) -> torch.Tensor:
    """Per-sample Min-SNR-gamma loss weights for the scheduler's `prediction_type` (module docstring)."""
    ratio = snr(scheduler, timesteps)
    if prediction_type == "epsilon":
        return ratio.clamp(max=gamma) / ratio
    if prediction_type == "v_prediction":
        return (ratio + 1).clamp(max=gamma) / (ratio + 1)
    if prediction_type == "sample":
        return ratio.clamp(max=gamma)
    raise BadInputError(f"unsupported prediction_type {prediction_type!r} for Min-SNR weighting")


def denoising_mse(
    prediction: torch.Tensor,
    target: torch.Tensor,
    timesteps: torch.Tensor | None = None,
    scheduler: Any = None,
    snr_gamma: float | None = None,
    prediction_type: str = "epsilon",
) -> torch.Tensor:
    """The denoising loss: plain MSE (`snr_gamma=None`, exactly `F.mse_loss`), or Min-SNR-gamma weighted MSE with
    one timestep per sample (`timesteps` shaped `[prediction.shape[0]]`).

    Example:
        >>> import torch
        >>> p, t = torch.zeros(2, 4), torch.ones(2, 4)
        >>> float(denoising_mse(p, t))
        1.0
        >>> sched = training_scheduler({})
        >>> round(float(denoising_mse(p, t, torch.tensor([999, 999]), sched, snr_gamma=5.0)), 6)
        1.0
    """
    prediction, target = prediction.float(), target.float()
    if snr_gamma is None:
        return F.mse_loss(prediction, target)
    if timesteps is None or scheduler is None or timesteps.shape != prediction.shape[:1]:
        raise BadInputError("Min-SNR weighting needs the training scheduler and one timestep per sample")
    per_sample = (prediction - target).square().flatten(1).mean(dim=1)
    weights = min_snr_weights(scheduler, timesteps, snr_gamma, prediction_type).to(per_sample.device)
    return (per_sample * weights).mean()
