"""Tracking: every stage writes its step log locally (JSONL) and, unless disabled, one W&B run.

Why the wandb SDK directly rather than Accelerate's tracker API (`Accelerator(log_with="wandb")`):
the trainer makes a fresh Accelerator per stage inside `w2s.training.loop.train`, while a stage's W&B run
must span more than training (predictions, tables, artifacts, summary metrics written after
evaluation) and must survive W&B failures with a fallback to offline. Accelerate's WandBTracker
would only forward `wandb.init` and `log`; Tables, Artifacts, init timeouts and the fallback need
the SDK anyway. So `StageTracker` talks to wandb itself, and exists only on the main process
(the runner creates it there), which is what Accelerate's tracker would guarantee too.

Modes (spec `tracking.mode`, else WANDB_MODE, else `auto`: `resolve_tracking`): `online`; `offline`
(runs under <output_dir>/<experiment>/wandb/, or $WANDB_DIR/wandb/, upload later with `wandb sync`);
`disabled` (nothing under wandb/, wandb is not even imported); `auto`: online when credentials are
present (WANDB_API_KEY, or a netrc entry for the W&B host), offline otherwise. A W&B failure never stops an experiment: a failed online start falls back to
offline (one warning, and the experiment's later runs in this process go straight offline), and a failure while
logging drops W&B for that run only. The local files (log.jsonl, metrics.json) are always written.
"""

from __future__ import annotations

import json
import netrc
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from w2s.errors import SpecError
from w2s.experiment.kinds import KINDS, StudentStage
from w2s.pipeline.store import stage_config
from w2s.scoring.predictions import PROBS_FILE
from w2s.scoring.rows import PROVENANCE_COLUMNS, rule_scores, stage_row, with_references

DEFAULT_INIT_TIMEOUT = 30.0  # seconds wandb.init may take online before we fall back to offline
_state = {"offline": set(), "warned": set()}  # experiment folders whose online start failed


def _warn_once(topic: str, message: str) -> None:
    if topic not in _state["warned"]:
        _state["warned"].add(topic)
        print(f"w2s: warning: {message}", file=sys.stderr)


def _note_once(topic: str, message: str) -> None:
    if topic not in _state["warned"]:
        _state["warned"].add(topic)
        print(f"w2s: {message}", file=sys.stderr)


