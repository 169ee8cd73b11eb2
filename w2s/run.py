"""Running an experiment: plan the stages, train each unfinished one exactly once, write results.

Crash safety: a stage is written into a temporary folder and renamed into place only when
complete, so a killed run never leaves a folder that a rerun takes for finished. A file lock per
stage keeps two `w2s run` processes on the same output folder from training the same stage:
the second moves on to another stage, or waits. Under `accelerate launch` the processes of one
launch train every stage together; the main process decides and writes, the others follow.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import broadcast_object_list, set_seed
from filelock import FileLock, Timeout
from safetensors.torch import save_file
from sklearn.metrics import roc_auc_score

from w2s import data as data_mod
from w2s import features as features_mod
from w2s import generative, probes
from w2s.checks import check_runnable
from w2s.losses import Xent, build_loss
from w2s.models import ProbeHead, count_parameters, load_classifier, load_tokenizer, resolve_layer
from w2s.plan import Stage, plan
from w2s.precision import auto_precision
from w2s.results import build_rows, expected_calibration_error, format_table, read_json, write_json, write_rows
from w2s.spec import ExperimentSpec, SpecError, first_line
from w2s.tracking import StageTracker, log_experiment_summary
from w2s.train import Encoded, classification, make_accelerator, predict, process_state, train

WAIT_SECONDS = 2.0


@dataclass
class Selection:
    """What a run will do with each stage of the plan."""

    stage: Stage
    action: str  # "cached" | "run" | "force" | "skip" (not selected by --only)


def experiment_dir(spec: ExperimentSpec) -> Path:
    return Path(spec.output_dir) / spec.name


def finished_folder(root: Path, stage: Stage) -> Path | None:
    """The stage's folder if it finished (found by key, so renaming a label keeps the cache). A folder
    whose metrics.json does not parse (a damaged disk, a hand edit) is not finished: the stage reruns."""
    for folder in (root / "stages").glob(f"*__{stage.key}"):
        try:
            read_json(folder / "metrics.json")
        except (OSError, ValueError):
            continue
        return folder
    return None


def select(stages: list[Stage], root: Path, only: list[str] = (), force: list[str] = ()) -> list[Selection]:
    """Decide per stage: cached, run, force, or skip. `--only` keeps the matching stages and the
    supervisors they need; `--force` retrains the matching ones even when finished."""

    def matches(stage: Stage, patterns) -> bool:
        return any(fnmatch.fnmatchcase(stage.name, p) for p in patterns)

    names = [s.name for s in stages]
    for flag, patterns in (("--only", only), ("--force", force)):
        for pattern in patterns:
            if not fnmatch.filter(names, pattern):
                nearest = difflib.get_close_matches(pattern, names, n=3, cutoff=0) or names[:3]
                raise SpecError(f"{flag} {pattern!r}: matches no stage; nearest: {', '.join(nearest)} "
                                "(w2s run SPEC --dry-run lists them all)")  # fmt: skip

    wanted = {s.key for s in stages if not only or matches(s, only)}
    for stage in reversed(stages):  # dependencies come first in the plan, so walk backwards
        if stage.key in wanted:
            wanted.update(s.key for s in stage.requires)
    out = []
    for stage in stages:
        if stage.key not in wanted:
            out.append(Selection(stage, "skip"))
        elif matches(stage, force):
            out.append(Selection(stage, "force"))
        else:
            out.append(Selection(stage, "cached" if finished_folder(root, stage) else "run"))
    return out


def describe_plan(selections: list[Selection]) -> str:
    width = max(len(s.stage.name) for s in selections)
    lines = [f"{'status':<7} {'stage':<{width}}  key"]
    for sel in selections:
        status = {"run": "run", "force": "force", "cached": "cached", "skip": "skip"}[sel.action]
        lines.append(f"{status:<7} {sel.stage.name:<{width}}  {sel.stage.key}")
    n_run = sum(s.action in ("run", "force") for s in selections)
    n_cached = sum(s.action == "cached" for s in selections)
    lines.append(f"{len(selections)} stages: {n_run} to run, {n_cached} cached")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# data for a stage


_TOKENIZERS: dict[tuple, object] = {}  # shared by the stages of one process


def _tokenizer(model):
    cache_key = (model.name, model.trust_remote_code)
    if cache_key not in _TOKENIZERS:
        _TOKENIZERS[cache_key] = load_tokenizer(model)
    return _TOKENIZERS[cache_key]


def _encode(rows: list[dict], stage: Stage, labels: np.ndarray, note: list[str], split: str) -> tuple[Encoded, list[dict]]:
    tokenizer = _tokenizer(stage.model)
    input_ids, kept, n_dropped, n_truncated = data_mod.tokenize(
        rows, tokenizer, stage.dataset.max_ctx, stage.dataset.ctx_policy
    )
    if n_dropped or n_truncated:
        note.append(
            f"{split}: {'dropped' if n_dropped else 'truncated'} {n_dropped or n_truncated} of {len(rows)} "
            f"examples longer than max_ctx={stage.dataset.max_ctx}"
        )
    kept_rows = [rows[i] for i in kept]
    return Encoded([r["id"] for r in kept_rows], input_ids, labels[kept], tokenizer.pad_token_id), kept_rows


def _one_hot(rows: list[dict]) -> np.ndarray:
    y = np.array([r["hard_label"] for r in rows], dtype=np.int64)
    return np.eye(2, dtype=np.float32)[y]


def _supervisor_labels(root: Path, stage: Stage, rows: list[dict]) -> tuple[list[dict], np.ndarray]:
    """Half B rows and the supervisor's soft labels on them (rows it could not label are dropped)."""
    preds = _read_predictions(finished_folder(root, stage.supervisor), "train_b")
    rows = [r for r in rows if r["id"] in preds]
    p = np.array([preds[r["id"]] for r in rows], dtype=np.float32)
    return rows, np.stack([1 - p, p], axis=1)


