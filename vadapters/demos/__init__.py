"""Sections of `vadapters demo`: one module per method, each defining

    TITLE = "..."                      # heading in index.html
    ORDER = 50                         # position (smaller first; the synthetic world is 0, ResAdapter 10)
    def section(out: str, quick: bool) -> tuple[list[tuple[str, str]], dict]:
        '''Write files under `out`; return [(caption, path relative to out), ...] and the section's metrics.'''

`--quick` must keep the whole demo under 3 minutes on 2 CPU cores, so a section's quick path should take about
20 seconds. Files may be images (PNG/GIF/WebP), shown inline.

Example:
    >>> from vadapters.demos import section_modules
    >>> [m.__name__.rsplit(".", 1)[-1] for m in section_modules()][:1]
    ['synthetic_world']
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def section_modules() -> list[ModuleType]:
    """Every section module, imported, sorted by `ORDER` then name."""
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    modules = [importlib.import_module(f"{__name__}.{name}") for name in names]
    return sorted(modules, key=lambda m: (getattr(m, "ORDER", 50), m.__name__))
