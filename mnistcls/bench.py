"""How fast this machine trains and evaluates a spec's model, and how near its matrix-multiply peak:
what `mnistcls bench` reports.

Speed does not depend on what the pixels show, so random images of the dataset's
shape stand in for the real ones: the benchmark needs no data, and it measures
exactly the model, pipeline, precision and steps per call `mnistcls train` uses
for that spec on that dataset (its image size, class count and steps per epoch).

Work is counted in floating-point operations: a forward pass is two per
multiply-accumulate of the model summary's; a training step about three times a
forward pass (the backward pass computes gradients for both the inputs and the
weights of each layer). The peak is measured here, in the same run: chained large
matrix products in the precision the model computes in, probed right after each timed
call into TensorFlow, so that a neighbour's load that comes and goes within seconds
slows the model and the peak it is compared with alike.
"""

import statistics
import time
from dataclasses import asdict, dataclass

import keras
import numpy as np

from mnistcls import data, pipeline, train
from mnistcls.build import summarize

TRAIN_FLOPS_PER_FORWARD = 3  # forward, then gradients of inputs and of weights, each about as costly
WARMUP_CALLS = 2  # calls into TensorFlow that trace and warm the training step before timing it
PEAK_SECONDS = 1.0  # how long the matrix-multiply probes run in all, for one model
PEAK_SIZE = 1024  # its matrices are PEAK_SIZE x PEAK_SIZE


@dataclass(frozen=True)
class Workload:
    """What a spec is trained on, as far as speed goes."""

    image_shape: tuple = (28, 28)
    num_classes: int = 10
    train_images: int = 60_000  # MNIST's and Fashion-MNIST's split sizes
    test_images: int = 10_000


def workload(dataset, data_dir=None, offline=None):
    """The Workload of a dataset: a built-in one's known sizes, or a folder's own (its files are read)."""
    if dataset in data.DATASETS:
        return Workload(num_classes=len(data.DATASETS[dataset].class_names))
    loaded = data.load(dataset, data_dir=data_dir, offline=offline)
    return Workload(loaded.image_shape, loaded.num_classes, len(loaded.x_train), len(loaded.x_test))


@dataclass
class Speed:
    config: str
    precision: str
    batch_size: int
    steps_per_execution: int  # as `train` runs it on this workload
    train_images_per_second: float
    eval_images_per_second: float
    flops_per_image: int | None  # one forward pass; None where a layer's MACs are unknown
    train_images: int
    test_images: int
    peak_gflops: float | None = None  # this machine's matmul rate in `precision`, when measured

    @property
    def seconds_per_epoch(self):
        """A training epoch over the workload's training images plus validation on its test images."""
        return self.train_images / self.train_images_per_second + self.test_images / self.eval_images_per_second

    @property
    def train_gflops(self):
        if self.flops_per_image is None:
            return None
        return TRAIN_FLOPS_PER_FORWARD * self.flops_per_image * self.train_images_per_second / 1e9

    @property
    def eval_gflops(self):
        return None if self.flops_per_image is None else self.flops_per_image * self.eval_images_per_second / 1e9

    def share_of_peak(self, gflops):
        return None if gflops is None or not self.peak_gflops else gflops / self.peak_gflops

    def to_dict(self):
        return {**asdict(self), "seconds_per_epoch": self.seconds_per_epoch, "train_gflops": self.train_gflops,
                "eval_gflops": self.eval_gflops, "train_share_of_peak": self.share_of_peak(self.train_gflops),
                "eval_share_of_peak": self.share_of_peak(self.eval_gflops)}


