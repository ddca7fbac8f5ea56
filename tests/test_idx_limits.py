"""IDX files that claim more than they hold, or that are no IDX at all, are refused before anything large is read."""

import gzip
import tracemalloc

import numpy as np
import pytest
from click.testing import CliRunner

from mnistcls import data
from mnistcls.cli import cli
from mnistcls.errors import DataError

HEADER = bytes([0, 0, 8, 3])  # unsigned bytes, 3 dimensions: images


def _dims(*sides):
    return b"".join(side.to_bytes(4, "big") for side in sides)


def _gzip_bomb(path, header, megabytes):
    """`header` followed by `megabytes` MB of zeros, gzipped: a file of a few kB."""
    with gzip.open(path, "wb", compresslevel=9) as out:
        out.write(header)
        chunk = bytes(1 << 20)
        for _ in range(megabytes):
            out.write(chunk)
    return path


def test_a_gzip_bomb_is_not_decompressed_past_what_its_header_claims(tmp_path):
    path = _gzip_bomb(tmp_path / "t10k-images-idx3-ubyte.gz", HEADER + _dims(10, 28, 28), megabytes=100)
    assert path.stat().st_size < 200_000
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"calls for 7,856: it is truncated or damaged"):
            data.read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 << 20  # the 100 MB it stands for were never held


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_a_header_claiming_terabytes_is_refused_before_reading_on(tmp_path, suffix):
    path = tmp_path / f"train-images-idx3-ubyte{suffix}"
    content = HEADER + _dims(100_000, 10_000, 10_000) + bytes(1000)
    path.write_bytes(gzip.compress(content) if suffix else content)
    with pytest.raises(DataError, match=r"IDX header \(100000 x 10000 x 10000\) that claims 10,000,000,000,016 bytes"):
        data.read_idx(path)


@pytest.mark.parametrize("name, content", [
    ("labels.gz", gzip.compress(b"label,image\n1,foo.png\n" * 1000)),  # a gzipped CSV
    ("images", b"\x89PNG\r\n\x1a\n" + bytes(100)),  # a PNG under an IDX name
    ("empty.gz", gzip.compress(b"")),
])
def test_a_file_that_is_not_idx_is_a_clear_data_error(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=f"{name}: is not an IDX file"):
        data.read_idx(path)


def test_a_dataset_folder_holding_a_bomb_is_one_line_from_the_cli(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    _gzip_bomb(folder / "t10k-images-idx3-ubyte.gz", HEADER + _dims(10, 28, 28), megabytes=20)
    data.write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(10, np.uint8))
    result = CliRunner().invoke(cli, ["data", "show", "--dataset", str(folder), "--split", "test",
                                      "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "t10k-images-idx3-ubyte.gz" in result.output and "truncated or damaged" in result.output


def test_an_npz_array_claiming_terabytes_is_refused_before_numpy_allocates_it(tmp_path, monkeypatch):
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                  "shape": (100_000, 10_000, 10_000)})
    keras_datasets = tmp_path / "keras" / "datasets"
    keras_datasets.mkdir(parents=True)
    with zipfile.ZipFile(keras_datasets / "mnist.npz", "w") as archive:
        archive.writestr("x_test.npy", header.getvalue() + bytes(100))
        archive.writestr("y_test.npy", b"")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(DataError, match=r"mnist.npz \[x_test\]: has an array 'x_test.npy' of 100000 x 10000 x 10000"):
        data.load("mnist", splits=("test",))
