"""Stage keys: what enters a stage's content key, and `KEY_VERSION`.

A stage's key hashes everything that changes its result (model, the data's contents, training
settings with the resolved precision, loss, seed, the keys of the stages it reads, and the version
of the code that computes it) and nothing that does not (paths, tracking, display labels,
per-device batch size when the effective batch is the same). Equal keys are the same stage,
trained once; a changed setting re-runs exactly the stages whose key it enters. Each kind's
identity is built where the planner builds the kind (`w2s.experiment.plan`), from the parts here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from w2s.models.names import parse_model_name
from w2s.spec import DataSpec, ModelSpec
from w2s.training.settings import TrainSettings

# The version of what stages compute. Bump it in the same commit as any change to the numbers a
# stage produces from the same settings and data: the trainer, a loss, a formatter, tokenization,
# splitting, the generated datasets, pooling, metrics. Every cached stage then reruns once.
# Changes that leave every number as it was (logging, speed, messages) do not bump it.
# CHANGELOG.md says what each version changed.
KEY_VERSION = 5


def stage_key(identity: dict) -> str:
    text = json.dumps({**identity, "key_version": KEY_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def network_identity(model: ModelSpec) -> dict:
    """What makes two ladder rungs the same network before any training (not labels or memory settings)."""
    checkpoint, layers = model.name, model.num_layers
    name = parse_model_name(model.name)
    if name.kind == "alias":  # its family's checkpoint: two families never share keys
        checkpoint, layers = name.family.checkpoint, model.num_layers or name.layers
    fields = model.model_dump(include={"random_init", "config_overrides", "dtype", "trust_remote_code"})
    return {"checkpoint": checkpoint, "layers": layers, **fields}


def model_identity(model: ModelSpec) -> dict:
    """The network plus how a classifier is built and trained on it (a zero-shot model: how its outputs
    map to the task's classes)."""
    fields = {"linear_probe", "pooling", "lora", "label_budget", "train", "class_map"}
    return {**network_identity(model), **model.model_dump(include=fields)}


def loss_identity(loss) -> dict:
    fields = loss.model_dump(exclude={"label"})
    probe = fields["probe"]
    if probe is not None:  # leave out the settings this probe ignores
        unused = {"contamination": probe["mode"] == "relabel", "k": probe["method"] == "logreg"}
        fields["probe"] = {k: v for k, v in probe.items() if not unused.get(k)}
    return fields


def data_identity(dataset: DataSpec, contents: dict) -> dict:
    """How the rows are read and split, and what the files hold (`w2s.data.fingerprint`), not where they are."""
    return {
        **dataset.model_dump(exclude={"id", "data_files", "data_dir"}),
        "contents": contents,
        "splits": sorted(dataset.data_files or ()),
    }


def settings_identity(settings: TrainSettings) -> dict:
    """What changes a stage's numbers (`compile` too: it can move the last bits), not memory knobs.
    Settings added after KEY_VERSION 5 enter only when set, so that stages without them keep their keys."""
    added = {"eval_every": None, "validation_frac": 0.0, "attention": "sdpa", "head_lr": 1.0}
    return {
        k: v
        for k, v in dataclasses.asdict(settings).items()
        if k not in ("minibatch_size", "eval_batch_size") and (k not in added or v != added[k])
    }
