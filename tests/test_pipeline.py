"""The input pipeline: what each dataset of pipeline.py yields, and how it is set to run."""

import numpy as np
import pytest

from mnistcls.runtime import import_tensorflow

import_tensorflow()
from mnistcls import pipeline  # noqa: E402  (after the quiet TensorFlow import)

RNG = np.random.default_rng(0)
X = RNG.integers(0, 256, (12, 28, 28), dtype=np.uint8)
Y = RNG.integers(0, 10, 12, dtype=np.uint8)


@pytest.mark.parametrize("dataset", [
    pipeline.training_batches(X, Y, 4, 0, 0, 2, 10, True),
    pipeline.batches(X, Y, 5, 10, False),
    pipeline.image_batches(X, 5),
], ids=["training", "evaluation", "images"])
def test_no_pipeline_starts_tf_datas_autotuning_thread(dataset):
    # Deleting an iterator waits for that thread to wake, which made a training command end 13 s late.
    assert dataset.options().autotune.enabled is False


def test_image_batches_are_the_pixels_as_float32_with_a_channel():
    batches = list(pipeline.image_batches(X, 5))
    assert [len(b) for b in batches] == [5, 5, 2] and batches[0].dtype.name == "float32"
    np.testing.assert_array_equal(np.concatenate(batches)[..., 0], X)


def test_an_epochs_training_batches_are_the_training_images_in_a_seeded_order():
    first, second = ([(images.numpy(), labels.numpy()) for images, labels in
                      pipeline.training_batches(X, Y, 4, 7, 0, 1, 10, False)] for _ in range(2))
    images = np.concatenate([b[0] for b in first])[..., 0].astype(np.uint8)
    assert sorted(map(bytes, images)) == sorted(map(bytes, X))  # each image once
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first, second))  # the same order again
