"""One class per stage kind (w2s/experiment/kinds.py), each with `run(job) -> (metrics, predictions)`.

Under `accelerate launch` every process runs a stage's work together (training and prediction are
collective); only the writer (the main process) writes the stage folder, logs and computes metrics.
The others return (None, None).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from safetensors.torch import save_file

from w2s.data import load_splits
from w2s.errors import SpecError, first_line
from w2s.experiment.kinds import KINDS, Stage
from w2s.experiment.selection import RULES, validation_ids
from w2s.jsonfiles import read_json, write_json
from w2s.models.loading import (
    ProbeHead,
    count_parameters,
    load_classifier,
    load_zero_shot_classifier,
    map_classes,
    resolve_layer,
)
from w2s.pipeline.checkpoints import Checkpoints
from w2s.pipeline.evaluation import classifier_metrics, combine, hard_labels, weak_label_quality
from w2s.pipeline.inputs import (
    LengthLog,
    base_weights,
    clean_with_probe,
    encode,
    mix_gold,
    model_location,
    one_hot,
    supervisor_labels,
    supervisor_predictions,
)
from w2s.pipeline.store import finished_folder
from w2s.scoring.metrics import test_scores
from w2s.scoring.predictions import prediction_lines, read_split_probabilities, rule_file, write_rule_predictions
from w2s.spec import ExperimentSpec
from w2s.training import activations, generative
from w2s.training.batches import Batches
from w2s.training.inference import batch_outputs, canonical_probabilities, predict
from w2s.training.launch import make_accelerator
from w2s.training.loop import classification, train
from w2s.training.losses import Xent, build_loss

Output = tuple[dict | None, list[dict] | None]  # (None, None) on a process that does not write


@dataclass(frozen=True)
class StageJob:
    """One stage to run in this process."""

    stage: Stage
    spec: ExperimentSpec
    root: Path  # the experiment folder, where the stages this one reads are finished
    folder: Path  # the temporary folder the stage is written into
    writes: bool  # this process writes `folder`, logs to the tracker and computes metrics
    tracker: object | None  # a StageTracker on the writing process
    echo: Callable = print

    def log(self, row: dict, section: str = "train") -> None:
        if self.tracker is not None:
            self.tracker.log(row, section)

    def echo_notes(self, notes: list[str]) -> None:
        for note in notes:
            self.echo(f"  {self.stage.dataset.label}: {note}")


class Labelled(NamedTuple):
    """What a classifier stage trains on and validates on."""

    train_rows: list[dict]
    train_labels: np.ndarray  # (n, k) soft labels
    validation_rows: list[dict]  # held out of half B (`train.validation_frac`); [] without
    validation_labels: np.ndarray  # ground truth, or the supervisor's labels for students
    loss_fn: object
    extra: dict  # metrics on what was done to the labels
    supervisor: dict | None = None  # a student's: its supervisor's predictions (supervisor_predictions)
    epochs: float | None = None  # passes over train_rows, where not the stage's settings' (a gold-only stage)


class Inputs(NamedTuple):
    """A classifier stage's model and its splits, as the loop reads them (tokens, or cached activations)."""

    model: torch.nn.Module
    sizes: dict  # its parameter counts: the report's x-axis
    train: Batches
    validation: Batches | None  # None without a validation split
    validation_rows: list[dict]
    half_b: Batches
    half_b_rows: list[dict]
    test: Batches
    test_rows: list[dict]


