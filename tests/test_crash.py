"""Crash tests: real SIGKILLs at seeded random moments, then a rerun, lose nothing and redo nothing finished.

- ``polycolor train`` (tiny profile, 12 epochs of 2 steps) is killed 10 times: at random moments after an epoch's
  metrics row appears (the issue's case: a row appended, its checkpoint not yet committed), once inside a checkpoint
  write and once between the checkpoint swap's two renames (``POLYCOLOR_TEST_CHECKPOINT_PAUSE``, a test-only sleep
  in ``checkpoint.atomic_dir_write``), and resumed with ``--resume`` each time. The run must finish, every
  checkpoint on disk must load, ``metrics.jsonl`` must hold one row per epoch, and the final weights must equal an
  uninterrupted run's bit for bit.
- ``polycolor reproduce`` (tiny, two models x five seeds) is killed 10 times at seeded moments (during training, just
  after a run finished, and while scoring and writing the report) and rerun: finished runs are not retrained (their
  checkpoint files keep their bytes and mtimes) and the report equals an uninterrupted run's apart from timings. It goes through the CLI
  only and finds run folders by their ``checkpoint/`` folders, so it does not depend on reproduce's folder layout.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EPOCHS = 12
KILLS = 10
TRAIN = ["train", "m1", "--profile", "tiny", "--epochs", str(EPOCHS), "--precision", "fp32"]


def _env(**extra) -> dict:
    env = {**os.environ, "POLYCOLOR_AUTOTUNE": "0", "PYTHONUNBUFFERED": "1", **extra}
    env.pop("POLYCOLOR_TEST_CHECKPOINT_PAUSE", None)
    env.update(extra)
    return env


def _start(args: list[str], log: Path, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "polycolor.cli", *args], stdout=open(log, "ab"),
                            stderr=subprocess.STDOUT, env=_env(**env), start_new_session=True)


def _rows(path: Path) -> int:
    try:
        return path.read_text().count("\n")
    except FileNotFoundError:
        return 0


def _wait_for(proc: subprocess.Popen, ready, timeout: float = 120.0) -> bool:
    """Poll until ``ready()`` (True) or the process ends (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if ready():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    raise AssertionError("the run neither reached the kill point nor ended")


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "checkpoint" / "model.safetensors"))


def _check_metrics(path: Path, epochs: int) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1)), f"{path}: epochs {[r['epoch'] for r in rows]}"


def _all_checkpoints_load(root: Path) -> list[Path]:
    from polycolor.polycolor_core.model.checkpoint import load_checkpoint, load_training_state
    from polycolor.polycolor_core.model.modelinfo import ModelInfo

    found = sorted(p for p in root.rglob("checkpoint") if p.is_dir())
    for ckpt in found:
        info = ModelInfo.read(ckpt)
        assert info.kind == "checkpoint"
        load_checkpoint(ckpt)
        load_training_state(ckpt)
    return found


