"""A small lazy model cache for vadapters studio, keyed by (kind, model, adapters).

Models load on first use (never at import) and stay in this module-level cache, not in `gr.State` (whose values
Gradio deep-copies). An adapter folder's key includes its config's modification time, so retraining into the
same folder reloads it. The least recently used entry of a kind goes when `max_per_kind` is exceeded.

Example:
    >>> cache = ModelCache(max_per_kind=1)
    >>> cache.get("demo", "a", (), lambda: object()) is cache.get("demo", "a", (), lambda: 1 / 0)
    True
    >>> _ = cache.get("demo", "b", (), dict)
    >>> cache.keys()
    [('demo', 'b', ())]
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from vadapters.core.io import CONFIG_NAME


def adapter_stamp(path: str) -> tuple[str, float]:
    """`(path, mtime of its config)`: the cache identity of an adapter folder or file."""
    config = os.path.join(path, CONFIG_NAME) if os.path.isdir(path) else path
    try:
        return path, os.path.getmtime(config)
    except OSError:
        return path, 0.0


class ModelCache:
    """Thread-safe LRU of loaded models; `get(kind, model, adapters, loader)`."""

    def __init__(self, max_per_kind: int = 2) -> None:
        self.max_per_kind = int(max_per_kind)
        self._items: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.RLock()

    def get(self, kind: str, model: str | None, adapters: Sequence[Any], loader: Callable[[], Any]) -> Any:
        key = (kind, model, tuple(adapters))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            value = loader()
            self._items[key] = value
            same_kind = [k for k in self._items if k[0] == kind]
            for old in same_kind[: max(0, len(same_kind) - self.max_per_kind)]:
                del self._items[old]
            return value

    def keys(self) -> list[tuple]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


CACHE = ModelCache()
"""The studio's shared cache (one process, all sessions)."""
