"""backend="auto" by measurement: the winner is measured once per (model, machine), cached, and overridable."""

from __future__ import annotations

import json

import numpy as np
import pytest

from polycolor.export import autotune
from polycolor.polycolor_core.runtime import precision


class FakeBackend:
    def __init__(self, name):
        self.name = name

    def run(self, images, embeddings):
        return images


def _probe():
    return np.zeros((2, 3, 8, 8), np.float32), np.zeros((2, 4, 6), np.float32)


def _timer(rates, calls):
    def timer(backend, images, embeddings, budget_s):
        calls.append(backend.name)
        return rates[backend.name]

    return timer


def _candidates(built):
    def make(name):
        def factory():
            built.append(name)
            return FakeBackend(name)

        return factory

    return {n: make(n) for n in ("torch-fp32", "onnx")}


def test_measures_once_then_reads_the_cache(tmp_path):
    path, calls, built = tmp_path / "choice.json", [], []
    first = autotune.choose_backend(_candidates(built), "machA", "m8-112", _probe(), cache_path=path,
                                    timer=_timer({"torch-fp32": 4.6, "onnx": 6.4}, calls))
    assert (first.backend, first.measured) == ("onnx", True)
    assert first.rates == {"torch-fp32": 4.6, "onnx": 6.4}
    assert calls == ["torch-fp32", "onnx"] * autotune.ROUNDS  # interleaved rounds
    stored = json.loads(path.read_text())
    assert stored["entries"]["machA:m8-112"]["backend"] == "onnx"

    calls.clear(), built.clear()
    again = autotune.choose_backend(_candidates(built), "machA", "m8-112", _probe(), cache_path=path,
                                    timer=_timer({"torch-fp32": 99.0, "onnx": 1.0}, calls))
    assert (again.backend, again.measured) == ("onnx", False)
    assert calls == [] and built == []  # nothing built or timed on a cache hit


def test_another_machine_or_model_measures_again(tmp_path):
    path, calls = tmp_path / "choice.json", []
    autotune.choose_backend(_candidates([]), "machA", "m8", _probe(), cache_path=path,
                            timer=_timer({"torch-fp32": 4.6, "onnx": 6.4}, calls))
    other = autotune.choose_backend(_candidates([]), "machB", "m8", _probe(), cache_path=path,
                                    timer=_timer({"torch-fp32": 12.0, "onnx": 6.4}, calls))
    assert (other.backend, other.measured) == ("torch-fp32", True)
    model = autotune.choose_backend(_candidates([]), "machA", "m1", _probe(), cache_path=path,
                                    timer=_timer({"torch-fp32": 9.0, "onnx": 3.0}, calls))
    assert model.backend == "torch-fp32"
    entries = json.loads(path.read_text())["entries"]
    assert {k: v["backend"] for k, v in entries.items()} == {"machA:m8": "onnx", "machB:m8": "torch-fp32",
                                                             "machA:m1": "torch-fp32"}


def test_a_failing_candidate_is_skipped_and_a_damaged_cache_is_remeasured(tmp_path):
    path = tmp_path / "choice.json"
    path.write_text("{not json")

    def timer(backend, images, embeddings, budget_s):
        if backend.name == "onnx":
            raise RuntimeError("no provider")
        return 3.0

    choice = autotune.choose_backend(_candidates([]), "m", "k", _probe(), cache_path=path, timer=timer)
    assert choice.backend == "torch-fp32" and choice.rates == {"torch-fp32": 3.0}
    assert json.loads(path.read_text())["entries"]["m:k"]["backend"] == "torch-fp32"


def test_a_stored_winner_that_is_no_longer_a_candidate_is_ignored(tmp_path):
    path, calls = tmp_path / "choice.json", []
    autotune.choose_backend(_candidates([]), "m", "k", _probe(), cache_path=path,
                            timer=_timer({"torch-fp32": 1.0, "onnx": 2.0}, calls))
    only_torch = {"torch-fp32": lambda: FakeBackend("torch-fp32"), "torch-bf16": lambda: FakeBackend("torch-bf16")}
    choice = autotune.choose_backend(only_torch, "m", "k", _probe(), cache_path=path,
                                     timer=_timer({"torch-fp32": 1.0, "torch-bf16": 5.0}, calls))
    assert (choice.backend, choice.measured) == ("torch-bf16", True)


def test_no_candidates_is_an_error_and_one_candidate_needs_no_measurement(tmp_path):
    with pytest.raises(ValueError, match="no backend candidates"):
        autotune.choose_backend({}, "m", "k", _probe(), cache_path=tmp_path / "c.json")
    one = autotune.choose_backend({"onnx": lambda: FakeBackend("onnx")}, "m", "k", _probe(),
                                  cache_path=tmp_path / "c.json", timer=lambda *a: pytest.fail("timed"))
    assert one.backend == "onnx" and not (tmp_path / "c.json").exists()


