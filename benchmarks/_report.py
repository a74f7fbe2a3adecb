"""Shared tail of the small benchmarks: the machine line and the atomic JSON + markdown write.

Every result under benchmarks/results/ records the command, the seed and the machine; these helpers keep that one
format. Imported by sibling scripts run as `python benchmarks/<name>.py` (the script's folder is on sys.path).
"""

from __future__ import annotations

import json
import os
import platform
import sys


def machine(threads: int) -> str:
    """`x86_64, 2 cores, 1 threads, torch 2.14.1+...`: where a result was measured."""
    import torch

    return f"{platform.machine()}, {os.cpu_count()} cores, {threads} threads, torch {torch.__version__}"


def command() -> str:
    """The command line that produced the result, as a user would re-type it."""
    return " ".join(["python", *sys.argv])


def header(name: str, result: dict) -> str:
    """The markdown title and the `command` on machine, seconds line."""
    return f"# {name}\n\n`{result['command']}` on {result['machine']}, {result['seconds']} s.\n\n"


def write_report(name: str, result: dict, markdown: str, folder: str = "benchmarks/results") -> None:
    """Write `<folder>/<name>.json` and `.md` atomically (a crash leaves the old pair, never half a file)."""
    from vadapters.core.io import atomic_write_text

    os.makedirs(folder, exist_ok=True)
    atomic_write_text(os.path.join(folder, f"{name}.json"), json.dumps(result, indent=2) + "\n")
    atomic_write_text(os.path.join(folder, f"{name}.md"), markdown)
    print(markdown)
