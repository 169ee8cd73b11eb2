"""The classifier wrapper: pooling, truncation, zero-initialised head, frozen backbones."""

import pytest
import torch

from tests.conftest import accuracy_from_predictions, split_predictions, tiny_model, tiny_spec
from w2s.models.loading import count_parameters, load_classifier, load_tokenizer
from w2s.pipeline.runner import run_experiment
from w2s.spec import ModelSpec, validate_spec


def test_minilm_alias_truncates_to_the_first_layers():
    one, six = (load_classifier(ModelSpec(name=name)) for name in ("minilm-l1", "minilm-l6"))
    assert one.backbone.config.num_hidden_layers == 1 and six.backbone.config.num_hidden_layers == 6
    # the kept layer is the pretrained one, not a fresh initialisation
    assert torch.equal(
        one.backbone.encoder.layer[0].output.dense.weight, six.backbone.encoder.layer[0].output.dense.weight
    )
    assert one.pooling == "mean"
    assert count_parameters(six)["non_embedding_parameters"] > 5 * count_parameters(one)["non_embedding_parameters"] > 0


def test_head_starts_at_zero_so_predictions_start_uniform():
    model = load_classifier(ModelSpec(name="minilm-l1"))
    tokenizer = load_tokenizer(ModelSpec(name="minilm-l1"))
    batch = tokenizer(["a fine film", "a dreadful, tedious film"], return_tensors="pt", padding=True)
    logits = model(batch["input_ids"], batch["attention_mask"])
    assert torch.equal(logits, torch.zeros(2, 2))


def test_causal_lm_reads_the_last_real_token(tiny_causal_lm):
    spec = ModelSpec(name=str(tiny_causal_lm), random_init=True)
    model = load_classifier(spec)
    assert model.pooling == "last"
    torch.nn.init.normal_(model.head.weight)
    ids = torch.tensor([[5, 6, 7, 0, 0], [5, 6, 7, 8, 9]])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    model.eval()
    padded = model(ids[:1], mask[:1])
    unpadded = model(ids[:1, :3], mask[:1, :3])  # the same text without padding: same logits
    assert torch.allclose(padded, unpadded, atol=1e-5)
    changed_pad = model(torch.tensor([[5, 6, 7, 42, 42]]), mask[:1])
    assert torch.allclose(padded, changed_pad, atol=1e-5)  # padding content is ignored


def test_linear_probe_freezes_the_backbone():
    model = load_classifier(ModelSpec(name="minilm-l1", linear_probe=True))
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["head.weight", "head.bias"]


def test_tiny_causal_lm_runs_end_to_end(tmp_path, tiny_causal_lm):
    spec = tiny_spec(tmp_path, pairs=[["tiny-16", "gpt"]])
    spec["models"].append({"name": str(tiny_causal_lm), "label": "gpt", "random_init": True})
    rows = run_experiment(validate_spec(spec), echo=lambda *a: None)
    assert {r["model"] for r in rows} == {"tiny-16", "gpt"} and len(rows) == 3
    root = tmp_path / "tiny"
    for row in rows:  # each number is what the stage's own predictions say
        assert row["test_accuracy"] == pytest.approx(accuracy_from_predictions(root, row["key"]))
    for row in (r for r in rows if r["model"] == "gpt"):  # the causal LM's stages: ground truth and transfer
        test = split_predictions(root, row["key"])
        assert len(test) == row["n_test"] == 32 and len({p["id"] for p in test}) == 32
        for p in test:  # two classes: p_pos and 1 - p_pos are the distribution, the prediction its argmax
            assert 0 < p["p_pos"] < 1 and p["predicted"] == int(p["p_pos"] > 0.5)
        assert len({p["p_pos"] for p in test}) > 1  # the output depends on the input text
    weak, ceiling = (
        next(r for r in rows if r["kind"] == "ground_truth" and r["model"] == m) for m in ("tiny-16", "gpt")
    )
    (transfer,) = [r for r in rows if r["kind"] == "transfer"]
    assert (transfer["weak_accuracy"], transfer["ceiling_accuracy"]) == (
        weak["test_accuracy"],
        ceiling["test_accuracy"],
    )
    gap = ceiling["test_accuracy"] - weak["test_accuracy"]
    if gap >= 0.01:
        assert transfer["pgr_note"] is None
        assert transfer["pgr"] == pytest.approx((transfer["test_accuracy"] - weak["test_accuracy"]) / gap)
    else:  # the ratio means nothing: left out, and the row says why
        assert transfer["pgr"] is None and transfer["pgr_note"].startswith("ceiling - weak")


def test_unloadable_model_is_a_one_line_error(tmp_path):
    from w2s.errors import SpecError

    empty = tmp_path / "empty-checkpoint"
    empty.mkdir()
    with pytest.raises(SpecError, match=r"models.0.name: cannot load"):
        load_classifier(ModelSpec(name=str(empty)), key="models.0")


