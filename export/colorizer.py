"""``polycolor.Colorizer``: the core's Colorizer plus ``from_pretrained`` for checkpoints and ONNX exports.

    from polycolor import Colorizer
    col = Colorizer.from_pretrained("runs/m1")          # a run folder or checkpoint -> PyTorch
    col = Colorizer.from_pretrained("exports/m1")       # an export folder (manifest.json) -> onnxruntime
    images = col(["a.png", pil_image, uint8_array], "cyan")

Both backends share the core front (input coercion, resizing to the model size and back, batching, one
embedding per distinct colour), so they return the same images up to float rounding.

Colour embeddings for ONNX exports: names in the export's precomputed colour table are looked up; any other
name is encoded once by the exported text encoder and cached. An export without a text encoder (the test
encoder, or ``with_text_encoder=False``) accepts only the table's names and raises ``UnknownColourError``
for the rest.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ..polycolor_core.colours import UnknownColourError
from ..polycolor_core.inference import Colorizer as _CoreColorizer
from ..polycolor_core.inference import EmbeddingTable, EncoderEmbeddings, TorchBackend, cpu_has_native_bf16
from .config import COLOUR_TABLE_FILE, EXPORTABLE_TEXT_ENCODERS, UNET_FILE, UNET_FP16_FILE, is_export_dir, read_manifest

log = logging.getLogger("polycolor")

__all__ = ["Colorizer", "OnnxEmbeddings", "UnknownColourError", "cpu_has_native_bf16", "default_bf16"]

BACKENDS = ("auto", "onnx", "torch")
CPU_MICRO_BATCH = 4  # CpuTorchBackend slices larger batches: 14-34% faster at batch 8-32 (benchmarks/infer_speed.py)


def default_bf16(device: str) -> bool:
    """The ``bf16=None`` choice of ``from_pretrained``: bf16 autocast + channels_last on CPUs with native bf16.

    Together with ``CpuTorchBackend`` (short-key attention, bf16 weights, micro-batches) it is 1.7-3x faster
    than fp32 eager and 1.2-1.6x faster than onnxruntime fp32 on this project's reference CPU (AVX512-BF16,
    2 cores: m1 at 128 px 9.3 / 11.0 / 10.6 img/s at batch 1 / 8 / 32), with outputs within mean CIEDE2000
    0.21-0.26 of fp32 (benchmarks/infer_speed.py measures both). Without native bf16 the emulated bf16 is
    slower than fp32, so fp32 is kept; on GPUs too (the model is small).
    """
    return str(device).startswith("cpu") and cpu_has_native_bf16()


# ------------------------------------------------------------------------------------------- CPU fast path
class ShortKeyAttnProcessor:
    """Cross-attention to a short prompt (the 8-token colour name) computed the way CPUs like it.

    Numerically the same attention as diffusers' ``AttnProcessor2_0`` (fp32: within 1e-6), but the scores are
    laid out [B*heads, keys, pixels] so the softmax runs over 8 rows of contiguous pixels instead of millions
    of 8-element rows; under bf16 autocast the softmax stays in bf16. PyTorch's CPU flash-attention kernel
    spends ~20% of the bf16 UNet's time on these tiny attentions; this takes it to ~5%. Anything else (long
    keys: the mid block's self-attention, masks, q/k norms) goes to ``AttnProcessor2_0`` unchanged.
    """

    max_keys = 64

    def __init__(self):
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.fallback = AttnProcessor2_0()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        import torch

        if (encoder_hidden_states is None or encoder_hidden_states.ndim != 3 or attention_mask is not None
                or encoder_hidden_states.shape[1] > self.max_keys or args or kwargs
                or getattr(attn, "spatial_norm", None) is not None or getattr(attn, "norm_q", None) is not None
                or getattr(attn, "norm_k", None) is not None):
            return self.fallback(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        residual = hidden_states
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            b4, c4, h4, w4 = hidden_states.shape
            hidden_states = hidden_states.view(b4, c4, h4 * w4).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        b, n, _ = query.shape
        heads, lk = attn.heads, key.shape[1]
        d = key.shape[-1] // heads
        q = query.view(b, n, heads, d).transpose(1, 2).reshape(b * heads, n, d)
        k = key.view(b, lk, heads, d).transpose(1, 2).reshape(b * heads, lk, d)
        v = value.view(b, lk, heads, d).transpose(1, 2).reshape(b * heads, lk, d)
        scores = torch.baddbmm(torch.empty(b * heads, lk, n, dtype=q.dtype, device=q.device), k, q.transpose(1, 2),
                               beta=0, alpha=d ** -0.5)  # [B*h, keys, pixels]
        with torch.autocast(q.device.type, enabled=False):
            probs = torch.softmax(scores, dim=1)
        out = torch.bmm(probs.transpose(1, 2), v.to(probs.dtype))  # [B*h, pixels, d]
        out = out.view(b, heads, n, d).transpose(1, 2).reshape(b, n, heads * d).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(b4, c4, h4, w4)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def use_short_key_attention(model) -> None:
    """Switch every attention of a PolyColorNet to ``ShortKeyAttnProcessor`` (the CPU fast path)."""
    model.unet.set_attn_processor(ShortKeyAttnProcessor())


class CpuTorchBackend(TorchBackend):
    """The core ``TorchBackend`` tuned for CPUs (same results: see ``ShortKeyAttnProcessor``).

    - short-key cross-attention (fp32 and bf16);
    - bf16: bf16 autocast + channels_last (the core's path), with the Conv2d/Linear weights stored in bf16 so
      autocast does not re-cast them on every call (autocast would cast them to bf16 anyway: same numbers);
      the norms keep fp32 weights;
    - ``micro_batch``: larger batches are run in slices of this many images (keeps activations in cache).
    """

    def __init__(self, model, device="cpu", bf16: bool = False, micro_batch: int | None = None):
        import torch

        super().__init__(model, device, bf16)
        use_short_key_attention(self.model)
        if bf16:
            for mod in self.model.modules():
                if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
                    mod.to(torch.bfloat16)
        self.micro_batch = micro_batch

    def run(self, images: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        mb = self.micro_batch
        if not mb or len(images) <= mb:
            return super().run(images, embeddings)
        return np.concatenate([super(CpuTorchBackend, self).run(images[i : i + mb], embeddings[i : i + mb])
                               for i in range(0, len(images), mb)])


class _CountingEncoder:
    """Wraps a torch text encoder so ``CachedTextEncoder`` hits can be verified: counts prompts encoded."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.spec = encoder.spec
        self.encoded = 0

    def encode(self, prompts):
        self.encoded += len(prompts)
        return self.encoder.encode(prompts)


class OnnxEmbeddings:
    """Colour name -> [L,D]: the precomputed table first, else the ONNX text encoder (once per name)."""

    def __init__(self, table: dict[str, np.ndarray], encoder=None, hint: str = ""):
        self.table = EmbeddingTable(table)
        self.encoder = encoder
        self.hint = hint or "re-export the model with its text encoder or with --colour-table NAME,... to add names"
        self.cache: dict[str, np.ndarray] = {}

    @property
    def calls(self) -> int:
        """Encoder runs (0 while every colour asked for is in the table)."""
        return self.encoder.calls if self.encoder is not None else 0

    @property
    def encoded(self) -> int:
        """Colour names the encoder has encoded: each distinct name outside the table exactly once."""
        return self.encoder.encoded if self.encoder is not None else 0

    def __call__(self, prompts: Sequence[str]) -> np.ndarray:
        keys = [p.strip().lower() for p in prompts]
        if self.encoder is None:
            missing = sorted(set(keys) - set(self.table.table))
            if missing:
                raise UnknownColourError(
                    f"colour {missing[0]!r} is not in this export's precomputed colour table "
                    f"({', '.join(self.table.table)}) and the export has no text encoder: {self.hint}"
                )
            return self.table(keys)
        missing = sorted({k for k in keys if k not in self.table.table and k not in self.cache})
        if missing:
            self.cache.update(zip(missing, self.encoder.encode(missing)))
        return np.stack([self.table.table[k] if k in self.table.table else self.cache[k] for k in keys])


def _ort_has_gpu() -> bool:
    import onnxruntime as ort

    return bool({"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(ort.get_available_providers()))


def _resolve_device(device: str, backend: str) -> str:
    device = str(device).lower()
    if device != "auto":
        return device
    if backend == "torch":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if _ort_has_gpu() else "cpu"


class Colorizer(_CoreColorizer):
    """The core ``Colorizer`` (see polycolor_core.inference) + ``from_pretrained`` and resize notes."""

    source: str = ""

    def prepare(self, images, colours):
        rgb, names, notes = super().prepare(images, colours)
        s = self.image_size
        items = self._as_list(images)
        for i, (img, obj) in enumerate(zip(rgb, items)):
            h, w = img.shape[:2]
            if (h, w) != (s, s):
                src = str(obj) if isinstance(obj, (str, Path)) else f"image {i}"
                notes.append(f"{src}: {w}x{h} resized to the model's {s}x{s} and the output back to {w}x{h}")
        return rgb, names, notes

    @property
    def encoder_stats(self) -> dict:
        """{'runs': text-encoder runs, 'encoded': colour names encoded} (each distinct name once)."""
        emb = self.embeddings
        if isinstance(emb, OnnxEmbeddings):
            return {"runs": emb.calls, "encoded": emb.encoded}
        if isinstance(emb, EncoderEmbeddings):
            inner = emb.encoder.encoder
            return {"runs": emb.calls, "encoded": getattr(inner, "encoded", len(emb.encoder.cache))}
        return {"runs": getattr(emb, "calls", 0), "encoded": getattr(emb, "encoded", 0)}

    def __repr__(self) -> str:
        return (f"Colorizer(backend={self.backend.name!r}, image_size={self.image_size}, batch_size={self.batch_size}, "
                f"source={self.source!r})")

    # -- construction ---------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path, backend: str = "auto", device: str = "cpu", batch_size: int = 16,
                        bf16: bool | None = None, *, fp16: bool | None = None, threads: int | None = None,
                        size_policy: str = "resize") -> "Colorizer":
        """Load a run folder, a checkpoint folder or an ONNX export folder (one with manifest.json).

        backend: "auto" (onnx for export folders, torch for checkpoints), "onnx" (a checkpoint is exported to
            a temporary folder first, parity-checked) or "torch" (an export folder is served from the checkpoint
            its manifest names, if that still exists).
        device: "cpu", "cuda" or "auto".
        bf16: torch only; None = bf16 autocast + channels_last where the CPU has native bf16 (the fast CPU
            path, see ``default_bf16``), fp32 elsewhere.
        fp16: onnx only; None = use unet_fp16.onnx on a GPU when the export has it, fp32 on the CPU.
        threads: CPU threads (default: physical cores).
        """
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)} (got {backend!r})")
        p = Path(path).expanduser()
        export = is_export_dir(p)
        if export and p.is_file():
            p = p.parent
        if backend == "auto":
            backend = "onnx" if export else "torch"
        if backend == "torch" and export:
            src = Path(read_manifest(p)["source"].get("path") or "")
            if not (src / "config.json").is_file():
                raise ValueError(
                    f"{p} is an ONNX export folder; it holds no PyTorch weights and the checkpoint it was exported "
                    f"from ({src}) is gone. Use backend='onnx' or pass the checkpoint folder."
                )
            log.info("backend='torch' on an export folder: using its source checkpoint %s", src)
            return cls.from_pretrained(src, "torch", device, batch_size, bf16, threads=threads, size_policy=size_policy)
        if backend == "onnx" and not export:
            p = _export_to_temp(p)
        device = _resolve_device(device, backend)
        col = (cls._onnx(p, device, batch_size, fp16, threads, size_policy) if backend == "onnx"
               else cls._torch(p, device, batch_size, bf16, threads, size_policy))
        col.source = str(Path(path))
        return col

    @classmethod
    def _torch(cls, path: Path, device: str, batch_size: int, bf16, threads, size_policy) -> "Colorizer":
        from ..polycolor_core.checkpoint import load_checkpoint
        from ..polycolor_core.text import CachedTextEncoder, encoder_from_spec

        if threads:
            import torch

            torch.set_num_threads(int(threads))
        if bf16 is None:
            bf16 = default_bf16(device)
        ck = load_checkpoint(path, device=device)
        encoder = CachedTextEncoder(_CountingEncoder(encoder_from_spec(ck.meta["text_encoder"])))
        if str(device).startswith("cpu"):
            backend = CpuTorchBackend(ck.model, device, bool(bf16), micro_batch=CPU_MICRO_BATCH)
        else:
            backend = TorchBackend(ck.model, device, bool(bf16))
        return cls(backend, EncoderEmbeddings(encoder), ck.image_size, batch_size, meta=ck.meta,
                   size_policy=size_policy)

    @classmethod
    def _onnx(cls, path: Path, device: str, batch_size: int, fp16, threads, size_policy) -> "Colorizer":
        from .onnx_export import load_colour_table
        from .ort_backend import OrtBackend, OrtTextEncoder

        manifest = read_manifest(path)
        files = manifest["files"]
        if fp16 is None:  # fp16 weights only where they are fast: on a GPU that onnxruntime can actually use
            fp16 = device.startswith("cuda") and _ort_has_gpu() and bool(files.get("unet_fp16"))
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
        col = cls(backend, OnnxEmbeddings(table, encoder, hint), manifest["image_size"], batch_size, meta=manifest,
                  size_policy=size_policy)
        return col


_TEMP_EXPORTS: dict[str, Path] = {}


def _export_to_temp(checkpoint: Path) -> Path:
    """backend='onnx' on a checkpoint: export it (once per process) to a temporary folder, removed at exit."""
    from ..polycolor_core.checkpoint import resolve_checkpoint_dir
    from .onnx_export import export_model

    key = str(resolve_checkpoint_dir(checkpoint).resolve())
    if key not in _TEMP_EXPORTS:
        tmp = Path(tempfile.mkdtemp(prefix="polycolor-onnx-"))
        atexit.register(shutil.rmtree, tmp, True)
        log.info("backend='onnx' on a checkpoint: exporting %s to %s (use `polycolor export` to keep it)", key, tmp)
        _TEMP_EXPORTS[key] = export_model(key, tmp / "export")
    return _TEMP_EXPORTS[key]
