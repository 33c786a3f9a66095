"""``polycolor.Colorizer``: the one inference front end, for checkpoints and ONNX exports alike.

    from polycolor import Colorizer
    col = Colorizer.from_pretrained("runs/m1")          # a run folder or checkpoint -> PyTorch
    col = Colorizer.from_pretrained("exports/m1")       # an export folder (manifest.json) -> onnxruntime
    images = col(["a.png", pil_image, uint8_array], "cyan")

The Colorizer does what must not differ between backends: turning PIL images / arrays / tensors / paths into
RGB (``imageio.coerce_image``), checking colour names, letterboxing to the model's working square (no
squash; ``composite.letterbox``) and turning its output into what the user gets (``composite.finish``:
``output="composite"``, the default, pastes a solid fill of the model's colour over its mask into the user's
own full-resolution image and leaves every other pixel as it was; ``output="raw"`` is the model's whole picture
scaled back, the study's figures), chunking any batch, and embedding each distinct colour once (``text.CachedTextEncoder``: the export's
precomputed table and/or a text encoder, cached by ``colour_key``). A *backend* only maps float32 images
[B,3,S,S] + embeddings [B,L,D] to float32 images [B,3,S,S]: ``torch_backend.TorchBackend`` (fp32/bf16, the
fast CPU path as a setting) or ``ort_backend.OrtBackend`` (onnxruntime).

What a folder holds is read once, by ``ModelInfo.read`` (``col.info``). An export without a text encoder
(the test encoder, or ``with_text_encoder=False``) accepts only its table's names and raises
``UnknownColourError`` for the rest.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from ..polycolor_core.colour.colours import UnknownColourError, resolve_colour
from ..polycolor_core.model.conditioning import colour_token_source
from ..polycolor_core.model.composite import OUTPUTS, adopt_zoom, check_output, fill_mask, finish, letterbox, zoom_box
from ..polycolor_core.runtime.devices import BACKENDS, check_backend, ort_has_gpu, resolve_device
from ..polycolor_core.data.imageio import coerce_image
from ..polycolor_core.model.modelinfo import ModelInfo
from ..polycolor_core.colour.palettes import palette_warning
from ..polycolor_core.runtime.precision import from_bf16_flag, resolve_precision
from ..polycolor_core.model.text import CachedTextEncoder
from . import autotune
from .autotune import cached_export
from .config import DEFAULT_BATCH_SIZE, COLOUR_TABLE_FILE, EXPORTABLE_TEXT_ENCODERS, UNET_FILE, UNET_FP16_FILE, validate_manifest

log = logging.getLogger("polycolor")

__all__ = ["BACKENDS", "OUTPUTS", "ColorizeResult", "Colorizer", "UnknownColourError", "default_bf16"]


def default_bf16(device: str) -> bool:
    """What ``precision="auto"`` gives the torch backend on ``device`` (``precision.resolve_precision``)."""
    return resolve_precision("auto", device) == "bf16"


class Backend(Protocol):
    name: str

    def run(self, images: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        """float32 [B,3,S,S] 0..1 + float32 [B,L,D] -> float32 [B,3,S,S] 0..1."""


@dataclass
class ColorizeResult:
    images: list[np.ndarray]  # RGB uint8 [H,W,3], each at its input's size
    notes: list[str] = field(default_factory=list)  # conversions and resizes that happened
    masks: list[np.ndarray] = field(default_factory=list)  # bool [H,W]: the fill mask (the composite's, both outputs)
    fill_colours: list = field(default_factory=list)  # (r, g, b) the model filled with, or None (no fill found)
    output: str = "composite"


class Colorizer:
    """``colorizer(images, colours) -> list of RGB uint8 images``, for any backend.

    images: one image or a sequence (PIL, numpy, torch incl. ComfyUI [B,H,W,C] floats, path); colours: one
    name for all, or one per image.
    """

    token = None  # text+rgb models (issue 16): names -> float32 [N,1,D], the RGB token appended to every embedding

    def __init__(self, backend: Backend, embeddings: CachedTextEncoder, image_size: int, batch_size: int = DEFAULT_BATCH_SIZE,
                 meta: dict | None = None, size_policy: str = "resize", info: ModelInfo | None = None,
                 source: str = "", output: str = "composite", zoom: bool = True):
        if size_policy not in ("resize", "refuse"):
            raise ValueError("size_policy must be 'resize' (letterboxed to the model size and back) or 'refuse'")
        self.output = check_output(output)
        self.backend = backend
        self.embeddings = embeddings
        self.image_size = int(image_size)
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 (images per model call), got {batch_size}")
        self.info = info
        self.meta = meta if meta is not None else (info.meta if info is not None else {})
        self.size_policy = size_policy
        self.source = source
        self.zoom = bool(zoom)  # a second pass on a crop around a fill small in the frame (composite.zoom_box)

    # -- inputs -------------------------------------------------------------------------------------------
    @staticmethod
    def _as_list(images) -> list:
        if isinstance(images, (list, tuple)):
            return list(images)
        if isinstance(images, np.ndarray) and images.ndim == 4:
            return list(images)
        if type(images).__module__.startswith("torch") and images.ndim == 4:
            return list(images)
        return [images]

    def _colours(self, colours, n: int) -> list[str]:
        if isinstance(colours, str):
            colours = [colours] * n
        colours = [str(c) for c in colours]
        if len(colours) != n:
            raise ValueError(f"got {len(colours)} colours for {n} images; pass one colour for all or one per image")
        for c in set(colours):
            resolve_colour(c)  # raises UnknownColourError with suggestions
        return colours

    def prepare(self, images, colours) -> tuple[list[np.ndarray], list[str], list[str]]:
        """(RGB uint8 images, colour names, notes on conversions and resizes)."""
        items = self._as_list(images)
        rgb, notes = [], []
        s = self.image_size
        for i, obj in enumerate(items):
            src = str(obj) if isinstance(obj, (str, Path)) else f"image {i}"
            img, note = coerce_image(obj, source=src)
            if note:
                notes.append(note)
            h, w = img.shape[:2]
            if (h, w) != (s, s):
                if self.size_policy == "refuse":
                    raise ValueError(f"image {i} is {w}x{h} but the model works at {s}x{s}; resize it or use "
                                     "size_policy='resize'")
                notes.append(f"{src}: {w}x{h} resized to the model's {s}x{s} (letterboxed, not squashed) and the "
                             f"output back to {w}x{h}")
            rgb.append(img)
        return rgb, self._colours(colours, len(rgb)), notes

    # -- the call -----------------------------------------------------------------------------------------
    def colorize(self, images, colours, progress: Callable[[int, int], None] | None = None,
                 output: str | None = None) -> ColorizeResult:
        """``output``: "composite" | "raw" (default: the Colorizer's ``output``, itself "composite")."""
        mode = check_output(output or self.output)
        rgb, names, notes = self.prepare(images, colours)
        warning = self.palette_warning(names)
        if warning:  # never a silent wrong colour: the caller, the log and the notes all hear of it
            notes.append(warning)
            warnings.warn(warning, UserWarning, stacklevel=2)
        for note in notes:
            log.info(note)
        res = ColorizeResult([], notes, output=mode)
        for start in range(0, len(rgb), self.batch_size):
            chunk = rgb[start : start + self.batch_size]
            asked = names[start : start + len(chunk)]
            hints = [resolve_colour(n) for n in asked]  # the mask looks for the colour asked for
            boxed, y8 = self._run(chunk, asked)
            fills = [fill_mask(im, p, t, sq, hint=h) for im, (sq, t), p, h in zip(chunk, boxed, y8, hints)]
            # A fill small in the frame gets a second pass on a crop around it (composite.zoom_box: why).
            boxes = {i: b for i, b in enumerate(zoom_box(f.mask) for f in fills) if b is not None} if self.zoom else {}
            if boxes:
                crops = [chunk[i][boxes[i]] for i in boxes]
                zboxed, zy8 = self._run(crops, [asked[i] for i in boxes])
                for (i, box), crop, (zsq, zt), zp in zip(boxes.items(), crops, zboxed, zy8):
                    fills[i] = adopt_zoom(fills[i], box, fill_mask(crop, zp, zt, zsq, hint=hints[i]))
            for im, (sq, t), p, fm in zip(chunk, boxed, y8, fills):
                r = finish(im, p, t, sq, mode, fill=fm)
                res.images.append(r.image)
                res.masks.append(r.mask)
                res.fill_colours.append(r.colour)
            if progress is not None:
                progress(min(start + len(chunk), len(rgb)), len(rgb))
        return res

    def _run(self, images: list[np.ndarray], names: list[str]):
        """The model on ``images`` (uint8 [H,W,3] each) letterboxed to its square: ([(square, Letterbox)], uint8
        [b,S,S,3] predictions)."""
        s = self.image_size
        boxed = [letterbox(im, s) for im in images]  # ([S,S,3] uint8, Letterbox) each
        x = np.stack([b[0] for b in boxed]).astype(np.float32) / 255.0  # [b,S,S,3]
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # [b,3,S,S]
        emb = self.embeddings.numpy(names)  # [b,L,D]
        if self.token is not None:  # the one place the RGB token joins the text embedding: [b,L+1,D]
            emb = np.concatenate([emb, self.token(names)], 1)
        y = self.backend.run(x, emb)  # [b,3,S,S]
        return boxed, (np.clip(y, 0, 1) * 255.0 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)  # [b,S,S,3]

    def __call__(self, images, colours, output: str | None = None) -> list[np.ndarray]:
        return self.colorize(images, colours, output=output).images

    def palette_warning(self, names) -> str | None:
        """The warning for colours outside the model's training palette (``palettes.palette_warning``), or None."""
        return palette_warning(self.info, names) if self.info is not None else None

    @property
    def encoder_stats(self) -> dict:
        """{'runs': text-encoder runs, 'encoded': colour names encoded} (each distinct name once)."""
        return {"runs": self.embeddings.calls, "encoded": self.embeddings.encoded}

    def __repr__(self) -> str:
        return (f"Colorizer(backend={self.backend.name!r}, image_size={self.image_size}, batch_size={self.batch_size}, "
                f"output={self.output!r}, source={self.source!r})")

    # -- construction -------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path, backend: str = "auto", device: str = "cpu", precision: str = "auto",
                        batch_size: int = DEFAULT_BATCH_SIZE, *, text_encoder: CachedTextEncoder | None = None,
                        threads: int | None = None, fp16: bool | None = None, size_policy: str = "resize",
                        bf16: bool | None = None, output: str = "composite", zoom: bool = True) -> "Colorizer":
        """Load a run folder, a checkpoint folder or an ONNX export folder (one with manifest.json).

        backend: "auto" (the fastest of torch fp32, torch bf16 where native and onnxruntime on this machine,
            measured once per architecture and machine and cached: ``export/autotune.py``; with
            ``POLYCOLOR_AUTOTUNE=0`` onnx for export folders, torch for checkpoints), "onnx" (a checkpoint is
            exported once into the user cache, parity-checked: ``autotune.cached_export``) or "torch" (an export
            folder is served from the checkpoint its manifest names, if that still exists).
        device: "cpu", "cuda", "cuda:N" or "auto" (``devices.resolve_device``).
        precision: torch only; "auto" = bf16 where the device has native bf16 (``precision.native_bf16``: CPU
            avx512_bf16/amx_bf16, CUDA capability >= 8.0), fp32 elsewhere; or "bf16" / "fp32".
            ``bf16=True/False`` is the deprecated spelling of "bf16" / "fp32".
        text_encoder: a ``CachedTextEncoder`` to share between models with the same encoder (torch only).
        fp16: onnx only; None = use unet_fp16.onnx on a GPU when the export has it, fp32 on the CPU.
        threads: CPU threads (default: physical cores).
        output: "composite" (the fill pasted into the user's own image) or "raw" (the model's whole picture);
            ``colorize(..., output=)`` overrides it per call.
        zoom: a fill spanning less than half of the image's longer side gets a second pass on a crop around it,
            for its colour and edges (``composite.zoom_box``); False: one pass per image (faster on such inputs).
        """
        check_output(output)
        backend = check_backend(backend)
        precision = from_bf16_flag(bf16, precision)
        info = ModelInfo.read(path)
        if backend == "auto":  # measured once per (architecture, machine), then read from the cache
            backend, precision = cls._auto_backend(info, device, precision, batch_size, threads)
        if backend == "torch" and info.kind == "export":
            src = info.source_checkpoint()
            if src is None:
                raise ValueError(
                    f"{info.path} is an ONNX export folder; it holds no PyTorch weights and the checkpoint it was "
                    f"exported from ({info.source}) is gone. Use backend='onnx' or pass the checkpoint folder."
                )
            log.info("backend='torch' on an export folder: using its source checkpoint %s", src.path)
            info = src
        if backend == "onnx" and info.kind == "checkpoint":
            info = ModelInfo.read(cached_export(info.path))
        dev = resolve_device(device, backend)
        if backend == "onnx":
            col = cls._onnx(info, dev, batch_size, fp16, threads, size_policy)
        else:
            col = cls._torch(info, dev, resolve_precision(precision, dev), batch_size, text_encoder, threads,
                             size_policy)
        col.source = str(Path(path))
        col.token = colour_token_source(info)  # None for text-only models
        col.output = output
        col.zoom = bool(zoom)
        return col

    @classmethod
    def _auto_backend(cls, info: ModelInfo, device: str, precision: str, batch_size: int, threads) -> tuple[str, str]:
        """``backend="auto"``: (backend, precision) of the fastest candidate on this machine (``export.autotune``:
        torch fp32, torch bf16 where native, onnxruntime; timed once per architecture and machine, cached).
        With ``POLYCOLOR_AUTOTUNE=0``: onnx for export folders, torch for checkpoints, nothing timed."""
        if not autotune.enabled():
            return ("onnx" if info.kind == "export" else "torch"), precision
        names = autotune.auto_candidates(info, precision, resolve_device(device, "torch"))
        torch_info = info if info.kind == "checkpoint" else info.source_checkpoint()

        def factory(name: str):
            def build():
                if name == "onnx":
                    onnx_info = info if info.kind == "export" else ModelInfo.read(cached_export(info.path))
                    return cls._onnx(onnx_info, resolve_device(device, "onnx"), batch_size, None, threads, "resize").backend
                return cls._torch(torch_info, resolve_device(device, "torch"), name.split("-", 1)[1], batch_size,
                                  None, threads, "resize").backend
            return build

        te = info.text_encoder
        seq = te.seq_len + (1 if colour_token_source(info) is not None else 0)  # text+rgb models: one more token
        choice = autotune.choose_backend(
            {n: factory(n) for n in names}, autotune.machine_key(device, threads),
            autotune.model_key(info.meta.get("unet_config") or {}, info.image_size, (seq, te.dim)),
            autotune.probe_inputs(info.image_size, seq, te.dim), autotune.budget_s())
        if choice.measured:
            log.info("backend auto: %s (measured on this machine once: %s; cached)", choice.backend,
                        ", ".join(f"{k} {v:.1f} img/s" for k, v in choice.rates.items()))
        if choice.backend == "onnx":
            return "onnx", precision
        return "torch", choice.backend.split("-", 1)[1]

    @classmethod
    def _torch(cls, info: ModelInfo, device: str, precision: str, batch_size: int, text_encoder, threads,
               size_policy) -> "Colorizer":
        from ..polycolor_core.model.checkpoint import load_checkpoint
        from ..polycolor_core.model.text import encoder_from_spec
        from .torch_backend import TorchBackend

        if threads:
            import torch

            torch.set_num_threads(int(threads))
        ck = load_checkpoint(info.path, device=device)
        embeddings = text_encoder if text_encoder is not None else CachedTextEncoder(encoder_from_spec(info.text_encoder),
                                                                                           template=info.prompt_template)
        return cls(TorchBackend(ck.model, device, precision), embeddings, info.image_size, batch_size,
                   meta=ck.meta, size_policy=size_policy, info=info)

    @classmethod
    def _onnx(cls, info: ModelInfo, device: str, batch_size: int, fp16, threads, size_policy) -> "Colorizer":
        from .colour_table import load_colour_table
        from .ort_backend import OrtBackend, OrtTextEncoder

        path = info.path
        manifest = validate_manifest(info.meta, str(path / "manifest.json"))
        files = manifest["files"]
        if fp16 is None:  # fp16 weights only where they are fast: on a GPU that onnxruntime can actually use
            fp16 = device.startswith("cuda") and ort_has_gpu() and bool(files.get("unet_fp16"))
        if fp16 and not files.get("unet_fp16"):
            raise ValueError(f"{path} has no fp16 UNet; re-export with fp16=True (polycolor export --fp16)")
        unet = path / ((files.get("unet_fp16") or UNET_FP16_FILE) if fp16 else (files.get("unet") or UNET_FILE))
        backend = OrtBackend(unet, device=device, threads=threads)
        table = load_colour_table(path / (files.get("colour_table") or COLOUR_TABLE_FILE))
        encoder = None
        if files.get("text_encoder"):
            encoder = OrtTextEncoder.from_export_dir(path, device="cpu", threads=threads)  # tiny: CPU is fine
        te = manifest["text_encoder"]
        hint = (f"the {te.get('name')} encoder cannot be exported, so re-export with --colour-table NAME,... to add names"
                if te.get("name") not in EXPORTABLE_TEXT_ENCODERS else
                "re-export with the text encoder (the default) or with --colour-table NAME,... to add names")
        embeddings = CachedTextEncoder(encoder, table=table, hint=hint, template=info.prompt_template)
        return cls(backend, embeddings, manifest["image_size"], batch_size,
                   meta=manifest, size_policy=size_policy, info=info)
