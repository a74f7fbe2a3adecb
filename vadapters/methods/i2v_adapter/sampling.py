"""Image-to-video sampling helpers: the Frame Similarity Prior and colour matching to frame 0.

Frame Similarity Prior (official inference, with its knobs exposed): the initial latents of every frame are
`init_sigma * (strength * degrade(z0) + sqrt(1 - strength^2) * noise)`, where `z0` is the clean first-frame latent
repeated over the frames and `degrade` replaces each element, with probability `mask_prob`, by its value in a
Gaussian-blurred copy (`blur_sigma`, `blur_kernel`). Upstream fixes strength to sqrt(alpha_bar) of the first sampling
timestep (about 0.05 for 25 DDIM steps), `mask_prob` 0.5, sigma 18, kernel 9; higher strength gives steadier,
less moving videos.

Colour matching (official post-process): the a/b channels (CIELAB) of each frame are histogram-matched to frame 0.
Here the frames are converted from RGB, as they are. The official script hands its RGB frames to OpenCV's
BGR-to-LAB conversion (and back with LAB-to-BGR), so it matches the histograms of channels computed with red and
blue swapped: on a tinted test video its frames differ from the correct conversion's by up to 0.24 (in [0, 1]).
`color_match_frames(..., official_channel_swap=True)` (the pipelines' `color_match="official"`) reproduces that
for compatibility; it works in float, where the official rounds to 8 bits (they differ by 0.004 on average).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vadapters.errors import BadInputError

__all__ = ["color_match_frames", "degrade_prior", "first_timestep_strength", "gaussian_blur", "prior_latents"]


def gaussian_blur(x: torch.Tensor, sigma: float, kernel: int) -> torch.Tensor:
    """Separable Gaussian blur of `(..., H, W)` with reflect padding (kernel clipped to the image size).

    Example:
        >>> x = torch.zeros(1, 1, 5, 5); x[..., 2, 2] = 1.0
        >>> y = gaussian_blur(x, sigma=1.0, kernel=3)
        >>> round(float(y.sum()), 4), bool(y[..., 2, 2] < 1)
        (1.0, True)
    """
    if sigma <= 0 or kernel <= 1:
        return x
    shape = x.shape
    h, w = shape[-2:]
    flat = x.reshape(-1, 1, h, w)
    out = flat
    for dim, size in ((-1, w), (-2, h)):
        k = min(int(kernel), 2 * size - 1)
        k = k if k % 2 else k - 1
        if k <= 1:
            continue
        coords = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
        weights = torch.exp(-(coords**2) / (2 * float(sigma) ** 2))
        weights = (weights / weights.sum()).to(x.dtype).to(x.device)
        pad = k // 2
        if dim == -1:
            out = F.conv2d(F.pad(out, (pad, pad, 0, 0), mode="reflect"), weights.view(1, 1, 1, k))
        else:
            out = F.conv2d(F.pad(out, (0, 0, pad, pad), mode="reflect"), weights.view(1, 1, k, 1))
    return out.reshape(shape)


def degrade_prior(
    latents: torch.Tensor,
    mask_prob: float = 0.5,
    blur_sigma: float = 18.0,
    blur_kernel: int = 9,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Replace each element by its blurred value with probability `mask_prob` (the official degradation).

    Example:
        >>> z = torch.randn(1, 4, 3, 8, 8)
        >>> torch.equal(degrade_prior(z, mask_prob=0.0), z)
        True
    """
    if not 0.0 <= mask_prob <= 1.0:
        raise BadInputError(f"prior mask probability must be in [0, 1], got {mask_prob!r}")
    if mask_prob == 0.0:
        return latents
    blurred = gaussian_blur(latents, blur_sigma, blur_kernel)
    device = generator.device if generator is not None else latents.device
    draw = torch.rand(latents.shape, generator=generator, device=device, dtype=torch.float32).to(latents.device)
    return torch.where(draw < mask_prob, blurred, latents)


def first_timestep_strength(scheduler) -> float:
    """sqrt(alpha_bar) of the scheduler's first sampling timestep: the official prior strength.

    Example:
        >>> from vadapters.models import make_scheduler
        >>> s = make_scheduler("ddim"); s.set_timesteps(25)
        >>> round(first_timestep_strength(s), 3)
        0.085
    """
    alphas = getattr(scheduler, "alphas_cumprod", None)
    timesteps = getattr(scheduler, "timesteps", None)
    if alphas is None or timesteps is None or len(timesteps) == 0:
        raise BadInputError(
            f"{type(scheduler).__name__} exposes no alphas_cumprod/timesteps; pass prior_strength as a number in [0, 1)"
        )
    t = int(timesteps[0])
    return float(alphas[min(max(t, 0), len(alphas) - 1)].sqrt())


