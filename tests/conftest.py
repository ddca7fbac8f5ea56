"""Shared fixtures: where the real data lies, and an isolated cache for every test."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

# No test ever reaches the network or the user's own caches.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets an empty mnistcls cache and Keras home, and downloads are off."""
    root = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("MNISTCLS_CACHE_DIR", str(root / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(root / "keras"))
    monkeypatch.setenv("MNISTCLS_OFFLINE", "1")
    monkeypatch.delenv("MNISTCLS_DATA_DIR", raising=False)
    return root


@pytest.fixture(autouse=True)
def float32_on_any_cpu(monkeypatch):
    """`precision: auto` picks float32, as on a CPU without bfloat16 instructions: the suite's results
    must not depend on the host. (Tests in subprocesses use tiny_cnn.yaml, which says float32.)"""
    from mnistcls import runtime

    monkeypatch.setattr(runtime, "cpu_has_bfloat16", lambda: False)


@pytest.fixture
def shared_data_dir():
    """`../shared/data`: real MNIST test set and training labels (no training images)."""
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"real MNIST files not found in {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def fashion_system_dir():
    """Debian's dataset-fashion-mnist package: the complete real Fashion-MNIST."""
    if not (FASHION_SYSTEM_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST not installed: apt-get install -y dataset-fashion-mnist")
    return FASHION_SYSTEM_DIR


@pytest.fixture(scope="session")
def small_fashion(tmp_path_factory):
    """A slice of the real Fashion-MNIST (600 train, 200 test) as a custom IDX folder."""
    if not (FASHION_SYSTEM_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST not installed: apt-get install -y dataset-fashion-mnist")
    from mnistcls import data

    folder = tmp_path_factory.mktemp("small_fashion")
    for split, count in (("train", 600), ("t10k", 200)):
        images = data.read_idx(FASHION_SYSTEM_DIR / f"{split}-images-idx3-ubyte.gz")[:count]
        labels = data.read_idx(FASHION_SYSTEM_DIR / f"{split}-labels-idx1-ubyte.gz")[:count]
        data.write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
        data.write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    (folder / "classes.txt").write_text("\n".join(
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]))
    return folder


TINY_SPEC = str(Path(__file__).parent / "specs" / "tiny_cnn.yaml")


@pytest.fixture(scope="session")
def tiny_run(small_fashion, tmp_path_factory):
    """(runs directory, run id): one epoch of the tiny CNN on small_fashion, trained once per session."""
    import json

    from click.testing import CliRunner

    from mnistcls.cli import cli

    runs_dir = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MNISTCLS_OFFLINE", "1")
        result = CliRunner().invoke(cli, ["train", "-c", TINY_SPEC, "-d", str(small_fashion), "--epochs", "1",
                                          "--runs-dir", str(runs_dir), "--json"])
    assert result.exit_code == 0, result.output
    return runs_dir, json.loads(result.stdout)[0]["run"]
