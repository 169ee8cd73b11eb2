"""Custom losses for tests: one that fails on demand, one that takes its time."""

import os
import time

import torch.nn.functional as F


class Boom:
    """Raises while W2S_TEST_BOOM is set: a stage that fails (tests/test_failures.py)."""

    def __call__(self, logits, soft_labels, step_frac):
        if os.environ.get("W2S_TEST_BOOM"):
            raise RuntimeError("boom: the loss diverged")
        return F.cross_entropy(logits.float(), soft_labels)


class Slow:
    """Cross-entropy that takes at least 50 ms a call: transfer stages last seconds on any CPU, so a
    test can stop one in the middle (tests/slurm/test_slurm.py)."""

    def __call__(self, logits, soft_labels, step_frac):
        time.sleep(0.05)
        return F.cross_entropy(logits.float(), soft_labels)
