"""Fault soak: SIGKILL `w2s run` at random and at chosen moments, resume, and check the results
are exactly those of an uninterrupted run.

    python benchmarks/fault_soak.py [--kills 20] [--seed 0] [--out DIR] [--concurrent-kills 4]

1. Reference: the sweep (3 tiny random BERTs, every upward pair, xent + logconf: 15 stages, W&B
   offline) runs once, uninterrupted.
2. Kills: into a second folder, `w2s run` is started again and again and its process group
   SIGKILLed each time, until --kills kills have landed. Each kill is aimed at one moment:
   `random` (a delay drawn uniformly over the reference run's wall time), `publish-tmp` (the run's
   `.tmp-*` folder of the N-th stage it trains holds metrics.json: the stage is written and about
   to be renamed into place), `published` (right after the N-th new stage folder appears) or
   `wandb` (right after the N-th new file appears under wandb/). N is drawn too. If a run
   finishes before its kill lands, that folder is complete: it is checked and the soak goes on
   in a fresh folder (a new round). After the last kill the same command runs to completion.
3. Concurrent: two `w2s run` processes on a fresh folder; at random moments (uniform over half the
   reference run's time) one of them or both are killed and restarted, --concurrent-kills times,
   then both run to completion.

Checked against the reference (timing fields aside: anything named like seconds, time,
throughput): one stage folder per key and no other, metrics.json, predictions.jsonl, log.jsonl
and config.json (output_dir aside) identical, results.jsonl rows identical, no `.tmp-*`/`.old-*`
left in stages/. After every kill, each published stage folder must already be complete and
identical to the reference, and no stage that was published may vanish later ("lost"); no run may
retrain a stage that was finished when it started, and no stage may be trained to completion
twice. Exit code 1 if anything differs. W&B offline runs are reported, not judged (a complete
run per stage, the experiment's summary run) unless --strict-wandb.

The `w2s` package is copied into OUT/code at the start, so that edits to the working tree during
the soak cannot mix two versions; every process runs with one thread (OMP_NUM_THREADS=1), as
determinism on CPU needs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
NAME = "soak"
TARGETS = ("random", "publish-tmp", "published", "wandb")
TIMING = re.compile(r"second|time|elapsed|duration|throughput|per_s|/s$")
POLL = 0.002  # seconds between looks at the output folder while aiming a kill
RUN_TIMEOUT = 600  # seconds any single uninterrupted run may take


# ---------------------------------------------------------------------------------------------
# the sweep and its processes


def tiny_model(label: str, hidden: int, layers: int) -> dict:
    """A randomly initialised BERT with the MiniLM tokenizer (as tests/conftest.py tiny_model)."""
    overrides = {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": 2,
        "intermediate_size": 2 * hidden,
    }
    return {"name": "minilm-l6", "label": label, "random_init": True, "config_overrides": overrides}


def build_spec(out: Path, ladder: int = 3, losses=("xent", "logconf")) -> dict:
    """Ladder 3 and two losses: 3 ground-truth + 6 pairs x 2 losses = 15 stages; W&B offline."""
    sizes = [(16, 1), (24, 1), (32, 2)][:ladder]
    return {
        "name": NAME,
        "output_dir": str(out),
        "datasets": {"name": "synthetic", "n_train": 64, "n_test": 32},
        "models": [tiny_model(f"tiny-{h}", h, n) for h, n in sizes],
        "losses": [{"name": loss} for loss in losses],
        "seeds": [0],
        "train": {"epochs": 1, "lr": 1e-3, "batch_size": 16, "minibatch_size": 8},
        "tracking": {"mode": "offline"},
    }


def write_spec(path: Path, spec: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def snapshot_code(out: Path) -> Path:
    """A copy of the w2s package, the code every process of the soak runs (cwd comes first on sys.path)."""
    code = out / "code"
    if not (code / "w2s").is_dir():
        shutil.copytree(REPO / "w2s", code / "w2s", ignore=shutil.ignore_patterns("__pycache__"))
    return code


def child_env(out: Path) -> dict:
    """One thread per process (same numbers as the reference); every W&B, netrc and w2s cache path inside OUT."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    home = out / "wandb-home"
    env.update(
        WANDB_SILENT="true",
        WANDB_MODE="offline",
        WANDB_DIR=str(home / "dir"),
        WANDB_CONFIG_DIR=str(home / "config"),
        WANDB_CACHE_DIR=str(home / "cache"),
        WANDB_DATA_DIR=str(home / "data"),
        WANDB_ARTIFACT_DIR=str(home / "artifacts"),
        NETRC=str(home / "no-netrc"),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
        TQDM_DISABLE="1",
        W2S_CACHE_DIR=str(out / "w2s-cache"),  # w2s's per-machine facts, kept inside OUT too
    )
    return env


