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

import json
import os
import pathlib
import platform
import time
from typing import Any

from vadapters.core.bases import weights_dir  # the core names embedded bases, so it owns where they live
from vadapters.core.io import atomic_write_text
from vadapters.core.manifest import MANIFEST_NAME, read_manifest, sha256_file, verify  # the core resolves names
from vadapters.errors import CheckpointError

__all__ = ["MANIFEST_NAME", "default_path", "read_manifest", "record_entry", "sha256_file", "verify"]


def default_path(name: str, verify_hashes: bool = True) -> pathlib.Path:
    """Folder of embedded default `name`, verified against the manifest."""
    return verify(name, weights_dir()) if verify_hashes else weights_dir() / name


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
