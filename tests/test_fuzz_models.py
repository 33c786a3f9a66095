"""Fuzzing the model-folder loaders (issue 26): checkpoint ``config.json``, ``training_state.json`` and an export's
``manifest.json``, each mutated or replaced by hypothesis (200 deterministic examples per loader).

Each must give a model / state / manifest, or a ``ModelFolderError`` (``CheckpointError``, ``ManifestError``) that
names the file; never a bare KeyError/TypeError/..., never a write (tests/_fuzz.py).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from _fuzz import FUZZ, json_values, outcome, snapshot
from hypothesis import example, given
from hypothesis import strategies as st

from polycolor.polycolor_core.model.checkpoint import (CheckpointError, load_checkpoint, load_training_state,
                                                 restore_training_state)
from polycolor.polycolor_core.model.modelinfo import ModelFolderError, ModelInfo


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    yield
    assert not any(tmp_path.iterdir()), "a loader wrote into the working directory"


@st.composite
def mutated(draw, base: dict):
    """``base`` as JSON text with keys deleted or replaced (one level down too), or any JSON value, or raw bytes."""
    kind = draw(st.sampled_from(["mutate", "mutate", "mutate", "value", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "value":
        return json.dumps(draw(json_values)).encode()
    d = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(1, 4))):
        key = draw(st.sampled_from(sorted(d))) if d else "x"
        target = d
        if isinstance(d.get(key), dict) and d[key] and draw(st.booleans()):
            target, key = d[key], draw(st.sampled_from(sorted(d[key])))
        elif isinstance(d.get(key), list) and d[key] and draw(st.booleans()):
            d[key][draw(st.integers(0, len(d[key]) - 1))] = draw(json_values)
            continue
        if draw(st.booleans()):
            target.pop(key, None)
        else:
            target[key] = draw(json_values)
    return json.dumps(d).encode()


def _fuzz_folder(base: Path, name: str, content: bytes):
    """A temporary copy of ``base`` with ``name`` replaced by ``content``; yields (folder, snapshot)."""
    tmp = Path(tempfile.mkdtemp(prefix="polycolor-fuzz-"))
    folder = tmp / "checkpoint"
    shutil.copytree(base, folder)
    (folder / name).write_bytes(content)
    return tmp, folder


_CKPT: dict = {}


@pytest.fixture(scope="module")
def base_checkpoint(tiny_checkpoint) -> Path:
    _CKPT["config"] = json.loads((tiny_checkpoint / "config.json").read_text())
    _CKPT["state"] = json.loads((tiny_checkpoint / "training_state.json").read_text())
    return tiny_checkpoint


def _content(content, base: dict) -> bytes:
    """A drawn file (bytes), or an ``@example``'s top-level edits of ``base`` (a dict)."""
    return json.dumps({**base, **content}).encode() if isinstance(content, dict) else content


# Regressions the fuzzing found (each used to leak the error named beside it); now a CheckpointError naming the file.
CONFIG_REGRESSIONS = [
    b"\x80",  # UnicodeDecodeError from read_text
    {"format_version": "x"},  # ValueError "invalid literal for int()" naming no file
    {"image_size": {"a": 1}},  # TypeError from int()
    {"text_encoder": 5},  # AttributeError ('int' object has no attribute 'items')
    {"text_encoder": {"dim": 32}},  # TypeError (TextEncoderSpec needs a name)
    {"palette": 3},  # TypeError (tuple(3))
    {"train_config": [1]},  # ValueError/TypeError from dict([1])
    {"variant": {"name": "m1"}},  # KeyError 'block_out_channels' in load_checkpoint
    {"variant": "m1"},  # ValueError from dict("m1") in Variant.from_dict, naming no file
]


def _examples(cases):
    def deco(f):
        for case in cases:
            f = example(content=case)(f)
        return f
    return deco


@FUZZ
@given(content=st.deferred(lambda: mutated(_CKPT["config"])))
@_examples(CONFIG_REGRESSIONS)
def test_checkpoint_config_json(base_checkpoint, content):
    tmp, folder = _fuzz_folder(base_checkpoint, "config.json", _content(content, _CKPT["config"]))
    try:
        before = snapshot(tmp)
        info = outcome(ModelInfo.read, folder, allowed=(ModelFolderError,), names=["config.json"])
        if isinstance(info, ModelInfo):
            loaded = outcome(load_checkpoint, folder, allowed=(ModelFolderError,), names=[str(folder)])
            if not isinstance(loaded, Exception):
                assert loaded.model.variant == info.variant
        if content in CONFIG_REGRESSIONS:
            assert isinstance(info, CheckpointError) or isinstance(loaded, CheckpointError)
        assert snapshot(tmp) == before
    finally:
        shutil.rmtree(tmp)


STATE_REGRESSIONS = [
    b"\xff",  # UnicodeDecodeError
    {"param_groups": None},  # KeyError/TypeError in _unflatten_optimizer
    {"scalars": {"x": 1}},  # ValueError: not enough values to unpack (no "." in the name)
    {"scheduler": 3},  # AttributeError in scheduler.load_state_dict
]


@FUZZ
@given(content=st.deferred(lambda: mutated(_CKPT["state"])))
@_examples(STATE_REGRESSIONS)
def test_training_state_json(base_checkpoint, content):
    import torch

    tmp, folder = _fuzz_folder(base_checkpoint, "training_state.json", _content(content, _CKPT["state"]))
    try:
        before = snapshot(tmp)
        state = outcome(load_training_state, folder, allowed=(CheckpointError,), names=["training_state"])
        if isinstance(state, dict):
            loaded = load_checkpoint(folder)
            model = loaded.model
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
            outcome(restore_training_state, folder, opt, sched, allowed=(CheckpointError,), names=["training_state"])
        assert snapshot(tmp) == before
    finally:
        shutil.rmtree(tmp)


def _manifest_base() -> dict:
    from polycolor.export.config import MANIFEST_KEYS, MANIFEST_VERSION, NORMALISATION
    from polycolor.polycolor_core.model.modelinfo import EXPORT_FORMAT

    values = {str: "x", int: 32, dict: {}, list: [], bool: False}
    m = {k: values[types[0]] for k, (types, _) in MANIFEST_KEYS.items()}
    m.update(format=EXPORT_FORMAT, manifest_version=MANIFEST_VERSION, normalisation=NORMALISATION, variant="m1-tiny",
             variant_config=_CKPT["config"]["variant"], text_encoder=_CKPT["config"]["text_encoder"],
             source={"path": "/nonexistent/checkpoint", "step": 2}, train_config=_CKPT["config"]["train_config"],
             palette=["red"], step=2, finished=True)
    return m


MANIFEST_REGRESSIONS = [b"\x80", b"null"]  # UnicodeDecodeError; AttributeError (None.get) in validate_manifest


@FUZZ
@given(content=st.deferred(lambda: mutated(_manifest_base())))
@_examples(MANIFEST_REGRESSIONS)
def test_export_manifest_json(base_checkpoint, content):
    from polycolor.export.config import read_manifest

    tmp = Path(tempfile.mkdtemp(prefix="polycolor-fuzz-"))
    try:
        (tmp / "manifest.json").write_bytes(_content(content, _manifest_base()))
        before = snapshot(tmp)
        outcome(read_manifest, tmp, allowed=(ModelFolderError,), names=["manifest.json"])
        outcome(ModelInfo.read, tmp, allowed=(ModelFolderError,), names=["manifest.json"])
        assert snapshot(tmp) == before
    finally:
        shutil.rmtree(tmp)
