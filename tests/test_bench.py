"""`mnistcls bench`: real measurements of the training step, no data needed."""

import json

from click.testing import CliRunner

from conftest import TINY_SPEC
from mnistcls.cli import cli


def test_bench_measures_training_and_evaluation_speed_without_data():
    result = CliRunner().invoke(cli, ["bench", "-c", TINY_SPEC, "--steps", "8", "--precision", "float32", "--json"])
    assert result.exit_code == 0, result.output
    (speed,) = json.loads(result.stdout)
    assert speed["config"] == "tiny_cnn" and speed["precision"] == "float32" and speed["batch_size"] == 64
    assert speed["train_images_per_second"] > 0 and speed["eval_images_per_second"] > 0
    expected = 60_000 / speed["train_images_per_second"] + 10_000 / speed["eval_images_per_second"]
    assert abs(speed["seconds_per_epoch"] - expected) < 1e-9