@dataclass
class Soak:
    """Where the soak writes, the code it runs, and what it has seen so far."""

    out: Path
    code: Path
    env: dict
    ref: Path | None = None  # the reference experiment folder
    ref_seconds: float = 0.0
    wandb_files: int = 0  # files under wandb/ after the reference run
    n_stages: int = 0
    n_runs: int = 0
    services: list = field(default_factory=list)  # (wandb-core pid, time its parent was killed)
    spec_args: dict = field(default_factory=dict)  # build_spec's ladder and losses

    def start(self, spec_path: Path, label: str) -> subprocess.Popen:
        """`python -m w2s run SPEC` in its own session (so killpg takes its children too)."""
        self.n_runs += 1
        logs = self.out / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{self.n_runs:03d}-{label}.log"
        with open(log, "w") as stdout, open(log.with_suffix(".err"), "w") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "w2s", "run", str(spec_path)],
                cwd=self.code,
                env=self.env,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        proc.log = log
        proc.started = time.monotonic()
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        # wandb-core starts in a session of its own and outlives the group; it should notice its parent died
        self.services += [(pid, time.monotonic()) for pid in wandb_services(proc.pid)]

    def finish(self, proc: subprocess.Popen, problems: list[str]) -> None:
        """Wait for a run that should complete; a failure is a problem."""
        try:
            rc = proc.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill(proc)
            rc = "timeout"
        if rc != 0:
            problems.append(f"{proc.log.name}: exit {rc}: {tail(proc.log.with_suffix('.err'))}")

    def reap_services(self, grace: float = 10.0) -> int:
        """wandb-core processes still alive `grace` seconds after their parent was killed (then killed)."""
        stuck = 0
        for pid, killed_at in self.services:
            while alive(pid) and time.monotonic() < killed_at + grace:
                time.sleep(0.1)
            if alive(pid):
                stuck += 1
                os.kill(pid, signal.SIGKILL)
        self.services = []
        return stuck


def tail(path: Path, n: int = 5) -> str:
    lines = path.read_text(errors="replace").strip().splitlines() if path.is_file() else []
    return " | ".join(lines[-n:])


def wandb_services(parent: int) -> list[int]:
    """The wandb-core processes serving a given w2s process (`wandb-core ... --pid PARENT`)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            args = Path(entry.path, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args[0].endswith(b"wandb-core") and b"--pid" in args[:-1]:
            if args[args.index(b"--pid") + 1] == b"%d" % parent:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status  # an unreaped zombie has exited


# ---------------------------------------------------------------------------------------------
# looking at an experiment folder


def published(root: Path) -> set[str]:
    """Stage folders in place (renamed from their temporary folder)."""
    try:
        return {e.name for e in os.scandir(root / "stages") if not e.name.startswith(".")}
    except FileNotFoundError:
        return set()


def finished(root: Path) -> set[str]:
    """Published stage folders whose metrics.json is there (what `w2s run` takes for finished)."""
    return {name for name in published(root) if (root / "stages" / name / "metrics.json").is_file()}


def leftovers(root: Path) -> list[str]:
    """Temporary (`.tmp-*`) and replaced (`.old-*`) stage folders, and anything else hidden in stages/."""
    try:
        return sorted(e.name for e in os.scandir(root / "stages") if e.name.startswith("."))
    except FileNotFoundError:
        return []


def wandb_files(root: Path) -> set[str]:
    return {os.path.join(d, f) for d, _, files in os.walk(root / "wandb") for f in files}


def started_and_done(log: Path) -> tuple[list[str], list[str]]:
    """Stage keys a run started (`[i/n] name  (key K)`) and finished (followed by `  done in`)."""
    started, done = [], []
    for line in log.read_text(errors="replace").splitlines() if log.is_file() else []:
        if m := re.match(r"\[\d+/\d+\] \S+  \(key (\w+)\)$", line):
            started.append(m.group(1))
        elif line.startswith("  done in") and started:
            done.append(started[-1])
    return started, done


def strip_timing(obj):
    if isinstance(obj, dict):
        return {k: strip_timing(v) for k, v in obj.items() if not TIMING.search(k)}
    if isinstance(obj, list):
        return [strip_timing(v) for v in obj]
    return obj


def read_jsonl(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()]


def stage_differences(ref: Path, folder: Path) -> list[str]:
    """How a stage folder differs from the reference's folder of the same name (timing aside)."""
    out = []
    try:
        if strip_timing(json.loads((folder / "metrics.json").read_text())) != strip_timing(
            json.loads((ref / "metrics.json").read_text())
        ):
            out.append("metrics.json")
        if (folder / "predictions.jsonl").read_bytes() != (ref / "predictions.jsonl").read_bytes():
            out.append("predictions.jsonl")
        if strip_timing(read_jsonl(folder / "log.jsonl")) != strip_timing(read_jsonl(ref / "log.jsonl")):
            out.append("log.jsonl")
        configs = [json.loads((f / "config.json").read_text()) for f in (folder, ref)]
        for config in configs:
            config["spec"].pop("output_dir", None)
        if configs[0] != configs[1]:
            out.append("config.json")
        extra = sorted({p.name for p in folder.iterdir()} ^ {p.name for p in ref.iterdir()})
        if extra:
            out.append(f"files {extra}")
    except (OSError, ValueError, KeyError) as err:  # missing or unreadable: a corrupt stage
        out.append(f"unreadable ({type(err).__name__}: {err})")
    return out


