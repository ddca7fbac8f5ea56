"""Resuming from damaged run folders: what is mended, what is refused, and --restart."""

import shutil

import pytest
from click.testing import CliRunner

from conftest import TINY_SPEC, train_tiny
from mnistcls import runs
from mnistcls.cli import cli
from mnistcls.errors import MnistclsError


@pytest.fixture(scope="module")
def stopped_run(small_dataset, tiny_run, tmp_path_factory):
    """A run stopped after 2 of its 3 planned epochs, with the copy of epoch 1 a cluster keeps."""
    runs_dir = tmp_path_factory.mktemp("runs")
    run = runs.find(train_tiny(small_dataset, runs_dir, "--epochs", "2"), runs_dir)
    spec = run.path / "spec.yaml"
    spec.write_text(spec.read_text().replace("epochs: 2", "epochs: 3"))
    (run.path / "metrics.json").unlink()
    run.update(status="interrupted")
    # tiny_run is the same spec and seed trained for one epoch: the state this run had after epoch 1.
    (run.path / "backup").mkdir()
    shutil.copyfile(runs.find(tiny_run[1], tiny_run[0]).path / "model.keras", run.path / "backup" / "previous.keras")
    return run


@pytest.fixture
def stopped(stopped_run, tmp_path):
    """A fresh copy of stopped_run to damage, in a runs directory of its own."""
    path = tmp_path / stopped_run.id
    shutil.copytree(stopped_run.path, path)
    return runs.Run(path)


def resume(run, *args):
    return CliRunner().invoke(cli, ["train", "--resume", run.id, "--runs-dir", str(run.path.parent), "--json", *args])


def damage(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # as a kill mid-write of a plain writer would


def same_epoch(a, b):
    return {k: a[k] for k in ("epoch", "loss", "val_loss", "val_accuracy")} == {
        k: b[k] for k in ("epoch", "loss", "val_loss", "val_accuracy")}


def test_a_damaged_model_resumes_from_the_previous_epochs_copy(stopped, stopped_run):
    damage(stopped.path / "model.keras")
    result = resume(stopped)
    assert result.exit_code == 0, result.output
    history = stopped.history
    assert [row["epoch"] for row in history] == [1, 2, 3] and stopped.status == "finished"
    assert history[0] == stopped_run.history[0]  # kept, not trained again (its seconds are the same)
    assert same_epoch(history[1], stopped_run.history[1])  # epoch 2 done again, exactly as before
    assert not (stopped.path / "backup").exists()


def test_a_resume_that_cannot_continue_exactly_is_refused_and_touches_nothing(stopped):
    damage(stopped.path / "model.keras")
    damage(stopped.path / "backup" / "previous.keras")
    before = {p.name: p.read_bytes() for p in stopped.path.rglob("*") if p.is_file() and p.name != "run.json"}

    result = resume(stopped)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "model.keras and backup/previous.keras cannot be read" in result.output
    assert f"mnistcls train --resume {stopped.id} --restart" in result.output
    assert {p.name: p.read_bytes() for p in stopped.path.rglob("*") if p.is_file() and p.name != "run.json"} == before
    assert len(stopped.history) == 2 and stopped.status == "failed"


@pytest.mark.parametrize("history, message", [
    ("[{\"epoch\": 1, ", "history.json cannot be read"),
    ("[]", "history.json records 0 epochs but model.keras holds epoch 2"),
])
def test_a_history_that_does_not_reach_the_model_is_refused(stopped, history, message):
    (stopped.path / "history.json").write_text(history)
    result = resume(stopped)
    assert result.exit_code == 1 and message in result.output and "--restart" in result.output


def test_restart_trains_a_damaged_run_again_from_its_first_epoch(stopped, stopped_run):
    damage(stopped.path / "model.keras")
    damage(stopped.path / "backup" / "previous.keras")
    old_logs = stopped.path / "tensorboard" / "train" / "events.out.tfevents.old"
    old_logs.parent.mkdir(parents=True, exist_ok=True)
    old_logs.write_bytes(b"the epochs --restart discards")
    result = resume(stopped, "--restart")
    assert result.exit_code == 0, result.output
    history = stopped.history
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert all(same_epoch(a, b) for a, b in zip(history, stopped_run.history))
    assert not old_logs.exists() and (stopped.path / "tensorboard").is_dir()  # new logs only
    assert len((stopped.path / "history.csv").read_text().splitlines()) == 1 + 3


def test_restart_needs_a_run_to_resume():
    result = CliRunner().invoke(cli, ["train", "-c", TINY_SPEC, "--restart"])
    assert result.exit_code == 2 and "--resume RUN" in result.output


@pytest.mark.parametrize("reached, resumed_at", [(2, 2), (1, 1), (0, None)])
def test_the_workers_of_a_cluster_resume_at_the_epoch_all_of_them_reached(stopped, monkeypatch, reached, resumed_at):
    from mnistcls import checkpoints

    # The all-reduce across workers, as if the other worker was killed after its epoch `reached`.
    monkeypatch.setattr(checkpoints, "smallest_value", lambda strategy, value: min(value, reached))
    if resumed_at is None:  # this worker has no copy of the other's epoch 0: it cannot follow it
        with pytest.raises(MnistclsError, match="another worker of the cluster only reached epoch 0"):
            checkpoints.saved_state(stopped.path, strategy=None)
        return
    state, history = checkpoints.saved_state(stopped.path, strategy=None)
    assert state.epoch == resumed_at and history == stopped.history[:resumed_at]
    assert state.path.name == ("model.keras" if resumed_at == 2 else "previous.keras")


def test_a_worker_that_could_start_stops_when_another_cannot_resume(tmp_path, monkeypatch):
    from mnistcls import checkpoints

    # This worker has nothing saved (it would start at epoch 1); the other's state is damaged.
    monkeypatch.setattr(checkpoints, "smallest_value", lambda strategy, value: 0)
    with pytest.raises(MnistclsError, match="another worker of the cluster cannot"):
        checkpoints.saved_state(tmp_path, strategy=None)
