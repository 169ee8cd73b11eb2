"""The training loop's own behaviour: what it reads back from the device while it trains."""

import numpy as np
import pytest
import torch

from w2s.batches import Activations
from w2s.losses import Xent
from w2s.models import ProbeHead
from w2s.plan import TrainSettings
from w2s.train import classification, train


def test_no_host_device_read_per_micro_batch(monkeypatch):
    """8 optimizer steps of 4 micro-batches each (32 micro-batches), logged every 4 steps: the loss
    and the training accuracy are summed on the device and read once per log window (2 windows, 2
    reads each), so a GPU is not synchronised per micro-batch. Before, each micro-batch read both."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    data = Activations([str(i) for i in range(64)], x, np.eye(2, dtype=np.float32)[y])
    settings = TrainSettings(
        epochs=2, lr=1e-2, batch_size=16, minibatch_size=4, eval_batch_size=64, optimizer="adam", weight_decay=0.0,
        lr_schedule="constant", warmup_frac=0.0, max_grad_norm=None, mixed_precision="no",
    )  # fmt: skip
    reads = {"item": 0, "cpu": 0, "tolist": 0}
    for name in reads:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            reads[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    logged = []
    train(ProbeHead(8, 2), data, classification(Xent()), settings, seed=0, log=logged.append, log_every=4, echo=print)
    assert [row["step"] for row in logged] == [4, 8]
    assert reads == {"item": 4, "cpu": 0, "tolist": 0}
    # what is read is the window's mean: the examples' loss and accuracy, 64 examples per window
    assert all(row["examples"] == 64 * (i + 1) for i, row in enumerate(logged))
    assert logged[-1]["train_accuracy"] == pytest.approx(round(logged[-1]["train_accuracy"] * 64) / 64)
    assert logged[-1]["loss"] < logged[0]["loss"] < np.log(2)
