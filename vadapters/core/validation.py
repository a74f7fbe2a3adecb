"""Input checks at the boundary, one per kind of input: numbers and steps, prompts, typed config fields, image sizes
(with a memory estimate), and points / boxes on an image.

Every check raises `BadInputError` whose message names the input, what was expected and what came in; nothing
is coerced (`"no"` is not a bool, `"0.5"` is not a float, `True` is not an int). The CLI, the studio and the
Python API call these same functions, so one bad value reads the same everywhere.

Example:
    >>> check_int(4, "steps", low=1)
    4
    >>> check_int(0, "steps", low=1)
    Traceback (most recent call last):
    ...
    vadapters.errors.BadInputError: steps must be an int >= 1, got 0
    >>> check_float("half", "norm_blend")
    Traceback (most recent call last):
    ...
    vadapters.errors.BadInputError: norm_blend must be a number (an int or a float), got str 'half'
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import os
import re
import sys
import types
import typing
from typing import Any

import numpy as np

from vadapters.errors import BadInputError

MAX_PROMPT_CHARS = 4000
"""Longest accepted prompt (the CLIP text encoders read 77 tokens; longer texts are surely a mistake)."""


def describe(value: Any, limit: int = 60) -> str:
    """`value` as `type repr`, shortened: what an error message says came in.

    Example:
        >>> describe([1, 2]), describe(True)
        ('list [1, 2]', 'bool True')
    """
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(value).__name__} {text}"


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _range_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""


def check_int(value: Any, name: str, low: int | None = None, high: int | None = None) -> int:
    """`value` as an `int` if it is an integer (not a bool, float or string) within `[low, high]`.

    Example:
        >>> check_int(3, "frames", 1, 16)
        3
    """
    ok = _is_int(value) and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        got = value if _is_int(value) else describe(value)
        raise BadInputError(f"{name} must be an int{_range_text(low, high)}, got {got}")
    return int(value)


def check_float(value: Any, name: str, low: float | None = None, high: float | None = None) -> float:
    """`value` as a `float` if it is a finite int or float (not a bool or string) within `[low, high]`.

    Example:
        >>> check_float(2, "guidance scale", 0.0)
        2.0
    """
    if not _is_real(value):
        raise BadInputError(f"{name} must be a number (an int or a float), got {describe(value)}")
    number = float(value)
    if not math.isfinite(number) or (low is not None and number < low) or (high is not None and number > high):
        raise BadInputError(f"{name} must be a finite number{_range_text(low, high)}, got {value!r}")
    return number


def check_prompt(prompt: Any, name: str = "prompt", *, allow_empty: bool = True) -> str:
    """A prompt: a string of at most `MAX_PROMPT_CHARS` characters, valid Unicode, without control characters
    other than newlines and tabs.

    Example:
        >>> check_prompt("a red disc")
        'a red disc'
    """
    if not isinstance(prompt, str):
        raise BadInputError(f"{name} must be a string, got {describe(prompt)}")
    if not allow_empty and not prompt.strip():
        raise BadInputError(f"{name} is empty; write what to draw")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise BadInputError(f"{name} has {len(prompt)} characters; at most {MAX_PROMPT_CHARS} are accepted")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInputError(f"{name} is not valid UTF-8 text (undecodable bytes); retype it") from None
    bad = sorted({f"U+{ord(c):04X}" for c in prompt if ord(c) < 32 and c not in "\n\t\r" or ord(c) == 127})
    if bad:
        raise BadInputError(f"{name} contains control characters {bad}; remove them")
    return prompt


# ----------------------------------------------------------------------------------------------- typed fields
def _expected(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is bool:
        return "true or false (a boolean)"
    if annotation is int:
        return "an int"
    if annotation is float:
        return "a number (an int or a float)"
    if annotation is str:
        return "a string"
    if annotation is type(None):
        return "null / None"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_expected(a) for a in args)
    if origin is typing.Literal:
        return f"one of {list(args)}"
    if annotation is dict or origin is dict:
        return "a dict"
    if origin in (tuple, list) or annotation in (tuple, list):
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(args[0])}"
        if origin is tuple and args:
            return f"a list of {len(args)} items ({', '.join(_expected(a) for a in args)})"
        return f"a list of {_plural(args[0])}" if args else "a list"
    return getattr(annotation, "__name__", str(annotation))


def _plural(annotation: Any) -> str:
    return {bool: "booleans", int: "ints", float: "numbers", str: "strings"}.get(annotation, _expected(annotation))


_MISMATCH = object()


def _match(value: Any, annotation: Any) -> Any:
    """`value` (lists of a tuple field become tuples) if it fits `annotation`, else `_MISMATCH`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any or annotation is object:
        return value
    if annotation is bool:
        return value if isinstance(value, bool) else _MISMATCH
    if annotation is int:
        return int(value) if _is_int(value) else _MISMATCH
    if annotation is float:
        return value if _is_real(value) else _MISMATCH
    if annotation is str:
        return value if isinstance(value, str) else _MISMATCH
    if annotation is type(None):
        return value if value is None else _MISMATCH
    if origin in (typing.Union, types.UnionType):
        for member in args:
            matched = _match(value, member)
            if matched is not _MISMATCH:
                return matched
        return _MISMATCH
    if origin is typing.Literal:
        return value if any(value == a and type(value) is type(a) for a in args) else _MISMATCH
    if annotation is dict or origin is dict:
        if not isinstance(value, dict):
            return _MISMATCH
        if len(args) == 2:
            for k, v in value.items():
                if _match(k, args[0]) is _MISMATCH or _match(v, args[1]) is _MISMATCH:
                    return _MISMATCH
        return value
    if annotation in (tuple, list) or origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return _MISMATCH
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            members = list(args)
            if len(value) != len(members):
                return _MISMATCH
        else:
            members = [args[0] if args else Any] * len(value)
        items = [_match(v, a) for v, a in zip(value, members)]
        if any(item is _MISMATCH for item in items):
            return _MISMATCH
        return list(items) if (annotation is list or origin is list) else tuple(items)
    if isinstance(annotation, type):
        return value if isinstance(value, annotation) else _MISMATCH
    return value  # an annotation this checker does not model: accepted as is


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):  # an annotation that does not resolve is not checked (the others are)
        hints = {}
        for klass in reversed(cls.__mro__):
            namespace = dict(getattr(sys.modules.get(klass.__module__), "__dict__", {}))
            for name, annotation in vars(klass).get("__annotations__", {}).items():
                try:
                    hints[name] = eval(annotation, namespace) if isinstance(annotation, str) else annotation  # noqa: S307
                except Exception:  # noqa: BLE001
                    hints[name] = Any
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}


