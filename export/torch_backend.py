"""The PyTorch backend of the Colorizer: a ``PolyColorNet`` forward in fp32 or bf16, with the CPU fast path.

``TorchBackend(model, device, precision, fast_cpu=None)`` maps float32 images [B,3,S,S] + embeddings [B,L,D]
to float32 images [B,3,S,S]. The fast CPU path (``fast_cpu``, default: on for CPU devices) is a setting, not a
second class:

- short-key cross-attention (``ShortKeyAttnProcessor``, fp32 and bf16: same numbers as diffusers');
- bf16: bf16 autocast + channels_last, with the Conv2d/Linear weights stored in bf16 so autocast does not
  re-cast them on every call (autocast would cast them to bf16 anyway: same numbers); norms keep fp32;
- ``micro_batch``: larger batches run in slices of this many images (keeps activations in cache; 14-34%
  faster at batch 8-32 on the reference CPU, benchmarks/infer_speed.py).

bf16 is what ``precision.resolve_precision`` decides ("auto": only where the hardware has native bf16).
"""

from __future__ import annotations

import numpy as np

__all__ = ["CPU_MICRO_BATCH", "ShortKeyAttnProcessor", "TorchBackend", "use_short_key_attention"]

CPU_MICRO_BATCH = 4


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


class TorchBackend:
    """Runs a ``PolyColorNet`` in PyTorch (see the module docstring for ``precision`` and ``fast_cpu``)."""

    name = "torch"

    def __init__(self, model, device: str = "cpu", precision: str = "fp32", fast_cpu: bool | None = None,
                 micro_batch: int | None = None):
        import torch

        if precision not in ("bf16", "fp32"):
            raise ValueError(f"TorchBackend precision must be 'bf16' or 'fp32' (resolve 'auto' first), got {precision!r}")
        self.device = torch.device(device)
        self.precision = precision
        self.bf16 = precision == "bf16"
        self.fast_cpu = self.device.type == "cpu" if fast_cpu is None else bool(fast_cpu)
        self.micro_batch = (micro_batch or CPU_MICRO_BATCH) if self.fast_cpu else micro_batch
        self.model = model.to(self.device).eval()
        if self.bf16:
            self.model = self.model.to(memory_format=torch.channels_last)
        if self.fast_cpu:
            use_short_key_attention(self.model)
            if self.bf16:
                for mod in self.model.modules():
                    if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
                        mod.to(torch.bfloat16)

    def _run(self, images: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(images).to(self.device)  # [B,3,S,S]
            e = torch.from_numpy(embeddings).to(self.device)  # [B,L,D]
            if self.bf16:
                x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(self.device.type, dtype=torch.bfloat16):
                    y = self.model(x, e)
            else:
                y = self.model(x, e)
            return y.float().clamp_(0, 1).cpu().numpy()

    def run(self, images: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        mb = self.micro_batch
        if not mb or len(images) <= mb:
            return self._run(images, embeddings)
        return np.concatenate([self._run(images[i : i + mb], embeddings[i : i + mb]) for i in range(0, len(images), mb)])
