"""Two writers (issue 26): one lock per output folder for train, infer and reproduce; a live holder is named in a
clear error, a dead holder's stale lock (SIGKILL) is taken over, nothing is written by the refused second writer."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _torchrun import torchrun_cli

from polycolor.polycolor_core.runtime.folderlock import LOCK_NAME, FolderLockedError, folder_lock

HOLD = """
import sys, time
from polycolor.polycolor_core.runtime.folderlock import folder_lock
with folder_lock(sys.argv[1], "test holder"):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """Start another process holding ``folder``'s lock; yields (process, folder); kills it afterwards."""
    procs = []

    def start(folder: Path):
        p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "held"
        return p

    yield start
    for p in procs:
        p.kill()
        p.wait()


def test_a_live_holder_is_named_and_a_killed_ones_lock_is_taken_over(tmp_path, holder, capsys):
    folder = tmp_path / "run"
    p = holder(folder)
    with pytest.raises(FolderLockedError, match=rf"in use by another polycolor process: pid {p.pid} on .*test "
                                                rf"holder.*delete .*{LOCK_NAME}"):
        with folder_lock(folder, "second"):
            pass
    os.kill(p.pid, signal.SIGKILL)  # the holder dies without releasing: its lock file stays behind
    p.wait()
    assert (folder / LOCK_NAME).is_file()
    with folder_lock(folder, "second") as lock:
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert "taking over a stale lock" in capsys.readouterr().err
    assert not (folder / LOCK_NAME).exists()  # released at the end of the block


def test_released_on_error_and_torn_or_foreign_locks(tmp_path):
    folder = tmp_path / "run"
    with pytest.raises(KeyError):
        with folder_lock(folder):
            raise KeyError("boom")
    assert not (folder / LOCK_NAME).exists()
    (folder / LOCK_NAME).write_text('{"pid": 12')  # torn: its writer was killed mid-write
    with folder_lock(folder):
        pass
    other = {"pid": 1, "host": socket.gethostname() + "-elsewhere", "started": time.time(), "what": "train"}
    (folder / LOCK_NAME).write_text(json.dumps(other))
    with pytest.raises(FolderLockedError, match="cannot be checked from here; if that run is over, delete"):
        with folder_lock(folder):
            pass


def test_train_infer_and_reproduce_refuse_a_second_writer(tmp_path, holder, tiny_checkpoint):
    from polycolor.export.infer import colorize_dataset
    from polycolor.polycolor_core.training.train import config_from_profile, train
    from polycolor.reproduce import run_reproduce

    run = tmp_path / "m1"
    holder(run)
    with pytest.raises(FolderLockedError, match="in use by another polycolor process"):
        train(config_from_profile("m1", "tiny", out=str(run), epochs=1), progress=False)
    assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # the refused run wrote nothing

    from PIL import Image

    data = tmp_path / "drawings"
    data.mkdir()
    Image.new("RGB", (32, 32), "white").save(data / "a.png")
    out = tmp_path / "coloured"
    holder(out)
    with pytest.raises(FolderLockedError, match="test holder"):
        colorize_dataset(tiny_checkpoint, data, out, colour="cyan")
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]

    rep = tmp_path / "rep"
    holder(rep)
    with pytest.raises(FolderLockedError, match="test holder"):
        run_reproduce("tiny", rep, ["m1"])
    assert sorted(p.name for p in rep.iterdir()) == [LOCK_NAME]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train", "infer"])
def test_a_torchrun_job_at_a_held_folder_stops_every_rank_and_writes_nothing(tmp_path, holder, tiny_checkpoint,
                                                                              command):
    """Two ranks of a second job: rank 0 is refused the lock; its failure ends the job (torchrun stops rank 1, which
    holds no lock and writes nothing before the ranks' first barrier), well before any collective time-out."""
    from PIL import Image

    out = tmp_path / "out"
    holder(out)
    if command == "train":
        args = ["train", "m1", "--profile", "tiny", "--out", str(out), "--precision", "fp32"]
    else:
        data = tmp_path / "drawings"
        data.mkdir()
        for i in range(4):
            Image.new("RGB", (32, 32), "white").save(data / f"{i}.png")
        args = ["infer", str(tiny_checkpoint), "--data", str(data), "--out", str(out), "--colour", "cyan",
                "--backend", "torch", "--threads", "1"]
    cmd = torchrun_cli(*args)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "POLYCOLOR_AUTOTUNE": "0"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode != 0
    assert "test holder" in proc.stdout + proc.stderr  # rank 0 names the folder's live holder
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # neither rank wrote anything
    assert json.loads((out / LOCK_NAME).read_text())["what"] == "test holder"  # the holder's lock is untouched
    assert time.perf_counter() - t0 < 200
