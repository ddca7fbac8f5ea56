"""How fast this machine trains and evaluates a spec's model: what `mnistcls bench` reports.

Speed does not depend on what the pixels show, so random images of the dataset's
shape stand in for the real ones: the benchmark needs no data, and it measures
exactly the pipeline, precision and execution settings `mnistcls train` uses.
"""

import time
from dataclasses import asdict, dataclass

import numpy as np

from mnistcls import pipeline, train
from mnistcls.data import Dataset

TRAIN_IMAGES, TEST_IMAGES = 60_000, 10_000  # MNIST's and Fashion-MNIST's split sizes


@dataclass
class Speed:
    config: str
    precision: str
    batch_size: int
    train_images_per_second: float
    eval_images_per_second: float

    @property
    def seconds_per_epoch(self):
        """A training epoch over 60,000 images plus validation on 10,000."""
        return TRAIN_IMAGES / self.train_images_per_second + TEST_IMAGES / self.eval_images_per_second

    def to_dict(self):
        return {**asdict(self), "seconds_per_epoch": self.seconds_per_epoch}


WARMUP_STEPS = 16  # enough to build and trace the training step before timing it


def measure(spec, *, strategy, precision, steps):
    """Time `steps` training steps (after WARMUP_STEPS) and an evaluation pass."""
    batch = spec.train.batch_size
    rng = np.random.default_rng(0)
    count = batch * (steps + WARMUP_STEPS)
    stand_in = Dataset(name="random", class_names=[str(i) for i in range(10)],
                       x_train=rng.integers(0, 256, (count, 28, 28), dtype=np.uint8),
                       y_train=rng.integers(0, 10, count, dtype=np.uint8),
                       x_test=rng.integers(0, 256, (TEST_IMAGES // 2, 28, 28), dtype=np.uint8),
                       y_test=rng.integers(0, 10, TEST_IMAGES // 2, dtype=np.uint8),
                       source="random", verified=None)
    one_hot = spec.train.loss == "categorical_crossentropy"
    model, _ = train.compiled_model(spec, stand_in, (0.5, 0.25), steps, strategy=strategy, precision=precision)

    def batches(n):
        return pipeline.training_batches(stand_in.x_train[:n * batch], stand_in.y_train[:n * batch], batch,
                                         spec.train.seed, 0, 1, 10, one_hot)

    model.fit(batches(WARMUP_STEPS), steps_per_epoch=WARMUP_STEPS, shuffle=False, verbose=0)
    started = time.perf_counter()
    model.fit(batches(steps), steps_per_epoch=steps, shuffle=False, verbose=0)
    train_seconds = time.perf_counter() - started

    test = pipeline.batches(stand_in.x_test, stand_in.y_test, pipeline.EVAL_BATCH_SIZE, 10, one_hot)
    model.evaluate(test.take(1), verbose=0)  # trace before timing
    started = time.perf_counter()
    model.evaluate(test, verbose=0)
    eval_seconds = time.perf_counter() - started
    return Speed(spec.name, precision, batch, steps * batch / train_seconds, len(stand_in.x_test) / eval_seconds)
