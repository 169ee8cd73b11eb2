"""Result rows: one per finished stage that predicts, in one vocabulary for every reader.

A row is built from what a finished stage folder holds, its config.json (`w2s.pipeline.store.stage_config`: the
same dict is its W&B run's config) and its metrics.json (or the W&B run's summary), by `stage_row`;
`link` adds to each transfer the scores of its weak model and ceiling and its PGR. results.jsonl
holds these rows for the run's plan, the W&B summary run logs them, and the report reads the same
rows (from the stage folders or from W&B) before it adds intervals: a column has one name
everywhere (docs/outputs.md lists them).

results.jsonl is always rebuilt from the finished stage folders (never appended), so it can never
be half-written or hold a row twice.
"""

from __future__ import annotations

from w2s.experiment.kinds import kind_of
from w2s.experiment.selection import RULES
from w2s.scoring.metrics import PGR_METRICS, SCORE_COLUMNS
from w2s.scoring.pgr import pgr, undefined_note
from w2s.spec import dataset_label, loss_label, model_label

# what every row holds from the stage's metrics.json (None where it did not record one): its scores
# (w2s.scoring.metrics.SCORE_COLUMNS) and these
SIZE_COLUMNS = ("n_train", "n_test", "non_embedding_parameters", "train_seconds")
# over-long examples of the stage's splits: shortened (to max_ctx), dropped (ctx_policy: drop), and
# shortened with the decisive part itself cut (w2s/data/tokens.py); linear probes count in their features stage
LENGTH_METRICS = ("shortened", "dropped", "decisive_cut")
# where and how the stage ran (w2s/experiment/environment.py): the provenance of every table the report writes
PROVENANCE_COLUMNS = ("mixed_precision", "machine", "w2s_version", "key_version")
# transfers: how the student relates to its supervisor (w2s/pipeline/evaluation.py)
AGREEMENT_METRICS = ("agreement", "supervisor_accuracy")
# agreement where the supervisor was right / wrong: does the student copy its mistakes?
AGREEMENT_SPLIT = ("agreement_supervisor_right", "agreement_supervisor_wrong")
# transfers, on test in squared loss: the misfit between student and supervisor, the student's gain
# over its supervisor (Brier score), and gain - misfit with its standard error over the test rows:
# Charikar et al. (2024) prove gain >= misfit (w2s/scoring/metrics.py: transfer_diagnostics)
BOUND_METRICS = ("misfit_test", "brier_gain", "bound_slack", "bound_slack_se")
# transfers: of the supervisor's test errors, the share the student repeats and the share it fixes;
# its misfit on its weak labels of half B (w2s/pipeline/evaluation.py: transfer_diagnostics); the bound
ERROR_METRICS = ("error_inheritance", "error_correction", "misfit", "misfit_disagreement", *BOUND_METRICS)
# transfers: how good the labels it trained on were (before a probe or gold mixing), against ground truth
WEAK_LABEL_METRICS = ("weak_label_accuracy", "weak_label_ece", "n_gold")
# what classifier_metrics computes for every transfer from its and its supervisor's predictions
TRANSFER_DIAGNOSTICS = AGREEMENT_METRICS + AGREEMENT_SPLIT + ERROR_METRICS
# transfers whose loss has a label probe: what the probe did to half B before training
PROBE_METRICS = ("probe_changed", "probe_removed", "probe_label_accuracy")
# stages that evaluated during training (train.eval_every): each selection rule's checkpoint's step and
# the test scores PGR is taken on (w2s/experiment/selection.py); the row's own scores are its rule's (`select`)
CHECKPOINT_SCORES = ("step", *(f"test_{metric}" for metric in PGR_METRICS))
RULE_COLUMNS = tuple(f"{rule}_{score}" for rule in RULES for score in CHECKPOINT_SCORES)
# transfers, from their weak model's and ceiling's rows (`link`)
REFERENCE_COLUMNS = (*(f"{who}_{metric}" for metric in PGR_METRICS for who in ("weak", "ceiling")), "pgr", "pgr_note")


def stage_row(config: dict, metrics: dict) -> dict | None:
    """The row of one finished stage from its config.json and metrics.json; None for a kind that
    writes no row (features, lm_finetune) or a stage without a score. Labels may be spec dicts (stage
    folders) or strings (older W&B runs); a chain a list or 'a->b'."""
    kind = kind_of(config.get("kind"))
    if kind is None or not kind.has_predictions or metrics.get("test_accuracy") is None:
        return None
    model = _label(config.get("model"), model_label)
    row = {
        "kind": kind.name,
        "stage": config.get("stage"),
        "key": config.get("key"),
        "dataset": _label(config.get("dataset"), dataset_label),
        "seed": config.get("seed"),
        "model": model,
        **{k: metrics.get(k) for k in SCORE_COLUMNS},
        **({"test_auroc_macro_ovr": metrics["test_auroc_macro_ovr"]} if "test_auroc_macro_ovr" in metrics else {}),
        **{k: metrics.get(k) for k in SIZE_COLUMNS + LENGTH_METRICS + PROVENANCE_COLUMNS},
        "select": config.get("select") or "final",
        **rule_scores(metrics),
    }
    if kind.is_baseline:
        if kind.name == "ground_truth":  # the half it trained on (train_b: a `ceiling: half_b` ceiling)
            row["train_split"] = config.get("train_split") or "train_a"
            row["member"] = config.get("member") or 0  # an ensemble's repeated training of the model
        return row
    chain = _chain(config.get("chain")) or (config.get("weak_model") or model, model)
    loss = config.get("loss")
    row.update(
        weak_model=chain[0],
        chain="->".join(chain),
        loss=_label(loss, loss_label),
        weak_key=config.get("weak"),
        ceiling_key=config.get("ceiling"),
        supervisor_key=config.get("supervisor"),
        **{k: None for k in REFERENCE_COLUMNS},
        # only where recorded: a stage folder from before the split existed lacks both agreement
        # splits (the report recomputes them from predictions); a W&B summary leaves out a None
        gold_frac=config.get("gold_frac") or 0.0,
        gold_n=config.get("gold_n") or 0,
        gold_select=config.get("gold_select") or "random",
        **{k: metrics.get(k) for k in AGREEMENT_METRICS},
        **{k: metrics[k] for k in AGREEMENT_SPLIT + ERROR_METRICS + WEAK_LABEL_METRICS if k in metrics},
    )
    if isinstance(loss, dict) and loss.get("probe") is not None:
        row.update({k: metrics.get(k) for k in PROBE_METRICS})
    return row