class ClassifierStage:
    """Train the classifier (or, on cached activations, its head) and predict half B and test; with
    `train.eval_every`, also at every evaluation point, keeping the checkpoint each selection rule
    chooses (w2s/pipeline/checkpoints.py)."""

    def train_split(self, stage: Stage) -> str:
        """Which half of the training pool it trains on."""
        raise NotImplementedError

    def labels(self, job: StageJob, splits, held_out: set[str]) -> Labelled:
        raise NotImplementedError

    def run(self, job: StageJob) -> Output:
        stage = job.stage
        splits = load_splits(stage.dataset, stage.seed)
        held_out = validation_ids(splits.train_b, stage.settings.validation_frac, stage.seed)
        given = self.labels(job, splits, held_out)
        lengths = LengthLog()
        if stage.features is not None:  # a linear probe: the head alone, on cached activations
            inputs = self.on_activations(job, splits, given)
        else:
            inputs = self.on_tokens(job, splits, given, lengths)
        job.echo_notes(lengths.notes)
        checkpoints = self.checkpoints(job, inputs) if stage.settings.eval_every is not None else None

        start = time.perf_counter()
        settings = stage.settings if given.epochs is None else dataclasses.replace(stage.settings, epochs=given.epochs)
        model, accelerator = train(
            inputs.model,
            inputs.train,
            classification(given.loss_fn),
            settings,
            stage.training_seed,
            log=job.log,
            log_every=job.spec.tracking.log_every,
            desc=stage.name,
            echo=job.echo,
            evaluate=checkpoints,
        )
        train_seconds = time.perf_counter() - start
        if checkpoints is None:
            batch = stage.settings.eval_batch_size
            p_b = predict(model, inputs.half_b, accelerator, batch, desc="predict half B")
            p_test = predict(model, inputs.test, accelerator, batch, desc="predict test")
        else:  # the stage's result is its rule's checkpoint (ground-truth stages: final; all are kept)
            train_seconds -= checkpoints.seconds
            p_b, p_test = checkpoints.result(stage.select)
        predict_seconds = time.perf_counter() - start - train_seconds
        if job.spec.save_model:
            save_model(job, model, accelerator)
        if accelerator.device.type != "cpu":
            # hand the accelerator's memory back before the next stage (a CPU gets nothing from its
            # full garbage collection, which takes long with a sweep's data in memory)
            accelerator.free_memory()
        if not job.writes:
            return None, None
        metrics = classifier_metrics(
            p_b,
            inputs.half_b_rows,
            p_test,
            inputs.test_rows,
            len(inputs.train),
            train_seconds,
            held_out,
            given.supervisor,
        )
        metrics.update(inputs.sizes, **given.extra, **lengths.metrics(), predict_seconds=round(predict_seconds, 2))
        if checkpoints is not None:
            metrics.update(self.other_rules(job, inputs, checkpoints))
        return metrics, prediction_lines(
            job.folder, {"train_b": (inputs.half_b_rows, p_b), "test": (inputs.test_rows, p_test)}
        )

    def on_activations(self, job: StageJob, splits, given: Labelled) -> Inputs:
        """A linear probe's head and the cached activations of its features stage."""
        stage, k = job.stage, job.stage.dataset.num_classes
        features_folder = finished_folder(job.root, stage.features)
        cached = activations.read(features_folder)
        train_data, _ = cached[self.train_split(stage)].select(given.train_rows, given.train_labels)
        val_data, val_rows = (
            cached["train_b"].select(given.validation_rows, given.validation_labels)
            if given.validation_rows
            else (None, [])
        )
        b_data, b_rows = cached["train_b"].select(splits.train_b, one_hot(splits.train_b, k))
        test_data, test_rows = cached["test"].select(splits.test, one_hot(splits.test, k))
        network = read_json(features_folder / "metrics.json")  # the probed network's size: the report's x-axis
        sizes = {name: network[name] for name in ("parameters", "non_embedding_parameters")}
        model = ProbeHead(test_data.array.shape[1], k)
        return Inputs(model, sizes, train_data, val_data, val_rows, b_data, b_rows, test_data, test_rows)

    def on_tokens(self, job: StageJob, splits, given: Labelled, lengths: LengthLog) -> Inputs:
        """The classifier and its splits tokenized."""
        stage, k = job.stage, job.stage.dataset.num_classes
        train_data, _ = encode(given.train_rows, stage, given.train_labels, lengths, "train")
        val_data, val_rows = (
            encode(given.validation_rows, stage, given.validation_labels, lengths, "validation")
            if given.validation_rows
            else (None, [])
        )
        b_data, b_rows = encode(splits.train_b, stage, one_hot(splits.train_b, k), lengths, "train_b")
        test_data, test_rows = encode(splits.test, stage, one_hot(splits.test, k), lengths, "test")
        model = load_classifier(
            stage.model, key=model_location(job.spec, stage), weights_from=base_weights(job.root, stage), classes=k
        )
        return Inputs(
            model, count_parameters(model), train_data, val_data, val_rows, b_data, b_rows, test_data, test_rows
        )

    def checkpoints(self, job: StageJob, inputs: Inputs) -> Checkpoints:
        """Evaluation during training: the curve and each selection rule's checkpoint."""
        data = {"train_b": inputs.half_b, "test": inputs.test}
        if inputs.validation_rows:
            data["validation"] = inputs.validation
        validation_labels = inputs.validation.labels if inputs.validation_rows else None
        truth = {"test": hard_labels(inputs.test_rows)}
        return Checkpoints(data, validation_labels, truth, job.stage.settings.eval_batch_size, job.log)

    def other_rules(self, job: StageJob, inputs: Inputs, checkpoints: Checkpoints) -> dict:
        """The curve and each rule's choice for metrics.json; the checkpoints of the rules other than
        the stage's own written beside its predictions, for their students and the report."""
        for rule in checkpoints.rules:
            if rule != job.stage.select:
                other_b, other_test = checkpoints.result(rule)
                splits = {"train_b": (inputs.half_b_rows, other_b), "test": (inputs.test_rows, other_test)}
                write_rule_predictions(job.folder, splits, rule)
        n_validation = len(inputs.validation_rows)
        return {"n_validation": n_validation, "curve": checkpoints.curve, "selection": checkpoints.selection()}


