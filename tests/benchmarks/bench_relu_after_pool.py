"""Whether seed A's CNN trains faster with each ReLU moved after its max-pool: the same function, a quarter of the values.

Run by hand on a quiet machine (about a minute):

    .venv/bin/python tests/benchmarks/bench_relu_after_pool.py [--rounds 20]

max(relu(a), relu(b)) = relu(max(a, b)), so a ReLU after the max-pool computes what
the seed's ReLU before it does, on maps a quarter the size; the ReLU's gradient on
the 28x28x32 map is one of the memory-bound operations that keep the seed CNN near
70% of the matmul peak (`bench_seed_cnn_ops.py`). This script builds cnn_relu.yaml's
model both ways (bfloat16, batch 128, 32 steps per call, Adam) and times their
training steps in alternation, each round 64 steps of each, and prints the minimum,
lower quartile and median milliseconds per step of each order.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

BATCH, STEPS = 128, 64


def seed_cnn(relu_after_pool):
    """cnn_relu.yaml's layers (without its L2 penalties, which cost next to nothing), in either order."""
    def stage(convolution):
        pool = keras.layers.MaxPooling2D(2, padding="same")
        relu = keras.layers.Activation("relu")
        return [convolution, *((pool, relu) if relu_after_pool else (relu, pool))]

    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        *stage(keras.layers.Conv2D(32, 3, padding="same")),
        *stage(keras.layers.Conv2D(64, 5, padding="same")),
        keras.layers.Flatten(), keras.layers.Dense(128), keras.layers.Activation("relu"),
        keras.layers.Dense(10), keras.layers.Activation("softmax", dtype="float32")])
    model.compile(optimizer=keras.optimizers.Adam(3e-4), loss="categorical_crossentropy", steps_per_execution=32)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="alternated rounds of 64 steps of each order")
    args = parser.parse_args()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (BATCH * 32, 28, 28, 1)).astype("float32")
    labels = keras.utils.to_categorical(rng.integers(0, 10, BATCH * 32), 10)
    batches = tf.data.Dataset.from_tensor_slices((images, labels)).batch(BATCH).cache().repeat()
    models = {"ReLU before max-pool (the seed's)": seed_cnn(False), "ReLU after max-pool": seed_cnn(True)}
    for model in models.values():  # trace and warm up
        model.fit(batches, steps_per_epoch=STEPS, epochs=1, verbose=0)
    seconds = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            started = time.perf_counter()
            model.fit(batches, steps_per_epoch=STEPS, epochs=1, verbose=0)
            seconds[name].append((time.perf_counter() - started) / STEPS)
    print(f"ms per training step, {args.rounds} alternated rounds of {STEPS} steps (bfloat16, batch {BATCH}):")
    for name, times in seconds.items():
        ms = 1e3 * np.array(times)
        print(f"  {name:<34} min {ms.min():6.2f}   lower quartile {np.percentile(ms, 25):6.2f}   "
              f"median {np.median(ms):6.2f}")


if __name__ == "__main__":
    main()