def check_type(value: Any, annotation: Any, name: str) -> Any:
    """`value` if it has the type `annotation` (`int`, `float`, `bool`, `str`, `X | None`, `tuple[str, ...]`,
    `dict`, `Literal[...]`), else `BadInputError`. Nothing is coerced: an int is a valid float, a list a valid
    tuple (JSON has no tuples, it is returned as one), but `"no"` is not a bool and `"0.5"` not a float.

    Example:
        >>> check_type([1, 2], tuple[int, ...], "sizes")
        (1, 2)
        >>> check_type("no", bool, "use_lora")
        Traceback (most recent call last):
        ...
        vadapters.errors.BadInputError: use_lora must be true or false (a boolean), got str 'no'
    """
    matched = _match(value, annotation)
    if matched is _MISMATCH:
        raise BadInputError(f"{name} must be {_expected(annotation)}, got {describe(value)}")
    return matched


def check_field_types(obj: Any) -> None:
    """Check every field of the dataclass instance `obj` against its declared type (see `check_type`); lists
    given for tuple fields are stored as tuples.

    Example:
        >>> from vadapters.methods.res_adapter import ResAdapterConfig
        >>> ResAdapterConfig(use_lora="no")
        Traceback (most recent call last):
        ...
        vadapters.errors.BadInputError: ResAdapterConfig.use_lora must be true or false (a boolean), got str 'no'
    """
    cls = type(obj)
    for name, annotation in _field_types(cls).items():
        value = getattr(obj, name)
        checked = check_type(value, annotation, f"{cls.__name__}.{name}")
        if checked is not value and isinstance(checked, tuple):
            object.__setattr__(obj, name, checked)