def has_credentials() -> bool:
    """WANDB_API_KEY, or a netrc entry for the W&B API host (what `wandb login` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC") or None).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(mode: str) -> str:
    if mode == "auto":
        return "online" if has_credentials() else "offline"
    return mode


# WANDB_MODE's values as wandb reads them, in w2s's modes
WANDB_MODES = {"online": "online", "run": "online", "offline": "offline", "dryrun": "offline", "disabled": "disabled"}


@dataclass(frozen=True)
class Tracking:
    """How a run's stages log to W&B: its mode (before `auto` looks for credentials), project, entity,
    and the folder W&B keeps its run folders in."""

    mode: str
    project: str
    entity: str | None
    folder: Path


def resolve_tracking(spec) -> Tracking:
    """W&B's conventions: a spec field wins; where the spec leaves `tracking.mode` (or names `auto`),
    `project` or `entity` out, W&B's own variable decides (WANDB_MODE, WANDB_PROJECT, WANDB_ENTITY);
    then w2s's default. Run folders go next to the stages (<output_dir>/<experiment>/wandb/), or under
    $WANDB_DIR/wandb/ where that is set."""
    t, env = spec.tracking, os.environ

    def pick(field: str, variable: str):
        # `auto` decides by where the run is, so a spec that names it still hears WANDB_MODE (the
        # shipped specs name it, and `WANDB_MODE=disabled w2s run experiments/...` turns W&B off)
        named = field in t.model_fields_set and getattr(t, field) != "auto"
        return getattr(t, field) if named or not env.get(variable) else env[variable]

    mode = pick("mode", "WANDB_MODE")
    if mode not in ("auto", *WANDB_MODES):
        raise SpecError(
            f"WANDB_MODE={mode!r}: w2s reads online, offline or disabled (or run, dryrun); "
            "set tracking.mode in the spec, or unset it"
        )
    folder = Path(env["WANDB_DIR"]) / "wandb" if env.get("WANDB_DIR") else spec.run_dir / "wandb"
    return Tracking(
        WANDB_MODES.get(mode, mode), pick("project", "WANDB_PROJECT"), pick("entity", "WANDB_ENTITY"), folder
    )


def _go_offline(folder: Path, reason: str) -> None:
    """Remember that this experiment logs offline (its later runs skip the online attempt); warn once."""
    _state["offline"].add(str(folder))
    _warn_once(
        f"online:{folder}", f"{reason}; logging offline instead. Upload later with: wandb sync {folder}/offline-run-*"
    )


def start_run(spec, **init_kwargs):
    """A W&B run in the resolved mode (`resolve_tracking`), or None when disabled or when W&B cannot be
    used at all."""
    tracking = resolve_tracking(spec)
    mode = resolve_mode(tracking.mode)
    if mode == "disabled":
        return None
    import wandb

    folder = tracking.folder
    folder.mkdir(parents=True, exist_ok=True)
    common = dict(  # wandb writes into <dir>/wandb/
        project=tracking.project,
        entity=tracking.entity,
        group=spec.name,
        dir=str(folder.parent),
        reinit="create_new",
        **init_kwargs,
    )
    # console="off": our training rows are logged as metrics; wrapping stdout would copy progress bars
    timeout = float(os.environ.get("WANDB_INIT_TIMEOUT", DEFAULT_INIT_TIMEOUT))
    # quiet=True: no per-run banners and history sparklines; w2s prints its own one-line summaries
    settings = dict(console="off", init_timeout=timeout, quiet=True)
    if mode == "online" and not has_credentials():  # wandb would prompt for a key and stall the run
        _go_offline(folder, "no W&B credentials found (`wandb login` or WANDB_API_KEY)")
    if mode == "online" and str(folder) not in _state["offline"]:
        try:
            return wandb.init(mode="online", settings=wandb.Settings(**settings), **common)
        except Exception as err:  # no network, bad key, service down: keep going offline
            text = str(err).strip()
            _go_offline(folder, f"W&B online logging failed ({text.splitlines()[0] if text else type(err).__name__})")
    if mode == "offline":
        _note_once(
            f"offline:{folder}", f"W&B runs are saved offline; upload later with: wandb sync {folder}/offline-run-*"
        )
    try:  # offline: silent, w2s has said once where the runs are and how to upload them
        return wandb.init(mode="offline", settings=wandb.Settings(**settings, silent=True), **common)
    except Exception as err:
        _warn_once("offline", f"W&B offline logging failed ({err}); tracking locally only")
        return None


def run_name(stage) -> str:
    """E.g. `transfer synthetic minilm-l1->minilm-l6 logconf s0`: the stage name, spaced."""
    return stage.name.replace("/", " ")


def stage_tags(stage) -> list[str]:
    """Its dataset, its model(s) and a student's loss."""
    student = isinstance(stage, StudentStage)
    tags = [stage.dataset.label, *(stage.chain if student else (stage.model.display,))]
    if student:
        tags.append(stage.loss_label)
    return list(dict.fromkeys(t[:64] for t in tags))  # W&B tags: at most 64 characters, no repeats


def _prediction_table(predictions: list[dict], split: str):
    import wandb

    score = "p_pos" if "p_pos" in predictions[0] else "confidence"  # two classes, or the top class's probability
    rows = [[p["id"], p["hard_label"], p[score], p["predicted"]] for p in predictions if p["split"] == split]
    return wandb.Table(columns=["id", "hard_label", score, "predicted"], data=rows), len(rows)


