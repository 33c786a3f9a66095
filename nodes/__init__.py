"""ComfyUI nodes for polycolor (category "polycolor").

* ``PolycolorModelLoader`` ("Polycolor Model Loader"): a checkpoint or ONNX export from ``models/polycolor/``
  -> ``POLYCOLOR_MODEL`` (a polycolor ``Colorizer``, cached per process).
* ``PolycolorColorize`` ("Polygon Colorize"): ``POLYCOLOR_MODEL`` + IMAGE + colour text -> IMAGE + MASK.

The nodes only adapt ComfyUI tensors and call the one inference front end (
``export.colorizer``); no model code lives here. Importing this package imports no torch (ComfyUI imports it
anyway, but ``import polycolor`` stays cheap): heavy imports happen inside the node functions. Inside the
pack every import is relative, because ComfyUI imports the folder under a path-derived module name.
The example workflow is ``example_workflows/polycolor.json`` (UI format, a ComfyUI template); the same
graph in API format is ``docs/polycolor_api.json``.
"""

from .colorize import PolycolorColorize
from .loader import PolycolorModelLoader, register_model_folder

register_model_folder()  # no-op outside ComfyUI

NODE_CLASS_MAPPINGS = {
    "PolycolorModelLoader": PolycolorModelLoader,
    "PolycolorColorize": PolycolorColorize,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "PolycolorModelLoader": "Polycolor Model Loader",
    "PolycolorColorize": "Polygon Colorize",
}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "PolycolorModelLoader", "PolycolorColorize"]
