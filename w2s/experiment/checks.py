"""The pre-run check: can this spec run here? One function, called by `w2s validate`, `w2s run
--dry-run` and `w2s run` before anything is written.

Validation (w2s/spec/) already rejected what the spec says on its own; planning (w2s/experiment/plan.py)
already found every data file, since keys hash their contents. What is left needs the files, the
code or the model configs: the data parse and hold class indices in the right columns, every split
is non-empty, losses build with the keywords given, batch sizes divide across the processes, the
settings that split a stage's rows or steps (validation, gold labels, evaluation points) leave
something on each side, probe layers exist, generative finetuning has a causal LM, tokenizers load.
Each problem is one `SpecError` naming the spec key, so nobody waits an hour for an error a second
could have shown.

Torch and transformers are imported only by the checks that need them (a custom loss module, a
model config for probe layers, LoRA or generative finetuning, tokenizing with ctx_policy: drop, a
tokenizer without a tokenizer.json, a spec that evaluates during training); data files are parsed
with `datasets`. So checking the quickstart (generated data, plain models) takes a fraction of a
second.
"""

from __future__ import annotations

import importlib
import math
import os
from pathlib import Path

from w2s import data
from w2s.errors import SpecError, first_line
from w2s.experiment.kinds import TRANSFER_KINDS, StudentStage
from w2s.experiment.selection import validation_ids
from w2s.models.names import parse_model_name, resolve
from w2s.spec import CustomLoss, ExperimentSpec


def check_runnable(spec: ExperimentSpec, stages: list) -> None:
    """Raise SpecError for the first problem that would stop `stages` (of `plan(spec)`) from running."""
    _check_output(spec)
    _check_batches(spec, stages)
    for i, loss in enumerate(spec.losses):
        if isinstance(loss, CustomLoss):  # built-in losses take exactly the keywords their spec allows
            from w2s.training.losses import build_loss

            build_loss(loss, key=f"losses.{i}")
    splits = {}
    for i, dataset in enumerate(spec.datasets):
        for seed in sorted({s.seed for s in stages if s.dataset is dataset}):
            splits[i, seed] = data.load_splits(dataset, seed, key=f"datasets.{i}")  # read once; the run reuses them
    _check_models(spec, stages)
    _check_label_budgets(spec, stages, splits)
    _check_training_rows(spec, stages, splits)
    _check_probes(spec, splits)
    _check_context(spec, stages, splits)


def _check_output(spec: ExperimentSpec) -> None:
    """Results go to <output_dir>/<name>: every part of that path that exists must be a folder."""
    path = spec.run_dir
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            key = "name" if part == path else "output_dir"
            raise SpecError(f"{key}: {part} is a file; results need a folder there")