# -------------------------------------------------------------------------------------------- sizes and memory
_SIZE_ITEM = re.compile(r"^\s*(\d+)\s*(?:[xX*]\s*(\d+)\s*)?$")


def parse_sizes(spec: Any, what: str = "sizes") -> list[tuple[int, int]]:
    """A list of sizes: `"16,24x32,32"` -> `[(16, 16), (24, 32), (32, 32)]` (`S` means `SxS`, else `HxW`); also an
    int, or a sequence of ints, `(h, w)` pairs or such strings. Duplicates are dropped, the order is kept.

    Example:
        >>> parse_sizes("16,24x32,32")
        [(16, 16), (24, 32), (32, 32)]
        >>> parse_sizes("16x")
        Traceback (most recent call last):
        ...
        vadapters.errors.BadInputError: sizes: cannot parse '16x' in '16x'; each item must be S or HxW with positive integers, e.g. '16,24x32,32'
    """
    if isinstance(spec, str):
        if not spec.strip():
            raise BadInputError(
                f"{what}: got an empty string; expected e.g. '16,24x32,32' (S or HxW, comma-separated)"
            )
        items: list = spec.split(",")
    elif _is_int(spec):
        items = [spec]
    elif isinstance(spec, (list, tuple)):
        items = list(spec)
    else:
        raise BadInputError(
            f"{what}: expected a text such as '16,24x32', an int or a list of sizes, got {describe(spec)}"
        )
    if not items:
        raise BadInputError(f"{what}: got an empty list; expected at least one size such as 16 or (24, 32)")
    out: list[tuple[int, int]] = []
    for item in items:
        if _is_int(item):
            hw = (int(item), int(item))
        elif isinstance(item, str):
            m = _SIZE_ITEM.match(item)
            if m is None:
                raise BadInputError(
                    f"{what}: cannot parse {item.strip()!r} in {spec!r}; each item must be S or HxW with positive "
                    "integers, e.g. '16,24x32,32'"
                )
            h = int(m.group(1))
            hw = (h, int(m.group(2)) if m.group(2) is not None else h)
        elif isinstance(item, (list, tuple)) and len(item) == 2 and all(_is_int(v) for v in item):
            hw = (int(item[0]), int(item[1]))
        else:
            raise BadInputError(f"{what}: {item!r} is not a size; use an int S, an (H, W) pair, or 'HxW'")
        if hw[0] < 1 or hw[1] < 1:
            raise BadInputError(f"{what}: sizes must be positive, got {hw[0]}x{hw[1]}")
        if hw not in out:
            out.append(hw)
    return out


def check_size(
    height: Any,
    width: Any,
    *,
    multiple: int = 1,
    max_side: int | None = None,
    what: str = "size",
    hint: str = "",
) -> tuple[int, int]:
    """`(height, width)` as ints if both are positive, multiples of `multiple` and at most `max_side`.

    Example:
        >>> check_size(24, 32, multiple=8)
        (24, 32)
        >>> check_size(20, 32, multiple=8)
        Traceback (most recent call last):
        ...
        vadapters.errors.BadInputError: size 20x32 is not a multiple of 8; use e.g. 16, 24, 32
    """
    h = check_int(height, f"{what} height", low=1)
    w = check_int(width, f"{what} width", low=1)
    if h % multiple or w % multiple:
        examples = ", ".join(str(multiple * k) for k in (2, 3, 4))
        raise BadInputError(f"{what} {h}x{w} is not a multiple of {multiple}{hint}; use e.g. {examples}")
    if max_side is not None and max(h, w) > max_side:
        raise BadInputError(f"{what} {h}x{w} is larger than {max_side} px per side{hint}; use a smaller size")
    return h, w


