"""Losses against values computed by hand (see the arithmetic in each test)."""

import math
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import torch

from w2s.errors import SpecError
from w2s.spec import CustomLoss, LogconfLoss, LossSpec, ProductLoss, WindowLoss, loss_label, validate_spec
from w2s.training.losses import KL, LOSSES, Entropy, Logconf, Product, Window, Xent, build_loss

LOG_S1 = math.log(1 / (1 + math.exp(-1)))  # log sigmoid(1)  = -0.31326
LOG_S_1 = math.log(1 / (1 + math.exp(1)))  # log sigmoid(-1) = -1.31326


def test_xent_uniform_logits_is_log2_whatever_the_soft_label():
    loss = Xent()(torch.zeros(1, 2), torch.tensor([[0.3, 0.7]]), 0.5)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)


def test_xent_confident_and_right():
    # -log(e^2 / (e^2 + 1)) = log(1 + e^-2)
    loss = Xent()(torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 0.0]]), 0.0)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2)), abs=1e-6)


LOGITS = torch.tensor([[0.0, 1.0], [0.0, -1.0]])  # p_pos = sigmoid(1), sigmoid(-1)
WEAK = torch.tensor([[0.2, 0.8], [0.6, 0.4]])  # weak prior of the positive class: 0.6


def test_logconf_before_warmup_is_plain_cross_entropy():
    assert Logconf(0.5, 0.2)(LOGITS, WEAK, 0.0).item() == pytest.approx(Xent()(LOGITS, WEAK, 0.0).item(), abs=1e-6)


def test_logconf_after_warmup_mixes_in_hardened_predictions():
    # threshold = 40% quantile of p_pos: only example 1 (p=0.73) is hardened to positive.
    # targets with a = 0.5: ex1 0.5*[0.2, 0.8] + 0.5*[0, 1] = [0.1, 0.9]; ex2 0.5*[0.6, 0.4] + 0.5*[1, 0] = [0.8, 0.2]
    ex1 = -(0.1 * LOG_S_1 + 0.9 * LOG_S1)
    ex2 = -(0.8 * LOG_S1 + 0.2 * LOG_S_1)
    loss = Logconf(aux_coef=0.5, warmup_frac=0.2)(LOGITS, WEAK, 0.5)
    assert loss.item() == pytest.approx((ex1 + ex2) / 2, abs=1e-5)
    assert loss.item() == pytest.approx(0.46330, abs=1e-4)


def test_logconf_coefficient_warms_up_linearly():
    loss = Logconf(aux_coef=0.5, warmup_frac=0.2)
    assert [loss.coef(f) for f in (0.0, 0.1, 0.2, 0.9)] == pytest.approx([0.0, 0.25, 0.5, 0.5])


def test_product_reweights_by_student_confidence():
    # target ∝ [0.2 * s(-1), 0.8 * s(1)] = [0.05379, 0.58488] -> [0.08422, 0.91578]
    p0 = 0.2 * math.exp(LOG_S_1)
    p1 = 0.8 * math.exp(LOG_S1)
    t0, t1 = p0 / (p0 + p1), p1 / (p0 + p1)
    loss = Product(alpha=1, beta=1, warmup_frac=0.1)(LOGITS[:1], WEAK[:1], 0.5)
    assert loss.item() == pytest.approx(-(t0 * LOG_S_1 + t1 * LOG_S1), abs=1e-5)
    assert loss.item() == pytest.approx(0.39747, abs=1e-4)


def _logconf_by_hand(a: float) -> float:
    """The batch above with mixing weight a: example 1 hardened to positive, example 2 to negative."""
    t1 = [(1 - a) * 0.2, (1 - a) * 0.8 + a]  # [p_neg, p_pos]
    t2 = [(1 - a) * 0.6 + a, (1 - a) * 0.4]
    return (-(t1[0] * LOG_S_1 + t1[1] * LOG_S1) - (t2[0] * LOG_S1 + t2[1] * LOG_S_1)) / 2


def test_logconf_reference_schedule_is_openais():
    """weak_to_strong/loss.py: coef = aux_coef * step_frac while step_frac <= warmup_frac, then aux_coef."""
    spec = LogconfLoss(schedule="reference")
    assert spec.warmup_frac == 0.1 and LogconfLoss(schedule="reference", warmup_frac=0.3).warmup_frac == 0.3
    loss = build_loss(spec)
    assert [loss.coef(f) for f in (0.0, 0.05, 0.1, 0.1001, 0.9)] == pytest.approx([0.0, 0.025, 0.05, 0.5, 0.5])
    for step_frac, a in ((0.05, 0.025), (0.1, 0.05), (0.5, 0.5)):
        assert loss(LOGITS, WEAK, step_frac).item() == pytest.approx(_logconf_by_hand(a), abs=1e-5)
    # the w2s schedule at the same moments: a linear ramp to 0.5 over 0.2 of training
    w2s = build_loss(LogconfLoss())
    for step_frac, a in ((0.05, 0.125), (0.1, 0.25), (0.5, 0.5)):
        assert w2s(LOGITS, WEAK, step_frac).item() == pytest.approx(_logconf_by_hand(a), abs=1e-5)