def rule_scores(metrics: dict) -> dict:
    """RULE_COLUMNS from a stage's metrics.json (`selection`) or its W&B summary (flat already);
    empty for a stage that did not evaluate during training."""
    selection = metrics.get("selection")
    if isinstance(selection, dict):
        return {f"{rule}_{score}": point.get(score) for rule, point in selection.items() for score in CHECKPOINT_SCORES}
    return {k: metrics[k] for k in RULE_COLUMNS if k in metrics}


def reference_score(reference: dict | None, rule: str, column: str):
    """A weak model's or ceiling's `column` (test_accuracy, test_auroc) at the checkpoint `rule`
    chose; a stage that did not evaluate during training has one checkpoint, its result."""
    if reference is None:
        return None
    if rule != "final":
        chosen = rule_scores(reference).get(f"{rule}_{column}")
        if chosen is not None:
            return chosen
    return reference.get(column)


def link(rows: list[dict]) -> list[dict]:
    """Each transfer row with its weak model's and ceiling's scores and its PGR (accuracy), found by
    key among `rows`; a reference that is not among them is not finished."""
    by_key = {r["key"]: r for r in rows}
    for row in rows:
        if kind_of(row["kind"]).is_transfer:
            with_references(row, by_key.get(row["weak_key"]), by_key.get(row["ceiling_key"]))
    return rows


def with_references(row: dict, weak: dict | None, ceiling: dict | None, metric: str = "accuracy") -> dict:
    """Fill a transfer row's REFERENCE_COLUMNS from its weak model's and ceiling's rows or metrics
    (None: not finished) at the checkpoints the row's selection rule chose, with PGR and its note on
    `test_<metric>` (results.jsonl: accuracy)."""
    rule = row.get("select") or "final"
    for who, ref in (("weak", weak), ("ceiling", ceiling)):
        for score in PGR_METRICS:
            row[f"{who}_{score}"] = reference_score(ref, rule, f"test_{score}")
    student, weak_score, ceiling_score = (row.get(f"{who}_{metric}") for who in ("test", "weak", "ceiling"))
    row["pgr"] = pgr(student, weak_score, ceiling_score)
    absent = tuple(who for who, ref in (("weak", weak), ("ceiling", ceiling)) if ref is None)
    row["pgr_note"] = None if row["pgr"] is not None else undefined_note(weak_score, ceiling_score, student, absent)
    return row


def stage_seconds(metrics: dict) -> float | None:
    """A stage's own wall time from its metrics: training and prediction (untrained stages: all of it)."""
    if metrics.get("seconds") is not None:
        return metrics["seconds"]
    parts = [metrics.get(k) for k in ("train_seconds", "predict_seconds")]
    return None if parts[0] is None else round(sum(p or 0 for p in parts), 2)


def _label(value, from_fields) -> str | None:
    """A dataset's, model's or loss's label, given as a dumped spec (a dict) or already as a string."""
    return from_fields(value) if isinstance(value, dict) else value


def _chain(value) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(value.split("->")) if isinstance(value, str) else tuple(value)


def format_table(rows: list[dict]) -> str:
    """The end-of-run summary: one line per stage, transfers with PGR."""
    width = max([10] + [len(r.get("loss") or "") + 1 for r in rows])  # the loss column fits the longest label
    header = (
        f"{'kind':<16} {'dataset':<12} {'seed':>4}  {'model(s)':<28} {'loss':<{width}} {'acc':>6} {'auroc':>6} "
        f"{'weak':>6} {'ceil':>6} {'PGR':>6}"
    )
    lines = [header, "-" * len(header)]

    def num(v):
        return "   -  " if v is None else f"{v:6.3f}"

    for r in rows:
        models = r.get("chain") or r["model"] + (" (half B)" if r.get("train_split") == "train_b" else "")
        lines.append(
            f"{r['kind']:<16} {r['dataset'][:12]:<12} {r['seed']:>4}  {models[:28]:<28} "
            f"{(r.get('loss') or '-'):<{width}} "
            f"{num(r['test_accuracy'])} {num(r['test_auroc'])} {num(r.get('weak_accuracy'))} "
            f"{num(r.get('ceiling_accuracy'))} {num(r.get('pgr'))}"
        )
    return "\n".join(lines)
