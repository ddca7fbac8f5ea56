"""The input pipeline: what each dataset of pipeline.py yields, and how it is set to run."""

import numpy as np
import pytest

RNG = np.random.default_rng(0)
X = RNG.integers(0, 256, (12, 28, 28), dtype=np.uint8)
Y = RNG.integers(0, 10, 12, dtype=np.uint8)


@pytest.fixture(scope="module")
def pipeline():
    from mnistcls.runtime import import_tensorflow

    import_tensorflow()
    from mnistcls import pipeline

    return pipeline


@pytest.mark.parametrize("make", [
    lambda p: p.training_batches(X, Y, 4, 0, 10, True)[0],
    lambda p: p.batches(X, Y, 5, 10, False),
    lambda p: p.image_batches(X, 5),
], ids=["training", "evaluation", "images"])
def test_no_pipeline_starts_tf_datas_autotuning_thread(pipeline, make):
    # Deleting an iterator waits for that thread to wake, which made a training command end 13 s late.
    assert make(pipeline).options().autotune.enabled is False


def test_image_batches_are_the_pixels_as_float32_with_a_channel(pipeline):
    batches = list(pipeline.image_batches(X, 5))
    assert [len(b) for b in batches] == [5, 5, 2] and batches[0].dtype.name == "float32"
    np.testing.assert_array_equal(np.concatenate(batches)[..., 0], X)


def test_an_epochs_training_batches_are_every_image_once_in_an_order_the_seed_and_epoch_fix(pipeline):
    def order(seed, epoch):
        batches, epoch_variable = pipeline.training_batches(X, Y, 4, seed, 10, False)
        epoch_variable.assign(epoch)  # as callbacks.EpochOfTheData does when an epoch begins
        images = [images.numpy() for images, _ in batches]
        assert len(images) == batches.cardinality() == 3
        return np.concatenate(images)[..., 0].astype(np.uint8)

    first = order(7, 0)
    assert sorted(map(bytes, first)) == sorted(map(bytes, X))  # each image once
    assert not np.array_equal(first, X)  # shuffled
    np.testing.assert_array_equal(order(7, 0), first)  # the same seed and epoch, the same order
    assert not np.array_equal(order(8, 0), first)
    assert not np.array_equal(order(7, 1), first)  # the next epoch: another order


def test_the_epoch_is_read_each_time_the_batches_are_iterated(pipeline):
    batches, epoch = pipeline.training_batches(X, Y, 4, 0, 10, False)
    orders = []
    for value in (0, 1, 0):
        epoch.assign(value)
        orders.append(np.concatenate([images.numpy() for images, _ in batches]))
    np.testing.assert_array_equal(orders[0], orders[2])
    assert not np.array_equal(orders[0], orders[1])
