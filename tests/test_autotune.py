"""backend="auto" by measurement: the winner is measured once per (model, machine), cached, and overridable."""

from __future__ import annotations

import json

import numpy as np
import pytest

from polycolor.export import autotune


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
    assert sorted(calls) == ["onnx", "torch-fp32"]
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


def test_time_backend_counts_images_per_second():
    rate = autotune.time_backend(FakeBackend("x"), *_probe(), budget_s=0.01)
    assert rate > 0


def test_keys_follow_machine_and_architecture(monkeypatch):
    assert autotune.model_key({"a": 1}, 112, (8, 384)) != autotune.model_key({"a": 1}, 128, (8, 384))
    assert autotune.model_key({"a": 1}, 112, (8, 384)) == autotune.model_key({"a": 1}, 112, (8, 384))
    base = autotune.machine_key("cpu", 2)
    monkeypatch.setattr(autotune, "cpu_description", lambda: ("Other CPU", ["avx2"]))
    assert autotune.machine_key("cpu", 2) != base
