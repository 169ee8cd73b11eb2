"""What `auto` means for a run folder: decided once, by the first process that trains in it.

`train.mixed_precision`, `train.compile` and `train.attention: auto` are decided by the hardware
(w2s/training/precision.py, compiling.py, attention.py), and what they resolve to enters every
stage key: a stage trained in bf16 is not reused as fp32. The processes of one sweep need not share hardware: `w2s
submit` plans on a login node without a GPU, its workers train on GPU nodes, perhaps of two kinds.
Were each to decide for itself, the workers would train under keys the submission never listed,
nodes of two kinds would train two copies of the sweep, and the login node would find none of it.

So the decision belongs to the run folder. The first process that trains in it (`w2s run`, a
worker of `--workers` or of `w2s submit`) decides on its own hardware and records each decision in
<run>/environment/ (`mixed_precision.json`, `compile-<precision>.json`, `attention-<precision>.json`:
the value, why, the host and when), first writer wins (a hard link, atomic on shared filesystems too). Every later command on
the folder, on any machine, plans with the recorded values: `w2s run` finds the workers' stages,
`w2s status` reads their keys, and a worker on other hardware trains in the recorded precision, or,
where its hardware cannot compute it (fp16 without a GPU), refuses in one line. Commands that only
read (`--dry-run`, `validate`, `submit`) decide for themselves without recording while nothing is
recorded yet, and say so. An explicit setting (`mixed_precision: bf16`) is not decided: it is the
same everywhere. To decide again, remove the folder's environment/ (its stages stay, under their keys).
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from w2s import __version__
from w2s.errors import SpecError
from w2s.experiment.keys import KEY_VERSION
from w2s.training.attention import auto_attention, probe_length
from w2s.training.compiling import auto_compile
from w2s.training.precision import auto_precision, device_name

FOLDER = "environment"


@dataclass(frozen=True)
class Environment:
    """How stages run: the resolved precision, compile setting and attention kernel (what enters stage
    keys, so that `w2s.experiment.plan.plan` is a pure function of the spec, the data and this), and
    notes on how `auto` was decided."""

    mixed_precision: str  # no | bf16 | fp16
    compile: bool  # torch.compile for stages that train
    attention: str = "sdpa"  # sdpa | math: explicit, or `auto` resolved (w2s/training/attention.py)
    notes: tuple[str, ...] = field(default=(), compare=False)  # one line per `auto` decision, for the user
    final: bool = field(default=True, compare=False)  # False: decided here unrecorded; the first trainer decides


def resolve(spec, root: Path | None = None, record: bool = False) -> Environment:
    """The environment of `spec`'s stages: explicit settings as they are; `auto` as the run folder
    `root` recorded it, else decided here (and recorded when `record`, i.e. this process is about to
    train in the folder). `root=None`: as this machine decides, nothing read or recorded."""
    t = spec.train
    precision, compile_, notes, final = t.mixed_precision, t.compile, [], True
    if t.mixed_precision == "auto":
        decision, final = _decide(root, "mixed_precision", record, auto_precision)
        precision, note = decision["value"], _note(decision)
        notes.append(f"precision: {precision} ({note})")
    if t.compile == "auto":
        decision, known = _decide(root, f"compile-{precision}", record, lambda: auto_compile(precision))
        compile_, final = bool(decision["value"]), final and known
        notes.append(f"compile: {'on' if compile_ else 'off'} ({_note(decision)})")
    attention = "sdpa" if t.attention == "auto" else t.attention  # with dropout, `auto` is PyTorch's choice
    if t.attention == "auto" and not t.dropout:
        length = probe_length(max(d.max_ctx for d in spec.datasets))
        decide = lambda: _trained_before_auto_attention(root) or auto_attention(precision, length)  # noqa: E731
        decision, known = _decide(root, f"attention-{precision}", record, decide)
        attention, final = decision["value"], final and known
        notes.append(f"attention: {attention} without dropout ({_note(decision)})")
    return Environment(precision, bool(compile_), attention, tuple(notes), final)


def _trained_before_auto_attention(root: Path | None) -> tuple[str, str] | None:
    """A folder with stages and no attention decision trained them before `train.attention: auto`
    existed, with PyTorch's kernel choice: it keeps that (`sdpa`), so its stages stay cached."""
    stages = root / "stages" if root is not None else None
    if stages is None or not stages.is_dir() or next(stages.iterdir(), None) is None:
        return None
    return "sdpa", "its stages trained before train.attention: auto existed; set attention: math to change it"


