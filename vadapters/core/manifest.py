"""The embedded defaults' manifest (`weights/manifest.json`): hashes, verified lookup, and `vadapters:NAME` paths.

`weights/` holds the embedded trained models and adapters; the manifest records each file's sha256 and size, the
command that made it, its seed, machine, time and measured quality (`vadapters.models.weights.record_entry` writes
it). The core reads it because `vadapters.load` resolves embedded names: `vadapters.load(sam,
"vadapters:sam-adapter-shadow")` loads the folder `weights/sam-adapter-shadow` after checking its hashes, as
`load_sam` / `load_pipeline` do for embedded bases (`vadapters:tiny-sam`, `vadapters:tiny-sd`).

Example:
    >>> embedded_path("some/local/folder") is None
    True
    >>> isinstance(read_manifest()["entries"], dict)
    True
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from typing import Any

from vadapters.core.bases import EMBEDDED_PREFIX, weights_dir
from vadapters.errors import CheckpointError

MANIFEST_NAME = "manifest.json"
_VERIFIED: dict[tuple[str, int, float], str] = {}


def read_manifest(root: pathlib.Path | None = None) -> dict[str, Any]:
    """The manifest of `root` (default `weights_dir()`); `{"version": 1, "entries": {}}` when there is none."""
    path = (root or weights_dir()) / MANIFEST_NAME
    if not path.is_file():
        return {"version": 1, "entries": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); restore it with `git checkout {path}`") from exc
    data.setdefault("entries", {})
    return data


def sha256_file(path: pathlib.Path) -> str:
    """The file's sha256 (cached per path, size and modification time)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime)
    if key in _VERIFIED:
        return _VERIFIED[key]
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    _VERIFIED[key] = digest.hexdigest()
    return _VERIFIED[key]


def _regenerate_hint(name: str, entry: dict[str, Any] | None) -> str:
    command = (entry or {}).get("command") or f"vadapters train-base {name}"
    return f"regenerate it with `{command}` or restore the committed files with `git checkout weights/{name}`"


def verify(name: str, root: pathlib.Path | None = None) -> pathlib.Path:
    """Check every file of entry `name` against the manifest; returns the entry's folder."""
    root = root or weights_dir()
    entry = read_manifest(root)["entries"].get(name)
    if entry is None:
        known = sorted(read_manifest(root)["entries"])
        raise CheckpointError(
            f"no embedded default named {name!r} in {root / MANIFEST_NAME} (have: {known or 'none'}); "
            f"train it with `vadapters train-base {name}`"
        )
    folder = root / name
    for rel, info in entry["files"].items():
        path = folder / rel
        if not path.is_file():
            raise CheckpointError(f"embedded default {name!r} is missing {path}; {_regenerate_hint(name, entry)}")
        if path.stat().st_size != info["size"] or sha256_file(path) != info["sha256"]:
            raise CheckpointError(
                f"{path} does not match weights/{MANIFEST_NAME} (size or sha256 differs: edited or truncated); "
                f"{_regenerate_hint(name, entry)}"
            )
    return folder


def embedded_path(name_or_path: Any) -> str | None:
    """The verified local path of `"vadapters:NAME[/INNER]"` (`weights/NAME[/INNER]`), None for anything else.

    Raises:
        CheckpointError: no such entry, or its files do not match the manifest (naming how to regenerate them).
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        return None
    text = os.fspath(name_or_path)
    if not text.startswith(EMBEDDED_PREFIX):
        return None
    name, _, inner = text.removeprefix(EMBEDDED_PREFIX).strip("/").partition("/")
    folder = verify(name)
    return str(folder / inner) if inner else str(folder)