def world_size() -> int:
    """Processes of this launch (`accelerate launch` and torchrun set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def _check_batches(spec: ExperimentSpec, stages: list) -> None:
    processes = world_size()
    for stage in stages:
        settings = stage.settings
        if settings.batch_size % (settings.minibatch_size * processes):
            i = [m.display for m in spec.models].index(stage.model.display)
            model = stage.model
            key = f"models.{i}.batch_size" if model.batch_size or model.minibatch_size else "train.batch_size"
            raise SpecError(
                f"{key}: {settings.batch_size} is not a multiple of minibatch_size x processes = "
                f"{settings.minibatch_size} x {processes}; pick sizes that divide"
            )


def _check_models(spec: ExperimentSpec, stages: list) -> None:
    used = {s.model.display for s in stages}
    text = not any(d.is_image for d in spec.datasets)
    tokenizers = set()  # (folder, trust_remote_code) checked: rungs of one checkpoint share one
    for i, model in enumerate(spec.models):
        if model.display not in used:
            continue
        name = parse_model_name(model.name)  # spelled right (validation); what exists is checked here
        if name.kind == "folder" and not name.folder.is_dir():
            raise SpecError(f"models.{i}.name: no such checkpoint folder: {model.name}")
        if name.kind == "torchhub" and name.folder is not None and not (name.folder / "hubconf.py").is_file():
            raise SpecError(f"models.{i}.name: no hubconf.py in {name.repo} (a torch.hub folder needs one)")
        if name.kind == "torchvision":
            _check_torchvision(f"models.{i}.name", model.name)
        if not text:
            continue
        try:
            folder = Path(resolve(model)[0])  # an alias of a split checkpoint is assembled here, once
        except SpecError as err:
            raise SpecError(f"models.{i}.name: {model.name}: {err}") from None
        if folder.is_dir() and not (folder / "config.json").is_file():
            raise SpecError(
                f"models.{i}.name: {model.name} is a folder but not a Hugging Face checkpoint "
                "(no config.json); give a checkpoint folder, a hub id or an alias (w2s list models)"
            )
        if (folder, model.trust_remote_code) not in tokenizers:
            _check_tokenizer(model, folder, f"models.{i}")
            tokenizers.add((folder, model.trust_remote_code))
        if model.generative_finetune is not None:
            from w2s.training import generative

            generative.check_causal(model, f"models.{i}")
        probes = [
            (j, loss.probe)
            for j, loss in enumerate(spec.losses)  # probe layers given as numbers
            if loss.probe is not None
            and isinstance(loss.probe.layer, int)
            and any(isinstance(s, StudentStage) and s.loss == loss and s.model.display == model.display for s in stages)
        ]
        if model.config_overrides or model.num_layers is not None:
            _check_config(model, f"models.{i}")
        if model.lora is None and not probes and model.train:
            continue
        from w2s.models.loading import read_config

        config = read_config(model)  # None where it cannot be read here (a hub id offline): loading says why
        if config is None:
            continue
        if not model.train:
            _check_zero_shot_head(spec, model, config, f"models.{i}")
        if model.lora is not None:
            _check_lora_targets(model, config, f"models.{i}.lora.target_modules")
        for j, probe in probes:  # a probe layer the student model does not have
            if probe.layer > config.num_hidden_layers:
                raise SpecError(
                    f"losses.{j}.probe.layer: {probe.layer} is out of range; "
                    f"{model.display} has hidden states 0..{config.num_hidden_layers}"
                )


def _check_config(model, key: str) -> None:
    """`num_layers` within the checkpoint's layers (more would be built with random weights), and every
    `config_overrides` key one the model's config knows (a Hugging Face config takes any keyword, so a
    misspelt one would do nothing); skipped where the checkpoint's config cannot be read here."""
    import difflib
    import inspect

    from transformers import AutoConfig

    from w2s.models.loading import quiet_transformers

    source, layers = resolve(model)
    try:
        with quiet_transformers():
            base = AutoConfig.from_pretrained(source, trust_remote_code=model.trust_remote_code)
    except (OSError, ValueError):
        return
    have = getattr(base, "num_hidden_layers", None)
    if layers is not None and have is not None and layers > have and not model.random_init:
        raise SpecError(
            f"{key}.num_layers: {layers} is more than the {have} layers of {model.name}: the rest would be "
            f"random weights; use 1 to {have}"
        )
    known = set(base.to_dict()) | set(getattr(base, "attribute_map", {}))
    for cls in type(base).__mro__:  # every keyword the config classes' __init__ take
        if "__init__" in vars(cls):
            known |= set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
    for name in model.config_overrides:
        if name not in known:
            near = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"; did you mean {near[0]}?" if near else ""
            raise SpecError(
                f"{key}.config_overrides.{name}: {type(base).__name__} has no such setting (it would be ignored){hint}"
            )


