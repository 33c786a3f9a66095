"""The leaderboard's schema: the metric table, sort keys, and the row / LPIPS records of its JSON.

Every other ``eval`` module may import this one; it imports nothing from ``eval`` (no cycles). The
records are plain dataclasses: :class:`ModelResult` (one table row, or a model that could not be scored)
and :class:`LpipsInfo` (whether the LPIPS column has values, and why not).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = [
    "REFERENCE_NAME", "SCHEMA", "MetricInfo", "METRICS", "METRIC_KEYS", "TABLE_KEYS", "SORT_KEYS", "DEFAULT_SORT", "ProgressFn",
    "LpipsInfo", "ModelResult", "jsonable",
]

REFERENCE_NAME = "flood-fill (reference)"
SCHEMA = "polycolor-leaderboard/1"


@dataclass(frozen=True)
class MetricInfo:
    key: str
    label: str  # column header
    higher_is_better: bool
    fmt: str  # format spec for one value
    description: str
    in_table: bool = True  # False: in JSON/CSV and the claims table, not a column of the (already wide) leaderboard


METRICS: dict[str, MetricInfo] = {
    m.key: m
    for m in (
        MetricInfo("lpips", "LPIPS", False, ".4f", "LPIPS (AlexNet), lower is better"),
        MetricInfo("ssim", "SSIM", True, ".4f", "SSIM (Wang et al., 11x11 Gaussian), higher is better"),
        MetricInfo("de_polygon", "ΔE00 poly", False, ".2f", "mean CIEDE2000 over the true polygon, lower is better"),
        MetricInfo("de_image", "ΔE00 img", False, ".2f", "mean CIEDE2000 over the whole image, lower is better"),
        MetricInfo("de_edge", "ΔE00 edge", False, ".2f",
                   "mean CIEDE2000 within 1 px of the true polygon's boundary (edge sharpness), lower is better",
                   in_table=False),
        MetricInfo("iou", "IoU", True, ".3f", "IoU of predicted vs true polygon mask, higher is better"),
        MetricInfo("psnr", "PSNR", True, ".2f", "PSNR in dB (capped at 100), higher is better"),
        MetricInfo("bg_changed", "bg chg %", False, ".1f",
                   "percent of the pixels outside the true polygon that the model changed, lower is better"),
    )
}
METRIC_KEYS = tuple(METRICS)
TABLE_KEYS = tuple(k for k, m in METRICS.items() if m.in_table)  # the leaderboard tables' metric columns
SORT_KEYS = (*METRIC_KEYS, "images_per_s")
DEFAULT_SORT = "de_polygon"

ProgressFn = Callable[[str, int, int], None]
"""``progress(description, completed, total)``; counts are images over all models and the reference."""


@dataclass
class LpipsInfo:
    enabled: bool
    available: bool
    status: str  # "ok", "unavailable (offline)", "disabled", ...
    reason: str | None = None

    @property
    def cell(self) -> str:
        """What the LPIPS column shows when there are no values."""
        if not self.enabled:
            return "n/a (disabled)"
        if "offline" in self.status:
            return "n/a (offline)"
        return "n/a"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class ModelResult:
    """One leaderboard row (a model or the reference), or a model that could not be scored."""

    name: str
    kind: str  # "model" | "reference"
    status: str  # "ok" | "unfinished" | "missing" | "error"
    source: str | None = None
    backend: str | None = None
    output: str | None = None  # "raw" | "composite" (what was scored; None for the reference / unscored)
    variant: str | None = None
    image_size: int | None = None  # the model's working resolution
    text_encoder: str | None = None
    lpips_training: str | None = None  # "used" | "dropped" | "not in loss" | None (unknown)
    lpips_training_note: str | None = None
    finished: bool | None = None
    step: int | None = None
    total_steps: int | None = None
    params: int | None = None
    images_per_s: float | None = None
    inference_s: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    by_family: dict[str, dict[str, float]] = field(default_factory=dict)
    per_sample: dict[str, list[float]] = field(default_factory=dict)
    rank: int | None = None
    message: str | None = None
    train_command: str | None = None
    warnings: list[str] = field(default_factory=list)
    predictions: list[np.ndarray] | None = field(default=None, repr=False)

    @property
    def scored(self) -> bool:
        return self.status in ("ok", "unfinished")

    def value(self, key: str) -> float:
        v = self.images_per_s if key == "images_per_s" else self.metrics.get(key)
        return float("nan") if v is None else float(v)

    def to_dict(self, per_sample: bool = False) -> dict:
        d = {k: v for k, v in dataclasses.asdict(
            dataclasses.replace(self, predictions=None, per_sample={})).items()
             if k not in ("predictions", "per_sample")}
        if per_sample:
            d["per_sample"] = self.per_sample
        return jsonable(d)


def jsonable(x):
    """``x`` with numpy scalars/arrays and paths made plain, NaN/inf as None (strict JSON)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if math.isnan(float(x)) or math.isinf(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, Path):
        return str(x)
    return x
