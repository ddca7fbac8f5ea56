"""`mnistcls study`: study files, a whole pass, skipping and resuming, the dry run."""

import json
import os
import signal
import subprocess
import sys
import time
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
    status = json.loads(_study(*args, "--status", "--json").stdout)
    assert [u["status"] for u in status["units"]] == ["killed", "waiting", "waiting"]

    result = _study(*args, "--json")  # the same pass again: resumes the killed run, trains the others
    assert result.exit_code == 0, result.output
    first = json.loads(result.stdout)
    assert len(first["trained"]) == 3
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
    assert "0 runs trained here; 3 of 3 runs of the study are done" in again.output
    assert "Training on" not in again.output and "rate sweep" in again.output and "about 0.8" in again.output
    assert len(runs.all_runs(tmp_path)) == 3
    assert len(list(Path(first["folder"]).glob("*-results*.md"))) == 2  # the first pass's table is kept

    # A study file changed since (a rate edited) is another study: refused in one line, not mixed in.
    changed = tmp_path / "tiny.yaml"
    changed.write_text(Path(TINY_STUDY).read_text().replace("0.01]", "0.02]")
                       .replace("../tiny_cnn.yaml", str(STUDIES.parent / "tiny_cnn.yaml")))
    refused = _study(str(changed), *args[1:])
    assert refused.exit_code == 2 and "was started with other experiments" in refused.output
    assert len(refused.output.strip().splitlines()) == 1 and len(runs.all_runs(tmp_path)) == 3


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


def test_a_hold_out_is_named_in_words_in_the_json_and_csv_and_marked_val_in_the_table():
    from mnistcls import metrics, report

    group = {"experiment": "held out", "dataset": "mnist", "sweep": {}, "config": "tiny_cnn", "validation": 0.2,
             "reported": None, "params": 10, "runs": 1, "finished": 1, "statuses": ["finished"],
             **{field: metrics.spread([0.5]) for field in study.SPREAD_FIELDS}}
    shown = report.study_json({"study": "s", "rows": [{"run": "r", "validation": "test", "epochs": 1}],
                               "groups": [group]})
    assert list(shown["rows"][0].items()) == [("run", "r"), ("validated_on", "test set"), ("epochs", 1)]
    assert shown["groups"][0]["validated_on"] == "20% of training set" and "validation" not in shown["groups"][0]
    header, line = study.csv_text([group]).splitlines()
    assert dict(zip(header.split(","), line.split(",")))["validated_on"] == "20% of training set"
    _, cells = report.study_cells([group])
    assert "50.00% val" in cells[0]


# --- repeated seeds, and studies shared by several processes and machines -------------------------

def test_the_files_a_study_wrote_are_listed_one_a_line_and_the_unwritten_left_out():
    from mnistcls import report

    files = {"markdown": "r/s.md", "csv": "r/s.csv", "sweeps": ["r/a.png", None], "curves": ["r/c.png"]}
    assert str(report.study_files({"files": files})).splitlines() == [
        "Markdown: r/s.md", "CSV: r/s.csv", "Sweep plot 1: r/a.png", "Learning curves 1: r/c.png"]


def test_repeats_give_each_row_the_mean_and_spread_of_its_runs(small_dataset, tmp_path):
    import numpy as np

    result = _study(TINY_STUDY, "-d", str(small_dataset), "--epochs", "1", "--repeats", "3", "--json",
                    "--runs-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    done = json.loads(result.stdout)
    assert len(done["rows"]) == 9 and [r["seed"] for r in done["rows"][:3]] == [0, 1, 2]
    for group in done["groups"]:
        members = [r for r in done["rows"] if (r["experiment"], r["sweep"]) == (group["experiment"], group["sweep"])]
        recorded = [runs.find(r["run"], tmp_path).metrics["test_accuracy"] for r in members]
        assert [runs.find(r["run"], tmp_path).info["sweep"] for r in members] == [r["sweep"] for r in members]
        assert [runs.find(r["run"], tmp_path).spec_data["train"]["seed"] for r in members] == [0, 1, 2]
        assert group["test_accuracy"]["mean"] == pytest.approx(np.mean(recorded))
        assert group["test_accuracy"]["std"] == pytest.approx(np.std(recorded, ddof=1))
        assert (group["test_accuracy"]["min"], group["test_accuracy"]["max"]) == (min(recorded), max(recorded))
    sweep = [g for g in done["groups"] if g["sweep"]]
    assert sum(g["comparison"]["best"] for g in sweep) == 1
    other = next(g for g in sweep if not g["comparison"]["best"])
    assert 0 <= other["comparison"]["p"] <= 1 and other["comparison"]["differs"] == (other["comparison"]["p"] < 0.05)
    header = Path(done["files"]["csv"]).read_text().splitlines()[0].split(",")
    assert {"test_accuracy_mean", "test_accuracy_std", "test_accuracy_min", "test_accuracy_max",
            "welch_p"} <= set(header)


def _start(*args, runs_dir, storage=None):
    command = [sys.executable, "-m", "mnistcls", "study", *args, "--runs-dir", str(runs_dir), "--json",
               *(["--storage", storage] if storage else [])]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ)


