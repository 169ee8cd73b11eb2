"""`train.compile`: false by default, true compiles, auto follows a remembered per-machine measurement;
a model that fails to compile trains eager, with one line."""

import json

import pytest
import torch

from tests.conftest import tiny_spec
from w2s.experiment.plan import plan_run
from w2s.pipeline.runner import run_experiment
from w2s.spec import validate_spec
from w2s.training import compiling


def keys(spec: dict) -> dict[str, str]:
    return {s.name: s.key for s in plan_run(validate_spec(spec)).stages}


def test_compile_enters_the_keys_as_resolved(tmp_path, monkeypatch):
    spec = tiny_spec(tmp_path)
    off = keys(spec)
    assert keys({**spec, "train": {**spec["train"], "compile": False}}) == off  # the default
    on = keys({**spec, "train": {**spec["train"], "compile": True}})
    assert set(on) == set(off) and all(on[name] != off[name] for name in on)
    monkeypatch.setattr("w2s.experiment.environment.auto_compile", lambda precision: (False, "measured slower"))
    assert keys({**spec, "train": {**spec["train"], "compile": "auto"}}) == off  # auto decided eager: eager keys


def test_auto_measures_once_per_machine_and_remembers(tmp_path, monkeypatch):
    monkeypatch.setenv("W2S_CACHE_DIR", str(tmp_path))
    calls = []

    def measured(precision):
        calls.append(precision)
        return {"speedup": 1.4, "eager_s": 14.0, "compiled_s": 10.0}

    monkeypatch.setattr(compiling, "compile_speedup", measured)
    compiling.auto_compile.cache_clear()
    assert compiling.auto_compile("no")[0] is True and calls == ["no"]
    (remembered,) = tmp_path.glob("compile-*.json")
    assert json.loads(remembered.read_text())["speedup"] == 1.4
    compiling.auto_compile.cache_clear()
    monkeypatch.setattr(compiling, "compile_speedup", lambda precision: pytest.fail("measured again"))
    verdict, why = compiling.auto_compile("no")
    assert verdict is True and why.startswith("compiled: compiling measured 1.40x eager on ")
    compiling.auto_compile.cache_clear()
    monkeypatch.setattr(compiling, "compile_speedup", lambda precision: {"speedup": 0.6})
    assert compiling.auto_compile("bf16")[0] is False  # another precision: measured anew, and slower
    compiling.auto_compile.cache_clear()


def test_a_model_that_fails_to_compile_trains_eager_with_the_same_numbers(tmp_path, monkeypatch):
    """torch.compile fails at the first call (a missing compiler, an unsupported op): one line, then eager."""

    class FailsAtFirstCall(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, *args, **kwargs):
            raise RuntimeError("inductor: no C++ compiler found\nmore detail")

    spec = tiny_spec(tmp_path / "eager", name="c", ladder=1)
    eager_rows = run_experiment(validate_spec(spec), echo=lambda *a: None)
    monkeypatch.setattr(torch, "compile", lambda model, **kw: FailsAtFirstCall(model))
    said = []
    spec = tiny_spec(tmp_path / "compiled", name="c", ladder=1)
    spec["train"]["compile"] = True
    rows = run_experiment(validate_spec(spec), echo=said.append)
    failed = [line for line in said if "torch.compile failed" in line]
    assert failed == ["  torch.compile failed (RuntimeError: inductor: no C++ compiler found); training eager"] * 2
    keys = ("key", "weak_key", "ceiling_key", "supervisor_key")  # compiling enters the keys; nothing else differs
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("train_seconds", *keys)} for r in rs]  # noqa: E731
    assert strip(rows) == strip(eager_rows)
