"""`mnistcls tune`: search spaces, studies of ordinary runs, a shared PostgreSQL study, and kill -9."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from conftest import REPO, TINY_SPEC
from mnistcls import runs, search, spec as specs
from mnistcls.cli import cli
from mnistcls.errors import SpecError

LEARNING_RATE = "train.optimizer.learning_rate={float: [1.0e-3, 1.0e-2], log: true}"


def _problems(tmp_path, text, **kwargs):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as caught:
        search.load_space(TINY_SPEC, path, **kwargs)
    return [str(p) for p in caught.value.problems]


def test_space_problems_are_reported_at_their_lines(tmp_path):
    problems = _problems(tmp_path, """\
search:
  model.0.filter: {int: [2, 8]}
  model.3: {float: [0.0, 1.5]}
  train.batch_size: {int: [64, 16]}
  train.optimizer.learning_rate: {float: [0.0, 0.1], log: true}
  trian.epochs: {int: [1, 3]}
  train.optimizer.name: {choice: [sgd, adma]}
  model.2: {float: [0.1, 0.2]}
  train.validation: {float: [0.1, 0.2]}
  train.seed: {int: [0, 9], steps: 2}
""", search=["model.4.units={choice: []}", "nonsense"])
    where = str(tmp_path / "space.yaml")
    expected = [
        (2, "model.0.filter: unknown argument for Conv2D (did you mean 'filters'?)"),
        (3, "model.3.rate: with model.3 = 1.5: must be"),
        (4, "train.batch_size: empty range [64, 16]"),
        (5, "train.optimizer.learning_rate: a log range must start above 0"),
        (6, "trian: unknown section (did you mean 'train'?)"),
        (7, "train.optimizer.name: with train.optimizer.name = \"adma\": must be one of"),
        (8, "model.2: a 'flatten' layer has no bare-value form"),
        (9, "train.validation: cannot be searched"),
        (10, "train.seed: unknown option 'steps' for int (did you mean 'step'?)"),
    ]
    for line, start in expected:
        assert any(p.startswith(f"{where}:{line}: {start}") for p in problems), (line, problems)
    assert "--search model.4.units={choice: []}: model.4.units: choice: must be a non-empty list" in "\n".join(problems)
    assert any(p.startswith("--search nonsense: expected KEY=SPEC") for p in problems)
    # the space file's fixed fields are checked as --set values are, at their own lines
    (fixed,) = _problems(tmp_path, "search:\n  model.3: {float: [0.0, 0.5]}\nset:\n  train.optimizer.nmae: sgd\n")
    assert fixed.startswith(f"{where}:4: train.optimizer.nmae: ") and "did you mean 'name'" in fixed


def test_space_in_spec_and_file_and_command_line_combine(tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(Path(TINY_SPEC).read_text() + "search:\n  model.3: {float: [0.0, 0.5]}\n"
                         "  train.batch_size: {choice: [32, 64]}\n")
    space_file = tmp_path / "space.yaml"
    space_file.write_text("set: {train.optimizer.name: sgd}\nsearch:\n  train.batch_size: {int: [16, 128], step: 16}\n")
    space = search.load_space(spec_file, space_file, [LEARNING_RATE])
    assert list(space.params) == ["model.3", "train.batch_size", "train.optimizer.learning_rate"]
    assert space.params["model.3"].target == "model.3.rate"  # a layer's bare-value form sets its main argument
    assert space.params["train.batch_size"].kind == "int"  # the space file replaced the spec's entry
    assert space.spec.train.optimizer.name == "sgd"
    assert space.params["train.batch_size"].grid_values() == list(range(16, 129, 16))
    assert space.params["train.optimizer.learning_rate"].grid_values() is None
    # a spec with a search section still trains as it is
    assert specs.load_spec(spec_file).train.batch_size == 64


@pytest.mark.parametrize("config, space", [("a2_hidden128.yaml", "a2_lr_sgd.yaml"),
                                           ("a2_hidden128.yaml", "a2_lr_adam.yaml"),
                                           ("a3_width.yaml", "a3_width.yaml"),
                                           ("fast_fashion.yaml", "fast_fashion.yaml")])
def test_bundled_spaces_fit_their_configs(config, space):
    assert search.load_space(config, space).params


def _tune(*args):
    result = CliRunner().invoke(cli, ["tune", *args, "--json"])
    return result


def test_a_study_runs_its_trials_as_ordinary_tagged_runs(small_dataset, tmp_path):
    runs_dir = tmp_path / "runs"
    args = ["-c", TINY_SPEC, "-d", str(small_dataset), "--search", LEARNING_RATE, "--epochs", "1",
            "--trials", "2", "--runs-dir", str(runs_dir), "--study", "s"]
    result = _tune(*args)
    assert result.exit_code == 0, result.output
    study = json.loads(result.stdout)
    assert study["counted"] == 2 and [t["state"] for t in study["trials"]] == ["complete", "complete"]
    for trial in study["trials"]:
        run = runs.find(trial["run"], runs_dir)
        assert run.status == "finished"
        assert (run.info["study"], run.info["trial"]) == ("s", trial["number"])
        assert run.info["overrides"][0] == "train.validation=0.2"  # the spec validated on the test set
        assert run.metrics["best_val_accuracy"] == pytest.approx(trial["value"])
    best = study["best"]
    assert best["value"] == max(t["value"] for t in study["trials"])
    tested = [t for t in study["trials"] if runs.find(t["run"], runs_dir).metrics["test_accuracy"] is not None]
    assert [t["number"] for t in tested] == [best["number"]]  # the test set is seen once, by the best
    tuned = specs.load_spec(best["spec_file"])
    assert tuned.train.optimizer.learning_rate == pytest.approx(best["params"]["train.optimizer.learning_rate"])
    assert tuned.train.validation == "test"  # as the user's spec had it
    assert Path(study["pictures"]["Optimisation history"]).is_file()
    assert study["importance_note"] == "one parameter searched: nothing to rank"

    # Again, as tables: the study has its trials, nothing is trained, and nothing written is written again.
    before = sorted(p.name for p in runs_dir.iterdir())
    again = CliRunner().invoke(cli, ["tune", *args])
    assert again.exit_code == 0, again.output
    assert "Study s: 2 of 2 trials done" in again.output
    assert f"Best: trial {best['number']}, validation accuracy" in again.output
    assert sorted(p.name for p in runs_dir.iterdir()) == before
    assert sorted(p.name for p in Path(best["spec_file"]).parent.glob("best*.yaml")) == ["best.yaml"]
    # Another space under the same study name is refused.
    other = _tune(*args[:4], "--search", "model.3={float: [0.0, 0.5]}", *args[6:])
    assert other.exit_code == 2 and "another spec or search space" in other.output


def test_values_the_model_cannot_take_prune_that_trial_only(small_dataset, tmp_path):
    result = _tune("-c", TINY_SPEC, "-d", str(small_dataset), "--search", "model.0.kernel_size={choice: [3, 40]}",
                   "--sampler", "grid", "--epochs", "1", "--trials", "2", "--runs-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    by_size = {t["params"]["model.0.kernel_size"]: t for t in json.loads(result.stdout)["trials"]}
    assert by_size[3]["state"] == "complete"
    assert by_size[40]["state"] == "pruned" and "larger than its input" in by_size[40]["note"]
    assert by_size[40]["run"] is None  # no run folder for a model that cannot be built


def test_pruning_callback_stops_training_after_the_epoch_is_recorded(small_dataset, tmp_path):
    from mnistcls import data, runtime, train
    from mnistcls.tune import PruningCallback

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.01))
    trial = study.ask()
    callback = PruningCallback(trial)
    spec = specs.load_spec(TINY_SPEC, ["train.validation=0.2"])  # 2 epochs planned
    strategy = runtime.select_strategy("cpu").strategy
    _, result = train.fit(spec, data.load(str(small_dataset)), tmp_path, strategy=strategy, precision="float32",
                          callbacks=[callback], test=False)
    assert callback.pruned_at == 1 and result.epochs_run == 1
    assert list(study.trials[0].intermediate_values) == [1]
    assert result.test_accuracy is None
    assert len(json.loads((tmp_path / "history.json").read_text())) == 1


def test_ctrl_c_records_the_trial_and_the_next_tune_runs_it_again(small_dataset, tmp_path):
    import threading

    args = ["-c", TINY_SPEC, "-d", str(small_dataset), "--search", LEARNING_RATE, "--epochs", "2", "--trials", "1",
            "--pruner", "none", "--runs-dir", str(tmp_path)]

    def press_ctrl_c_after_an_epoch():
        while not any(run.history for run in runs.all_runs(tmp_path)):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=press_ctrl_c_after_an_epoch, daemon=True).start()
    stopped = _tune(*args)
    assert stopped.exit_code == 130, stopped.output
    assert "queued to run again" in stopped.output
    (interrupted,) = runs.all_runs(tmp_path)
    assert interrupted.status == "interrupted"

    again = _tune(*args)
    assert again.exit_code == 0, again.output
    first, retry = json.loads(again.stdout)["trials"]
    assert (first["state"], first["run"], first["note"]) == ("fail", interrupted.id,
                                                           "interrupted (Ctrl-C); run again as trial 1")
    assert retry["state"] == "complete" and retry["params"] == first["params"] and retry["run"] != first["run"]


# --- processes: several workers, and kill -9 --------------------------------------------

def _command(small_dataset, runs_dir, *extra):
    return [sys.executable, "-m", "mnistcls", "tune", "-c", TINY_SPEC, "-d", str(small_dataset),
            "--search", LEARNING_RATE, "--runs-dir", str(runs_dir), "--json", *extra]


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def test_two_workers_share_one_postgres_study(small_dataset, tmp_path, postgres_url):
    trials = 4
    workers = [subprocess.Popen(_command(small_dataset, tmp_path / f"machine{i}", "--storage", postgres_url,
                                         "--study", "shared", "--trials", str(trials), "--epochs", "1",
                                         "--pruner", "none"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
               for i in range(2)]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    assert [w.returncode for w in workers] == [0, 0], [err[-2000:] for _, err in outputs]
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    counted = study.get_trials(states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
    assert len(counted) == trials
    numbers = [run.info["trial"] for i in range(2) for run in runs.all_runs(tmp_path / f"machine{i}")]
    assert len(numbers) == len(set(numbers)), "a trial was trained twice"
    assert {t.number for t in counted} <= set(numbers)
    # A worker that stops while the other trains the last trial reports the study one short; the last reports N.
    assert max(json.loads(out)["counted"] for out, _ in outputs) == trials


def test_a_study_killed_mid_trial_is_completed_by_running_tune_again(small_dataset, tmp_path):
    runs_dir = tmp_path / "runs"
    command = _command(small_dataset, runs_dir, "--trials", "1", "--epochs", "2", "--study", "k", "--pruner", "none")
    worker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    deadline = time.monotonic() + 240
    while not any(len(run.history) >= 1 for run in runs.all_runs(runs_dir)):  # mid-trial: an epoch done
        assert worker.poll() is None and time.monotonic() < deadline, worker.stderr.read() if worker.poll() else "slow"
        time.sleep(0.1)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    (killed,) = runs.all_runs(runs_dir)
    assert killed.status == "killed"

    rerun = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    study = json.loads(rerun.stdout)
    assert study["counted"] == 1 and len(study["trials"]) == 2
    lost = next(t for t in study["trials"] if t["run"] == killed.id)
    assert lost["state"] == "fail" and "run again as trial" in lost["note"]
    again = next(t for t in study["trials"] if t["number"] == int(lost["note"].rsplit(" ", 1)[1]))
    assert again["state"] == "complete" and again["params"] == lost["params"]


def test_a_changed_best_spec_goes_to_a_new_file_and_the_same_one_is_kept(tmp_path):
    from mnistcls.tune import _write_new

    first = _write_new(tmp_path / "studies" / "s" / "best.yaml", "a: 1\n")
    assert first == tmp_path / "studies" / "s" / "best.yaml"
    assert _write_new(first, "a: 1\n") == first  # the same best: no new file
    second = _write_new(first, "a: 2\n")
    assert second.name == "best-2.yaml" and first.read_text() == "a: 1\n" and second.read_text() == "a: 2\n"
    assert _write_new(first, "a: 2\n") == second


def test_parameter_importances_are_pedanova_and_need_no_scikit_learn(monkeypatch):
    import optuna

    from mnistcls import search, tune

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("a", 0, 1) + 0.1 * t.suggest_float("b", 0, 1), n_trials=12)
    params = {name: search.Param(name, name, "float", low=0.0, high=1.0) for name in ("a", "b")}
    used = []
    real = optuna.importance.get_param_importances
    monkeypatch.setattr(optuna.importance, "get_param_importances",
                        lambda study, evaluator=None, **kw: used.append(evaluator) or real(study, evaluator=evaluator,
                                                                                           **kw))
    monkeypatch.setitem(sys.modules, "sklearn", None)  # as where scikit-learn is not installed
    importances, note = tune._importances(study, params)
    assert note is None and set(importances) == {"a", "b"} and importances["a"] > importances["b"]
    assert isinstance(used[0], optuna.importance.PedAnovaImportanceEvaluator)


def test_processes_that_open_a_new_default_storage_at_once_all_get_it(tmp_path):
    """SQLite lets one of them create the tables; the others ('table already exists') try again."""
    from mnistcls import storages

    script = f"from mnistcls import storages; storages.open_storage(None, {str(tmp_path)!r}); print('opened')"
    openers = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for _ in range(6)]
    results = [opener.communicate(timeout=120) for opener in openers]
    assert [out.strip() for out, _ in results] == ["opened"] * 6, [err[-500:] for _, err in results]
    assert (tmp_path / storages.STORAGE_FILE).is_file()
