"""The inference front shared by every backend: inputs in, coloured images out.

``Colorizer`` does the parts that must not differ between PyTorch and ONNX Runtime: turning PIL images /
arrays / tensors / paths into RGB, resolving colour names, resizing to the model's working size and back,
chunking any batch, and embedding each distinct colour once (a cache, or a precomputed table). A *backend*
only maps float32 images [B,3,S,S] and embeddings [B,L,D] to float32 images [B,3,S,S].

``TorchBackend`` lives here; the ONNX backend and ``Colorizer.from_pretrained`` for both live in
``polycolor.export`` (the core does not depend on the exporter).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol, Sequence

import numpy as np
import torch

from .colours import UnknownColourError, known_colour_names, resolve_colour
from .imageio import coerce_image, resize_image

log = logging.getLogger("polycolor")


def cpu_has_native_bf16() -> bool:
    """True when the CPU runs bf16 dot products natively (AVX512-BF16 or AMX): there bf16 autocast is fast."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return bool({"avx512_bf16", "amx_bf16"} & set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return False


class Backend(Protocol):
    name: str

    def run(self, images: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        """float32 [B,3,S,S] 0..1 + float32 [B,L,D] -> float32 [B,3,S,S] 0..1."""


class EmbeddingTable:
    """Precomputed colour embeddings (name -> [L,D]); unknown names are a clear error, no encoder needed."""

    def __init__(self, table: dict[str, np.ndarray]):
        self.table = {k.strip().lower(): np.asarray(v, dtype=np.float32) for k, v in table.items()}
        self.calls = 0

    def __call__(self, prompts: Sequence[str]) -> np.ndarray:
        missing = sorted({p.strip().lower() for p in prompts} - set(self.table))
        if missing:
            raise UnknownColourError(
                f"colour {missing[0]!r} is not in this model's precomputed colour table "
                f"({', '.join(sorted(self.table))}); export the model with its text encoder "
                "(polycolor export --with-text-encoder) to use other colour names"
            )
        return np.stack([self.table[p.strip().lower()] for p in prompts])


class EncoderEmbeddings:
    """Adapts a (cached) torch text encoder to return float32 numpy [N,L,D]."""

    def __init__(self, cached_encoder):
        self.encoder = cached_encoder

    @property
    def calls(self) -> int:
        return self.encoder.calls

    def __call__(self, prompts: Sequence[str]) -> np.ndarray:
        return self.encoder(list(prompts)).numpy().astype(np.float32)


class TorchBackend:
    """Runs a ``PolyColorNet`` in PyTorch; optional bf16 autocast and channels_last on CPU."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu", bf16: bool = False):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.bf16 = bf16
        if bf16:
            self.model = self.model.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def run(self, images: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(images).to(self.device)  # [B,3,S,S]
        e = torch.from_numpy(embeddings).to(self.device)  # [B,L,D]
        if self.bf16:
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                y = self.model(x, e)
        else:
            y = self.model(x, e)
        return y.float().clamp_(0, 1).cpu().numpy()


@dataclass
class ColorizeResult:
    images: list[np.ndarray]  # RGB uint8 [H,W,3], each at its input's size
    notes: list[str] = field(default_factory=list)  # conversions and resizes that happened


class Colorizer:
    """``colorizer(images, colours) -> list of RGB uint8 images``, for any backend.

    images: one image or a sequence (PIL, numpy, torch, path); colours: one name for all, or one per image.
    """

    def __init__(self, backend: Backend, embeddings: Callable[[Sequence[str]], np.ndarray], image_size: int,
                 batch_size: int = 16, meta: dict | None = None, size_policy: str = "resize"):
        if size_policy not in ("resize", "refuse"):
            raise ValueError("size_policy must be 'resize' (to the model size and back) or 'refuse'")
        self.backend = backend
        self.embeddings = embeddings
        self.image_size = int(image_size)
        self.batch_size = int(batch_size)
        self.meta = meta or {}
        self.size_policy = size_policy

    # -- helpers ------------------------------------------------------------------------------------------
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
        items = self._as_list(images)
        rgb, notes = [], []
        for i, obj in enumerate(items):
            img, note = coerce_image(obj, source=f"image {i}" if not isinstance(obj, str) else obj)
            if note:
                notes.append(note)
            if img.shape[:2] != (self.image_size, self.image_size):
                if self.size_policy == "refuse":
                    raise ValueError(f"image {i} is {img.shape[1]}x{img.shape[0]} but the model works at "
                                     f"{self.image_size}x{self.image_size}; resize it or use size_policy='resize'")
            rgb.append(img)
        return rgb, self._colours(colours, len(rgb)), notes

    # -- the call -----------------------------------------------------------------------------------------
    def colorize(self, images, colours, progress: Callable[[int, int], None] | None = None) -> ColorizeResult:
        rgb, names, notes = self.prepare(images, colours)
        for note in notes:
            log.info(note)
        out: list[np.ndarray] = []
        s = self.image_size
        for start in range(0, len(rgb), self.batch_size):
            chunk = rgb[start : start + self.batch_size]
            x = np.stack([resize_image(im, s) for im in chunk]).astype(np.float32) / 255.0  # [b,S,S,3]
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # [b,3,S,S]
            emb = self.embeddings(names[start : start + len(chunk)])  # [b,L,D]
            y = self.backend.run(x, np.ascontiguousarray(emb, dtype=np.float32))  # [b,3,S,S]
            y8 = (np.clip(y, 0, 1) * 255.0 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)  # [b,S,S,3]
            out.extend(resize_image(p, im.shape[:2]) for p, im in zip(y8, chunk))
            if progress is not None:
                progress(min(start + len(chunk), len(rgb)), len(rgb))
        return ColorizeResult(out, notes)

    def __call__(self, images, colours) -> list[np.ndarray]:
        return self.colorize(images, colours).images

    # -- construction -------------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path, device: str = "cpu", bf16: bool | None = None, batch_size: int = 16,
                        text_encoder=None, **kw) -> "Colorizer":
        """A PyTorch Colorizer from a checkpoint/run folder; the text encoder is the one it records."""
        from .checkpoint import load_checkpoint
        from .text import CachedTextEncoder, encoder_from_spec

        ck = load_checkpoint(path, device=device)
        if bf16 is None:  # bf16 autocast + channels_last: 1.4-2.2x fp32 on native-bf16 CPUs, dE2000 ~0.25 (benchmarks/infer_speed.py)
            bf16 = torch.device(device).type == "cpu" and cpu_has_native_bf16()
        enc = text_encoder if text_encoder is not None else CachedTextEncoder(encoder_from_spec(ck.meta["text_encoder"]))
        return cls(TorchBackend(ck.model, device, bf16), EncoderEmbeddings(enc), ck.image_size, batch_size,
                   meta=ck.meta, **kw)
