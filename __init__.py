"""polycolor: fill polygon outlines with a named colour.

This folder is both the Python package ``polycolor`` and a ComfyUI custom-node pack. Importing it must stay
cheap and side-effect free (no torch, no model loading): ComfyUI imports every pack at start-up, and
``import polycolor`` is what scripts do first. The nodes use ComfyUI's V3 schema: ComfyUI finds
``comfy_entrypoint`` here (resolved lazily, PEP 562, from ``nodes/``); there is deliberately no
``NODE_CLASS_MAPPINGS`` (ComfyUI would take the V1 path instead). ``WEB_DIRECTORY`` serves ``web/polycolor.js``.
"""

from .polycolor_core import __version__

__all__ = ["__version__", "comfy_entrypoint", "Colorizer", "WEB_DIRECTORY"]

WEB_DIRECTORY = "./web"


def __getattr__(name: str):
    if name == "comfy_entrypoint":
        from . import nodes

        return nodes.comfy_entrypoint
    if name == "Colorizer":
        from .export.colorizer import Colorizer

        return Colorizer
    raise AttributeError(f"module 'polycolor' has no attribute {name!r}")
