"""Conditioning that can carry an exact colour: the text embedding plus one learned RGB token.

``conditioning="text"`` (the study's): the UNet cross-attends to the text encoder's sequence [B, L, D] only.
``conditioning="text+rgb"``: when a colour name resolves (``colours.resolve_colour``: canonical, CSS, XKCD, and
every ``#rrggbb``), its RGB goes through fixed Fourier features of RGB and CIE-LAB and one ``Linear`` to a
token of the text width, appended to the sequence: [B, L+1, D]. A name that does not resolve gets a learned
"unknown" token instead, so the sequence length is the same for every prompt. Only this small projection
(``ColourToken``, ~(F+1)*D + D parameters) is added, saved in the checkpoint next to the UNet weights under
``colour_token.*``.
``conditioning="text+rgb+film"`` (the default for new training): the same token, and the UNet also scales and
shifts every ResNet block by it (FiLM through the UNet's own class embedding: ``model.FILM``). Cross-attention
alone reaches only the two lower levels; the full-resolution level, where the fill is painted, has none.

Why, measured (issue 16): the cpu profile's m8 (750 steps of 4 at 32 -> 64 px, canonical+xkcd+hex palette, every
data family, MiniLM, one core of a 2-core AVX2 EPYC each), mean in-polygon CIEDE2000 of the composite on
canonical / held-out CSS / held-out XKCD / random hex (``python -m polycolor.eval.colours``):

    text+rgb, Fourier features up to 2^5 pi                        0.8 / 12.3 / 10.7 / 9.2
    text+rgb, the token also added to every block (no scale)       0.5 /  6.3 /  7.6 / 7.0
    text+rgb+film, features up to 2^5 pi                           0.2 /  4.7 /  5.4 / 5.2
    text+rgb+film, up to 2^2 pi                                    0.2 /  3.4 /  3.0 / 2.9
    text+rgb+film, pi only (``N_FREQ = 1``: kept)                  0.4 /  2.6 /  2.3 / 2.0
    the same, the dark family drawn twice (the cpu profile's m8)   0.2 /  3.5 /  2.6 / 2.6
      ... with the Colorizer's zoomed second pass (the default)    0.3 /  2.7 /  2.3 / 2.2

FiLM also let m8 learn the dark noisy family in this budget (composite dE00 1.34, IoU 1.000, against 52.7 /
0.23 without it; 0.92 with dark drawn twice). Smooth features generalise to unseen colours: high frequencies
let the projection fit the training colours without learning the colour space between them. On a shorter schedule (32 -> 64 px at 85%),
text-only conditioning measured 5.0 / 29.1 / 26.7 / 33.8 with the bare name and 5.0 / 29.1 / 32.7 / 33.2 with
the template "a polygon filled with {}" (``--prompt-template sentence``): a template only dilutes the colour
word (the nearest-trained-name reference goes from 18.6 to 32.6 on XKCD). The study's profile and the cpu
profile's ablation keep ``text``.

``colour_token_numpy(weights, names)`` is the same projection in numpy (from the safetensors tensors), so an
ONNX export can build the full [N, L+1, D] conditioning without torch.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..colour.colours import UnknownColourError, resolve_colour
from ..colour.palettes import CONDITIONINGS, uses_rgb

__all__ = ["CONDITIONINGS", "TOKEN_PREFIX", "ColourToken", "resolve_rgbs", "fourier_features", "attach_colour_token",
           "condition", "token_weights", "load_token_weights", "colour_token_numpy", "model_conditioning",
           "TOKEN_FILE", "read_token_weights", "colour_token_source"]

TOKEN_PREFIX = "colour_token."
N_FREQ = 1  # sin/cos at 2^0..2^(N-1) * pi of each of the 6 channels (RGB 0..1, LAB scaled to about 0..1)


def resolve_rgbs(names) -> tuple[np.ndarray, np.ndarray]:
    """(float32 [N,3] RGB in 0..1, bool [N] resolved) for colour names; unresolvable names get zeros/False."""
    rgb = np.zeros((len(names), 3), np.float32)
    ok = np.zeros(len(names), bool)
    for i, n in enumerate(names):
        try:
            rgb[i] = np.asarray(resolve_colour(n), np.float32) / 255.0
            ok[i] = True
        except UnknownColourError:
            pass
    return rgb, ok


def _lab01(rgb: np.ndarray) -> np.ndarray:
    """sRGB 0..1 [N,3] -> CIE-LAB (D65) scaled to about 0..1: L/100, (a+128)/256, (b+128)/256."""
    c = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    m = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]], np.float64)
    xyz = c.astype(np.float64) @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    lab = np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], 1)
    return (lab / np.array([100.0, 256.0, 256.0]) + np.array([0.0, 0.5, 0.5])).astype(np.float32)


def fourier_features(rgb: np.ndarray, n_freq: int = N_FREQ) -> np.ndarray:
    """float32 [N, 6 + 12*n_freq]: RGB and LAB (0..1) themselves, then sin/cos at 2^k * pi of each."""
    x = np.concatenate([rgb.astype(np.float32), _lab01(rgb)], 1)  # [N,6]
    ang = x[:, :, None] * (np.pi * 2.0 ** np.arange(n_freq, dtype=np.float32))[None, None, :]  # [N,6,F]
    return np.concatenate([x, np.sin(ang).reshape(len(x), -1), np.cos(ang).reshape(len(x), -1)], 1).astype(np.float32)


def n_features(n_freq: int = N_FREQ) -> int:
    return 6 + 12 * n_freq


def n_freq_of(width: int) -> int:
    """The ``n_freq`` of a saved projection ``[D, width]``: the inverse of :func:`n_features`."""
    return (int(width) - 6) // 12


class ColourToken(nn.Module):
    """Fourier features of the resolved RGB -> Linear -> one [D] token; a learned token for unresolved names."""

    def __init__(self, dim: int, n_freq: int = N_FREQ):
        super().__init__()
        self.n_freq = n_freq
        self.proj = nn.Linear(n_features(n_freq), dim)
        self.unknown = nn.Parameter(torch.zeros(dim))
        with torch.no_grad():  # start near the text embedding's scale (MiniLM hidden states are ~unit)
            self.proj.weight.mul_(math.sqrt(3.0))

    def forward(self, names) -> torch.Tensor:
        """names (N strings) -> [N, 1, D] on the module's device."""
        rgb, ok = resolve_rgbs(list(names))
        w = self.proj.weight
        feats = torch.from_numpy(fourier_features(rgb, self.n_freq)).to(w.device, w.dtype)
        tok = self.proj(feats)
        known = torch.from_numpy(ok).to(w.device)[:, None]
        return torch.where(known, tok, self.unknown.expand_as(tok))[:, None, :]


