"""Every place mnistcls reaches into Keras' private code, and the Keras versions it was checked against.

Keras 3 has no public way to set the random state of its layers or to train
under MultiWorkerMirroredStrategy, so mnistcls uses private names for both.
Private names can change meaning in any release, so they are used only with the
Keras versions the test suite has run against (pyproject.toml pins the same
range); with any other version training stops with a clear error instead of
training wrong. To support a new version: run tests/test_train.py and
tests/test_distributed.py against it, then widen TESTED_KERAS and the pin.
"""

import re

from mnistcls.errors import MnistclsError

TESTED_KERAS = ((3, 15), (3, 16))  # from major.minor, up to but excluding major.minor


def check_keras_version(version=None):
    """Raise MnistclsError unless `version` (default: the installed Keras) is in TESTED_KERAS."""
    if version is None:
        import keras

        version = keras.__version__
    match = re.match(r"(\d+)\.(\d+)", version)
    low, high = TESTED_KERAS
    if not match or not low <= (int(match[1]), int(match[2])) < high:
        raise MnistclsError(
            f"Keras {version} is installed, but mnistcls' training was tested with Keras "
            f"{low[0]}.{low[1]} up to (not including) {high[0]}.{high[1]} only: it relies on Keras internals "
            f"that may have changed. Install a tested version: pip install 'keras>={low[0]}.{low[1]},"
            f"<{high[0]}.{high[1]}'")


def seed_generators(model):
    """The SeedGenerators of the model's layers (dropout, augmentation), in layer order."""
    check_keras_version()
    return [g for layer in model.layers for g in getattr(layer, "_seed_generators", [])]


def work_around_multi_worker_bugs(model, one_hot_classes):
    """Make Keras 3's `fit` work under MultiWorkerMirroredStrategy (keras-team/keras#20585).

    Two places in Keras' TensorFlow trainer fail there: it all-reduces a sample
    batch to build the optimizer and metrics (a batch of zeros of the right shapes
    builds them just the same), and it averages each step's scalar logs over
    axis 0, which a scalar does not have (averaging over replicas alone is what is
    meant). Both fixes touch only multi-worker training.
    """
    check_keras_version()
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as keras_trainer

    images = tf.zeros((1, *model.input_shape[1:]))
    labels = tf.zeros((1, one_hot_classes)) if one_hot_classes else tf.zeros((1,), tf.int32)
    keras_build = model._maybe_symbolic_build
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: keras_build(
        data_batch=data_batch if data_batch is not None else (images, labels))

    keras_reduce = keras_trainer.reduce_per_replica
    if getattr(keras_reduce, "mnistcls_fix", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction != "auto" or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return keras_reduce(values, strategy, reduction)
        return tf.nest.map_structure(
            lambda v: strategy.reduce("MEAN", v, axis=0 if v.shape.rank else None), values)

    reduce_per_replica.mnistcls_fix = True
    keras_trainer.reduce_per_replica = reduce_per_replica