def compare(ref: Path, root: Path) -> dict:
    """A finished experiment folder against the reference."""
    want, have = published(ref), published(root)
    keys = [name.rsplit("__", 1)[-1] for name in have]
    differing = {}
    for name in sorted(want & have):
        if diff := stage_differences(ref / "stages" / name, root / "stages" / name):
            differing[name] = diff
    rows_equal = False
    if (root / "results.jsonl").is_file():
        rows_equal = strip_timing(read_jsonl(root / "results.jsonl")) == strip_timing(read_jsonl(ref / "results.jsonl"))
    return {
        "folder": root.parent.name,
        "missing": sorted(want - have),
        "unexpected": sorted(have - want),
        "duplicate_keys": sorted({k for k in keys if keys.count(k) > 1}),
        "differing": differing,
        "results_equal": rows_equal,
        "leftovers": leftovers(root),
        "results_tmp_files": sorted(p.name for p in root.glob(".results.jsonl.*")),
        "wandb": wandb_state(root),
    }


def wandb_state(root: Path) -> dict:
    """W&B offline runs of a finished folder: stages with a complete run, and whether the summary run is there.
    (Runs of killed processes stay incomplete; a rerun makes a new one.)"""
    try:
        sys.path.insert(0, str(REPO))  # the reader lives with the tests
        from tests.wandb_offline import read_offline_run
    except Exception as err:  # informational only
        return {"error": str(err)}
    runs = []
    for folder in sorted((root / "wandb").glob("offline-run-*")):
        try:
            runs.append(read_offline_run(folder))
        except Exception:  # killed before its first record
            continue
    complete = [r for r in runs if r["exited"]]
    keys = {r["config"].get("key") for r in complete if r["job_type"] != "summary"}
    return {
        "runs": len(runs),
        "stages_with_complete_run": len(keys - {None}),
        "summary_run": any(r["job_type"] == "summary" for r in complete),
    }


def comparison_problems(label: str, c: dict) -> list[str]:
    what = ("missing", "unexpected", "duplicate_keys", "differing", "leftovers")
    out = [f"{label}: {w}: {c[w]}" for w in what if c[w]]
    if not c["results_equal"]:
        out.append(f"{label}: results.jsonl rows differ from the reference")
    return out


class Watch:
    """What one experiment folder went through: stages published, lost, retrained."""

    def __init__(self, soak: Soak, root: Path):
        self.soak, self.root = soak, root
        self.ever: set[str] = set()
        self.lost: set[str] = set()
        self.problems: list[str] = []
        self.done_count: dict[str, int] = {}

    def check(self, when: str) -> None:
        """Every stage published so far is still there, complete and identical to the reference."""
        now = published(self.root)
        for name in sorted(self.ever - now):
            self.lost.add(name)
            self.problems.append(f"{when}: stage {name} vanished")
        for name in sorted(now):
            diff = stage_differences(self.soak.ref / "stages" / name, self.root / "stages" / name)
            if diff and name not in self.lost:
                self.lost.add(name)
                self.problems.append(f"{when}: stage {name} published but corrupt or different: {diff}")
        self.ever |= now

    def account(self, proc: subprocess.Popen, finished_at_start: set[str]) -> None:
        """A run may not retrain a stage finished when it started; no stage may be trained to the end twice."""
        started, done = started_and_done(proc.log)
        finished_keys = {name.rsplit("__", 1)[-1] for name in finished_at_start}
        for key in sorted(set(started) & finished_keys):
            self.problems.append(f"{proc.log.name}: retrained stage {key}, finished before the run started")
        for key in done:
            self.done_count[key] = self.done_count.get(key, 0) + 1
            if self.done_count[key] == 2:
                self.problems.append(f"{proc.log.name}: stage {key} trained to completion a second time")

    def trainings(self) -> int:
        return sum(self.done_count.values())


