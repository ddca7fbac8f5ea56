"""Importing TensorFlow quietly, and the hardware facts training settings depend on.

TensorFlow prints C++ log lines (CUDA probing, oneDNN notices) while it is imported,
before any Python setting can stop them. Unless the user asks for them, they are
sent to /dev/null for the length of the import.
"""

import os
import sys
from contextlib import contextmanager, nullcontext


def import_tensorflow(verbose=False):
    """Import TensorFlow (and Keras) once, silencing its start-up chatter unless `verbose`."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    with nullcontext() if verbose else _stderr_to_devnull():
        import keras  # noqa: F401  (imported here so its own start-up lines are silenced too)
        import tensorflow as tf
    if not verbose:
        tf.get_logger().setLevel("ERROR")
    return tf


@contextmanager
def _stderr_to_devnull():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)

