"""The registry of the study's eight named model variants (m1..m8).

One frozen dataclass per variant; ``get_variant(name)`` is the only lookup and lists valid names on error.
The UNet built from a variant is diffusers' ``UNet2DConditionModel`` exactly as in the study (see
``model.py``); the loss weights and epoch counts are the study's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LossWeights:
    """Weights of the composite loss terms (the study's: MSE 1.0, LPIPS 0.5, SSIM 0.2 on 1-SSIM, LAB-L1 0.3)."""

    mse: float = 1.0
    lpips: float = 0.5
    ssim: float = 0.2
    colour: float = 0.3

    def without(self, *terms: str) -> "LossWeights":
        return dataclasses.replace(self, **{t: 0.0 for t in terms})

    def active(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self) if getattr(self, f.name) > 0)


# The LAB-L1 term's unit (TrainConfig.lab_unit): mean |LAB difference| / 100, L's full range, so it shares the 0..1
# scale of the other terms that the weights above presuppose. A train_config saved before the setting: raw units (1).
LAB_UNIT = 100.0
RAW_LAB_UNIT = 1.0

MSE_ONLY = LossWeights(mse=1.0, lpips=0.0, ssim=0.0, colour=0.0)
MSE_LPIPS = LossWeights(mse=1.0, lpips=0.5, ssim=0.0, colour=0.0)
MSE_LPIPS_SSIM = LossWeights(mse=1.0, lpips=0.5, ssim=0.2, colour=0.0)
ALL_FOUR = LossWeights()


@dataclass(frozen=True)
class Variant:
    """One model variant: UNet widths/depth/heads, its loss terms and the study's epoch count."""

    name: str
    block_out_channels: tuple[int, ...]
    layers_per_block: int
    heads: int
    loss: LossWeights
    epochs: int
    norm_num_groups: int = 32
    description: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Variant":
        d = dict(d)
        d["block_out_channels"] = tuple(d["block_out_channels"])
        d["loss"] = LossWeights(**d["loss"])
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown variant config keys {sorted(unknown)}; expected {sorted(known)}")
        return cls(**d)

    def tiny(self) -> "Variant":
        """A test-sized copy (widths / 8, 2 heads, 4 norm groups) with the same structure and loss terms."""
        widths = tuple(max(4, (c // 8) // 4 * 4) for c in self.block_out_channels)
        return dataclasses.replace(
            self, name=f"{self.name}-tiny", block_out_channels=widths, heads=2, norm_num_groups=4,
            description=f"test-sized copy of {self.name}",
        )


VARIANTS: dict[str, Variant] = {
    "m1": Variant("m1", (32, 64, 128), 1, 12, MSE_ONLY, 5, description="baseline, MSE only"),
    "m2": Variant("m2", (32, 64, 128), 1, 12, MSE_LPIPS, 5, description="+ LPIPS"),
    "m3": Variant("m3", (32, 64, 128), 1, 12, MSE_LPIPS_SSIM, 5, description="+ LPIPS + SSIM"),
    "m4": Variant("m4", (32, 64, 128), 1, 12, ALL_FOUR, 5, description="all four loss terms"),
    "m5": Variant("m5", (64, 128, 256), 2, 12, ALL_FOUR, 5, description="wider and deeper"),
    "m6": Variant("m6", (32, 64, 128), 1, 8, ALL_FOUR, 10, description="8 heads, 10 epochs"),
    "m7": Variant("m7", (32, 64, 128), 1, 8, ALL_FOUR, 15, description="8 heads, 15 epochs"),
    "m8": Variant("m8", (64, 32, 64), 1, 12, ALL_FOUR, 15, description="bottleneck widths, 15 epochs"),
}


class UnknownVariantError(ValueError):
    """Raised for a variant name that is not in ``VARIANTS``."""


def get_variant(name: str) -> Variant:
    """Return the registered variant ``name`` (case-insensitive); a clear error lists the valid names."""
    key = str(name).strip().lower()
    if key not in VARIANTS:
        raise UnknownVariantError(
            f"unknown model variant {name!r}; valid names are {', '.join(VARIANTS)} "
            f"(see `polycolor train --help`)"
        )
    return VARIANTS[key]
