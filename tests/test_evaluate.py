"""`mnistcls evaluate` end to end, with a tiny model trained once on the generated shapes (conftest)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mnistcls import data, runs
from mnistcls.cli import cli


@pytest.fixture(scope="module")
def trained(tiny_run):
    """(runs directory, run) of the session's tiny run."""
    runs_dir, run_id = tiny_run
    return runs_dir, runs.find(run_id, runs_dir)


def evaluate(*args):
    return CliRunner().invoke(cli, ["evaluate", *args])


@pytest.fixture(scope="module")
def evaluated(trained, small_dataset):
    """The --json report of evaluating the run on the dataset it was trained on."""
    runs_dir, run = trained
    result = evaluate("--run", run.id, "--dataset", str(small_dataset), "--runs-dir", str(runs_dir), "--json")
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.stdout)
    return report


def test_evaluating_a_saved_run_reproduces_its_recorded_test_results(trained, evaluated):
    _, run = trained
    assert evaluated["run"] == run.id and not evaluated["trained_elsewhere"]
    assert evaluated["test_accuracy"] == pytest.approx(run.metrics["test_accuracy"], abs=1e-6)
    assert evaluated["test_loss"] == pytest.approx(run.metrics["test_loss"], rel=1e-5)


def test_per_class_scores_and_confusion_agree_with_a_hand_count(trained, evaluated, small_dataset):
    import keras

    _, run = trained
    test = data.load(str(small_dataset), splits=("test",))
    predicted = keras.models.load_model(run.path / "model.keras").predict(test.x_test[..., None], verbose=0).argmax(1)
    confusion = np.zeros((10, 10), dtype=int)
    for true, guess in zip(test.y_test, predicted):
        confusion[true, guess] += 1

    assert evaluated["confusion"] == confusion.tolist()
    assert evaluated["images"] == 200 and evaluated["errors"] == 200 - np.trace(confusion)
    assert [c["class"] for c in evaluated["classes"]] == test.class_names
    assert [c["support"] for c in evaluated["classes"]] == np.bincount(test.y_test, minlength=10).tolist()
    for k, scores in enumerate(evaluated["classes"]):
        predicted_as_k = confusion[:, k].sum()
        assert scores["precision"] == pytest.approx(confusion[k, k] / predicted_as_k if predicted_as_k else 0.0)
        assert scores["recall"] == pytest.approx(confusion[k, k] / confusion[k].sum())
    assert evaluated["macro"]["f1"] == pytest.approx(np.mean([c["f1"] for c in evaluated["classes"]]))
    assert evaluated["weighted"]["recall"] == pytest.approx(evaluated["test_accuracy"])  # support-weighted recall

    worst = evaluated["top_confusions"][0]
    names = test.class_names
    mistakes = confusion - np.diag(np.diag(confusion))
    assert worst["count"] == mistakes.max() == confusion[names.index(worst["true"]), names.index(worst["predicted"])]


def test_the_latest_run_is_printed_with_class_names_and_its_pictures(trained, small_dataset):
    runs_dir, run = trained
    result = evaluate("--dataset", str(small_dataset), "--runs-dir", str(runs_dir))
    assert result.exit_code == 0, result.output
    out = result.output
    assert run.id in out and "triangle" in out and "macro average" in out and "weighted average" in out
    assert "confusion matrix" in out and " predicted as " in out
    for kind in ("confusion", "misclassified"):
        (picture,) = run.path.glob(f"{kind}-{small_dataset.name}-*.png")  # a folder's name and a hash of its path
        assert str(picture) in out
        assert Image.open(picture).size[0] > 300


