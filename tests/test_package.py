"""Packaging: cheap import, no generic top-level modules, the pack's ComfyUI entry points."""

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import polycolor

REPO = Path(__file__).resolve().parents[1]


def run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd="/").stdout.strip()


def test_import_is_cheap_and_loads_no_torch():
    out = run("import time,sys; t=time.perf_counter(); import polycolor; "
              "print(time.perf_counter()-t, 'torch' in sys.modules, 'diffusers' in sys.modules)")
    seconds, torch_loaded, diffusers_loaded = out.split()
    assert float(seconds) < 1.0 and torch_loaded == "False" and diffusers_loaded == "False"


def test_no_generic_top_level_modules():
    for name in ("eval", "export", "nodes", "polycolor_core", "cli", "reproduce"):
        spec = importlib.util.find_spec(name)
        # `eval`/`export`/`nodes` must not be importable as top-level modules from site-packages
        assert spec is None or "site-packages" not in str(spec.origin or "") + str(spec.submodule_search_locations)
    out = run("import importlib.util as u; print([n for n in ('eval','export','nodes','polycolor_core') "
              "if u.find_spec(n) is not None])")
    assert out == "[]"


def test_subpackages_live_under_polycolor():
    import polycolor.eval
    import polycolor.export
    import polycolor.nodes
    import polycolor.polycolor_core

    assert Path(polycolor.__file__).resolve().parent == REPO


def test_pack_registers_through_the_v3_entry_point():
    # ComfyUI takes the V1 path whenever the pack has NODE_CLASS_MAPPINGS, so it must not have one
    assert callable(polycolor.comfy_entrypoint) and not hasattr(polycolor, "NODE_CLASS_MAPPINGS")
    assert polycolor.WEB_DIRECTORY == "./web" and (Path(polycolor.__file__).parent / "web" / "polycolor.js").is_file()


def test_unknown_attribute_is_attribute_error():
    import pytest

    with pytest.raises(AttributeError):
        polycolor.does_not_exist


def test_console_scripts_have_help():
    for cmd in (["polycolor", "--help"], ["polycolor-eval", "--help"], ["polycolor", "train", "--help"]):
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        assert "Usage" in out
