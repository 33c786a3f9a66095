"""ComfyUI nodes for polycolor (category "polycolor"), in ComfyUI's V3 schema.

* ``PolycolorModelLoader`` ("Polycolor Model Loader"): a checkpoint or ONNX export from ``models/polycolor/``
  -> ``POLYCOLOR_MODEL`` (a polycolor ``Colorizer``, cached per process).
* ``PolycolorColorize`` ("Polygon Colorize"): ``POLYCOLOR_MODEL`` + IMAGE + colour text -> IMAGE + MASK.
* ``PolycolorTrain`` ("Polycolor Train"): trains a model (the everyday m8 by default) into
  ``models/polycolor/<name>/`` -> ``POLYCOLOR_MODEL``.

Each node is one function (``loader.load``, ``colorize.colorize``, ``train.train_node``) plus one interface
declaration (``SPEC``, a ``spec.NodeSpec``); ``v3.py`` turns them into ``comfy_api.latest`` nodes and
``comfy_entrypoint`` registers them (ComfyUI finds it on the pack's root package). The nodes only adapt ComfyUI
values and call the core (``export.colorizer``, ``polycolor_core.training.train``); no model code lives here. Importing
this package imports no torch and no ComfyUI: ``v3.py`` is imported when ComfyUI calls ``comfy_entrypoint``,
and heavy imports happen inside the node functions. Inside the pack every import is relative, because ComfyUI
imports the folder under a path-derived module name. The templates are ``example_workflows/polycolor.json``
and ``example_workflows/polycolor_train.json``; the first in API format is ``docs/polycolor_api.json``.
"""

from . import colorize, loader, train
from .loader import register_model_folder

register_model_folder()  # no-op outside ComfyUI

NODE_SPECS = {spec.node_id: spec for spec in (loader.SPEC, colorize.SPEC, train.SPEC)}
DISPLAY_NAMES = {node_id: spec.display_name for node_id, spec in NODE_SPECS.items()}


async def comfy_entrypoint():
    """ComfyUI's V3 entry point: the extension that lists the three nodes."""
    from .v3 import PolycolorExtension

    return PolycolorExtension()


__all__ = ["NODE_SPECS", "DISPLAY_NAMES", "comfy_entrypoint"]