def test_two_processes_started_together_share_a_study_and_a_third_reports_it(small_dataset, tmp_path):
    args = [TINY_STUDY, "-d", str(small_dataset), "--epochs", "6", "--repeats", "2"]
    workers = [_start(*args, runs_dir=tmp_path) for _ in range(2)]
    seen_running = None
    while any(w.poll() is None for w in workers):  # a third process looks while they work
        state = json.loads(_study(*args, "--status", "--json", "--runs-dir", str(tmp_path)).stdout)
        running = [u for u in state["units"] if u["status"] == "running" and u["epoch"]]
        seen_running = seen_running or running
        time.sleep(0.5)
    outputs = [w.communicate(timeout=60) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err[-2000:] for _, err in outputs]
    trained = [json.loads(out)["trained"] for out, _ in outputs]
    assert all(trained) and not set(trained[0]) & set(trained[1])  # both worked, never on the same run
    assert len(trained[0]) + len(trained[1]) == 6 == len(runs.all_runs(tmp_path))  # each run trained once
    assert seen_running and seen_running[0]["host"] and seen_running[0]["run"]

    report = _study(*args, "--report", "--json", "--runs-dir", str(tmp_path))
    assert report.exit_code == 0, report.output
    table = json.loads(report.stdout)
    assert table["trained"] == [] and [r["status"] for r in table["rows"]] == ["finished"] * 6
    assert {r["run"] for r in table["rows"]} == {run.id for run in runs.all_runs(tmp_path)}


def test_a_worker_killed_on_a_shared_postgres_study_is_resumed_and_the_table_completed(small_dataset, tmp_path,
                                                                                       postgres_url):
    args = [TINY_STUDY, "-d", str(small_dataset), "--epochs", "12"]
    machines = [tmp_path / "machine0", tmp_path / "machine1"]
    doomed = _start(*args, runs_dir=machines[0], storage=postgres_url)
    wait_for_epochs(machines[0], 2, doomed)
    survivor = _start(*args, runs_dir=machines[1], storage=postgres_url)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    (killed,) = runs.all_runs(machines[0])
    assert killed.status == "killed"
    out, err = survivor.communicate(timeout=240)
    assert survivor.returncode == 0, err[-2000:]
    assert len(json.loads(out)["trained"]) == 2  # the others' runs; the killed one is still recorded as running

    restarted = subprocess.run([sys.executable, "-m", "mnistcls", "study", *args, "--runs-dir", str(machines[0]),
                                "--storage", postgres_url, "--json"], capture_output=True, text=True, timeout=240)
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    table = json.loads(restarted.stdout)
    assert len(table["trained"]) == 1 and table["rows"][0]["run"] == killed.id  # resumed from its own folder
    assert [r["status"] for r in table["rows"]] == ["finished"] * 3
    assert [row["epoch"] for row in killed.history] == list(range(1, 13))
    # "plain" and the sweep's 0.003 are one spec: resumed after the kill, it ends as the one trained whole.
    assert table["rows"][0]["test_accuracy"] == table["rows"][1]["test_accuracy"]
    assert "***" not in restarted.stderr and "postgres@" not in json.dumps(table)


def test_a_narrowed_pass_keeps_only_the_runs_on_its_dataset_with_every_seed():
    plain = study.plan_study(study.load_study("seed_a"), epochs=1, datasets=("fashion",))
    units = study.plan_study(study.load_study("seed_a"), epochs=1, datasets=("fashion",), repeats=2)
    assert {unit.job.dataset for unit in units} == {"fashion"}
    assert len(units) == 2 * len(plain) and [unit.seed for unit in units[:2]] == [0, 1]
    assert units[0].group == units[1].group and units[0].key != units[1].key