def measure(spec, *, strategy, precision, steps, workload=Workload(), peak_probe=None):
    """Time about `steps` training steps (whole calls into TensorFlow, after warming up) and an evaluation pass;
    with a PeakProbe of `precision`, the peak beside them is the mean of its probes between the calls."""
    batch = spec.train.batch_size
    epoch_steps = train.steps_per_epoch(spec.train, workload.train_images)
    per_call = train.steps_per_execution(spec.train, epoch_steps, strategy)
    timed_steps = -(-steps // per_call) * per_call  # whole calls, as most of an epoch's are
    warmup_steps = WARMUP_CALLS * per_call
    rng = np.random.default_rng(0)
    count = batch * (timed_steps + warmup_steps)
    eval_count = min(workload.test_images, 5_000)
    stand_in = data.Dataset(name="random", class_names=[str(i) for i in range(workload.num_classes)],
                       x_train=rng.integers(0, 256, (count, *workload.image_shape), dtype=np.uint8),
                       y_train=rng.integers(0, workload.num_classes, count, dtype=np.uint8),
                       x_test=rng.integers(0, 256, (eval_count, *workload.image_shape), dtype=np.uint8),
                       y_test=rng.integers(0, workload.num_classes, eval_count, dtype=np.uint8),
                       source="random", verified=None)
    one_hot = spec.train.loss == "categorical_crossentropy"
    model, _ = train.compiled_model(spec, stand_in, (0.5, 0.25), epoch_steps, strategy=strategy,
                                    precision=precision)

    def one_epoch(first, n):
        batches, _ = pipeline.training_batches(stand_in.x_train[first * batch:(first + n) * batch],
                                               stand_in.y_train[first * batch:(first + n) * batch], batch,
                                               spec.train.seed, workload.num_classes, one_hot)
        return batches

    model.fit(one_epoch(0, warmup_steps), shuffle=False, verbose=0)
    calls = _TimedCalls(peak_probe, PEAK_SECONDS * per_call / timed_steps)
    model.fit(one_epoch(warmup_steps, timed_steps), shuffle=False, verbose=0, callbacks=[calls])

    test = pipeline.batches(stand_in.x_test, stand_in.y_test, pipeline.EVAL_BATCH_SIZE, workload.num_classes,
                            one_hot)
    model.evaluate(test.take(1), verbose=0)  # trace before timing
    started = time.perf_counter()
    model.evaluate(test, verbose=0)
    eval_seconds = time.perf_counter() - started
    macs = summarize(model, spec.name).macs
    return Speed(spec.name, precision, batch, per_call, timed_steps * batch / sum(calls.seconds),
                 eval_count / eval_seconds, None if macs is None else 2 * macs, workload.train_images,
                 workload.test_images, peak_gflops=statistics.mean(calls.peaks) if calls.peaks else None)


class _TimedCalls(keras.callbacks.Callback):
    """The time of each call into TensorFlow of a `fit`, and after each, when given a PeakProbe, the
    matmul peak probed for `probe_seconds`."""

    def __init__(self, peak_probe, probe_seconds):
        super().__init__()
        self.peak_probe, self.probe_seconds = peak_probe, probe_seconds
        self.seconds, self.peaks = [], []

    def on_train_batch_begin(self, batch, logs=None):
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        # Keras calls this once the call's results are read back (a callback that has it is not run
        # asynchronously), so the call has ended.
        self.seconds.append(time.perf_counter() - self.started)
        if self.peak_probe is not None:
            self.peaks.append(self.peak_probe(self.probe_seconds))


class PeakProbe:
    """This machine's rate of large matrix products in the compute dtype of `precision`, in GFLOP/s.

    Chained products (each one's result feeds the next), so nothing is skipped or
    cached, in one traced function, traced and warmed up once; each call repeats it
    for about the seconds asked (at least once).
    """

    CHAIN = 8

    def __init__(self, precision):
        import tensorflow as tf

        dtype = {"mixed_bfloat16": tf.bfloat16, "mixed_float16": tf.float16}.get(precision, tf.float32)
        rng = np.random.default_rng(0)
        # Orthogonal-ish scaling keeps the chained values finite in every precision.
        self.start = tf.cast(rng.standard_normal((PEAK_SIZE, PEAK_SIZE)) / np.sqrt(PEAK_SIZE), dtype)
        factor = tf.cast(rng.standard_normal((PEAK_SIZE, PEAK_SIZE)) / np.sqrt(PEAK_SIZE), dtype)

        @tf.function
        def products(x):
            for _ in range(self.CHAIN):
                x = tf.matmul(x, factor)
            return x

        self.products = products
        products(self.start).numpy()  # trace and warm up

    def __call__(self, seconds=PEAK_SECONDS):
        runs, started = 0, time.perf_counter()
        while runs == 0 or time.perf_counter() - started < seconds:
            self.products(self.start).numpy()
            runs += 1
        return 2 * PEAK_SIZE ** 3 * self.CHAIN * runs / (time.perf_counter() - started) / 1e9
