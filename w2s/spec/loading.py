"""Reading a spec: YAML and `--set` overrides, validation with one-line errors, and the JSON schema."""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from w2s.errors import SpecError
from w2s.spec.experiment import ExperimentSpec
from w2s.spec.loss_specs import _LOSS_CLASSES, XentLoss


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, but a mapping that names a key twice is an error: the second would
    silently win (`train:` written twice loses the first block)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _yaml(text: str):
    """YAML as w2s reads it (no duplicate keys); ValueError for a number too long to convert."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def load_spec(path: str | Path, overrides: list[str] = ()) -> ExperimentSpec:
    """Read a YAML spec, apply `key.sub=value` overrides (values parsed as YAML), validate."""
    return validate_spec(read_spec(path, overrides), source=str(path))


EXAMPLE = "example:"  # `w2s run example:quickstart`: a spec shipped inside the package (w2s/examples/)


def examples() -> list[str]:
    """The names of the specs shipped in w2s/examples/ (what `example:<name>` can name): every spec of
    the repository's experiments/, which links to them."""
    from importlib.resources import files

    return sorted(p.name.removesuffix(".yaml") for p in files("w2s.examples").iterdir() if p.name.endswith(".yaml"))


def describe_examples() -> list[tuple[str, str]]:
    """(example:<name>, its first comment line) for `w2s list examples`."""
    rows = []
    for name in examples():
        comments = [line for line in _example(name).read_text().splitlines() if line.startswith("#")]
        rows.append((f"{EXAMPLE}{name}", comments[0].lstrip("# ").strip() if comments else ""))
    return rows


def _example(name: str) -> Path:
    from importlib.resources import files

    if name not in examples():
        near = difflib.get_close_matches(name, examples(), n=1, cutoff=0.6)
        hint = f"did you mean {EXAMPLE}{near[0]}? " if near else ""
        raise SpecError(
            f"{EXAMPLE}{name}: no such example; {hint}`w2s list examples` shows the {len(examples())} shipped"
        )
    return Path(str(files("w2s.examples") / f"{name}.yaml"))


def read_spec(path: str | Path, overrides: list[str] = ()) -> dict:
    """A YAML spec as written, with `key.sub=value` overrides applied; not validated yet. `path` may be
    `example:<name>`, a spec shipped inside the package (the quickstart, for an installed wheel)."""
    if str(path).startswith(EXAMPLE):
        path = _example(str(path).removeprefix(EXAMPLE))
    path = Path(path)
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.y*ml"))[:5]
        inside = f"; YAML files in it: {', '.join(found)}" if found else ""
        raise SpecError(f"{path}: is a directory; give a spec file (YAML){inside}")
    if not path.is_file():
        name = path.name.removesuffix(".yaml")
        shipped = f"; did you mean {EXAMPLE}{name}? (a spec shipped with w2s)" if name in examples() else ""
        raise SpecError(f"spec file not found: {path}{shipped}")
    try:
        raw = _yaml(path.read_text())
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a text file; a spec is YAML (see experiments/quickstart.yaml)") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise SpecError(f"{path}: malformed YAML{where}: {getattr(err, 'problem', err)}") from None
    except ValueError as err:  # e.g. an integer of thousands of digits
        raise SpecError(f"{path}: a value cannot be read: {err}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a spec must be a YAML mapping of keys such as name, datasets, models")
    data_paths_from(raw, path.parent)
    for item in overrides:
        apply_override(raw, item)
    return raw


def data_paths_from(raw: dict, folder: Path) -> None:
    """The data a spec file names by a relative path (`data_files`, `data_dir`) is relative to the spec
    file's folder, wherever `w2s` runs: made absolute here. `--set` values, applied after, are relative
    to the working directory, as any command-line path. (`output_dir` stays relative to the working directory: that is
    where results go; a model's checkpoint folder stays as written: its name is part of its stage key.)"""
    datasets = raw.get("datasets")
    for dataset in [datasets] if isinstance(datasets, dict) else datasets if isinstance(datasets, list) else []:
        if not isinstance(dataset, dict):
            continue
        files = dataset.get("data_files")
        if isinstance(files, dict):
            for split, paths in files.items():
                files[split] = [_from(folder, p) for p in paths] if isinstance(paths, list) else _from(folder, paths)
        if "data_dir" in dataset:
            dataset["data_dir"] = _from(folder, dataset["data_dir"])


