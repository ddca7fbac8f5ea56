"""Tests of mnistcls.data: IDX files, finding and verifying datasets, the cache, downloads.

Real data comes from the fixtures `fashion_system_dir` (Debian's Fashion-MNIST) and
`real_data_dir` (the real MNIST, all four files); tests needing them skip
when they are absent. Downloads go to a local HTTP server started by the test.
"""

import gzip
import http.server
import json
import os
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from mnistcls import data
from mnistcls.data.idx import idx_bytes
from mnistcls.errors import DataError, UsageError

FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def make_dataset(folder, *, n_train=6, n_test=4, shape=(5, 7), classes=None, gz=True, seed=0):
    """Write a small random dataset of four IDX files into `folder`; return its arrays."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 3, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 3, n_test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        data.write_idx(folder / (name + (".gz" if gz else "")), array)
    if classes is not None:
        (folder / "classes.txt").write_text("\n".join(classes) + "\n")
    return arrays


def link_files(target_folder, sources):
    """Make `target_folder/<name>` a symlink to each source path (cheap stand-ins for copies)."""
    target_folder.mkdir(parents=True, exist_ok=True)
    for name, source in sources.items():
        (target_folder / name).symlink_to(source)


def tree(folder):
    """Every path under `folder` (empty when it does not exist)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def cache_dir():
    return Path(os.environ["MNISTCLS_CACHE_DIR"])


def pixel_mean_std(images):
    """Mean and std of images/255, from a histogram (no float copy of 47M pixels)."""
    counts = np.bincount(np.asarray(images).ravel(), minlength=256).astype(np.float64)
    values = np.arange(256) / 255
    mean = (counts * values).sum() / counts.sum()
    return mean, np.sqrt((counts * (values - mean) ** 2).sum() / counts.sum())


# --------------------------------------------------------------------------------------
# IDX files
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, suffix):
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    path = tmp_path / ("x.idx" + suffix)
    data.write_idx(path, array)
    back = data.read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, array)


def test_idx_layout_is_the_original_format(tmp_path):
    data.write_idx(tmp_path / "images", np.zeros((2, 3, 4), np.uint8))
    raw = (tmp_path / "images").read_bytes()
    assert raw[:16] == bytes.fromhex("00000803000000020000000300000004")
    assert len(raw) == 16 + 24


def test_read_idx_names_a_bad_file(tmp_path):
    path = tmp_path / "broken.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x05abc"))  # 5 labels promised, 3 given
    with pytest.raises(DataError, match=r"broken.gz.*truncated"):
        data.read_idx(path)


# --------------------------------------------------------------------------------------
# Custom datasets
# --------------------------------------------------------------------------------------


def test_custom_dataset_round_trip_with_classes_txt(tmp_path):
    folder = tmp_path / "shapes"
    arrays = make_dataset(folder, classes=["circle", "square", "triangle"])
    ds = data.load(str(folder))
    assert ds.name == "shapes" and ds.source == str(folder)
    assert ds.verified is None
    assert ds.class_names == ["circle", "square", "triangle"] and ds.num_classes == 3
    assert ds.image_shape == (5, 7)
    np.testing.assert_array_equal(ds.x_train, arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.y_train, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(ds.x_test, arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])


def test_custom_dataset_uncompressed_without_classes_txt(tmp_path):
    arrays = make_dataset(tmp_path / "own", gz=False)
    ds = data.load(tmp_path / "own")
    top = max(arrays["train-labels-idx1-ubyte"].max(), arrays["t10k-labels-idx1-ubyte"].max())
    assert ds.class_names == [str(i) for i in range(top + 1)]


def test_custom_dataset_with_int32_labels_and_test_split_only(tmp_path):
    folder = tmp_path / "kmnist"
    folder.mkdir()
    data.write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((3, 4, 4), np.uint8))
    data.write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.array([0, 7, 300], np.int32))
    ds = data.load(str(folder), splits=("test",))
    assert ds.x_train is None and ds.y_train is None
    assert ds.y_test.tolist() == [0, 7, 300] and ds.num_classes == 301


