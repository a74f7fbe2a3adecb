"""What the bad-input tables of every surface (API, CLI, studio) share: files on disk and a host's state, captured
before a refused call and compared after it, and the bad files and images the tables feed in."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import zipfile

import numpy as np
import torch


def files(root: str | os.PathLike) -> dict[str, tuple[int, str, int]]:
    """`{relative path: (size, sha256, mode)}` of every file and folder under `root` (hidden temporaries and
    empty folders included; a folder's size and hash are -1 and "")."""
    out = {}
    root = pathlib.Path(root)
    if not root.exists():
        return out
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            out[str(path.relative_to(root))] = (len(data), hashlib.sha256(data).hexdigest(), path.stat().st_mode)
        elif path.is_dir():
            out[str(path.relative_to(root))] = (-1, "", path.stat().st_mode)
    return out


def host_state(module: torch.nn.Module) -> dict[str, object]:
    """A module's tensors, parameter flags and attention processors (what a refused load must not change)."""
    state: dict[str, object] = {k: v.detach().clone() for k, v in module.state_dict().items()}
    state["__requires_grad__"] = [p.requires_grad for p in module.parameters()]
    processors = getattr(module, "attn_processors", None)
    if processors is not None:
        state["__processors__"] = {k: id(v) for k, v in processors.items()}
    record = getattr(module, "_vadapters_state", None)
    state["__vadapters__"] = (
        None
        if record is None
        else (sorted(record.adapters), list(record.active), dict(record.weights), record.disabled, record.fused)
    )
    return state


def same_state(a: dict[str, object], b: dict[str, object]) -> bool:
    if a.keys() != b.keys():
        return False
    for key, value in a.items():
        other = b[key]
        if isinstance(value, torch.Tensor):
            if not (value.dtype == other.dtype and value.shape == other.shape and torch.equal(value, other)):
                return False
        elif value != other:
            return False
    return True


def write_bad_images(folder: pathlib.Path) -> dict[str, str]:
    """Image files a user may pass by mistake; `{case: path}`."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = {}
    good = folder / "good.png"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    paths["good"] = str(good)
    data = good.read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    paths["truncated"] = str(folder / "truncated.png")
    (folder / "notes.png").write_text("these are notes, not pixels\n")
    paths["not_an_image"] = str(folder / "notes.png")
    Image.fromarray(np.zeros((500, 3, 3), np.uint8)).save(folder / "thin.png")
    paths["3x500"] = str(folder / "thin.png")
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(folder / "dot.png")
    paths["1x1"] = str(folder / "dot.png")
    (folder / "empty.png").write_bytes(b"")
    paths["empty_file"] = str(folder / "empty.png")
    paths["missing"] = str(folder / "missing.png")
    return paths


def write_config_with(folder: pathlib.Path, source: pathlib.Path, **changes: object) -> pathlib.Path:
    """A copy of the adapter folder `source` whose `adapter_config.json` has `changes` applied."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in os.listdir(source):
        (folder / name).write_bytes((source / name).read_bytes())
    config = json.loads((source / "adapter_config.json").read_text())
    config.update(changes)
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def zeros_zip(path: pathlib.Path, mebibytes: int) -> pathlib.Path:
    """A zip bomb in small: one member of `mebibytes` MiB of zeros (compresses about 1000:1)."""
    block = bytes(2**20)
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("data/zeros.bin", "w", force_zip64=True) as member,
    ):
        for _ in range(mebibytes):
            member.write(block)
    return path
