"""Training on a cluster of two workers (MultiWorkerMirroredStrategy over TF_CONFIG) on 127.0.0.1."""

import json
import os
import socket
import subprocess
import sys

import numpy as np

from conftest import TINY_SPEC
from mnistcls import runs


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_in_lockstep_and_only_the_chief_writes_the_run(small_fashion, tmp_path):
    import keras

    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    chief_runs = tmp_path / "runs"
    processes = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})}
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "mnistcls", "train", "-c", TINY_SPEC, "-d", str(small_fashion),
             "--epochs", "2", "--runs-dir", str(chief_runs), "--json"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs

    (chief,) = runs.all_runs(chief_runs)  # the other worker wrote nothing here
    (worker,) = runs.all_runs(runs.worker_runs_dir(1))
    assert chief.id == worker.id and chief.status == worker.status == "finished"
    assert {"model.keras", "history.json", "metrics.json", "curves.png", "spec.yaml"} <= {
        p.name for p in chief.path.iterdir()}
    assert chief.info["device"].startswith("worker 0 of 2")
    weights = [keras.models.load_model(r.path / "model.keras").get_weights() for r in (chief, worker)]
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
    assert chief.metrics["test_accuracy"] == worker.metrics["test_accuracy"]


def test_a_malformed_tf_config_is_a_clear_error(small_fashion, tmp_path):
    env = {**os.environ, "TF_CONFIG": '{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}'}
    result = subprocess.run([sys.executable, "-m", "mnistcls", "train", "-c", TINY_SPEC, "-d", str(small_fashion),
                             "--runs-dir", str(tmp_path)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "TF_CONFIG must describe a cluster of workers" in result.stderr and "Traceback" not in result.stderr
