"""Where seed A's CNN loses its share of the matrix-multiply peak: each operation of its training step, timed alone.

Run by hand on a quiet machine (about 20 seconds):

    .venv/bin/python tests/benchmarks/bench_seed_cnn_ops.py [--precision float32]

`mnistcls bench` says how near this machine's matmul peak the whole training step
runs. This script says why not nearer: it times, one at a time and at the recipe's
batch of 128, the convolutions of cnn_relu.yaml (forward, and the gradients for
their inputs and weights, each with its GFLOP/s and share of the peak measured in
the same run) and the element-wise work between them, which moves memory but
multiplies almost nothing (ReLU, max-pooling and their gradients). The first
convolution's gradient for its input is not needed (its input is the image), so
TensorFlow never computes it and it is not listed.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

from mnistcls.bench import PeakProbe  # noqa: E402

BATCH = 128
# cnn_relu.yaml's convolutions: (map size, input channels, kernel size, filters)
CONVOLUTIONS = {"conv 1 (3x3, 1 -> 32, 28x28)": (28, 1, 3, 32), "conv 2 (5x5, 32 -> 64, 14x14)": (14, 32, 5, 64)}
REPEATS = 50


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=["mixed_bfloat16", "float32"], default="mixed_bfloat16")
    args = parser.parse_args()
    dtype = tf.bfloat16 if args.precision == "mixed_bfloat16" else tf.float32
    peak = PeakProbe(args.precision)()
    print(f"matmul peak in {dtype.name}: {peak:.0f} GFLOP/s; batch {BATCH}; milliseconds per training step\n")
    total = 0.0
    for name, (size, channels, kernel, filters) in CONVOLUTIONS.items():
        x = tf.cast(tf.random.normal((BATCH, size, size, channels)), dtype)
        w = tf.cast(tf.random.normal((kernel, kernel, channels, filters)), dtype)
        dy = tf.cast(tf.random.normal((BATCH, size, size, filters)), dtype)
        d_pooled = tf.cast(tf.random.normal((BATCH, size // 2, size // 2, filters)), dtype)
        flops = 2 * BATCH * size * size * kernel * kernel * channels * filters
        passes = {"forward (with bias and ReLU)": (_forward, (x, w, tf.zeros(filters, dtype)), flops),
                  "gradient for the weights": (_weight_gradient, (x, w, dy), flops),
                  "gradient for the input": (_input_gradient, (x, w, dy), flops),
                  "ReLU gradient": (_relu_gradient, (dy, dy), None),
                  "max-pool and its gradient": (_max_pool_and_gradient, (dy, d_pooled), None)}
        if channels == 1:
            del passes["gradient for the input"]
        print(name)
        for what, (function, inputs, work) in passes.items():
            seconds = _seconds(function, inputs)
            total += seconds
            rate = f"{work / seconds / 1e9:6.0f} GFLOP/s ({work / seconds / 1e9 / peak:4.0%} of the peak)" if work \
                else "  (memory-bound: no multiplications)"
            print(f"   {what:<30} {1e3 * seconds:6.2f} ms {rate}")
    print(f"\nsum of the above: {1e3 * total:.1f} ms a step (the dense layers, loss and optimizer come on top)")


@tf.function(jit_compile=False)
def _forward(x, w, b):
    return tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, w, 1, "SAME"), b))


@tf.function(jit_compile=False)
def _weight_gradient(x, w, dy):
    return tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=tf.shape(w), out_backprop=dy,
                                           strides=[1, 1, 1, 1], padding="SAME")


@tf.function(jit_compile=False)
def _input_gradient(x, w, dy):
    return tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(x), filter=w, out_backprop=dy,
                                          strides=[1, 1, 1, 1], padding="SAME")


@tf.function(jit_compile=False)
def _relu_gradient(y, dy):
    return tf.raw_ops.ReluGrad(gradients=dy, features=y)


@tf.function(jit_compile=False)
def _max_pool_and_gradient(y, d_pooled):
    """Both, through a tape as training runs them: TensorFlow's raw MaxPoolGrad op alone takes another, far
    slower kernel than the oneDNN one a training step gets."""
    with tf.GradientTape() as tape:
        tape.watch(y)
        pooled = tf.nn.max_pool2d(y, 2, 2, "SAME")
    return tape.gradient(pooled, y, output_gradients=d_pooled)


def _seconds(function, inputs):
    """The mean time of REPEATS calls, after one that traces and warms up."""
    function(*inputs)
    started = time.perf_counter()
    for _ in range(REPEATS):
        result = function(*inputs)
    result.numpy()  # wait for the last one
    return (time.perf_counter() - started) / REPEATS


if __name__ == "__main__":
    main()
