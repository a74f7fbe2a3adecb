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
    """An uploaded image (array, or the path of a file Gradio could not decode) as uint8 HxWx3, through the
    library's one loader (`vadapters.core.images.load_image`): grey, palette and RGBA become RGB; empty, tiny,
    huge, truncated and non-image uploads are refused with a readable message."""
    from vadapters.core.images import load_image

    if image is None:
        raise BadInputError(f"{name}: upload an image or pick an example")
    return load_image(image, name=name, max_side=max_side, max_pixels=MAX_IMAGE_PIXELS)


def image_input(**kwargs: Any) -> Any:
    """A `gr.Image` input whose upload is never rejected by Gradio itself: a file Gradio cannot decode (not an
    image, truncated) reaches the event handler as its path, and `check_image` says what is wrong with it instead
    of Gradio's "Could not preprocess input component". (The instance's `preprocess` is wrapped: a subclass of a
    Gradio component would make Gradio write a `.pyi` stub next to this file.)"""
    import gradio as gr

    component = gr.Image(**kwargs)
    decode = component.preprocess

    def preprocess(payload: Any) -> Any:
        try:
            return decode(payload)
        except Exception:  # noqa: BLE001 - the handler's loader reports what is wrong with the file
            path = getattr(payload, "path", None)
            if path is None:
                raise
            return str(path)

    component.preprocess = preprocess
    return component


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