def _check_zero_shot_head(spec: ExperimentSpec, model, config, key: str) -> None:
    """A zero-shot text model's predictions are its own head's: it must have one (a bare encoder would
    get a random head, and weak labels that mean nothing), with an output for each class it maps."""
    heads = [a for a in (config.architectures or []) if a.endswith("ForSequenceClassification")]
    if not heads:
        found = ", ".join(config.architectures or []) or "no architectures in its config"
        raise SpecError(
            f"{key}.train: {model.display} is zero-shot (train: false), but its checkpoint has no "
            f"classification head ({found}); give a sequence classifier, or train it (train: true)"
        )
    outputs = config.num_labels
    if model.class_map is not None and len(model.class_map) != outputs:
        raise SpecError(
            f"{key}.class_map: lists {len(model.class_map)} classes, but {model.display} has {outputs} "
            "outputs (id2label in its config): give one task class per output"
        )
    for dataset in spec.datasets:
        if model.class_map is None and outputs != dataset.num_classes:
            raise SpecError(
                f"{key}.class_map: {model.display} has {outputs} outputs and {dataset.label} "
                f"{dataset.num_classes} classes; set class_map to say which class each output stands for"
            )


def _check_torchvision(key: str, name: str) -> None:
    """torchvision imports: a build made for another torch fails on its first operator, not at install."""
    try:
        importlib.import_module("torchvision")
    except Exception as err:  # noqa: BLE001 - ImportError, or RuntimeError "operator torchvision::nms does not exist"
        raise SpecError(
            f"{key}: {name} needs torchvision, which does not import here ({first_line(err)}); install "
            "the torchvision built for your torch (docs/datasets_and_models.md, installing torchvision)"
        ) from None


def _check_tokenizer(model, folder: Path, key: str) -> None:
    """The tokenizer loads. A checkpoint folder's tokenizer.json (what fast tokenizers save) is parsed
    with the `tokenizers` library, without transformers; anything else is loaded as the stages load it."""
    file = folder / "tokenizer.json"
    if not (file.is_file() and not model.trust_remote_code):
        from w2s.models.loading import load_tokenizer

        load_tokenizer(model, key=key)
        return
    from tokenizers import Tokenizer

    try:
        Tokenizer.from_file(str(file))
    except Exception as err:  # noqa: BLE001 - a damaged or foreign file: the Rust parser's words
        raise SpecError(f"{key}.name: cannot load the tokenizer of {model.name!r}: {first_line(err)}") from None


def _check_lora_targets(model, config, key: str) -> None:
    """Named adapter targets must be modules of the network (peft matches a name or a name's suffix).
    The network is built on the meta device: no weights are read or allocated."""
    targets = model.lora.target_modules
    if targets == "all-linear":
        return
    import torch
    from transformers import AutoModel

    with torch.device("meta"):
        names = [name for name, _ in AutoModel.from_config(config).named_modules()]
    for target in [targets] if isinstance(targets, str) else targets:
        if not any(name == target or name.endswith(f".{target}") for name in names):
            leaves = sorted(
                {name.rsplit(".", 1)[-1] for name in names if name and not name.rsplit(".", 1)[-1].isdigit()}
            )
            raise SpecError(
                f"{key}: {model.display} has no module {target!r}; its modules include {', '.join(leaves[:12])}"
            )


def _check_label_budgets(spec: ExperimentSpec, stages: list, splits: dict) -> None:
    """A budget is a share of half A: one larger than half A would silently be all of it."""
    budgeted = {s.model.display for s in stages if s.kind == "ground_truth"}
    for i, model in enumerate(spec.models):
        if model.label_budget is None or model.display not in budgeted:
            continue
        for (d, _seed), split in splits.items():
            if model.label_budget > len(split.train_a):
                raise SpecError(
                    f"models.{i}.label_budget: {model.label_budget} labels, but half A of "
                    f"{spec.datasets[d].label} has {len(split.train_a)} rows; give at most "
                    f"{len(split.train_a)}, or leave it out to use them all"
                )