def model_conditioning(model) -> str:
    """What ``model`` (a PolyColorNet) is conditioned on: 'text+rgb+film' (the token also modulates every block),
    'text+rgb' (it carries a ``ColourToken``) or 'text'."""
    if getattr(model, "colour_token", None) is None:
        return "text"
    return "text+rgb+film" if getattr(model, "film", False) else "text+rgb"


def attach_colour_token(model, conditioning: str):
    """Give ``model`` its ``colour_token`` submodule for ``conditioning`` (before the optimiser is built)."""
    if conditioning not in CONDITIONINGS:
        raise ValueError(f"unknown conditioning {conditioning!r}; choose one of {', '.join(CONDITIONINGS)}")
    if uses_rgb(conditioning) and getattr(model, "colour_token", None) is None:
        p = next(model.parameters())
        model.colour_token = ColourToken(int(model.cross_attention_dim)).to(p.device)
    return model


def condition(model, text_emb: torch.Tensor, names) -> torch.Tensor:
    """The UNet's conditioning for ``names``: ``text_emb`` [B,L,D], plus the RGB token -> [B,L+1,D] if the model has one."""
    tok = getattr(model, "colour_token", None)
    if tok is None:
        return text_emb
    return torch.cat([text_emb, tok(names).to(text_emb.dtype)], 1)


def token_weights(model) -> dict[str, torch.Tensor]:
    """The ColourToken tensors to save beside the UNet's (``colour_token.*``); {} for a text-only model."""
    tok = getattr(model, "colour_token", None)
    if tok is None:
        return {}
    return {TOKEN_PREFIX + k: v.detach().cpu().contiguous() for k, v in tok.state_dict().items()}


def load_token_weights(model, weights: dict) -> dict:
    """Pop ``colour_token.*`` from ``weights`` into the model (attaching the module); return the UNet's rest."""
    own = {k[len(TOKEN_PREFIX):]: v for k, v in weights.items() if k.startswith(TOKEN_PREFIX)}
    rest = {k: v for k, v in weights.items() if not k.startswith(TOKEN_PREFIX)}
    if own:
        if getattr(model, "colour_token", None) is None:  # its width and frequencies from the saved projection
            d, f = own["proj.weight"].shape  # [D, 6 + 12 * n_freq]
            model.colour_token = ColourToken(int(d), n_freq_of(f))
        model.colour_token.load_state_dict(own)
    return rest


def colour_token_numpy(weights: dict, names) -> np.ndarray:
    """The same token as ``ColourToken`` from its saved tensors, in numpy: float32 [N, 1, D]."""
    w = np.asarray(weights[TOKEN_PREFIX + "proj.weight"], np.float32)  # [D, F]
    b = np.asarray(weights[TOKEN_PREFIX + "proj.bias"], np.float32)
    unknown = np.asarray(weights[TOKEN_PREFIX + "unknown"], np.float32)
    n_freq = n_freq_of(w.shape[1])
    rgb, ok = resolve_rgbs(list(names))
    tok = fourier_features(rgb, n_freq) @ w.T + b
    tok[~ok] = unknown
    return tok[:, None, :].astype(np.float32)


TOKEN_FILE = "colour_token.safetensors"  # in an ONNX export folder: the ColourToken tensors (colour_token.*)


def read_token_weights(path) -> dict[str, np.ndarray]:
    """The ``colour_token.*`` tensors of a safetensors file (a checkpoint's model.safetensors or an export's
    colour_token.safetensors) as numpy; {} when it has none."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        return {k: f.get_tensor(k) for k in f.keys() if k.startswith(TOKEN_PREFIX)}


def colour_token_source(info):
    """``names -> float32 [N,1,D]`` for a text+rgb model folder (a ``ModelInfo``), None for a text-only one.

    The Colorizer appends it to every embedding, for the torch and the ONNX backend alike (numpy, from the saved
    tensors: a checkpoint's model.safetensors, an export's colour_token.safetensors).
    """
    import functools

    if not uses_rgb(getattr(info, "conditioning", "text")):
        return None
    f = info.path / ("model.safetensors" if info.kind == "checkpoint" else TOKEN_FILE)
    weights = read_token_weights(f) if f.is_file() else {}
    if not weights:
        raise ValueError(f"{info.path} was trained with conditioning text+rgb but {f.name} holds no {TOKEN_PREFIX}* "
                         "tensors: re-export the model from its checkpoint (polycolor export) or retrain it")
    return functools.partial(colour_token_numpy, weights)