def save_model(job: StageJob, model, accelerator) -> None:
    """The trained weights into the stage folder's model/ (`save_model: true`)."""
    state = accelerator.get_state_dict(model)  # collective under FSDP / ZeRO-3: every process calls it
    if job.writes:
        (job.folder / "model").mkdir()
        weights = {k: v.detach().clone().contiguous() for k, v in state.items()}  # clone: tied weights share memory
        save_file(weights, str(job.folder / "model" / "model.safetensors"))


class GroundTruth(ClassifierStage):
    """Half A with its true labels, cross-entropy: the weak supervisor and the ceiling (`ceiling: half_b`:
    a student's ceiling trains on half B). It validates on the ground truth of half B's held-out rows."""

    def train_split(self, stage: Stage) -> str:
        return stage.train_split

    def labels(self, job: StageJob, splits, held_out: set[str]) -> Labelled:
        stage, k = job.stage, job.stage.dataset.num_classes
        rows = [r for r in getattr(splits, stage.train_split) if r["id"] not in held_out]
        rows = rows[: stage.model.label_budget]  # None: the whole half
        validation = [r for r in splits.train_b if r["id"] in held_out]
        return Labelled(rows, one_hot(rows, k), validation, one_hot(validation, k), Xent(), {})


class Transfer(ClassifierStage):
    """Half B with the supervisor's soft labels (of its checkpoint under the stage's selection rule),
    cleaned by a label probe if the loss has one, some replaced by ground truth with `gold_frac` or
    `gold_n`; it validates on the supervisor's labels of half B's held-out rows."""

    def train_split(self, stage: Stage) -> str:
        return "train_b"

    def supervised(self, job: StageJob, splits, held_out: set[str]) -> Labelled:
        """Half B with the supervisor's labels, split into the rows it trains on and the held-out
        ones (validation), before anything changes them."""
        supervisor = supervisor_predictions(job.root, job.stage)
        rows, labels = supervisor_labels(supervisor["train_b"], splits.train_b)
        held = np.array([r["id"] in held_out for r in rows], dtype=bool)
        train_rows, validation_rows = [r for r, h in zip(rows, held) if not h], [r for r, h in zip(rows, held) if h]
        return Labelled(train_rows, labels[~held], validation_rows, labels[held], None, {}, supervisor)

    def gold_rows(self, job: StageJob, given: Labelled, rows: list[dict], labels: np.ndarray):
        """`rows` with `labels`, the stage's gold rows' replaced by ground truth (chosen by the
        supervisor's confidence on `given`'s rows, before a probe), the chosen indices; the choice
        recorded in gold.json."""
        stage = job.stage
        confidence = dict(zip((r["id"] for r in given.train_rows), given.train_labels.max(axis=1)))
        mixed, chosen, record = mix_gold(rows, labels, confidence, stage.gold, stage.seed)
        if job.writes:  # which rows trained on ground truth, and how they were chosen
            write_json(job.folder / "gold.json", record)
        return mixed, chosen

    def labels(self, job: StageJob, splits, held_out: set[str]) -> Labelled:
        stage, given = job.stage, self.supervised(job, splits, held_out)
        train_rows, train_labels = given.train_rows, given.train_labels
        extra = weak_label_quality(train_rows, train_labels)
        if stage.loss.probe is not None:
            train_rows, train_labels, probe = clean_with_probe(job.root, stage, train_rows, train_labels)
            extra.update(probe)
            job.echo(
                f"  probe {stage.loss.probe.method}/{stage.loss.probe.mode}: {probe['probe_changed']} labels changed, "
                f"{probe['probe_removed']} removed; label accuracy {probe['weak_label_accuracy']:.3f} -> "
                f"{probe['probe_label_accuracy']:.3f}"
            )
        if stage.gold:
            train_labels, chosen = self.gold_rows(job, given, train_rows, train_labels)
            extra["n_gold"] = len(chosen)
        return given._replace(
            train_rows=train_rows, train_labels=train_labels, loss_fn=build_loss(stage.loss), extra=extra
        )