def _check_training_rows(spec: ExperimentSpec, stages: list, splits: dict) -> None:
    """The settings that split a stage's rows or steps must leave something on each side: a validation
    split that leaves half B rows to train on, a gold share of at least one row and a gold count of
    at most the rows, and evaluation
    points before the last step (one point makes every selection rule `final`)."""
    t = spec.train
    for stage in stages:
        if stage.kind not in ("ground_truth", *TRANSFER_KINDS):
            continue
        d = next(i for i, dataset in enumerate(spec.datasets) if dataset is stage.dataset)
        split, where = splits[d, stage.seed], f"{stage.dataset.label} (seed {stage.seed})"
        half_b = len(split.train_b)
        held = len(validation_ids(split.train_b, t.validation_frac, stage.seed))
        if held >= half_b:
            most = math.floor((half_b - 1) / half_b * 100) / 100
            raise SpecError(
                f"train.validation_frac: {t.validation_frac:g} holds out all {half_b} rows of half B of {where}, "
                f"leaving nothing to train on; give at most {most:g}"
            )
        split_name = getattr(stage, "train_split", "train_b")
        rows = len(getattr(split, split_name)) - (held if split_name == "train_b" else 0)
        if stage.kind == "ground_truth" and stage.model.label_budget is not None:
            rows = min(rows, stage.model.label_budget)
        gold = getattr(stage, "gold", None)
        if gold and gold.frac and gold.rows(rows) < 1:
            least = math.ceil(1000 / rows) / 1000
            raise SpecError(
                f"train.gold_frac: {gold.frac:g} of the {rows} weak labels a student of {where} trains on is 0 "
                f"rows (rounded); give at least {least:g} (one row), or 0 for none"
            )
        if gold and gold.n > rows:
            raise SpecError(
                f"train.gold_n: {gold.n} gold labels, but a student of {where} trains on {rows} rows of half B; "
                f"give at most {rows}"
            )
        settings = stage.settings
        if settings.eval_every is None:
            continue
        from w2s.training.loop import evaluation_steps, optimizer_steps  # torch: only where there is evaluation

        steps = optimizer_steps(rows, settings.batch_size, settings.epochs)
        if len(evaluation_steps(steps, settings.eval_every)) < 2:
            every = settings.eval_every
            asked = f"every {every:g} steps" if every >= 1 else f"every {every:g} of training"
            hint = (
                f"give fewer steps (at most {steps - 1}) or a share of training such as 0.1"
                if steps > 1
                else "train on more rows or for more epochs, or leave eval_every out"
            )
            raise SpecError(
                f"train.eval_every: {asked}, but {stage.name} trains {steps} step{'s' * (steps != 1)} "
                f"({rows} rows x {settings.epochs:g} epochs / batch {settings.batch_size}): its only evaluation "
                f"point is its last, so every select rule is final; {hint}"
            )


def _check_probes(spec: ExperimentSpec, splits: dict) -> None:
    """kNN and TopoCC need more rows in half B than neighbours."""
    for i, loss in enumerate(spec.losses):
        probe = loss.probe
        if probe is None or probe.method == "logreg":
            continue
        for (d, _seed), split in splits.items():
            if len(split.train_b) <= probe.k:
                raise SpecError(
                    f"losses.{i}.probe.k: {probe.k} neighbours, but half B of "
                    f"{spec.datasets[d].label} has {len(split.train_b)} rows; use a smaller k"
                )


def _check_context(spec: ExperimentSpec, stages: list, splits: dict) -> None:
    """With ctx_policy: drop, some rows of every split must fit max_ctx (truncation always leaves them)."""
    for (d, _seed), split in splits.items():
        dataset = spec.datasets[d]
        if dataset.ctx_policy != "drop" or dataset.is_image:
            continue
        from w2s.models.loading import load_tokenizer

        for model in {s.model.display: s.model for s in stages if s.dataset is dataset}.values():
            tokenizer = load_tokenizer(model)
            for name in ("train_a", "train_b", "test"):
                data.tokenize(
                    getattr(split, name),
                    tokenizer,
                    dataset.max_ctx,
                    "drop",
                    where=f"datasets.{d}.max_ctx ({name}, {model.display})",
                )
