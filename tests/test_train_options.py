"""Training options end to end: a hold-out validation split, early stopping, and a model that
outputs logits trained with the sparse loss, through train, evaluate and predict."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw

from conftest import train_tiny
from mnistcls import runs
from mnistcls.cli import cli

OPTIONS = [
    "--set", "train.validation=0.2",
    # Never an improvement after the first epoch (min_delta 1 is all of accuracy): stops after epoch 2.
    "--set", "train.early_stopping={monitor: val_accuracy, patience: 1, min_delta: 1, restore_best_weights: true}",
    "--set", "train.loss=sparse_categorical_crossentropy", "--set", "train.from_logits=true",
    "--set", "model.4.activation=linear",
]


@pytest.fixture(scope="module")
def trained(small_dataset, tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("runs")
    return runs.find(train_tiny(small_dataset, runs_dir, "--epochs", "5", *OPTIONS), runs_dir)


def test_early_stopping_ends_the_run_and_restores_the_best_epoch(trained, small_dataset):
    import keras

    from mnistcls import data, pipeline, spec as specs

    assert trained.status == "finished" and [row["epoch"] for row in trained.history] == [1, 2]
    assert trained.metrics["epochs_run"] == 2
    first, second = (row["val_accuracy"] for row in trained.history)
    assert first != second  # else the check below could not tell the two epochs' weights apart

    # The saved model is epoch 1's, scored on the held-out fifth of the training images.
    spec = specs.parse_spec(trained.spec_text, "spec.yaml")
    dataset = data.load(str(small_dataset))
    train_x, _, val_x, val_y = pipeline.split(dataset, spec.train)
    assert (len(train_x), len(val_x)) == (480, 120)
    held_out = {image.tobytes() for image in val_x}
    assert not any(image.tobytes() in held_out for image in train_x)
    model = keras.models.load_model(trained.path / "model.keras")
    accuracy = np.mean(model.predict(val_x[..., None], verbose=0).argmax(axis=1) == val_y)
    assert accuracy == pytest.approx(first, abs=1e-6)


def test_a_logits_model_with_the_sparse_loss_evaluates_as_it_trained(trained, small_dataset):
    result = CliRunner().invoke(cli, ["evaluate", "--run", trained.id, "--dataset", str(small_dataset),
                                      "--runs-dir", str(trained.path.parent), "--json"])
    assert result.exit_code == 0, result.output
    (evaluated,) = json.loads(result.stdout)
    assert evaluated["test_accuracy"] == pytest.approx(trained.metrics["test_accuracy"], abs=1e-6)
    assert evaluated["test_loss"] == pytest.approx(trained.metrics["test_loss"], rel=1e-5)


def test_a_logits_model_predicts_probabilities(trained, tmp_path):
    import keras

    from mnistcls import images

    drawing = Image.new("L", (200, 200), "white")
    ImageDraw.Draw(drawing).rectangle([60, 20, 140, 180], fill="black")
    drawing.save(tmp_path / "shape.png")
    result = CliRunner().invoke(cli, ["predict", "--run", trained.id, "--runs-dir", str(trained.path.parent),
                                      str(tmp_path / "shape.png"), "--json"])
    assert result.exit_code == 0, result.output
    predicted = json.loads(result.stdout)
    (entry,) = predicted["images"]

    model = keras.models.load_model(trained.path / "model.keras")
    assert predicted["style"] == "mnist"  # a folder of IDX files, with no data.style: MNIST's preparation
    _, inputs = images.load_picture(tmp_path / "shape.png", "mnist")
    logits = model.predict(inputs[None, ..., None], verbose=0)[0]
    probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert [c["label"] for c in entry["top"]] == list(np.argsort(-probabilities)[:3])
    assert [c["probability"] for c in entry["top"]] == pytest.approx(np.sort(probabilities)[::-1][:3], rel=1e-5)
