"""`mnistcls study`: study files, a whole pass, skipping and resuming, the dry run."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mnistcls import runs, spec as specs, study
from mnistcls.cli import cli

from conftest import wait_for_epochs

STUDIES = Path(__file__).parent / "specs" / "studies"
TINY_STUDY = str(STUDIES / "tiny.yaml")


def _study(*args):
    return CliRunner().invoke(cli, ["study", *args])


def test_every_bundled_study_checks_and_names_bundled_configs():
    bundled = {p.stem: p for p in study.bundled_studies()}
    assert {"seed_a", "seed_b"} <= set(bundled)
    for name in bundled:
        checked = study.load_study(name)  # found by bare name, like configs
        units = study.plan_study(checked)  # every spec with its overrides validated
        assert units and all(Path(u.job.spec.source).parent == specs.CONFIG_DIR for u in units)
    seed_a = study.plan_study(study.load_study("seed_a"))
    widths = [u.job.sweep["model.1.units"] for u in seed_a if u.experiment.name == "A3" and u.job.dataset == "mnist"]
    assert widths == ["10", "32", "100", "317", "1000"]


def test_the_dry_run_trains_nothing_and_a_narrowed_pass_has_its_own_folder(small_dataset, tmp_path):
    result = _study(TINY_STUDY, "-d", str(small_dataset), "--epochs", "1", "--dry-run", "--json",
                    "--runs-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert [(u["experiment"], u["status"], u["epochs"]) for u in plan["units"]] == [
        ("plain", "new", 1), ("rate sweep", "new", 1), ("rate sweep", "new", 1)]
    assert plan["seconds"] > 0 and all(u["seconds"] > 0 for u in plan["units"])
    assert not any(tmp_path.iterdir())  # no run folder, no study folder
    whole = _study(TINY_STUDY, "--dry-run", "--json", "--runs-dir", str(tmp_path))
    assert json.loads(whole.stdout)["folder"] != plan["folder"]


def test_a_study_runs_resumes_a_killed_run_and_then_skips_what_finished(small_dataset, tmp_path):
    args = [TINY_STUDY, "-d", str(small_dataset), "--epochs", "8", "--runs-dir", str(tmp_path)]
    process = subprocess.Popen([sys.executable, "-m", "mnistcls", "study", *args], env=os.environ,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = wait_for_epochs(tmp_path, 2, process)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert killed.status == "killed" and len(killed.history) < 8
    plan = json.loads(_study(*args, "--dry-run", "--json").stdout)
    assert [(u["status"], u["run"], u["epochs"]) for u in plan["units"]] == [
        ("resume", killed.id, 8 - len(killed.history)), ("new", None, 8), ("new", None, 8)]

    result = _study(*args, "--json")  # the same pass again: resumes the killed run, trains the others
    assert result.exit_code == 0, result.output
    first = json.loads(result.stdout)
    assert (first["skipped"], first["trained"]) == (0, 3)
    rows = first["rows"]
    assert rows[0]["run"] == killed.id and [r["epoch"] for r in killed.history] == list(range(1, 9))
    assert len(runs.all_runs(tmp_path)) == 3 and all(r["status"] == "finished" for r in rows)
    assert [r["sweep"] for r in rows] == [{}, {"train.optimizer.learning_rate": "0.003"},
                                          {"train.optimizer.learning_rate": "0.01"}]
    assert all(0 < r["test_accuracy"] <= 1 and r["validated_on"] == "test set" for r in rows)
    assert [r["reported"] for r in rows] == [0.8, "about 0.8", "about 0.8"]
    # "plain" and the sweep's 0.003 are one spec: the killed and resumed run ends as the uninterrupted one.
    keys = ("test_accuracy", "best_accuracy_in_training", "best_loss_in_training")
    assert {k: rows[0][k] for k in keys} == {k: rows[1][k] for k in keys}

    files = first["files"]
    assert Path(files["markdown"]).read_text().count("| rate sweep: learning_rate=") == 2
    csv_lines = Path(files["csv"]).read_text().splitlines()
    assert csv_lines[0].startswith("experiment,dataset,sweep") and len(csv_lines) == 4
    # The sweep: its best scores against the rate, its learning curves; and the `compare:` group's curves.
    assert len(files["sweeps"]) == 1 and len(files["curves"]) == 2 and "plain-vs-rate_sweep" in files["curves"][1]
    assert all(Path(path).read_bytes().startswith(b"\x89PNG") for path in files["sweeps"] + files["curves"])

    again = _study(*args)  # everything finished: nothing trains, the table is printed again into new files
    assert again.exit_code == 0, again.output
    assert "3 of 3 runs had finished before" in again.output and "Training on" not in again.output
    assert "rate sweep" in again.output and "about 0.8" in again.output
    assert len(runs.all_runs(tmp_path)) == 3
    assert len(list(Path(first["folder"]).glob("*-results*.md"))) == 2  # the first pass's table is kept

    # A recorded run of another spec than the study's now (its file or config was edited) is not reused.
    spec_file = tmp_path / rows[2]["run"] / "spec.yaml"
    spec_file.write_text(spec_file.read_text().replace("learning_rate: 0.01", "learning_rate: 0.02"))
    plan = json.loads(_study(*args, "--dry-run", "--json").stdout)
    assert [u["status"] for u in plan["units"]] == ["finished", "finished", "new"]


@pytest.mark.parametrize("text, where, words", [
    ("experiments:\n  a:\n    config: no_such.yaml\n", ":3:", "unknown config"),
    ("experiments:\n  a:\n    config: tiny_cnn.yaml\n    dataset: [mnist]\n", ":4:", "did you mean 'datasets'"),
    ("experiments:\n  a:\n    config: tiny_cnn.yaml\n    set: {model.4.unit: [1, 2]}\n", ":4:", "'units'"),
    ("experiments:\n  a:\n    config: tiny_cnn.yaml\n    reported: \"x\" y\n    datasets: [mnist]\n", ":4:",
     "YAML syntax error"),
    ("experiments:\n  a:\n    config: tiny_cnn.yaml\n    set:\n      train.seed: [1, 1]\n", ":5:", "each value once"),
    ("experiments:\n  tuned:\n    config: tiny_cnn.yaml\ncompare:\n  - [tuned, tunned]\n", ":5:",
     "did you mean 'tuned'"),
], ids=["unknown-config", "unknown-key", "bad-override", "yaml-error", "repeated-sweep-value", "unknown-compared"])
def test_a_bad_study_file_is_one_clear_message(tmp_path, text, where, words):
    (tmp_path / "tiny_cnn.yaml").write_text((Path(__file__).parent / "specs" / "tiny_cnn.yaml").read_text())
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = _study(str(path), "--dry-run", "--runs-dir", str(tmp_path / "runs"))
    assert result.exit_code == 2, result.output
    assert f"bad.yaml{where}" in result.output and words in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()


def test_an_unknown_study_name_suggests_the_bundled_ones():
    result = _study("seed_c", "--dry-run")
    assert result.exit_code == 2 and "seed_a" in result.output


def test_a_study_name_that_is_a_path_stays_inside_the_runs_directory(small_dataset, tmp_path):
    hostile = tmp_path / "hostile.yaml"
    hostile.write_text(Path(TINY_STUDY).read_text().replace("name: tiny", "name: ../../escaped")
                       .replace("../tiny_cnn.yaml", str(STUDIES.parent / "tiny_cnn.yaml")))
    result = _study(str(hostile), "-d", str(small_dataset), "--epochs", "1", "--json", "--runs-dir",
                    str(tmp_path / "runs"))
    assert result.exit_code == 0, result.output
    folder = Path(json.loads(result.stdout)["folder"])
    assert folder.parent == tmp_path / "runs" / "studies" and folder.name.startswith("escaped")
    assert all(Path(path).parent == folder for path in json.loads(result.stdout)["files"]["sweeps"])
    assert not (tmp_path.parent / "escaped").exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "hostile.yaml", "runs"]


def test_runs_recorded_at_once_by_several_writers_are_all_kept(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    header = {"study": "s", "file": "s.yaml", "epochs": None, "datasets": []}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: study._record_run(tmp_path, header, f"unit {i}", f"run-{i}"), range(16)))
    assert study._recorded_runs(tmp_path) == {f"unit {i}": f"run-{i}" for i in range(16)}
