"""What pruning saves in `mnistcls tune`, measured against the same search without it.

Run by hand (not collected by the test suite), on a quiet machine:

    .venv/bin/python tests/benchmarks/bench_tune.py                 # 20 trials of 3 epochs each way (~30 min)
    .venv/bin/python tests/benchmarks/bench_tune.py --trials 2 --epochs 1 --subset 2000   # a smoke run

Both searches run in this one run, one after the other, on seed A's relu CNN
(cnn_relu.yaml, with a Dropout layer after its hidden Dense layer) on Fashion-MNIST,
over learning rate, batch size and dropout rate, with the same TPE sampler seed:
first with the median pruner, then with none. It prints, for each, the time of the N
trials (the sum of the trials' own durations, and the whole command's wall time) and
the best validation accuracy reached, then the ratio. Issue 12's goal: pruning saves
at least 30% of the time at an equal best accuracy (within noise).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
FASHION = Path("/usr/share/datasets/fashion-mnist")
SEARCH = ["train.optimizer.learning_rate={float: [1.0e-4, 3.0e-3], log: true}",
          "train.batch_size={choice: [64, 128, 256]}",
          "model.9={float: [0.0, 0.5]}"]  # the Dropout layer added below
TARGET_SAVING = 0.30


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="trials of each search (default 20)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each trial (default 3)")
    parser.add_argument("--subset", type=int, default=0,
                        help="train on the first N training images (and N/6 test images); default: all")
    parser.add_argument("--seed", type=int, default=0, help="the TPE sampler's seed, the same for both searches")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        spec = _spec_with_dropout(work / "cnn_relu_dropout.yaml")
        dataset = _subset(work / "fashion", args.subset) if args.subset else "fashion"
        figures = {pruner: _search(spec, dataset, pruner, args, work / pruner) for pruner in ("median", "none")}
    _print(figures, args)


def _spec_with_dropout(path):
    from mnistcls.spec import CONFIG_DIR, read_yaml

    spec = read_yaml((CONFIG_DIR / "cnn_relu.yaml").read_text())
    spec["model"].insert(9, {"dropout": 0.25})  # after Dense(128) and its relu
    spec["name"] = "cnn_relu_dropout"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _subset(folder, count):
    """The first `count` training and count/6 test images of Fashion-MNIST, as a custom IDX folder."""
    from mnistcls import data

    folder.mkdir()
    for split, n in (("train", count), ("t10k", max(1, count // 6))):
        for kind in ("images", "labels"):
            name = f"{split}-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz"
            data.write_idx(folder / name, data.read_idx(FASHION / name)[:n])
    return str(folder)


def _search(spec, dataset, pruner, args, runs_dir):
    command = [sys.executable, "-m", "mnistcls", "tune", "-c", str(spec), "-d", dataset, "--trials", str(args.trials),
               "--epochs", str(args.epochs), "--pruner", pruner, "--sampler-seed", str(args.seed),
               "--runs-dir", str(runs_dir), "--json", *[arg for s in SEARCH for arg in ("--search", s)]]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    print(f"searching with pruner {pruner}: {args.trials} trials of {args.epochs} epochs ...", flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"mnistcls tune failed:\n{done.stderr[-3000:]}")
    study = json.loads(done.stdout)
    trials = study["trials"]
    return {"wall": wall, "trials": sum(t["seconds"] or 0 for t in trials),
            "epochs": sum(t["epochs"] or 0 for t in trials), "pruned": sum(t["state"] == "pruned" for t in trials),
            "best": study["best"]["value"] if study["best"] else float("nan")}


def _print(figures, args):
    pruned, full = figures["median"], figures["none"]
    print(f"\n{args.trials} trials of up to {args.epochs} epochs, seed A's CNN + dropout on Fashion-MNIST"
          + (f" (first {args.subset} training images)" if args.subset else ""))
    print(f"{'':22}{'median pruner':>16}{'no pruner':>16}")
    for label, key, unit in (("time of the trials", "trials", "s"), ("whole command", "wall", "s")):
        print(f"{label:22}{pruned[key]:>15.1f}{unit}{full[key]:>15.1f}{unit}")
    print(f"{'epochs trained':22}{pruned['epochs']:>16}{full['epochs']:>16}")
    print(f"{'trials pruned':22}{pruned['pruned']:>16}{full['pruned']:>16}")
    print(f"{'best val accuracy':22}{pruned['best']:>16.4f}{full['best']:>16.4f}")
    ratio = pruned["trials"] / full["trials"] if full["trials"] else float("nan")
    saving = 1 - ratio
    verdict = "met" if saving >= TARGET_SAVING else "NOT met"
    print(f"\ntime with / without pruning: {ratio:.2f} (saves {saving:.0%}; goal >= {TARGET_SAVING:.0%}: {verdict}); "
          f"best accuracy difference {pruned['best'] - full['best']:+.4f}")


if __name__ == "__main__":
    main()
