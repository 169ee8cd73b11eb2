"""One class per stage kind (w2s/kinds.py), each with `run(job) -> (metrics, predictions)`.

Under `accelerate launch` every process runs a stage's work together (training and prediction are
collective); only the writer (the main process) writes the stage folder, logs and computes metrics.
The others return (None, None).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from safetensors.torch import save_file

from w2s import activations, generative
from w2s import data as data_mod
from w2s import metrics as scores
from w2s.jsonfiles import read_json, write_json, write_jsonl
from w2s.kinds import KINDS
from w2s.losses import Xent, build_loss
from w2s.models import (
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
from w2s.pipeline.store import (
    finished_folder,
    prediction_rows,
    read_split_probabilities,
    rule_file,
    write_probabilities,
)
from w2s.plan import Stage
from w2s.selection import RULES, validation_ids
from w2s.spec import ExperimentSpec, SpecError, first_line
from w2s.train import batch_outputs, canonical_probabilities, classification, make_accelerator, predict, train

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
        stage, spec, root = job.stage, job.spec, job.root
        splits = data_mod.load_splits(stage.dataset, stage.seed)
        lengths, k = LengthLog(), stage.dataset.num_classes
        held_out = validation_ids(splits.train_b, stage.settings.validation_frac, stage.seed)
        given = self.labels(job, splits, held_out)
        if stage.features is not None:  # a linear probe: the head alone, on cached activations
            features_folder = finished_folder(root, stage.features)
            cached = activations.read(features_folder)
            train_data, _ = cached[self.train_split(stage)].select(given.train_rows, given.train_labels)
            val_data, val_rows = (
                cached["train_b"].select(given.validation_rows, given.validation_labels)
                if given.validation_rows
                else (None, [])
            )
            b_data, b_rows = cached["train_b"].select(splits.train_b, one_hot(splits.train_b, k))
            test_data, test_rows = cached["test"].select(splits.test, one_hot(splits.test, k))
            model = ProbeHead(test_data.array.shape[1], k)
            network = read_json(features_folder / "metrics.json")  # the probed network's size: the report's x-axis
            sizes = {name: network[name] for name in ("parameters", "non_embedding_parameters")}
        else:
            train_data, _ = encode(given.train_rows, stage, given.train_labels, lengths, "train")
            val_data, val_rows = (
                encode(given.validation_rows, stage, given.validation_labels, lengths, "validation")
                if given.validation_rows
                else (None, [])
            )
            b_data, b_rows = encode(splits.train_b, stage, one_hot(splits.train_b, k), lengths, "train_b")
            test_data, test_rows = encode(splits.test, stage, one_hot(splits.test, k), lengths, "test")
            model = load_classifier(
                stage.model, key=model_location(spec, stage), weights_from=base_weights(root, stage), classes=k
            )
            sizes = count_parameters(model)
        job.echo_notes(lengths.notes)
        checkpoints = None
        if stage.settings.eval_every is not None:
            data = {"train_b": b_data, "test": test_data, **({"validation": val_data} if val_rows else {})}
            checkpoints = Checkpoints(
                data,
                val_data.labels if val_rows else None,
                {"test": hard_labels(test_rows)},
                stage.settings.eval_batch_size,
                job.log,
            )

        start = time.perf_counter()
        model, accelerator = train(
            model,
            train_data,
            classification(given.loss_fn),
            stage.settings,
            stage.training_seed,
            log=job.log,
            log_every=spec.tracking.log_every,
            desc=stage.name,
            echo=job.echo,
            evaluate=checkpoints,
        )
        train_seconds = time.perf_counter() - start
        if checkpoints is None:
            p_b = predict(model, b_data, accelerator, stage.settings.eval_batch_size, desc="predict half B")
            p_test = predict(model, test_data, accelerator, stage.settings.eval_batch_size, desc="predict test")
        else:  # the stage's result is its rule's checkpoint (ground-truth stages: final; all are kept)
            train_seconds -= checkpoints.seconds
            p_b, p_test = checkpoints.result(stage.select)
        predict_seconds = time.perf_counter() - start - train_seconds
        if spec.save_model:
            state = accelerator.get_state_dict(model)  # collective under FSDP / ZeRO-3: every process calls it
            if job.writes:
                (job.folder / "model").mkdir()
                weights = {
                    k: v.detach().clone().contiguous() for k, v in state.items()
                }  # clone: tied weights share memory
                save_file(weights, str(job.folder / "model" / "model.safetensors"))
        if accelerator.device.type != "cpu":
            # hand the accelerator's memory back before the next stage; its full garbage collection
            # costs 0.2 s per stage with a sweep's data in memory, and a CPU gets nothing from it
            accelerator.free_memory()
        if not job.writes:
            return None, None
        metrics = classifier_metrics(
            p_b, b_rows, p_test, test_rows, len(train_data), train_seconds, held_out, given.supervisor
        )
        metrics.update(sizes, **given.extra, **lengths.metrics(), predict_seconds=round(predict_seconds, 2))
        if checkpoints is not None:
            metrics.update(n_validation=len(val_rows), curve=checkpoints.curve, selection=checkpoints.selection())
            for rule in checkpoints.rules:
                if rule != stage.select:  # the other rules' checkpoints, for their students and the report
                    other_b, other_test = checkpoints.result(rule)
                    write_predictions(job.folder, {"train_b": (b_rows, other_b), "test": (test_rows, other_test)}, rule)
        return metrics, predictions(job, {"train_b": (b_rows, p_b), "test": (test_rows, p_test)})


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
    cleaned by a label probe if the loss has one, a share replaced by ground truth with `gold_frac`;
    it validates on the supervisor's labels of half B's held-out rows."""

    def train_split(self, stage: Stage) -> str:
        return "train_b"

    def labels(self, job: StageJob, splits, held_out: set[str]) -> Labelled:
        stage = job.stage
        supervisor = supervisor_predictions(job.root, stage)
        rows, labels = supervisor_labels(supervisor["train_b"], splits.train_b)
        held = np.array([r["id"] in held_out for r in rows], dtype=bool)
        validation_rows = [r for r, h in zip(rows, held) if h]
        train_rows, train_labels = [r for r, h in zip(rows, held) if not h], labels[~held]
        extra = weak_label_quality(train_rows, train_labels)
        loss_fn = build_loss(stage.loss)
        if stage.loss.probe is not None:
            train_rows, train_labels, probe = clean_with_probe(job.root, stage, train_rows, train_labels)
            extra.update(probe)
            job.echo(
                f"  probe {stage.loss.probe.method}/{stage.loss.probe.mode}: {probe['probe_changed']} labels changed, "
                f"{probe['probe_removed']} removed; label accuracy {probe['weak_label_accuracy']:.3f} -> "
                f"{probe['probe_label_accuracy']:.3f}"
            )
        if stage.gold_frac:
            train_labels, gold = mix_gold(train_rows, train_labels, stage.gold_frac, stage.seed)
            extra["n_gold"] = len(gold)
            if job.writes:  # the recorded choice: which rows trained on ground truth
                write_json(job.folder / "gold.json", {"gold_frac": stage.gold_frac, "ids": gold})
        return Labelled(train_rows, train_labels, validation_rows, labels[held], loss_fn, extra, supervisor)


