"""The embedded defaults in `weights/`: a manifest with hashes, and verified lookup.

`weights/manifest.json` records, for every default, each file's sha256 and size, the exact command that produced
it, the seed, the machine, the training time and its measured quality. Loaders call `default_path(name)`, which
verifies the hashes and explains how to regenerate a missing or edited entry.

Example:
    >>> from vadapters.models.weights import read_manifest
    >>> isinstance(read_manifest()["entries"], dict)
    True
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import platform
import time
from typing import Any

from vadapters.core.bases import weights_dir  # the core names embedded bases, so it owns where they live
from vadapters.core.io import atomic_write_text
from vadapters.errors import CheckpointError

MANIFEST_NAME = "manifest.json"
_VERIFIED: dict[tuple[str, int, float], str] = {}


def read_manifest(root: pathlib.Path | None = None) -> dict[str, Any]:
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


def default_path(name: str, verify_hashes: bool = True) -> pathlib.Path:
    """Folder of embedded default `name`, verified against the manifest."""
    return verify(name) if verify_hashes else weights_dir() / name


def record_entry(
    name: str,
    *,
    command: str,
    seed: int,
    train_seconds: float,
    metrics: dict[str, Any],
    extra: dict[str, Any] | None = None,
    root: pathlib.Path | None = None,
) -> dict[str, Any]:
    """Hash every file under `weights/<name>/` and write its manifest entry (atomic)."""
    root = root or weights_dir()
    folder = root / name
    files = {
        str(p.relative_to(folder)): {"sha256": sha256_file(p), "size": p.stat().st_size}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    }
    if not files:
        raise CheckpointError(f"{folder} holds no files to record")
    manifest = read_manifest(root)
    manifest["entries"][name] = {
        "files": files,
        "total_bytes": sum(f["size"] for f in files.values()),
        "command": command,
        "seed": seed,
        "train_seconds": round(float(train_seconds), 1),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}",
        "created": time.strftime("%Y-%m-%d"),
        "metrics": metrics,
        **(extra or {}),
    }
    atomic_write_text(str(root / MANIFEST_NAME), json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest["entries"][name]