def available_memory(device: Any = None) -> int:
    """Bytes that can still be allocated on `device` (CUDA: free device memory; CPU: the system's available RAM).

    Example:
        >>> available_memory("cpu") > 0
        True
    """
    import torch

    device = torch.device(device or "cpu")
    if device.type == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 2**63 - 1  # unknown: do not refuse on memory grounds


def check_memory(needed: int, *, device: Any = None, what: str, fix: str) -> None:
    """Refuse `what` when its estimated `needed` bytes exceed what `device` has free, before anything is
    allocated; `fix` says how to ask for less.

    Example:
        >>> check_memory(1024, device="cpu", what="a tiny image", fix="-")
    """
    free = available_memory(device)
    if needed > free:
        gib = 2**30
        raise BadInputError(
            f"{what} needs about {needed / gib:,.1f} GiB of memory, but only {free / gib:,.1f} GiB are free on "
            f"{device or 'cpu'}; {fix}"
        )


# ----------------------------------------------------------------------------------------- points and boxes
def check_points(coords: Any, labels: Any, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Point prompts on an `height` x `width` image: `coords` `[N, 2]` as `(x, y)` pixels inside the image,
    `labels` `[N]` of 1 (foreground) or 0 (background); returns float32 coords and int64 labels.

    Example:
        >>> c, l = check_points([[3, 4]], [1], 8, 8)
        >>> c.tolist(), l.tolist()
        ([[3.0, 4.0]], [1])
        >>> check_points([[30, 4]], [1], 8, 8)
        Traceback (most recent call last):
        ...
        vadapters.errors.BadInputError: point (30, 4) lies outside the 8x8 image (x in [0, 8), y in [0, 8))
    """
    points = _numbers(coords, "point coordinates")
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
        raise BadInputError(f"point coordinates must be [N, 2] (x, y) pixels, got shape {tuple(points.shape)}")
    for x, y in points:
        if not (0 <= x < width and 0 <= y < height):
            raise BadInputError(
                f"point ({x:g}, {y:g}) lies outside the {width}x{height} image (x in [0, {width}), y in [0, {height}))"
            )
    if labels is None:
        raise BadInputError("point labels are missing: give one label per point (1 foreground, 0 background)")
    marks = _numbers(labels, "point labels")
    if marks.shape != (len(points),) or not np.isin(marks, (0, 1)).all():
        raise BadInputError(
            f"point labels must be {len(points)} values of 1 (foreground) or 0 (background), got {marks.tolist()}"
        )
    return points.astype(np.float32), marks.astype(np.int64)


def check_box(box: Any, height: int, width: int) -> np.ndarray:
    """A box prompt `[x0, y0, x1, y1]` in pixels with `x0 < x1`, `y0 < y1`, inside the `height` x `width` image.

    Example:
        >>> check_box([1, 2, 5, 6], 8, 8).tolist()
        [1.0, 2.0, 5.0, 6.0]
    """
    values = _numbers(box, "box").reshape(-1)
    if values.shape != (4,):
        raise BadInputError(f"box must be 4 numbers x0, y0, x1, y1 (pixels), got {values.size}")
    x0, y0, x1, y1 = (float(v) for v in values)
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise BadInputError(
            f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) must lie inside the {width}x{height} image with x0 < x1 and y0 < y1"
        )
    return values.astype(np.float32)


def _numbers(values: Any, name: str) -> np.ndarray:
    if isinstance(values, (str, bytes)) or values is None:
        raise BadInputError(f"{name} must be numbers, got {describe(values)}")
    try:
        array = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadInputError(f"{name} must be numbers, got {describe(values)}") from None
    if not np.isfinite(array).all():
        raise BadInputError(f"{name} must be finite numbers, got {array.tolist()}")
    return array