class ZeroShot:
    """A model used as it is (`train: false`): its own predictions on half B (the weak labels) and test,
    mapped to the task's classes (`class_map`). Nothing trains; the stage stands where a weak model's
    ground-truth stage would, as the supervisor and the PGR baseline."""

    def run(self, job: StageJob) -> Output:
        stage, spec = job.stage, job.spec
        splits = data_mod.load_splits(stage.dataset, stage.seed)
        accelerator = make_accelerator(stage.settings)
        lengths, key, k = LengthLog(), model_location(spec, stage), stage.dataset.num_classes
        start = time.perf_counter()
        if stage.dataset.is_image:
            from w2s import vision

            try:
                model = vision.load_image_encoder(
                    stage.model.name,
                    random_init=stage.model.random_init,
                    config_overrides=stage.model.config_overrides,
                    dtype=getattr(torch, stage.model.dtype),
                    head=True,
                    trust_remote_code=stage.model.trust_remote_code,
                )
            except ValueError as err:
                raise SpecError(f"{key}.name: {first_line(err)}") from None
            n_params = sum(p.numel() for p in model.model.parameters())
            sizes = {"parameters": n_params, "non_embedding_parameters": n_params}
            outputs = {
                name: activations.of_images(
                    model, rows, accelerator, stage.settings.eval_batch_size, f"zero-shot {name}"
                )
                for name, rows in (("train_b", splits.train_b), ("test", splits.test))
            }
            rows = {"train_b": splits.train_b, "test": splits.test}
        else:
            model = load_zero_shot_classifier(stage.model, key).to(accelerator.device)
            sizes = count_parameters(model)
            outputs, rows = {}, {}

            def logits(inputs: dict) -> torch.Tensor:
                with accelerator.autocast():
                    return model(**inputs)

            for name, split_rows in (("train_b", splits.train_b), ("test", splits.test)):
                data, rows[name] = encode(split_rows, stage, one_hot(split_rows, k), lengths, name)
                outputs[name] = batch_outputs(
                    logits, data, accelerator, stage.settings.eval_batch_size, f"zero-shot {name}"
                )
        job.echo_notes(lengths.notes)
        probs = {
            name: canonical_probabilities(map_classes(logits, stage.model.class_map, k, key))
            for name, logits in outputs.items()
        }
        if not job.writes:
            return None, None
        metrics = classifier_metrics(probs["train_b"], rows["train_b"], probs["test"], rows["test"], 0, 0.0)
        metrics.update(sizes, seconds=round(time.perf_counter() - start, 2), **lengths.metrics())
        return metrics, predictions(job, {name: (rows[name], probs[name]) for name in probs})


