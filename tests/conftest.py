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
    runs_dir = tmp_path_factory.mktemp("runs")
    return runs_dir, train_tiny(small_fashion, runs_dir, "--epochs", "1")


def train_tiny(dataset_dir, runs_dir, *args):
    """The id of the run one `mnistcls train` of the tiny spec on `dataset_dir` makes (for shared fixtures)."""
    import json

    from click.testing import CliRunner

    from mnistcls.cli import cli

    with pytest.MonkeyPatch.context() as env:
        env.setenv("MNISTCLS_OFFLINE", "1")
        result = CliRunner().invoke(cli, ["train", "-c", TINY_SPEC, "-d", str(dataset_dir), *args,
                                          "--runs-dir", str(runs_dir), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)[0]["run"]


def wait_for_epochs(runs_dir, count, process, timeout=120):
    """The first run in `runs_dir` once it has `count` epochs, while `process` (training it) is alive."""
    import time

    from mnistcls import runs

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = runs.all_runs(runs_dir)
        if found and len(found[0].history) >= count:
            return found[0]
        assert process.poll() is None, process.stdout.read()
        time.sleep(0.05)
    raise AssertionError(f"no run in {runs_dir} reached epoch {count} in time")
