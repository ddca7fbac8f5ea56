"""The figures a run records are the ones that happened: learning rates, execution steps, loss scaling,
divergence, and what "best validation accuracy" was measured on."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from rich.console import Console

from conftest import TINY_SPEC
from mnistcls import report, runs
from mnistcls.cli import cli

LR = 0.003  # the tiny spec's learning rate


def invoke(*args):
    return CliRunner().invoke(cli, list(args))


def train(runs_dir, dataset, *args):
    """Train the tiny spec in float32 (figures must not depend on the CPU's bfloat16 support)."""
    result = invoke("train", "-c", TINY_SPEC, "-d", str(dataset), "--runs-dir", str(runs_dir), "--json",
                    "--precision", "float32", *args)
    return result


def strict_json(text):
    """json.loads that refuses NaN and Infinity, which are not JSON."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_history_has_the_rate_each_epoch_trained_at_and_the_steps_per_execution_used(small_dataset, tmp_path):
    # 600 images in batches of 64: 9 steps an epoch, run as calls of 4, 4 and 1 steps.
    result = train(tmp_path, small_dataset, "--epochs", "3", "--set", "train.schedule={name: step, every_epochs: 1, "
                   "factor: 0.5}", "--set", "train.steps_per_execution=4")
    assert result.exit_code == 0, result.output
    (row,) = strict_json(result.stdout)
    run = runs.find(row["run"], tmp_path)
    # A step schedule halving after every epoch: the first epoch trains at the spec's rate.
    assert [h["learning_rate"] for h in run.history] == pytest.approx([LR, LR / 2, LR / 4])
    assert run.info["steps_per_epoch"] == 9 and run.info["steps_per_execution"] == 4
    import keras

    model = keras.models.load_model(run.path / "model.keras")
    assert int(model.optimizer.iterations) == 3 * 9  # every epoch all of its steps, none of the next one's
    assert model.steps_per_execution == 4

    shown = invoke("runs", "show", row["run"], "--runs-dir", str(tmp_path))
    assert shown.exit_code == 0 and "4 per call into TensorFlow" in shown.output

    # validation: test (the tiny spec's default): the "best validation accuracy" is a test accuracy, named so.
    assert row["validation"] == "test" and run.info["validation"] == "test"
    listed = invoke("runs", "--runs-dir", str(tmp_path))
    assert "Best val acc" not in listed.output and "the best test accuracy over the epochs" in listed.output
    wide = Console(width=250, record=True, file=open(os.devnull, "w"))  # room for the header on one line
    wide.print(report.runs_table(runs.listing(tmp_path)))
    assert "Best test acc in training" in wide.export_text()
    assert strict_json(invoke("runs", "--runs-dir", str(tmp_path), "--json").stdout)[0]["validation"] == "test"


def test_plateau_rate_changes_from_the_epoch_after_the_plateau(small_dataset, tmp_path):
    result = train(tmp_path, small_dataset, "--epochs", "8", "--lr", "0.03", "--set", "train.validation=0.2",
                   "--set", "train.schedule={name: plateau, patience: 1, factor: 0.5}")
    assert result.exit_code == 0, result.output
    (row,) = strict_json(result.stdout)
    history = runs.find(row["run"], tmp_path).history
    rates = [h["learning_rate"] for h in history]
    assert rates[0] == pytest.approx(0.03)
    # With patience 1 the rate halves after each epoch whose val_loss is no better than the best before it
    # (by ReduceLROnPlateau's min_delta, 1e-4), and the epoch after that one trains at the halved rate.
    losses = [h["val_loss"] for h in history]
    for epoch in range(1, len(history)):
        stalled = epoch > 1 and losses[epoch - 1] > min(losses[:epoch - 1]) - 1e-4
        assert rates[epoch] == pytest.approx(rates[epoch - 1] * (0.5 if stalled else 1.0)), (rates, losses)
    assert min(rates) < 0.03, "the plateau rule never acted: choose settings that make it"
    assert row["validation"] == 0.2


def test_mixed_float16_scales_the_loss(small_dataset, tmp_path):
    import keras
    import tensorflow as tf

    from mnistcls import data, spec as specs, train as training

    spec = specs.load_spec(TINY_SPEC)
    dataset = data.load(str(small_dataset))
    model, _ = training.compiled_model(spec, dataset, (0.0, 1.0), 9, strategy=tf.distribute.get_strategy(),
                                       precision="mixed_float16")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert float(model.optimizer.scale_loss(keras.ops.convert_to_tensor(1.0))) > 1.0

    result = invoke("train", "-c", TINY_SPEC, "-d", str(small_dataset), "--runs-dir", str(tmp_path), "--json",
                    "--precision", "mixed_float16", "--epochs", "1")
    assert result.exit_code == 0, result.output
    history = runs.find(strict_json(result.stdout)[0]["run"], tmp_path).history
    assert all(np.isfinite(h["loss"]) and np.isfinite(h["val_loss"]) for h in history)


def test_a_diverging_run_stops_is_recorded_as_diverged_and_exits_1(small_dataset, tmp_path):
    result = train(tmp_path, small_dataset, "--epochs", "5", "--lr", "1e35")
    assert result.exit_code == 1, result.output
    assert "lower the learning rate" in result.output
    (run,) = runs.all_runs(tmp_path)
    assert run.status == "diverged" and "lower the learning rate" in run.info["error"]
    assert len(run.history) < 5 and not np.isfinite(run.history[-1]["loss"])  # stopped in the epoch it diverged

    listed = invoke("runs", "--runs-dir", str(tmp_path), "--json")
    assert listed.exit_code == 0
    assert strict_json(listed.stdout)[0]["status"] == "diverged"
    assert "diverged" in invoke("runs", "--runs-dir", str(tmp_path)).output
    shown = invoke("runs", "show", run.id, "--runs-dir", str(tmp_path), "--json")
    assert strict_json(shown.stdout)["history"][-1]["loss"] is None  # NaN is written as null

    resumed = invoke("train", "--resume", run.id, "--runs-dir", str(tmp_path))
    assert resumed.exit_code == 2 and "continue from broken weights" in resumed.output


def test_a_diverging_run_leaks_no_keras_line(small_dataset, tmp_path):
    process = subprocess.run([sys.executable, "-m", "mnistcls", "train", "-c", TINY_SPEC, "-d", str(small_dataset),
                              "--epochs", "2", "--lr", "1e35", "--runs-dir", str(tmp_path)],
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 1
    assert "Invalid loss" not in process.stdout + process.stderr and "lower the learning rate" in process.stderr


def test_a_run_that_learns_nothing_is_flagged_with_a_hint_and_exits_1(small_dataset, tmp_path):
    result = train(tmp_path, small_dataset, "--epochs", "2", "--lr", "1000")  # Adam far too fast: finite, and useless
    assert result.exit_code == 1, result.output
    (run,) = runs.all_runs(tmp_path)
    assert run.status == "finished"  # it ran to its end; what it learned is another matter
    assert run.metrics["at_chance"] is True and run.metrics["chance_accuracy"] == pytest.approx(0.1)
    assert run.metrics["test_accuracy"] <= 0.11
    assert "learned nothing" in result.output and "lower the learning rate" in result.output
    listed = strict_json(invoke("runs", "--runs-dir", str(tmp_path), "--json").stdout)
    assert listed[0]["status"] == "at chance" and "at chance" in invoke("runs", "--runs-dir", str(tmp_path)).output

    learned = train(tmp_path, small_dataset, "--epochs", "2")
    assert learned.exit_code == 0 and strict_json(learned.stdout)[0]["at_chance"] is False


def test_json_output_writes_nan_and_infinity_as_null(capsys):
    report.print_json({"loss": float("nan"), "rows": [float("inf"), 1.5, (float("-inf"), "x")]})
    assert strict_json(capsys.readouterr().out) == {"loss": None, "rows": [None, 1.5, [None, "x"]]}


def test_tables_mixing_test_and_hold_out_validation_mark_the_test_scores():
    rows = [{"run": "a", "validation": "test", "best_val_accuracy": 0.9, "params": 1},
            {"run": "b", "validation": 0.1, "best_val_accuracy": 0.8, "params": 1}]
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(report.results_table(rows))
    text = console.export_text()
    assert "90.00% (test)" in text and "80.00% (test)" not in text and "best test accuracy" in text


@pytest.mark.parametrize("config", ["fast_fashion", "best_fashion", "fast_mnist", "best_mnist"])
def test_our_own_recipes_validate_on_a_hold_out_not_on_the_test_set(config):
    from mnistcls import spec as specs

    validation = specs.load_spec(f"{config}.yaml").train.validation
    assert validation != "test" and 0 < validation < 1


def test_pictures_name_test_set_validation_for_what_it_is():
    from mnistcls import plots

    history = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.6], "accuracy": [0.5, 0.7], "val_accuracy": [0.4, 0.6]}
    fig = plots.learning_curves_figure({"a": history}, validation="test")
    assert "test" in [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    fig = plots.sweep_plot_figure([1, 2], [0.5, 0.4], [0.8, 0.9], param_name="units", validation="test")
    assert [ax.get_title() for ax in fig.axes] == ["best test loss", "best test accuracy"]
