"""Evaluation: a saved model and a dataset's test split in, scores and mistakes out.

A saved `model.keras` takes raw pixel values (0-255) of shape (H, W, 1) (its first layer
rescales them) and comes back compiled with the loss it was trained with. The
test split is fed in the batches training evaluated it in, and the loss is the
model's own `compute_loss` (the compiled loss plus its regularization terms), so
a saved model reproduces the test accuracy and loss recorded at the end of
training.
"""

import zipfile
from dataclasses import dataclass

import keras
import numpy as np

from mnistcls import metrics
from mnistcls.errors import MnistclsError, UsageError
from mnistcls.pipeline import image_batches
from mnistcls.spec import TEST_TIME_AUGMENTATIONS

TOP_CONFUSIONS = 5  # how many of the most frequent mistakes are named


@dataclass
class Evaluation:
    """One model's results on one dataset's test split."""

    dataset: str  # the dataset's name: mnist, fashion, or a custom folder's name
    class_names: list[str]
    accuracy: float
    loss: float
    labels: np.ndarray  # true class of each test image
    predicted: np.ndarray  # predicted class of each test image
    confidence: np.ndarray  # the probability the model gave its predicted class, per test image
    confusion: np.ndarray  # rows: true class, columns: predicted class

    @property
    def errors(self):
        return int(np.sum(self.labels != self.predicted))

    @property
    def mistakes(self):
        """Indices of the misclassified test images, the most confident mistakes first (then in test-set order)."""
        wrong = np.flatnonzero(self.labels != self.predicted)
        return wrong[np.argsort(-self.confidence[wrong], kind="stable")]

    def to_dict(self):
        """Everything as plain JSON values: scores, per-class report, confusion matrix, worst mix-ups."""
        scores = metrics.classification_report(self.confusion)
        return {
            "dataset": self.dataset,
            "test_accuracy": self.accuracy,
            "test_loss": self.loss,
            "errors": self.errors,
            "images": len(self.labels),
            "classes": [{"class": name, **row} for name, row in zip(self.class_names, scores["classes"])],
            "macro": scores["macro"],
            "weighted": scores["weighted"],
            "confusion": self.confusion.tolist(),
            "top_confusions": [{"true": true, "predicted": predicted, "count": n} for true, predicted, n in
                               metrics.top_confusions(self.confusion, self.class_names, TOP_CONFUSIONS)],
        }


def load_model(path):
    """A saved .keras model, compiled as it was trained.

    Raises:
        MnistclsError: the file is not a readable Keras model.
    """
    try:
        return keras.models.load_model(path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise MnistclsError(f"{path}: cannot be loaded as a Keras model ({err}); it is damaged or "
                            "was written by an incompatible Keras version") from None


def check_fits(model, image_shape, num_classes, dataset):
    """Raise UsageError unless `model` takes images of `image_shape` (H, W) and outputs `num_classes` scores."""
    takes, gives = tuple(model.input_shape[1:]), model.output_shape[-1]
    if takes != (*image_shape, 1):
        raise UsageError(f"the model takes {_size(takes)} images, but {dataset}'s are {_size(image_shape)}")
    if gives != num_classes:
        raise UsageError(f"the model tells {gives} classes apart, but {dataset} has {num_classes}")


def evaluate(model, dataset, tta):
    """Score `model` on `dataset`'s test split (a data.Dataset with x_test and y_test loaded).

    `tta` is the run's test-time augmentation (spec.TEST_TIME_AUGMENTATIONS).
    """
    check_fits(model, dataset.image_shape, dataset.num_classes, dataset.name)
    probabilities = model_probabilities(model, dataset.x_test, tta)
    labels = np.asarray(dataset.y_test, dtype=np.int64)
    # The targets in the form the model's compiled loss reads: class indices or one-hot rows.
    one_hot = not isinstance(model.loss, keras.losses.SparseCategoricalCrossentropy)
    targets = keras.ops.one_hot(labels, dataset.num_classes) if one_hot else labels
    # A loss on logits reads log-probabilities as logits: their softmax is the probabilities again.
    outputs = np.log(np.maximum(probabilities, 1e-30)) if _on_logits(model) else probabilities
    loss = float(keras.ops.convert_to_numpy(model.compute_loss(y=targets, y_pred=outputs)))
    predicted = probabilities.argmax(axis=1)
    return Evaluation(
        dataset=dataset.name, class_names=list(dataset.class_names), accuracy=float(np.mean(predicted == labels)),
        loss=loss, labels=labels, predicted=predicted, confidence=probabilities.max(axis=1),
        confusion=metrics.confusion_matrix(labels, predicted, dataset.num_classes))


def classify(model, images, top, tta):
    """The `top` most probable classes of each image, best first.

    Args:
        model: a saved model, as `load_model` returns it.
        images: 28x28 uint8 arrays, bright content on black (images.load_picture's model input).
        top: how many classes to give per image.
        tta: the run's test-time augmentation (spec.TEST_TIME_AUGMENTATIONS).

    Returns:
        One list per image of (class index, probability) pairs.
    """
    return rank(model_probabilities(model, np.stack(images), tta), top)


def model_probabilities(model, images, tta):
    """The model's class probabilities for (N, H, W) pixel arrays, under test-time augmentation `tta`.

    The one rule of evaluate, predict and the exported files (which output
    probabilities): each view's probabilities (a logits model's through a softmax),
    then their average. Under flip (and flip_shift) the prediction is the same for
    an image and its mirror, as a garment's class is.
    """
    return with_tta(lambda pixels: _probabilities(model, model.predict(image_batches(pixels), verbose=0)),
                    images, tta)


def with_tta(predict, images, tta):
    """`predict` (any runtime's, on (N, H, W) pixels) averaged over the views of `images` that `tta`
    (a name of spec.TEST_TIME_AUGMENTATIONS) stands for."""
    views = TEST_TIME_AUGMENTATIONS[tta]
    outputs = 0
    for rows, columns in views.shifts:
        view = shifted(images, rows, columns)
        outputs = outputs + predict(view)
        if views.mirrored:
            outputs = outputs + predict(np.ascontiguousarray(view[:, :, ::-1]))
    return outputs / (len(views.shifts) * (2 if views.mirrored else 1))


def shifted(images, rows, columns):
    """(N, H, W) `images` moved `rows` pixels down and `columns` right; the edge they uncover is black."""
    if rows == columns == 0:
        return images
    height, width = images.shape[1:3]
    moved = np.zeros_like(images)
    moved[:, max(rows, 0):height + min(rows, 0), max(columns, 0):width + min(columns, 0)] = \
        images[:, max(-rows, 0):height + min(-rows, 0), max(-columns, 0):width + min(-columns, 0)]
    return moved


def rank(probabilities, top):
    """The `top` (class index, probability) pairs of each row of `probabilities`, best first."""
    best = np.argsort(-probabilities, axis=1, kind="stable")[:, :top]
    return [[(int(c), float(row[c])) for c in classes] for row, classes in zip(probabilities, best)]


def _probabilities(model, outputs):
    """The model's outputs as probabilities: a model trained on logits (from_logits: true) needs a softmax."""
    if _on_logits(model):
        return keras.ops.convert_to_numpy(keras.ops.softmax(outputs, axis=-1))
    return outputs


def _on_logits(model):
    return bool(model.loss.get_config().get("from_logits"))


def _size(shape):
    """(28, 28) or (28, 28, 1) as '28x28'."""
    return "x".join(str(side) for side in shape[:2])
