"""A custom loss that raises while W2S_TEST_BOOM is set: a stage that fails, for the failure tests."""

import os

import torch.nn.functional as F


class Boom:
    def __call__(self, logits, soft_labels, step_frac):
        if os.environ.get("W2S_TEST_BOOM"):
            raise RuntimeError("boom: the loss diverged")
        return F.cross_entropy(logits.float(), soft_labels)