class GoldOnly(Transfer):
    """The student's model on its gold rows alone (those its students get ground truth for, before a
    label probe), cross-entropy on their ground truth: what the gold labels buy without weak ones.
    It takes as many optimizer steps as its students (their epochs over their rows: more passes over
    fewer rows), so that a small gold set is not undertrained for being small."""

    def labels(self, job: StageJob, splits, held_out: set[str]) -> Labelled:
        given = self.supervised(job, splits, held_out)
        _, chosen = self.gold_rows(job, given, given.train_rows, given.train_labels)
        gold = [given.train_rows[i] for i in chosen]
        epochs = job.stage.settings.epochs * len(given.train_rows) / max(len(gold), 1)
        return given._replace(
            train_rows=gold,
            train_labels=one_hot(gold, given.train_labels.shape[1]),
            loss_fn=Xent(),
            extra={"n_gold": len(gold), "epochs": round(epochs, 4)},
            epochs=epochs,
        )


def image_encoder(job: StageJob, head: bool = False):
    """An image model as the stage's spec names it (`head`: with its own class outputs), and its size."""
    from w2s import vision

    model = job.stage.model
    try:
        encoder = vision.load_image_encoder(
            model.name,
            random_init=model.random_init,
            config_overrides=model.config_overrides,
            dtype=getattr(torch, model.dtype),
            head=head,
            trust_remote_code=model.trust_remote_code,
        )
    except ValueError as err:
        raise SpecError(f"{model_location(job.spec, job.stage)}.name: {first_line(err)}") from None
    n_params = sum(p.numel() for p in encoder.model.parameters())
    return encoder, {"parameters": n_params, "non_embedding_parameters": n_params}