def _from(folder: Path, path):
    """A relative path (a string that is not absolute and does not start with ~) joined to `folder`."""
    if not isinstance(path, str) or not path or Path(path).is_absolute() or path.startswith("~"):
        return path
    return os.path.abspath(folder / path)


def pair_spec(
    weak: str, strong: str, dataset: str, losses: list[str], seeds: list[int], overrides: list[str] = ()
) -> dict:
    """The spec of one weak -> strong pair on a registered dataset, with w2s's defaults (what `w2s run
    --weak --strong --dataset` runs), `key=value` overrides applied; not validated yet."""
    safe = lambda name: re.sub(r"[^\w.\-]+", "-", name).strip("-.") or "model"  # noqa: E731
    raw = {
        "name": f"{safe(dataset)}-{safe(weak)}-to-{safe(strong)}",
        "datasets": {"name": dataset},
        "models": [{"name": weak}, {"name": strong}] if weak != strong else [{"name": weak}],
        "pairs": [[weak, strong]],
        "losses": [{"name": name} for name in losses],
        "seeds": seeds,
    }
    for item in overrides:
        apply_override(raw, item)
    return raw


def apply_override(raw: dict, item: str) -> None:
    """`a.b.0.c=value`: set a nested key (list items by index); the value is parsed as YAML."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise SpecError(f"--set {item!r}: expected KEY=VALUE, e.g. train.lr=1e-4 or seeds=[0,1]")
    try:
        value = _yaml(text)
    except yaml.YAMLError:
        raise SpecError(f"--set {key}: value {text[:40]!r} is not valid YAML") from None
    except ValueError:
        raise SpecError(
            f"--set {key}: value {text[:20]}... ({len(text)} characters) is not a number w2s can "
            "read; write it shorter (e.g. 1e-4)"
        ) from None
    parts = key.split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        try:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        except (ValueError, IndexError, AttributeError):
            raise SpecError(f"--set {key}: {'.'.join(parts[: i + 1])} does not exist in the spec") from None
    last = parts[-1]
    if isinstance(node, list):
        try:
            node[int(last)] = value
        except (ValueError, IndexError):
            raise SpecError(f"--set {key}: no list item {last!r}") from None
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise SpecError(f"--set {key}: {'.'.join(parts[:-1])} is not a mapping")


MAX_PROBLEMS = 10  # shown one line each; beyond that, a count


def validate_spec(raw: dict, source: str = "spec") -> ExperimentSpec:
    """The validated spec; SpecError with every problem validation finds, a line each (up to
    MAX_PROBLEMS, then how many more), each naming its key, what is wrong and what is valid."""
    try:
        return ExperimentSpec.model_validate(raw)
    except ValidationError as err:
        problems = [f"{source}: {line}" for line in describe_errors(err, raw)]
        if len(problems) > MAX_PROBLEMS:
            more = len(problems) - MAX_PROBLEMS
            problems = problems[:MAX_PROBLEMS] + [f"{source}: and {more} more problem{'s' if more > 1 else ''}"]
        raise SpecError("\n".join(problems)) from None


def describe_errors(err: ValidationError, raw: Any) -> list[str]:
    """Every validation error as one line: the dotted key, what is wrong, and what is valid. One line
    per key: the members of a union (`pairs`, a loss) each reject the same value, and the first says
    it best."""
    lines, seen = [], set()
    for error in err.errors():
        key, msg = _describe(error, raw)
        if key not in seen:
            seen.add(key)
            lines.append(f"{key}: {msg}" if key else msg)  # whole-spec checks name their keys in the message
    return lines


def describe_error(err: ValidationError, raw: Any) -> str:
    """The first validation error as one line."""
    return describe_errors(err, raw)[0]


# Hugging Face Trainer (TrainingArguments) names -> where w2s sets the same thing, and how it differs
TRAINER_NAMES = {
    "learning_rate": ("train.lr", ""),
    "num_train_epochs": ("train.epochs", ""),
    "warmup_ratio": ("train.warmup_frac", ""),
    "warmup_steps": ("train.warmup_frac", ", a share of the steps"),
    "lr_scheduler_type": ("train.lr_schedule", ""),
    "per_device_train_batch_size": (
        "train.minibatch_size",
        ", examples per forward pass per process; train.batch_size is the optimizer batch over all "
        "processes, the Trainer's per_device_train_batch_size x processes x gradient_accumulation_steps",
    ),
    "per_device_eval_batch_size": ("train.eval_batch_size", ""),
    "gradient_accumulation_steps": ("train.batch_size", ", the optimizer batch: minibatch_size x processes x steps"),
    "eval_steps": ("train.eval_every", ""),
    "logging_steps": ("tracking.log_every", ""),
    "report_to": ("tracking.mode", ""),
    "seed": ("seeds", ", a list"),
    "bf16": ("train.mixed_precision", ": bf16"),
    "fp16": ("train.mixed_precision", ": fp16"),
    "max_seq_length": ("datasets.max_ctx", ""),
    "model_name_or_path": ("models.N.name", ""),
}


def _describe(error: dict, raw: Any) -> tuple[str, str]:
    """(dotted key, what is wrong and what is valid) of one validation error."""
    loc = [str(p) for p in error["loc"]]
    # pydantic puts union tags into the location (losses.0.logconf.aux_coef, pairs.list[tuple[str, str]]):
    # drop them (no spec key holds a bracket or starts so)
    loc = [p for p in loc if p not in _LOSS_CLASSES and "[" not in p]
    loc = [p for p in loc if not p.startswith(("function-", "constrained-"))]
    msg = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        msg = _unknown_key(loc[-1], _valid_keys(loc[:-1], raw))
    elif error["type"] == "missing":
        msg = "required key is missing"
    elif error["type"] == "literal_error" and isinstance(error.get("input"), str):
        choices = re.findall(r"'([^']*)'", error["ctx"]["expected"])
        if near := difflib.get_close_matches(error["input"], choices, n=1, cutoff=0.6):
            msg += f" (did you mean {near[0]!r}?)"
    return ".".join(loc), msg


def _unknown_key(name: str, valid: list[str]) -> str:
    """`unknown key`, what it may be (a near spelling, or the Trainer's name for a w2s setting), and
    the keys valid there."""
    hint = ""
    if name in TRAINER_NAMES:
        path, note = TRAINER_NAMES[name]
        here = path.rsplit(".", 1)[-1]
        hint = f" (did you mean {here if here in valid else path}? the Trainer's {name}{note})"
    elif near := difflib.get_close_matches(name, valid, n=1, cutoff=0.75):
        hint = f" (did you mean {near[0]}?)"
    return f"unknown key{hint}" + (f"; valid keys here: {', '.join(valid)}" if valid else "")


def _valid_keys(parent: list[str], raw: Any) -> list[str]:
    """The field names allowed at `parent` (a validation location), by walking the spec models."""
    model: Any = ExperimentSpec
    node = raw
    for part in parent:
        if part.isdigit():  # a list item: same model, the item's raw value
            node = node[int(part)] if isinstance(node, list) and int(part) < len(node) else node
            continue
        field = model.model_fields.get(part) if isinstance(model, type) else None
        if field is None:
            return []
        node = node.get(part, {}) if isinstance(node, dict) else {}
        model = _model_in(field.annotation)
    if model is XentLoss and isinstance(node, dict):  # the loss union: pick the member by its name
        model = _LOSS_CLASSES.get(node.get("name"), model)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return []
    fields = list(model.model_fields)
    return sorted(fields, key=lambda f: f != "name")  # `name` first: loss models inherit label and probe


def _model_in(annotation: Any) -> Any:
    """The first BaseModel class inside an annotation such as list[DataSpec] or the loss union."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def json_schema() -> dict:
    return ExperimentSpec.model_json_schema()
