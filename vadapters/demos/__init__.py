"""Sections of `vadapters demo`: one module per method, each defining

    TITLE = "..."                      # heading in index.html
    ORDER = 50                         # position (smaller first; the synthetic world is 0, ResAdapter 10)
    def section(out: str, quick: bool) -> tuple[list[tuple[str, str]], dict]:
        '''Write files under `out`; return [(caption, path relative to out), ...] and the section's metrics.'''

`--quick` must keep the whole demo under 3 minutes on 2 CPU cores, so a section's quick path should take about
20 seconds. Files may be images (PNG/GIF/WebP), shown inline.

Example:
    >>> from vadapters.demos import section_modules
    >>> [m.__name__.rsplit(".", 1)[-1] for m in section_modules()][:1]
    ['synthetic_world']
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Any


def section_modules() -> list[ModuleType]:
    """Every section module, imported, sorted by `ORDER` then name."""
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    modules = [importlib.import_module(f"{__name__}.{name}") for name in names]
    return sorted(modules, key=lambda m: (getattr(m, "ORDER", 50), m.__name__))


def to_uint8_image(image: Any) -> Any:
    """[3,H,W] in [-1,1] -> HxWx3 uint8."""
    return ((image.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def mask_to_uint8(mask: Any) -> Any:
    """A boolean `[H, W]` mask -> HxWx3 uint8 (white foreground)."""
    import numpy as np

    return np.repeat((mask.numpy().astype(np.uint8) * 255)[..., None], 3, axis=2)


def save_gif(frames: list[Any], path: str, scale: int = 4, ms: int = 120) -> str:
    """uint8 frames as a looping GIF (upscaled by `scale`, `ms` per frame), written atomically."""
    import io

    from PIL import Image

    from vadapters.core.io import atomic_write

    images = [Image.fromarray(f.repeat(scale, 0).repeat(scale, 1)) for f in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=ms, loop=0)
    atomic_write(path, lambda fh: fh.write(buffer.getvalue()))
    return path
