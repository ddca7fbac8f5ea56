"""`mnistcls runs`: listing, comparing and showing run folders made by real (tiny) training runs."""

import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import TINY_SPEC
from mnistcls import runs
from mnistcls.errors import MnistclsError
from mnistcls.cli import cli


def _train(runs_dir, dataset, *args):
    result = CliRunner().invoke(cli, ["train", "-c", TINY_SPEC, "-d", str(dataset), "--epochs", "1",
                                      "--runs-dir", str(runs_dir), "--json", *args])
    assert result.exit_code == 0, result.output
    return [runs.find(row["run"], runs_dir) for row in json.loads(result.stdout)]


def _copy(run, name, without=()):
    copy = runs.Run(run.path.parent / name)
    shutil.copytree(run.path, copy.path, ignore=shutil.ignore_patterns(*without))
    copy.update(id=name)
    return copy


@pytest.fixture(scope="module")
def study(small_dataset, tmp_path_factory):
    """A runs directory with a two-run sweep and runs that finished, were interrupted, failed and were killed."""
    runs_dir = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MNISTCLS_OFFLINE", "1")
        (finished,) = _train(runs_dir, small_dataset)
        sweep = _train(runs_dir, small_dataset, "--set", "train.optimizer.learning_rate=0.001,0.01")

    interrupted = _copy(finished, "20000101-000001_tiny_cnn_interrupted", without=["metrics.json"])
    interrupted.update(status="interrupted")
    spec = interrupted.path / "spec.yaml"
    spec.write_text(spec.read_text().replace("epochs: 1", "epochs: 5"))  # stopped after 1 of 5 epochs

    failed = _copy(finished, "20000101-000002_tiny_cnn_failed",
                   without=["metrics.json", "model.keras", "history.*", "curves.png"])
    failed.update(status="failed", error="ValueError: broken before the first epoch")

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    killed = _copy(finished, "20000101-000003_tiny_cnn_killed", without=["metrics.json"])
    killed.update(status="running", pid=gone.pid)  # recorded as running by a process that is gone

    return {"dir": runs_dir, "finished": finished, "sweep": sweep, "interrupted": interrupted, "failed": failed,
            "killed": killed}


def invoke(*args):
    return CliRunner().invoke(cli, ["runs", *args])


def listed(study, *args):
    result = invoke("--runs-dir", str(study["dir"]), "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_every_run_is_listed_with_its_status_and_results(study):
    rows = {row["run"]: row for row in listed(study)}
    assert {run_id: row["status"] for run_id, row in rows.items()} == {
        study["finished"].id: "finished", study["sweep"][0].id: "finished", study["sweep"][1].id: "finished",
        study["interrupted"].id: "interrupted", study["failed"].id: "failed", study["killed"].id: "killed"}

    finished = rows[study["finished"].id]
    assert finished["test_accuracy"] == study["finished"].metrics["test_accuracy"]
    assert finished["params"] == 6810 and finished["epochs"] == finished["epochs_run"] == 1
    interrupted = rows[study["interrupted"].id]
    assert (interrupted["epochs_run"], interrupted["epochs"]) == (1, 5) and "test_accuracy" not in interrupted
    assert interrupted["best_val_accuracy"] == study["interrupted"].history[0]["val_accuracy"]
    assert rows[study["failed"].id]["epochs_run"] == 0

    result = invoke("--runs-dir", str(study["dir"]))
    assert result.exit_code == 0, result.output
    for status in ("finished", "interrupted", "failed", "killed"):
        assert status in result.output
    assert "1/5" in result.output and all(len(line) <= 120 for line in result.output.splitlines())


def test_runs_are_filtered_and_sorted(study):
    by_accuracy = listed(study, "--sort", "test-acc")
    scores = [row.get("test_accuracy") for row in by_accuracy]
    known = [s for s in scores if s is not None]
    assert len(known) == 3 and known == sorted(known, reverse=True) and scores[:3] == known  # unscored last
    assert [row["run"] for row in listed(study)] == sorted(row["run"] for row in by_accuracy)  # default: started

    assert len(listed(study, "--config", "tiny_cnn.yaml")) == 6
    assert listed(study, "--config", "cnn_relu") == [] and listed(study, "--dataset", "mnist") == []
    result = invoke("--runs-dir", str(study["dir"]), "--dataset", "mnist")
    assert result.exit_code == 0 and "no runs in" in result.output


def _colours(path):
    """The set of RGB colours in a PNG."""
    return {tuple(c) for c in np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)}