class Ensemble:
    """Several weak models as one supervisor (`ensembles:`): its members' predictions combined, by
    their mean or their vote, on half B (its students' labels) and test (its score: their PGR
    baseline). It trains nothing; where the members evaluated during training it combines each
    selection rule's checkpoints too."""

    def run(self, job: StageJob) -> Output:
        stage, start = job.stage, time.perf_counter()
        splits = data_mod.load_splits(stage.dataset, stage.seed)
        folders = [finished_folder(job.root, m) for m in stage.members]
        rules = [
            r for r in RULES if r == "final" or all((f / rule_file("predictions.jsonl", r)).is_file() for f in folders)
        ]
        results = {}
        for rule in rules:
            results[rule] = {}
            members = [
                read_split_probabilities(f, ("train_b", "test"), None if rule == "final" else rule) for f in folders
            ]
            for split, rows in (("train_b", splits.train_b), ("test", splits.test)):
                read = [member[split] for member in members]
                common = set.intersection(*(set(ids) for ids, _ in read))  # rows every member predicted
                rows = [r for r in rows if r["id"] in common]
                ordered = []
                for ids, probs in read:
                    where = {id_: i for i, id_ in enumerate(ids)}
                    ordered.append(probs[[where[r["id"]] for r in rows]].astype(np.float64))
                results[rule][split] = (rows, canonical_probabilities(combine(ordered, stage.combine)))
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
                y = hard_labels(rows)
                metrics["selection"][rule] = {
                    "step": None,
                    "test_accuracy": scores.accuracy(probs, y),
                    "test_auroc": scores.auroc(probs, y) if probs.shape[1] == 2 else None,
                    "ece": scores.expected_calibration_error(probs, y),
                }
                if rule != "final":
                    write_predictions(job.folder, combined, rule)
        return metrics, predictions(job, results["final"])


def predictions(job: StageJob, splits: dict[str, tuple[list[dict], np.ndarray]]) -> list[dict]:
    """The lines of predictions.jsonl; with more than two classes the probabilities also go to probs.npz."""
    if any(probs.shape[1] > 2 for _, probs in splits.values()):
        write_probabilities(job.folder, splits)
    return [line for name, (rows, probs) in splits.items() for line in prediction_rows(name, rows, probs)]


def write_predictions(folder: Path, splits: dict[str, tuple[list[dict], np.ndarray]], rule: str) -> None:
    """predictions.<rule>.jsonl (and probs.<rule>.npz): the checkpoint another selection rule chose."""
    if any(probs.shape[1] > 2 for _, probs in splits.values()):
        write_probabilities(folder, splits, rule)
    lines = [line for name, (rows, probs) in splits.items() for line in prediction_rows(name, rows, probs)]
    write_jsonl(folder / rule_file("predictions.jsonl", rule), lines)


class Features:
    """The `features` stage: pooled activations of the frozen model for every split, in features.npz."""

    def run(self, job: StageJob) -> Output:
        stage, root = job.stage, job.root
        splits = data_mod.load_splits(stage.dataset, stage.seed)
        accelerator = make_accelerator(stage.settings)
        batch, key = stage.settings.eval_batch_size, model_location(job.spec, stage)
        start = time.perf_counter()
        arrays, lengths = {}, LengthLog()
        split_rows = {"train_a": splits.train_a, "train_b": splits.train_b, "test": splits.test}
        if stage.dataset.is_image:
            from w2s import vision

            try:
                encoder = vision.load_image_encoder(
                    stage.model.name,
                    random_init=stage.model.random_init,
                    config_overrides=stage.model.config_overrides,
                    dtype=getattr(torch, stage.model.dtype),
                    trust_remote_code=stage.model.trust_remote_code,
                )
            except ValueError as err:
                raise SpecError(f"{key}.name: {first_line(err)}") from None
            n_params = sum(p.numel() for p in encoder.model.parameters())
            sizes = {"parameters": n_params, "non_embedding_parameters": n_params}
            layer = None
            for name, rows in split_rows.items():
                arrays[name] = activations.SplitActivations(
                    [r["id"] for r in rows],
                    activations.of_images(encoder, rows, accelerator, batch, f"features {name}"),
                )
        else:
            model = load_classifier(stage.model, key=key, weights_from=base_weights(root, stage))
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
        splits = data_mod.load_splits(stage.dataset, stage.seed)
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


# the class that runs each kind of w2s/kinds.py's table (a kind there without a class here is an
# error at import, not at the first stage of that kind)
RUNNERS: dict[str, type] = {
    "ground_truth": GroundTruth,
    "zero_shot": ZeroShot,
    "ensemble": Ensemble,
    "transfer": Transfer,
    "bootstrap": Transfer,
    "strong_to_strong": Transfer,
    "features": Features,
    "lm_finetune": LMFinetune,
}
assert RUNNERS.keys() == KINDS.keys(), set(RUNNERS) ^ set(KINDS)
