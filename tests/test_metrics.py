"""Metrics against a 3-class example worked out by hand.

y_true = [0, 0, 1, 1, 2, 2, 2]
y_pred = [0, 1, 1, 1, 2, 0, 2]

confusion (rows true, cols predicted):
    [[1, 1, 0],
     [0, 2, 0],
     [1, 0, 2]]
column sums (predicted): 2, 3, 2; row sums (support): 2, 2, 3; diagonal 1, 2, 2.

precision = 1/2, 2/3, 2/2      recall = 1/2, 2/2, 2/3
f1 = 2pr/(p+r) = 1/2, 4/5, 4/5
accuracy = 5/7
macro: precision (1/2 + 2/3 + 1)/3 = 13/18, recall 13/18, f1 (1/2 + 4/5 + 4/5)/3 = 7/10
weighted (by 2, 2, 3 of 7): precision (1 + 4/3 + 3)/7 = 16/21,
    recall (1 + 2 + 2)/7 = 5/7, f1 (1 + 8/5 + 12/5)/7 = 5/7
"""

import json

import numpy as np
import pytest

from mnistcls.metrics import classification_report, confusion_matrix, history_figures, top_confusions

Y_TRUE = [0, 0, 1, 1, 2, 2, 2]
Y_PRED = [0, 1, 1, 1, 2, 0, 2]
CONFUSION = [[1, 1, 0], [0, 2, 0], [1, 0, 2]]


def test_confusion_matrix_counts_by_hand():
    cm = confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert cm.tolist() == CONFUSION


def test_confusion_matrix_sums_match_the_labels():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 10, size=500)
    y_pred = rng.integers(0, 10, size=500)
    cm = confusion_matrix(y_true, y_pred, 10)
    assert cm.sum() == 500
    assert cm.sum(axis=1).tolist() == np.bincount(y_true, minlength=10).tolist()
    assert cm.sum(axis=0).tolist() == np.bincount(y_pred, minlength=10).tolist()
    assert np.trace(cm) == int((y_true == y_pred).sum())


def test_confusion_matrix_rejects_bad_labels():
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="predictions"):
        confusion_matrix([0, 1], [0], 3)


def test_classification_report_by_hand():
    report = classification_report(CONFUSION)
    expected_classes = [
        (1 / 2, 1 / 2, 1 / 2, 2),
        (2 / 3, 1.0, 4 / 5, 2),
        (1.0, 2 / 3, 4 / 5, 3),
    ]
    assert len(report["classes"]) == 3
    for row, (p, r, f, s) in zip(report["classes"], expected_classes):
        assert row == {"precision": pytest.approx(p), "recall": pytest.approx(r),
                       "f1": pytest.approx(f), "support": s}
    assert report["macro"] == {"precision": pytest.approx(13 / 18), "recall": pytest.approx(13 / 18),
                               "f1": pytest.approx(7 / 10), "support": 7}
    assert report["weighted"] == {"precision": pytest.approx(16 / 21), "recall": pytest.approx(5 / 7),
                                  "f1": pytest.approx(5 / 7), "support": 7}
    assert report["accuracy"] == pytest.approx(5 / 7)


def test_classification_report_is_plain_json():
    report = classification_report(CONFUSION)
    assert json.loads(json.dumps(report)) == report
    assert type(report["accuracy"]) is float
    assert type(report["classes"][0]["precision"]) is float
    assert type(report["classes"][0]["support"]) is int


def test_classification_report_zero_divisions_give_zero():
    # Class 1 is never predicted and class 2 never occurs.
    report = classification_report([[3, 0, 1], [2, 0, 0], [0, 0, 0]])
    never_predicted, absent = report["classes"][1], report["classes"][2]
    assert never_predicted == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert absent == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert report["accuracy"] == pytest.approx(3 / 6)
    assert classification_report(np.zeros((2, 2)))["accuracy"] == 0.0


def test_top_confusions_largest_first_and_ties_in_label_order():
    cm = [[9, 4, 0],
          [1, 8, 7],
          [4, 0, 5]]
    names = ["a", "b", "c"]
    assert top_confusions(cm, names, k=3) == [("b", "c", 7), ("a", "b", 4), ("c", "a", 4)]
    # Zero cells are never reported, however large k is.
    assert top_confusions(cm, names, k=10) == [("b", "c", 7), ("a", "b", 4), ("c", "a", 4), ("b", "a", 1)]
    assert top_confusions(CONFUSION, names) == [("a", "b", 1), ("c", "a", 1)]
    assert top_confusions(np.eye(3, dtype=int) * 5, names) == []


def test_history_figures_take_the_first_best_epoch_and_pass_over_numbers_that_are_not():
    history = [
        {"epoch": 1, "val_accuracy": 0.80, "val_loss": 0.60, "seconds": 3.0},
        {"epoch": 2, "val_accuracy": 0.90, "val_loss": 0.40, "seconds": 1.0},
        {"epoch": 3, "val_accuracy": 0.90, "val_loss": 0.35, "seconds": 2.0},  # equal: epoch 2 stays the best
        {"epoch": 4, "val_accuracy": None, "val_loss": None, "seconds": 9.0},  # NaN, as run records store it
        {"epoch": 5, "val_accuracy": float("nan"), "val_loss": float("nan"), "seconds": 8.0},
    ]
    assert history_figures(history) == {
        "epochs_run": 5, "best_val_accuracy": 0.90, "best_epoch": 2, "best_val_loss": 0.35, "seconds_per_epoch": 3.0}
    assert history_figures([]) == {"epochs_run": 0}
    unvalidated = history_figures([{"epoch": 1, "loss": 0.5, "seconds": 4.0}])
    assert unvalidated == {"epochs_run": 1, "seconds_per_epoch": 4.0}