def test_train_killed_ten_times_resumes_to_the_same_weights(tmp_path):
    import torch

    rng = random.Random(26)
    ref_dir, run = tmp_path / "uninterrupted", tmp_path / "killed"
    ref = _start([*TRAIN, "--out", str(ref_dir)], tmp_path / "ref.log")  # beside the first killed run
    metrics, ckpt = run / "metrics.jsonl", run / "checkpoint"
    # two of the kills land inside a checkpoint write: after the temporary folder is written, and in the swap
    special = dict(zip(rng.sample(range(2, KILLS), 2), ("write", "swap")))
    log, kills, moments = tmp_path / "killed.log", 0, []
    first = True
    while kills < KILLS:
        where = special.get(kills)
        proc = _start([*TRAIN, "--out", str(run), *([] if first else ["--resume"])], log,
                      **({"POLYCOLOR_TEST_CHECKPOINT_PAUSE": f"{where}:30"} if where else {}))
        first = False
        if where == "write":
            reached = _wait_for(proc, lambda: (run / "checkpoint.tmp" / "config.json").exists())
        elif where == "swap":
            reached = _wait_for(proc, lambda: (run / "checkpoint.old").is_dir() and not ckpt.exists())
        else:  # a random moment after a random number (0-2) of further epochs have been logged
            target = _rows(metrics) + rng.choice((0, 1, 1, 2))
            reached = _wait_for(proc, lambda: _rows(metrics) >= target)
            if reached:
                time.sleep(rng.uniform(0.0, 0.4))
        if not reached or proc.poll() is not None:
            pytest.fail(f"the run ended before kill {kills + 1} ({where or 'random'}); see {log}:\n{log.read_text()[-3000:]}")
        _kill(proc)
        kills += 1
        moments.append((where or "random", _rows(metrics)))
        if where == "swap":
            assert not ckpt.exists() and (run / "checkpoint.old").is_dir()  # killed with no checkpoint/ in place
    proc = _start([*TRAIN, "--out", str(run), "--resume"], log)
    assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    assert ref.wait(timeout=300) == 0, (tmp_path / "ref.log").read_text()[-3000:]

    assert {w for w, _ in moments} >= {"random", "write", "swap"}, moments
    for folder in (run, ref_dir):
        _check_metrics(folder / "metrics.jsonl", EPOCHS)
    assert [p.name for p in _all_checkpoints_load(run)] == ["checkpoint"]  # no .tmp/.old left behind either
    assert not list(run.glob("checkpoint.*")) and not (run / ".polycolor.lock").exists()
    from polycolor.polycolor_core.model.modelinfo import ModelInfo

    info = ModelInfo.read(ckpt)
    assert info.finished and info.meta["epoch"] == EPOCHS
    got, want = _weights(run), _weights(ref_dir)
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want), [k for k in want if not torch.equal(got[k], want[k])]


def test_trim_metrics_on_resume_without_a_checkpoint(tmp_path):
    """Killed after the first epoch's row, before its checkpoint: --resume starts over and logs that epoch once."""
    from polycolor.polycolor_core.model.checkpoint import recover_dir_swap
    from polycolor.polycolor_core.training.train import trim_metrics

    log = tmp_path / "metrics.jsonl"
    log.write_text(json.dumps({"epoch": 1, "step": 2}) + "\n" + '{"epoch": 2, "st')
    assert trim_metrics(log, 0) == 2 and log.read_text() == ""
    # killed between the swap's renames: the previous checkpoint comes back, a complete folder is never lost
    (tmp_path / "checkpoint.old").mkdir()
    (tmp_path / "checkpoint.old" / "config.json").write_text("{}")
    assert recover_dir_swap(tmp_path / "checkpoint") is True
    assert (tmp_path / "checkpoint" / "config.json").read_text() == "{}" and not (tmp_path / "checkpoint.old").exists()
    assert recover_dir_swap(tmp_path / "checkpoint") is False


# --- polycolor reproduce ---------------------------------------------------------------------------------------

REPRODUCE = ["reproduce", "--profile", "tiny", "--models", "m1,m2", "--seeds", "0,1,2,3,4", "--jobs", "1",
             "--precision", "fp32"]  # 10 runs of a few seconds each, trained one after another
RUNS = 10
TIMING = ("second", "time", "wall", "elapsed", "created", "per_s", "rate", "speed", "duration")


def _untimed(value, out: Path):
    """``report.json`` without timings: keys naming a time/rate dropped, the output folder's path replaced."""
    if isinstance(value, dict):
        return {k: _untimed(v, out) for k, v in value.items()
                if not (any(t in k.lower() for t in TIMING) or k.lower().endswith("_s"))}
    if isinstance(value, list):
        return [_untimed(v, out) for v in value]
    return value.replace(str(out), "OUT") if isinstance(value, str) else value


def _finished_runs(out: Path) -> dict[Path, dict[str, tuple[int, bytes]]]:
    """Each finished run's checkpoint folder -> {file: (mtime_ns, bytes)} (found by globbing, whatever the layout)."""
    done = {}
    for ckpt in out.rglob("checkpoint"):
        try:
            finished = json.loads((ckpt / "config.json").read_text()).get("finished")
        except (OSError, ValueError):
            continue
        if finished:
            done[ckpt] = {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in sorted(ckpt.iterdir())}
    return done