def _read_predictions(folder: Path, split: str) -> dict[str, float]:
    out = {}
    with open(folder / "predictions.jsonl") as f:
        for line in f:
            row = json.loads(line)
            if row["split"] == split:
                out[row["id"]] = row["p_pos"]
    return out


# ---------------------------------------------------------------------------------------------
# one stage


def _scores(p_pos: np.ndarray, rows: list[dict]) -> tuple[float, float | None]:
    y = np.array([r["hard_label"] for r in rows])
    accuracy = float(((p_pos > 0.5) == y).mean())
    auroc = float(roc_auc_score(y, p_pos)) if len(set(y.tolist())) == 2 else None
    return accuracy, auroc


def run_stage(stage: Stage, spec: ExperimentSpec, root: Path, echo=print) -> None:
    """Run one stage and, on the main process, write its folder atomically."""
    state = process_state()
    tmp = root / "stages" / f".tmp-{stage.folder}-{os.getpid()}"
    tracker = None
    if state.is_main_process:
        tmp.mkdir(parents=True)
        tracker = StageTracker(tmp, stage, spec)
    try:
        set_seed(stage.seed)  # random-init weights must not depend on what this process ran before
        work = {"features": _extract_features, "lm_finetune": _finetune_lm}.get(stage.kind, _train_classifier)
        metrics, predictions = work(stage, spec, root, tmp if state.is_main_process else None, tracker, echo)
        if state.is_main_process:
            metrics["mixed_precision"] = stage.settings.mixed_precision  # as resolved on this machine
            _write_stage(tmp, stage, spec, metrics, predictions)
            tracker.finish(metrics, predictions, *_reference_metrics(root, stage))
            _publish(tmp, root / "stages" / stage.folder)
        process_state().wait_for_everyone()
    except BaseException:
        if tracker:
            tracker.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _train_classifier(stage: Stage, spec: ExperimentSpec, root: Path, out: Path | None, tracker, echo):
    """Ground truth or transfer: train the classifier (or, on cached features, its head) and predict."""
    splits = data_mod.load_splits(stage.dataset, stage.seed)
    notes: list[str] = []
    extra: dict = {}  # what a label probe did to half B
    if stage.kind == "ground_truth":
        train_rows, train_labels = splits.train_a, _one_hot(splits.train_a)
        loss_fn = Xent()
    else:
        train_rows, train_labels = _supervisor_labels(root, stage, splits.train_b)
        loss_fn = build_loss(stage.loss)
        if stage.loss.probe is not None:
            train_rows, train_labels, extra = _clean_with_probe(root, stage, train_rows, train_labels)
            echo(f"  probe {stage.loss.probe.method}/{stage.loss.probe.mode}: {extra['probe_changed']} labels changed, "
                 f"{extra['probe_removed']} removed; label accuracy {extra['weak_label_accuracy']:.3f} -> "
                 f"{extra['probe_label_accuracy']:.3f}")  # fmt: skip
    if stage.features is not None:  # a linear probe: the head alone, on the cached features
        features_folder = finished_folder(root, stage.features)
        cached = features_mod.read(features_folder)
        train_split = "train_a" if stage.kind == "ground_truth" else "train_b"
        train_data, _ = cached[train_split].select(train_rows, train_labels)
        b_data, b_rows = cached["train_b"].select(splits.train_b, _one_hot(splits.train_b))
        test_data, test_rows = cached["test"].select(splits.test, _one_hot(splits.test))
        model = ProbeHead(test_data.features.shape[1])
        network = read_json(features_folder / "metrics.json")  # the probed network's size: the report's x-axis
        sizes = {k: network[k] for k in ("parameters", "non_embedding_parameters")}
    else:
        train_data, _ = _encode(train_rows, stage, train_labels, notes, "train")
        b_data, b_rows = _encode(splits.train_b, stage, _one_hot(splits.train_b), notes, "train_b")
        test_data, test_rows = _encode(splits.test, stage, _one_hot(splits.test), notes, "test")
        model = load_classifier(stage.model, key=_model_key(spec, stage), weights_from=_base_weights(root, stage))
        sizes = count_parameters(model)
    for note in notes:
        echo(f"  {stage.dataset.label}: {note}")

    start = time.perf_counter()
    model, accelerator = train(
        model, train_data, classification(loss_fn), stage.settings, stage.seed,
        log=tracker.log if tracker else (lambda row: None), log_every=spec.tracking.log_every, desc=stage.name,
    )  # fmt: skip
    train_seconds = time.perf_counter() - start
    p_b = predict(model, b_data, accelerator, stage.settings.eval_batch_size, desc="predict half B")
    p_test = predict(model, test_data, accelerator, stage.settings.eval_batch_size, desc="predict test")
    if spec.save_model:
        state = accelerator.get_state_dict(model)  # collective under FSDP / ZeRO-3: every process calls it
        if out is not None:
            (out / "model").mkdir()
            weights = {k: v.detach().clone().contiguous() for k, v in state.items()}  # clone: tied weights share memory
            save_file(weights, str(out / "model" / "model.safetensors"))
    accelerator.free_memory()
    if out is None:
        return None, None
    metrics = _stage_metrics(stage, root, p_b, b_rows, p_test, test_rows, len(train_data), train_seconds)
    metrics.update(sizes, **extra, notes=notes)
    predictions = [
        {"split": split, "id": r["id"], "hard_label": r["hard_label"], "p_pos": float(p)}
        for split, rows_, probs in (("train_b", b_rows, p_b), ("test", test_rows, p_test))
        for r, p in zip(rows_, probs)
    ]
    return metrics, predictions


