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

import numpy as np
import torch
from safetensors.torch import save_file

from w2s import activations, generative
from w2s import data as data_mod
from w2s.jsonfiles import read_json
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
from w2s.pipeline.evaluation import classifier_metrics
from w2s.pipeline.inputs import (
    LengthLog,
    base_weights,
    clean_with_probe,
    encode,
    model_location,
    one_hot,
    supervisor_labels,
)
from w2s.pipeline.store import finished_folder, prediction_rows, write_probabilities
from w2s.plan import Stage
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

    def log(self, row: dict) -> None:
        if self.tracker is not None:
            self.tracker.log(row)

    def echo_notes(self, notes: list[str]) -> None:
        for note in notes:
            self.echo(f"  {self.stage.dataset.label}: {note}")


class ClassifierStage:
    """Train the classifier (or, on cached activations, its head) and predict half B and test."""

    def train_split(self, stage: Stage) -> str:
        """Which half of the training pool it trains on."""
        raise NotImplementedError

    def labels(self, job: StageJob, splits) -> tuple[list[dict], np.ndarray, object, dict]:
        """(training rows, their labels, the loss, metrics on what was done to the labels)."""
        raise NotImplementedError

    def run(self, job: StageJob) -> Output:
        stage, spec, root = job.stage, job.spec, job.root
        splits = data_mod.load_splits(stage.dataset, stage.seed)
        lengths, k = LengthLog(), stage.dataset.num_classes
        train_rows, train_labels, loss_fn, extra = self.labels(job, splits)
        if stage.features is not None:  # a linear probe: the head alone, on cached activations
            features_folder = finished_folder(root, stage.features)
            cached = activations.read(features_folder)
            train_data, _ = cached[self.train_split(stage)].select(train_rows, train_labels)
            b_data, b_rows = cached["train_b"].select(splits.train_b, one_hot(splits.train_b, k))
            test_data, test_rows = cached["test"].select(splits.test, one_hot(splits.test, k))
            model = ProbeHead(test_data.array.shape[1], k)
            network = read_json(features_folder / "metrics.json")  # the probed network's size: the report's x-axis
            sizes = {name: network[name] for name in ("parameters", "non_embedding_parameters")}
        else:
            train_data, _ = encode(train_rows, stage, train_labels, lengths, "train")
            b_data, b_rows = encode(splits.train_b, stage, one_hot(splits.train_b, k), lengths, "train_b")
            test_data, test_rows = encode(splits.test, stage, one_hot(splits.test, k), lengths, "test")
            model = load_classifier(
                stage.model, key=model_location(spec, stage), weights_from=base_weights(root, stage), classes=k
            )
            sizes = count_parameters(model)
        job.echo_notes(lengths.notes)

        start = time.perf_counter()
        model, accelerator = train(
            model,
            train_data,
            classification(loss_fn),
            stage.settings,
            stage.seed,
            log=job.log,
            log_every=spec.tracking.log_every,
            desc=stage.name,
            echo=job.echo,
        )
        train_seconds = time.perf_counter() - start
        p_b = predict(model, b_data, accelerator, stage.settings.eval_batch_size, desc="predict half B")
        p_test = predict(model, test_data, accelerator, stage.settings.eval_batch_size, desc="predict test")
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
        metrics = classifier_metrics(stage, root, p_b, b_rows, p_test, test_rows, len(train_data), train_seconds)
        metrics.update(sizes, **extra, **lengths.metrics(), predict_seconds=round(predict_seconds, 2))
        return metrics, predictions(job, {"train_b": (b_rows, p_b), "test": (test_rows, p_test)})


class GroundTruth(ClassifierStage):
    """Half A with its true labels, cross-entropy: the weak supervisor and the ceiling (`ceiling: half_b`:
    a student's ceiling trains on half B)."""

    def train_split(self, stage: Stage) -> str:
        return stage.train_split

    def labels(self, job: StageJob, splits):
        rows = getattr(splits, job.stage.train_split)[: job.stage.model.label_budget]  # None: the whole half
        return rows, one_hot(rows, job.stage.dataset.num_classes), Xent(), {}


class Transfer(ClassifierStage):
    """Half B with the supervisor's soft labels (cleaned by a label probe if the loss has one)."""

    def train_split(self, stage: Stage) -> str:
        return "train_b"

    def labels(self, job: StageJob, splits):
        stage, extra = job.stage, {}
        train_rows, train_labels = supervisor_labels(job.root, stage, splits.train_b)
        loss_fn = build_loss(stage.loss)
        if stage.loss.probe is not None:
            train_rows, train_labels, extra = clean_with_probe(job.root, stage, train_rows, train_labels)
            job.echo(
                f"  probe {stage.loss.probe.method}/{stage.loss.probe.mode}: {extra['probe_changed']} labels changed, "
                f"{extra['probe_removed']} removed; label accuracy {extra['weak_label_accuracy']:.3f} -> "
                f"{extra['probe_label_accuracy']:.3f}"
            )
        return train_rows, train_labels, loss_fn, extra


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
        metrics = classifier_metrics(
            stage, job.root, probs["train_b"], rows["train_b"], probs["test"], rows["test"], 0, 0.0
        )
        metrics.update(sizes, seconds=round(time.perf_counter() - start, 2), **lengths.metrics())
        return metrics, predictions(job, {name: (rows[name], probs[name]) for name in probs})


def predictions(job: StageJob, splits: dict[str, tuple[list[dict], np.ndarray]]) -> list[dict]:
    """The lines of predictions.jsonl; with more than two classes the probabilities also go to probs.npz."""
    if any(probs.shape[1] > 2 for _, probs in splits.values()):
        write_probabilities(job.folder, splits)
    return [line for name, (rows, probs) in splits.items() for line in prediction_rows(name, rows, probs)]


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
    "transfer": Transfer,
    "bootstrap": Transfer,
    "strong_to_strong": Transfer,
    "features": Features,
    "lm_finetune": LMFinetune,
}
assert RUNNERS.keys() == KINDS.keys(), set(RUNNERS) ^ set(KINDS)