def test_compare_overlays_curves_in_a_new_png_each_time(study):
    ids = [study["finished"].id, study["interrupted"].id]
    first = CliRunner().invoke(cli, ["runs", "compare", *ids, "--runs-dir", str(study["dir"]), "--json"])
    assert first.exit_code == 0, first.output
    comparison = json.loads(first.stdout)
    assert [row["run"] for row in comparison["runs"]] == ids and comparison["sweep"] is None
    curves = study["dir"] / "comparisons"
    assert comparison["curves"].startswith(str(curves))
    assert {(31, 119, 180), (255, 127, 14)} <= _colours(comparison["curves"])  # matplotlib's C0 and C1: two runs

    second = invoke("--runs-dir", str(study["dir"]), "compare", *ids)  # --runs-dir given to the group
    assert second.exit_code == 0, second.output
    assert comparison["curves"] not in second.output and "Comparison" in second.output
    assert len(list(curves.glob("*-curves*.png"))) == 2


def test_compare_of_a_sweep_also_draws_the_swept_value(study):
    result = invoke("compare", *[run.id for run in study["sweep"]], "--runs-dir", str(study["dir"]), "--json")
    assert result.exit_code == 0, result.output
    sweep = json.loads(result.stdout)["sweep"]
    assert sweep.endswith("-sweep.png") and Image.open(sweep).size[0] > 600


