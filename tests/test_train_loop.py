"""The training loop's own behaviour: what it reads back from the device while it trains, and how
it seeds."""

import numpy as np
import pytest
import torch

from w2s.models.loading import ProbeHead
from w2s.training.batches import Activations
from w2s.training.loop import classification, train
from w2s.training.losses import Xent
from w2s.training.settings import TrainSettings


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


def test_seed_everything_leaves_the_generators_as_accelerates_set_seed(monkeypatch):
    """Python's, NumPy's and torch's generators end in the same states either way (without an
    accelerator, torch's CPU generator is seeded directly)."""
    import random

    import numpy as np
    from accelerate.utils import set_seed

    from w2s.training.launch import seed_everything

    def states():
        return random.getstate(), np.random.get_state()[1].tolist(), torch.get_rng_state().tolist()

    set_seed(7)
    theirs = states()
    random.random(), np.random.rand(), torch.rand(3)  # move them all on
    seed_everything(7)
    assert states() == theirs
    seed_everything(8)
    assert states() != theirs


@pytest.mark.parametrize("total, warmup", [(10, 0), (10, 3), (7, 7), (2, 0)])
def test_the_linear_schedule_is_the_trainers(total, warmup):
    """`lr_schedule: linear` gives the learning rates of transformers' get_linear_schedule_with_warmup
    (the Trainer's default) at every step, warm-up included."""
    from transformers import get_linear_schedule_with_warmup

    from w2s.training.loop import _lr_lambda

    def rates(make):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        schedule, out = make(optimizer), []
        for _ in range(total):
            out.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.step()
        return out

    ours = rates(lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda("linear", total, warmup)))
    theirs = rates(lambda opt: get_linear_schedule_with_warmup(opt, warmup, total))
    assert ours == theirs and len(set(ours)) > 1


def test_head_lr_gives_the_head_its_own_learning_rate_and_enters_the_key_only_when_set():
    """A linear probe (nothing but a head) with Adam: a constant schedule's first steps move each weight
    by about lr, so head_lr 10 moves the head 10x as far; at 1 the optimizer has one group, as before."""
    import dataclasses

    from tests.conftest import tiny_spec
    from w2s.experiment.keys import settings_identity
    from w2s.experiment.plan import plan_run
    from w2s.spec import validate_spec
    from w2s.training.loop import parameter_groups

    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 8)).astype(np.float32)
    labels = np.eye(2, dtype=np.float32)[(x[:, 0] > 0).astype(int)]
    settings = TrainSettings(
        epochs=1, lr=1e-3, batch_size=16, minibatch_size=16, eval_batch_size=64, optimizer="adam", weight_decay=0.0,
        lr_schedule="constant", warmup_frac=0.0, max_grad_norm=None, mixed_precision="no",
    )  # fmt: skip
    moved = {}
    for mult in (1.0, 10.0):
        head = ProbeHead(8, 2)
        groups = parameter_groups(head, dataclasses.replace(settings, head_lr=mult))
        assert isinstance(groups[0], dict) == (mult != 1)  # a plain parameter list: one group
        trained, _ = train(head, Activations([str(i) for i in range(32)], x, labels), classification(Xent()),
                           dataclasses.replace(settings, head_lr=mult), seed=0)  # fmt: skip
        moved[mult] = trained.head.weight.detach().abs().max().item()
    assert moved[1.0] == pytest.approx(2e-3, rel=0.05) and moved[10.0] == pytest.approx(2e-2, rel=0.05)  # 2 steps
    assert "head_lr" not in settings_identity(settings)
    assert settings_identity(dataclasses.replace(settings, head_lr=10.0))["head_lr"] == 10.0
    spec = tiny_spec("/tmp/unused", pairs=[["tiny-16", "tiny-24"]])
    plain = {s.name: s.key for s in plan_run(validate_spec(spec)).stages}
    spec["train"]["head_lr"] = 1
    assert {s.name: s.key for s in plan_run(validate_spec(spec)).stages} == plain
