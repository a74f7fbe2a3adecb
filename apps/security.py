"""Input checks of vadapters studio: typed paths confined to allowed roots, image and number limits.

Every check raises `vadapters.BadInputError` with a message that says what was expected, what came in and how to
fix it; `ui_errors` turns those (and the library's other errors) into `gr.Error` pop-ups in the browser.

Example:
    >>> import tempfile, os
    >>> root = tempfile.mkdtemp()
    >>> roots = AllowedRoots([root])
    >>> os.makedirs(os.path.join(root, "runs", "a"))
    >>> roots.resolve("runs/a") == os.path.realpath(os.path.join(root, "runs", "a"))
    True
    >>> roots.resolve("../etc/passwd")
    Traceback (most recent call last):
    ...
    vadapters.errors.BadInputError: path '../etc/passwd' is outside the allowed folders ...
    >>> check_number(5, "steps", 1, 50, integer=True)
    5
"""

from __future__ import annotations

import functools
import inspect
import math
import os
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from vadapters.errors import BadInputError, VAdaptersError

MAX_IMAGE_SIDE = 2048
"""Largest accepted side of an uploaded image, in pixels."""
MAX_IMAGE_PIXELS = 2048 * 2048
MAX_PATH_CHARS = 1024


class AllowedRoots:
    """The folders whose contents a user may name by path (models, adapters, data, run folders).

    Relative paths are read against the first root; symlinks and `..` are resolved before the check, so a path
    can only name something that really lies under one of the roots.
    """

    def __init__(self, roots: Iterable[str | os.PathLike]) -> None:
        resolved = []
        for root in roots:
            path = os.path.realpath(os.fspath(root))
            if path not in resolved:
                resolved.append(path)
        if not resolved:
            raise BadInputError("studio needs at least one allowed root folder (--root DIR)")
        self.roots: tuple[str, ...] = tuple(resolved)

    def __repr__(self) -> str:
        return f"AllowedRoots({list(self.roots)})"

    def contains(self, path: str) -> bool:
        real = os.path.realpath(path)
        return any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in self.roots)

    def resolve(self, text: str, *, what: str = "path", must_exist: bool = True, kind: str | None = None) -> str:
        """The real path of `text` if it lies under an allowed root (`kind`: "dir" or "file" to require one)."""
        text = (text or "").strip()
        if not text:
            raise BadInputError(f"{what}: expected a path, got an empty text")
        if len(text) > MAX_PATH_CHARS or "\x00" in text:
            raise BadInputError(f"{what}: not a valid path (too long or contains NUL)")
        path = os.path.expanduser(text)
        if not os.path.isabs(path):
            path = os.path.join(self.roots[0], path)
        real = os.path.realpath(path)
        if not self.contains(real):
            raise BadInputError(
                f"{what} {text!r} is outside the allowed folders {list(self.roots)}; move it there or start "
                "`vadapters studio --root DIR` with its folder"
            )
        if must_exist and not os.path.exists(real):
            raise BadInputError(f"{what} {text!r} does not exist (looked for {real})")
        if must_exist and kind == "dir" and not os.path.isdir(real):
            raise BadInputError(f"{what} {text!r} must be a folder, got a file")
        if must_exist and kind == "file" and not os.path.isfile(real):
            raise BadInputError(f"{what} {text!r} must be a file, got a folder")
        return real

    def display(self, path: str) -> str:
        """`path` relative to the root that holds it (for dropdowns), else unchanged."""
        real = os.path.realpath(path)
        for root in self.roots:
            if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
                rel = os.path.relpath(real, root)
                return rel if root == self.roots[0] else os.path.join(root, rel)
        return path


def check_number(value: Any, name: str, low: float, high: float, *, integer: bool = False) -> Any:
    """`value` as int/float if it is finite and within `[low, high]`, else a `BadInputError`."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInputError(f"{name} must be a number in [{low}, {high}], got {value!r}") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise BadInputError(f"{name} must be in [{low}, {high}], got {value!r}")
    if integer:
        if number != int(number):
            raise BadInputError(f"{name} must be a whole number, got {value!r}")
        return int(number)
    return number


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    choices = list(choices)
    if value not in choices:
        raise BadInputError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_image(image: Any, name: str = "image", max_side: int = MAX_IMAGE_SIDE) -> np.ndarray:
    """An uploaded image as uint8 HxWx3 (grey and RGBA converted); rejects other types, empty and huge images."""
    if image is None:
        raise BadInputError(f"{name}: upload an image or pick an example")
    array = np.asarray(image)
    if array.dtype == object or array.ndim not in (2, 3):
        raise BadInputError(f"{name}: expected an HxW or HxWxC picture, got shape {array.shape}")
    if array.ndim == 3 and array.shape[2] not in (1, 3, 4):
        raise BadInputError(f"{name}: expected 1, 3 or 4 channels, got {array.shape[2]}")
    h, w = array.shape[:2]
    if h < 8 or w < 8:
        raise BadInputError(f"{name}: at least 8x8 pixels needed, got {w}x{h}")
    if max(h, w) > max_side or h * w > MAX_IMAGE_PIXELS:
        raise BadInputError(f"{name}: at most {max_side} px per side, got {w}x{h}; resize it first")
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and np.nanmax(array) <= 1.0:
            array = np.nan_to_num(array) * 255.0
        array = np.clip(np.nan_to_num(array), 0, 255).round().astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    elif array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    elif array.shape[2] == 4:
        array = array[..., :3]
    return np.ascontiguousarray(array)


def _as_gradio_error(exc: BaseException) -> Exception:
    import gradio as gr

    return gr.Error(str(exc), title=type(exc).__name__)


def ui_errors(fn: Callable) -> Callable:
    """Decorate an event handler (function or generator): the library's errors become readable `gr.Error`s."""
    handled = (VAdaptersError, ValueError, FileNotFoundError, NotADirectoryError)

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any):
            try:
                yield from fn(*args, **kwargs)
            except handled as exc:
                raise _as_gradio_error(exc) from exc

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any):
        try:
            return fn(*args, **kwargs)
        except handled as exc:
            raise _as_gradio_error(exc) from exc

    return wrapper