def test_reproduce_killed_ten_times_and_rerun_redoes_nothing_finished(tmp_path):
    rng = random.Random(2026)
    ref_out, out = tmp_path / "uninterrupted", tmp_path / "killed"
    ref = _start([*REPRODUCE, "--out", str(ref_out)], tmp_path / "ref.log")
    log = tmp_path / "killed.log"
    seen: dict[Path, dict] = {}
    phases = []
    # Each start is killed at a seeded random moment: while runs remain, 0-0.4 s after this start has finished one
    # more run (the next one training, or its checkpoint being written); once all ten are finished, 0-1.5 s into
    # scoring and writing the report.
    for kill in range(KILLS):
        before = len(_finished_runs(out))
        scorings = log.read_text().count("scoring on held-out shapes") if log.exists() else 0
        proc = _start([*REPRODUCE, "--out", str(out)], log)
        if before < RUNS:
            reached = _wait_for(proc, lambda: len(_finished_runs(out)) > before, timeout=300)
            delay, phase = rng.uniform(0.0, 0.4), f"training (after run {before + 1})"
        else:
            reached = _wait_for(proc, lambda: log.read_text().count("scoring on held-out shapes") > scorings,
                                timeout=300)
            delay, phase = rng.uniform(0.0, 1.5), "scoring"
        time.sleep(delay)
        if not reached or proc.poll() is not None:
            pytest.fail(f"reproduce ended before kill {kill + 1} ({phase}):\n{log.read_text()[-3000:]}")
        _kill(proc)
        phases.append(phase)
        for ckpt, files in _finished_runs(out).items():
            assert seen.setdefault(ckpt, files) == files, f"{ckpt} was rewritten after it had finished"
    assert len(phases) == KILLS and any(p.startswith("training") for p in phases), phases
    proc = _start([*REPRODUCE, "--out", str(out)], log)
    assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    assert ref.wait(timeout=300) == 0, (tmp_path / "ref.log").read_text()[-3000:]

    final = _finished_runs(out)
    assert len(final) == RUNS == len(_finished_runs(ref_out))
    for ckpt, files in seen.items():  # nothing finished was redone: same bytes, same mtimes
        assert final[ckpt] == files, f"{ckpt} was trained again after the kill"
    _all_checkpoints_load(out)
    for ckpt in final:
        _check_metrics(ckpt.parent / "metrics.jsonl", json.loads((ckpt / "config.json").read_text())["epoch"])
    got = _untimed(json.loads((out / "report.json").read_text()), out)
    want = _untimed(json.loads((ref_out / "report.json").read_text()), ref_out)
    assert got == want


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting for its reaper counts as ended)."""
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's parent-death signal is Linux's")
def test_killing_reproduce_alone_ends_its_training_worker(tmp_path):
    """SIGKILL to reproduce's own pid (not its process group): the worker training a run ends with it, so the rerun
    is not stopped by a lock an orphan holds, and it finishes the run."""
    out, log = tmp_path / "rep", tmp_path / "rep.log"
    lock = out / "runs" / "seed0" / "m1" / ".polycolor.lock"
    args = ["reproduce", "--profile", "tiny", "--models", "m1,m2", "--jobs", "2", "--out", str(out)]
    # two runs, two worker processes; m1's worker sleeps inside its first checkpoint write, holding the run's lock
    proc = _start(args, log, POLYCOLOR_TEST_CHECKPOINT_PAUSE="write:120")
    assert _wait_for(proc, lambda: (out / "runs" / "seed0" / "m1" / "checkpoint.tmp").exists(), timeout=180), \
        log.read_text()[-3000:]
    worker = json.loads(lock.read_text())["pid"]
    assert worker != proc.pid and _alive(worker)
    _kill(proc)
    end = time.monotonic() + 30
    while _alive(worker) and time.monotonic() < end:
        time.sleep(0.1)
    assert not _alive(worker), "the training worker outlived reproduce"
    proc = _start(args, log)
    assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    for run in ("m1", "m2"):
        assert (out / "runs" / "seed0" / run / "checkpoint" / "model.safetensors").exists()
