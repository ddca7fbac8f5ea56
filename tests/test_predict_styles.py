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


def _photos(folder, directory, seed=0, backdrop="paper"):
    """Each test image of `folder` as a photo: dark on light paper, scaled up 3-8x, off centre, on a larger sheet,
    the sheet as BACKDROPS[backdrop] makes it."""
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
        sheet = np.minimum(np.asarray(sheet), paper).astype(np.float32)
        paths.append(directory / f"photo-{backdrop}-{i:03d}.png")
        Image.fromarray(BACKDROPS[backdrop](sheet, rng)).save(paths[-1])
    return paths, data.read_idx(folder / "t10k-labels-idx1-ubyte.gz")


def _tinted(sheet, rng):
    """A coloured backdrop (beige, pale blue, pale green...): the paper's white takes the tint."""
    tint = rng.uniform(170, 240, size=3)
    return np.round(sheet[..., None] / 255.0 * tint).astype(np.uint8)


def _noisy(sheet, rng):
    """A textured backdrop (cloth or paper fibres: blotches on what is light, not on the dark garment), and a
    camera's sensor noise over everything."""
    height, width = sheet.shape
    blotches = np.asarray(Image.fromarray(rng.normal(0, 1, (height // 8 + 1, width // 8 + 1)).astype(np.float32))
                          .resize((width, height), Image.Resampling.BICUBIC))
    texture = 12 * blotches * (sheet / 255.0) ** 4
    return np.clip(sheet + texture + rng.normal(0, 10, sheet.shape), 0, 255).astype(np.uint8)


def _unevenly_lit(sheet, rng):
    """Light falling from one side, and darker corners: the backdrop goes from bright to a third darker."""
    height, width = sheet.shape
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    slope = (np.cos(angle) * (cols / width - 0.5) + np.sin(angle) * (rows / height - 0.5))
    vignette = ((rows / height - 0.5) ** 2 + (cols / width - 0.5) ** 2)
    light = 1.0 - 0.25 * (slope + 0.5) - 0.3 * vignette
    return np.clip(sheet * light, 0, 255).astype(np.uint8)


BACKDROPS = {"paper": lambda sheet, rng: np.stack([sheet.astype(np.uint8)] * 3, axis=-1),
             "tinted": _tinted, "noisy": _noisy, "unevenly lit": _unevenly_lit}


def _photo_accuracy(runs_dir, run_id, paths, labels):
    result = CliRunner().invoke(cli, ["predict", "--runs-dir", str(runs_dir), "--run", run_id, "--json",
                                      "--top", "1", *map(str, paths)])
    assert result.exit_code == 0, result.output
    prediction = json.loads(result.stdout)
    guesses = [entry["top"][0]["label"] for entry in prediction["images"]]
    assert all(len(entry["top"]) == 1 for entry in prediction["images"])
    return float(np.mean(np.asarray(guesses) == labels)), prediction["style"]


@pytest.fixture(scope="module")
def fashion_run(fashion_system_dir, tmp_path_factory):
    """(folder, runs directory, run id, test accuracy) of MODEL trained on a slice of the real Fashion-MNIST."""
    folder = _slice(fashion_system_dir, "train", tmp_path_factory, "fashion")
    return (folder, *_train(folder, tmp_path_factory, "data.style=fashion"))


@pytest.mark.real_data
@pytest.mark.parametrize("backdrop", BACKDROPS)
def test_photos_of_fashion_test_images_score_close_to_the_test_accuracy(fashion_run, tmp_path, backdrop):
    """Garments photographed dark on a light backdrop, plain, tinted, textured or unevenly lit."""
    folder, runs_dir, run_id, test_accuracy = fashion_run
    photos, labels = _photos(folder, tmp_path, backdrop=backdrop)
    accuracy, style = _photo_accuracy(runs_dir, run_id, photos, labels)
    assert style == "fashion"
    assert accuracy >= test_accuracy - 0.08, (accuracy, test_accuracy)


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
