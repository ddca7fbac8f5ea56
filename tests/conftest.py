"""Shared fixtures: the generated dataset the mechanics train on, where the real data lies, and an
isolated cache for every test."""

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The real MNIST: $MNISTCLS_TEST_DATA_DIR (a folder holding mnist/), else the development workspace's copy.
REAL_DATA = Path(os.environ.get("MNISTCLS_TEST_DATA_DIR") or REPO.parent / "shared" / "data")
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


# --- the real datasets: only the tests about them need them, and the suite says how many ran --------

REAL_DATA_FIXTURES = {"real_data_dir", "fashion_system_dir"}
_real_data_outcomes = {}  # test id -> "ran" or the reason it skipped


@pytest.fixture
def real_data_dir():
    """A folder holding mnist/ with the four real MNIST files (see REAL_DATA)."""
    if not (REAL_DATA / "mnist").is_dir():
        pytest.skip("real MNIST not found: set MNISTCLS_TEST_DATA_DIR to a folder holding mnist/")
    return REAL_DATA


@pytest.fixture(scope="session")  # session-wide, so module-wide fixtures can take it too
def fashion_system_dir():
    """Debian's dataset-fashion-mnist package: the complete real Fashion-MNIST."""
    if not (FASHION_SYSTEM_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST not installed: apt-get install -y dataset-fashion-mnist")
    return FASHION_SYSTEM_DIR


def pytest_collection_modifyitems(items):
    for item in items:
        if REAL_DATA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker("real_data")


def pytest_runtest_logreport(report):
    if "real_data" not in report.keywords:
        return
    if report.skipped:
        _real_data_outcomes[report.nodeid] = report.longrepr[2] if isinstance(report.longrepr, tuple) else "skipped"
    elif report.when == "call":
        _real_data_outcomes[report.nodeid] = "ran"


def pytest_unconfigure(config):
    """The suite's last line: how many tests of the real datasets ran, and why the others skipped."""
    if not _real_data_outcomes:
        return
    ran = sum(outcome == "ran" for outcome in _real_data_outcomes.values())
    reasons = sorted({outcome.removeprefix("Skipped: ") for outcome in _real_data_outcomes.values()
                      if outcome != "ran"})
    line = f"real-data tests: {ran} ran, {len(_real_data_outcomes) - ran} skipped"
    print(line + (f" ({'; '.join(reasons)})" if reasons else ""))


# --- the generated dataset every other test trains on ----------------------------------------------

@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """Ten classes of generated shapes (600 train, 200 test) as a dataset folder of IDX files: see shapes.py."""
    import shapes

    return shapes.write_dataset(tmp_path_factory.mktemp("data") / "shapes")


TINY_SPEC = str(Path(__file__).parent / "specs" / "tiny_cnn.yaml")
TINY_GRAPH = str(Path(__file__).parent / "specs" / "tiny_graph.yaml")  # every kind of block


@pytest.fixture(scope="session")
def tiny_run(small_dataset, tmp_path_factory):
    """(runs directory, run id): one epoch of the tiny CNN on small_dataset, trained once per session."""
    runs_dir = tmp_path_factory.mktemp("runs")
    return runs_dir, train_tiny(small_dataset, runs_dir, "--epochs", "1")


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


# --- a throwaway PostgreSQL cluster, for studies shared by several machines ------------------------

def _postgres_bin():
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    found = candidates[0] if candidates else (Path(shutil.which("initdb")) if shutil.which("initdb") else None)
    return found.parent if found else None


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL cluster in a temporary folder, on a free port; its URL."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (no initdb): apt-get install postgresql")
    root = Path(tempfile.mkdtemp(prefix="mnistcls-pg-"))
    as_owner = []
    if os.geteuid() == 0:  # initdb refuses to run as root: the cluster belongs to the postgres user
        shutil.chown(root, "postgres", "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.STDOUT, "check": True}
    subprocess.run([*as_owner, bin_dir / "initdb", "-D", root / "data", "-U", "postgres", "-A", "trust", "--no-sync"],
                   **quiet)
    subprocess.run([*as_owner, bin_dir / "pg_ctl", "-D", root / "data", "-l", root / "log", "-w", "-o",
                    f"-p {port} -k {root} -c listen_addresses='' -c fsync=off", "start"], **quiet)
    try:
        subprocess.run([*as_owner, bin_dir / "createdb", "-h", root, "-p", str(port), "-U", "postgres", "tune"],
                       **quiet)
        yield f"postgresql://postgres@/tune?host={root}&port={port}"
    finally:
        subprocess.run([*as_owner, bin_dir / "pg_ctl", "-D", root / "data", "-m", "immediate", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        shutil.rmtree(root, ignore_errors=True)