def test_product_reference_schedule_has_no_warmup():
    p0, p1 = 0.2 * math.exp(LOG_S_1), 0.8 * math.exp(LOG_S1)
    product = -(p0 * LOG_S_1 + p1 * LOG_S1) / (p0 + p1)
    plain = -(0.2 * LOG_S_1 + 0.8 * LOG_S1)
    reference, w2s = build_loss(ProductLoss(schedule="reference")), build_loss(ProductLoss())
    assert reference(LOGITS[:1], WEAK[:1], 0.0).item() == pytest.approx(product, abs=1e-5)  # from the first step
    assert w2s(LOGITS[:1], WEAK[:1], 0.0).item() == pytest.approx(plain, abs=1e-5)  # cross-entropy until 0.1
    assert w2s(LOGITS[:1], WEAK[:1], 0.1).item() == pytest.approx(product, abs=1e-5)


def test_reference_schedules_are_named_apart():
    spec = validate_spec(
        {
            "name": "x",
            "datasets": {"name": "synthetic"},
            "models": [{"name": "minilm-l1"}],
            "losses": [{"name": "logconf"}, {"name": "logconf", "schedule": "reference"}],
        }
    )
    assert [loss_label(loss) for loss in spec.losses] == ["logconf", "logconf-reference"]


def test_build_loss_from_spec_and_custom_path():
    assert Logconf is type(build_loss(LogconfLoss(aux_coef=0.75)))
    assert build_loss(LogconfLoss(aux_coef=0.75)).aux_coef == 0.75
    custom = build_loss(CustomLoss(path="w2s.training.losses:Logconf", aux_coef=0.25))
    assert isinstance(custom, Logconf) and custom.aux_coef == 0.25


def test_every_loss_spec_has_a_callable():
    """The registry is keyed by the spec's loss names: a new loss in the spec's union without a callable fails here."""
    union, *_ = typing.get_args(LossSpec)  # Annotated[Union[...], Field(discriminator="name")]
    spec_classes = set(typing.get_args(union)) - {CustomLoss}
    assert spec_classes and set(LOSSES) == {c.model_fields["name"].default for c in spec_classes}
    for spec_class in spec_classes:
        name = spec_class.model_fields["name"].default
        assert callable(LOSSES[name]) and isinstance(build_loss(spec_class()), LOSSES[name])


