"""Polygon geometry as numpy vertex lists (pure numpy, no torch, no drawing).

Shapes live in a *unit frame*: centred on (0, 0), y pointing down (image convention), circumradius about 1.
``to_pixels`` places them in an image. With ``scale=CANONICAL_SCALE`` and no rotation/shift the eight
canonical shapes land on the exact vertices of the original dataset (radius 40 px in a 128 px image,
centred at (64, 64)); the synthetic tests check that pixel for pixel.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CANONICAL_SHAPES",
    "CANONICAL_SCALE",
    "EXTRA_KINDS",
    "canonical_shape",
    "regular_polygon",
    "star",
    "cross",
    "arrow",
    "irregular_convex",
    "irregular_concave",
    "random_extra_shape",
    "to_pixels",
    "polygon_area",
    "is_convex",
]

# Circumradius as a fraction of the image side: 40 px of 128 in the original data.
CANONICAL_SCALE = 40.0 / 128.0


def _ring(n: int, start_deg: float, radius: float = 1.0) -> np.ndarray:
    a = np.deg2rad(start_deg) + 2.0 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(a), radius * np.sin(a)], axis=1)


def regular_polygon(n: int, rotation_deg: float = -90.0) -> np.ndarray:
    """Regular ``n``-gon with circumradius 1; the default puts a vertex at the top."""
    if n < 3:
        raise ValueError(f"a polygon needs at least 3 vertices, got n={n}")
    return _ring(n, rotation_deg)


def star(points: int = 5, inner: float = 0.4, rotation_deg: float = -90.0) -> np.ndarray:
    """Star with ``points`` tips on radius 1 and the notches on radius ``inner``."""
    if points < 3 or not 0.0 < inner < 1.0:
        raise ValueError(f"a star needs points >= 3 and 0 < inner < 1, got points={points}, inner={inner}")
    pts = _ring(2 * points, rotation_deg)
    pts[1::2] *= inner
    return pts


def cross(arm: float = 0.33) -> np.ndarray:
    """Plus sign: four arms of half-width ``arm`` reaching radius 1."""
    a = arm
    return np.array(
        [(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1), (-a, a), (-1, a), (-1, -a), (-a, -a)],
        dtype=float,
    )


def arrow(shaft: float = 0.25, head: float = 0.6, neck: float = 0.15) -> np.ndarray:
    """Arrow pointing right: shaft half-width ``shaft``, head half-width ``head``, head starting at x=``neck``."""
    return np.array(
        [(-1, -shaft), (neck, -shaft), (neck, -head), (1, 0), (neck, head), (neck, shaft), (-1, shaft)], dtype=float
    )


def _sorted_angles(rng: np.random.Generator, n: int) -> np.ndarray:
    # Evenly spaced angles jittered by up to 40% of a step: sorted by construction, and no huge gaps that would
    # make a sliver polygon.
    step = 2.0 * np.pi / n
    return rng.uniform(0, 2 * np.pi) + step * (np.arange(n) + rng.uniform(-0.4, 0.4, n))


def irregular_convex(rng: np.random.Generator, n: int = 6) -> np.ndarray:
    """Random convex polygon: jittered points on an ellipse (points on an ellipse in angular order are convex)."""
    a = _sorted_angles(rng, n)
    sx, sy = 1.0, rng.uniform(0.6, 1.0)
    return np.stack([sx * np.cos(a), sy * np.sin(a)], axis=1)


def irregular_concave(rng: np.random.Generator, n: int = 8) -> np.ndarray:
    """Random simple, non-convex polygon: a star-shaped blob with random radii (angles sorted => no self-crossing)."""
    a = _sorted_angles(rng, n)
    r = rng.uniform(0.55, 1.0, n)
    # One deep notch guarantees at least one reflex vertex.
    r[rng.integers(n)] = rng.uniform(0.25, 0.45)
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


# Unit-frame vertices of the original dataset's eight shapes, fitted to the real images (see tests).
CANONICAL_SHAPES: dict[str, np.ndarray] = {
    "circle": _ring(36, 0.0),  # the "circle" is a 36-gon
    "diamond": np.array([(0, -1), (0.7, 0), (0, 1), (-0.7, 0)], dtype=float),
    "hexagon": _ring(6, 0.0),
    "octagon": _ring(8, 0.0),
    "pentagon": _ring(5, -90.0),
    "square": np.array([(-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)], dtype=float),
    "star": star(5, 0.4),
    # Equilateral, side 1, apex at -0.6; the base sits at y=+0.275 (75 px in the original, a rounded 74.64).
    "triangle": np.array([(0, -0.6), (-0.5, 0.275), (0.5, 0.275)], dtype=float),
}

# Families drawn by ``random_extra_shape`` (the "shapes" synthetic family).
EXTRA_KINDS = ("ngon", "star", "cross", "arrow", "convex", "concave")


def canonical_shape(name: str) -> np.ndarray:
    """Unit-frame vertices of one of the eight original shapes."""
    try:
        return CANONICAL_SHAPES[name].copy()
    except KeyError:
        raise ValueError(f"unknown canonical shape {name!r}; valid: {', '.join(CANONICAL_SHAPES)}") from None


def random_extra_shape(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """(name, unit vertices) of a random shape beyond the canonical eight, e.g. ``("ngon7", ...)``."""
    kind = EXTRA_KINDS[rng.integers(len(EXTRA_KINDS))]
    if kind == "ngon":
        n = int(rng.integers(3, 13))
        return f"ngon{n}", regular_polygon(n)
    if kind == "star":
        k = int(rng.integers(3, 10))
        return f"star{k}", star(k, float(rng.uniform(0.35, 0.6)))
    if kind == "cross":
        return "cross", cross(float(rng.uniform(0.2, 0.4)))
    if kind == "arrow":
        shaft, head, neck = rng.uniform((0.15, 0.5, -0.1), (0.35, 0.8, 0.4))
        return "arrow", arrow(float(shaft), float(head), float(neck))
    if kind == "convex":
        n = int(rng.integers(4, 10))
        return f"convex{n}", irregular_convex(rng, n)
    n = int(rng.integers(5, 12))
    return f"concave{n}", irregular_concave(rng, n)


def to_pixels(
    unit: np.ndarray,
    size: int,
    scale: float = CANONICAL_SCALE,
    rotation_deg: float = 0.0,
    shift: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Place unit-frame vertices in a ``size`` x ``size`` image: rotate, scale by ``scale * size``, centre, shift."""
    pts = np.asarray(unit, dtype=float)
    if rotation_deg:
        t = np.deg2rad(rotation_deg)
        c, s = np.cos(t), np.sin(t)
        pts = pts @ np.array([[c, s], [-s, c]])
    # No rounding: PIL's rasteriser is sensitive to float noise (64.0000000000024 and 64.0 differ by a pixel
    # column) and the original images were drawn from exactly these unrounded cos/sin values.
    return size / 2.0 + (scale * size) * pts + np.asarray(shift, dtype=float)


def polygon_area(pts: np.ndarray) -> float:
    """Signed shoelace area (positive for clockwise on screen, i.e. y down)."""
    x, y = np.asarray(pts, dtype=float).T
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def is_convex(pts: np.ndarray) -> bool:
    """True when all turns have the same sign (collinear vertices allowed)."""
    p = np.asarray(pts, dtype=float)
    d1 = np.roll(p, -1, axis=0) - p
    d2 = np.roll(d1, -1, axis=0)
    z = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    return bool(np.all(z >= -1e-9) or np.all(z <= 1e-9))