# ---------------------------------------------------------------------------------------------
# the three parts


def reference(soak: Soak, problems: list[str]) -> None:
    path = write_spec(soak.out / "specs" / "reference.yaml", build_spec(soak.out / "reference", **soak.spec_args))
    start = time.monotonic()
    proc = soak.start(path, "reference")
    soak.finish(proc, problems)
    soak.ref_seconds = time.monotonic() - start
    soak.ref = soak.out / "reference" / NAME
    soak.n_stages = len(published(soak.ref))
    soak.wandb_files = len(wandb_files(soak.ref))
    if soak.n_stages < 8 or leftovers(soak.ref):
        problems.append(f"reference run: {soak.n_stages} stages, leftovers {leftovers(soak.ref)}")


def aim(proc: subprocess.Popen, root: Path, target: str, delay: float, nth: int) -> bool:
    """Block until the aimed moment (True) or until the process exits first (False)."""
    stages = root / "stages"
    seen_stages, seen_files = published(root), wandb_files(root)
    tmp_with_metrics: set[str] = set()
    count = 0
    while proc.poll() is None:
        if target == "random":
            left = proc.started + delay - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, 0.05))
            continue
        if target == "publish-tmp":
            for tmp in stages.glob(f".tmp-*-{proc.pid}") if stages.is_dir() else []:
                if tmp.name not in tmp_with_metrics and (tmp / "metrics.json").exists():
                    tmp_with_metrics.add(tmp.name)
                    count += 1
        elif target == "published":
            now = published(root)
            count += len(now - seen_stages)
            seen_stages |= now
        elif target == "wandb":
            now = wandb_files(root)
            count += len(now - seen_files)
            seen_files |= now
        if count >= nth:
            return True
        time.sleep(POLL)
    return False


def moment(proc: subprocess.Popen, root: Path) -> str:
    """Where a killed run was, from what it left: its temporary folder (with or without metrics.json), its log."""
    mine = list((root / "stages").glob(f".tmp-*-{proc.pid}")) if (root / "stages").is_dir() else []
    if any((tmp / "metrics.json").exists() for tmp in mine):
        return "stage written, not yet renamed"
    if mine:
        return "training a stage"
    started, _ = started_and_done(proc.log)
    return "between stages" if started else "starting up"