def test_mnist_with_only_its_test_files_and_a_model_trained_elsewhere(trained, real_data_dir):
    runs_dir, run = trained
    args = ["--run", run.id, "--dataset", "mnist", "--data-dir", str(real_data_dir), "--runs-dir", str(runs_dir)]
    result = evaluate(*args)
    assert result.exit_code == 0, result.output
    assert f"was trained on {run.info['dataset']}, not on mnist" in " ".join(result.output.split())
    assert "10,000" in result.output and (run.path / "confusion-mnist.png").is_file()

    (report,) = json.loads(evaluate(*args, "--json").stdout)
    assert report["trained_elsewhere"] and report["images"] == 10_000
    assert [c["class"] for c in report["classes"]] == [str(d) for d in range(10)]


@pytest.mark.parametrize("shape, labels, message", [
    ((5, 14, 14), [0, 1, 2, 3, 9], "the model takes 28x28 images"),
    ((5, 28, 28), [0, 1, 2, 3, 4], "the model tells 10 classes apart"),
], ids=["image-size", "class-count"])
def test_a_model_that_does_not_fit_the_dataset_is_one_clear_error(trained, tmp_path, shape, labels, message):
    runs_dir, run = trained
    data.write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros(shape, dtype=np.uint8))
    data.write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array(labels, dtype=np.uint8))
    result = evaluate("--run", run.id, "--dataset", str(tmp_path), "--runs-dir", str(runs_dir))
    assert result.exit_code == 2
    assert message in result.output and run.id in result.output and "Traceback" not in result.output