def _clean_with_probe(root: Path, stage: Stage, rows: list[dict], labels: np.ndarray):
    """Relabel or filter half B with a probe on the strong model's activations; score it against the
    ground truth, which only the toolkit sees (the student trains on the cleaned weak labels)."""
    probe = stage.loss.probe
    cached = features_mod.read(finished_folder(root, stage.probe_features))["train_b"]
    data, rows = cached.select(rows, labels)
    weak_p = data.labels[:, 1]
    try:
        cleaned = probes.clean_labels(data.features, weak_p, probe.method, probe.mode, k=probe.k,
                                      contamination=probe.contamination, seed=stage.seed)  # fmt: skip
    except ValueError as err:  # e.g. fewer rows in half B than neighbours asked for
        raise SpecError(f"{stage.name}: probe: {err}") from None
    truth = np.array([r["hard_label"] for r in rows])
    keep = cleaned.keep
    metrics = {
        "probe_changed": int(cleaned.n_changed),
        "probe_removed": int(cleaned.n_removed),
        "weak_label_accuracy": float(((weak_p > 0.5) == truth).mean()),
        "probe_label_accuracy": float(((cleaned.p_pos[keep] > 0.5) == truth[keep]).mean()),
    }
    p = cleaned.p_pos[keep].astype(np.float32)
    return [r for r, k in zip(rows, keep) if k], np.stack([1 - p, p], axis=1), metrics


