"""vadapters studio, the Gradio app (installed as `vadapters.apps`; start it with `vadapters studio`).

Importing this package loads neither Gradio nor any model; `build_demo` lives in `vadapters.apps.studio`.

Example:
    >>> from vadapters.apps import build_demo  # doctest: +SKIP
"""


def __getattr__(name: str):
    if name in ("build_demo", "launch"):
        from vadapters.apps import studio

        return getattr(studio, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
