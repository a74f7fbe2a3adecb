"""What every tab of vadapters studio shares: allowed roots, the work folder, the device, the model cache, and
the discovery of adapter folders a user may pick.

Example:
    >>> import tempfile
    >>> ctx = StudioContext(roots=[tempfile.mkdtemp()])
    >>> ctx.find_adapters(), ctx.optional_path("", "pipeline") is None
    ([], True)
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

from vadapters.core.io import CONFIG_NAME
from vadapters.errors import BadInputError

from .cache import CACHE, ModelCache
from .security import AllowedRoots

_SKIP_DIRS = {".git", ".venv", "node_modules", "__pycache__", "checkpoints", ".tmp", "build", "dist"}
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class StudioContext:
    """Shared settings of one studio app.

    Args:
        roots: folders a user may name by path; the first is where relative paths start. Default: the current
            folder. The work folder is always allowed.
        workdir: where Train writes runs (`<workdir>/runs/<name>`) and uploads go; default `<first root>/outputs/
            studio`.
        device: torch device for models (default: CUDA when available, else CPU).
        cache: the model cache (default: the module-level one).
    """

    def __init__(
        self,
        roots: Iterable[str | os.PathLike] | None = None,
        workdir: str | os.PathLike | None = None,
        device: str | None = None,
        cache: ModelCache | None = None,
    ) -> None:
        roots = [os.fspath(r) for r in (roots or [os.getcwd()])]
        self.workdir = os.path.realpath(os.fspath(workdir) if workdir else os.path.join(roots[0], "outputs", "studio"))
        self.roots = AllowedRoots([*roots, self.workdir])
        self.device = device
        self.cache = cache or CACHE

    @property
    def torch_device(self) -> str:
        if self.device:
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    @property
    def runs_dir(self) -> str:
        return os.path.join(self.workdir, "runs")

    def optional_path(self, text: str | None, what: str, kind: str | None = None) -> str | None:
        """None for an empty text (= the embedded default), else the confined real path, or a Hugging Face Hub id
        `ORG/NAME[/FOLDER]` that names no local path (resolved by huggingface_hub into its own cache, never a path
        of this machine; offline, from that cache only).

        Example:
            >>> StudioContext([os.getcwd()]).optional_path("vadapters-test/tiny-sd", "pipeline", kind="dir")
            'vadapters-test/tiny-sd'
        """
        if text is None or not str(text).strip() or str(text).strip().lower() == "default":
            return None
        text = str(text).strip()
        try:
            return self.roots.resolve(text, what=what, kind=kind)
        except BadInputError:
            from vadapters.core.hub import split_hub_id

            if split_hub_id(text) is not None and not os.path.lexists(os.path.join(self.roots.roots[0], text)):
                return text
            raise

    def run_dir(self, name: str) -> str:
        name = (name or "").strip()
        if not _RUN_NAME.match(name):
            raise BadInputError(
                f"run name must be 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit; got {name!r}"
            )
        return os.path.join(self.runs_dir, name)

    # ---------------------------------------------------------------------------------------------- discovery
    def find_adapters(self, methods: Sequence[str] | None = None, max_depth: int = 5, limit: int = 200) -> list[str]:
        """Adapter folders (with `adapter_config.json`) under the allowed roots, as display paths."""
        return [shown for shown, _ in self.adapter_folders(methods, max_depth, limit)]

    def adapter_folders(
        self, methods: Sequence[str] | None = None, max_depth: int = 5, limit: int = 200
    ) -> list[tuple[str, str]]:
        """`(display path, real path)` of each adapter folder of `methods` under the allowed roots."""
        found: list[tuple[str, str]] = []
        for root in self.roots.roots:
            if not os.path.isdir(root):
                continue
            base_depth = root.rstrip(os.sep).count(os.sep)
            for dirpath, dirnames, filenames in os.walk(root):
                depth = dirpath.rstrip(os.sep).count(os.sep) - base_depth
                dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
                if depth >= max_depth:
                    dirnames[:] = []
                if CONFIG_NAME in filenames and self._method_of(dirpath) in (methods or (self._method_of(dirpath),)):
                    shown = self.roots.display(dirpath)
                    if shown not in [s for s, _ in found]:
                        found.append((shown, dirpath))
                if len(found) >= limit:
                    return found
        return found

    @staticmethod
    def _method_of(folder: str) -> Any:
        try:
            with open(os.path.join(folder, CONFIG_NAME), encoding="utf-8") as fh:
                return json.load(fh).get("method")
        except (OSError, ValueError, AttributeError):
            return None


def parse_adapter_lines(text: str, max_adapters: int = 8) -> list[tuple[str, float]]:
    """Lines `FOLDER` or `FOLDER:WEIGHT` (weight in [-4, 4], default 1) -> `[(folder, weight)]`.

    Example:
        >>> parse_adapter_lines("runs/res:0.5\\n\\nruns/sara")
        [('runs/res', 0.5), ('runs/sara', 1.0)]
    """
    from .security import check_number

    out = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        head, sep, tail = line.rpartition(":")
        weight = 1.0
        if sep and head:
            try:
                weight = float(tail)
                line = head.strip()
            except ValueError:
                pass
        out.append((line, check_number(weight, f"weight of {line}", -4.0, 4.0)))
    if len(out) > max_adapters:
        raise BadInputError(f"at most {max_adapters} adapters can be stacked, got {len(out)}")
    return out