def _base_weights(root: Path, stage: Stage) -> str | None:
    """The generatively finetuned weights a stage starts from, if its model has them."""
    return str(finished_folder(root, stage.base) / "model") if stage.base is not None else None


def _extract_features(stage: Stage, spec: ExperimentSpec, root: Path, out: Path | None, tracker, echo):
    """Pooled activations of the frozen model for every split, written to features.npz."""
    splits = data_mod.load_splits(stage.dataset, stage.seed)
    accelerator = make_accelerator(stage.settings)
    batch, key = stage.settings.eval_batch_size, _model_key(spec, stage)
    start = time.perf_counter()
    arrays, notes = {}, []
    split_rows = {"train_a": splits.train_a, "train_b": splits.train_b, "test": splits.test}
    if stage.dataset.is_image:
        from w2s import vision

        try:
            encoder = vision.load_image_encoder(stage.model.name, random_init=stage.model.random_init,
                                                config_overrides=stage.model.config_overrides,
                                                dtype=getattr(torch, stage.model.dtype))  # fmt: skip
        except ValueError as err:
            raise SpecError(f"{key}.name: {first_line(err)}") from None
        n_params = sum(p.numel() for p in encoder.model.parameters())
        sizes = {"parameters": n_params, "non_embedding_parameters": n_params}
        layer = None
        for name, rows in split_rows.items():
            arrays[name] = features_mod.SplitFeatures(
                [r["id"] for r in rows],
                features_mod.image_features(encoder, rows, accelerator, batch, f"features {name}"),
            )
    else:
        model = load_classifier(stage.model, key=key, weights_from=_base_weights(root, stage))
        sizes = count_parameters(model)
        layer = resolve_layer(stage.layer, model.backbone.config.num_hidden_layers)
        for name, rows in split_rows.items():
            data, _ = _encode(rows, stage, _one_hot(rows), notes, name)
            array = features_mod.text_features(model, data, layer, accelerator, batch, f"features {name}")
            arrays[name] = features_mod.SplitFeatures(data.ids, array)
    for note in notes:
        echo(f"  {stage.dataset.label}: {note}")
    if out is None:
        return None, None
    features_mod.write(out, arrays)
    counts = {f"n_{name}": len(split.ids) for name, split in arrays.items()}
    metrics = {"seconds": round(time.perf_counter() - start, 2), "layer": layer,
               "dim": int(arrays["test"].array.shape[1]), **counts, **sizes, "notes": notes}  # fmt: skip
    return metrics, []


def _finetune_lm(stage: Stage, spec: ExperimentSpec, root: Path, out: Path | None, tracker, echo):
    """Generative finetuning on the training pool's texts (no labels); the weights go to model/."""
    splits = data_mod.load_splits(stage.dataset, stage.seed)
    notes: list[str] = []
    rows = splits.train_a + splits.train_b
    texts, _ = _encode(rows, stage, _one_hot(rows), notes, "train")
    test, _ = _encode(splits.test, stage, _one_hot(splits.test), notes, "test")
    for note in notes:
        echo(f"  {stage.dataset.label}: {note}")
    metrics = generative.finetune(stage, texts, test, key=_model_key(spec, stage),
                                  log=tracker.log if tracker else (lambda row: None), log_every=spec.tracking.log_every,
                                  out=out / "model" if out is not None else None)  # fmt: skip
    return (dict(metrics, notes=notes), []) if out is not None else (None, None)


def _reference_metrics(root: Path, stage: Stage) -> tuple[dict | None, dict | None]:
    """Metrics of the stage's weak and ceiling ground-truth stages, None where not finished yet
    (a transfer's ceiling can still be training in another process)."""
    folders = [finished_folder(root, s) if s is not None else None for s in (stage.weak, stage.ceiling)]
    return tuple(read_json(f / "metrics.json") if f else None for f in folders)


