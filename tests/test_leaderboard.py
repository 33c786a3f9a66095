"""The leaderboard (``polycolor-eval``): model discovery, held-out data, scoring, ranking, outputs, CLI.

Tiny checkpoints are made with ``tests/conftest.py``'s ``checkpoint_factory``: ``m1`` with random weights
(output layer amplified: noise) and ``m2`` whose UNet output layer is zeroed with bias 1, so it paints every
image plain white (the background of three of the four held-out families: clearly better than noise on
PSNR/SSIM/whole-image colour error); ``m4`` is an unfinished run. LPIPS runs with ``--lpips local``, an empty
``$TORCH_HOME`` and an empty ``$POLYCOLOR_CACHE``, so it is deterministically "n/a (offline)" and no test
touches the network.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from polycolor.eval import heldout, models, report, schema, scoring
from polycolor.eval import leaderboard as L
from polycolor.eval.cli import main
from polycolor.polycolor_core.model.variants import get_variant

AYNA_VAL = Path(__file__).resolve().parents[1].parent / "shared/data/ayna/validation"
N, SIZE = 8, 32
# --output raw: the CLI tests below check the model rows (the default, both, adds "mN composite" rows; see
# test_cli_default_scores_raw_and_composite)
FAST = ["--n", str(N), "--size", str(SIZE), "--lpips", "local", "--output", "raw"]


def _save(make_checkpoint, runs: Path, name: str, *, blank: bool = False, noisy: bool = False,
          finished: bool = True, seed: int = 0) -> None:
    """A tiny random-weight checkpoint of variant ``name`` at ``runs/<name>/checkpoint`` (conftest's factory)."""
    def edit(model):
        if blank:  # a zero output layer with bias 1 outputs plain white: the background of most held-out samples
            model.unet.conv_out.weight.zero_()
            model.unet.conv_out.bias.fill_(1.0)
        if noisy:  # random weights, output layer amplified: a clearly bad model
            model.unet.conv_out.weight.mul_(10.0)

    make_checkpoint(runs / name / "checkpoint", variant=get_variant(name).tiny(), seed=seed, image_size=32,
                    edit=edit, step=1, total_steps=1 if finished else 10, finished=finished,
                    lpips_dropped=get_variant(name).loss.lpips > 0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, checkpoint_factory) -> Path:
    d = tmp_path_factory.mktemp("lb") / "runs"
    _save(checkpoint_factory, d, "m1", noisy=True, seed=1)
    _save(checkpoint_factory, d, "m2", blank=True)
    _save(checkpoint_factory, d, "m4", finished=False, seed=4)
    return d


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models on a shared 2-core CPU: one torch thread is 10-100x faster than two oversubscribed ones."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _offline_lpips(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))
    monkeypatch.setenv("POLYCOLOR_CACHE", str(tmp_path_factory.mktemp("pc_cache")))  # no cached LPIPS weights
    monkeypatch.delenv(models.RUNS_ENV, raising=False)


@pytest.fixture(scope="module")
def lb(runs, tmp_path_factory) -> L.Leaderboard:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home_lb")))
        mp.setenv("POLYCOLOR_CACHE", str(tmp_path_factory.mktemp("pc_cache_lb")))
        return L.run_leaderboard("m1,m2", runs, n=N, size=SIZE, lpips="local")


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _assert_ranked(rows: list[dict | schema.ModelResult], key: str, ascending: bool) -> None:
    get = (lambda r: r["metrics"][key] if key != "images_per_s" else r["images_per_s"]) if isinstance(rows[0], dict) \
        else (lambda r: r.value(key))
    vals = [get(r) for r in rows]
    vals = [math.nan if v is None else v for v in vals]
    finite = [v for v in vals if not math.isnan(v)]
    assert finite == sorted(finite, reverse=not ascending), (key, vals)
    ranks = [(r["rank"] if isinstance(r, dict) else r.rank) for r in rows]
    model_ranks = [x for x in ranks if x is not None]
    assert model_ranks == list(range(1, len(model_ranks) + 1))


# ---------------------------------------------------------------------------------------------- the CLI


def test_cli_table_outputs_and_ranking(runs, tmp_path):
    out = tmp_path / "out"
    res = invoke("--models", "m1..m2", "--runs", str(runs), *FAST, "--by-family", "--out", str(out))
    assert res.exit_code == 0, res.output
    text = res.stdout
    for s in ("polycolor leaderboard", "held-out synthetic split", f"seed {heldout.HELDOUT_SEED}", "m1", "m2",
              schema.REFERENCE_NAME, "n/a (offline)", "test-tiny-random", "dropped", "per family", "canonical", "dark"):
        assert s in text, s
    assert "LPIPS unavailable (offline)" in text  # the footnote carries the scorer's .reason

    # JSON: every row, ranked by de_polygon ascending, models numbered 1..k, reference unranked
    d = json.loads((out / "leaderboard.json").read_text())
    assert d["ok"] is True and d["sort"] == {"key": "de_polygon", "ascending": True}
    assert d["dataset"]["n"] == N and d["dataset"]["seed"] == heldout.HELDOUT_SEED and d["dataset"]["size"] == SIZE
    assert d["dataset"]["families"] == {f: N // 4 for f in heldout.HELDOUT_FAMILIES}
    assert d["lpips"]["available"] is False and "offline" in d["lpips"]["status"]
    names = [r["name"] for r in d["rows"]]
    assert sorted(names) == sorted(["m1", "m2", schema.REFERENCE_NAME])
    _assert_ranked(d["rows"], "de_polygon", ascending=True)
    ref = next(r for r in d["rows"] if r["kind"] == "reference")
    assert ref["rank"] is None and ref["params"] == 0
    for r in d["rows"]:
        assert r["metrics"]["lpips"] is None
        assert 0 <= r["metrics"]["ssim"] <= 1 and 0 <= r["metrics"]["iou"] <= 1 and r["images_per_s"] > 0
        assert set(r["by_family"]) == set(heldout.HELDOUT_FAMILIES)
    m1 = next(r for r in d["rows"] if r["name"] == "m1")
    m2 = next(r for r in d["rows"] if r["name"] == "m2")
    assert m1["params"] > 10_000 and m1["params"] == m2["params"]
    assert m1["lpips_training"] == "not in loss" and m2["lpips_training"] == "dropped"
    assert m1["text_encoder"] == "test-tiny-random" and m1["finished"] is True

    # CSV: the same rows in the same order with the same numbers
    rows = list(csv.DictReader((out / "leaderboard.csv").open()))
    assert [r["model"] for r in rows] == names
    for c, j in zip(rows, d["rows"]):
        assert float(c["de_polygon"]) == pytest.approx(j["metrics"]["de_polygon"], rel=1e-5)
        assert c["rank"] == ("" if j["rank"] is None else str(j["rank"]))
        assert c["lpips"] == ""

    # markdown: table, per-family section, LPIPS footnote
    md = (out / "leaderboard.md").read_text()
    assert md.splitlines()[0] == "# polycolor leaderboard"
    assert "| Rank | Model | LPIPS [^lpips] | SSIM |" in md
    assert "## Per family" in md and "[^lpips]: n/a (offline)" in md
    for name in names:
        assert f"| {name} |" in md
    table_lines = [ln for ln in md.splitlines() if ln.startswith("| ") and "Rank" not in ln and "Family" not in ln]
    assert [ln.split(" | ")[1] for ln in table_lines[:3]] == names  # same order as the JSON

    # contact sheet: rows input, target, then the 3 ranked rows; 8 sample columns
    im = Image.open(out / "contact_sheet.png")
    cell = 96  # 32 px samples are shown at 96 px
    assert im.size == (190 + N * (cell + 4) + 4, 26 + 36 + 5 * (cell + 4) + 4)
    arr = np.asarray(im.convert("RGB"))
    # the "target" row's first column is the first sheet sample's target, upscaled (nearest)
    data = heldout.build_heldout(N, SIZE)
    first = data.samples[0]  # the sheet's first column: the first canonical sample
    tgt = np.asarray(Image.fromarray(first.target).resize((cell, cell), Image.NEAREST))
    y0, x0 = 26 + 36 + (cell + 4), 190 + 4
    assert np.array_equal(arr[y0:y0 + cell, x0:x0 + cell], tgt)


def test_cli_sort_by_higher_is_better_metric(runs, tmp_path):
    res = invoke("--models", "m2,m1", "--runs", str(runs), *FAST, "--sort", "psnr", "--json", str(tmp_path / "a.json"),
                 "--no-reference")
    assert res.exit_code == 0, res.output
    d = json.loads((tmp_path / "a.json").read_text())
    assert d["sort"] == {"key": "psnr", "ascending": False}
    _assert_ranked(d["rows"], "psnr", ascending=False)
    assert [r["name"] for r in d["rows"]] == ["m2", "m1"]  # the blank white model is far closer than random noise
    assert d["rows"][0]["metrics"]["psnr"] > d["rows"][1]["metrics"]["psnr"] + 3


def test_missing_model_names_the_train_command(runs):
    res = invoke("--models", "m1..m3", "--runs", str(runs), *FAST)
    assert res.exit_code == 1
    cmd = f"polycolor train m3 --profile cpu --out {(runs / 'm3').as_posix()}"
    assert cmd in res.stdout
    assert "m3" in res.stdout and "no checkpoint" in res.stdout
    assert " m1 " in res.stdout and " m2 " in res.stdout  # the others are still scored


def test_runs_folder_from_env_and_default(runs, monkeypatch, tmp_path):
    monkeypatch.setenv(models.RUNS_ENV, str(runs))
    assert models.resolve_runs_dir() == runs
    res = invoke("--models", "m1", *FAST)
    assert res.exit_code == 0, res.output
    monkeypatch.delenv(models.RUNS_ENV)
    monkeypatch.chdir(tmp_path)
    assert models.resolve_runs_dir() == Path("runs")
    res = invoke("--models", "m5", *FAST, "--no-reference")
    assert res.exit_code == 1
    assert "polycolor train m5 --profile cpu --out runs/m5" in res.stdout
    assert "runs folder runs does not exist" in res.stdout


@pytest.mark.parametrize("spec", ["m9", "m3..m1", "m1..", "m1..m3..m5", "x1,m2", ","])
def test_bad_selection_is_a_usage_error(runs, spec):
    res = CliRunner().invoke(main, ["--models", spec, "--runs", str(runs)])
    assert res.exit_code == 2, res.output
    assert "Invalid value for '--models'" in res.output
    assert "Valid model names" in res.output


def test_bad_data_is_a_usage_error(runs, tmp_path):
    res = CliRunner().invoke(main, ["--models", "m1", "--runs", str(runs), "--data", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "--data" in res.output


def test_user_families_are_scored_at_their_own_size(runs, tmp_path):
    from polycolor.polycolor_core.data.families import USER_FAMILIES

    res = invoke("--models", "m2", "--runs", str(runs), "--n", "4", "--size", str(SIZE), "--lpips", "off",
                 "--user-families", "1", "--no-reference", "--json", str(tmp_path / "f.json"),
                 "--sheet", str(tmp_path / "f.png"))
    assert res.exit_code == 0, res.output
    d = json.loads((tmp_path / "f.json").read_text())
    assert d["dataset"]["families"] == {**{f: 1 for f in heldout.HELDOUT_FAMILIES}, **{f: 1 for f in USER_FAMILIES}}
    assert d["dataset"]["size"] is None and "per user-input family" in d["dataset"]["description"]
    for r in d["rows"]:
        assert set(r["by_family"]) == set(heldout.HELDOUT_FAMILIES) | set(USER_FAMILIES)
    data = heldout.build_heldout(4, SIZE, user_n=1)
    hires = next(s for s in data.samples if s.family == "hires")
    assert max(hires.input.shape[:2]) >= 256 and hires.input.shape == hires.target.shape
    assert Image.open(tmp_path / "f.png").size[0] == 190 + 8 * (160 + 4) + 4  # 8 columns at the largest cell
    res = CliRunner().invoke(main, ["--models", "m2", "--runs", str(runs), "--data", str(tmp_path),
                                    "--user-families", "1"])
    assert res.exit_code == 2 and "held-out split only" in res.output


def test_unfinished_run_is_scored_and_flagged(runs, tmp_path):
    res = invoke("--models", "m4", "--runs", str(runs), *FAST, "--json", str(tmp_path / "u.json"))
    assert res.exit_code == 0, res.output
    assert "unfinished 1/10" in res.stdout
    row = next(r for r in json.loads((tmp_path / "u.json").read_text())["rows"] if r["name"] == "m4")
    assert row["status"] == "unfinished" and row["finished"] is False and row["rank"] == 1


def test_paths_to_checkpoints_and_run_folders(runs):
    res = invoke("--models", f"{runs / 'm1' / 'checkpoint'},{runs / 'm2'}", *FAST, "--no-reference")
    assert res.exit_code == 0, res.output
    assert " m1 " in res.stdout and " m2 " in res.stdout
    res = invoke("--models", str(runs / "nothing-here"), *FAST, "--no-reference")
    assert res.exit_code == 1 and "does not exist" in res.stdout


def test_data_folder_original_layout(runs, tmp_path):
    if not (AYNA_VAL / "data.json").is_file():
        pytest.skip(f"original validation split not found at {AYNA_VAL}")
    n = len(json.loads((AYNA_VAL / "data.json").read_text()))
    res = invoke("--models", "m1", "--runs", str(runs), "--data", str(AYNA_VAL), "--lpips", "local", "--by-family",
                 "--json", str(tmp_path / "v.json"), "--sheet", str(tmp_path / "v.png"))
    assert res.exit_code == 0, res.output
    assert f"{n} images at 128x128 px" in res.stdout
    d = json.loads((tmp_path / "v.json").read_text())
    assert d["dataset"]["families"] == {"folder": n} and d["dataset"]["seed"] is None
    ref = next(r for r in d["rows"] if r["kind"] == "reference")
    assert ref["metrics"]["de_polygon"] < 5  # the flood fill nearly reproduces the original targets
    assert Image.open(tmp_path / "v.png").size[0] == 190 + n * (128 + 4) + 4


# ----------------------------------------------------------------------------------------- the Python API


def test_python_api_ranks_by_every_metric(lb):
    assert lb.ok and len(lb.models) == 2 and lb.reference is not None and len(lb.data) == N
    _assert_ranked(lb.rows, "de_polygon", ascending=True)
    for key in ("psnr", "ssim", "iou", "de_image", "images_per_s"):
        rows = L.rank_rows(list(lb.rows), key)
        asc = key != "images_per_s" and not schema.METRICS[key].higher_is_better
        _assert_ranked(rows, key, asc)
    by_psnr = [r.name for r in L.rank_rows(list(lb.models), "psnr")]
    by_de_image = [r.name for r in L.rank_rows(list(lb.models), "de_image")]
    assert by_psnr == by_de_image == ["m2", "m1"]
    L.rank_rows(lb.rows, lb.sort)  # restore


def test_oracle_model_ranks_first(runs, monkeypatch):
    """A colorizer that paints like the flood fill must rank first by de_polygon (monkeypatched m2)."""
    from polycolor.eval.baseline import flood_fill_colorize
    from polycolor.polycolor_core.colour.colours import resolve_colour
    from polycolor.export.colorizer import ColorizeResult

    real = models.load_colorizer

    class Oracle:
        image_size, meta = SIZE, {"variant": {"name": "oracle"}, "text_encoder": {"name": "none"}, "finished": True}

        def colorize(self, images, colours, progress=None, output="composite"):
            return ColorizeResult([flood_fill_colorize(im, resolve_colour(c)) for im, c in zip(images, colours)])

    def fake(source, *a, **k):
        return Oracle() if Path(source).name == "m2" else real(source, *a, **k)

    monkeypatch.setattr(models, "load_colorizer", fake)
    board = L.run_leaderboard(["m1", "m2"], runs, n=N, size=SIZE, lpips="off", reference=False)
    assert [r.name for r in board.rows] == ["m2", "m1"] and board.rows[0].rank == 1
    assert board.rows[0].metrics["de_polygon"] < board.rows[1].metrics["de_polygon"] - 10
    assert board.lpips.cell == "n/a (disabled)"


def test_markdown_table_string(lb):
    table = lb.markdown_table()
    lines = table.splitlines()
    assert lines[0].startswith("| Rank | Model |") and len(lines) == 2 + len(lb.rows)
    assert "flood-fill (reference)" in table and "| ref |" in table
    full = lb.markdown(by_family=True)
    assert table in full and "## Per family" in full


def test_background_changed_column(lb, tmp_path):
    """``bg_changed``: 0 for the flood fill on clean white backgrounds, most of a dark background for m2 (white)."""
    assert lb.reference.by_family["canonical"]["bg_changed"] == 0.0
    m2 = next(r for r in lb.models if r.name == "m2")
    assert m2.by_family["dark"]["bg_changed"] > 50 and 0 <= m2.metrics["bg_changed"] <= 100
    assert "| bg chg % |" in lb.markdown_table().splitlines()[0]
    rows = list(csv.DictReader(report.write_csv(lb, tmp_path / "t.csv").open()))
    assert float(next(r for r in rows if r["model"] == "m2")["bg_changed"]) == pytest.approx(m2.metrics["bg_changed"],
                                                                                            rel=1e-5)


def test_composite_rows_next_to_raw(runs, monkeypatch):
    """``outputs=("raw", "composite")``: one more row per model, scoring what Colorizer users get by default."""
    real, asked = models.load_colorizer, []

    def spy(*a, **k):
        col = real(*a, **k)
        colorize = col.colorize
        col.colorize = lambda *ca, **ck: (asked.append(ck.get("output")), colorize(*ca, **ck))[1]
        return col

    monkeypatch.setattr(models, "load_colorizer", spy)
    board = L.run_leaderboard(["m2"], runs, n=N, size=SIZE, lpips="off", reference=False,
                              outputs=("raw", "composite"))
    by_name = {r.name: r for r in board.rows}
    assert set(by_name) == {"m2", "m2 composite"} and board.ok
    raw, comp = by_name["m2"], by_name["m2 composite"]
    assert (raw.output, comp.output) == ("raw", "composite") and sorted(r.rank for r in board.rows) == [1, 2]
    assert asked == ["raw", "raw"]  # warm-up + one timed pass for both rows, one load
    # the composite row is painted from that pass: bit for bit what output="composite" gives
    col = real(runs / "m2", "torch", "cpu", 16, None, None)
    direct = col.colorize(board.data.inputs, board.data.colours, output="composite").images
    assert all(np.array_equal(a, b) for a, b in zip(direct, comp.predictions))
    assert not all(np.array_equal(a, b) for a, b in zip(raw.predictions, comp.predictions))
    assert comp.params == raw.params and comp.variant == raw.variant
    assert all(0 <= r.metrics["bg_changed"] <= 100 and math.isfinite(r.metrics["de_image"]) for r in board.rows)
    assert board.settings["outputs"] == ["raw", "composite"]
    with pytest.raises(ValueError, match="outputs"):
        L.run_leaderboard(["m2"], runs, n=N, size=SIZE, lpips="off", outputs=("both",))


def test_json_roundtrip_has_no_nan(lb, tmp_path):
    p = report.write_json(lb, tmp_path / "x.json", per_sample=True)
    d = json.loads(p.read_text())  # strict JSON: NaN became null
    row = d["rows"][0]
    assert len(row["per_sample"]["de_polygon"]) == N


def test_missing_models_from_api(runs):
    refs = models.resolve_models("m1..m3", runs)
    assert [r.found for r in refs] == [True, True, False]
    assert refs[2].train_command == f"polycolor train m3 --profile cpu --out {(runs / 'm3').as_posix()}"
    with pytest.raises(ValueError, match="Valid model names"):
        models.resolve_models("m0", runs)


def test_heldout_split_and_sheet_samples():
    data = heldout.build_heldout(96, 64)
    assert data.family_counts() == {f: 24 for f in heldout.HELDOUT_FAMILIES}
    assert data.samples[0].input.shape == (64, 64, 3)
    assert heldout.HELDOUT_SEED not in (0, 10_000)
    picks = L.pick_sheet_samples(data, 8)
    assert len(picks) == len(set(picks)) == 8
    fams = [data.samples[i].family for i in picks]
    assert {f: fams.count(f) for f in set(fams)} == {f: 2 for f in heldout.HELDOUT_FAMILIES}
    again = heldout.build_heldout(96, 64)
    assert all(np.array_equal(a.input, b.input) for a, b in zip(data.samples, again.samples))


@pytest.mark.slow
def test_onnx_export_folder_is_scored_like_its_checkpoint(tmp_path, checkpoint_factory):
    pytest.importorskip("onnxruntime")
    try:
        from polycolor.export.onnx_export import export_model
    except ImportError as exc:  # a build without the exporter
        pytest.skip(f"polycolor.export unavailable: {exc}")
    runs = tmp_path / "runs"
    _save(checkpoint_factory, runs, "m3", seed=3)
    export_model(runs / "m3", tmp_path / "exports" / "m3")
    res = invoke("--models", f"m3,{tmp_path / 'exports' / 'm3'}", "--runs", str(runs), *FAST, "--no-reference",
                 "--precision", "fp32", "--json", str(tmp_path / "o.json"))
    assert res.exit_code == 0, res.output
    rows = {r["backend"]: r for r in json.loads((tmp_path / "o.json").read_text())["rows"]}
    assert set(rows) == {"torch", "onnx"}
    assert rows["onnx"]["name"] == str(tmp_path / "exports" / "m3")  # same folder name as m3: labelled by path
    for key in ("params", "text_encoder", "lpips_training", "finished", "variant"):
        assert rows["onnx"][key] == rows["torch"][key], key
    assert rows["onnx"]["metrics"]["de_polygon"] == pytest.approx(rows["torch"]["metrics"]["de_polygon"], abs=0.5)


def test_lpips_column_when_available(runs, monkeypatch):
    """With a (TEST-ONLY, random-backbone) LPIPS scorer the column holds numbers and can be the sort key."""
    from polycolor.eval.metrics import LpipsScorer

    scorer = LpipsScorer(pretrained_backbone=False, device="cpu")
    if not scorer.available:
        pytest.skip(f"lpips not usable here: {scorer.reason}")
    monkeypatch.setattr(scoring, "make_lpips_scorer",
                        lambda mode="auto", device="cpu": (scorer, schema.LpipsInfo(True, True, scorer.status)))
    board = L.run_leaderboard("m1,m2", runs, n=N, size=SIZE, sort="lpips")
    assert board.sort == "lpips" and board.lpips.available
    for r in board.rows:
        assert math.isfinite(r.metrics["lpips"]) and r.metrics["lpips"] >= 0
    _assert_ranked(board.rows, "lpips", ascending=True)
    assert board.reference.metrics["lpips"] == pytest.approx(0.0, abs=1e-6)  # the flood fill is exact here
    assert "n/a" not in board.markdown_table() and "[^lpips]" not in board.markdown()


def test_sort_by_unavailable_lpips_falls_back_with_a_note(runs):
    board = L.run_leaderboard(["m2"], runs, n=4, size=SIZE, lpips="off", sort="lpips")
    assert board.sort == schema.DEFAULT_SORT
    assert any("--sort lpips" in n for n in board.notes)
    assert [r.rank for r in board.rows if r.kind == "model"] == [1]


def test_cli_default_scores_raw_and_composite(runs, tmp_path):
    res = invoke("--models", "m2", "--runs", str(runs), "--n", str(N), "--size", str(SIZE), "--lpips", "off",
                 "--no-reference", "--json", str(tmp_path / "both.json"))
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads((tmp_path / "both.json").read_text())["rows"]}
    assert set(rows) == {"m2", "m2 composite"}
    assert (rows["m2"]["output"], rows["m2 composite"]["output"]) == ("raw", "composite")


def test_worker_processes_give_the_same_rows_in_the_same_order(runs):
    """``jobs=2`` scores whole models in two spawned processes: the same numbers and order as one process."""
    kw = dict(n=N, size=SIZE, lpips="off", outputs=("raw", "composite"), backend="torch")
    one = L.run_leaderboard(["m4", "m1", "m2", "m3"], runs, **kw)
    two = L.run_leaderboard(["m4", "m1", "m2", "m3"], runs, jobs=2, **kw)
    assert [r.name for r in two.rows] == [r.name for r in one.rows] and len(one.rows) == 7
    for a, b in zip(one.rows, two.rows):
        assert a.metrics.keys() == b.metrics.keys() and a.status == b.status and a.rank == b.rank
        assert all(a.metrics[k] == b.metrics[k] or math.isnan(a.metrics[k]) and math.isnan(b.metrics[k])
                   for k in a.metrics)
        if a.predictions is not None:
            assert all(np.array_equal(x, y) for x, y in zip(a.predictions, b.predictions))
    assert [m.name for m in two.missing] == ["m3"] and two.settings["jobs"] == 2