class ZeroShot:
    """A model used as it is (`train: false`): its own predictions on half B (the weak labels) and test,
    mapped to the task's classes (`class_map`). Nothing trains; the stage stands where a weak model's
    ground-truth stage would, as the supervisor and the PGR baseline."""

    def run(self, job: StageJob) -> Output:
        stage, k, key = job.stage, job.stage.dataset.num_classes, model_location(job.spec, job.stage)
        splits = load_splits(stage.dataset, stage.seed)
        accelerator = make_accelerator(stage.settings)
        lengths, batch = LengthLog(), stage.settings.eval_batch_size
        start = time.perf_counter()
        outputs, rows = {}, {}
        if stage.dataset.is_image:
            model, sizes = image_encoder(job, head=True)
            for name, split_rows in (("train_b", splits.train_b), ("test", splits.test)):
                outputs[name] = activations.of_images(model, split_rows, accelerator, batch, f"zero-shot {name}")
                rows[name] = split_rows
        else:
            model = load_zero_shot_classifier(stage.model, key).to(accelerator.device)
            sizes = count_parameters(model)

            def logits(inputs: dict) -> torch.Tensor:
                with accelerator.autocast():
                    return model(**inputs)

            for name, split_rows in (("train_b", splits.train_b), ("test", splits.test)):
                data, rows[name] = encode(split_rows, stage, one_hot(split_rows, k), lengths, name)
                outputs[name] = batch_outputs(logits, data, accelerator, batch, f"zero-shot {name}")
        job.echo_notes(lengths.notes)
        probs = {
            name: canonical_probabilities(map_classes(logits, stage.model.class_map, k, key))
            for name, logits in outputs.items()
        }
        if not job.writes:
            return None, None
        metrics = classifier_metrics(probs["train_b"], rows["train_b"], probs["test"], rows["test"], 0, 0.0)
        metrics.update(sizes, seconds=round(time.perf_counter() - start, 2), **lengths.metrics())
        return metrics, prediction_lines(job.folder, {name: (rows[name], probs[name]) for name in probs})


class Ensemble:
    """Several weak models as one supervisor (`ensembles:`): its members' predictions combined, by
    their mean or their vote, on half B (its students' labels) and test (its score: their PGR
    baseline). It trains nothing; where the members evaluated during training it combines each
    selection rule's checkpoints too."""

    def run(self, job: StageJob) -> Output:
        stage, start = job.stage, time.perf_counter()
        splits = load_splits(stage.dataset, stage.seed)
        folders = [finished_folder(job.root, m) for m in stage.members]
        rules = [
            r for r in RULES if r == "final" or all((f / rule_file("predictions.jsonl", r)).is_file() for f in folders)
        ]
        results = {rule: self.combined(stage, splits, folders, rule) for rule in rules}
        if not job.writes:
            return None, None
        (b_rows, p_b), (test_rows, p_test) = results["final"]["train_b"], results["final"]["test"]
        metrics = classifier_metrics(p_b, b_rows, p_test, test_rows, 0, 0.0)
        sizes = [read_json(f / "metrics.json") for f in folders]
        metrics.update(
            {k: max(m.get(k) or 0 for m in sizes) for k in ("parameters", "non_embedding_parameters")},
            n_members=len(folders),
            seconds=round(time.perf_counter() - start, 2),
        )
        if len(rules) > 1:
            metrics["selection"] = {}
            for rule, combined in results.items():
                rows, probs = combined["test"]
                metrics["selection"][rule] = {"step": None, **test_scores(probs, hard_labels(rows))}
                if rule != "final":
                    write_rule_predictions(job.folder, combined, rule)
        return metrics, prediction_lines(job.folder, results["final"])

    @staticmethod
    def combined(stage: Stage, splits, folders: list[Path], rule: str) -> dict[str, tuple[list[dict], np.ndarray]]:
        """Per split, the rows every member predicted and their combined probabilities, at `rule`'s checkpoints."""
        members = [read_split_probabilities(f, ("train_b", "test"), None if rule == "final" else rule) for f in folders]
        out = {}
        for split, rows in (("train_b", splits.train_b), ("test", splits.test)):
            read = [member[split] for member in members]
            common = set.intersection(*(set(ids) for ids, _ in read))  # rows every member predicted
            rows = [r for r in rows if r["id"] in common]
            ordered = []
            for ids, probs in read:
                where = {id_: i for i, id_ in enumerate(ids)}
                ordered.append(probs[[where[r["id"]] for r in rows]].astype(np.float64))
            out[split] = (rows, canonical_probabilities(combine(ordered, stage.combine)))
        return out