class StageTracker:
    """Receives a stage's training rows and final metrics; only the main process makes one."""

    def __init__(self, folder: Path, stage, spec):
        self.folder = folder
        self.stage = stage
        self.spec = spec
        self.config = stage_config(stage, spec)  # the run's config, and its result row's source at the end
        self._log = open(folder / "log.jsonl", "w")
        self.run = start_run(
            spec,
            job_type=KINDS[stage.kind].job_type,
            name=run_name(stage),
            tags=stage_tags(stage),
            config=self.config,
        )

    def _safely(self, action) -> None:
        """Run a W&B call; on failure warn once and stop using W&B for this stage."""
        if self.run is None:
            return
        try:
            action(self.run)
        except Exception as err:
            _warn_once("log", f"W&B logging failed ({err}); this stage continues with local logs only")
            run, self.run = self.run, None
            try:
                run.finish(exit_code=1)
            except Exception:
                pass

    def log(self, row: dict, section: str = "train") -> None:
        """One line of log.jsonl (evaluation points marked `"section": "eval"`) and of the W&B
        history, under `<section>/`, at the row's optimizer step."""
        self._log.write(json.dumps(row if section == "train" else {**row, "section": section}) + "\n")
        self._log.flush()
        self._safely(lambda run: run.log({f"{section}/{k}": v for k, v in row.items()}, step=row["step"]))

    def finish(
        self,
        metrics: dict,
        predictions: list[dict],
        weak_metrics: dict | None = None,
        ceiling_metrics: dict | None = None,
    ) -> None:
        """Close the local log; on W&B, write summary metrics, prediction tables and the artifact.

        `weak_metrics`/`ceiling_metrics` are the finished ground-truth stages' metrics, or None when
        not finished yet (then `pgr` is left out here; the experiment's summary run has it)."""
        self._log.close()
        self._safely(lambda run: self._finish_run(run, metrics, predictions, weak_metrics, ceiling_metrics))
        self._safely(lambda run: run.finish())
        self.run = None

    def _finish_run(self, run, metrics, predictions, weak_metrics, ceiling_metrics) -> None:
        import wandb

        summary = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and v is not None}
        summary.update(
            {k: metrics[k] for k in PROVENANCE_COLUMNS if metrics.get(k) is not None}
        )  # `w2s report --wandb`
        summary.update({k: v for k, v in rule_scores(metrics).items() if v is not None})  # per selection rule
        for split, counts in metrics.get("lengths", {}).items():  # over-long examples per split
            summary.update({f"lengths/{split}/{k}": v for k, v in counts.items()})
        if KINDS[self.stage.kind].is_transfer:  # its PGR, where its weak model and ceiling are finished
            row = with_references(stage_row(self.config, metrics), weak_metrics, ceiling_metrics)
            for key in ("weak_accuracy", "ceiling_accuracy", "pgr", "agreement", "supervisor_accuracy", "pgr_note"):
                if row.get(key) is not None:
                    summary[key] = row[key]
        run.summary.update(summary)
        if not predictions:  # features and generative finetuning stages: the summary is all there is
            return

        artifact = wandb.Artifact(
            f"preds-{self.stage.key}",
            type="predictions",
            description=f"Predictions of stage {self.stage.name}: train_b holds the weak labels it gives its students.",
            metadata={"stage": self.stage.name, "stage_key": self.stage.key, "test_accuracy": metrics["test_accuracy"]},
        )
        tables = {}
        for split in ("train_b", "test"):
            table, n = _prediction_table(predictions, split)
            if n <= wandb.Table.MAX_ARTIFACT_ROWS:
                artifact.add(table, split)
            if n <= wandb.Table.MAX_ROWS:  # bigger tables live in the artifact only
                tables[f"predictions/{split}"] = table
        for name in ("predictions.jsonl", PROBS_FILE):
            if (self.folder / name).is_file():
                artifact.add_file(str(self.folder / name))
        if tables:
            run.log(tables)
        supervisor = self.config["supervisor"]
        if supervisor is not None and not run.offline:  # lineage: W&B links the two runs
            try:
                run.use_artifact(f"preds-{supervisor}:latest")
            except Exception:
                pass  # e.g. the supervisor was trained offline and never synced
        run.log_artifact(artifact)

    def abort(self) -> None:
        self._log.close()
        self._safely(lambda run: run.finish(exit_code=1))
        self.run = None


def log_experiment_summary(spec, rows: list[dict]) -> None:
    """One `summary` run per experiment: the PGR table (results.jsonl rows) and mean PGR per loss."""
    run = start_run(
        spec,
        job_type="summary",
        name=f"summary {spec.name}",
        config={"spec": spec.model_dump(mode="json")},
        tags=[d.label for d in spec.datasets],
    )
    if run is None:
        return
    try:
        import wandb

        columns = list(dict.fromkeys(k for r in rows for k in r))
        data = [[_cell(r.get(c)) for c in columns] for r in rows]
        run.log({"pgr_table": wandb.Table(columns=columns, data=data)})
        transfers = [r for r in rows if r["kind"] == "transfer"]
        for loss in dict.fromkeys(r["loss"] for r in transfers):
            values = [r["pgr"] for r in transfers if r["loss"] == loss and r["pgr"] is not None]
            if values:
                run.summary[f"pgr_mean/{loss}"] = sum(values) / len(values)
        run.summary.update({"n_stages": len(rows), "n_transfers": len(transfers)})
        results = spec.run_dir / "results.jsonl"
        if results.is_file():
            artifact = wandb.Artifact(f"results-{spec.name}", type="results", description="results.jsonl rows")
            artifact.add_file(str(results))
            run.log_artifact(artifact)
        run.finish()
    except Exception as err:
        _warn_once("summary", f"W&B summary run failed ({err}); results.jsonl is complete")
        try:
            run.finish(exit_code=1)
        except Exception:
            pass


def _cell(value):
    """Table cells must share a type per column: lists and dicts become JSON text."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value
