"""The `w2s` command: run, submit, status, validate, schema, list (and report).

Bad input of any kind ends with one line on stderr naming what is wrong and what is valid,
and exit code 2; nothing is written before the input has been checked.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import yaml

from w2s import __version__
from w2s.errors import SpecError, StagesFailed
from w2s.scoring.metrics import PGR_METRICS
from w2s.spec import json_schema, load_spec, pair_spec, validate_spec


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other error (argparse prints the whole usage first)."""

    def error(self, message: str):
        self.exit(2, f"w2s: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="w2s", description="Weak-to-strong generalization experiments.")
    parser.add_argument("--version", action="version", version=f"w2s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def with_spec(p, optional: bool = False):
        p.add_argument("spec", nargs="?" if optional else None, help="experiment spec (YAML)")
        p.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a spec field, e.g. --set train.lr=1e-4 --set 'seeds=[0,1]'",
        )
        return p

    run = with_spec(sub.add_parser("run", help="run an experiment (finished stages are reused)"), optional=True)
    run.add_argument("--dry-run", action="store_true", help="print the plan: every stage, cached or to run")
    pair = run.add_argument_group("one pair, without a spec file (--dry-run prints the spec it makes)")
    pair.add_argument("--weak", metavar="MODEL", help="the weak supervisor, e.g. minilm-l1")
    pair.add_argument("--strong", metavar="MODEL", help="the strong student, e.g. minilm-l6")
    pair.add_argument("--dataset", metavar="NAME", help="a registered dataset (w2s list datasets), e.g. sst2")
    pair.add_argument("--loss", default="xent", metavar="NAMES", help="losses, comma-separated (default xent)")
    pair.add_argument("--seeds", default="0", metavar="SEEDS", help="seeds, comma-separated (default 0)")
    run.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="run only stages whose name matches (glob), e.g. 'transfer/*logconf*'",
    )
    run.add_argument(
        "--force", action="append", default=[], metavar="PATTERN", help="retrain matching stages even if finished"
    )
    run.add_argument(
        "--workers",
        type=_positive,
        default=1,
        metavar="N",
        help="N processes share the stage queue (on CUDA, round-robin over the visible devices)",
    )
    run.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one of --workers' processes
    run.add_argument("--sweep", help=argparse.SUPPRESS)  # the sweep a worker belongs to (runner.new_sweep)
    sub_ = with_spec(sub.add_parser("submit", help="run the sweep as N workers on Slurm (or local processes)"))
    sub_.add_argument("--workers", type=_positive, required=True, metavar="N", help="N workers share the stage queue")
    sub_.add_argument(
        "--executor",
        choices=["slurm", "local"],
        default="slurm",
        help="slurm: a job array (default); local: processes on this machine",
    )
    sub_.add_argument("--partition", help="Slurm partition")
    sub_.add_argument(
        "--gpus-per-worker",
        type=_whole,
        default=0,
        metavar="G",
        help="GPUs per worker (default 0: CPUs); above 1, the worker trains under accelerate launch",
    )
    sub_.add_argument(
        "--time",
        default="24:00:00",
        metavar="LIMIT",
        help="time limit per worker, as Slurm writes it (default 24:00:00); the worker is requeued at it",
    )
    sub_.add_argument(
        "--slurm",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other sbatch option, e.g. --slurm account=lab --slurm cpus_per_task=8",
    )
    sub_.add_argument("--wait", action="store_true", help="wait for the workers to end, then show the status")
    stat = sub.add_parser("status", help="stages finished / running / failed / waiting of a run folder")
    stat.add_argument("run_dir", metavar="RUN_DIR", help="the experiment folder <output_dir>/<name>")
    stat.add_argument(
        "--json", action="store_true", help="one JSON object per stage (pandas.read_json(..., lines=True))"
    )
    check = with_spec(sub.add_parser("validate", help="check that a spec can run here, without running it"))
    check.add_argument(
        "--spec-only",
        action="store_true",
        help="check the spec alone, not its data and models (a spec for another machine)",
    )
    sub.add_parser("schema", help="print the spec's JSON Schema (for editor completion)")
    lister = sub.add_parser("list", help="show what is registered")
    lister.add_argument("what", choices=["datasets", "models", "losses", "kinds", "examples"])
    rep = sub.add_parser("report", help="PGR tables with confidence intervals, and figures, from finished stages")
    rep.add_argument(
        "run_dirs",
        nargs="*",
        metavar="RUN_DIR",
        help="experiment folder(s) <output_dir>/<name>, or a folder holding several",
    )
    rep.add_argument("--out", help="output folder (default RUN_DIR/report, or ./report with --wandb)")
    rep.add_argument("--metric", choices=PGR_METRICS, default="accuracy", help="metric PGR is computed on")
    rep.add_argument(
        "--x",
        choices=["size", "ceiling"],
        default="size",
        help="x-axis of the accuracy and PGR curves: the strong model's size (the paper's Figure 3) or "
        "its ceiling accuracy (the reference code's plots)",
    )
    rep.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read the stages' W&B runs instead of folders")
    rep.add_argument(
        "--redraw",
        metavar="REPORT_DIR",
        help="draw a report's figures again from its own summary.csv and per_seed.csv (its stage folders "
        "elsewhere), into REPORT_DIR or --out",
    )
    rep.add_argument("--group", help="with --wandb: only this group (experiment)")
    rep.add_argument(
        "--cost",
        action="append",
        default=[],
        metavar="weak=W,gold=G",
        help="price of a weak and a gold label (repeatable): each student's label cost and the frontier, the "
        "best student at each budget (cost.csv, cost.md, cost_frontier.png; docs/supervision.md)",
    )
    return parser