def test_lora_trains_only_adapters_and_head(tmp_path):
    spec = ModelSpec(name="minilm-l1", lora={"r": 4, "alpha": 8, "target_modules": ["query", "value"]})
    model = load_classifier(spec)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name or name.startswith("head.") for name in trainable)
    assert sum("lora_A" in name for name in trainable) == 2  # query and value of the one layer
    full = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for n, p in model.named_parameters() if n in trainable) < full / 100

    run_spec = tiny_spec(tmp_path, pairs=[["tiny-16", "tiny-24"]])
    run_spec["models"][1]["lora"] = {"r": 2, "target_modules": "all-linear"}
    rows = run_experiment(validate_spec(run_spec), echo=lambda *a: None)
    assert len(rows) == 3
    for r in rows:
        assert r["test_accuracy"] == pytest.approx(accuracy_from_predictions(tmp_path / "tiny", r["key"]))


def test_lora_with_unknown_target_module_is_a_one_line_error():
    from w2s.errors import SpecError

    with pytest.raises(SpecError, match=r"models.0.lora.target_modules: "):
        load_classifier(ModelSpec(name="minilm-l1", lora={"target_modules": ["no_such_layer"]}), key="models.0")


def test_lora_settings_enter_the_stage_key(tmp_path):
    from w2s.experiment.plan import plan_run

    spec = tiny_spec(tmp_path, pairs=[["tiny-16", "tiny-24"]])
    base = {s.name: s.key for s in plan_run(validate_spec(spec)).stages}
    spec["models"][1]["lora"] = {"r": 2}
    with_lora = {s.name: s.key for s in plan_run(validate_spec(spec)).stages}
    changed = sorted(name for name in base if base[name] != with_lora[name])
    assert changed == ["ground_truth/synthetic/tiny-24/s0", "transfer/synthetic/tiny-16->tiny-24/xent/s0"]


def _state(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("random_init", [True, False])
def test_a_kept_backbone_is_a_fresh_load(random_init):
    """The second load of a rung in a process is a copy of the first (w2s.models.loading.BACKBONES): the same
    weights, torch's random state left as a fresh load leaves it, storage of its own, and training the
    copy leaves what is kept untouched. A different random state is a different entry (random init:
    other weights)."""
    from w2s.models.loading import BACKBONES

    spec = ModelSpec(**(tiny_model("t", 16, 1) if random_init else {"name": "minilm-l1"}))
    BACKBONES.clear()
    torch.manual_seed(3)
    fresh = load_classifier(spec)
    after_fresh = torch.get_rng_state()
    assert len(BACKBONES.entries) == 1
    torch.manual_seed(3)
    kept = load_classifier(spec)
    assert torch.equal(torch.get_rng_state(), after_fresh)
    weights = _state(fresh)
    assert all(torch.equal(weights[k], v) for k, v in kept.state_dict().items())
    assert {p.data_ptr() for p in fresh.parameters()}.isdisjoint(p.data_ptr() for p in kept.parameters())
    with torch.no_grad():
        for p in kept.parameters():
            p.add_(1.0)
    torch.manual_seed(3)
    again = load_classifier(spec)
    assert all(torch.equal(weights[k], v) for k, v in again.state_dict().items())
    ids = torch.tensor([[101, 2023, 2003, 102]])
    mask = torch.ones_like(ids)
    fresh.eval(), again.eval()
    assert torch.equal(fresh.pooled(ids, mask), again.pooled(ids, mask))
    torch.manual_seed(4)
    other = load_classifier(spec)
    assert len(BACKBONES.entries) == 2
    embeddings = "backbone.embeddings.word_embeddings.weight"
    assert torch.equal(other.state_dict()[embeddings], weights[embeddings]) is (not random_init)
    BACKBONES.clear()


def test_a_sweep_gives_the_same_numbers_with_kept_backbones(tmp_path, monkeypatch):
    """A sweep whose stages copy kept backbones writes byte for byte the predictions of one that
    loads every backbone afresh (nothing kept: max_bytes 0)."""
    from w2s.models.loading import BACKBONES

    def predictions(name: str) -> dict:
        root = tmp_path / name
        run_experiment(validate_spec(tiny_spec(tmp_path, name=name, ladder=2)), echo=lambda *a: None)
        return {f.parent.name: f.read_bytes() for f in sorted((root / "stages").glob("*/predictions.jsonl"))}

    BACKBONES.clear()
    monkeypatch.setattr(BACKBONES, "max_bytes", 0)
    afresh = predictions("afresh")
    assert not BACKBONES.entries
    monkeypatch.setattr(BACKBONES, "max_bytes", 4 << 30)
    kept = predictions("kept")
    assert len(BACKBONES.entries) == 2  # the two rungs, each loaded by several stages
    assert len(afresh) == 5 and list(afresh.values()) == list(kept.values())
    BACKBONES.clear()


@pytest.mark.parametrize(
    "change, layers", [({"config_overrides": {"num_hidden_layers": 3}}, 3), ({"num_layers": 1}, 1)]
)
def test_per_layer_config_lists_follow_a_changed_layer_count(tiny_qwen, change, layers):
    """Qwen2's config lists an attention type per layer, and a saved config brings its list back as
    it was: a deeper random model used to fail building its third layer (IndexError)."""
    model = load_classifier(ModelSpec(name=str(tiny_qwen), random_init=True, **change))
    assert len(model.backbone.layers) == len(model.backbone.config.layer_types) == layers
    logits = model(torch.tensor([[101, 2204, 102]]), torch.ones(1, 3, dtype=torch.long))
    assert logits.shape == (1, 2)
