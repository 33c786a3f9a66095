"""Export a checkpoint to ONNX and prove the export computes what PyTorch computes.

``export_model(checkpoint, out_dir)`` rebuilds the model from the checkpoint's config (always through the
core factory), exports the UNet with dynamic batch/height/width, optionally an fp16 copy and the text
encoder + tokenizer, precomputes a colour table, and writes ``manifest.json``. Every export is checked: the
ONNX checker, then onnxruntime against PyTorch on fresh random inputs, on a real rendered polygon and on a
second (non-square) shape that exercises the dynamic axes. A mismatch above the tolerances of
``config.EXPORT_CONFIG`` raises ``ExportParityError`` with the numbers, and nothing is left at ``out_dir``.

The folder is written beside ``out_dir`` and swapped in, so a failed or killed export never leaves a
half-written folder where a runtime would look for one.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from .config import (
    COLOUR_TABLE_FILE,
    EXPORT_CONFIG,
    EXPORT_FORMAT,
    EXPORTABLE_TEXT_ENCODERS,
    MANIFEST,
    MANIFEST_VERSION,
    NORMALISATION,
    TEXT_ENCODER_FILE,
    TOKENIZER_DIR,
    UNET_FILE,
    UNET_FP16_FILE,
    ExportConfig,
    OnnxGraphSpec,
)

log = logging.getLogger("polycolor")

from .colour_table import colour_table_names, load_colour_table, save_colour_table  # noqa: F401 (re-exported)

__all__ = ["export_model", "ExportParityError", "colour_table_names", "save_colour_table", "load_colour_table"]


class ExportParityError(RuntimeError):
    """onnxruntime and PyTorch disagree by more than the tolerance; ``parity`` holds every measurement."""

    def __init__(self, message: str, parity: dict):
        super().__init__(message)
        self.parity = parity


# ------------------------------------------------------------------------------------------ the exporter
def _versions() -> dict:
    import onnx
    import onnxruntime
    import torch

    out = {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
    try:
        import diffusers

        out["diffusers"] = diffusers.__version__
    except ImportError:  # pragma: no cover - the factory needs diffusers anyway
        pass
    return out


@contextlib.contextmanager
def _quiet_export():
    """The tracer warns about every Python-level shape test in diffusers; they are expected here."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo",
                                               "torch.fx.experimental.symbolic_shapes")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def _torch_export(module, args: tuple, path: Path, spec: OnnxGraphSpec, cfg: ExportConfig, dynamo_shapes: dict) -> str:
    """torch.onnx.export with ``spec``'s names and dynamic axes; returns the exporter used."""
    import torch

    common = dict(input_names=list(spec.inputs), output_names=list(spec.outputs), opset_version=cfg.opset)
    if cfg.exporter == "torchscript":
        try:
            with _quiet_export():
                torch.onnx.export(module, args, str(path), dynamo=False, dynamic_axes=spec.dynamic_axes,
                                  do_constant_folding=True, **common)
            return "torchscript"
        except (TypeError, NotImplementedError, ImportError) as exc:  # a torch without the legacy exporter
            log.info("legacy TorchScript ONNX exporter unavailable (%s); using the dynamo exporter", exc)
    with _quiet_export():
        torch.onnx.export(module, args, str(path), dynamo=True, dynamic_shapes=dynamo_shapes, external_data=False,
                          verbose=False, **common)
    return "dynamo"


