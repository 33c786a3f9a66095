"""polycolor: fill polygon outlines with a named colour.

This folder is both the Python package ``polycolor`` and a ComfyUI custom-node pack. Importing it must stay
cheap and side-effect free (no torch, no model loading): ComfyUI imports every pack at start-up, and
``import polycolor`` is what scripts do first. The node classes are resolved lazily (PEP 562) the first time
ComfyUI asks for ``NODE_CLASS_MAPPINGS``.
"""

from .polycolor_core import __version__

__all__ = ["__version__", "NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "Colorizer"]


def __getattr__(name: str):
    if name in ("NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"):
        from . import nodes

        return getattr(nodes, name)
    if name == "Colorizer":
        from .export.colorizer import Colorizer

        return Colorizer
    raise AttributeError(f"module 'polycolor' has no attribute {name!r}")
