"""Importing TensorFlow quietly, and the hardware facts training settings depend on.

TensorFlow prints C++ log lines (CUDA probing, oneDNN notices) while it is imported,
before any Python setting can stop them. Unless the user asks for them, they are
sent to /dev/null for the length of the import.
"""

import json
import os
import sys
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

from mnistcls.errors import GPUUnavailableError, UsageError

DEVICES = ("auto", "cpu", "gpu")
DEFAULT_DEVICE = "auto"  # the GPUs when there are any, else the CPU


def import_tensorflow(verbose=False):
    """Import TensorFlow (and Keras) once, silencing its start-up chatter unless `verbose`."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    with nullcontext() if verbose else stderr_to_devnull():
        import keras  # noqa: F401  (imported here so its own start-up lines are silenced too)
        import tensorflow as tf
    if not verbose:
        tf.get_logger().setLevel("ERROR")
    return tf


@contextmanager
def stderr_to_devnull():
    """Silence what C++ libraries (TensorFlow, the TFLite converter, LiteRT) print on file descriptor 2."""
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
    task_index: int = 0  # this process' place in a cluster of workers
    num_workers: int = 1

    @property
    def is_chief(self):
        """Worker 0 (TensorFlow's convention) writes the run folder the user sees."""
        return self.task_index == 0


def select_strategy(device=DEFAULT_DEVICE, gpus=None):
    """The Placement for `--device`, `--gpus` and a TF_CONFIG cluster.

    auto uses every visible GPU (or the first `gpus`), else the CPU; gpu without a
    GPU is an error rather than a silent CPU run. With a TF_CONFIG naming several
    workers, every worker trains in lockstep under MultiWorkerMirroredStrategy.
    """
    cluster = cluster_from_env()
    if gpus and device == "cpu":
        raise UsageError("--gpus chooses GPUs to train on: it cannot go with --device cpu")
    if gpus and cluster:
        raise UsageError("--gpus does not apply to a cluster (TF_CONFIG): each worker trains on its own devices; "
                         "choose a worker's GPUs with CUDA_VISIBLE_DEVICES")
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
    if cluster:
        workers, index = cluster
        on_gpu = bool(found) and device != "cpu"
        return Placement(tf.distribute.MultiWorkerMirroredStrategy(),
                         f"worker {index} of {len(workers)} (MultiWorkerMirroredStrategy, "
                         f"{'GPU' if on_gpu else 'CPU'})", on_gpu, task_index=index, num_workers=len(workers))
    if device == "cpu" or not found:
        return Placement(tf.distribute.get_strategy(), f"CPU ({os.cpu_count()} cores)", on_gpu=False)
    names = [f"/gpu:{i}" for i in range(gpus or len(found))]
    if len(names) == 1:
        return Placement(tf.distribute.OneDeviceStrategy(names[0]), "1 GPU", on_gpu=True)
    return Placement(tf.distribute.MirroredStrategy(devices=names), f"{len(names)} GPUs (MirroredStrategy)",
                     on_gpu=True)


def cluster_from_env():
    """(worker addresses, this task's index) from TF_CONFIG, or None outside a cluster.

    TF_CONFIG is TensorFlow's standard cluster description, the same JSON on every
    machine but for the task index, e.g.
    {"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        config = json.loads(raw)
        workers = list(config["cluster"]["worker"])
        task = config["task"]
        index = int(task["index"])
        valid = task["type"] == "worker" and 0 <= index < len(workers) and set(config["cluster"]) == {"worker"}
    except (ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise UsageError('TF_CONFIG must describe a cluster of workers, e.g. {"cluster": {"worker": '
                         '["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}; '
                         "worker 0 is the chief")
    return (workers, index) if len(workers) > 1 else None


def chiefs_value(placement, value):
    """The chief's `value` (a number), on every worker: an all-reduce of it and zeros."""
    if placement.num_workers == 1:
        return value
    tf = import_tensorflow()

    def contribution():
        first = tf.distribute.get_replica_context().replica_id_in_sync_group == 0
        return tf.where(first, tf.constant(float(value), tf.float64), tf.constant(0.0, tf.float64))

    per_replica = placement.strategy.run(contribution)
    return float(placement.strategy.reduce("SUM", per_replica, axis=None))


def smallest_value(strategy, value):
    """The smallest of every replica's `value` (a whole number), on every worker of a cluster."""
    if strategy.num_replicas_in_sync == 1:
        return value
    tf = import_tensorflow()
    size = strategy.num_replicas_in_sync

    def contribution():  # each replica puts its value in its own slot; the sum holds them all
        slot = tf.distribute.get_replica_context().replica_id_in_sync_group
        return tf.one_hot(slot, size, dtype=tf.float64) * float(value)

    every = strategy.reduce("SUM", strategy.run(contribution), axis=None)
    return int(min(every.numpy()))


def choose_precision(requested, on_gpu):
    """The Keras dtype policy for `precision: auto|...`: what the hardware does well.

    On GPUs, float16 with loss scaling; on CPUs with bfloat16 instructions
    (AVX512-BF16, AMX), bfloat16, two to three times as fast as float32 there with
    the same accuracy; otherwise float32.
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
