"""Scores for a classifier's predictions (confusion matrix, per-class report, worst mix-ups),
the figures of a training history, and the spread of figures over runs repeated with other seeds.

Pure numpy (and SciPy's t distribution), so evaluation can be summarised without loading Keras. Everything
returned by `classification_report` and `top_confusions` is made of plain Python
ints, floats, strings, lists and dicts, ready for `json.dump`.
"""

import math
import warnings

import numpy as np


def confusion_matrix(y_true, y_pred, num_classes):
    """Count how often each true class was predicted as each class.

    Args:
        y_true: integer labels, shape (n,).
        y_pred: integer predictions, shape (n,).
        num_classes: number of classes; labels must lie in [0, num_classes).

    Returns:
        An int64 array of shape (num_classes, num_classes): row = true class,
        column = predicted class.
    """
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{y_true.size} labels but {y_pred.size} predictions")
    for name, labels in (("y_true", y_true), ("y_pred", y_pred)):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{name} has labels outside [0, {num_classes})")
    # Each (true, pred) pair becomes one flat cell index; bincount counts them all at once.
    cells = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return cells.reshape(num_classes, num_classes)


def _ratio(numerator, denominator):
    """Element-wise numerator / denominator, with 0.0 where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros_like(numerator)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def classification_report(confusion):
    """Precision, recall, F1 and support for every class, with their averages.

    A class never predicted has precision 0.0, a class absent from the data has
    recall 0.0 and support 0, and F1 is 0.0 when precision and recall are both 0.

    Args:
        confusion: square confusion matrix as returned by `confusion_matrix`.

    Returns:
        {"classes": [{"precision", "recall", "f1", "support"} per class, in label order],
         "macro": unweighted mean of the per-class scores (support = total),
         "weighted": mean weighted by support (support = total),
         "accuracy": fraction of all samples on the diagonal}
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {confusion.shape}")
    correct = np.diag(confusion)
    support = confusion.sum(axis=1)  # samples of each true class
    predicted = confusion.sum(axis=0)  # samples predicted as each class
    total = int(support.sum())

    precision = _ratio(correct, predicted)
    recall = _ratio(correct, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    weights = _ratio(support, total)

    def scores(p, r, f, s):
        return {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}

    return {
        "classes": [scores(*row) for row in zip(precision, recall, f1, support)],
        "macro": scores(precision.mean(), recall.mean(), f1.mean(), total),
        "weighted": scores(weights @ precision, weights @ recall, weights @ f1, total),
        "accuracy": float(_ratio(correct.sum(), total)),
    }


def top_confusions(confusion, class_names, k=5):
    """The k most frequent mistakes: off-diagonal cells with the largest counts.

    Ties keep label order (by true class, then predicted class), so the result
    is the same on every run.

    Args:
        confusion: square confusion matrix as returned by `confusion_matrix`.
        class_names: one name per class, in label order.
        k: at most this many mistakes are returned.

    Returns:
        A list of (true_name, predicted_name, count) tuples, largest count first;
        cells with a count of 0 are left out, so it may be shorter than k.
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    if len(class_names) != confusion.shape[0]:
        raise ValueError(f"{len(class_names)} class names for a {confusion.shape[0]}-class matrix")
    mistakes = confusion.copy()
    np.fill_diagonal(mistakes, 0)
    flat = mistakes.ravel()
    # A stable sort on the negated counts keeps row-major order among equal counts.
    order = np.argsort(-flat, kind="stable")[:k]
    n = confusion.shape[0]
    return [
        (class_names[i // n], class_names[i % n], int(flat[i]))
        for i in order
        if flat[i] > 0
    ]


def history_figures(history):
    """What a run's per-epoch history shows, the same for training's result and for `mnistcls runs`.

    Always epochs_run; where an epoch was validated, best_val_accuracy with its
    best_epoch (the first of equals) and best_val_loss; where an epoch ran,
    seconds_per_epoch (the median). A loss that was not a number is not a best.
    """
    figures = {"epochs_run": len(history)}
    validated = [row for row in history if _finite(row.get("val_accuracy"))]
    if validated:
        best = max(validated, key=lambda row: row["val_accuracy"])  # max keeps the first of equals
        figures.update(best_val_accuracy=best["val_accuracy"], best_epoch=best["epoch"],
                       best_val_loss=min((row["val_loss"] for row in validated if _finite(row.get("val_loss"))),
                                         default=float("nan")))
    if history:
        figures["seconds_per_epoch"] = float(np.median([row["seconds"] for row in history]))
    return figures


def _finite(value):
    return isinstance(value, (int, float)) and math.isfinite(value)


# --- figures over repeated runs (seeds) ---------------------------------------------------

SIGNIFICANCE = 0.05  # a difference with a smaller Welch p-value is called larger than the seeds' spread


def spread(values):
    """{"n", "mean", "std", "min", "max"} of the known values (None and NaN left out); std is the sample
    standard deviation (n - 1), None below two values."""
    known = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not known:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    return {"n": len(known), "mean": float(np.mean(known)),
            "std": float(np.std(known, ddof=1)) if len(known) > 1 else None,
            "min": min(known), "max": max(known)}


def welch_p(first, second):
    """The two-sided p-value of Welch's t-test that two sets of runs have the same mean (unequal variances
    allowed); None with fewer than two values in either. Equal sets with no spread give 1.0."""
    from scipy import stats

    a = [float(v) for v in first if v is not None and math.isfinite(v)]
    b = [float(v) for v in second if v is not None and math.isfinite(v)]
    if len(a) < 2 or len(b) < 2:
        return None
    if np.std(a) == np.std(b) == 0:
        return 1.0 if np.mean(a) == np.mean(b) else 0.0
    with warnings.catch_warnings():  # nearly equal values: SciPy warns of precision, the p-value still holds
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)