def _model_key(spec: ExperimentSpec, stage: Stage) -> str:
    return f"models.{[m.display for m in spec.models].index(stage.model.display)}"


def _stage_metrics(stage, root, p_b, b_rows, p_test, test_rows, n_train, train_seconds) -> dict:
    test_accuracy, test_auroc = _scores(p_test, test_rows)
    metrics = {
        "test_accuracy": test_accuracy,
        "test_auroc": test_auroc,
        "train_b_accuracy": _scores(p_b, b_rows)[0],
        "n_train": n_train,
        "n_test": len(test_rows),
        "train_seconds": round(train_seconds, 2),
        "ece": expected_calibration_error(p_test, [r["hard_label"] for r in test_rows]),
        "agreement": None,
        "supervisor_accuracy": None,
        "agreement_supervisor_right": None,
        "agreement_supervisor_wrong": None,
    }
    if stage.supervisor is not None and stage.supervisor is not stage:
        sup = _read_predictions(finished_folder(root, stage.supervisor), "test")
        both = [(p, sup[r["id"]], r["hard_label"]) for p, r in zip(p_test, test_rows) if r["id"] in sup]
        student, supervisor, truth = (np.array(c) for c in zip(*both))
        agrees = (student > 0.5) == (supervisor > 0.5)
        supervisor_right = (supervisor > 0.5) == truth
        metrics["agreement"] = float(agrees.mean())
        metrics["supervisor_accuracy"] = float(supervisor_right.mean())
        # does the student copy the supervisor's mistakes, or only its correct answers?
        metrics["agreement_supervisor_right"] = _mean_or_none(agrees[supervisor_right])
        metrics["agreement_supervisor_wrong"] = _mean_or_none(agrees[~supervisor_right])
    return metrics


def _mean_or_none(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def _write_stage(folder: Path, stage: Stage, spec: ExperimentSpec, metrics: dict, predictions: list[dict]) -> None:
    config = {
        "stage": stage.name,
        "kind": stage.kind,
        "key": stage.key,
        "dataset": stage.dataset.model_dump(),
        "model": stage.model.model_dump(),
        "seed": stage.seed,
        "loss": stage.loss.model_dump() if stage.loss is not None else None,
        "settings": dataclasses.asdict(stage.settings),
        "chain": list(stage.chain),
        "supervisor": stage.supervisor.key if stage.supervisor is not stage and stage.supervisor else None,
        "weak": stage.weak.key if stage.weak else None,
        "ceiling": stage.ceiling.key if stage.ceiling else None,
        "requires": [s.key for s in stage.requires],
        "spec": spec.model_dump(mode="json"),
    }
    write_json(folder / "config.json", config)
    with open(folder / "predictions.jsonl", "w") as f:
        f.writelines(json.dumps(p) + "\n" for p in predictions)
    write_json(folder / "metrics.json", metrics)  # last: its presence marks the folder complete


def _publish(tmp: Path, final: Path) -> None:
    """Move a complete stage folder into place (replacing an older copy when forced)."""
    if final.exists():
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)


def _clear_replaced(root: Path) -> None:
    """Old copies of force-rerun stages that a killed run left after publishing the new copy."""
    for old in (root / "stages").glob(".old-*"):
        final = old.with_name(old.name.removeprefix(".old-").rsplit("-", 1)[0])
        if (final / "metrics.json").is_file():
            shutil.rmtree(old, ignore_errors=True)


def _clear_stale(root: Path, stage: Stage) -> None:
    """Leftovers of a killed run of this stage (called while holding the stage's lock): a folder being
    written, or the replaced copy a forced rerun had not yet deleted."""
    for pattern in (f".tmp-{stage.folder}-*", f".old-{stage.folder}-*"):
        for leftover in (root / "stages").glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# the experiment


def _agree(value):
    """Under `accelerate launch`: every process takes the main process's decision."""
    state = process_state()
    if state.num_processes == 1:
        return value
    return broadcast_object_list([value], from_process=0)[0]


