"""`predict` on photos made from real test images scores close to the model's test accuracy.

For each dataset a small CNN is trained on a few thousand real images; its test
images are then turned into what a user would photograph (dark on light paper,
scaled up, off centre, on a larger sheet) and classified with `predict`. Only if
each picture is prepared as the dataset's own images were does the model see what
it was trained on.
"""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mnistcls import data
from mnistcls.cli import cli


MODEL = """\
name: small_cnn
model:
  - conv2d: {filters: 16, kernel_size: 3, activation: relu}
  - maxpool: 2
  - conv2d: {filters: 16, kernel_size: 3, activation: relu}
  - maxpool: 2
  - flatten
  - dense: {units: 10, activation: softmax}
train:
  optimizer: {name: adam, learning_rate: 0.003}
  batch_size: 64
  epochs: 2
  precision: float32
"""
TRAIN, TEST = 4000, 200  # images trained on, and test images made into photos


def _slice(source, train_split, tmp_path_factory, name):
    """A custom IDX folder: TRAIN images of `train_split` of `source` to train on, then TEST to test on."""
    folder = tmp_path_factory.mktemp(name)
    images = data.read_idx(source / f"{train_split}-images-idx3-ubyte.gz")
    labels = data.read_idx(source / f"{train_split}-labels-idx1-ubyte.gz")
    test_images = data.read_idx(source / "t10k-images-idx3-ubyte.gz")
    test_labels = data.read_idx(source / "t10k-labels-idx1-ubyte.gz")
    start = TRAIN if train_split == "t10k" else 0  # MNIST's training images may be missing: then the test set is split
    data.write_idx(folder / "train-images-idx3-ubyte.gz", images[:TRAIN])
    data.write_idx(folder / "train-labels-idx1-ubyte.gz", labels[:TRAIN])
    data.write_idx(folder / "t10k-images-idx3-ubyte.gz", test_images[start:start + TEST])
    data.write_idx(folder / "t10k-labels-idx1-ubyte.gz", test_labels[start:start + TEST])
    return folder


def _train(folder, tmp_path_factory, *overrides):
    """(runs directory, run id, test accuracy) of MODEL trained on `folder`."""
    spec = tmp_path_factory.mktemp("spec") / "small_cnn.yaml"
    spec.write_text(MODEL)
    runs_dir = tmp_path_factory.mktemp("runs")
    sets = [arg for override in overrides for arg in ("--set", override)]
    result = CliRunner().invoke(cli, ["train", "-c", str(spec), "-d", str(folder), "--runs-dir", str(runs_dir),
                                      *sets, "--json"])
    assert result.exit_code == 0, result.output
    (run,) = json.loads(result.stdout)
    return runs_dir, run["run"], run["test_accuracy"]


def _photos(folder, directory, seed=0):
    """Each test image of `folder` as a photo: dark on light paper, scaled up 3-8x, off centre, on a larger sheet."""
    rng = np.random.default_rng(seed)
    images = data.read_idx(folder / "t10k-images-idx3-ubyte.gz")
    paths = []
    for i, image in enumerate(images):
        side = int(28 * rng.uniform(3, 8))
        ink = Image.fromarray(255 - image).resize((side, side), Image.Resampling.BICUBIC)
        paper = int(rng.integers(225, 256))
        sheet = Image.new("L", (side + int(rng.integers(20, 200)), side + int(rng.integers(20, 200))), 255)
        sheet.paste(ink, (int(rng.integers(0, sheet.width - side)), int(rng.integers(0, sheet.height - side))))
        # The paper is not pure white: whatever the sheet shows as white becomes its grey.
        sheet = Image.fromarray(np.minimum(np.asarray(sheet), paper).astype(np.uint8)).convert("RGB")
        paths.append(directory / f"photo-{i:03d}.png")
        sheet.save(paths[-1])
    return paths, data.read_idx(folder / "t10k-labels-idx1-ubyte.gz")


def _photo_accuracy(runs_dir, run_id, paths, labels):
    result = CliRunner().invoke(cli, ["predict", "--runs-dir", str(runs_dir), "--run", run_id, "--json",
                                      "--top", "1", *map(str, paths)])
    assert result.exit_code == 0, result.output
    prediction = json.loads(result.stdout)
    guesses = [entry["top"][0]["label"] for entry in prediction["images"]]
    assert all(len(entry["top"]) == 1 for entry in prediction["images"])
    return float(np.mean(np.asarray(guesses) == labels)), prediction["style"]


@pytest.fixture
def fashion_folder(fashion_system_dir, tmp_path_factory):
    return _slice(fashion_system_dir, "train", tmp_path_factory, "fashion")


def test_photos_of_fashion_test_images_score_close_to_the_test_accuracy(fashion_folder, tmp_path_factory, tmp_path):
    runs_dir, run_id, test_accuracy = _train(fashion_folder, tmp_path_factory, "data.style=fashion")
    photos, labels = _photos(fashion_folder, tmp_path)
    accuracy, style = _photo_accuracy(runs_dir, run_id, photos, labels)
    assert style == "fashion"
    assert accuracy >= test_accuracy - 0.10, (accuracy, test_accuracy)


def test_photos_of_mnist_test_images_score_close_to_the_test_accuracy(real_data_dir, tmp_path_factory, tmp_path):
    folder = _slice(real_data_dir / "mnist", "t10k", tmp_path_factory, "mnist")
    runs_dir, run_id, test_accuracy = _train(folder, tmp_path_factory)  # a folder's style is mnist unless told
    photos, labels = _photos(folder, tmp_path)
    accuracy, style = _photo_accuracy(runs_dir, run_id, photos, labels)
    assert style == "mnist"
    assert accuracy >= test_accuracy - 0.10, (accuracy, test_accuracy)


@pytest.mark.parametrize("dataset, spec_style, style", [
    ("fashion", None, "fashion"), ("mnist", None, "mnist"), ("/data/kmnist", None, "mnist"),
    ("/data/my-clothes", "fashion", "fashion"), ("fashion", "mnist", "mnist")])
def test_the_picture_style_is_the_datasets_unless_the_spec_names_one(tmp_path, dataset, spec_style, style):
    from mnistcls import runs

    run = tmp_path / "20260101-000000_x"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"dataset": dataset}))
    section = {"dataset": dataset, **({"style": spec_style} if spec_style else {})}
    (run / "spec.yaml").write_text(json.dumps({"data": section}))
    assert runs.picture_style(runs.Run(run)) == style
