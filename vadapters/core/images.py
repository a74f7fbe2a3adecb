"""The one image loader of the CLI, the Python API and the studio: a file, a PIL image, an array or a tensor in,
an `HxWx3` uint8 RGB array out, or a `BadInputError` that says what is wrong with it.

Rules: files must exist and decode completely (truncated files are refused, not padded with grey); images must
have at least `min_side` pixels per side (0x0 and 1x1 are refused) and at most `max_side` / `max_pixels`, checked
from the header before decoding; greyscale, palette, RGBA and CMYK become RGB (alpha is dropped); arrays may be
HxW, HxWx1, HxWx3 or HxWx4 (tensors also CxHxW); uint8 is taken as is, bool as 0/255, other integers must lie in
[0, 255] and floats in [0, 1] (a float image in [0, 255] is refused instead of being clipped to white).

Example:
    >>> import numpy as np
    >>> load_image(np.zeros((10, 12), np.float32)).shape
    (10, 12, 3)
    >>> load_image(np.full((10, 10, 3), 255.0))
    Traceback (most recent call last):
    ...
    vadapters.errors.BadInputError: image: float pixels must lie in [0, 1], got values up to 255; divide by 255 or pass uint8
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from vadapters.core.validation import describe
from vadapters.errors import BadInputError

MIN_SIDE = 8
"""Smallest accepted side: below it no encoder sees an object (SAM resizes the longest side to 1024 px)."""
MAX_PIXELS = 64 * 2**20
"""Largest accepted image when no tighter limit is given (64 megapixels)."""


def load_image(
    image: Any,
    *,
    name: str = "image",
    min_side: int = MIN_SIDE,
    max_side: int | None = None,
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """`image` (a path, `PIL.Image`, numpy array or torch tensor) as a contiguous uint8 `HxWx3` RGB array.

    Args:
        image: what to load (see the module docstring for the accepted forms and ranges).
        name: how error messages call it (e.g. `"first frame"`, `"--image"`).
        min_side, max_side, max_pixels: size limits in pixels.
    """
    if image is None:
        raise BadInputError(f"{name}: no image given; pass a file path or an image")
    if isinstance(image, (str, os.PathLike)):
        return _from_file(os.fspath(image), name, min_side, max_side, max_pixels)
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        _check_size(image.height, image.width, name, min_side, max_side, max_pixels)
        return _from_pil(image, name, min_side, max_side, max_pixels)
    return _from_array(image, name, min_side, max_side, max_pixels)


def _check_size(h: int, w: int, name: str, min_side: int, max_side: int | None, max_pixels: int) -> None:
    if h == 0 or w == 0:
        raise BadInputError(f"{name} is empty ({w}x{h} pixels)")
    if min(h, w) < min_side:
        raise BadInputError(f"{name}: at least {min_side}x{min_side} pixels needed, got {w}x{h} (width x height)")
    if (max_side is not None and max(h, w) > max_side) or h * w > max_pixels:
        limit = f"{max_side} px per side and " if max_side is not None else ""
        raise BadInputError(f"{name}: at most {limit}{max_pixels:,} pixels, got {w}x{h}; resize it first")


def _from_file(path: str, name: str, min_side: int, max_side: int | None, max_pixels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not os.path.exists(path):
        raise BadInputError(f"{name}: file not found: {path!r}")
    if not os.path.isfile(path):
        raise BadInputError(f"{name}: {path!r} is a folder, not an image file")
    try:
        with Image.open(path) as im:
            _check_size(im.height, im.width, name, min_side, max_side, max_pixels)
            try:
                im.load()
            except (OSError, SyntaxError, ValueError) as exc:
                raise BadInputError(f"{name}: {path!r} is truncated or corrupt ({exc}); re-export the image") from None
            return _from_pil(im, name, min_side, max_side, max_pixels)
    except UnidentifiedImageError:
        raise BadInputError(
            f"{name}: {path!r} is not an image Pillow can read (PNG, JPEG, WebP, BMP, TIFF, ...)"
        ) from None
    except Image.DecompressionBombError as exc:
        raise BadInputError(f"{name}: {path!r} is too large to decode safely ({exc})") from None
    except OSError as exc:
        raise BadInputError(f"{name}: cannot read {path!r} ({exc})") from None


def _from_pil(im: Any, name: str, min_side: int, max_side: int | None, max_pixels: int) -> np.ndarray:
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # more than 8 bits: range-checked as an array
        return _from_array(np.asarray(im), name, min_side, max_side, max_pixels)
    if im.mode != "RGB":
        im = im.convert("RGBA").convert("RGB") if im.mode in ("P", "PA") else im.convert("RGB")
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))


def _from_array(image: Any, name: str, min_side: int, max_side: int | None, max_pixels: int) -> np.ndarray:
    if hasattr(image, "detach") and hasattr(image, "cpu"):  # a torch tensor; CxHxW is torch's layout
        image = image.detach().cpu().numpy()
        if image.ndim == 3 and image.shape[0] in (1, 3, 4) and image.shape[2] not in (1, 3, 4):
            image = image.transpose(1, 2, 0)
    if not isinstance(image, np.ndarray):
        if not isinstance(image, (list, tuple)):
            raise BadInputError(
                f"{name}: expected a file path, a PIL image, an array or a tensor, got {describe(image)}"
            )
        try:
            image = np.asarray(image)
        except ValueError:
            raise BadInputError(f"{name}: a ragged nested list is not an image") from None
    if image.dtype.kind not in "biuf":
        raise BadInputError(f"{name}: pixels must be numbers, got dtype {image.dtype}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise BadInputError(f"{name}: expected HxW, HxWx1, HxWx3 or HxWx4 pixels, got shape {tuple(image.shape)}")
    _check_size(image.shape[0], image.shape[1], name, min_side, max_side, max_pixels)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    elif image.dtype.kind == "f":
        if not np.isfinite(image).all():
            raise BadInputError(f"{name}: pixels must be finite, got NaN or infinity")
        low, high = float(image.min()), float(image.max())
        if low < 0 or high > 1:
            raise BadInputError(
                f"{name}: float pixels must lie in [0, 1], got values "
                + (f"up to {high:g}; divide by 255 or pass uint8" if high > 1 else f"down to {low:g}")
            )
        image = (image.astype(np.float64) * 255.0).round().astype(np.uint8)
    elif image.dtype != np.uint8:
        low, high = int(image.min()), int(image.max())
        if low < 0 or high > 255:
            raise BadInputError(
                f"{name}: integer pixels must lie in [0, 255] (8 bits), got [{low}, {high}]; convert to 8 bits first"
            )
        image = image.astype(np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[..., :3]
    return np.ascontiguousarray(image)
