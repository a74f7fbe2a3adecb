"""vadapters: vision and diffusion adapters for diffusers, timm and segment-anything."""

from vadapters._version import __version__

__all__ = ["__version__"]
