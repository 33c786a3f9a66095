"""The polycolor nodes as ComfyUI V3 nodes (``comfy_api.latest``), registered through ``comfy_entrypoint``.

Imported only inside ComfyUI (``comfy_api`` exists nowhere else). Each class translates its node's
``spec.NodeSpec`` into an ``io.Schema`` and calls the spec's ``run``: the node logic lives in ``loader.py``,
``colorize.py`` and ``train.py``, never here. Node ids and input names are the V1 nodes' own, so workflows saved
before V3 (``example_workflows/polycolor.json``, ``docs/polycolor_api.json``) load unchanged.
"""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from . import colorize, loader, train
from .spec import Input, NodeSpec

_SOCKETS = {"IMAGE": io.Image, "MASK": io.Mask}


def _input(i: Input):
    common = dict(optional=i.optional, tooltip=i.tooltip)
    if i.type == "COMBO":
        return io.Combo.Input(i.name, options=i.combo_options(), default=i.default, **common)
    if i.type == "STRING":
        return io.String.Input(i.name, default=i.default, multiline=i.multiline, placeholder=i.placeholder, **common)
    if i.type == "INT":
        return io.Int.Input(i.name, default=i.default, min=i.min, max=i.max, **common)
    if i.type == "FLOAT":
        return io.Float.Input(i.name, default=i.default, min=i.min, max=i.max, **common)
    if i.type == "BOOLEAN":
        return io.Boolean.Input(i.name, default=i.default, **common)
    return (_SOCKETS[i.type] if i.type in _SOCKETS else io.Custom(i.type)).Input(i.name, **common)


def schema(spec: NodeSpec) -> io.Schema:
    outputs = [(_SOCKETS[o.type] if o.type in _SOCKETS else io.Custom(o.type)).Output(display_name=o.name,
                                                                                       tooltip=o.tooltip)
               for o in spec.outputs]
    return io.Schema(node_id=spec.node_id, display_name=spec.display_name, category=spec.category,
                     description=spec.description, inputs=[_input(i) for i in spec.inputs], outputs=outputs,
                     is_output_node=spec.output_node, not_idempotent=spec.not_idempotent)


class PolycolorModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(loader.SPEC)  # re-read on every /object_info: the dropdown lists what is on disk now

    @classmethod
    def execute(cls, **inputs) -> io.NodeOutput:
        return io.NodeOutput(*loader.SPEC.run(**inputs))

    @classmethod
    def fingerprint_inputs(cls, **inputs):
        return loader.SPEC.fingerprint(**inputs)


class PolycolorColorize(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(colorize.SPEC)

    @classmethod
    def execute(cls, **inputs) -> io.NodeOutput:
        return io.NodeOutput(*colorize.SPEC.run(**inputs))


class PolycolorTrain(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(train.SPEC)

    @classmethod
    def execute(cls, **inputs) -> io.NodeOutput:
        return io.NodeOutput(*train.SPEC.run(**inputs))

    @classmethod
    def fingerprint_inputs(cls, **inputs):
        return train.SPEC.fingerprint(**inputs)


NODES = [PolycolorModelLoader, PolycolorColorize, PolycolorTrain]


class PolycolorExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)