def prior_latents(
    first: torch.Tensor,
    noise: torch.Tensor,
    strength: float,
    *,
    mask_prob: float = 0.5,
    blur_sigma: float = 18.0,
    blur_kernel: int = 9,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Initial latents under the Frame Similarity Prior, in the scheduler's unit-variance scale.

    Args:
        first: clean first-frame latents `(B, C, h, w)`.
        noise: standard normal noise `(B, C, F, h, w)`.
        strength: share of the degraded first frame kept, in [0, 1) (0 gives `noise` back exactly).

    Example:
        >>> z, n = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 3, 8, 8)
        >>> torch.equal(prior_latents(z, n, 0.0), n)
        True
    """
    if not 0.0 <= strength < 1.0:
        raise BadInputError(f"prior_strength must be in [0, 1), got {strength!r}")
    if strength == 0.0:
        return noise
    repeated = first[:, :, None].expand(-1, -1, noise.shape[2], -1, -1).to(noise.dtype)
    prior = degrade_prior(repeated, mask_prob, blur_sigma, blur_kernel, generator)
    return strength * prior + math.sqrt(1.0 - strength**2) * noise


# ------------------------------------------------------------------------------------------------ colour matching
_D65 = (0.95047, 1.0, 1.08883)
_RGB_TO_XYZ = torch.tensor(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)


def _rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """`(N, 3, H, W)` sRGB in [0, 1] -> CIELAB (D65)."""
    lin = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = torch.einsum("ij,njhw->nihw", _RGB_TO_XYZ.to(rgb), lin)
    xyz = xyz / torch.tensor(_D65, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(1e-12) ** (1 / 3), 7.787 * xyz + 16 / 116)
    return torch.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], dim=1)


def _lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    fy = (lab[:, 0] + 16) / 116
    f = torch.stack([fy + lab[:, 1] / 500, fy, fy - lab[:, 2] / 200], dim=1)
    xyz = torch.where(f > 0.206893, f**3, (f - 16 / 116) / 7.787)
    xyz = xyz * torch.tensor(_D65, dtype=lab.dtype, device=lab.device).view(1, 3, 1, 1)
    lin = torch.einsum("ij,njhw->nihw", torch.linalg.inv(_RGB_TO_XYZ.double()).to(lab), xyz).clamp(0, 1)
    return torch.where(lin > 0.0031308, 1.055 * lin.clamp_min(1e-12) ** (1 / 2.4) - 0.055, 12.92 * lin).clamp(0, 1)


def _match_histogram(source: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Quantile-map the values of `source` (any shape) onto the distribution of `reference`."""
    flat = source.flatten()
    order = flat.argsort()
    ref_sorted = reference.flatten().sort().values
    positions = torch.linspace(0, ref_sorted.numel() - 1, flat.numel(), device=flat.device)
    low = positions.floor().long()
    high = positions.ceil().long()
    frac = positions - low
    mapped = ref_sorted[low] * (1 - frac) + ref_sorted[high] * frac
    out = torch.empty_like(flat)
    out[order] = mapped.to(flat.dtype)
    return out.view_as(source)


def color_match_frames(video: torch.Tensor, official_channel_swap: bool = False) -> torch.Tensor:
    """Match the CIELAB a/b histograms of every frame to frame 0. `video`: `(B, 3, F, H, W)` RGB in [0, 1].

    Args:
        official_channel_swap (`bool`): compatibility with the official post-process, which converts its RGB
            frames as if they were BGR (red and blue swapped in the colour conversion; see the module docstring).
            Off by default: the correct conversion.

    Example:
        >>> v = torch.rand(1, 3, 2, 8, 8)
        >>> v[:, :, 1] = v[:, :, 1] * 0.5  # frame 1 darker and tinted
        >>> out = color_match_frames(v)
        >>> torch.allclose(out[:, :, 0], v[:, :, 0], atol=1e-4)  # frame 0 kept
        True
        >>> swapped = color_match_frames(v.flip(1)).flip(1)  # what the official channel mix-up computes
        >>> torch.equal(color_match_frames(v, official_channel_swap=True), swapped)
        True
    """
    if video.ndim != 5 or video.shape[1] != 3:
        raise BadInputError(f"expected a video (batch, 3, frames, H, W) in [0, 1], got {tuple(video.shape)}")
    if official_channel_swap:
        return color_match_frames(video.flip(1)).flip(1)
    out = video.clone()
    for b in range(video.shape[0]):
        frames = video[b].permute(1, 0, 2, 3).double()  # (F, 3, H, W)
        lab = _rgb_to_lab(frames)
        for f in range(1, lab.shape[0]):
            for c in (1, 2):
                lab[f, c] = _match_histogram(lab[f, c], lab[0, c])
        rgb = _lab_to_rgb(lab).to(video.dtype).permute(1, 0, 2, 3)
        out[b, :, 1:] = rgb[:, 1:]
    return out