def test_a_run_that_saved_no_model_is_one_clear_error_and_all_skips_it(trained, small_dataset, tmp_path):
    _, run = trained
    shutil.copytree(run.path, tmp_path / run.id)
    failed = runs.Run(tmp_path / "20000101-000000_tiny_cnn_failed")
    shutil.copytree(run.path, failed.path, ignore=shutil.ignore_patterns("model.keras", "metrics.json"))
    failed.update(status="failed", error="RuntimeError: before the first epoch")

    result = evaluate("--run", failed.id, "--runs-dir", str(tmp_path))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"run {failed.id} (failed) has no model.keras" in " ".join(result.output.split())

    result = evaluate("--dataset", str(small_dataset), "--all", "--runs-dir", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    assert [r["run"] for r in json.loads(result.stdout)] == [run.id]


def test_what_to_evaluate_must_be_said(tmp_path):
    assert "--dataset" in evaluate("--runs-dir", str(tmp_path)).output
    assert evaluate("--all", "--run", "x", "-d", "fashion").exit_code == 2
    result = evaluate("--dataset", "fashion", "--runs-dir", str(tmp_path))
    assert result.exit_code == 2 and "no run in" in result.output


def test_two_dataset_folders_of_one_name_get_pictures_of_their_own(trained, small_dataset, tmp_path):
    runs_dir, run = trained
    files = []
    for parent in ("old", "new"):
        copy = shutil.copytree(small_dataset, tmp_path / parent / "clothes")
        result = evaluate("--run", run.id, "--dataset", str(copy), "--runs-dir", str(runs_dir), "--json")
        assert result.exit_code == 0, result.output
        files.append(json.loads(result.stdout)[0]["files"])
    old, new = files
    assert old["confusion"] != new["confusion"] and old["misclassified"] != new["misclassified"]
    assert all(Path(path).is_file() and Path(path).parent == run.path for f in files for path in f.values())


def test_the_misclassified_grid_shows_the_most_confident_mistakes_first(trained, small_dataset):
    import keras

    from mnistcls import evaluate as evaluation

    _, run = trained
    test = data.load(str(small_dataset), splits=("test",))
    result = evaluation.evaluate(evaluation.load_model(run.path / "model.keras"), test, "none")
    probabilities = keras.models.load_model(run.path / "model.keras").predict(test.x_test[..., None], verbose=0)
    wrong = np.flatnonzero(probabilities.argmax(1) != test.y_test)
    confidences = probabilities[result.mistakes].max(axis=1)
    assert sorted(result.mistakes) == list(wrong) and len(wrong) > 1
    assert np.all(np.diff(confidences) <= 1e-6) and confidences[0] == pytest.approx(probabilities[wrong].max())


def test_flip_test_time_augmentation_is_recorded_reproduced_and_mirror_invariant(small_dataset, tmp_path):
    import dataclasses

    from conftest import TINY_SPEC
    from mnistcls import evaluate as evaluation

    result = CliRunner().invoke(cli, ["train", "-c", TINY_SPEC, "-d", str(small_dataset), "--epochs", "1",
                                      "--set", "data.tta=flip", "--runs-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert 0 < row["test_accuracy"] <= 1 and 0 < row["test_accuracy_without_tta"] <= 1

    # `evaluate` asks the saved model the same way: it reproduces the recorded (flip-averaged) figures.
    (report,) = json.loads(evaluate("--run", row["run"], "--runs-dir", str(tmp_path), "--json").stdout)
    assert report["test_accuracy"] == row["test_accuracy"]
    assert report["test_loss"] == pytest.approx(row["test_loss"], rel=1e-5)

    # Averaging over an image and its mirror gives a mirrored image the same prediction.
    model = evaluation.load_model(tmp_path / row["run"] / "model.keras")
    test = data.load(str(small_dataset), splits=("test",))
    mirrored = dataclasses.replace(test, x_test=np.ascontiguousarray(test.x_test[:, :, ::-1]))
    np.testing.assert_array_equal(evaluation.evaluate(model, mirrored, "flip").predicted,
                                  evaluation.evaluate(model, test, "flip").predicted)


def test_a_shifted_image_moves_by_one_pixel_and_its_uncovered_edge_is_black():
    from mnistcls.evaluate import shifted

    image = np.arange(1, 10, dtype=np.uint8).reshape(1, 3, 3)
    np.testing.assert_array_equal(shifted(image, 1, 0)[0], [[0, 0, 0], [1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(shifted(image, 0, -1)[0], [[2, 3, 0], [5, 6, 0], [8, 9, 0]])
    np.testing.assert_array_equal(shifted(image, 0, 0), image)


@pytest.mark.parametrize("tta, shifts, mirrored", [
    ("none", [(0, 0)], False), ("flip", [(0, 0)], True),
    ("shift", [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)], False),
    ("flip_shift", [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)], True)])
def test_test_time_augmentation_averages_the_predictions_of_its_views(tta, shifts, mirrored):
    from mnistcls.evaluate import shifted, with_tta

    seen = []

    def predict(pixels):  # a stand-in runtime: one output row per image, its pixels
        seen.append(pixels)
        return pixels.reshape(len(pixels), -1).astype(np.float64)

    images = np.random.default_rng(0).integers(1, 256, (4, 28, 28)).astype(np.uint8)
    outputs = with_tta(predict, images, tta)
    expected = [view for rows, columns in shifts
                for view in ([shifted(images, rows, columns)]
                             + ([shifted(images, rows, columns)[:, :, ::-1]] if mirrored else []))]
    assert len(seen) == len(expected)
    assert all(np.array_equal(a, b) for a, b in zip(seen, expected))  # these views, in this order
    np.testing.assert_allclose(outputs, np.mean([v.reshape(4, -1) for v in expected], axis=0))


def test_flip_shift_gives_an_image_and_its_mirror_the_same_prediction_and_shift_alone_does_not():
    from mnistcls.evaluate import with_tta

    rng = np.random.default_rng(1)
    weights = rng.normal(size=(28 * 28, 10))

    def predict(pixels):  # a linear stand-in model with no symmetry of its own
        return pixels.reshape(len(pixels), -1).astype(np.float64) @ weights

    images = rng.integers(0, 256, (8, 28, 28)).astype(np.uint8)
    mirrored = np.ascontiguousarray(images[:, :, ::-1])
    np.testing.assert_allclose(with_tta(predict, mirrored, "flip_shift"), with_tta(predict, images, "flip_shift"))
    assert not np.allclose(with_tta(predict, mirrored, "shift"), with_tta(predict, images, "shift"))
