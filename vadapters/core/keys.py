"""State-dict key renaming for checkpoint converters (official layouts <-> ours): pure functions, strict.

Example:
    >>> import re
    >>> rename_keys({"a.w": 1}, re.compile(r"^(\\w+)\\.w$"), r"\\1.processor.w", "a test file", "'<name>.w'")
    {'a.processor.w': 1}
"""

from __future__ import annotations

import re
from typing import Any

from vadapters.errors import CheckpointError


def rename_keys(state: dict[str, Any], pattern: re.Pattern[str], template: str, what: str, expected: str) -> dict:
    """Every key of `state` rewritten as `pattern.match(key).expand(template)`, values untouched; a key the pattern
    does not match raises `CheckpointError` naming `what` (the file kind) and the `expected` key form."""
    out = {}
    for key, value in state.items():
        match = pattern.match(key)
        if match is None:
            raise CheckpointError(f"unexpected key in {what}: {key!r} (expected {expected})")
        out[match.expand(template)] = value
    return out
