"""Training runs end to end on the generated shapes (conftest), and a few on the real datasets."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import TINY_GRAPH, TINY_SPEC, wait_for_epochs
from mnistcls import runs
from mnistcls.cli import cli


def train(*args, runs_dir):
    result = CliRunner().invoke(cli, ["train", "--runs-dir", str(runs_dir), "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_a_run_folder_holds_the_complete_record(small_dataset, tmp_path):
    (result,) = train("-c", TINY_SPEC, "-d", str(small_dataset), runs_dir=tmp_path)
    run = runs.find(result["run"], tmp_path)
    names = {p.name for p in run.path.iterdir()}
    assert {"run.json", "spec.yaml", "model.keras", "history.json", "history.csv", "metrics.json",
            "curves.png", "tensorboard"} <= names
    assert "backup" not in names  # the previous epoch's copy goes when a run finishes
    assert run.status == "finished"
    info = run.info
    assert info["versions"]["tensorflow"] and info["device"].startswith("CPU")
    assert info["data"]["verified"] is None  # a custom folder has no known checksum
    assert [row["epoch"] for row in run.history] == [1, 2]
    assert run.metrics["epochs_run"] == 2 and run.metrics["params"] == 6810
    assert len((run.path / "history.csv").read_text().splitlines()) == 3
    assert "train:" in run.spec_text and "seed: 0" in run.spec_text


def test_the_saved_model_reproduces_the_recorded_test_accuracy(small_dataset, tmp_path):
    import keras

    from mnistcls import data

    (result,) = train("-c", TINY_SPEC, "-d", str(small_dataset), runs_dir=tmp_path)
    model = keras.models.load_model(runs.find(result["run"], tmp_path).path / "model.keras")
    test = data.load(str(small_dataset), splits=("test",))
    predicted = model.predict(test.x_test[..., None], verbose=0).argmax(axis=1)
    assert np.mean(predicted == test.y_test) == pytest.approx(result["test_accuracy"], abs=1e-6)


def test_two_seeded_runs_have_identical_histories(small_dataset, tmp_path):
    first, = train("-c", TINY_SPEC, "-d", str(small_dataset), "--seed", "7", runs_dir=tmp_path)
    second, = train("-c", TINY_SPEC, "-d", str(small_dataset), "--seed", "7", runs_dir=tmp_path)
    other, = train("-c", TINY_SPEC, "-d", str(small_dataset), "--seed", "8", runs_dir=tmp_path)

    def losses(result):
        return [row["loss"] for row in runs.find(result["run"], tmp_path).history]

    assert losses(first) == losses(second)
    assert losses(first) != losses(other)
    assert runs.find(first["run"], tmp_path).info["overrides"][0] == "train.seed=7"


def test_configs_times_datasets_and_a_sweep_each_make_a_comparison(small_dataset, tmp_path):
    other = tmp_path / "other_data"
    other.mkdir()
    for f in small_dataset.iterdir():  # the same images under another name: a second dataset
        (other / f.name).write_bytes(f.read_bytes())
    result = CliRunner().invoke(cli, ["train", "--runs-dir", str(tmp_path / "runs"), "-c", TINY_SPEC,
                                      "-c", "a1_linear.yaml", "-d", str(small_dataset), "-d", str(other),
                                      "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert "Comparison" in result.output
    assert len(runs.all_runs(tmp_path / "runs")) == 4
    assert {(r.info["config"], r.info["dataset"]) for r in runs.all_runs(tmp_path / "runs")} == {
        (c, str(d)) for c in ("tiny_cnn", "a1_linear") for d in (small_dataset, other)}
    assert {r.info["precision"] for r in runs.all_runs(tmp_path / "runs")} == {"float32"}  # conftest pins it

    swept = train("-c", TINY_SPEC, "-d", str(small_dataset), "--epochs", "1",
                  "--set", "train.optimizer.learning_rate=0.001,0.01", runs_dir=tmp_path / "sweep")
    assert [r["sweep"] for r in swept] == [{"train.optimizer.learning_rate": "0.001"},
                                          {"train.optimizer.learning_rate": "0.01"}]


def test_gpu_without_a_gpu_fails_clearly(small_dataset, tmp_path):
    result = CliRunner().invoke(cli, ["train", "-c", TINY_SPEC, "-d", str(small_dataset),
                                      "--runs-dir", str(tmp_path), "--device", "gpu"])
    assert result.exit_code == 1
    assert "--device gpu" in result.output and "no GPU" in result.output
    assert not tmp_path.joinpath("runs").exists() and runs.all_runs(tmp_path) == []


@pytest.mark.parametrize("args, env, message", [
    (["--device", "cpu", "--gpus", "2"], {}, "cannot go with --device cpu"),
    (["--gpus", "1"], {"TF_CONFIG": json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                                                "task": {"type": "worker", "index": 0}})},
     "--gpus does not apply to a cluster"),
], ids=["cpu", "cluster"])
def test_options_that_would_be_ignored_are_errors(small_dataset, tmp_path, monkeypatch, args, env, message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(cli, ["train", "-c", TINY_SPEC, "-d", str(small_dataset), "--runs-dir", str(tmp_path),
                                      *args])
    assert result.exit_code == 2 and message in result.output and runs.all_runs(tmp_path) == []


def test_fast_mnist_learns_real_digits_in_one_epoch(tmp_path, real_data_dir):
    """The real MNIST, all four files, through the whole train command."""
    result = CliRunner().invoke(cli, ["train", "-c", "fast_mnist.yaml", "--epochs", "1", "--runs-dir", str(tmp_path),
                                      "--data-dir", str(real_data_dir), "--json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert row["dataset"] == "mnist" and row["test_accuracy"] > 0.95  # one epoch of a small CNN on real digits
    assert runs.find(row["run"], tmp_path).info["data"]["verified"] is True


def test_missing_training_images_end_in_the_data_layers_offline_error(tmp_path, real_data_dir):
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    for name in ("train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (folder / name).symlink_to(real_data_dir / "mnist" / name)
    result = CliRunner().invoke(cli, ["train", "-c", "cnn_relu.yaml", "--runs-dir", str(tmp_path / "runs"),
                                      "--data-dir", str(folder.parent)])
    assert result.exit_code == 1
    assert "train-images-idx3-ubyte not found" in result.output
    assert runs.all_runs(tmp_path / "runs") == []


# --- interruptions, in a real process -------------------------------------------------

def _start(args, runs_dir):
    env = {**os.environ, "MNISTCLS_RUNS_DIR": str(runs_dir)}
    return subprocess.Popen([sys.executable, "-m", "mnistcls", "train", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("how, spec", [(signal.SIGINT, TINY_SPEC), (signal.SIGKILL, TINY_SPEC),
                                       (signal.SIGKILL, TINY_GRAPH)], ids=["ctrl-c", "kill-9", "graph-kill-9"])
def test_an_interrupted_run_resumes_to_the_same_result(small_dataset, tmp_path, how, spec):
    # 9 steps an epoch in calls of 4: each epoch's last call is a short one
    args = ["-c", spec, "-d", str(small_dataset), "--epochs", "12", "--seed", "3", "--set", "train.steps_per_execution=4"]
    process = _start(args, tmp_path / "cut")
    run = wait_for_epochs(tmp_path / "cut", 3, process)
    process.send_signal(how)
    output, _ = process.communicate(timeout=60)
    if how == signal.SIGINT:
        assert process.returncode == 130, output
        assert "Traceback" not in output and f"--resume {run.id}" in output
        assert run.status == "interrupted"
    else:
        assert run.status == "killed"
    done = len(run.history)
    assert 3 <= done < 12 and (run.path / "model.keras").is_file()

    resumed = _start(["--resume", run.id], tmp_path / "cut")
    output, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, output
    assert run.status == "finished" and [r["epoch"] for r in run.history] == list(range(1, 13))

    whole = _start(args, tmp_path / "whole")
    output, _ = whole.communicate(timeout=120)
    assert whole.returncode == 0, output
    uninterrupted = runs.all_runs(tmp_path / "whole")[0]
    keys = ("test_accuracy", "test_loss", "best_val_accuracy", "best_epoch")
    assert {k: run.metrics[k] for k in keys} == {k: uninterrupted.metrics[k] for k in keys}


def test_the_fast_config_learns_fashion_in_a_few_steps(fashion_system_dir, tmp_path):
    """fast_fashion.yaml on the real data, cut to one epoch: it must already be well past chance."""
    (result,) = train("-c", "fast_fashion.yaml", "--epochs", "1", runs_dir=tmp_path)
    assert result["dataset"] == "fashion" and result["epochs_run"] == 1
    assert result["test_accuracy"] > 0.85


@pytest.mark.parametrize("schedule, expected", [
    ("{name: constant}", [0.1, 0.1, 0.1]),
    ("{name: step, every_epochs: 2, factor: 0.5}", [0.1, 0.1, 0.05]),  # epochs 0, 1, 2 (10 steps each)
    ("{name: exponential, factor: 0.5}", [0.1, 0.05, 0.025]),
    ("{name: cosine, warmup_epochs: 1}", [0.0, 0.1, 0.05]),  # warm-up, peak, half-way down 2 epochs
    ("{name: inverse_time, decay: 0.1}", [0.1, 0.05, 0.1 / 3]),
])
def test_each_schedule_gives_the_learning_rate_it_documents(schedule, expected):
    from mnistcls import optimizers, spec as specs

    assert set(optimizers.SCHEDULES) == set(specs.SCHEDULES)
    spec = specs.load_spec(TINY_SPEC, ["train.optimizer.learning_rate=0.1", "train.epochs=3",
                                       f"train.schedule={schedule}"])
    rate, extra_callbacks = optimizers.learning_rate(spec.train, steps_per_epoch=10)
    at = [float(rate(step)) if callable(rate) else rate for step in (0, 10, 20)]
    assert at == pytest.approx(expected, rel=1e-5) and extra_callbacks == []


def test_the_plateau_schedule_is_keras_reduce_on_plateau():
    import keras

    from mnistcls import optimizers, spec as specs

    spec = specs.load_spec(TINY_SPEC, ["train.schedule={name: plateau, factor: 0.2, patience: 4}"])
    rate, (callback,) = optimizers.learning_rate(spec.train, steps_per_epoch=10)
    assert rate == spec.train.optimizer.learning_rate
    assert isinstance(callback, keras.callbacks.ReduceLROnPlateau)
    assert (callback.factor, callback.patience, callback.monitor) == (0.2, 4, "val_loss")


def test_a_batch_larger_than_the_training_set_is_a_spec_problem_before_any_run(small_dataset, tmp_path):
    result = CliRunner().invoke(cli, ["train", "-c", TINY_SPEC, "-d", str(small_dataset), "--batch-size", "5000",
                                      "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2 and "train.batch_size: 5000 is more than the 600 training images" in result.output
    assert runs.all_runs(tmp_path) == []


def test_runs_that_differ_only_in_their_seed_are_built_and_checked_once(small_dataset, monkeypatch):
    from mnistcls import progress, runner, spec as specs

    built = []
    monkeypatch.setattr(runner, "build_model", lambda spec, *shape: built.append(spec.train.seed))
    planned = [runner.Job(specs.load_spec(TINY_SPEC, [f"train.seed={seed}", f"train.epochs={epochs}"]),
                          str(small_dataset)) for seed in (0, 1, 2) for epochs in (1, 2)]
    runner.check_and_load(planned, None, True, progress.SILENT)
    assert built == [0, 0]  # one build for each number of epochs, none for the other seeds


def test_the_tiny_spec_takes_the_multi_step_path_of_real_runs(small_dataset):
    """Its steps per epoch are a multiple of its steps_per_execution, so none is lowered to 1 per call."""
    import tensorflow as tf

    from mnistcls import data, spec as specs, train as training

    spec = specs.load_spec(TINY_SPEC, [])
    dataset = data.load(str(small_dataset))
    steps = len(dataset.x_train) // spec.train.batch_size
    model, _ = training.compiled_model(spec, dataset, (0.0, 1.0), steps, strategy=tf.distribute.get_strategy(),
                                       precision=spec.train.precision)
    assert model.steps_per_execution == spec.train.steps_per_execution > 1


@pytest.mark.parametrize("has_bfloat16, chosen", [(True, "mixed_bfloat16"), (False, "float32")])
def test_precision_auto_trains_in_bfloat16_on_cpus_that_have_it(small_dataset, tmp_path, monkeypatch, has_bfloat16,
                                                                chosen):
    import keras

    from mnistcls import runtime

    monkeypatch.setattr(runtime, "cpu_has_bfloat16", lambda: has_bfloat16)
    (result,) = train("-c", TINY_SPEC, "-d", str(small_dataset), "--precision", "auto", "--epochs", "1",
                      runs_dir=tmp_path)
    run = runs.find(result["run"], tmp_path)
    assert run.info["precision"] == chosen and result["test_accuracy"] > 0.2
    model = keras.models.load_model(run.path / "model.keras")
    assert model.get_layer(index=2).dtype_policy.name == chosen  # the first convolution
    assert model.layers[-1].dtype_policy.name == "float32"  # the output stays float32 for the loss


def test_a_relative_dataset_folder_is_relative_to_its_spec_and_recorded_absolute(small_dataset, tmp_path,
                                                                                monkeypatch):
    import shutil

    project = tmp_path / "project"
    shutil.copytree(small_dataset, project / "data" / "shapes")
    (project / "specs").mkdir()
    (project / "specs" / "mine.yaml").write_text(Path(TINY_SPEC).read_text() + "data: {dataset: ../data/shapes}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (row,) = train("-c", str(project / "specs" / "mine.yaml"), "--epochs", "1", runs_dir=tmp_path / "runs")
    run = runs.find(row["run"], tmp_path / "runs")
    assert run.info["dataset"] == str((project / "data" / "shapes").resolve())
    monkeypatch.chdir(tmp_path)
    evaluated = CliRunner().invoke(cli, ["evaluate", "--run", run.id, "--runs-dir", str(tmp_path / "runs"), "--json"])
    assert evaluated.exit_code == 0, evaluated.output


def test_verbose_says_where_the_time_of_a_training_command_went(small_dataset, tmp_path):
    result = CliRunner().invoke(cli, ["--verbose", "train", "-c", TINY_SPEC, "-d", str(small_dataset), "--runs-dir",
                                      str(tmp_path)])
    assert result.exit_code == 0, result.output
    for phase in ("Where the", "import TensorFlow and Keras", "find, verify and load the data", "epochs",
                  "of which tracing, in the first epoch", "test evaluation", "curves.png", "the rest"):
        assert phase in result.output, phase
    quiet = CliRunner().invoke(cli, ["train", "-c", TINY_SPEC, "-d", str(small_dataset), "--runs-dir", str(tmp_path)])
    assert "Where the" not in quiet.output
