"""Training on a cluster of two workers (MultiWorkerMirroredStrategy over TF_CONFIG) on 127.0.0.1."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import TINY_GRAPH, TINY_SPEC
from mnistcls import runs


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_cluster(args, runs_dir):
    """Both workers of a fresh two-worker cluster on 127.0.0.1, running `mnistcls train ARGS`."""
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})}
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "mnistcls", "train", *args, "--runs-dir", str(runs_dir)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return processes


def _finish(processes):
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs


def _weights(run):
    import keras

    return keras.models.load_model(run.path / "model.keras").get_weights()


def _assert_same_weights(chief, worker):
    for a, b in zip(_weights(chief), _weights(worker)):
        np.testing.assert_array_equal(a, b)


# Without dropout: each replica draws its own masks for its half of a batch, which no single
# process can reproduce. Everything else the two workers compute must be what one process
# computes on the whole global batch.
NO_DROPOUT = ["--set", "model.3.rate=0"]


def test_two_workers_train_as_one_process_on_the_global_batch_and_only_the_chief_writes(small_dataset, tmp_path):
    args = ["-c", TINY_SPEC, "-d", str(small_dataset), "--epochs", "2", *NO_DROPOUT]
    _finish(_start_cluster(args, tmp_path / "runs"))
    single = subprocess.run([sys.executable, "-m", "mnistcls", "train", *args, "--runs-dir", str(tmp_path / "single")],
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stdout + single.stderr

    (chief,) = runs.all_runs(tmp_path / "runs")  # the other worker wrote nothing here
    (worker,) = runs.all_runs(runs.worker_runs_dir(1))
    assert chief.id == worker.id and chief.status == worker.status == "finished"
    assert {"model.keras", "history.json", "metrics.json", "curves.png", "spec.yaml"} <= {
        p.name for p in chief.path.iterdir()}
    assert chief.info["device"].startswith("worker 0 of 2")
    (alone,) = runs.all_runs(tmp_path / "single")
    # All-reduced sums add in another order than one process' sums: equal to float rounding.
    for ours, theirs in zip(_weights(chief), _weights(alone)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    for ours, theirs in zip(chief.history, alone.history):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-4), key


def test_a_killed_cluster_resumes_on_every_worker(small_dataset, tmp_path):
    processes = _start_cluster(["-c", TINY_SPEC, "-d", str(small_dataset), "--epochs", "30"], tmp_path / "runs")
    deadline = time.monotonic() + 120
    while not any(len(r.history) >= 3 for r in runs.all_runs(tmp_path / "runs")):
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes)
        time.sleep(0.05)
    for p in processes:
        p.send_signal(signal.SIGKILL)
        p.wait()
    (chief,) = runs.all_runs(tmp_path / "runs")
    assert chief.status == "killed" and len(chief.history) < 30

    _finish(_start_cluster(["--resume", chief.id], tmp_path / "runs"))
    (worker,) = runs.all_runs(runs.worker_runs_dir(1))
    assert chief.status == worker.status == "finished"
    assert [row["epoch"] for row in chief.history] == list(range(1, 31))
    _assert_same_weights(chief, worker)


def test_two_workers_train_a_graph_model_as_one_process(small_dataset, tmp_path):
    """Residual and parallel blocks under MultiWorkerMirroredStrategy; batch normalization takes its statistics
    over the global batch (synchronized), as one process does."""
    args = ["-c", TINY_GRAPH, "-d", str(small_dataset), "--epochs", "2", "--set", "model.3.layers.1.rate=0"]
    _finish(_start_cluster(args, tmp_path / "runs"))
    single = subprocess.run([sys.executable, "-m", "mnistcls", "train", *args, "--runs-dir", str(tmp_path / "single")],
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stdout + single.stderr
    (chief,) = runs.all_runs(tmp_path / "runs")
    (worker,) = runs.all_runs(runs.worker_runs_dir(1))
    (alone,) = runs.all_runs(tmp_path / "single")
    assert chief.status == worker.status == "finished" and len(chief.history) == 2
    _assert_same_weights(chief, worker)
    # Synchronized statistics are summed in another order than one process' (and Adam magnifies small
    # differences in small gradients): close, not equal to rounding.
    for ours, theirs in zip(chief.history, alone.history):
        assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-2)
    for ours, theirs in zip(_weights(chief), _weights(alone)):
        np.testing.assert_allclose(ours, theirs, atol=5e-3)


def test_a_malformed_tf_config_is_a_clear_error(small_dataset, tmp_path):
    env = {**os.environ, "TF_CONFIG": '{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}'}
    result = subprocess.run([sys.executable, "-m", "mnistcls", "train", "-c", TINY_SPEC, "-d", str(small_dataset),
                             "--runs-dir", str(tmp_path)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "TF_CONFIG must describe a cluster of workers" in result.stderr and "Traceback" not in result.stderr