@pytest.mark.parametrize(
    "file, array, message",
    [
        ("train-images-idx3-ubyte.gz", np.zeros((6, 5, 7, 3), np.uint8), "2-D"),
        ("train-images-idx3-ubyte.gz", np.zeros((6, 35), np.uint8), "2-D"),
        ("train-images-idx3-ubyte.gz", np.zeros((6, 5, 7), np.float32), "0x00000d03"),
        ("train-labels-idx1-ubyte.gz", np.zeros(6, np.float32), "labels need 0x00000801: integers"),
    ],
)
def test_custom_dataset_wrong_kind_of_file(tmp_path, file, array, message):
    make_dataset(tmp_path / "own")
    data.write_idx(tmp_path / "own" / file, array)
    with pytest.raises(DataError, match=message) as error:
        data.load(str(tmp_path / "own"))
    assert file in str(error.value)


def test_custom_dataset_image_and_label_counts_must_agree(tmp_path):
    make_dataset(tmp_path / "own")
    data.write_idx(tmp_path / "own" / "t10k-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))
    with pytest.raises(DataError, match=r"4 images but .*t10k-labels-idx1-ubyte.gz holds 3 labels") as error:
        data.load(str(tmp_path / "own"))
    assert "t10k-images-idx3-ubyte.gz" in str(error.value)


def test_custom_dataset_classes_txt_too_short(tmp_path):
    make_dataset(tmp_path / "own", classes=["only one"])
    with pytest.raises(DataError, match=r"classes.txt names 1 classes, but the labels go up to 2"):
        data.load(str(tmp_path / "own"))


def test_custom_dataset_missing_file(tmp_path):
    make_dataset(tmp_path / "own")
    (tmp_path / "own" / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="has no train-images-idx3-ubyte"):
        data.load(str(tmp_path / "own"))


def test_unknown_dataset_name_is_a_usage_error_with_a_suggestion():
    with pytest.raises(UsageError, match=r"Unknown dataset 'digits'.*mnist, fashion"):
        data.load("digits")
    with pytest.raises(UsageError, match=r"Unknown dataset 'fashon' \(did you mean 'fashion'\?\)"):
        data.load("fashon")


# --------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------


def test_fashion_from_the_system_folder_then_from_the_cache(monkeypatch, fashion_system_dir):
    monkeypatch.setattr(data, "SYSTEM_DIRS", [fashion_system_dir])
    ds = data.load("fashion")
    assert ds.source == str(fashion_system_dir) and ds.verified is True
    assert ds.class_names == FASHION_CLASSES
    assert ds.x_train.shape == (60_000, 28, 28) and ds.x_test.shape == (10_000, 28, 28)
    assert ds.x_train.dtype == np.uint8 and ds.image_shape == (28, 28)
    assert ds.y_train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    mean, std = pixel_mean_std(ds.x_train)
    assert (round(mean, 4), round(std, 4)) == (0.2860, 0.3530)

    # The first load verified the files and kept decompressed copies; the second
    # memory-maps those copies and does not read the archives again.
    stamps = json.loads((cache_dir() / "stamps.json").read_text())["files"]
    assert str(fashion_system_dir / "train-images-idx3-ubyte.gz") in stamps
    again = data.load("fashion")
    assert isinstance(again.x_train, np.memmap)
    assert Path(again.x_train.filename).parent == cache_dir() / "arrays"
    np.testing.assert_array_equal(again.y_test, ds.y_test)


def test_mnist_test_split_from_the_data_dir(monkeypatch, real_data_dir):
    monkeypatch.setenv("MNISTCLS_DATA_DIR", str(real_data_dir))
    ds = data.load("mnist", splits=("test",))
    assert ds.x_train is None and ds.y_train is None
    assert ds.source == str(real_data_dir / "mnist") and ds.verified is True
    assert ds.class_names == [str(d) for d in range(10)]
    assert np.bincount(ds.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    mean, std = pixel_mean_std(ds.x_test)
    assert (round(mean, 4), round(std, 4)) == (0.1325, 0.3105)


def test_mnist_training_labels(real_data_dir):
    labels = data.read_idx(real_data_dir / "mnist" / "train-labels-idx1-ubyte.gz")
    assert labels.shape == (60_000,)
    assert labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


def test_mnist_complete_from_the_data_dir(monkeypatch, real_data_dir):
    """All four MNIST files verify by their content, although none is upstream's own archive."""
    monkeypatch.setenv("MNISTCLS_DATA_DIR", str(real_data_dir))
    ds = data.load("mnist")
    assert ds.verified is True and ds.x_train.shape == (60_000, 28, 28)
    assert np.bincount(ds.y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    mean, std = pixel_mean_std(ds.x_train)
    assert (round(mean, 4), round(std, 4)) == (0.1307, 0.3081)


def _mnist_names(real_data_dir, rename):
    """{rename(original name): shared copy} for MNIST's four .gz files."""
    return {rename(f.name): real_data_dir / "mnist" / f"{f.name}.gz" for f in data.FILES}


@pytest.mark.parametrize("style", ["dotted .gz", "dotted uncompressed", "original uncompressed"])
def test_copies_under_other_names_and_uncompressed_verify(tmp_path, real_data_dir, style):
    """The dotted names Kaggle and several packages use, with or without .gz, and bare IDX files."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    dotted = style.startswith("dotted")
    for f in data.FILES:
        name = f.name.replace("-idx", ".idx") if dotted else f.name
        source = (real_data_dir / "mnist" / f"{f.name}.gz").read_bytes()
        if style.endswith(".gz"):
            (folder / f"{name}.gz").write_bytes(source)
        else:
            (folder / name).write_bytes(gzip.decompress(source))
    ds = data.load("mnist", data_dir=tmp_path)
    assert ds.verified and ds.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    expected_train = folder / ("train-images.idx3-ubyte" if dotted else "train-images-idx3-ubyte")
    assert ds.files["train-images-idx3-ubyte"] == str(expected_train) + (".gz" if style.endswith(".gz") else "")


def test_custom_dataset_with_dotted_names(tmp_path):
    arrays = make_dataset(tmp_path / "plain", gz=False)
    folder = tmp_path / "dotted"
    folder.mkdir()
    for name in arrays:
        (tmp_path / "plain" / name).rename(folder / name.replace("-idx", ".idx"))
    ds = data.load(str(folder))
    np.testing.assert_array_equal(ds.x_train, arrays["train-images-idx3-ubyte"])


def test_truncated_mnist_training_images_are_refused(tmp_path, real_data_dir):
    folder = tmp_path / "mnist"
    folder.mkdir()
    content = gzip.decompress((real_data_dir / "mnist" / "train-images-idx3-ubyte.gz").read_bytes())
    (folder / "train-images.idx3-ubyte").write_bytes(content[:-784])  # the last image cut off
    [report] = [r for r in data.survey(data_dir=tmp_path) if r.name == "mnist"]
    bad = report.places[0].files[0]
    assert bad.status == data.Status.BAD and "truncated" in bad.reason


def test_mnist_training_images_missing_offline(monkeypatch, real_data_dir, tmp_path):
    link_files(tmp_path / "mnist", {f"{name}.gz": real_data_dir / "mnist" / f"{name}.gz"
                                    for name in (*TEST_FILES, "train-labels-idx1-ubyte")})
    monkeypatch.setenv("MNISTCLS_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError) as error:
        data.load("mnist")
    message = str(error.value)
    assert message.splitlines()[0] == "MNIST: train-images-idx3-ubyte not found."
    for place in (
        tmp_path / "mnist",
        cache_dir() / "mnist",
        Path(os.environ["KERAS_HOME"]) / "datasets" / "mnist.npz",
        Path("/usr/share/datasets/mnist"),
    ):
        assert str(place) in message
    assert "Downloading is switched off" in message
    assert "apt-get" not in message  # no package provides MNIST


def test_fashion_missing_suggests_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "SYSTEM_DIRS", [tmp_path / "fashion-mnist"])
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist") as error:
        data.load("fashion", splits=("test",))
    assert str(tmp_path / "fashion-mnist") in str(error.value)
    assert "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte not found" in str(error.value)


def test_uncompressed_files_and_fashion_mnist_folder_name(tmp_path, fashion_system_dir):
    folder = tmp_path / "fashion-mnist"  # Keras' name for the folder is accepted too
    folder.mkdir()
    for name in TEST_FILES:
        (folder / name).write_bytes(gzip.decompress((fashion_system_dir / f"{name}.gz").read_bytes()))
    ds = data.load("fashion", data_dir=tmp_path, splits=("test",))
    assert ds.source == str(folder) and ds.x_test.shape == (10_000, 28, 28)


def test_survey_reports_each_place_and_file(monkeypatch, real_data_dir):
    monkeypatch.setenv("MNISTCLS_DATA_DIR", str(real_data_dir))
    monkeypatch.setattr(data, "SYSTEM_DIRS", [])
    mnist, fashion = data.survey()
    assert [p.place for p in mnist.places] == ["MNISTCLS_DATA_DIR", "mnistcls cache", "Keras cache"]
    assert {f.file: f.status for f in mnist.places[0].files} == {f.name: data.Status.VERIFIED for f in data.FILES}
    assert all(f.status == data.Status.MISSING for place in mnist.places[1:] for f in place.files)
    assert mnist.missing == [] and mnist.ready
    assert len(fashion.missing) == 4


# --------------------------------------------------------------------------------------
# Corrupt and wrong files
# --------------------------------------------------------------------------------------


def _plain(array):
    return idx_bytes(array)


@pytest.mark.parametrize(
    "content, message",
    [
        pytest.param(
            lambda: gzip.compress(_plain(np.zeros((10_000, 28, 28), np.uint8)))[:3000],
            "not a complete gzip file",
            id="truncated-gz",
        ),
        pytest.param(
            lambda: gzip.compress(_plain(np.zeros(10_000, np.uint8))),
            "magic 0x00000801, but images need 0x00000803",
            id="wrong-magic",
        ),
        pytest.param(lambda: gzip.compress(b"this is no IDX file"), "not an IDX file", id="garbage"),
        pytest.param(
            lambda: gzip.compress(_plain(np.zeros((10_000, 28, 28), np.uint8))[:-100]),
            "header .* calls for 7,840,016: it is truncated",
            id="length-mismatch",
        ),
        pytest.param(
            lambda: gzip.compress(_plain(np.zeros((9_999, 28, 28), np.uint8))),
            "holds 9,999 images where .* t10k-images-idx3-ubyte has 10,000",
            id="count",
        ),
        pytest.param(
            lambda: gzip.compress(_plain(np.zeros((10_000, 32, 32), np.uint8))),
            "32x32 images",
            id="image-size",
        ),
        pytest.param(
            lambda: gzip.compress(
                _plain(np.random.default_rng(0).integers(0, 256, (10_000, 28, 28), dtype=np.uint8)),
                compresslevel=1,
            ),
            "does not match Fashion-MNIST's t10k-images-idx3-ubyte",
            id="random-pixels",
        ),
    ],
)
def test_bad_file_is_never_used(tmp_path, monkeypatch, content, message):
    monkeypatch.setattr(data, "SYSTEM_DIRS", [])
    bad = tmp_path / "fashion" / "t10k-images-idx3-ubyte.gz"
    bad.parent.mkdir()
    bad.write_bytes(content())
    with pytest.raises(DataError, match=message) as error:
        data.load("fashion", data_dir=tmp_path, splits=("test",))
    assert str(bad) in str(error.value)
    assert "Delete it" in str(error.value)
    assert not (cache_dir() / "arrays").exists()


def test_labels_with_the_wrong_count(tmp_path, fashion_system_dir):
    name = "t10k-images-idx3-ubyte.gz"
    link_files(tmp_path / "fashion", {name: fashion_system_dir / name})
    data.write_idx(tmp_path / "fashion" / "t10k-labels-idx1-ubyte.gz", np.zeros(9_000, np.uint8))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: holds 9,000 labels where .* has 10,000"):
        data.load("fashion", data_dir=tmp_path, splits=("test",))


def test_train_and_test_swapped(tmp_path, fashion_system_dir):
    swapped = {"train": "t10k", "t10k": "train"}
    link_files(
        tmp_path / "fashion",
        {
            f"{split}-{kind}.gz": fashion_system_dir / f"{swapped[split]}-{kind}.gz"
            for split in swapped
            for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")
        },
    )
    with pytest.raises(DataError) as error:
        data.load("fashion", data_dir=tmp_path)
    first_line = str(error.value).splitlines()[0]
    assert first_line.startswith(str(tmp_path / "fashion" / "train-images-idx3-ubyte.gz"))
    assert "holds Fashion-MNIST's t10k-images-idx3-ubyte, not Fashion-MNIST's train-images" in first_line


def test_images_of_the_other_dataset(tmp_path, real_data_dir):
    name = "t10k-images-idx3-ubyte.gz"
    link_files(tmp_path / "fashion", {name: real_data_dir / "mnist" / name})
    with pytest.raises(DataError, match="holds MNIST's t10k-images-idx3-ubyte, not Fashion-MNIST's"):
        data.load("fashion", data_dir=tmp_path, splits=("test",))


def test_a_changed_file_is_checked_again(tmp_path, real_data_dir):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in TEST_FILES:
        shutil.copy(real_data_dir / "mnist" / f"{name}.gz", folder)
    assert data.load("mnist", data_dir=tmp_path, splits=("test",)).verified

    labels = folder / "t10k-labels-idx1-ubyte.gz"
    y = data.read_idx(labels)
    data.write_idx(labels, y[::-1])
    os.utime(labels, ns=(labels.stat().st_atime_ns, labels.stat().st_mtime_ns + 10**9))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: does not match MNIST's"):
        data.load("mnist", data_dir=tmp_path, splits=("test",))


def test_a_damaged_cache_copy_is_rebuilt(monkeypatch, real_data_dir):
    monkeypatch.setenv("MNISTCLS_DATA_DIR", str(real_data_dir))
    first = data.load("mnist", splits=("test",))
    expected = np.array(first.x_test)
    npy = Path(first.x_test.filename)
    npy.write_bytes(npy.read_bytes()[:1000])
    again = data.load("mnist", splits=("test",))
    np.testing.assert_array_equal(again.x_test, expected)


def test_survey_reports_a_bad_file_and_can_skip_checks(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SYSTEM_DIRS", [])
    folder = tmp_path / "fashion"
    folder.mkdir()
    (folder / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x27\x10")
    data.write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(60_000, np.uint8))

    unchecked = {f.file: f for f in data.survey(data_dir=tmp_path, verify=False)[1].places[0].files}
    assert unchecked["t10k-labels-idx1-ubyte"].status == data.Status.UNCHECKED

    files = {f.file: f for f in data.survey(data_dir=tmp_path)[1].places[0].files}
    assert files["t10k-labels-idx1-ubyte"].status == data.Status.BAD
    assert "truncated" in files["t10k-labels-idx1-ubyte"].reason
    assert files["train-labels-idx1-ubyte"].status == data.Status.BAD
    assert "does not match" in files["train-labels-idx1-ubyte"].reason
    assert files["train-images-idx3-ubyte"].status == data.Status.MISSING


# --------------------------------------------------------------------------------------
# Keras' own copy
# --------------------------------------------------------------------------------------


def test_keras_mnist_npz(tmp_path, real_data_dir, monkeypatch):
    keras_datasets = Path(os.environ["KERAS_HOME"]) / "datasets"
    keras_datasets.mkdir(parents=True)
    mnist = real_data_dir / "mnist"
    np.savez_compressed(
        keras_datasets / "mnist.npz",
        x_train=np.zeros((60_000, 28, 28), np.uint8),  # not MNIST's: must be refused
        y_train=data.read_idx(mnist / "train-labels-idx1-ubyte.gz"),
        x_test=data.read_idx(mnist / "t10k-images-idx3-ubyte.gz"),
        y_test=data.read_idx(mnist / "t10k-labels-idx1-ubyte.gz"),
    )
    ds = data.load("mnist", splits=("test",))
    assert ds.source == str(keras_datasets / "mnist.npz") and ds.verified
    assert np.bincount(ds.y_test)[:3].tolist() == [980, 1135, 1032]
    with pytest.raises(DataError, match=r"mnist.npz \[x_train\]: does not match MNIST's train-images"):
        data.load("mnist")


# --------------------------------------------------------------------------------------
# Downloads, from a local HTTP server
# --------------------------------------------------------------------------------------


class _MirrorHandler(http.server.BaseHTTPRequestHandler):
    """Serves `server.routes`: path -> (body, Content-Length to announce); records requests."""

    def do_GET(self):
        self.server.requests.append(self.path)
        if self.path not in self.server.routes:
            self.send_error(404)
            return
        body, length = self.server.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(monkeypatch):
    """A local mirror, with downloads switched on and pointed at it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MirrorHandler)
    server.routes, server.requests = {}, []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("MNISTCLS_MIRROR", server.url)
    monkeypatch.setenv("MNISTCLS_OFFLINE", "0")
    monkeypatch.setattr(data, "SYSTEM_DIRS", [])
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def serve(server, folder, names=TEST_FILES, prefix="/mnist/"):
    """Serve the .gz files `names` of `folder` as they are."""
    for name in names:
        body = (folder / f"{name}.gz").read_bytes()
        server.routes[f"{prefix}{name}.gz"] = (body, len(body))


def test_download_lands_verified_in_the_cache(mirror, real_data_dir):
    serve(mirror, real_data_dir / "mnist")
    calls = []
    ds = data.load("mnist", splits=("test",), progress=lambda *args: calls.append(args))
    assert mirror.requests == ["/mnist/t10k-images-idx3-ubyte.gz", "/mnist/t10k-labels-idx1-ubyte.gz"]
    assert ds.source == str(cache_dir() / "mnist") and ds.verified
    assert tree(cache_dir() / "mnist") == [f"{name}.gz" for name in TEST_FILES]
    size = (real_data_dir / "mnist" / "t10k-images-idx3-ubyte.gz").stat().st_size
    images_calls = [c for c in calls if "t10k-images" in c[0]]
    assert images_calls[0][1:] == (0, size) and images_calls[-1][1:] == (size, size)
    assert np.bincount(ds.y_test)[:3].tolist() == [980, 1135, 1032]

    data.load("mnist", splits=("test",))  # now found in the cache: no new request
    assert len(mirror.requests) == 2


def test_mirrors_are_tried_in_order(mirror, monkeypatch, real_data_dir):
    serve(mirror, real_data_dir / "mnist")
    monkeypatch.setenv("MNISTCLS_MIRROR", f"{mirror.url}/gone {mirror.url}")
    data.load("mnist", splits=("test",))
    first_file = "mnist/t10k-images-idx3-ubyte.gz"
    assert mirror.requests[:2] == [f"/gone/{first_file}", f"/{first_file}"]


def _closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("failure", ["wrong-bytes", "cut-short", "truncated-gz", "404", "no-server"])
def test_failed_download_leaves_nothing_behind(mirror, monkeypatch, real_data_dir, failure):
    serve(mirror, real_data_dir / "mnist")
    images = "/mnist/t10k-images-idx3-ubyte.gz"
    body = mirror.routes[images][0]
    expected = {
        "wrong-bytes": "the file received does not match MNIST's t10k-images-idx3-ubyte",
        "cut-short": f"cut short after {len(body):,} of {len(body) + 1000:,} bytes",
        "truncated-gz": "not a complete gzip file",
        "404": "HTTP error 404",
        "no-server": "cannot connect",
    }[failure]
    if failure == "wrong-bytes":
        content = bytearray(gzip.decompress(body))
        content[-1] ^= 0xFF  # one pixel differs
        wrong = gzip.compress(bytes(content), compresslevel=1)
        mirror.routes[images] = (wrong, len(wrong))
    elif failure == "cut-short":
        mirror.routes[images] = (body, len(body) + 1000)
    elif failure == "truncated-gz":
        mirror.routes[images] = (body[: len(body) // 2], len(body) // 2)
    elif failure == "404":
        del mirror.routes[images]
    else:
        monkeypatch.setenv("MNISTCLS_MIRROR", _closed_port_url())
    (cache_dir() / "fashion").mkdir(parents=True)
    before = tree(cache_dir())

    with pytest.raises(DataError, match=expected) as error:
        data.load("mnist", splits=("test",))
    message = str(error.value)
    assert message.startswith("MNIST: t10k-images-idx3-ubyte not found and could not be downloaded.")
    assert "t10k-images-idx3-ubyte.gz: " in message  # the URL that failed, with the reason
    assert tree(cache_dir()) == before


def test_offline_makes_no_request(mirror):
    with pytest.raises(DataError, match="Downloading is switched off"):
        data.load("mnist", splits=("test",), offline=True)
    with pytest.raises(DataError, match="Downloading is switched off"):
        data.download("mnist", offline=True)
    assert mirror.requests == []


def test_offline_from_the_environment(mirror, monkeypatch):
    monkeypatch.setenv("MNISTCLS_OFFLINE", "1")
    with pytest.raises(DataError, match="Downloading is switched off"):
        data.load("fashion")
    assert mirror.requests == []


def test_survey_never_downloads(mirror):
    reports = data.survey()
    assert all(report.missing == [f.name for f in data.FILES] for report in reports)
    assert mirror.requests == []


def test_download_fetches_only_what_is_missing(mirror, monkeypatch, real_data_dir, tmp_path):
    link_files(tmp_path / "mnist", {f"{name}.gz": real_data_dir / "mnist" / f"{name}.gz"
                                    for name in (*TEST_FILES, "train-labels-idx1-ubyte")})
    monkeypatch.setenv("MNISTCLS_DATA_DIR", str(tmp_path))
    assert data.download("mnist", splits=("test",)) == cache_dir() / "mnist"
    assert mirror.requests == []  # the test files are already in the data folder

    with pytest.raises(DataError, match="train-images-idx3-ubyte not found and could not be downloaded"):
        data.download("mnist")
    assert mirror.requests == ["/mnist/train-images-idx3-ubyte.gz"]
    assert not (cache_dir() / "mnist").exists()


def test_data_download_from_the_command_line(mirror, fashion_system_dir):
    from click.testing import CliRunner

    from mnistcls.cli import cli

    names = [f.name for f in data.FILES]
    serve(mirror, fashion_system_dir, names, prefix="/fashion/")
    result = CliRunner().invoke(cli, ["data", "download", "fashion"])
    assert result.exit_code == 0, result.output
    assert f"fashion: ready (cache: {cache_dir() / 'fashion'})" in " ".join(result.output.split())
    assert sorted(mirror.requests) == sorted(f"/fashion/{name}.gz" for name in names)
    assert tree(cache_dir() / "fashion") == sorted(f"{name}.gz" for name in names)

    again = CliRunner().invoke(cli, ["data", "download", "fashion"])  # already there: checked, not fetched
    assert again.exit_code == 0 and len(mirror.requests) == len(names)

    offline = CliRunner().invoke(cli, ["data", "download", "mnist", "--offline"])
    assert offline.exit_code == 1 and "Downloading is switched off" in offline.output
    assert "Traceback" not in offline.output and len(mirror.requests) == len(names)
