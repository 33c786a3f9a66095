"""ONNX export and fast batch inference.

- ``export_model(checkpoint, out_dir, ...)``      (onnx_export.py) checkpoint -> parity-checked ONNX export folder
- ``Colorizer.from_pretrained(path, backend=...)`` (colorizer.py)   torch or onnxruntime inference from scripts
- ``OrtBackend`` / ``OrtTextEncoder``              (ort_backend.py) onnxruntime sessions, providers TRT > CUDA > CPU
- ``colorize_dataset(model, data, out_dir, ...)``  (infer.py)       folder / CSV / data.json batch job
- ``EXPORT_CONFIG``, manifest schema               (config.py)      the export contract, declared once

Submodules are imported lazily so ``import polycolor.export`` stays cheap (no torch, no onnxruntime).
"""

from __future__ import annotations

_LAZY = {
    "Colorizer": ".colorizer",
    "export_model": ".onnx_export",
    "ExportParityError": ".onnx_export",
    "OrtBackend": ".ort_backend",
    "OrtTextEncoder": ".ort_backend",
    "colorize_dataset": ".infer",
    "EXPORT_CONFIG": ".config",
    "ExportConfig": ".config",
    "read_manifest": ".config",
    "ManifestError": ".config",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
