"""Importing TensorFlow quietly, and the hardware facts training settings depend on.

TensorFlow prints C++ log lines (CUDA probing, oneDNN notices) while it is imported,
before any Python setting can stop them. Unless the user asks for them, they are
sent to /dev/null for the length of the import.
"""

import os
import sys
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

from mnistcls.errors import GPUUnavailableError


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



@dataclass
class Placement:
    """Where training runs: the tf.distribute strategy, and what to tell the user about it."""

    strategy: object
    description: str
    on_gpu: bool


def select_strategy(device="auto", gpus=None):
    """The Placement for `--device` and `--gpus`.

    auto uses every visible GPU (or the first `gpus`), else the CPU; gpu without a
    GPU is an error rather than a silent CPU run.
    """
    tf = import_tensorflow()
    found = tf.config.list_physical_devices("GPU")
    if device == "gpu" and not found:
        raise GPUUnavailableError(
            "--device gpu: TensorFlow sees no GPU on this machine. On a machine with an NVIDIA GPU, "
            "install the CUDA build (pip install 'mnistcls[gpu]'); here, use --device cpu or auto.")
    if gpus and len(found) < gpus:
        raise GPUUnavailableError(f"--gpus {gpus}: only {len(found)} GPU(s) visible to TensorFlow")
    if device == "cpu" or not found:
        tf.config.set_visible_devices([], "GPU")
        return Placement(tf.distribute.get_strategy(), f"CPU ({os.cpu_count()} cores)", on_gpu=False)
    names = [f"/gpu:{i}" for i in range(gpus or len(found))]
    if len(names) == 1:
        return Placement(tf.distribute.OneDeviceStrategy(names[0]), "1 GPU", on_gpu=True)
    return Placement(tf.distribute.MirroredStrategy(devices=names), f"{len(names)} GPUs (MirroredStrategy)",
                     on_gpu=True)


def choose_precision(requested, on_gpu):
    """The Keras dtype policy for `precision: auto|...`: what the hardware does well.

    On GPUs, float16 with loss scaling; on CPUs with bfloat16 instructions
    (AVX512-BF16, AMX), bfloat16, about twice as fast as float32 there with the same
    accuracy; otherwise float32.
    """
    if requested != "auto":
        return requested
    if on_gpu:
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_has_bfloat16() else "float32"


def cpu_has_bfloat16():
    try:
        flags = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def enable_determinism():
    """Same seed, same results: TensorFlow picks deterministic kernels (on CPU at little cost)."""
    import_tensorflow().config.experimental.enable_op_determinism()


def versions():
    import platform

    import keras
    import numpy

    from mnistcls import __version__

    tf = import_tensorflow()
    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": numpy.__version__, "mnistcls": __version__}
