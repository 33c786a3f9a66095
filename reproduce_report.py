"""The report of ``polycolor reproduce``: deviations from the study, and ``report.md`` / ``report.json``.

``reproduce.py`` trains, scores and judges; this module only turns what they produced (the claims, each seed's
leaderboard, each run's saved settings and metrics, the colour table) into the report folder's files. The first
screen is the claims table and the leaderboard; the setup, deviations, per-family tables and pictures follow.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .eval.schema import jsonable

from .polycolor_core.runtime.atomic import write_text_atomic
from .polycolor_core.training.profiles import get_profile, profile_train_settings, run_variant
from .polycolor_core.model.variants import LAB_UNIT, RAW_LAB_UNIT, get_variant
from .reproduce_plots import read_metrics

__all__ = ["deviations", "write_report"]


def deviations(runs: Path, models: list[str], profile: str) -> list[str]:
    """Plain statements of every way this run differs from the study's setup (the ``report`` profile), from
    each model's saved settings (``ModelInfo``); the profile's settings stand in for a model not trained yet."""
    from .polycolor_core.model.modelinfo import ModelInfo

    notes: list[str] = []
    prof = get_profile(profile)
    study = get_profile("report").train
    for name in models:
        info = ModelInfo.find(runs / name)
        # a model's own saved settings win; the profile's are the fallback for a model with no checkpoint yet
        t = (info.train_config if info is not None else {}) or profile_train_settings(prof, name)
        weights = (info.loss_weights if info is not None else None) or dataclasses.asdict(
            get_variant(run_variant(name)).loss)
        precision = info.precision if info is not None else None
        has_lpips = weights.get("lpips", 0) > 0 and not (info is not None and info.lpips_dropped)
        # a checkpoint saved before lab_unit was a setting trained in raw LAB units (TrainConfig.from_dict)
        lab_unit = t.get("lab_unit", RAW_LAB_UNIT if info is not None else LAB_UNIT) if weights.get("colour", 0) > 0 else None
        notes += [f"{name}: {n}" for n in _setting_notes(t, has_ssim=weights.get("ssim", 0) > 0,
                                                         precision=precision, has_lpips=has_lpips, lab_unit=lab_unit)]
        if info is None:
            continue
        if info.lpips_dropped:
            notes.append(f"{name}: {info.lpips_note or 'LPIPS term dropped'}")
        enc = info.text_encoder.name
        study_enc = str(study.get("text_encoder", "clip-vit-b32")).split(":", 1)[0]
        if enc and enc != study_enc:
            notes.append(f"{name}: text encoder {enc} ({info.text_encoder.dim}-d) instead of CLIP ViT-B/32 "
                         f"(the `report` profile's {study_enc}; CLIP weights need a download; see `polycolor train "
                         "--help`).")
    return _dedupe_model_notes(notes, models)


def _setting_notes(t: dict, has_ssim: bool = True, precision: str | None = None,
                   has_lpips: bool = False, lab_unit: float | None = None) -> list[str]:
    """Deviations of one model's settings ``t`` from the study's (``PROFILES["report"]``)."""
    study = get_profile("report").train
    size, lr, batch = study["image_size"], study["lr"], study["batch_size"]
    notes = []
    if t.get("image_size", size) != size:
        notes.append(f"works at {t['image_size']} px (the study: {size} px); the leaderboard scores at 128 px by "
                     "resizing inputs down and predictions back up.")
    if t.get("size_schedule"):
        stages = ", ".join(f"{share:.0%} at {sz} px" for sz, share in t["size_schedule"])
        notes.append(f"progressive resizing: {stages}, the rest at {t['image_size']} px (the study: every step at "
                     f"{size} px), each stage with its own warm-up/cosine.")
    if t.get("lr", lr) != lr:
        notes.append(f"peak learning rate {t['lr']:g} (the study: {lr:g}), to converge within the CPU budget.")
    if t.get("batch_size", batch) != batch:
        notes.append(f"batch size {t['batch_size']} (the `report` profile: {batch}): more optimiser steps in the CPU "
                     "budget.")
    if precision is None and t.get("bf16"):  # settings of a run written before `precision`
        precision = "bf16"
    if precision is not None and precision != study.get("precision", "fp32"):
        why = (" (chosen by precision 'auto': the faster native precision here, timed, and not vetoed on quality)"
               if t.get("precision") == "auto" else "")
        notes.append(f"{precision} autocast in training{why} (the study: {study.get('precision', 'fp32')}).")
    if t.get("conditioning", "text") != study.get("conditioning", "text"):
        film = " that also scales and shifts every UNet block (FiLM)" if t["conditioning"] == "text+rgb+film" else ""
        notes.append(f"conditioning {t['conditioning']}: the text embedding plus one token of the resolved RGB{film} "
                     "(the study: the text embedding only); it measured best on held-out colour names and hex codes.")
    if lab_unit is not None and lab_unit != LAB_UNIT:
        notes.append(f"the LAB colour term in units of {lab_unit:g} LAB step(s) (the study's runs here: 100, L's full "
                     "range, the 0..1 scale of the other terms); the model was tuned and measured that way.")
    if t.get("data", study["data"]) != study["data"]:
        notes.append(f"training data {t['data']} (the study's ablation: {study['data']}).")
    if t.get("colours"):
        notes.append(f"training palette {t['colours']} (the study: its 8 colour names); held-out names are never "
                     "drawn.")
    if t.get("lpips_warmup_frac") and has_lpips:
        notes.append(f"the LPIPS term's weight ramps from 0 to its value over the first {t['lpips_warmup_frac']:.0%} "
                     "of the steps (the study: constant). At its full weight from step 0, m2 stalls with every "
                     "polygon one mean colour (canonical dE00 42.9 vs 9.7 ramped).")
    if t.get("ssim_warmup_frac") and has_ssim:
        notes.append(f"the SSIM term's weight ramps from 0 to its value over the first {t['ssim_warmup_frac']:.0%} of "
                     "the steps (the study: constant). Short runs with SSIM at full weight from step 0 stall with "
                     "every polygon one mean colour.")
    return notes


def _dedupe_model_notes(notes: list[str], models: list[str]) -> list[str]:
    """Collapse "m1: X", "m2: X" ... into "m1, m2: X" ("all models: X" when every model shares it)."""
    grouped: dict[str, list[str]] = {}
    plain: list[str] = []
    for n in notes:
        head, sep, rest = n.partition(": ")
        if sep and head in models:
            names = grouped.setdefault(rest, [])
            if head not in names:
                names.append(head)
        else:
            plain.append(n)
    out = []
    for rest, names in grouped.items():
        who = "all models" if len(models) > 1 and names == list(models) else ", ".join(names)
        out.append(f"{who}: {rest}")
    return plain + out


def _lpips_lines(runs: Path, models: list[str]) -> list[str]:
    """Which models trained with the LPIPS term and where its weights came from (each model's saved settings)."""
    from .polycolor_core.model.modelinfo import ModelInfo

    infos = {m: ModelInfo.find(runs / m) for m in models}
    used = [m for m, i in infos.items() if i is not None and i.lpips_source]
    if not used:
        return []
    sources = sorted({infos[m].lpips_source for m in used})
    return [f"LPIPS used in training for {', '.join(used)}; weights: {'; '.join(sources)}.", ""]


def _colour_lines(table: dict | None) -> list[str]:
    """The report's colour-generalisation section (``eval/colours.py``), for the wide-palette models."""
    if not table:
        return []
    from .eval.colours import THRESHOLD, render_markdown

    return ["## Colours beyond the eight", "",
            "Mean in-polygon CIEDE2000 of the composite and the share under " f"{THRESHOLD:g}, one generated polygon "
            "per colour: the 8 canonical names, CSS and XKCD names held out of every training palette, random "
            "evaluation hex codes; the report scores up to 40 names per set, `python -m polycolor.eval.colours MODEL` "
            "scores them all. Reference rows: the "
            "trained name nearest in text embedding, and the exact resolved RGB (the ceiling).", "",
            render_markdown(table), ""]


def precision_cell(info) -> str:
    """A run's training precision and how ``auto`` chose it (training_precision.py), for the per-model table."""
    if info is None:
        return "-"
    choice = info.meta.get("precision_choice") or {}
    if choice.get("requested") != "auto":
        return info.precision
    rates = ", ".join(f"{p} {r:.1f}" for p, r in (choice.get("rates") or {}).items())
    return f"{info.precision} (auto: {choice.get('reason', '').split(': ', 1)[-1]}{'; img/s ' + rates if rates else ''})"


def _claims_intro(prof, seeds: list[int]) -> list[str]:
    if not prof.ranks:
        return [f"**Profile `{prof.name}` ranks nothing**: its schedule is too short for the ablation to leave its "
                "plateau, so the verdicts below are the pipeline's, not the study's. `polycolor reproduce` (the "
                "`cpu` profile) is the reproduction.", ""]
    if len(seeds) == 1:
        return ["One seed: each verdict is an indication (its interval covers the held-out images, not the training "
                "seed's spread); `--seeds 0,1,2` trains every run once per seed.", ""]
    return []


def write_report(out: Path, profile: str, plan, seeds: list[int], boards: dict, claims, curves: Path | None,
                 notes: list[str], train_seconds: dict[str, float], seconds: float, colours: dict | None = None,
                 everyday_board=None, sweep_claims: dict | None = None, sweep_png: Path | None = None,
                 sweep_boards: dict | None = None, sweep_pending=()) -> Path:
    """report.md (claims table and leaderboard first) and report.json. ``plan``: the ``RunJob``s; ``boards``:
    {seed: Leaderboard}; ``claims``: ``ClaimResult``s; ``sweep_*``: the budget sweep's (empty without one);
    ``sweep_pending``: the claims whose sweep is still training (the report is written again when it ends)."""
    from .eval.claims import claims_markdown
    from .eval.report import family_markdown_table, markdown_table
    from .eval.seeds import aggregate, family_seeds_markdown, seeds_markdown
    from .polycolor_core import __version__
    from .polycolor_core.model.modelinfo import ModelInfo
    from .polycolor_core.runtime.precision import cpu_description

    prof = get_profile(profile)
    first = boards[seeds[0]]
    runs = list(dict.fromkeys(j.run for j in plan))
    rows = aggregate(boards)
    cpu, flags = cpu_description()
    sweep_claims = sweep_claims or {}
    board_md = (markdown_table(first) if len(seeds) == 1 else seeds_markdown(rows, len(seeds)))
    lines = [
        "# polycolor: the eight-model study, reproduced",
        "",
        f"polycolor {__version__}, profile `{profile}` ({prof.description}); seeds {', '.join(map(str, seeds))}. "
        f"Total wall time {seconds / 60:.1f} min on {cpu} ({', '.join(flags) or 'no AVX-512/AMX flags'}).",
        "",
        "## Does the study hold?",
        "",
        *_claims_intro(prof, seeds),
        claims_markdown(claims, sweep_claims),
        "",
        *([f"Budget sweep: the claims that did not hold, their two runs at 4x the steps (same seeds): "
           f"![budget sweep]({sweep_png.name})", ""] if sweep_png else []),
        *([f"Budget sweep **still training** for claim{'s' if len(sweep_pending) > 1 else ''} "
           f"{', '.join(map(str, sweep_pending))} (their two runs at 4x the steps, same seeds): this report is "
           "written again with an \"at 4x steps\" column and the plot when it ends; an interrupted sweep continues "
           "when the same command is rerun.", ""] if sweep_pending else []),
        f"## Leaderboard (held-out shapes, scored at {first.data.size or 128} px)",
        "",
        f"Data: {first.data.description}. Sorted by in-polygon CIEDE2000 (lower is better)"
        + (f"; mean ± sd over {len(seeds)} seeds (the sd is the spread training seeds add)." if len(seeds) > 1
           else "."),
        "Rows: m1-m7 and `m8-study` are the study's ablation (one data mix and schedule, the colour name as text); "
        "`m4-nodark` is m4 without the dark family (claim 8); `m8-everyday` is the model this run leaves for daily "
        "use (every family, the wide palette, the RGB token + FiLM; first seed only). `composite` rows score what "
        "`Colorizer` users get: the fill pasted into their own image.",
        "",
        board_md,
        "",
        "The `flood-fill (reference)` row is a classical algorithm (flood fill from the border, paint the rest "
        "with the named colour): it shows the ceiling on these clean images.",
        "",
        "## Setup",
        "",
        "Eight conditional UNets (diffusers `UNet2DConditionModel`, cross-attention on a frozen text embedding of "
        "the colour name) trained with the composite loss (MSE + 0.5 LPIPS + 0.2 (1-SSIM) + 0.3 L1 in CIE-LAB "
        "divided by 100, so that all four terms share the 0..1 scale the weights presuppose; per variant), AdamW (wd 1e-4), 10% linear warm-up then cosine decay, gradient clipping at 1.0, "
        "paired flips/rotations. Training data: " + prof.train.get("data", "") + ".",
        "",
        "Profile settings: " + ", ".join(f"`{k}={v}`" for k, v in prof.train.items()) + ".",
        "",
        *[f"{name} only: " + ", ".join(f"`{k}={v}`" for k, v in extra.items()) + "." for name, extra in
          prof.variants.items() if name in runs],
        "",
        "## Deviations from the study",
        "",
        *([f"- {n}" for n in notes] or ["- none"]),
        "",
        *_lpips_lines(plan[0].folder.parent, [j.run for j in plan if j.seed == seeds[0] and j.scale == 1]),
        "## Per-family breakdown" + (f" (in-polygon ΔE00, mean ± sd over {len(seeds)} seeds)" if len(seeds) > 1
                                     else ""),
        "",
        family_markdown_table(first) if len(seeds) == 1 else family_seeds_markdown(rows),
        "",
    ]
    if everyday_board is not None:
        lines += ["## The everyday model on what people bring", "",
                  f"Data: {everyday_board.data.description}.", "", family_markdown_table(everyday_board), ""]
    lines += [*_colour_lines(colours),
              "## Pictures", "",
              "Contact sheet (rows = models of the first seed, columns = the same held-out samples):", "",
              "![contact sheet](contact_sheet.png)", ""]
    if curves is not None:
        lines += ["Loss curves (first seed):", "", f"![loss curves]({curves.name})", ""]
    lines += ["## Per-run training", "",
              "| run | seed | epochs | steps | precision | train time (s) | last loss | loss spread | val ΔE76 polygon "
              "| sample grids |", "|---|---|---|---|---|---|---|---|---|---|"]
    for job in plan:
        rows_m = read_metrics(job.folder)
        grids = sorted((job.folder / "samples").glob("epoch_*.png"))
        links = " ".join(f"[{g.stem.split('_')[1]}]({g.relative_to(out).as_posix()})" for g in grids)
        last = rows_m[-1] if rows_m else {}
        spread = last["loss_sd"] / last["loss"] if last.get("loss_sd") is not None and last.get("loss") else float("nan")
        lines.append(f"| {job.run} | {job.seed} | {last.get('epoch', '-')} | {last.get('step', '-')} | "
                     f"{precision_cell(ModelInfo.find(job.folder))} | "
                     f"{train_seconds.get(job.key, float('nan')):.0f} | {last.get('loss', float('nan')):.4f} | "
                     f"{spread:.3f} | {last.get('val_de76_polygon', float('nan')):.2f} | {links} |")
    lines += ["", "Each run's last sample grid (input | prediction | target), first seed:", ""]
    for job in plan:
        grids = sorted((job.folder / "samples").glob("epoch_*.png"))
        if grids and job.seed == seeds[0] and job.scale == 1:
            lines.append(f"**{job.run}** ![{job.run}]({grids[-1].relative_to(out).as_posix()})")
            lines.append("")
    report = write_text_atomic(out / "report.md", "\n".join(lines))
    infos = {j.key: ModelInfo.find(j.folder) for j in plan}
    summary = {"profile": profile, "ranks": prof.ranks, "runs": runs, "seeds": seeds, "seconds": seconds,
               "cpu": {"name": cpu, "flags": flags}, "train_seconds": train_seconds,
               "claims": [c.to_dict() for c in claims],
               "budget_sweep": {str(k): v.to_dict() for k, v in sweep_claims.items()},
               "leaderboard": first.to_dict(), "leaderboard_seeds": {str(k): b.to_dict() for k, b in boards.items()},
               "leaderboard_mean_sd": rows,
               "sweep_leaderboards": {str(k): b.to_dict() for k, b in (sweep_boards or {}).items()},
               "everyday_user_families": everyday_board.to_dict() if everyday_board is not None else None,
               "precision": {k: (i.precision if i else None) for k, i in infos.items()},
               "precision_choice": {k: (i.meta.get("precision_choice") if i else None) for k, i in infos.items()},
               "deviations": notes, "colour_generalisation": colours,
               "training": {j.key: read_metrics(j.folder) for j in plan}}
    write_text_atomic(out / "report.json", json.dumps(jsonable(summary), indent=2, default=str))
    return report