def provenance() -> dict:
    """Where a stage ran, for its metrics.json and every table the report makes of it; and how it
    was launched: its processes and accelerate's distributed type (NO, MULTI_CPU, MULTI_GPU, FSDP,
    DEEPSPEED), which keys leave out (one process and several train the same stage)."""
    from accelerate.state import AcceleratorState

    from w2s.experiment.checks import world_size

    distributed = AcceleratorState._shared_state.get("distributed_type")  # set by the stage's accelerator
    return {
        "machine": device_name(),
        "w2s_version": __version__,
        "key_version": KEY_VERSION,
        "processes": world_size(),
        "distributed": distributed.value if distributed is not None else "NO",
    }


def check_can_train(env: Environment, root: Path) -> None:
    """A process about to train in a folder whose precision was decided elsewhere: can it compute it?"""
    if env.mixed_precision != "fp16":
        return
    import torch

    if not torch.cuda.is_available():
        raise SpecError(
            f"{root / FOLDER / 'mixed_precision.json'}: this run folder trains in fp16 (decided where "
            "it first trained), which needs a CUDA device and this machine has none; train it there, "
            "or set train.mixed_precision to train stages of another precision here"
        )


def describe(root: Path) -> list[str]:
    """What the folder recorded (for `w2s status`), a line per decision."""
    lines = []
    for path in sorted((root / FOLDER).glob("*.json")):
        decision = _read(path)
        if decision is not None and decision is not DAMAGED:
            lines.append(f"{path.stem}: {decision['value']} ({_note(decision)})")
    return lines


def _decide(root: Path | None, name: str, record: bool, here) -> tuple[dict, bool]:
    """(decision, recorded?) for one setting: the folder's record, else this machine's answer."""
    path = root / FOLDER / f"{name}.json" if root is not None else None
    recorded = _read(path) if path is not None else None
    if recorded is not None and recorded is not DAMAGED:
        return recorded, True
    value, why = here()
    decision = {"value": value, "why": why, "host": socket.gethostname(), "time": time.time()}
    if not record or path is None:
        return {**decision, "unrecorded": True}, False
    path.parent.mkdir(parents=True, exist_ok=True)
    own = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}")
    own.write_text(json.dumps(decision, indent=2) + "\n")
    try:
        if recorded is DAMAGED:
            os.replace(own, path)
        else:
            os.link(own, path)  # first writer wins; the others read its decision
    except FileExistsError:
        pass
    finally:
        own.unlink(missing_ok=True)
    winner = _read(path)
    return (decision if winner is None or winner is DAMAGED else winner), True


DAMAGED = {}  # what _read returns for a record that does not parse: decided again, and replaced


def _read(path: Path) -> dict | None:
    """A recorded decision, None if there is none, DAMAGED (after one line of warning) if it does not
    parse as one."""
    try:
        decision = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        decision = err
    if not isinstance(decision, dict) or "value" not in decision:
        print(f"w2s: warning: {path} is damaged (not a recorded decision); deciding again", flush=True)
        return DAMAGED
    return decision


def _note(decision: dict) -> str:
    if decision.get("unrecorded"):
        return f"{decision['why']}; decided on this machine: the first process to train in the folder records its own"
    here = decision.get("host") == socket.gethostname()
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(decision.get("time", 0)))
    where = "this machine" if here else f"host {decision.get('host')}"
    return f"{decision['why']}; recorded for this run folder by {where}, {when}"
