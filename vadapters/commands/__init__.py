"""CLI plug-ins: every module in this package may extend the `vadapters` command line.

A module defines any of:

- `register(sub)`: add top-level subcommands to `sub` (an argparse subparsers object); each parser sets
  `func=callable(args) -> int`.
- `register_train(tsub)`: add `vadapters train <method>` parsers for methods whose training takes other
  arguments than the diffusion adapters' (which get the shared diffusion options automatically).

Modules are imported lazily inside `build_parser`, so heavy imports belong inside the command functions.

Example:
    >>> from vadapters.commands import command_modules
    >>> isinstance(command_modules(), list)
    True
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def command_modules() -> list[ModuleType]:
    """Every module of `vadapters.commands`, imported, in name order."""
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    return [importlib.import_module(f"{__name__}.{name}") for name in names]
