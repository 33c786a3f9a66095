"""The ONNX export contract, declared once (in the spirit of optimum's ``OnnxConfig``).

Everything the exporter writes and every runtime reads is named here: the opset, the input/output names
and their dynamic axes, the parity tolerances an export must meet, the file names of an export folder and
the schema of its ``manifest.json``. ``onnx_export.py`` writes what this module declares; ``ort_backend.py``
and ``colorizer.py`` read it. Nothing here imports torch or onnx.

An export folder holds
  manifest.json              everything needed to use the files below (see ``MANIFEST_KEYS``)
  unet.onnx                  fp32 UNet: images [B,3,H,W] float32 0..1 + text_embeddings [B,L,D] -> output
  unet_fp16.onnx             (``fp16=True``) the same with fp16 weights; inputs/outputs stay float32
  colour_table.safetensors   precomputed embeddings [N,L,D] for the 8 canonical colours (+ any extra names)
  text_encoder.onnx          (minilm / clip only) input_ids, attention_mask -> last_hidden_state
  tokenizer/                 (minilm / clip only) the Hugging Face tokenizer files, via ``save_pretrained``
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..polycolor_core.model.modelinfo import EXPORT_FORMAT, MANIFEST, ModelFolderError

# ---------------------------------------------------------------------------------------------- files
MANIFEST_VERSION = 1
# The one home of the inference chunk size: images the model sees per call (Colorizer, polycolor infer, the ComfyUI
# node through the Colorizer). A batch of any length is coloured in chunks of this many, so the model's working memory
# is bounded whatever the batch (tests/test_chunking.py; benchmarks/batch_memory.py measures peak RSS).
DEFAULT_BATCH_SIZE = 16
UNET_FILE = "unet.onnx"
UNET_FP16_FILE = "unet_fp16.onnx"
TEXT_ENCODER_FILE = "text_encoder.onnx"
TOKENIZER_DIR = "tokenizer"
COLOUR_TABLE_FILE = "colour_table.safetensors"
COLOUR_TABLE_TENSOR = "embeddings"  # the one tensor in colour_table.safetensors: float32 [N, L, D]
COLOUR_TABLE_NAMES_KEY = "names"  # safetensors metadata: JSON list of the N names, row order

NORMALISATION = "0..1 in, 0..1 out"  # float32 RGB in 0..1; the output is ~0..1 (clamp it)

# Text encoders that have a Hugging Face tokenizer + transformer we can export; the others are table-only.
EXPORTABLE_TEXT_ENCODERS = ("minilm-l6", "clip-vit-b32")


# ------------------------------------------------------------------------------------------- the graph
@dataclass(frozen=True)
class OnnxGraphSpec:
    """Names and dynamic axes of one exported graph (what ``torch.onnx.export`` is called with)."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dynamic_axes: dict = field(default_factory=dict)  # name -> {axis index: symbolic name}
    shapes: dict = field(default_factory=dict)  # name -> symbolic shape (strings are dynamic, ints fixed)
    dtypes: dict = field(default_factory=dict)

    def describe(self, **dims) -> dict:
        """Inputs/outputs for the manifest, with the fixed dims (``L``, ``D``) filled in from ``dims``."""

        def one(name: str) -> dict:
            shape = [dims.get(d, d) if isinstance(d, str) else d for d in self.shapes[name]]
            return {"name": name, "shape": shape, "dtype": self.dtypes[name]}

        return {"inputs": [one(n) for n in self.inputs], "outputs": [one(n) for n in self.outputs]}


@dataclass(frozen=True)
class ExportConfig:
    """The one place the exported interface and its tolerances are defined."""

    # opset 17: native LayerNormalization; supported by every ORT >= 1.14 and by TensorRT 8.6+.
    opset: int = 17
    # The legacy TorchScript exporter handles diffusers' UNet2DConditionModel with dynamic batch/H/W in a
    # few seconds; the dynamo exporter also works but is ~10x slower to export. The dynamo exporter is
    # used automatically if a future torch removes the legacy one.
    exporter: str = "torchscript"
    # H and W must be multiples of this: the UNet halves the resolution twice (3 levels) and upsamples
    # back; other sizes take a different (shape-dependent) code path in diffusers that is not traced.
    size_multiple: int = 4

    unet: OnnxGraphSpec = OnnxGraphSpec(
        inputs=("images", "text_embeddings"),
        outputs=("output",),
        dynamic_axes={
            "images": {0: "batch", 2: "height", 3: "width"},
            "text_embeddings": {0: "batch"},
            "output": {0: "batch", 2: "height", 3: "width"},
        },
        shapes={
            "images": ["batch", 3, "height", "width"],
            "text_embeddings": ["batch", "L", "D"],
            "output": ["batch", 3, "height", "width"],
        },
        dtypes={"images": "float32", "text_embeddings": "float32", "output": "float32"},
    )
    text_encoder: OnnxGraphSpec = OnnxGraphSpec(
        inputs=("input_ids", "attention_mask"),
        outputs=("last_hidden_state",),
        dynamic_axes={"input_ids": {0: "batch"}, "attention_mask": {0: "batch"}, "last_hidden_state": {0: "batch"}},
        shapes={"input_ids": ["batch", "L"], "attention_mask": ["batch", "L"], "last_hidden_state": ["batch", "L", "D"]},
        dtypes={"input_ids": "int64", "attention_mask": "int64", "last_hidden_state": "float32"},
    )

    # Parity: max |onnxruntime - PyTorch fp32| over all output values. The images are 0..1, so 1e-3 is a
    # quarter of one 8-bit level (1/255): no output pixel can move by more than one level. (Measured on the
    # real m1 at 128 px: max ~1e-4, mean ~3e-6; ORT and oneDNN sum convolutions in different orders.)
    # fp16 weights are checked against the fp32 PyTorch model with a looser bound (2e-2 ~ 5 levels); the
    # text encoder's hidden states (|h| ~ 1) with their own bound.
    fp32_atol: float = 1e-3
    fp16_atol: float = 2e-2
    text_atol: float = 1e-3