class Features:
    """The `features` stage: pooled activations of the frozen model for every split, in features.npz."""

    def run(self, job: StageJob) -> Output:
        stage = job.stage
        splits = load_splits(stage.dataset, stage.seed)
        accelerator = make_accelerator(stage.settings)
        batch, key = stage.settings.eval_batch_size, model_location(job.spec, stage)
        start = time.perf_counter()
        arrays, lengths = {}, LengthLog()
        split_rows = {"train_a": splits.train_a, "train_b": splits.train_b, "test": splits.test}
        if stage.dataset.is_image:
            encoder, sizes = image_encoder(job)
            layer = None
            for name, rows in split_rows.items():
                array = activations.of_images(encoder, rows, accelerator, batch, f"features {name}")
                arrays[name] = activations.SplitActivations([r["id"] for r in rows], array)
        else:
            model = load_classifier(stage.model, key=key, weights_from=base_weights(job.root, stage))
            sizes = count_parameters(model)
            layer = resolve_layer(stage.layer, model.backbone.config.num_hidden_layers)
            for name, rows in split_rows.items():
                data, _ = encode(rows, stage, one_hot(rows, stage.dataset.num_classes), lengths, name)
                array = activations.of_text(model, data, layer, accelerator, batch, f"features {name}")
                arrays[name] = activations.SplitActivations(data.ids, array)
        job.echo_notes(lengths.notes)
        if not job.writes:
            return None, None
        activations.write(job.folder, arrays)
        counts = {f"n_{name}": len(split.ids) for name, split in arrays.items()}
        metrics = {
            "seconds": round(time.perf_counter() - start, 2),
            "layer": layer,
            "dim": int(arrays["test"].array.shape[1]),
            **counts,
            **sizes,
            **lengths.metrics(),
        }
        return metrics, []


class LMFinetune:
    """Generative finetuning on the training pool's texts (no labels); the weights go to model/."""

    def run(self, job: StageJob) -> Output:
        stage = job.stage
        splits = load_splits(stage.dataset, stage.seed)
        lengths = LengthLog()
        rows = splits.train_a + splits.train_b
        k = stage.dataset.num_classes
        texts, _ = encode(rows, stage, one_hot(rows, k), lengths, "train")
        test, _ = encode(splits.test, stage, one_hot(splits.test, k), lengths, "test")
        job.echo_notes(lengths.notes)
        metrics = generative.finetune(
            stage,
            texts,
            test,
            key=model_location(job.spec, stage),
            log=job.log,
            log_every=job.spec.tracking.log_every,
            out=job.folder / "model" if job.writes else None,
        )
        return (dict(metrics, **lengths.metrics()), []) if job.writes else (None, None)


# the class that runs each kind of w2s/experiment/kinds.py's table (a kind there without a class here is
# an error at import, not at the first stage of that kind)
RUNNERS: dict[str, type] = {
    "ground_truth": GroundTruth,
    "zero_shot": ZeroShot,
    "ensemble": Ensemble,
    "transfer": Transfer,
    "bootstrap": Transfer,
    "strong_to_strong": Transfer,
    "gold_only": GoldOnly,
    "features": Features,
    "lm_finetune": LMFinetune,
}
assert RUNNERS.keys() == KINDS.keys(), set(RUNNERS) ^ set(KINDS)