def kill_soak(soak: Soak, kills: int, rng: random.Random, problems: list[str]) -> dict:
    """Part 2: SIGKILL sequential runs at aimed moments until `kills` kills have landed."""
    schedule = [TARGETS[i % len(TARGETS)] for i in range(kills)]
    rng.shuffle(schedule)
    records, compared, rounds, lost, watches = [], [], 0, 0, []
    leftover_seen = set()

    def new_round():
        nonlocal rounds
        rounds += 1
        root = soak.out / "killed" / f"round{rounds}"
        path = write_spec(soak.out / "specs" / f"killed{rounds}.yaml", build_spec(root, **soak.spec_args))
        watch = Watch(soak, root / NAME)
        watches.append(watch)
        return path, watch

    spec_path, watch = new_round()
    idle_runs = 0  # runs in a row that finished before their kill landed
    while len(records) < kills:
        target = schedule[len(records)]
        remaining = soak.n_stages - len(published(watch.root))
        delay = rng.uniform(0, soak.ref_seconds)
        nth = (
            rng.randint(1, max(1, remaining))
            if target in ("publish-tmp", "published")
            else (rng.randint(1, max(1, soak.wandb_files * remaining // soak.n_stages)))
        )
        at_start = finished(watch.root)
        proc = soak.start(spec_path, f"round{rounds}-kill{len(records) + 1}-{target}")
        landed = aim(proc, watch.root, target, delay, nth)
        if landed:
            soak.kill(proc)
            where = moment(proc, watch.root)  # read from what the killed run left behind
            idle_runs = 0
            records.append(
                {
                    "target": target,
                    "delay_s": round(delay, 2) if target == "random" else None,
                    "nth": nth if target != "random" else None,
                    "landed": where,
                    "after_s": round(time.monotonic() - proc.started, 2),
                    "round": rounds,
                    "stages_before": len(at_start),
                    "stages_after": len(published(watch.root)),
                }
            )
            leftover_seen.update(leftovers(watch.root))
            watch.account(proc, at_start)
            watch.check(f"after kill {len(records)} ({target})")
            continue
        # the run finished before the kill: the folder is complete, check it and start a fresh one
        soak.finish(proc, problems)
        watch.account(proc, at_start)
        watch.check(f"round {rounds} end")
        c = compare(soak.ref, watch.root)
        compared.append(c)
        problems.extend(comparison_problems(f"round {rounds}", c))
        idle_runs += 1
        if idle_runs == 3:
            problems.append(f"three runs in a row finished before a kill aimed at {target!r} landed")
            break
        spec_path, watch = new_round()

    at_start = finished(watch.root)
    proc = soak.start(spec_path, f"round{rounds}-final")  # resume to completion, no kill
    soak.finish(proc, problems)
    watch.account(proc, at_start)
    watch.check("final run")
    c = compare(soak.ref, watch.root)
    compared.append(c)
    problems.extend(comparison_problems(f"round {rounds} (final)", c))
    for w in watches:
        problems.extend(w.problems)
        lost += len(w.lost)
    return {
        "kills": records,
        "rounds": rounds,
        "comparisons": compared,
        "lost": lost,
        "trainings": sum(w.trainings() for w in watches),
        "leftovers_seen_after_kills": len(leftover_seen),
    }


def concurrent_soak(soak: Soak, kills: int, rng: random.Random, problems: list[str]) -> dict:
    """Part 3: two processes on one folder; kill one or both at random moments, restart, until done."""
    root = soak.out / "concurrent"
    spec_path = write_spec(soak.out / "specs" / "concurrent.yaml", build_spec(root, **soak.spec_args))
    watch = Watch(soak, root / NAME)
    procs = [soak.start(spec_path, f"concurrent-p{i}") for i in range(2)]
    starts = [finished(watch.root)] * 2
    records = []
    while len(records) < kills and any(p.poll() is None for p in procs):
        delay = rng.uniform(0, soak.ref_seconds / 2)  # two processes share the work: about half the time
        victims = rng.choice([[0], [1], [0, 1]])
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and any(p.poll() is None for p in procs):
            time.sleep(0.02)
        victims = [i for i in victims if procs[i].poll() is None] or [i for i in (0, 1) if procs[i].poll() is None]
        if not victims:
            break
        for i in victims:
            soak.kill(procs[i])
            records.append(
                {
                    "target": "concurrent-random",
                    "process": i,
                    "landed": moment(procs[i], watch.root),
                    "after_s": round(time.monotonic() - procs[i].started, 2),
                }
            )
        for i in victims:
            watch.account(procs[i], starts[i])
        watch.check(f"concurrent kill {len(records)}")
        for i in victims:
            starts[i] = finished(watch.root)
            procs[i] = soak.start(spec_path, f"concurrent-p{i}-restart{len(records)}")
    for i, proc in enumerate(procs):
        soak.finish(proc, problems)
        watch.account(proc, starts[i])
    watch.check("concurrent end")
    c = compare(soak.ref, watch.root)
    problems.extend(comparison_problems("concurrent", c))
    problems.extend(watch.problems)
    return {"kills": records, "comparison": c, "lost": len(watch.lost), "trainings": watch.trainings()}


def soak_run(
    out: Path,
    kills: int = 20,
    seed: int = 0,
    concurrent_kills: int = 4,
    ladder: int = 3,
    losses=("xent", "logconf"),
    strict_wandb: bool = False,
) -> dict:
    """All three parts; returns the summary (also written to OUT/fault_soak.json). W&B runs are
    reported; with strict_wandb a stage without a complete run, or a missing summary run, fails too."""
    start = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    soak = Soak(
        out=out, code=snapshot_code(out), env=child_env(out), spec_args={"ladder": ladder, "losses": tuple(losses)}
    )
    rng = random.Random(seed)
    problems: list[str] = []
    reference(soak, problems)
    if problems:  # no reference, nothing to compare against
        return finish_summary(out, start, soak, problems, None, None)
    killed = kill_soak(soak, kills, rng, problems)
    concurrent = concurrent_soak(soak, concurrent_kills, rng, problems)
    return finish_summary(out, start, soak, problems, killed, concurrent, strict_wandb)


def finish_summary(out, start, soak, problems, killed, concurrent, strict_wandb=False) -> dict:
    stuck = soak.reap_services()
    if stuck:
        problems.append(f"{stuck} wandb-core processes outlived their killed parent by more than 10 s")
    records = (killed["kills"] if killed else []) + (concurrent["kills"] if concurrent else [])
    comparisons = (killed["comparisons"] if killed else []) + ([concurrent["comparison"]] if concurrent else [])
    for c in comparisons if strict_wandb else []:
        w = c["wandb"]
        if w.get("stages_with_complete_run") != soak.n_stages or not w.get("summary_run"):
            problems.append(f"{c['folder']}: W&B: {w}")

    def count(key: str) -> dict:
        return {v: sum(r[key] == v for r in records) for v in dict.fromkeys(r[key] for r in records)}

    summary = {
        "stages": soak.n_stages,
        "reference_seconds": round(soak.ref_seconds, 1),
        "kills": len(records),
        "kills_by_target": count("target"),
        "kills_by_moment": count("landed"),
        "rounds": killed["rounds"] if killed else 0,
        "stage_trainings": (killed["trainings"] if killed else 0) + (concurrent["trainings"] if concurrent else 0),
        "stages_lost": (killed["lost"] if killed else 0) + (concurrent["lost"] if concurrent else 0),
        "metrics_identical": bool(comparisons)
        and all(not c["differing"] and not c["missing"] and c["results_equal"] for c in comparisons),
        "leftover_temp_folders": sum(len(c["leftovers"]) for c in comparisons),
        "leftover_results_tmp_files": sum(len(c["results_tmp_files"]) for c in comparisons),
        "wandb_core_stuck": stuck,
        "wandb": [dict(c["wandb"], folder=c["folder"]) for c in comparisons],
        "wandb_summary_missing": [c["folder"] for c in comparisons if not c["wandb"].get("summary_run")],
        "wall_seconds": round(time.monotonic() - start, 1),
        "ok": not problems,
        "problems": problems,
        "kill_log": records,
        "out": str(out),
    }
    (out / "fault_soak.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def format_summary(s: dict) -> str:
    def by(d):
        return ", ".join(f"{k} {v}" for k, v in d.items()) or "-"

    wandb, n = s["wandb"], len(s["wandb"])
    missing = f" (missing: {', '.join(s['wandb_summary_missing'])})" if s["wandb_summary_missing"] else ""
    rows = [
        ("stages in the sweep", s["stages"]),
        ("reference run", f"{s['reference_seconds']} s"),
        ("kills", s["kills"]),
        ("  by target", by(s["kills_by_target"])),
        ("  by moment", by(s["kills_by_moment"])),
        ("rounds (sequential)", s["rounds"]),
        ("stage trainings", s["stage_trainings"]),
        ("stages lost", s["stages_lost"]),
        ("metrics identical", "yes" if s["metrics_identical"] else "NO"),
        ("leftover temp folders", s["leftover_temp_folders"]),
        ("leftover results tmp files", s["leftover_results_tmp_files"]),
        (
            "W&B: a run for every stage",
            f"{sum(w.get('stages_with_complete_run') == s['stages'] for w in wandb)} of {n} finished folders",
        ),
        ("W&B: summary run", f"{sum(bool(w.get('summary_run')) for w in wandb)} of {n} finished folders{missing}"),
        ("wall time", f"{s['wall_seconds']} s"),
        ("result", "OK" if s["ok"] else f"FAILED ({len(s['problems'])} problems)"),
    ]
    lines = [f"{k:<28} {v}" for k, v in rows] + [f"  - {p}" for p in s["problems"][:20]]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="sequential kills (default 20)")
    parser.add_argument("--concurrent-kills", type=int, default=4, help="kills with two processes side by side")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--out", type=Path, help="output folder (default: a new temporary folder)")
    parser.add_argument(
        "--strict-wandb",
        action="store_true",
        help="fail also when a finished folder lacks a complete W&B run per stage or the summary run",
    )
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="fault_soak-"))
    summary = soak_run(
        out.resolve(),
        kills=args.kills,
        seed=args.seed,
        concurrent_kills=args.concurrent_kills,
        strict_wandb=args.strict_wandb,
    )
    print(format_summary(summary))
    print(f"details: {out / 'fault_soak.json'}")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
