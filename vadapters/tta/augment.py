"""CoTTA's test-time augmentation for small images, in torch (used by CoTTA and VDP teachers).

In order, on images in [0, 1] (`[B, 3, H, W]`; one random draw per call, shared by the batch, as when the official
torchvision pipeline is applied to a batch tensor):

1. clip to [0, 1];
2. colour jitter "pro", the five operations in random order: brightness [0.6, 1.4], contrast [0.7, 1.3],
   saturation [0.5, 1.5], hue +-0.06, gamma [0.7, 1.3];
3. edge padding by H / 2;
4. random affine: rotation +-15 degrees, translation up to 1/16 of the padded size, scale [0.9, 1.1], bilinear;
5. Gaussian blur, kernel 5, sigma in [0.001, 0.5];
6. centre crop back to H x W;
7. horizontal flip with probability 0.5 (`hflip=False` turns it off: wrong for digits and text);
8. Gaussian noise, sigma 0.005 (per pixel);
9. clip to [0, 1].

Example:
    >>> import torch
    >>> aug = CoTTAAugment(seed=0)
    >>> out = aug(torch.rand(2, 3, 32, 32))
    >>> tuple(out.shape), bool(out.min() >= 0 and out.max() <= 1)
    ((2, 3, 32, 32), True)
"""

from __future__ import annotations

import torch


class CoTTAAugment:
    """Callable CoTTA augmentation with its own seeded generator (see the module docstring).

    Args:
        seed (`int`): seed of the augmentation's generator.
        hflip (`bool`): include the random horizontal flip.
        strength (`float`): scales every jitter range, rotation, translation, scale and blur (1 = CoTTA's CIFAR).
    """

    def __init__(self, seed: int = 0, hflip: bool = True, strength: float = 1.0) -> None:
        self.generator = torch.Generator().manual_seed(int(seed))
        self.hflip = hflip
        self.strength = float(strength)

    def _uniform(self, low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=self.generator))

    def _around(self, centre: float, half: float) -> float:
        half *= self.strength
        return self._uniform(centre - half, centre + half)

    def _colour(self, x: torch.Tensor) -> torch.Tensor:
        import torchvision.transforms.v2.functional as F

        ops = [
            lambda t: F.adjust_brightness(t, self._around(1.0, 0.4)),
            lambda t: F.adjust_contrast(t, self._around(1.0, 0.3)),
            lambda t: F.adjust_saturation(t, self._around(1.0, 0.5)),
            lambda t: F.adjust_hue(t, self._around(0.0, 0.06)),
            lambda t: F.adjust_gamma(t.clamp(0.0, 1.0), self._around(1.0, 0.3)),
        ]
        for index in torch.randperm(len(ops), generator=self.generator).tolist():
            x = ops[index](x)
        return x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torchvision.transforms.v2.functional as F

        h, w = x.shape[-2:]
        x = self._colour(x.clamp(0.0, 1.0))
        pad = h // 2
        x = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="replicate")
        max_dx, max_dy = self.strength * x.shape[-1] / 16, self.strength * x.shape[-2] / 16
        translate = [round(self._uniform(-max_dx, max_dx)), round(self._uniform(-max_dy, max_dy))]
        x = F.affine(
            x,
            angle=self._around(0.0, 15.0),
            translate=translate,
            scale=self._around(1.0, 0.1),
            shear=[0.0, 0.0],
            interpolation=F.InterpolationMode.BILINEAR,
        )
        sigma = self._uniform(0.001, max(0.001, 0.5 * self.strength))
        # Blur, then centre-crop: cropping to a 2-pixel margin first gives the same centre pixels, 4x cheaper.
        x = F.center_crop(x, [h + 4, w + 4])
        x = F.gaussian_blur(x, kernel_size=[5, 5], sigma=[sigma, sigma])
        x = F.center_crop(x, [h, w])
        if self.hflip and float(torch.rand((), generator=self.generator)) < 0.5:
            x = x.flip(-1)
        noise = torch.randn(x.shape, generator=self.generator).to(x.device) * 0.005
        return (x + noise).clamp(0.0, 1.0)
