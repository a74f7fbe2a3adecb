"""The shifted-SNR noise schedule MV-Adapter trains and samples with (official `ShiftSNRScheduler`, scale 8,
`interpolated`). It lives in the core (`vadapters.core.schedules`), shared with the training recipes; this module
keeps the method's import path.

Example:
    >>> from diffusers import DDIMScheduler
    >>> type(ShiftSNRScheduler.from_scheduler(DDIMScheduler(), shift_scale=8.0)).__name__
    'DDIMScheduler'
"""

from vadapters.core.schedules import SHIFT_MODES, ShiftSNRScheduler, shift_snr_betas

__all__ = ["SHIFT_MODES", "ShiftSNRScheduler", "shift_snr_betas"]
