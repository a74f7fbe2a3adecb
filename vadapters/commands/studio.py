"""CLI: `vadapters studio` starts the Gradio app (Generate, Segment, Adapt, Train) on 127.0.0.1.

Example (shell):
    vadapters studio                          # http://127.0.0.1:7860, paths confined to the current folder
    vadapters studio --port 7861 --root ~/adapters --root ~/data
"""

from __future__ import annotations

import argparse
import os


def cmd_studio(args: argparse.Namespace) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        from vadapters.apps.studio import build_demo, launch
    except ImportError as exc:
        raise SystemExit(f"vadapters studio needs Gradio: pip install 'vadapters[app]' ({exc})") from exc
    roots = args.root or [os.getcwd()]
    for root in roots:
        if not os.path.isdir(root):
            raise SystemExit(f"--root {root!r} is not a folder")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {args.host}; anyone who can reach this address can use the app")
    demo = build_demo(roots, workdir=args.workdir, device=args.device, max_queue=args.max_queue)
    launch(demo, host=args.host, port=args.port)
    return 0


def register(sub) -> None:
    p = sub.add_parser("studio", help="start vadapters studio, the Gradio app (127.0.0.1:7860)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument(
        "--root", action="append", default=None,
        help="folder whose files users may name by path; repeatable (default: the current folder)",
    )  # fmt: skip
    p.add_argument("--workdir", default=None, help="where training runs go (default: <first root>/outputs/studio)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--max-queue", type=int, default=16, help="requests that may wait before new ones are refused")
    p.set_defaults(func=cmd_studio)
