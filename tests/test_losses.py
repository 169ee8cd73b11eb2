"""Losses against values computed by hand (see the arithmetic in each test)."""

import math

import pytest
import torch

from w2s.losses import Logconf, Product, Xent, build_loss
from w2s.spec import CustomLoss, LogconfLoss

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


def test_build_loss_from_spec_and_custom_path():
    assert Logconf is type(build_loss(LogconfLoss(aux_coef=0.75)))
    assert build_loss(LogconfLoss(aux_coef=0.75)).aux_coef == 0.75
    custom = build_loss(CustomLoss(path="w2s.losses:Logconf", aux_coef=0.25))
    assert isinstance(custom, Logconf) and custom.aux_coef == 0.25
