"""The input pipeline: training and evaluation batches gathered from the in-memory uint8 arrays.

Training batches follow a permutation computed from (seed, epoch), not from an
iterator's state, so a run resumed at epoch k sees exactly the batches an
uninterrupted run sees; each epoch is iterated on its own, so it ends where its
data does.
"""

import numpy as np
import tensorflow as tf

EVAL_BATCH_SIZE = 1000  # inference needs no small batches; larger ones are faster


def held_out(train_spec, train_count):
    return 0 if train_spec.validation == "test" else int(round(train_spec.validation * train_count))


def split(dataset, train_spec):
    """(train_x, train_y, val_x, val_y): the test set, or a seeded held-out fraction."""
    if train_spec.validation == "test":
        return dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test
    order = np.random.default_rng(train_spec.seed).permutation(len(dataset.x_train))
    held = held_out(train_spec, len(order))
    val, train = np.sort(order[:held]), np.sort(order[held:])
    return dataset.x_train[train], dataset.y_train[train], dataset.x_train[val], dataset.y_train[val]


def pixel_stats(images):
    """Mean and std of x/255 over the training images, for `standardize`."""
    x = np.asarray(images, dtype=np.float32) / 255.0
    return float(x.mean()), float(x.std())


def training_batches(x, y, batch_size, seed, num_classes, one_hot):
    """(batches, epoch): the shuffled global batches of one epoch, and the tf.Variable saying which epoch.

    Each time Keras iterates `batches` (once per epoch), it gets the epoch that
    `epoch` holds then (callbacks.EpochOfTheData sets it as each epoch begins): a
    permutation computed from (seed, epoch) alone, so a resumed run, and every worker
    of a cluster, sees the same global batches, and an epoch ends where its data does,
    however many steps each call into TensorFlow runs (the last call of an epoch may
    run fewer). Under a distribution strategy Keras splits each global batch into one
    slice per replica; sharding by data (not by input file, there is none) gives each
    worker its own slices of the same global batch.
    """
    images, labels = tf.constant(x), tf.constant(y)
    count = len(x)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="data_epoch")

    def epoch_batches(_):  # read when the epoch's iteration starts, not when the pipeline is made
        order = tf.random.experimental.stateless_shuffle(
            tf.range(count), seed=tf.stack([tf.cast(seed, tf.int64), epoch.read_value()]))
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder=True)

    def gather(index):  # one gather per batch, far cheaper than a map per image
        return _features(tf.gather(images, index), tf.gather(labels, index), num_classes, one_hot)

    batches = (tf.data.Dataset.range(1).flat_map(epoch_batches)
               .map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
               .apply(tf.data.experimental.assert_cardinality(count // batch_size))
               .prefetch(tf.data.AUTOTUNE).with_options(_OPTIONS))
    return batches, epoch


def batches(x, y, batch_size, num_classes, one_hot):
    """Unshuffled batches for validation and evaluation."""
    return (tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
            .map(lambda a, b: _features(a, b, num_classes, one_hot)).prefetch(tf.data.AUTOTUNE)
            .with_options(_OPTIONS))


def image_batches(x, batch_size=EVAL_BATCH_SIZE):
    """Batches of (N, H, W) pixel arrays alone, for `model.predict`."""
    return (tf.data.Dataset.from_tensor_slices(x).batch(batch_size)
            .map(_pixels).with_options(_OPTIONS))


_OPTIONS = tf.data.Options()
# Sharding by data (there are no input files) gives each worker of a cluster its slices of a global batch.
_OPTIONS.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
# tf.data's autotuning thread sleeps longer and longer between its rounds, and deleting an
# iterator waits for it to wake: fast_mnist's 30 s of training ended 13 s late, a predict
# of 10,000 images 0.3 s. Without it AUTOTUNE means min(16, CPU cores), enough for these pipelines.
_OPTIONS.autotune.enabled = False


def _features(images, labels, num_classes, one_hot):
    images = _pixels(images)
    labels = tf.one_hot(tf.cast(labels, tf.int32), num_classes) if one_hot else tf.cast(labels, tf.int32)
    return images, labels


def _pixels(images):
    """(batch, H, W) uint8 -> (batch, H, W, 1) float32 pixels: what training, evaluation and predict feed the model."""
    return tf.cast(tf.expand_dims(images, -1), tf.float32)