def run_experiment(
    spec: ExperimentSpec, only: list[str] = (), force: list[str] = (), dry_run: bool = False, echo=print
) -> list[dict]:
    """Run (or, with dry_run, only describe) the experiment; return the rows of results.jsonl."""
    state = process_state()
    say = echo if state.is_main_process else (lambda *a, **k: None)
    root = experiment_dir(spec)
    stages = plan(spec)
    selections = select(stages, root, only, force)
    todo = [s for s in selections if s.action in ("run", "force")]
    # the dry run checks every stage, as `w2s validate` does; a run, the ones it will train
    check_runnable(spec, stages if dry_run else [s.stage for s in todo])
    if spec.train.mixed_precision == "auto":
        say("precision: {} ({})".format(*auto_precision()))
    if dry_run:
        say(describe_plan(selections))
        return []
    say(f"{spec.name}: {len(stages)} stages, {len(todo)} to train, results in {root}")
    (root / "stages").mkdir(parents=True, exist_ok=True)
    (root / ".locks").mkdir(exist_ok=True)
    if state.is_main_process:
        _clear_replaced(root)

    pending = [s.stage for s in todo]
    forced = {s.stage.key for s in todo if s.action == "force"}
    trained = 0
    while pending:
        lock, decision = None, None
        if state.is_main_process:
            index, lock = _claim_next(root, pending, forced)
            decision = (index, "wait" if index is None else "finished" if lock is None else "run")
        index, action = _agree(decision)
        if action == "wait":  # everything left is being trained by another process
            time.sleep(WAIT_SECONDS)
            continue
        stage = pending.pop(index)
        if action == "finished":  # another process finished it meanwhile
            continue
        try:
            trained += 1
            say(f"[{trained}/{len(todo)}] {stage.name}  (key {stage.key})")
            start = time.perf_counter()
            run_stage(stage, spec, root, say)
            forced.discard(stage.key)
            if state.is_main_process:
                metrics = read_json(finished_folder(root, stage) / "metrics.json")
                say(f"  done in {time.perf_counter() - start:.0f}s: {_headline(metrics)}")
                _write_results(root, stages)
        finally:
            if lock is not None:
                lock.release()
    rows = _write_results(root, stages) if state.is_main_process else []
    if state.is_main_process:
        _log_summary_once(spec, root, rows)
    say(format_table(rows))
    return rows


def _log_summary_once(spec: ExperimentSpec, root: Path, rows: list[dict]) -> None:
    """The W&B summary run for these rows, unless one was already logged for exactly them. Remembered
    in a marker written after the run is logged, so a run killed in between logs it when rerun."""
    marker = root / ".summary-logged"
    digest = hashlib.sha256(json.dumps([spec.tracking.model_dump(), rows], sort_keys=True, default=str).encode())
    if marker.is_file() and marker.read_text() == digest.hexdigest():
        return
    log_experiment_summary(spec, rows)
    marker.write_text(digest.hexdigest())


def _headline(metrics: dict) -> str:
    if "test_accuracy" in metrics:
        return f"test accuracy {metrics['test_accuracy']:.3f}"
    if "lm_loss_test" in metrics:
        return f"test LM loss {metrics['lm_loss_test_before']:.3f} -> {metrics['lm_loss_test']:.3f} nats/token"
    return f"{metrics['dim']}-d features of {metrics['n_train_a'] + metrics['n_train_b'] + metrics['n_test']} examples"


def _claim_next(root: Path, pending: list[Stage], forced: set[str]) -> tuple[int | None, FileLock | None]:
    """The first pending stage that is ready (supervisor finished) and not being trained elsewhere.

    Returns (index, held lock) to train it, (index, None) if it turned out finished, or
    (None, None) when every pending stage is blocked or locked by another process.
    """
    for i, stage in enumerate(pending):
        if stage.key not in forced and finished_folder(root, stage):
            return i, None
        if not all(finished_folder(root, s) for s in stage.requires):
            continue
        lock = FileLock(str(root / ".locks" / f"{stage.key}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue  # another process is training it
        if stage.key not in forced and finished_folder(root, stage):  # finished while we looked
            lock.release()
            return i, None
        _clear_stale(root, stage)
        return i, lock
    return None, None


def _write_results(root: Path, stages: list[Stage]) -> list[dict]:
    finished = {s.key: f for s in stages if (f := finished_folder(root, s))}
    rows = build_rows(stages, finished)
    write_rows(root / "results.jsonl", rows)
    return rows
