"""Scripted inference: ``Colorizer.from_pretrained`` on both backends (same images), every input kind, mode
conversions and size handling with notes, the colour cache, and ``colorize_dataset`` on a folder, a CSV and a
data.json, including the items it must skip (non-image, missing file, unknown colour) and say why.

Models are random-weight 32 px checkpoints made in fixtures; the test text encoder has no tokenizer, so its
exports are table-only (the 8 canonical colours).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from polycolor.export.colorizer import Colorizer, default_bf16
from polycolor.export.infer import colorize_dataset
from polycolor.export.onnx_export import export_model
from polycolor.polycolor_core.colour.colours import UnknownColourError
from polycolor.polycolor_core.runtime import precision
from polycolor.polycolor_core.data.imageio import ImageInputError
from polycolor.polycolor_core.data.synthetic import SyntheticDataset

SIZE = 32
AYNA = Path(__file__).resolve().parents[1].parent / "shared/data/ayna"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, checkpoint_factory):  # conftest.make_checkpoint: m1-tiny, 32 px, test encoder, seed 0
    return checkpoint_factory(tmp_path_factory.mktemp("ck") / "checkpoint", image_size=SIZE)


@pytest.fixture(scope="module")
def export_dir(ckpt, tmp_path_factory):
    return export_model(ckpt, tmp_path_factory.mktemp("ex") / "export")


@pytest.fixture(scope="module")
def onnx_col(export_dir):
    return Colorizer.from_pretrained(export_dir)


@pytest.fixture(scope="module")
def torch_col(ckpt):
    return Colorizer.from_pretrained(ckpt, bf16=False)


@pytest.fixture(scope="module")
def polygons() -> list[np.ndarray]:
    return [s.input for s in SyntheticDataset(("canonical",), n=4, seed=1, size=SIZE)]


def max_diff(a, b) -> int:
    return max(int(np.abs(x.astype(int) - y.astype(int)).max()) for x, y in zip(a, b))


# ------------------------------------------------------------------------------------------ from_pretrained
def test_package_root_exposes_this_colorizer():
    import polycolor

    assert polycolor.Colorizer is Colorizer


def test_backend_choice(onnx_col, torch_col, export_dir, ckpt):
    assert onnx_col.backend.name == "onnx" and onnx_col.backend.providers[-1] == "CPUExecutionProvider"
    assert torch_col.backend.name == "torch" and torch_col.backend.bf16 is False
    assert onnx_col.image_size == torch_col.image_size == SIZE
    assert Colorizer.from_pretrained(ckpt.parent).backend.name == "torch"  # a run folder (has checkpoint/)
    assert Colorizer.from_pretrained(export_dir / "manifest.json").backend.name == "onnx"
    with pytest.raises(ValueError, match="backend must be one of"):
        Colorizer.from_pretrained(ckpt, backend="tensorflow")


def test_backends_give_the_same_images(onnx_col, torch_col, ckpt, export_dir, polygons):
    colours = ["red", "green", "blue", "purple"]
    a, b = onnx_col(polygons, colours), torch_col(polygons, colours)
    assert max_diff(a, b) <= 1
    # onnx on a checkpoint (exported on the fly) and torch on an export (its source checkpoint)
    c = Colorizer.from_pretrained(ckpt, backend="onnx")(polygons, colours)
    d = Colorizer.from_pretrained(export_dir, backend="torch", bf16=False)(polygons, colours)
    assert max_diff(a, c) == 0 and max_diff(b, d) == 0


def test_torch_backend_on_an_orphaned_export(ckpt, tmp_path):
    out = export_model(ckpt, tmp_path / "ex", check=False)
    m = json.loads((out / "manifest.json").read_text())
    m["source"]["path"] = str(tmp_path / "gone")
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="no PyTorch weights"):
        Colorizer.from_pretrained(out, backend="torch")


def test_bf16_default_and_accuracy(ckpt, torch_col, polygons):
    assert default_bf16("cuda") is False
    assert default_bf16("cpu") is precision.native_bf16("cpu")
    fast = Colorizer.from_pretrained(ckpt, bf16=True)
    assert fast.backend.bf16 is True
    a, b = fast(polygons, "cyan"), torch_col(polygons, "cyan")
    assert np.mean([np.abs(x.astype(int) - y.astype(int)).mean() for x, y in zip(a, b)]) < 2.0


# ------------------------------------------------------------------------------------------------- inputs
def test_every_input_kind_gives_the_same_image(onnx_col, polygons, tmp_path):
    img = polygons[0]
    path = tmp_path / "p.png"
    Image.fromarray(img).save(path)
    ref = onnx_col(img, "magenta")[0]
    kinds = [
        Image.fromarray(img),  # PIL
        img.astype(np.float32) / 255.0,  # numpy float 0..1 [H,W,3]
        torch.from_numpy(img).permute(2, 0, 1).float() / 255.0,  # torch [3,H,W]
        torch.from_numpy(img),  # torch uint8 [H,W,3]
        str(path),
        path,
    ]
    outs = onnx_col(kinds, "magenta")
    assert len(outs) == len(kinds)
    for out in outs:
        assert out.dtype == np.uint8 and out.shape == (SIZE, SIZE, 3)
        assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1
    batch = onnx_col(np.stack(polygons), "magenta")  # a [N,H,W,3] array is a batch
    assert len(batch) == len(polygons)


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "LA"])
def test_mode_conversions_are_reported(onnx_col, polygons, mode):
    im = Image.fromarray(polygons[1]).convert(mode)
    res = onnx_col.colorize(im, "orange")
    assert res.images[0].shape == (SIZE, SIZE, 3)
    assert any(f"converted {mode} to RGB" in n for n in res.notes)


def test_wrong_size_is_resized_back(onnx_col, torch_col, polygons):
    big = np.asarray(Image.fromarray(polygons[2]).resize((48, 40)))  # W=48, H=40
    for col in (onnx_col, torch_col):
        res = col.colorize([big, polygons[2]], "yellow")
        assert res.images[0].shape == (40, 48, 3) and res.images[1].shape == (SIZE, SIZE, 3)
        assert any("48x40 resized to the model's 32x32" in n for n in res.notes)
        assert len(res.notes) == 1


def test_bad_inputs(onnx_col, tmp_path):
    with pytest.raises(ImageInputError, match="not found"):
        onnx_col(tmp_path / "missing.png", "red")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    with pytest.raises(ImageInputError, match="not a readable image"):
        onnx_col(junk, "red")
    with pytest.raises(ImageInputError, match="0..1"):
        onnx_col(np.full((SIZE, SIZE, 3), 2.0, np.float32), "red")
    with pytest.raises(ValueError, match="2 colours for 1 images"):
        onnx_col(np.zeros((SIZE, SIZE, 3), np.uint8), ["red", "blue"])


# ----------------------------------------------------------------------------------------------- colours
def test_torch_colour_cache_runs_the_encoder_once_per_colour(ckpt, polygons):
    col = Colorizer.from_pretrained(ckpt, bf16=False)
    col(polygons, ["red", "blue", "red", "RED"])
    assert col.encoder_stats == {"runs": 1, "encoded": 2}
    col(polygons, ["blue", "green", "green", "red"])
    assert col.encoder_stats == {"runs": 2, "encoded": 3}  # only green was new


def test_table_colours_need_no_encoder(onnx_col, polygons):
    before = onnx_col.encoder_stats
    onnx_col(polygons, ["red", "Cyan", "purple", "orange"])
    assert onnx_col.encoder_stats == before == {"runs": 0, "encoded": 0}


def test_unknown_colours_on_a_table_only_export(onnx_col, polygons):
    with pytest.raises(UnknownColourError, match="colour table") as err:
        onnx_col(polygons[0], "teal")  # a valid CSS name, but not in the table and no encoder to embed it
    assert "--colour-table" in str(err.value)
    with pytest.raises(UnknownColourError, match="did you mean 'cyan'"):
        onnx_col(polygons[0], "cyna")


# ----------------------------------------------------------------------------------------- batch datasets
def test_colorize_folder(onnx_col, polygons, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(polygons[0]).save(src / "a.png")
    Image.fromarray(polygons[1]).convert("RGBA").resize((48, 40)).save(src / "b.png")
    (src / "notes.txt").write_text("not an image")
    (src / "broken.png").write_bytes(b"\x89PNG garbage")
    report = colorize_dataset(onnx_col, src, tmp_path / "out", colour="red,blue", progress=False)
    assert report["layout"] == "folder" and report["backend"] == "onnx"
    written = {w["output"] for w in report["written"]}
    assert written == {"a_red.png", "a_blue.png", "b_red.png", "b_blue.png"}
    assert Image.open(tmp_path / "out" / "b_red.png").size == (48, 40)
    assert Image.open(tmp_path / "out" / "a_blue.png").size == (SIZE, SIZE)
    b_notes = next(w["notes"] for w in report["written"] if w["output"] == "b_red.png")
    assert any("converted RGBA to RGB" in n for n in b_notes) and any("resized" in n for n in b_notes)
    reasons = {s["input"]: s["reason"] for s in report["skipped"]}
    assert "not an image file" in reasons["notes.txt"] and "not a readable image" in reasons["broken.png"]
    assert report["counts"] == {"items": 7, "written": 4, "skipped": 3, "already_done": 0}  # broken.png once per colour
    assert any("RGBA" in n for n in report["notes"]) and any("resized" in n for n in report["notes"])
    assert json.loads((tmp_path / "out" / "report.json").read_text())["counts"] == report["counts"]


def test_colorize_folder_needs_a_colour(onnx_col, tmp_path):
    with pytest.raises(ValueError, match="--colour"):
        colorize_dataset(onnx_col, tmp_path, tmp_path / "out", progress=False)
    with pytest.raises(UnknownColourError):
        colorize_dataset(onnx_col, tmp_path, tmp_path / "out", colour="bleu", progress=False)
    with pytest.raises(FileNotFoundError):
        colorize_dataset(onnx_col, tmp_path / "nope", tmp_path / "out", colour="red", progress=False)


def test_colorize_csv(export_dir, polygons, tmp_path):
    (tmp_path / "imgs").mkdir()
    Image.fromarray(polygons[0]).save(tmp_path / "imgs" / "a.png")
    Image.fromarray(polygons[1]).convert("P").save(tmp_path / "imgs" / "b.png")
    (tmp_path / "imgs" / "c.txt").write_text("text")
    csv = tmp_path / "jobs.csv"
    csv.write_text(
        "image,colour\n"
        "imgs/a.png,green\n"
        "imgs/b.png,Magenta\n"
        "imgs/missing.png,red\n"
        "imgs/a.png,teal\n"  # valid CSS, but this export has only the canonical table
        "imgs/a.png,notacolour\n"
        "imgs/c.txt,red\n"
        "imgs/a.png,\n"
        "imgs/a.png,green\n"  # the same output again: written under another name, and said so
    )
    report = colorize_dataset(export_dir, csv, tmp_path / "out", progress=False)
    assert report["layout"] == "csv"
    outs = [w["output"] for w in report["written"]]
    assert outs == ["a_green.png", "b_magenta.png", "a_green_1.png"]
    assert any("already used" in n for n in report["written"][2]["notes"])
    assert any("converted P to RGB" in n for n in report["written"][1]["notes"])
    reasons = {(s["input"], s["colour"]): s["reason"] for s in report["skipped"]}
    assert "not found" in reasons[("imgs/missing.png", "red")]
    assert "unknown colour" in reasons[("imgs/a.png", "teal")] and "colour table" in reasons[("imgs/a.png", "teal")]
    assert "unknown colour" in reasons[("imgs/a.png", "notacolour")]
    assert "not a readable image" in reasons[("imgs/c.txt", "red")]
    assert "empty colour" in reasons[("imgs/a.png", "")]
    assert report["counts"] == {"items": 8, "written": 3, "skipped": 5, "already_done": 0}
    for name in outs:
        assert (tmp_path / "out" / name).is_file()


def test_colorize_csv_needs_its_columns(onnx_col, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("path,hue\nx.png,red\n")
    with pytest.raises(ValueError, match="image,colour"):
        colorize_dataset(onnx_col, bad, tmp_path / "out", progress=False)


def test_colorize_data_json(onnx_col, torch_col, tmp_path):
    if not (AYNA / "validation" / "data.json").is_file():
        pytest.skip(f"original dataset not found at {AYNA}")
    rows = [r for r in json.loads((AYNA / "validation" / "data.json").read_text())
            if (AYNA / "validation" / "inputs" / r["input_polygon"]).is_file()][:3]
    assert rows
    ds = tmp_path / "validation"
    (ds / "inputs").mkdir(parents=True)
    for r in rows:
        shutil.copy(AYNA / "validation" / "inputs" / r["input_polygon"], ds / "inputs" / r["input_polygon"])
    rows.append({"input_polygon": "ghost.png", "colour": "red", "output_image": "red_ghost.png"})
    rows.append({"input_polygon": rows[0]["input_polygon"], "colour": "red"})  # no output_image
    (ds / "data.json").write_text(json.dumps(rows))
    report = colorize_dataset(onnx_col, ds, tmp_path / "out", progress=False)
    assert report["layout"] == "data.json"
    assert [w["output"] for w in report["written"]] == [r["output_image"] for r in rows[:-2]]
    for r in rows[:-2]:
        with Image.open(AYNA / "validation" / "inputs" / r["input_polygon"]) as src, \
                Image.open(tmp_path / "out" / r["output_image"]) as out:
            assert out.size == src.size and out.mode == "RGB"
    if any(Image.open(ds / "inputs" / r["input_polygon"]).size != (SIZE, SIZE) for r in rows[:-2]):
        assert any("resized" in n for n in report["notes"])  # the originals are 256 px, the model 32 px
    reasons = [s["reason"] for s in report["skipped"]]
    assert any("not found" in r for r in reasons) and any("lacks output_image" in r for r in reasons)
    # the same job through the PyTorch backend writes the same images
    report2 = colorize_dataset(torch_col, ds / "data.json", tmp_path / "out2", progress=False)
    assert report2["counts"] == report["counts"]
    for r in rows[:-2]:
        a = np.asarray(Image.open(tmp_path / "out" / r["output_image"]))
        b = np.asarray(Image.open(tmp_path / "out2" / r["output_image"]))
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_outputs_never_overwrite_inputs_or_escape(onnx_col, polygons, tmp_path):
    Image.fromarray(polygons[0]).save(tmp_path / "a.png")
    csv = tmp_path / "jobs.csv"
    csv.write_text("image,colour,output\na.png,red,a.png\na.png,red,../escape.png\n")
    report = colorize_dataset(onnx_col, csv, tmp_path, progress=False)
    reasons = [s["reason"] for s in report["skipped"]]
    assert any("overwrite its input" in r for r in reasons) and any("leave the output folder" in r for r in reasons)
    assert report["counts"]["written"] == 0 and not (tmp_path.parent / "escape.png").exists()
