"""The pre-run check: can this spec run here? One function, called by `w2s validate`, `w2s run
--dry-run` and `w2s run` before anything is written.

Validation (w2s/spec.py) already rejected what the spec says on its own; planning (w2s/plan.py)
already found every data file, since keys hash their contents. What is left needs the files, the
code or the model configs: the data parse and hold binary labels in the right columns, every split
is non-empty, losses build with the keywords given, batch sizes divide across the processes, probe
layers exist, generative finetuning has a causal LM, tokenizers load. Each problem is one
`SpecError` naming the spec key, so nobody waits an hour for an error a second could have shown.
"""

from __future__ import annotations

import os

from w2s import data, generative
from w2s.losses import build_loss
from w2s.models import load_tokenizer, read_config
from w2s.spec import ExperimentSpec, SpecError


def check_runnable(spec: ExperimentSpec, stages: list) -> None:
    """Raise SpecError for the first problem that would stop `stages` (of `plan(spec)`) from running."""
    _check_batches(spec, stages)
    for i, loss in enumerate(spec.losses):
        build_loss(loss, key=f"losses.{i}")
    for i, dataset in enumerate(spec.datasets):
        for seed in sorted({s.seed for s in stages if s.dataset is dataset}):
            data.load_splits(dataset, seed, key=f"datasets.{i}")  # read once; the run reuses them
    _check_models(spec, stages)


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
            raise SpecError(f"{key}: {settings.batch_size} is not a multiple of minibatch_size x processes = "
                            f"{settings.minibatch_size} x {processes}; pick sizes that divide")  # fmt: skip


def _check_models(spec: ExperimentSpec, stages: list) -> None:
    used = {s.model.display for s in stages}
    text = not any(d.is_image for d in spec.datasets)
    for i, model in enumerate(spec.models):
        if model.display not in used or not text:
            continue
        load_tokenizer(model, key=f"models.{i}")
        if model.generative_finetune is not None:
            generative.check_causal(model, f"models.{i}")
    configs = {}  # read once per model
    for stage in stages:  # a probe layer the student model does not have
        probe = stage.loss.probe if stage.loss is not None else None
        if probe is None or not isinstance(probe.layer, int) or not text:
            continue
        if stage.model.display not in configs:
            configs[stage.model.display] = read_config(stage.model)
        config = configs[stage.model.display]
        layers = config.num_hidden_layers if config is not None else None
        if layers is not None and probe.layer > layers:
            index = next(i for i, loss in enumerate(spec.losses) if loss == stage.loss)
            raise SpecError(f"losses.{index}.probe.layer: {probe.layer} is out of range; "
                            f"{stage.model.display} has hidden states 0..{layers}")  # fmt: skip