# window: p_pos = 0.5, s(1) = 0.731, s(3) = 0.953 -> distances from 0.5: 0, 0.231, 0.453
WIN_LOGITS = torch.tensor([[0.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
WIN_WEAK = torch.tensor([[0.2, 0.8], [0.6, 0.4], [0.1, 0.9]])  # weak confidences 0.3, 0.1, 0.4
# examples 1 and 2 are inside a radius of 0.3:
# ex1: uniform logits -> log 2 = 0.69315; ex2: -(0.6 log s(-1) + 0.4 log s(1)) = 0.78796 + 0.12530 = 0.91326
WIN_EXPECTED = (math.log(2) - (0.6 * LOG_S_1 + 0.4 * LOG_S1)) / 2  # 0.80320


def test_window_trains_only_where_the_student_is_unsure():
    loss = Window(radius=0.3)(WIN_LOGITS, WIN_WEAK, 0.5)
    assert loss.item() == pytest.approx(WIN_EXPECTED, abs=1e-5)
    assert loss.item() == pytest.approx(0.80320, abs=1e-4)


def test_window_midweak_radius_is_the_median_weak_confidence():
    # median of 0.3, 0.1, 0.4 is 0.3: the same window as above
    assert Window("midweak").window(WIN_WEAK).item() == pytest.approx(0.3)
    assert Window("midweak")(WIN_LOGITS, WIN_WEAK, 0.5).item() == pytest.approx(WIN_EXPECTED, abs=1e-5)


def test_window_with_nobody_inside_is_a_zero_loss_that_backpropagates():
    logits = WIN_LOGITS[1:].clone().requires_grad_()  # distances 0.231 and 0.453, both >= 0.2
    loss = Window(radius=0.2)(logits, WIN_WEAK[1:], 0.5)
    loss.backward()
    assert loss.item() == 0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_entropy_mixes_in_the_students_soft_predictions():
    # a = 0.5; both examples have p = (0.269, 0.731) up to order, entropy H = 0.35319 + 0.22901 = 0.58220
    # ex1 fit -(0.2 log s(-1) + 0.8 log s(1)) = 0.51326; ex2 fit -(0.6 log s(1) + 0.4 log s(-1)) = 0.71326
    # loss = mean over examples of 0.5 * fit + 0.5 * H = (0.54773 + 0.64773) / 2
    entropy = -(math.exp(LOG_S_1) * LOG_S_1 + math.exp(LOG_S1) * LOG_S1)
    fits = (-(0.2 * LOG_S_1 + 0.8 * LOG_S1), -(0.6 * LOG_S1 + 0.4 * LOG_S_1))
    loss = Entropy(aux_coef=0.5, warmup_frac=0.2)(LOGITS, WEAK, 0.5)
    assert loss.item() == pytest.approx(sum(0.5 * f + 0.5 * entropy for f in fits) / 2, abs=1e-5)
    assert loss.item() == pytest.approx(0.59773, abs=1e-4)
    # the value is cross-entropy against the mixed target (1 - a) * weak + a * student
    mixed = 0.5 * WEAK + 0.5 * torch.softmax(LOGITS, dim=-1)
    assert loss.item() == pytest.approx(Xent()(LOGITS, mixed, 0.0).item(), abs=1e-6)
    assert Entropy(0.5, 0.2)(LOGITS, WEAK, 0.0).item() == pytest.approx(Xent()(LOGITS, WEAK, 0.0).item(), abs=1e-6)


def test_entropy_gradient_pushes_the_student_towards_confidence():
    # a = 1: the loss is the entropy H(m) of sigmoid(m), m = z1 - z0 = 1; dH/dm = -m p (1 - p) = -0.19661
    logits = torch.tensor([[0.0, 1.0]], requires_grad=True)
    Entropy(aux_coef=1.0, warmup_frac=0.0)(logits, WEAK[:1], 1.0).backward()
    p = math.exp(LOG_S1)
    assert logits.grad.tolist()[0] == pytest.approx([p * (1 - p), -p * (1 - p)], abs=1e-5)


def test_kl_is_cross_entropy_minus_the_weak_entropy():
    # 0.2 log(0.2 / s(-1)) + 0.8 log(0.8 / s(1)) = -0.05923 + 0.07209 = 0.01286
    loss = KL()(LOGITS[:1], WEAK[:1], 0.5)
    assert loss.item() == pytest.approx(
        0.2 * math.log(0.2) - 0.2 * LOG_S_1 + 0.8 * math.log(0.8) - 0.8 * LOG_S1, abs=1e-5
    )
    assert loss.item() == pytest.approx(0.01286, abs=1e-4)


def test_kl_of_a_perfect_fit_is_zero_and_equals_xent_on_one_hot_labels():
    assert KL()(WEAK.log(), WEAK, 0.5).item() == pytest.approx(0.0, abs=1e-6)
    one_hot = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert KL()(LOGITS, one_hot, 0.5).item() == pytest.approx(Xent()(LOGITS, one_hot, 0.5).item(), abs=1e-6)


def spec_with(loss: dict) -> dict:
    return {
        "name": "x",
        "datasets": {"name": "synthetic"},
        "models": [{"name": "minilm-l1"}],
        "losses": [{"name": "xent"}, loss],
    }


@pytest.mark.parametrize(
    "loss",
    [
        {"name": "window", "radius": "midweak"},
        {"name": "window", "radius": 0.5},
        {"name": "entropy", "aux_coef": 0.25},
        {"name": "kl"},
    ],
)
def test_new_losses_validate_and_build(loss):
    built = build_loss(validate_spec(spec_with(loss)).losses[1])
    assert type(built).__name__.lower() == loss["name"]
    assert all(getattr(built, k) == v for k, v in loss.items() if k != "name")


@pytest.mark.parametrize(
    "loss, expected",
    [
        (
            {"name": "window", "radius": 0.7},
            "losses.1.radius: radius must be a number in (0, 0.5] or 'midweak', got 0.7",
        ),
        ({"name": "window", "radius": 0}, "losses.1.radius: radius must be"),
        ({"name": "window", "radius": "median"}, "losses.1.radius: radius must be"),
        ({"name": "entropy", "aux_coef": 2}, "losses.1.aux_coef: Input should be less than or equal to 1"),
        ({"name": "kl", "radius": 0.1}, "losses.1.radius: unknown key; valid keys here: name, label, probe"),
        (
            {"name": "window", "aux_coef": 0.1},
            "losses.1.aux_coef: unknown key; valid keys here: name, label, probe, radius",
        ),
    ],
)
def test_bad_new_loss_settings_are_one_line_errors(loss, expected):
    with pytest.raises(SpecError) as err:
        validate_spec(spec_with(loss))
    message = str(err.value)
    assert expected in message and "\n" not in message, message


def test_window_spec_default_radius():
    assert WindowLoss().radius == 0.15 and Window().radius == 0.15


# ---------------------------------------------------------------------------------------------
# more than two classes

LOGITS3 = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.4, 0.1, 0.5]]))
WEAK3 = torch.tensor([[0.1, 0.1, 0.8], [0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.1, 0.2, 0.7]])  # prior [0.25, 0.325, 0.425]


