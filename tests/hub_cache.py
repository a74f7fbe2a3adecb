"""A throwaway Hugging Face cache in huggingface_hub's real layout, for testing hub ids offline.

`models--ORG--NAME/blobs/<sha256>` holds each file once, `snapshots/<REV>/<path>` links to it, `refs/main` holds
REV: what `hf download` leaves behind, so huggingface_hub, diffusers and timm resolve ids from it with
`HF_HUB_OFFLINE=1` exactly as they would after a download.
"""

from __future__ import annotations

import hashlib
import os
import pathlib

REVISION = "0123456789abcdef0123456789abcdef01234567"


def put_in_cache(cache: pathlib.Path, repo_id: str, source: pathlib.Path, prefix: str = "") -> pathlib.Path:
    """Copy every file under `source` (a folder, or one file) into repo `repo_id` of `cache`, under `prefix`;
    returns the snapshot folder."""
    root = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = root / "snapshots" / REVISION
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    for path in files:
        data = path.read_bytes()
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            blob.write_bytes(data)
        rel = path.name if source.is_file() else path.relative_to(source).as_posix()
        link = snapshot / prefix / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(REVISION)
    return snapshot


def use_cache(monkeypatch, cache: pathlib.Path) -> dict[str, str]:
    """Point huggingface_hub (environment and its import-time constants) at `cache`, offline; returns the
    environment for a subprocess."""
    import huggingface_hub.constants as constants

    env = {"HF_HUB_CACHE": str(cache), "HF_HOME": str(cache.parent / "hf_home"), "HF_HUB_OFFLINE": "1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return {**os.environ, **env}
