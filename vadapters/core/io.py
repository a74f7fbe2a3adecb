"""Safe, atomic weight and config IO. Never unpickles.

Adapters are stored as `adapter_config.json` + `adapter_model.safetensors`; the method and version are also
written into the safetensors header metadata, and a single-file form keeps the whole config there.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from collections.abc import Callable
from typing import Any

import torch

from vadapters.errors import CheckpointError

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
CONFIG_METADATA_KEY = "vadapters_config"


def atomic_write(path: str | os.PathLike, write: Callable[[Any], Any]) -> None:
    """Call `write(fh)` on a temporary sibling file, then swap it in: a crash leaves the old file or the new one.

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "a", "b.bin")
        >>> atomic_write(path, lambda fh: fh.write(b"ok"))
        >>> open(path, "rb").read()
        b'ok'
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=directory)
    try:
        os.chmod(tmp, new_file_mode(path))  # mkstemp makes 0600; the result gets the user's umask
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (`/proc/self/status`).

    Example:
        >>> 0 <= current_umask() <= 0o777
        True
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it (briefly) and putting it back
    os.umask(mask)
    return mask


def new_file_mode(path: str | os.PathLike) -> int:
    """Permission bits for a file written at `path`: those of the file it replaces, else `0o666` less the umask
    (what `open(path, "w")` would give).

    Example:
        >>> new_file_mode("/no/such/file") == 0o666 & ~current_umask()
        True
    """
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return 0o666 & ~current_umask()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text so that a crash leaves either the old file or the new one, never half of one."""
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes atomically (see `atomic_write`)."""
    atomic_write(path, lambda fh: fh.write(data))


def sniff_format(path: str) -> str:
    """Guess a weight file's format from its first bytes: safetensors, pickle, torch-zip, or unknown."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"
    # safetensors first: its 8-byte header length may itself start with 0x80 (a pickle's first byte).
    plausible = head[:1] != b"\x80" or (len(head) >= 8 and struct.unpack("<Q", head[:8])[0] < os.path.getsize(path))
    if len(head) >= 9 and head[8:9] == b"{" and plausible:
        return "safetensors"
    if head[:1] == b"\x80":
        return "pickle"
    return "unknown"


def save_tensors(tensors: dict[str, torch.Tensor], path: str, metadata: dict[str, str] | None = None) -> None:
    """Atomically write a safetensors file (tensors made contiguous and unshared first)."""
    from safetensors.torch import save

    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    payload = save(clean, metadata={k: str(v) for k, v in (metadata or {}).items()})
    atomic_write_bytes(path, payload)


def load_tensors(path: str, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file; refuses pickles and explains truncated or foreign files."""
    from safetensors import SafetensorError, safe_open

    if not os.path.isfile(path):
        raise CheckpointError(f"weight file not found: {path!r}")
    size = os.path.getsize(path)
    kind = sniff_format(path)
    if kind in ("pickle", "torch-zip"):
        raise CheckpointError(
            f"{path!r} is a pickled PyTorch file ({kind}); vadapters never unpickles adapter weights. "
            "Convert it to safetensors (e.g. safetensors.torch.save_file(torch.load(p, weights_only=True), out))."
        )
    if kind != "safetensors":
        raise CheckpointError(f"{path!r} is not a safetensors file (size {size} bytes, unknown header)")
    with open(path, "rb") as fh:
        (header_len,) = struct.unpack("<Q", fh.read(8))
    if 8 + header_len > size:
        raise CheckpointError(f"{path!r} is truncated: header says {header_len} bytes, file has {size}")
    try:
        tensors = {}
        with safe_open(path, framework="pt", device=str(device)) as fh:
            metadata = dict(fh.metadata() or {})
            for key in fh.keys():  # noqa: SIM118 - safe_open is not a dict
                tensors[key] = fh.get_tensor(key)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path!r} is corrupt or truncated: {exc}") from exc
    return tensors, metadata


def read_metadata(path: str) -> dict[str, str]:
    """Header metadata of a safetensors file without loading tensors."""
    from safetensors import safe_open

    if sniff_format(path) != "safetensors":
        return {}
    try:
        with safe_open(path, framework="pt", device="cpu") as fh:
            return dict(fh.metadata() or {})
    except Exception:  # noqa: BLE001 - a broken header is reported by load_tensors
        return {}


def config_from_metadata(metadata: dict[str, str]) -> dict[str, Any] | None:
    raw = metadata.get(CONFIG_METADATA_KEY)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"the embedded adapter config is not valid JSON: {exc}") from exc


def read_checkpoint(path: str | os.PathLike, what: str = "checkpoint") -> dict[Any, Any]:
    """The state dict in a weights file: safetensors, or a PyTorch file read only through torch's restricted
    unpickler (`torch.load(weights_only=True)`: tensors, numbers, strings, containers; no code). A
    `{"state_dict": {...}}` wrapper is unwrapped. Failures raise `CheckpointError` naming `what`.

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "w.pth")
        >>> torch.save({"state_dict": {"w": torch.ones(2)}}, path)
        >>> read_checkpoint(path)
        {'w': tensor([1., 1.])}
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{what} not found: {path!r}")
    if sniff_format(path) == "safetensors":
        return load_tensors(path)[0]
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises several types for foreign, truncated or unsafe files
        raise CheckpointError(
            f"cannot read {path!r} as a {what} with torch.load(weights_only=True) ({type(err).__name__}: {err})"
        ) from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path!r} holds a {type(state).__name__}, not a state dict")
    return state


def foreign_tensor_names(path: str | os.PathLike) -> list[str]:
    """Tensor names of a safetensors file that vadapters did not write (no adapter config in its header): what the
    official-checkpoint detectors (`MethodSpec.detect`) look at. `[]` for anything else: a missing or unreadable
    file, a pickle (never unpickled here), or a vadapters adapter.

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "official.safetensors")
        >>> save_tensors({"up.weight": torch.zeros(1)}, path)
        >>> foreign_tensor_names(path), foreign_tensor_names(path + ".missing")
        (['up.weight'], [])
    """
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.isfile(path) or sniff_format(path) != "safetensors":
        return []
    try:
        with safe_open(path, framework="pt", device="cpu") as fh:
            if (fh.metadata() or {}).get(CONFIG_METADATA_KEY):
                return []
            return list(fh.keys())  # noqa: SIM118 - safe_open is not a dict
    except Exception:  # noqa: BLE001 - not a detector's to diagnose: loading reports it
        return []
