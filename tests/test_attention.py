"""`train.attention`: the kernels themselves, and what `auto` (the default) decides: measured once
per machine, recorded once per run folder, applied to stages without dropout, entering keys only as
`math`."""

import json

import pytest
import torch

from tests.conftest import tiny_model, tiny_spec
from w2s.experiment.keys import settings_identity
from w2s.experiment.plan import plan_run
from w2s.pipeline.runner import run_experiment
from w2s.spec import validate_spec
from w2s.training import attention

QUIET = lambda *a, **k: None  # noqa: E731


def _attention_ops(model, inputs, choice: str) -> tuple[set[str], torch.Tensor]:
    from torch.profiler import profile

    with attention.attention_kernels(choice), profile() as prof:
        out = model.pooled(**inputs)
        out.sum().backward()
    return {e.key for e in prof.key_averages()}, out.detach()


def test_math_attention_replaces_the_flash_kernel():
    """`math`: without dropout a CPU's SDPA runs its flash kernel; under `math` no flash op runs and
    the pooled states are the same to 1e-5."""
    from w2s.models.loading import load_classifier
    from w2s.spec import ModelSpec

    torch.manual_seed(0)
    model = load_classifier(ModelSpec(**tiny_model("t", 32, 1))).eval()  # eval: no dropout, as the default recipe
    inputs = {"input_ids": torch.randint(1000, 2000, (4, 12)), "attention_mask": torch.ones(4, 12, dtype=torch.long)}
    inputs["attention_mask"][0, 6:] = 0
    flash = "aten::_scaled_dot_product_flash_attention_for_cpu"
    ops, default = _attention_ops(model, inputs, "sdpa")
    assert flash in ops
    ops, math = _attention_ops(model, inputs, "math")
    assert flash not in ops and not any("flash" in op for op in ops)
    assert torch.allclose(default, math, atol=1e-5)


def test_probe_lengths_are_powers_of_two_from_32_to_128():
    lengths = [attention.probe_length(n) for n in (2, 32, 33, 64, 65, 100, 128, 512, 4096)]
    assert lengths == [32, 32, 64, 64, 128, 128, 128, 128, 128]


def test_the_probe_measures_both_kernels_and_is_remembered_per_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("W2S_CACHE_DIR", str(tmp_path))
    calls = []
    real = attention.math_speedup

    def measured(precision, length):
        calls.append((precision, length))
        return real(precision, length, repeats=1)

    monkeypatch.setattr(attention, "math_speedup", measured)
    attention.auto_attention.cache_clear()
    choice, why = attention.auto_attention("no", 32)
    (remembered,) = tmp_path.glob("attention-*.json")
    speedup = json.loads(remembered.read_text())["math_speedup"]
    assert calls == [("no", 32)] and 0 < speedup < 100
    assert choice == ("math" if speedup >= attention.MIN_SPEEDUP else "sdpa")
    assert why == f"the math kernel measured {speedup:.2f}x PyTorch's choice at 32 tokens on this CPU"

    attention.auto_attention.cache_clear()
    monkeypatch.setattr(attention, "math_speedup", lambda precision, length: pytest.fail("measured again"))
    assert attention.auto_attention("no", 32) == (choice, why)  # remembered
    attention.auto_attention.cache_clear()
    monkeypatch.setattr(attention, "math_speedup", lambda precision, length: 1.36)
    assert attention.auto_attention("bf16", 64)[0] == "math"  # another precision and length: measured anew
    monkeypatch.setattr(attention, "math_speedup", lambda precision, length: 1.05)
    assert attention.auto_attention("bf16", 128)[0] == "sdpa"  # under MIN_SPEEDUP: PyTorch's choice
    assert len(list(tmp_path.glob("attention-*.json"))) == 3
    attention.auto_attention.cache_clear()


def _machine_says(monkeypatch, choice: str) -> None:
    monkeypatch.setattr("w2s.experiment.environment.auto_attention", lambda precision, length: (choice, "measured"))


def _keys(spec: dict) -> dict[str, str]:
    return {s.name: s.key for s in plan_run(validate_spec(spec)).stages}


def test_auto_keeps_every_key_where_it_resolves_to_sdpa_and_applies_math_without_dropout_only(tmp_path, monkeypatch):
    spec = tiny_spec(tmp_path, ladder=1)
    explicit = {
        (kernel, dropout): _keys({**spec, "train": {**spec["train"], "attention": kernel, "dropout": dropout}})
        for kernel in ("sdpa", "math")
        for dropout in (False, True)
    }
    assert set(explicit[("sdpa", False)].values()).isdisjoint(explicit[("math", False)].values())
    auto = lambda dropout: _keys({**spec, "train": {**spec["train"], "dropout": dropout}})  # noqa: E731

    _machine_says(monkeypatch, "sdpa")
    assert auto(False) == explicit[("sdpa", False)] and auto(True) == explicit[("sdpa", True)]
    stage = plan_run(validate_spec(spec)).stages[0]
    assert stage.settings.attention == "sdpa" and "attention" not in settings_identity(stage.settings)

    _machine_says(monkeypatch, "math")
    assert auto(False) == explicit[("math", False)]  # the faster kernel, under math's keys
    assert auto(True) == explicit[("sdpa", True)]  # with dropout a CPU runs the math kernel anyway: keys kept


def test_the_first_trainer_records_the_kernel_and_later_machines_plan_with_it(tmp_path, monkeypatch):
    spec = validate_spec(tiny_spec(tmp_path, name="recorded", ladder=1))
    root = tmp_path / "recorded"
    _machine_says(monkeypatch, "math")
    run_experiment(spec, only=["ground_truth/*"], echo=QUIET)
    (record,) = (root / "environment").glob("attention-*.json")
    assert json.loads(record.read_text())["value"] == "math"
    config = json.loads(next((root / "stages").glob("ground_truth__*/config.json")).read_text())
    assert config["settings"]["attention"] == "math"

    _machine_says(monkeypatch, "sdpa")  # another machine, whose own answer differs: the folder's holds
    planned = plan_run(spec).stages
    assert {s.settings.attention for s in planned} == {"math"}
    lines = []
    run_experiment(spec, only=["ground_truth/*"], echo=lines.append)
    assert any(
        line.startswith("attention: math without dropout (measured; recorded for this run folder") for line in lines
    )
    assert not any("] ground_truth" in line for line in lines)  # cached: nothing trained again


def test_a_folder_trained_before_auto_keeps_its_kernel_and_its_stages(tmp_path, monkeypatch):
    """Stages trained with PyTorch's choice before `auto` existed: the folder resolves to sdpa
    whatever this machine measures, so they stay cached."""
    spec = tiny_spec(tmp_path, name="older", ladder=1)
    older = validate_spec({**spec, "train": {**spec["train"], "attention": "sdpa"}})
    run_experiment(older, only=["ground_truth/*"], echo=QUIET)
    root = tmp_path / "older"
    _machine_says(monkeypatch, "math")
    lines = []
    run_experiment(validate_spec(spec), only=["ground_truth/*"], echo=lines.append)
    assert not any("] ground_truth" in line for line in lines)
    (record,) = (root / "environment").glob("attention-*.json")
    assert json.loads(record.read_text())["value"] == "sdpa"
    assert "trained before train.attention: auto existed" in json.loads(record.read_text())["why"]
