"""Speed and memory of mnistcls on this machine, against the seeds' way of training.

Run by hand (not collected by the test suite), on a quiet machine, with MNIST where
mnistcls finds it (e.g. MNISTCLS_DATA_DIR=~/datasets, holding mnist/):

    .venv/bin/python tests/benchmarks/bench_training.py            # about 12 minutes on 2 cores
    .venv/bin/python tests/benchmarks/bench_training.py --best     # adds best_mnist and best_fashion (4-5x each)
    .venv/bin/python tests/benchmarks/bench_training.py --recipes-only --best --dataset fashion
    .venv/bin/python tests/benchmarks/bench_training.py --recipes-only --recipe fast_mnist --recipe best_mnist
    .venv/bin/python tests/benchmarks/bench_training.py --recipes-only --repeats 3   # medians of 3 alternations
    .venv/bin/python tests/benchmarks/bench_training.py --no-recipes --repeats 3     # sections 1, 3 and 4

Every figure is measured in this run, the baseline included, because machines
differ and this kind of machine is noisy: compare figures from one run only. Its
neighbours' load comes and goes within minutes (fast_fashion has taken 0.24x and 0.30x
of the seed recipe's time an hour apart), so with --repeats N each recipe's command
and the seed recipe's (and in section 1 the two whole processes) run in turn N times
and the ratio is of their medians. It prints:

1. seed A's relu CNN (cnn_relu.yaml) on Fashion-MNIST, mnistcls against the seeds'
   `model.fit` on float64 numpy arrays (same model, batch, learning rate and data):
   per-epoch training time, median over several epochs after a warm-up, with the
   validation accuracy both reach after the same number of epochs; and the whole
   process of 3 epochs each (Python, imports, data, training, the end);
2. time to accuracy of our recipes, per dataset: the wall time of the whole
   `mnistcls train --config ...` command (TensorFlow import and data loading
   included) and its test accuracy, as a ratio to the seed recipe's wall time
   (`mnistcls train --config cnn_relu.yaml`, its 10 epochs, on the same dataset);
3. peak resident memory while training the seed CNN; the time of `mnistcls --help`
   and of `mnistcls summary`;
4. images per second for training and for evaluation, and their share of this
   machine's matrix-multiply peak (`mnistcls bench`).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

TARGETS = {  # issues 6, 9, 21 and 22, on the 2-core development machine
    "speed-up per epoch": ("x", 2.0, "min"),
    "speed-up, whole process of 3 epochs": ("x", 2.8, "min"),
    "cnn_relu training, share of matmul peak": ("%", 75.0, "min"),
    "peak memory training cnn_relu": ("GB", 2.5, "max"),
    "mnistcls --help": ("s", 0.5, "max"),
}
# Our recipes: (dataset, minimum test accuracy in %, most wall time as a multiple of the seed recipe's).
RECIPES = {
    "fast_mnist": ("mnist", 99.0, 1 / 4),
    "fast_fashion": ("fashion", 91.0, 1 / 4),
    "best_mnist": ("mnist", 99.7, 5.0),
    "best_fashion": ("fashion", 94.5, 5.0),
}
for _recipe, (_, _accuracy, _ratio) in RECIPES.items():
    TARGETS[f"{_recipe} accuracy"] = ("%", _accuracy, "min")
    TARGETS[f"{_recipe} time / seed recipe's"] = ("x", _ratio, "max")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="measured epochs per side (after 1 warm-up)")
    parser.add_argument("--best", action="store_true",
                        help="also time best_mnist and best_fashion (each about 4-5x the seed recipe)")
    parser.add_argument("--dataset", choices=["mnist", "fashion"], action="append",
                        help="time the recipes of this dataset only (repeatable; default both)")
    parser.add_argument("--recipe", choices=list(RECIPES), action="append",
                        help="time this recipe only (repeatable; instead of --best)")
    parser.add_argument("--recipes-only", action="store_true", help="only section 2, the recipes")
    parser.add_argument("--no-recipes", action="store_true", help="all but section 2")
    parser.add_argument("--repeats", type=int, default=1,
                        help="run the commands compared (section 1's whole processes, section 2's recipes and the "
                             "seed recipe) in turn this many times and compare medians (default 1)")
    args = parser.parse_args()
    figures = {}
    with tempfile.TemporaryDirectory() as runs_dir:
        if not args.recipes_only:
            figures.update(per_epoch(args.epochs, runs_dir, args.repeats))
        for dataset in [] if args.no_recipes else args.dataset or ["mnist", "fashion"]:
            recipes = [name for name, (on, _, _) in RECIPES.items() if on == dataset and (
                name in args.recipe if args.recipe else args.best or name.startswith("fast_"))]
            if recipes:
                figures.update(recipes_against_the_seed(dataset, recipes, runs_dir, args.repeats))
        if not args.recipes_only:
            figures.update(memory_and_startup(runs_dir))
            figures.update(throughput())
    print_summary(figures)


# --- 1. per-epoch time against the seeds' training loop ------------------------------

def per_epoch(measured, runs_dir, repeats):
    from mnistcls.runtime import import_tensorflow

    import_tensorflow()
    from mnistcls import data, runtime, spec as specs, train
    from mnistcls.files import read_json

    fashion = data.load("fashion")
    epochs = measured + 1
    spec = specs.load_spec("cnn_relu.yaml", [f"train.epochs={epochs}", "data.dataset=fashion"])
    placement = runtime.select_strategy("cpu")
    precision = runtime.choose_precision(spec.train.precision, placement.on_gpu)

    _, result = train.fit(spec, fashion, os.path.join(runs_dir, "per-epoch"), strategy=placement.strategy,
                          precision=precision)
    history = read_json(os.path.join(runs_dir, "per-epoch", "history.json"), [])
    ours = [row["seconds"] for row in history[1:]]
    ours_accuracy = history[-1]["val_accuracy"]

    seed_seconds, seed_accuracy = seed_style_fit(fashion, epochs, spec.train.optimizer.learning_rate)
    ratio = statistics.median(seed_seconds) / statistics.median(ours)
    print(f"\n1. Per-epoch time, seed A relu CNN on Fashion-MNIST ({measured} epochs after 1 warm-up, median)")
    print(f"   seed-style model.fit on float64 arrays: {statistics.median(seed_seconds):6.1f} s/epoch "
          f"(each: {', '.join(f'{s:.1f}' for s in seed_seconds)}), val accuracy after {epochs}: {seed_accuracy:.4f}")
    print(f"   mnistcls ({precision}, tf.data):          {statistics.median(ours):6.1f} s/epoch "
          f"(each: {', '.join(f'{s:.1f}' for s in ours)}), val accuracy after {epochs}: {ours_accuracy:.4f}")
    print(f"   speed-up: {ratio:.2f}x")
    return {"speed-up per epoch": ratio, **whole_processes(runs_dir, repeats, spec.train.optimizer.learning_rate)}


SEED_PROCESS = """
import sys
from mnistcls.runtime import import_tensorflow
import_tensorflow()
sys.path.insert(0, {here!r})
from bench_training import seed_style_fit
from mnistcls import data
seed_style_fit(data.load("fashion"), 3, {learning_rate!r})
"""


def whole_processes(runs_dir, repeats, learning_rate):
    """The wall time of a whole process training seed A's CNN for 3 epochs on Fashion-MNIST: the seeds' way,
    and `mnistcls train` (each from start to exit: interpreter, imports, data, training), in turn `repeats` times."""
    seed_way = [sys.executable, "-c", SEED_PROCESS.format(here=os.path.dirname(os.path.abspath(__file__)),
                                                               learning_rate=learning_rate)]
    ours = [sys.executable, "-m", "mnistcls", "train", "-c", "cnn_relu.yaml", "-d", "fashion", "--epochs", "3",
            "--runs-dir", runs_dir, "--json"]
    seed_times, our_times = [], []
    for _ in range(repeats):
        seed_times.append(timed_process(seed_way))
        our_times.append(timed_process(ours))
    seed, mine = statistics.median(seed_times), statistics.median(our_times)
    each = (f" (each: {', '.join(f'{t:.1f}' for t in seed_times)} s and {', '.join(f'{t:.1f}' for t in our_times)} s)"
            if repeats > 1 else "")
    print(f"   whole process, 3 epochs: the seeds' way {seed:.1f} s, mnistcls {mine:.1f} s: {seed / mine:.2f}x{each}")
    return {"speed-up, whole process of 3 epochs": seed / mine}


def timed_process(command):
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def seed_style_fit(fashion, epochs, learning_rate):
    """Seed A's notebook: a Sequential CNN fitted on x/255 as float64 arrays with one-hot labels."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    l2 = keras.regularizers.L2(0.01)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, 3, padding="same"), keras.layers.Activation("relu"),
        keras.layers.MaxPooling2D(2, padding="same"),
        keras.layers.Conv2D(64, 5, padding="same"), keras.layers.Activation("relu"),
        keras.layers.MaxPooling2D(2, padding="same"),
        keras.layers.Flatten(),
        keras.layers.Dense(128, kernel_regularizer=l2), keras.layers.Activation("relu"),
        keras.layers.Dense(10, kernel_regularizer=l2), keras.layers.Activation("softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    x_train = fashion.x_train.reshape(-1, 28, 28, 1) / 255.0  # float64, as in the seed
    x_test = fashion.x_test.reshape(-1, 28, 28, 1) / 255.0
    y_train = keras.utils.to_categorical(fashion.y_train, 10)
    y_test = keras.utils.to_categorical(fashion.y_test, 10)

    class EpochTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.started)

    seconds = []
    history = model.fit(x_train, y_train, batch_size=128, epochs=epochs, validation_data=(x_test, y_test),
                        callbacks=[EpochTimes()], verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    return seconds[1:], history.history["val_accuracy"][-1]  # the first epoch warms up


# --- 2. time to accuracy, as a ratio to the seed recipe ------------------------------

def recipes_against_the_seed(dataset, recipes, runs_dir, repeats):
    """Each recipe's whole command against the seed recipe's, taken in turn `repeats` times: medians of the
    wall times and of the seconds per epoch (a recipe's accuracy is the same every time, its seed being fixed)."""
    runs = {config: [] for config in ["cnn_relu", *recipes]}  # config -> [(wall seconds, result row)]
    for _ in range(repeats):
        for config, taken in runs.items():
            taken.append(train_command(config, dataset, runs_dir))
    seed_wall = statistics.median(wall for wall, _ in runs["cnn_relu"])
    print(f"\n2. Time to accuracy on {dataset}: whole `mnistcls train` commands against the seed recipe's"
          + (f" (medians of {repeats}, taken in turn)" if repeats > 1 else ""))
    print(f"   {'config':<14} {'test acc':>9} {'wall':>8} {'x seed':>7} {'epochs':>6} {'s/epoch':>8}")
    row = "   {:<14} {:>8.2f}% {:>7.1f}s {:>6.2f}x {:>6} {:>8.1f}   {}"
    figures = {}
    for config, taken in runs.items():
        wall = statistics.median(wall for wall, _ in taken)
        result = taken[-1][1]
        each = f"each: {', '.join(f'{t:.1f}' for t, _ in taken)} s" if repeats > 1 else ""
        print(row.format(config, 100 * result["test_accuracy"], wall, wall / seed_wall, result["epochs_run"],
                         statistics.median(r["seconds_per_epoch"] for _, r in taken),
                         "(the seed recipe: the baseline) " * (config == "cnn_relu") + each))
        if config != "cnn_relu":
            figures[f"{config} accuracy"] = 100 * result["test_accuracy"]
            figures[f"{config} time / seed recipe's"] = wall / seed_wall
    return figures


def train_command(config, dataset, runs_dir):
    """(wall seconds, result row) of one whole `mnistcls train` command."""
    started = time.perf_counter()
    output = mnistcls("train", "--config", f"{config}.yaml", "--dataset", dataset, "--runs-dir", runs_dir, "--json")
    wall = time.perf_counter() - started
    (result,) = json.loads(output)
    return wall, result


# --- 3. memory and start-up ----------------------------------------------------------

def memory_and_startup(runs_dir):
    command = [sys.executable, "-m", "mnistcls", "train", "--config", "cnn_relu.yaml", "--dataset", "fashion",
               "--epochs", "1", "--runs-dir", runs_dir, "--json"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    assert status == 0, "training the seed CNN failed"
    peak_gb = usage.ru_maxrss * 1024 / 1e9  # Linux reports kilobytes
    help_seconds = statistics.median(timed(["--help"]) for _ in range(5))
    summary_seconds = statistics.median(timed(["summary"]) for _ in range(3))
    print("\n3. Memory and start-up")
    print(f"   peak resident memory, training cnn_relu for an epoch: {peak_gb:.2f} GB")
    print(f"   mnistcls --help: {help_seconds:.2f} s;  mnistcls summary (all bundled configs): {summary_seconds:.2f} s")
    return {"peak memory training cnn_relu": peak_gb, "mnistcls --help": help_seconds}


# --- 4. throughput -------------------------------------------------------------------

def throughput(times=3):
    """`mnistcls bench` `times` times; the share of the peak is their median (each run measures both anew)."""
    runs = [json.loads(mnistcls("bench", "--config", "cnn_relu.yaml", "--config", "fast_fashion.yaml",
                                "--config", "best_fashion.yaml", "--config", "best_mnist.yaml", "--json"))
            for _ in range(times)]
    print(f"\n4. Images per second and share of the matmul peak (mnistcls bench, {times} runs: each row is the run "
          "with the median training share)")
    for rows in zip(*runs):
        row = sorted(rows, key=lambda r: r["train_share_of_peak"])[len(rows) // 2]
        each = ", ".join(f"{r['train_share_of_peak']:.0%}" for r in rows)
        print(f"   {row['config']:<14} {row['precision']:<15} train {row['train_images_per_second']:7,.0f} img/s "
              f"({row['train_gflops']:.0f} GFLOP/s, {row['train_share_of_peak']:.0%} of the peak; each run "
              f"{each}), evaluate "
              f"{row['eval_images_per_second']:7,.0f} img/s ({row['eval_share_of_peak']:.0%}), about "
              f"{row['seconds_per_epoch']:.1f} s/epoch; peak {row['peak_gflops']:.0f} GFLOP/s")
    shares = [row["train_share_of_peak"] for rows in runs for row in rows if row["config"] == "cnn_relu"]
    return {"cnn_relu training, share of matmul peak": 100 * statistics.median(shares)}


# --- helpers -------------------------------------------------------------------------

def mnistcls(*args):
    return subprocess.run([sys.executable, "-m", "mnistcls", *args], check=True, capture_output=True,
                          text=True).stdout


def timed(args):
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mnistcls", *args], check=True, capture_output=True)
    return time.perf_counter() - started


def print_summary(figures):
    print("\nTargets (issues 6, 9, 21 and 22)")
    for name, (unit, target, kind) in TARGETS.items():
        if name not in figures:
            print(f"   {name:<36} not measured in this run")
            continue
        value = figures[name]
        met = value >= target if kind == "min" else value <= target
        bound = ">=" if kind == "min" else "<="
        verdict = "met" if met else "MISSED"
        print(f"   {name:<36} {value:8.2f} {unit:<2} (target {bound} {target:.3g} {unit}): {verdict}")


if __name__ == "__main__":
    main()
