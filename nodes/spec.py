"""What each polycolor node is, as plain data: inputs, outputs, tooltips, and the function that runs it.

One declaration per node (``loader.SPEC``, ``colorize.SPEC``, ``train.SPEC``), read by two consumers:

* ``nodes/v3.py`` turns it into a ComfyUI V3 node (``comfy_api.latest.io.ComfyNode`` + ``io.Schema``),
  registered through ``comfy_entrypoint``; that is what ComfyUI runs.
* the unit tests, which have no ComfyUI: ``NodeSpec.input_types()`` gives the very dict ComfyUI's
  ``/object_info`` shows for the V3 node (V1 form: ``{"required": {name: (type, options)}}``), and
  ``NodeSpec.run(**inputs)`` is what the V3 node's ``execute`` calls.

So there is one implementation of each node (its ``run`` function) and one description of its interface;
``v3.py`` only translates. Nothing here imports ComfyUI, torch or numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

CATEGORY = "polycolor"
WIDGET_TYPES = ("COMBO", "STRING", "INT", "FLOAT", "BOOLEAN")  # shown as widgets; the rest are sockets


@dataclass(frozen=True)
class Input:
    """One node input. ``options`` (COMBO only) is a list or a function giving it (re-read on every request,
    so the model dropdown lists what is on disk now)."""

    name: str
    type: str  # COMBO, STRING, INT, FLOAT, BOOLEAN, IMAGE, MASK, or a custom socket type such as POLYCOLOR_MODEL
    tooltip: str
    default: Any = None
    options: Any = None
    optional: bool = False
    multiline: bool = False
    placeholder: str | None = None
    min: int | float | None = None
    max: int | float | None = None

    def combo_options(self) -> list[str]:
        opts = self.options() if callable(self.options) else self.options
        return list(opts or [])

    def v1(self) -> tuple:
        """``(type, options)`` as ComfyUI's ``/object_info`` lists the V3 node's input (a combo is
        ``("COMBO", {"options": [...], ...})``); ComfyUI adds only keys it fills itself."""
        extra: dict[str, Any] = {"tooltip": self.tooltip}
        if self.type == "COMBO":
            extra["options"] = self.combo_options()
        if self.default is not None:
            extra["default"] = self.default
        if self.type == "STRING":
            extra["multiline"] = self.multiline
            if self.placeholder is not None:
                extra["placeholder"] = self.placeholder
        for key in ("min", "max"):
            if getattr(self, key) is not None:
                extra[key] = getattr(self, key)
        return (self.type, extra)


@dataclass(frozen=True)
class Output:
    type: str
    name: str
    tooltip: str


@dataclass(frozen=True)
class NodeSpec:
    """A node: its id (kept stable: saved workflows name it), its interface and its implementation."""

    node_id: str
    display_name: str
    description: str
    inputs: tuple[Input, ...]
    outputs: tuple[Output, ...]
    run: Callable[..., tuple]  # run(**inputs) -> one value per output
    fingerprint: Callable[..., Any] | None = None  # ComfyUI re-runs the node when this changes (V1 IS_CHANGED)
    output_node: bool = False
    not_idempotent: bool = False
    category: str = CATEGORY

    def input_types(self) -> dict[str, dict[str, tuple]]:
        out: dict[str, dict[str, tuple]] = {"required": {}}
        for inp in self.inputs:
            out.setdefault("optional" if inp.optional else "required", {})[inp.name] = inp.v1()
        return out

    def widget_inputs(self) -> list[str]:
        """Inputs the frontend shows as widgets, in order: a saved UI workflow stores their values in this order."""
        return [i.name for i in self.inputs if i.type in WIDGET_TYPES]

    @property
    def return_types(self) -> tuple[str, ...]:
        return tuple(o.type for o in self.outputs)

    @property
    def return_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outputs)

    @property
    def output_tooltips(self) -> tuple[str, ...]:
        return tuple(o.tooltip for o in self.outputs)
