"""Per-stage analysis metrics against answers known by construction."""

import numpy as np
import pytest

from w2s.scoring.metrics import expected_calibration_error


def binary(p_pos) -> np.ndarray:
    p = np.asarray(p_pos, dtype=float)
    return np.stack([1 - p, p], axis=1)


def test_ece_is_zero_when_confidence_matches_accuracy():
    # all p = 0.8 (one bin, confidence 0.8), 8 of 10 right: |0.8 - 0.8| = 0
    labels = [1] * 8 + [0] * 2
    assert expected_calibration_error(binary([0.8] * 10), labels) == pytest.approx(0.0)


def test_ece_of_overconfident_predictions():
    # all p = 0.9, half right: |0.5 - 0.9| = 0.4
    assert expected_calibration_error(binary([0.9] * 10), [1, 0] * 5) == pytest.approx(0.4)


def test_ece_uses_the_predicted_class_confidence_and_weights_bins_by_size():
    # p = 0.1 predicts negative with confidence 0.9: 4 examples, 2 right -> |0.5 - 0.9| = 0.4, weight 0.4
    # p = 0.7 predicts positive with confidence 0.7: 6 examples, all right -> |1.0 - 0.7| = 0.3, weight 0.6
    # ECE = 0.4 * 0.4 + 0.6 * 0.3 = 0.34
    p = np.array([0.1] * 4 + [0.7] * 6)
    labels = np.array([0, 0, 1, 1] + [1] * 6)
    assert expected_calibration_error(binary(p), labels) == pytest.approx(0.34)


def test_ece_confidence_one_lands_in_the_last_bin():
    # confidence 1.0 would be bin 10 of 0..9; it joins bin 9: all right -> 0
    assert expected_calibration_error(binary([1.0, 0.0]), [1, 0]) == pytest.approx(0.0)


def test_ece_of_many_classes_uses_the_top_class():
    # rows 0-1: top class 2 with 0.6, one right -> |0.5 - 0.6| = 0.1, weight 0.5
    # rows 2-3: top class 0 with 0.9, both right -> |1.0 - 0.9| = 0.1, weight 0.5
    probs = np.array([[0.1, 0.3, 0.6], [0.2, 0.2, 0.6], [0.9, 0.05, 0.05], [0.9, 0.1, 0.0]])
    assert expected_calibration_error(probs, [2, 1, 0, 0]) == pytest.approx(0.1)
