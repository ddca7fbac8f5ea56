"""`mnistcls bench`: it times the model `mnistcls train` would train, with the spec's settings."""

import json

import pytest

from click.testing import CliRunner

from conftest import TINY_SPEC
from mnistcls import bench, train
from mnistcls.cli import cli


def test_bench_times_a_model_compiled_with_the_specs_precision_and_steps_per_execution(monkeypatch):
    compiled = []

    def keep_the_model(*args, **kwargs):  # the real compiled_model; the test only looks at what it made
        model, callbacks = real(*args, **kwargs)
        compiled.append(model)
        return model, callbacks

    def count_the_probes(probe, seconds):
        probed.append(seconds)
        return real_probe(probe, seconds)

    real, real_probe, probed = train.compiled_model, bench.PeakProbe.__call__, []
    monkeypatch.setattr(train, "compiled_model", keep_the_model)
    monkeypatch.setattr(bench.PeakProbe, "__call__", count_the_probes)
    result = CliRunner().invoke(cli, ["bench", "-c", TINY_SPEC, "--steps", "5", "--precision", "mixed_bfloat16",
                                      "--set", "train.steps_per_execution=4", "--json"])
    assert result.exit_code == 0, result.output
    (speed,) = json.loads(result.stdout)
    assert speed["precision"] == "mixed_bfloat16" and speed["batch_size"] == 64
    assert speed["train_images_per_second"] > 0 and speed["eval_images_per_second"] > 0
    assert speed["steps_per_execution"] == 4  # as train runs it, whatever number of steps is timed
    assert speed["flops_per_image"] == 2 * (3 * 3 * 4 * 26 * 26 + 13 * 13 * 4 * 10)  # the tiny CNN's MACs, twice
    assert speed["train_gflops"] == pytest.approx(3 * speed["flops_per_image"] * speed["train_images_per_second"] / 1e9)
    assert speed["peak_gflops"] > 0 and speed["train_share_of_peak"] == pytest.approx(
        speed["train_gflops"] / speed["peak_gflops"])
    # 5 steps timed as 2 whole calls of 4: the peak is probed after each, for half the probing time each.
    assert probed == [bench.PEAK_SECONDS / 2] * 2

    (model,) = compiled
    assert model.steps_per_execution == 4
    hidden = [layer for layer in model.layers[1:-1]]
    assert hidden and all(layer.dtype_policy.name == "mixed_bfloat16" for layer in hidden)
    assert model.layers[-1].dtype_policy.name == "float32"  # the output stays float32 for the loss


def test_bench_takes_the_image_size_and_classes_of_a_dataset_folder(tmp_path):
    import shapes
    from mnistcls import data

    folder = shapes.write_dataset(tmp_path / "letters", train=130, test=20)
    x, y = data.read_idx(folder / "train-images-idx3-ubyte.gz"), data.read_idx(folder / "train-labels-idx1-ubyte.gz")
    data.write_idx(folder / "train-images-idx3-ubyte.gz", x[:, 2:-2, 2:-2])  # 24x24 images...
    data.write_idx(folder / "t10k-images-idx3-ubyte.gz",
                   data.read_idx(folder / "t10k-images-idx3-ubyte.gz")[:, 2:-2, 2:-2])
    data.write_idx(folder / "train-labels-idx1-ubyte.gz", (y % 5) + 21)  # ...of 26 classes
    (folder / "classes.txt").write_text("\n".join(chr(ord("a") + i) for i in range(26)) + "\n")
    spec = tmp_path / "letters.yaml"
    spec.write_text("model: [flatten, {dense: {units: 26, activation: softmax}}]\ntrain: {batch_size: 64}\n")
    result = CliRunner().invoke(cli, ["bench", "-c", str(spec), "-d", str(folder), "--steps", "4", "--json"])
    assert result.exit_code == 0, result.output
    (speed,) = json.loads(result.stdout)
    assert speed["flops_per_image"] == 2 * 24 * 24 * 26 and speed["train_images"] == 130
    assert speed["steps_per_execution"] == 2  # the two whole batches of an epoch of 130 images
