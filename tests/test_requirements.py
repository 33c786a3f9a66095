"""requirements.txt (what ComfyUI-Manager installs for the node pack) must not disturb ComfyUI's environment.

* The file names no torch / torchvision / torchaudio / numpy / onnxruntime build, nothing ComfyUI's own
  requirements.txt already pins, and is one plain requirement per line (ComfyUI-Manager runs
  ``pip install <line>`` line by line).
* pip's resolver, run on *this* environment (the project's torch + ComfyUI's requirements), as
  ``pip install --dry-run --report - -r requirements.txt``: nothing it would install replaces an installed
  torch, torchvision, torchaudio, numpy or onnxruntime(-gpu); in fact it replaces no installed distribution.
  The workstation's global pip constraint (which caps torch) is lifted for this run so that it cannot hide
  an upgrade. Needs an index only when something is missing; skipped, with the reason, when pip cannot
  reach one.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # pip always vendors packaging
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO / "requirements.txt"
PROTECTED = ("torch", "torchvision", "torchaudio", "numpy", "onnxruntime", "onnxruntime-gpu",
             "onnxruntime-directml", "onnxruntime-openvino", "onnxruntime-silicon")
NETWORK_ERRORS = ("Could not fetch URL", "NewConnectionError", "Max retries exceeded", "Network is unreachable",
                  "Temporary failure in name resolution", "Name or service not known", "ConnectTimeout",
                  "ReadTimeout", "Connection refused", "No matching distribution found")


def _requirements(path: Path = REQUIREMENTS) -> list[Requirement]:
    out = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        out.append(Requirement(line.split(" #", 1)[0].strip()))
    return out


def test_lists_nothing_comfyui_owns():
    names = {canonicalize_name(r.name) for r in _requirements()}
    assert names, "requirements.txt is empty"
    assert not names & {canonicalize_name(p) for p in PROTECTED}, names
    assert {"torch", "torchvision", "torchaudio"}.isdisjoint(names)


def test_one_plain_requirement_per_line():
    for raw in REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("-"), f"pip options are not per-line requirements: {line!r}"
        assert not line.endswith("\\"), f"no line continuations: {line!r}"
        Requirement(line)  # raises on anything that is not PEP 508


def test_no_overlap_with_comfyui_requirements():
    import _comfyui  # the ComfyUI tests' harness (tests/ is on sys.path through conftest.py)

    comfy = _comfyui.find_comfyui()
    if comfy is None:
        pytest.skip("ComfyUI is not prepared (bash .ci/prepare_comfyui.sh); cannot read its requirements.txt")
    theirs = {canonicalize_name(r.name) for r in _requirements(comfy / "requirements.txt")}
    ours = {canonicalize_name(r.name) for r in _requirements()}
    assert not ours & theirs, f"requirements.txt restates ComfyUI's own requirements: {sorted(ours & theirs)}"


def _installed() -> dict[str, str]:
    return {canonicalize_name(d.metadata["Name"]): d.version for d in md.distributions() if d.metadata["Name"]}


def _dry_run(requirements: Path) -> dict[str, str]:
    """{name: version} that ``pip install -r requirements`` would install into this environment."""
    env = {
        **os.environ,
        "PIP_CONSTRAINT": "",  # lift any global constraint (here: /etc/xdg/pip caps torch); see module doc
        "PIP_NO_INPUT": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", "-", "-r", str(requirements)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    except subprocess.TimeoutExpired:
        pytest.skip("pip could not resolve the requirements within 600 s (index unreachable or too slow)")
    if res.returncode != 0:
        if any(marker in res.stderr for marker in NETWORK_ERRORS):
            pytest.skip(f"pip cannot reach a package index: {res.stderr.strip().splitlines()[-1]}")
        pytest.fail(f"pip install --dry-run failed (rc {res.returncode}):\n{res.stderr[-4000:]}")
    report = json.loads(res.stdout)
    return {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
            for item in report.get("install", [])}


def _changes(would_install: dict[str, str], installed: dict[str, str], names=None) -> dict:
    names = None if names is None else {canonicalize_name(n) for n in names}
    return {name: (installed.get(name), version) for name, version in would_install.items()
            if (names is None or name in names) and installed.get(name) != version}


def test_pip_resolver_changes_no_protected_package():
    installed = _installed()
    for name in ("torch", "torchvision", "numpy"):
        assert name in installed, f"{name} is not installed; this test must run in the ComfyUI environment"
    would_install = _dry_run(REQUIREMENTS)
    protected = _changes(would_install, installed, PROTECTED)
    assert not protected, f"installing requirements.txt would change protected packages (installed, new): {protected}"
    replaced = {k: v for k, v in _changes(would_install, installed).items() if v[0] is not None}
    assert not replaced, f"installing requirements.txt would replace installed versions (old, new): {replaced}"


def test_the_dry_run_check_sees_a_change(tmp_path):
    """Guard against a check that passes vacuously: a requirement excluding the installed numpy is caught."""
    numpy = _installed()["numpy"]
    bad = tmp_path / "requirements.txt"
    bad.write_text(f"numpy!={numpy}\n")
    changes = _changes(_dry_run(bad), _installed(), PROTECTED)
    assert "numpy" in changes and changes["numpy"][0] == numpy, changes


def test_requirements_are_satisfied_here():
    """Why the dry run above installs nothing in this environment: every line is already satisfied."""
    installed = _installed()
    for req in _requirements():
        name = canonicalize_name(req.name)
        if req.marker is not None and not req.marker.evaluate():
            continue
        assert name in installed, f"{req} is not installed (pip install -e '.[dev]' provides it)"
        assert req.specifier.contains(installed[name], prereleases=True), (req, installed[name])