def test_compare_of_runs_that_differ_only_by_seed_sums_up_their_spread(study, small_dataset, tmp_path):
    seeded = _train(tmp_path, small_dataset, "--set", "train.seed=0,1,2")
    result = invoke("compare", *[run.id for run in seeded], "--runs-dir", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["seeds"]
    accuracies = [run.metrics["test_accuracy"] for run in seeded]
    assert summary["seeds"] == [0, 1, 2] and summary["test_accuracy"]["n"] == 3
    assert summary["test_accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
    assert summary["test_accuracy"]["std"] == pytest.approx(np.std(accuracies, ddof=1))
    shown = invoke("compare", *[run.id for run in seeded], "--runs-dir", str(tmp_path))
    assert "Over seeds 0, 1, 2" in shown.output
    # Runs of other learning rates are a sweep, not repeats.
    assert json.loads(invoke("compare", *[run.id for run in study["sweep"]], "--runs-dir", str(study["dir"]),
                             "--json").stdout)["seeds"] is None


def test_compare_needs_two_runs_with_epochs(study):
    run_dir = str(study["dir"])
    assert invoke("compare", study["finished"].id, "--runs-dir", run_dir).exit_code == 2
    result = invoke("compare", study["finished"].id, study["failed"].id, "--runs-dir", run_dir)
    assert result.exit_code == 2 and "no completed epoch" in result.output and "Traceback" not in result.output


def test_show_prints_spec_history_and_results(study):
    run = study["finished"]
    result = invoke("show", run.id, "--runs-dir", str(study["dir"]))
    assert result.exit_code == 0, result.output
    assert "tiny_cnn" in result.output and "conv2d" in result.output and "History" in result.output
    assert f"{100 * run.metrics['test_accuracy']:.2f}%" in result.output

    shown = json.loads(invoke("show", run.id, "--runs-dir", str(study["dir"]), "--json").stdout)
    assert shown["spec"]["name"] == "tiny_cnn" and len(shown["history"]) == 1
    assert shown["results"]["test_accuracy"] == run.metrics["test_accuracy"]

    missing = invoke("show", "nosuchrun", "--runs-dir", str(study["dir"]))
    assert missing.exit_code == 2 and "no run 'nosuchrun'" in missing.output


def _interrupted_run(tmp_path):
    path = tmp_path / "20000101-000000_tiny_cnn_small"
    path.mkdir()
    shutil.copyfile(TINY_SPEC, path / "spec.yaml")
    (path / "run.json").write_text(json.dumps({"id": path.name, "config": "tiny_cnn", "status": "interrupted"}))
    return runs.Run(path)


def test_a_reused_process_id_does_not_make_a_killed_run_look_running(tmp_path):
    run = _interrupted_run(tmp_path)
    runs.resume(run)  # recorded as running in this process, which is alive
    assert run.status == "running"
    with pytest.raises(MnistclsError, match="still running"):
        runs.check_resumable(run)

    # The process died and another one got its id: the same pid, started at another time.
    run.update(process_started=run.info["process_started"] - 10.0)
    assert run.status == "killed"
    run.release()
    runs.check_resumable(run)


def test_two_processes_cannot_take_one_run_and_the_second_is_told_which_holds_it(tmp_path):
    run = _interrupted_run(tmp_path)
    ours = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
from mnistcls import runs
held = runs.Run(__import__("pathlib").Path({str(run.path)!r}))
runs.resume(held)
print("taken", flush=True)
time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert ours.stdout.readline().strip() == "taken"
        with pytest.raises(MnistclsError, match=f"being trained by another process \\(process {ours.pid} on"):
            runs.resume(runs.Run(run.path))  # run.json says interrupted no longer, but the lock decides
        (run.path / "run.json").write_text(json.dumps({**run.info, "status": "interrupted"}))  # a stale record
        with pytest.raises(MnistclsError, match="being trained by another process"):
            runs.resume(runs.Run(run.path))
    finally:
        ours.kill()
        ours.wait()
    taken = runs.Run(run.path)
    runs.resume(taken)  # a killed holder leaves no lock behind
    assert taken.status == "running" and taken.info["pid"] == os.getpid()
    taken.release()


def _recorded_running_on(run, host):
    """run.json as a process on `host` writes it when it starts training (a pid no process here has)."""
    run.update(status="running", host=host, pid=2**22 + 1, process_started=1.0)


def test_a_run_whose_process_on_another_machine_is_gone_can_be_resumed_here(tmp_path):
    # A shared runs folder: the run's lock, not its record, tells whether anyone still trains it.
    run = _interrupted_run(tmp_path)
    _recorded_running_on(run, "another-machine")
    holder = subprocess.Popen([sys.executable, "-c", f"""
import filelock, time
lock = filelock.FileLock({str(run.path / runs.LOCK_FILE)!r})
lock.acquire()
print("held", flush=True)
time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert runs.Run(run.path).status == "running"
        with pytest.raises(MnistclsError, match="being trained by another process"):
            runs.resume(runs.Run(run.path))
    finally:
        holder.kill()
        holder.wait()
    assert runs.Run(run.path).status == "killed"
    taken = runs.Run(run.path)
    runs.resume(taken)
    assert taken.status == "running" and taken.info["host"] != "another-machine"
    taken.release()


def test_where_the_lock_cannot_be_tried_the_recorded_process_decides(tmp_path, monkeypatch):
    import filelock

    def unlockable(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    run = _interrupted_run(tmp_path)
    monkeypatch.setattr(filelock.FileLock, "acquire", unlockable)
    _recorded_running_on(run, "another-machine")
    assert run.status == "running"  # nothing here can tell: the record stands
    _recorded_running_on(run, socket.gethostname())
    assert run.status == "killed"  # no process here has that pid
    run.update(pid=os.getpid(), process_started=None)
    assert run.status == "running"


def test_an_update_never_replaces_a_damaged_run_json(tmp_path):
    run = _interrupted_run(tmp_path)
    damaged = '{"id": "20000101-000000_tiny_cnn_small", "config": "tiny'
    (run.path / "run.json").write_text(damaged)
    with pytest.raises(MnistclsError, match="run.json is missing or damaged"):
        run.update(status="failed")
    assert (run.path / "run.json").read_text() == damaged


def test_the_lists_filters_before_a_subcommand_are_an_error_not_ignored(tmp_path):
    result = invoke("--dataset", "fashion", "compare", "a", "b", "--runs-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "--dataset, --config and --sort choose and order the list" in result.output