def test_a_burst_of_load_in_one_round_does_not_pick_the_slower_backend(tmp_path):
    """Interleaved rounds, best rate each: onnx's first round ran beside another job (2.0 img/s)."""
    seq = {"torch-fp32": iter([4.6, 4.5, 4.7]), "onnx": iter([2.0, 6.4, 6.3])}
    choice = autotune.choose_backend(_candidates([]), "m", "k", _probe(), cache_path=tmp_path / "c.json",
                                     timer=lambda b, *a: next(seq[b.name]))
    assert choice.backend == "onnx" and choice.rates == {"torch-fp32": 4.7, "onnx": 6.4}


def test_a_candidate_that_fails_to_build_is_never_timed(tmp_path):
    def broken():
        raise RuntimeError("no onnxruntime here")

    calls = []
    choice = autotune.choose_backend({"torch-fp32": lambda: FakeBackend("torch-fp32"), "onnx": broken}, "m", "k",
                                     _probe(), cache_path=tmp_path / "c.json", timer=_timer({"torch-fp32": 3.0}, calls))
    assert choice.backend == "torch-fp32" and set(calls) == {"torch-fp32"}


def test_time_backend_counts_images_per_second():
    rate = autotune.time_backend(FakeBackend("x"), *_probe(), budget_s=0.01)
    assert rate > 0


def test_keys_follow_machine_and_architecture(monkeypatch):
    assert autotune.model_key({"a": 1}, 112, (8, 384)) != autotune.model_key({"a": 1}, 128, (8, 384))
    assert autotune.model_key({"a": 1}, 112, (8, 384)) == autotune.model_key({"a": 1}, 112, (8, 384))
    base = autotune.machine_key("cpu", 2)
    monkeypatch.setattr(precision, "cpu_description", lambda: ("Other CPU", ["avx2"]))
    assert autotune.machine_key("cpu", 2) != base


# --- the Colorizer's backend="auto" --------------------------------------------------------------------------


@pytest.fixture
def measuring(monkeypatch, tmp_path):
    """Measuring on, a private cache, and a fake timer that says onnxruntime is 3x faster than torch."""
    monkeypatch.setenv("POLYCOLOR_AUTOTUNE", "1")
    monkeypatch.setenv("POLYCOLOR_CACHE", str(tmp_path / "cache"))
    timed = []

    def fake(backend, images, embeddings, budget_s):
        timed.append((backend.name, images.shape, embeddings.shape))
        return {"onnx": 30.0, "torch": 10.0}[backend.name]

    monkeypatch.setattr(autotune, "time_backend", fake)
    return timed


def test_auto_on_a_checkpoint_measures_once_and_picks_the_winner(measuring, tiny_checkpoint):
    from polycolor.export.colorizer import Colorizer
    from polycolor.polycolor_core.model.modelinfo import ModelInfo

    col = Colorizer.from_pretrained(tiny_checkpoint)
    assert col.backend.name == "onnx"
    info = ModelInfo.read(tiny_checkpoint)
    # timed on the model's own shape: 4 images at its working size, its embedding width
    assert {t[0] for t in measuring} == {"torch", "onnx"}
    assert all(t[1] == (8, 3, info.image_size, info.image_size) for t in measuring)  # batch 8, the model size
    assert all(t[2][2] == info.text_encoder.dim for t in measuring)
    measuring.clear()
    again = Colorizer.from_pretrained(tiny_checkpoint)  # second use: read from the cache, nothing timed
    assert again.backend.name == "onnx" and measuring == []
    images = np.zeros((2, 32, 32, 3), np.uint8)
    assert np.array_equal(np.asarray(again(images, "cyan")), np.asarray(col(images, "cyan")))


def test_an_explicit_backend_is_never_measured(measuring, tiny_checkpoint):
    from polycolor.export.colorizer import Colorizer

    assert Colorizer.from_pretrained(tiny_checkpoint, backend="torch").backend.name == "torch"
    assert measuring == []


def test_auto_measuring_off_picks_by_folder_kind(monkeypatch, tiny_checkpoint):
    from polycolor.export.colorizer import Colorizer

    monkeypatch.setenv("POLYCOLOR_AUTOTUNE", "0")
    monkeypatch.setattr(autotune, "time_backend", lambda *a: pytest.fail("timed with measuring off"))
    assert Colorizer.from_pretrained(tiny_checkpoint).backend.name == "torch"


def test_bf16_is_a_candidate_only_where_native(monkeypatch, tiny_checkpoint):
    from polycolor.polycolor_core.runtime import precision
    from polycolor.polycolor_core.model.modelinfo import ModelInfo

    info = ModelInfo.read(tiny_checkpoint)
    monkeypatch.setattr(precision, "native_bf16", lambda device="cpu": False)
    assert autotune.auto_candidates(info, "auto", "cpu") == ["torch-fp32", "onnx"]
    monkeypatch.setattr(precision, "native_bf16", lambda device="cpu": True)
    assert autotune.auto_candidates(info, "auto", "cpu") == ["torch-fp32", "torch-bf16", "onnx"]
    assert autotune.auto_candidates(info, "fp32", "cpu") == ["torch-fp32", "onnx"]  # an explicit precision is kept
