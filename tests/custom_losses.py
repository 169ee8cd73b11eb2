"""Custom losses for tests: one that fails on demand, one that takes its time."""

import os
import time
from pathlib import Path

import torch.nn.functional as F


class Boom:
    """Raises while W2S_TEST_BOOM is set: a stage that fails (tests/test_failures.py)."""

    def __call__(self, logits, soft_labels, step_frac):
        if os.environ.get("W2S_TEST_BOOM"):
            raise RuntimeError("boom: the loss diverged")
        return F.cross_entropy(logits.float(), soft_labels)


class Slow:
    """Cross-entropy that takes at least 50 ms a call: transfer stages last seconds on any CPU, so a
    test can stop one in the middle (tests/slurm/test_slurm.py).

    With W2S_TEST_MEET=DIR and W2S_TEST_MEET_COUNT=N, each process's first call waits (five minutes
    at most) until N processes have made theirs: every worker of a sweep then trains a stage, however
    late a busy machine starts one of them. With W2S_TEST_HOLD=DIR, a call waits while DIR/hold
    exists, and says so in DIR/held-PID: a test can stop a process in the middle of a stage that
    cannot finish first."""

    def __call__(self, logits, soft_labels, step_frac):
        meet = os.environ.get("W2S_TEST_MEET")
        if meet:
            wait_for_the_others(Path(meet), int(os.environ["W2S_TEST_MEET_COUNT"]))
        hold = os.environ.get("W2S_TEST_HOLD")
        if hold:
            wait_while_held(Path(hold))
        time.sleep(0.05)
        return F.cross_entropy(logits.float(), soft_labels)


def wait_for_the_others(meet: Path, count: int, timeout: float = 300) -> None:
    arrived = meet / str(os.getpid())
    if arrived.exists():
        return
    meet.mkdir(parents=True, exist_ok=True)
    arrived.touch()
    deadline = time.monotonic() + timeout
    while len(list(meet.iterdir())) < count and time.monotonic() < deadline:
        time.sleep(0.1)


def wait_while_held(hold: Path) -> None:
    if (hold / "hold").exists():
        (hold / f"held-{os.getpid()}").touch()
        while (hold / "hold").exists():
            time.sleep(0.05)