EXPORT_CONFIG = ExportConfig()


# ------------------------------------------------------------------------------------------ manifest
# key -> (type(s), description). ``validate_manifest`` checks presence and type; ``docs`` can print it.
MANIFEST_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "format": ((str,), f"always {EXPORT_FORMAT!r}"),
    "manifest_version": ((int,), "schema version of this file"),
    "package_version": ((str,), "polycolor version that wrote the export"),
    "created": ((str,), "UTC time of the export, ISO 8601"),
    "variant": ((str,), "variant name, e.g. 'm1' or 'm1-tiny'"),
    "variant_config": ((dict,), "the full Variant (Variant.from_dict rebuilds it)"),
    "unet_config": ((dict,), "UNet2DConditionModel arguments"),
    "source": ((dict,), "the checkpoint exported: path, step, format_version"),
    "image_size": ((int,), "the working resolution the model was trained at (S x S)"),
    "size_multiple": ((int,), "H and W given to unet.onnx must be multiples of this"),
    "normalisation": ((str,), NORMALISATION),
    "opset": ((int,), "ONNX opset"),
    "exporter": ((str,), "'torchscript' or 'dynamo'"),
    "versions": ((dict,), "torch, onnx, onnxruntime, diffusers versions used to export"),
    "fp16": ((bool,), "whether unet_fp16.onnx was written"),
    "files": ((dict,), "role -> file name (null when absent): unet, unet_fp16, text_encoder, tokenizer, colour_table"),
    "tokenizer_files": ((list,), "files inside tokenizer/ (empty when no tokenizer)"),
    "io": ((dict,), "graph -> {inputs, outputs}: name, shape, dtype"),
    "text_encoder": ((dict,), "name, source, dim, seq_len, exported (bool), note"),
    "colour_table": ((dict,), "names (row order) and shape [N, L, D]"),
    "parity": ((dict,), "measured parity: per graph, per check: max_abs, mean_abs, tolerance, passed"),
    "notes": ((list,), "anything a user should know about this export"),
}


class ManifestError(ModelFolderError):
    """An export folder whose manifest.json is missing, unreadable or of an unknown schema."""


def validate_manifest(manifest: dict, where: str = MANIFEST) -> dict:
    if not isinstance(manifest, dict):
        raise ManifestError(f"{where} is not a polycolor ONNX export manifest (a JSON {type(manifest).__name__}, not "
                            "an object); re-export the model (polycolor export ...)")
    if manifest.get("format") != EXPORT_FORMAT:
        raise ManifestError(f"{where} is not a polycolor ONNX export manifest (format={manifest.get('format')!r})")
    version = manifest.get("manifest_version")
    if not isinstance(version, int) or version > MANIFEST_VERSION:
        raise ManifestError(
            f"{where} has manifest_version {version!r}; this polycolor reads up to {MANIFEST_VERSION}. "
            "Upgrade polycolor or re-export the model with this version (polycolor export ...)."
        )
    for key, (types, desc) in MANIFEST_KEYS.items():
        if key not in manifest:
            raise ManifestError(f"{where} lacks the key {key!r} ({desc}); re-export the model")
        if not isinstance(manifest[key], types):
            raise ManifestError(f"{where}: {key!r} should be {'/'.join(t.__name__ for t in types)} ({desc})")
    return manifest


def read_manifest(path: str | Path) -> dict:
    """Read and validate ``path/manifest.json`` (``path`` may also be the manifest itself)."""
    p = Path(path).expanduser()
    mf = p if p.name == MANIFEST and p.is_file() else p / MANIFEST
    if not mf.is_file():
        raise ManifestError(f"{p} is not an ONNX export folder: it has no {MANIFEST} (create one with `polycolor export`)")
    try:
        manifest = json.loads(mf.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{mf} is not valid JSON ({exc}); re-export the model") from exc
    return validate_manifest(manifest, str(mf))