def test_logconf_with_many_classes_balances_the_students_top_class_by_the_weak_prior():
    # student mean per class [0.425, 0.3, 0.275]; scaled by prior / mean = [0.588, 1.083, 1.545]:
    # row 0 [0.294, 0.325, 0.309] -> class 1; row 1 [0.353, 0.325, 0.155] -> 0; row 2 -> 1; row 3 -> 2.
    # Plain argmax would say [0, 0, 1, 2]: the weak labels' prior moves row 0 off the over-predicted class 0.
    hardened = Logconf.hardened(LOGITS3, WEAK3)
    assert hardened.argmax(1).tolist() == [1, 0, 1, 2] and hardened.sum(1).tolist() == [1.0] * 4
    loss = Logconf(aux_coef=0.5, warmup_frac=0.0)(LOGITS3, WEAK3, 1.0)
    target = 0.5 * WEAK3 + 0.5 * hardened
    assert loss.item() == pytest.approx(-(target * LOGITS3).sum(1).mean().item(), abs=1e-6)


def test_logconf_with_two_classes_is_the_reference_quantile_rule():
    # 6 students, weak prior of the positive class 1/3: exactly the 2 highest p_pos are hardened to positive
    p_pos = torch.tensor([0.9, 0.2, 0.6, 0.4, 0.8, 0.1])
    logits = torch.stack([torch.zeros(6), torch.logit(p_pos)], 1)
    weak = torch.tensor([[0.0, 1.0]] * 2 + [[1.0, 0.0]] * 4)
    assert Logconf.hardened(logits, weak)[:, 1].tolist() == [1, 0, 0, 0, 1, 0]


@pytest.mark.parametrize("loss", [Xent(), Product(warmup_frac=0.0), Entropy(warmup_frac=0.0), KL()])
def test_soft_label_losses_take_any_number_of_classes(loss):
    value = loss(LOGITS3.clone().requires_grad_(), WEAK3, 0.5)
    value.backward()
    assert torch.isfinite(value)
    # a perfect, fully confident fit of one-hot labels costs (almost) nothing
    assert loss(torch.eye(3)[[2, 0, 1]] * 30, torch.eye(3)[[2, 0, 1]], 0.5).item() == pytest.approx(0, abs=1e-6)


def test_window_refuses_more_than_two_classes():
    with pytest.raises(ValueError, match="the window loss needs two classes, got 3"):
        Window()(LOGITS3, WEAK3, 0.5)


def test_a_custom_loss_in_the_working_directory_imports_under_the_console_script(tmp_path):
    """`w2s` (the console script) does not put the working directory on sys.path as `python -m w2s`
    does; a spec's `path: mypkg.losses:Loss` must find ./mypkg all the same."""
    from tests.conftest import tiny_spec, write_spec

    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "losses.py").write_text(
        "import torch.nn.functional as F\n\n\n"
        "class SmoothedXent:\n"
        "    def __init__(self, smoothing: float = 0.1):\n"
        "        self.smoothing = smoothing\n\n"
        "    def __call__(self, logits, soft_labels, step_frac):\n"
        "        return F.cross_entropy(logits.float(), soft_labels * (1 - self.smoothing) + self.smoothing / 2)\n"
    )
    spec = tiny_spec(tmp_path / "runs")
    spec["losses"] = [{"name": "custom", "path": "mypkg.losses:SmoothedXent", "smoothing": 0.2}]
    write_spec(tmp_path / "spec.yaml", spec)
    script = Path(sys.executable).parent / "w2s"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(script), "validate", "spec.yaml"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "spec.yaml: valid (5 stages), runnable here"