def _whole(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number (0 or more), got {value!r}")
    return int(value)


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {value!r}")
    return int(value)


def say(*args, **kwargs) -> None:
    """print, safe under a closed pipe (`w2s run SPEC --dry-run | head`): once the reader is gone,
    output goes nowhere and the work goes on (a training run must not die of its log)."""
    try:
        print(*args, **kwargs, flush=True)
    except BrokenPipeError:
        _stdout_to_devnull()


def _stdout_to_devnull() -> None:
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _working_directory_importable()
    try:
        return _dispatch(args)
    except SpecError as err:  # a line per problem
        for line in str(err).splitlines():
            print(f"w2s: error: {line}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output cut short by the reader; nothing else went wrong
        _stdout_to_devnull()
        return 0
    except KeyboardInterrupt:
        print("w2s: interrupted; finished stages are kept, rerun to resume", file=sys.stderr)
        return 130
    except StagesFailed as err:
        print(f"w2s: {err}", file=sys.stderr)
        return 1


def _working_directory_importable() -> None:
    """A spec's `module:attr` (a custom loss's `path`) finds modules in the working directory, as under
    `python -m w2s`, which puts it on sys.path; the `w2s` console script does not. Appended, not put
    first: an installed package of the same name wins."""
    here = os.getcwd()
    if "" not in sys.path and here not in sys.path:
        sys.path.append(here)


def _stop_on_signal(signum, frame) -> None:
    """SIGTERM (scancel, preemption) or USR2 (submitit: the time limit is near): stop now, the way
    Ctrl-C does: the stage being trained is dropped and its lock released, finished stages are kept."""
    print(
        f"w2s: stopped by {signal.Signals(signum).name}; finished stages are kept, rerun to resume",
        file=sys.stderr,
        flush=True,
    )
    raise SystemExit(128 + signum)


def _dispatch(args) -> int:
    return COMMANDS[args.command](args) or 0


def _schema(args) -> None:
    say(json.dumps(json_schema(), indent=2))


def _list(args) -> None:
    rows = _registry(args.what)
    width = max(22, *(len(name) for name, _ in rows))
    for name, description in rows:
        say(f"{name:<{width}} {description}")


def _validate(args) -> None:
    spec = load_spec(args.spec, args.overrides)
    if args.spec_only:
        say(f"{args.spec}: valid spec (its data and models were not checked here)")
        return
    from w2s.experiment.plan import plan_run

    planned = plan_run(spec)
    planned.check()
    say(f"{args.spec}: valid ({len(planned.stages)} stages), runnable here")


def _run(args) -> int:
    if args.spec is not None and any(getattr(args, flag) for flag in PAIR_FLAGS):
        raise SpecError("run: give a SPEC file or one pair (--weak, --strong, --dataset), not both")
    spec = _pair_spec(args) if args.spec is None else load_spec(args.spec, args.overrides)
    from w2s.pipeline.runner import new_sweep, run_experiment

    for signum in (signal.SIGTERM, signal.SIGUSR2):
        signal.signal(signum, _stop_on_signal)
    sweep = args.sweep or new_sweep()
    if args.workers > 1 and not args.dry_run:
        code = _run_workers(args, spec, sweep)
        if code:
            return code
    run_experiment(
        spec, only=args.only, force=args.force, dry_run=args.dry_run, echo=say, summary=not args.worker, sweep=sweep
    )
    return 0


PAIR_FLAGS = ("weak", "strong", "dataset")


def _pair_spec(args):
    """`w2s run --weak A --strong B --dataset D [--loss ...] [--seeds ...]`: the spec of one pair, made
    and checked as a written one (`--set` applies to it); `--dry-run` prints it, ready to save."""
    missing = [f"--{flag}" for flag in PAIR_FLAGS if getattr(args, flag) is None]
    if len(missing) == len(PAIR_FLAGS):
        raise SpecError(
            "run: give a SPEC file (or example:NAME), or one pair: --weak MODEL --strong MODEL --dataset NAME"
        )
    if missing:
        raise SpecError(f"run: one pair needs {', '.join(missing)} too (--weak, --strong and --dataset together)")
    if args.workers > 1:
        raise SpecError("--workers: save the pair's spec (w2s run ... --dry-run prints it) and run that file")
    seeds = [s.strip() for s in args.seeds.split(",")]
    if not all(s.isdigit() for s in seeds):
        raise SpecError(f"--seeds {args.seeds!r}: give whole numbers, comma-separated, e.g. 0,1,2")
    losses = [name.strip() for name in args.loss.split(",") if name.strip()]
    raw = pair_spec(args.weak, args.strong, args.dataset, losses, [int(s) for s in seeds], args.overrides)
    spec = validate_spec(raw, source="the pair")
    if args.dry_run:
        say("# the spec of this pair (save it as a file to edit it and run it with: w2s run FILE)")
        say(yaml.safe_dump(raw, sort_keys=False, default_flow_style=None).rstrip())
        say("# end of the spec")
    return spec


def _run_workers(args, spec, sweep: str) -> int:
    """Check once, then let `--workers` processes train the stages; the caller's last pass (of the
    same sweep) reports. A worker that ends with 1 (stages failed) leaves the report to that pass."""
    if args.force:
        raise SpecError("--force: retrain with one process (w2s run SPEC --force PATTERN), then resume with --workers")
    from w2s.experiment.plan import plan_run
    from w2s.pipeline.workers import run_workers

    plan_run(spec).check()  # a bad spec fails here once, not in every worker
    codes = run_workers(args.spec, args.overrides, args.only, args.workers, sweep, echo=say)
    crashed = [(i, code) for i, code in enumerate(codes) if code not in (0, 1)]
    for i, code in crashed:
        print(f"w2s: worker {i} exited with code {code}; finished stages are kept, rerun to resume", file=sys.stderr)
    return crashed[0][1] if crashed else 0


def _submit(args) -> int:
    from w2s.pipeline import submit

    options = {k: getattr(args, k) for k in ("workers", "executor", "partition", "gpus_per_worker", "slurm")}
    submission = submit.submit(args.spec, args.overrides, time_limit=args.time, echo=say, **options)
    if not args.wait:
        return 0
    from w2s.pipeline.status import stage_states

    root = Path(submission["root"])
    try:
        submit.wait(submission, root, echo=say)
    except KeyboardInterrupt:
        print(f"w2s: stopped waiting; the workers go on (w2s status {root})", file=sys.stderr)
        return 130
    rows = stage_states(root)  # none: no worker wrote the plan
    unfinished = sum(row["state"] != "finished" for row in rows) if rows else submission["stages"]
    if unfinished:
        print(f"w2s: the workers ended with {unfinished} stages unfinished (above: which, and why)", file=sys.stderr)
        return 1
    return 0


def _status(args) -> None:
    from w2s.pipeline.status import describe, stage_states

    rows = stage_states(Path(args.run_dir))
    if args.json:
        for row in rows:
            say(json.dumps(row))
    else:
        say(describe(Path(args.run_dir), rows))


def _report(args) -> None:
    from w2s import report
    from w2s.report.costs import parse_costs

    if sum(map(bool, (args.wandb, args.run_dirs, args.redraw))) != 1:
        raise SpecError("report: give RUN_DIR(s), --wandb ENTITY/PROJECT or --redraw REPORT_DIR (one of the three)")
    costs = parse_costs(args.cost)
    if args.redraw:
        if costs:
            raise SpecError("report: --cost needs the stage folders or W&B runs, not --redraw")
        written = report.redraw(args.redraw, args.out, x=args.x)
        say(f"redrew {len(written) // 2} figures from {args.redraw}'s tables into {Path(args.out or args.redraw)}")
        return
    if args.wandb:
        written = report.report_wandb(args.wandb, args.group, args.out, args.metric, x=args.x, costs=costs)
    else:
        written = report.report(args.run_dirs, args.out, args.metric, x=args.x, costs=costs)
    say((written[0].parent / "summary.md").read_text(), end="")
    say(f"wrote {len(written)} files to {written[0].parent}")


COMMANDS = {
    "schema": _schema,
    "list": _list,
    "validate": _validate,
    "run": _run,
    "submit": _submit,
    "status": _status,
    "report": _report,
}


def _registry(what: str) -> list[tuple[str, str]]:
    """The rows of `w2s list`; read from torch-free modules, so listing stays instant."""
    if what == "datasets":
        from w2s.data import describe_datasets

        return describe_datasets()
    if what == "models":
        from w2s.models.names import describe_models

        return describe_models()
    if what == "examples":
        from w2s.spec.loading import describe_examples

        return describe_examples()
    if what == "kinds":
        from w2s.experiment.kinds import KINDS

        return [(name, f"trains {kind.trains}; result row: {kind.row or 'none'}") for name, kind in KINDS.items()]
    from w2s.spec import describe_losses

    return describe_losses()


if __name__ == "__main__":
    sys.exit(main())