def _hidden_state_module(model):
    """input_ids, attention_mask -> last_hidden_state of a Hugging Face encoder (the conditioning sequence)."""
    import torch

    class HiddenState(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.model = inner

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    return HiddenState(model).eval()


def _tokenize(tokenizer, prompts: Sequence[str], seq_len: int, tensors: str = "np") -> dict:
    tok = tokenizer(list(prompts), padding="max_length", max_length=seq_len, truncation=True, return_tensors=tensors)
    return {"input_ids": tok["input_ids"], "attention_mask": tok["attention_mask"]}


def _session(path: Path):
    from .ort_backend import make_session

    return make_session(path, device="cpu")


def _compare(ort_out: np.ndarray, ref: np.ndarray, tol: float, what: str) -> dict:
    diff = np.abs(ort_out.astype(np.float64) - ref.astype(np.float64))
    finite = bool(np.isfinite(ort_out).all())
    max_abs = float(diff.max()) if finite else float("inf")
    return {
        "inputs": what,
        "shape": list(ref.shape),
        "max_abs": max_abs,
        "mean_abs": float(diff.mean()) if finite else float("inf"),
        "tolerance": tol,
        "passed": bool(finite and max_abs <= tol),
    }


def _real_images(size: int, n: int = 2) -> tuple[np.ndarray, list[str]]:
    """n rendered polygon outlines (the original data's format) as float32 [n,3,S,S] 0..1, and their colours."""
    try:
        from ..polycolor_core.data.synthetic import SyntheticDataset

        samples = [SyntheticDataset(("canonical",), n=8, seed=7, size=size)[i] for i in (0, 3)][:n]
        imgs, colours = [s.input for s in samples], [s.colour for s in samples]
    except ImportError:  # pragma: no cover - a core without the generator: draw one outline with PIL
        from PIL import Image, ImageDraw

        im = Image.new("RGB", (size, size), "white")
        c, r = size / 2, size * 0.35
        pts = [(c + r * np.cos(a), c + r * np.sin(a)) for a in np.linspace(0, 2 * np.pi, 7)[:-1]]
        ImageDraw.Draw(im).polygon(pts, outline=(0, 0, 0), width=max(1, size // 64))
        imgs, colours = [np.asarray(im)] * n, ["red", "blue"][:n]
    x = np.stack(imgs).astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    return np.ascontiguousarray(x), colours


def _unet_checks(model, path: Path, tol: float, table: dict[str, np.ndarray], size: int, multiple: int,
                 seed: int = 0) -> dict:
    """onnxruntime vs PyTorch on random inputs, a real polygon, and another (non-square) shape and batch."""
    import torch

    rng = np.random.default_rng(seed)
    L, D = next(iter(table.values())).shape
    x_real, colours = _real_images(size)
    h2 = max(multiple, (size // 2) // multiple * multiple)
    cases = {
        "random": (rng.random((2, 3, size, size), dtype=np.float32), rng.standard_normal((2, L, D), dtype=np.float32)),
        "real": (x_real, np.stack([table[c] for c in colours])),
        "dynamic": (rng.random((3, 3, h2, size), dtype=np.float32), rng.standard_normal((3, L, D), dtype=np.float32)),
    }
    descr = {
        "random": f"random images and embeddings, batch 2, {size}x{size}",
        "real": f"rendered polygons ({', '.join(colours)}) with their table embeddings, batch 2, {size}x{size}",
        "dynamic": f"random, batch 3, {h2}x{size} (dynamic batch/height/width)",
    }
    sess = _session(path)
    out = {}
    for name, (x, e) in cases.items():
        with torch.inference_mode():
            ref = model(torch.from_numpy(x), torch.from_numpy(e)).numpy()
        got = sess.run(None, {"images": x, "text_embeddings": e})[0]
        out[name] = _compare(got, ref, tol, descr[name])
    return out


def _text_checks(encoder, tokenizer, path: Path, tol: float, seq_len: int) -> dict:
    prompts = ["red", "light blue", "teal", "#12ab34"]
    ref = encoder.encode(prompts).numpy()
    tok = _tokenize(tokenizer, prompts, seq_len)
    got = _session(path).run(None, {k: np.asarray(v, dtype=np.int64) for k, v in tok.items()})[0]
    return {"prompts": _compare(got, ref, tol, f"prompts {prompts}")}


def _convert_fp16(src: Path, dst: Path) -> None:
    """fp16 weights and activations, float32 inputs/outputs (Cast nodes at the graph boundary)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model16 = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    wrapped = OnnxModel(model16)
    wrapped.topological_sort()  # the converter appends the boundary casts at the end of the node list
    onnx.save(wrapped.model, str(dst))


def _check_model(path: Path) -> None:
    import onnx

    onnx.checker.check_model(str(path), full_check=True)


def _fmt_failures(parity: dict) -> str:
    lines = []
    for graph, checks in parity.items():
        for name, r in checks.items():
            if isinstance(r, dict) and r.get("passed") is False:
                lines.append(f"{graph}/{name}: max |onnx - torch| = {r['max_abs']:.3g} > tolerance {r['tolerance']:.3g} "
                             f"(mean {r['mean_abs']:.3g}; {r['inputs']})")
    return "; ".join(lines)


def export_model(
    checkpoint_path: str | Path,
    out_dir: str | Path,
    *,
    fp16: bool = False,
    with_text_encoder: bool = True,
    colour_table: Sequence[str] | None = None,
    check: bool = True,
    config: ExportConfig = EXPORT_CONFIG,
    overwrite: bool = True,
) -> Path:
    """Export the checkpoint (run folder or checkpoint folder) at ``checkpoint_path`` into ``out_dir``.

    fp16: also write ``unet_fp16.onnx`` (fp16 weights for GPUs, float32 IO), parity-checked on CPU ORT.
    with_text_encoder: also export the text encoder + tokenizer so any colour name works at inference; a
        no-op (noted in the manifest) for the test encoder, which has no tokenizer.
    colour_table: extra colour names to precompute beside the 8 canonical ones.
    check: compare onnxruntime with PyTorch and raise ``ExportParityError`` above the tolerances (the ONNX
        checker runs regardless).
    Returns ``out_dir``.
    """
    import torch

    from ..polycolor_core.model.checkpoint import atomic_dir_write, load_checkpoint, package_version
    from ..polycolor_core.model.conditioning import TOKEN_FILE, colour_token_numpy, token_weights
    from ..polycolor_core.model.modelinfo import ModelInfo, shared_fields
    from ..polycolor_core.model.text import encoder_from_spec
    from ..polycolor_core.model.textspec import check_template, prompt_text

    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists; pass overwrite=True (CLI: --overwrite) or choose another folder")
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file():
        raise FileExistsError(f"{out_dir} exists and is not an ONNX export folder; refusing to replace it")
    names = colour_table_names(colour_table)

    ck = load_checkpoint(checkpoint_path, device="cpu")
    model = ck.model.float().eval()
    size, spec = ck.image_size, ck.text_encoder
    multiple = max(config.size_multiple, int(getattr(model, "size_multiple", config.size_multiple)))
    if size % multiple:
        raise ValueError(f"the checkpoint's image size {size} is not a multiple of {multiple}; cannot export it")
    encoder = encoder_from_spec(ck.meta["text_encoder"])  # the encoder the model was trained with
    notes: list[str] = []

    def write(tmp: Path) -> None:
        # -- colour table -------------------------------------------------------------------------------
        with torch.inference_mode():
            # the names as training put them to the encoder (its prompt template), keyed by the bare names
            template = check_template((ck.meta.get("train_config") or {}).get("prompt_template") or "{}")
            table_emb = encoder.encode([prompt_text(n, template) for n in names]).float().cpu().numpy()  # [N,L,D]
        save_colour_table(tmp / COLOUR_TABLE_FILE, names, table_emb)
        table = dict(zip(names, table_emb))
        L, D = int(table_emb.shape[1]), int(table_emb.shape[2])
        token = {k: v.numpy() for k, v in token_weights(model).items()}  # text+rgb models' RGB token (issue 16)
        if token:  # the UNet takes [B,L+1,D]; the Colorizer appends the token from colour_token.safetensors
            from safetensors.numpy import save_file

            save_file(token, str(tmp / TOKEN_FILE))
            table = dict(zip(names, np.concatenate([table_emb, colour_token_numpy(token, names)], 1)))

        # -- UNet -------------------------------------------------------------------------------------------
        log.info("exporting the %s UNet (opset %d) ...", model.variant.name, config.opset)
        g = torch.Generator().manual_seed(0)
        dummy = (torch.rand(2, 3, size, size, generator=g), torch.randn(2, L + bool(token), D, generator=g))
        b, h, w = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("h", min=1, max=4096), torch.export.Dim("w", min=1, max=4096)
        unet_shapes = {"images": {0: b, 2: multiple * h, 3: multiple * w}, "text_emb": {0: b}}
        exporter = _torch_export(model, dummy, tmp / UNET_FILE, config.unet, config, unet_shapes)
        _check_model(tmp / UNET_FILE)
        if fp16:
            _convert_fp16(tmp / UNET_FILE, tmp / UNET_FP16_FILE)
            _check_model(tmp / UNET_FP16_FILE)

        # -- text encoder -----------------------------------------------------------------------------
        te_exported, te_note, tok_files = False, "", []
        if spec.name not in EXPORTABLE_TEXT_ENCODERS:
            te_note = (f"text encoder {spec.name!r} has no tokenizer and is not exported: only the colour table's "
                       f"{len(names)} names can be used (with_text_encoder was a no-op)")
            notes.append(te_note)
        elif not with_text_encoder:
            te_note = (f"text encoder {spec.name!r} not exported (with_text_encoder=False): only the colour table's "
                       f"{len(names)} names can be used")
            notes.append(te_note)
        else:
            log.info("exporting the %s text encoder ...", spec.name)
            wrapper = _hidden_state_module(encoder.model)
            tok = _tokenize(encoder.tokenizer, ["red", "light blue"], spec.seq_len, tensors="pt")
            tb = torch.export.Dim("batch", min=1, max=4096)
            _torch_export(wrapper, (tok["input_ids"], tok["attention_mask"]), tmp / TEXT_ENCODER_FILE,
                          config.text_encoder, config, {"input_ids": {0: tb}, "attention_mask": {0: tb}})
            _check_model(tmp / TEXT_ENCODER_FILE)
            encoder.tokenizer.save_pretrained(str(tmp / TOKENIZER_DIR))
            tok_files = sorted(p.name for p in (tmp / TOKENIZER_DIR).iterdir())
            te_exported, te_note = True, "any colour name can be encoded with text_encoder.onnx + tokenizer/"

        # -- parity ------------------------------------------------------------------------------------
        parity: dict = {}
        if check:
            log.info("checking onnxruntime against PyTorch ...")
            parity["unet"] = _unet_checks(model, tmp / UNET_FILE, config.fp32_atol, table, size, multiple)
            if fp16:
                try:
                    parity["unet_fp16"] = _unet_checks(model, tmp / UNET_FP16_FILE, config.fp16_atol, table, size, multiple)
                    notes.append("unet_fp16.onnx parity was measured with onnxruntime on the CPU")
                except Exception as exc:  # noqa: BLE001 - an ORT build without fp16 CPU kernels
                    parity["unet_fp16"] = {"skipped": f"onnxruntime could not run the fp16 model on the CPU: {exc}"}
                    notes.append("unet_fp16.onnx parity NOT measured: onnxruntime could not run it on the CPU; "
                                 "check it on the GPU before relying on it")
            if te_exported:
                parity["text_encoder"] = _text_checks(encoder, encoder.tokenizer, tmp / TEXT_ENCODER_FILE,
                                                      config.text_atol, spec.seq_len)
            failures = _fmt_failures(parity)
            if failures:
                raise ExportParityError(f"ONNX export of {ck.path} does not match PyTorch: {failures}", parity)
        else:
            notes.append("exported with check=False: parity against PyTorch was not measured")

        # -- manifest ------------------------------------------------------------------------------------
        io = {"unet": config.unet.describe(L=L, D=D)}
        if te_exported:
            io["text_encoder"] = config.text_encoder.describe(L=L, D=D)
        info = ModelInfo.read(ck.path)  # the shared keys: the same schema as the checkpoint's config.json
        shared = shared_fields(model.variant, spec, size, step=info.step, total_steps=info.total_steps,
                               finished=info.finished, precision=info.precision, palette=info.palette,
                               train_config=info.train_config, loss_weights=info.loss_weights,
                               lpips_dropped=info.lpips_dropped, lpips_note=info.lpips_note,
                               lpips_source=info.lpips_source, package_version=package_version())
        manifest = {
            **shared,
            "format": EXPORT_FORMAT,
            "manifest_version": MANIFEST_VERSION,
            "package_version": package_version(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "variant": model.variant.name,
            "variant_config": model.variant.to_dict(),
            "unet_config": json.loads(json.dumps(ck.meta.get("unet_config") or {})),
            "source": {"path": str(Path(ck.path).resolve()), "step": ck.meta.get("step"),
                       "format_version": ck.meta.get("format_version"),
                       "package_version": ck.meta.get("package_version")},
            "image_size": int(size),
            "size_multiple": int(multiple),
            "normalisation": NORMALISATION,
            "opset": int(config.opset),
            "exporter": exporter,
            "versions": _versions(),
            "fp16": bool(fp16),
            "files": {
                "unet": UNET_FILE,
                "unet_fp16": UNET_FP16_FILE if fp16 else None,
                "text_encoder": TEXT_ENCODER_FILE if te_exported else None,
                "tokenizer": TOKENIZER_DIR if te_exported else None,
                "colour_table": COLOUR_TABLE_FILE,
                "colour_token": TOKEN_FILE if token else None,
            },
            "tokenizer_files": tok_files,
            "io": io,
            "text_encoder": {**vars(spec), "dim": D, "seq_len": L, "exported": te_exported, "note": te_note},
            "colour_table": {"names": names, "shape": [len(names), L, D]},
            "parity": parity,
            "notes": notes,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))

    atomic_dir_write(out_dir, write)  # the checkpoint's atomic folder swap: never a half-written export
    log.info("wrote %s", out_dir)
    return out_dir
