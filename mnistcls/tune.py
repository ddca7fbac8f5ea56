"""`mnistcls tune`: a hyperparameter search with Optuna over the fields of a spec.

Each trial draws values for the searched fields (search.py), resolves the spec with
them and trains it through the ordinary path (`runs.create` + `train.fit`), so every
trial is a run folder like any other, tagged in run.json with its study and trial
number. The objective is the best validation accuracy on a hold-out of the training
set: a spec that validates on the test set is given a HOLD_OUT instead, and the
test set is read once, for the best trial, when the search ends.

Decisions worth knowing:

* Storage. A study lives in an Optuna storage: by default an SQLite file in the runs
  directory, else any database URL Optuna takes (postgresql://... for many machines)
  or a journal file on a shared disk. Reopening a study checks that the spec and
  space are the ones it was created with; without --config it uses the stored ones.
* Interrupted trials. A trial whose process died (kill -9, a lost machine) would
  stay RUNNING for ever. Two things end it, both recording it as FAIL and queueing
  a copy with the same values (Optuna's RetryHeartbeatStaleTrialCallback):
  Optuna's heartbeat, for database storages (a trial silent for the grace period is
  stale, whichever machine ran it), and, at start, a check of this machine's own
  trials, whose run folders say whether their process is still alive (runs: status
  `killed`), so a rerun here needs no grace period, and which also serves the journal
  file (Optuna has no heartbeat for it). Ctrl-C records the trial as FAIL and queues
  its copy at once.
* Counting. `--trials N` counts COMPLETE and PRUNED trials of the whole study, not
  of this process, so several workers together stop at N: a worker stops when the
  finished and running trials reach N (Optuna's MaxTrialsCallback over those
  states), and a trial that finds N trials numbered before it gives itself up.
* Invalid values. A drawn combination the model cannot take (a kernel larger than
  its input) is recorded as PRUNED with the problem: pruned, not failed, because
  samplers learn from pruned trials to avoid the region, and never from failed ones.
"""

import json
import socket
from pathlib import Path

import keras
import optuna
import yaml
from optuna.trial import TrialState

from mnistcls import checks, plots, progress, runner, runs, runtime, search as spaces, spec as specs, storages
from mnistcls.build import build_model
from mnistcls.errors import Diverged, Interrupted, MnistclsError, SpecError, UsageError
from mnistcls.files import inside, name_part, new_file, numbered, write_json, write_text

HOLD_OUT = 0.2  # fraction of the training set validated on when the spec validates on the test set
FAILURES_IN_A_ROW = 3  # trials failing one after another in a process: a problem no other values will fix
IMPORTANCE_MIN_TRIALS = 5  # completed trials before parameter importances mean anything
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)  # the states --trials counts

SAMPLERS = {
    "tpe": lambda params, seed: optuna.samplers.TPESampler(seed=seed),
    "random": lambda params, seed: optuna.samplers.RandomSampler(seed=seed),
    "grid": lambda params, seed: optuna.samplers.GridSampler(_grid(params), seed=seed),
}
PRUNERS = {"median": optuna.pruners.MedianPruner, "none": optuna.pruners.NopPruner}


class _TrialFailed(Exception):
    """A trial's own error (recorded on the trial, and the study goes on)."""


def tune(config=None, *, space_file=None, search=(), overrides=(), dataset=None, trials, timeout=None,
         sampler="tpe", sampler_seed=None, pruner="median", study_name=None, storage=None,
         device=runtime.DEFAULT_DEVICE, runs_directory=None, data_dir=None, offline=None, reporter=progress.SILENT,
         verbose=False):
    """Run trials until the study has `trials` COMPLETE + PRUNED trials (or `timeout` seconds pass).

    Returns `results(study, ...)` of the whole study, the best trial's test accuracy
    measured and its spec written.
    """
    if sampler not in SAMPLERS or pruner not in PRUNERS:
        raise UsageError(f"--sampler: one of {', '.join(SAMPLERS)}; --pruner: one of {', '.join(PRUNERS)}")
    storages.quiet_optuna(verbose)
    if not config and (space_file or search or overrides or dataset):
        raise UsageError("--space, --search, --set, --epochs and --dataset shape a new study's trials: give them "
                         "with --config; --study NAME alone continues a study as it was stored")
    if dataset:
        overrides = [f"data.dataset={json.dumps(runner.dataset_name(dataset))}", *overrides]
    space = spaces.load_space(config, space_file, search, overrides) if config else None
    if space is None and not study_name:
        raise UsageError("give a spec with --config (e.g. --config fast_fashion.yaml), or --study NAME of a study "
                         "that exists in the storage")
    name = study_name or _default_name(space, space_file)
    store, where = storages.open_storage(storage, runs_directory)
    setup = _setup(store, name, space)
    params = {field: spaces.Param(**{**p, "choices": tuple(p["choices"])}) for field, p in setup["search"].items()}
    study = optuna.load_study(study_name=name, storage=store, sampler=SAMPLERS[sampler](params, sampler_seed),
                              pruner=PRUNERS[pruner]())

    placement = runtime.select_strategy(device)
    if placement.num_workers > 1:
        raise UsageError("tune trains each trial in one process: unset TF_CONFIG and start a `mnistcls tune` "
                         "per machine on one --storage instead")
    dataset_name = setup["spec"]["data"]["dataset"]
    loaded = runner.load_datasets([dataset_name], data_dir, offline, reporter)[dataset_name]
    runtime.enable_determinism()
    objective = _Objective(study, setup, params, loaded, placement, runs_directory, trials, reporter)
    storages.end_lost_trials(study, runs_directory)
    reporter.note(f"Study {name} in {where}: {_counted(study)} of {trials} trials done; "
                  f"training on {placement.description}")
    enough = optuna.study.MaxTrialsCallback(trials, states=(*COUNTED, TrialState.RUNNING))
    try:
        if len(study.get_trials(deepcopy=False, states=(*COUNTED, TrialState.RUNNING))) < trials:
            study.optimize(objective, timeout=timeout, catch=(_TrialFailed,),
                           callbacks=[lambda study, trial: (storages.end_lost_trials(study, runs_directory),
                                                            enough(study, trial))])
    except KeyboardInterrupt:
        interrupted = objective.current
        lost = interrupted is not None and study.trials[interrupted].state == TrialState.FAIL
        if lost:
            storages.retry(study, study.trials[interrupted])
        raise Interrupted("interrupted: " + (f"trial {interrupted} is recorded as failed and queued to run again; "
                                             if lost else "every finished trial is kept; ")
                          + f"continue the study with the same command (or: mnistcls tune --study {name}"
                          + (" --storage URL" if storage else "") + f" --trials {trials})") from None
    return results(study, setup, params, loaded, runs_directory, target=trials, storage_words=where)


def _default_name(space, space_file):
    parts = [space.spec.name, Path(space_file).stem if space_file else None, Path(space.spec.data.dataset).name]
    return "-".join(p for p in parts if p)


def _setup(storage, name, space):
    """The study's setup (spec, space, hold-out), creating the study or checking a reopened one against `space`."""
    wanted = None
    if space is not None:
        hold_out = HOLD_OUT if space.spec.train.validation == "test" else None
        wanted = json.loads(json.dumps({**space.setup(), "hold_out": hold_out}))
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=True)
    else:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
            raise UsageError(f"no study '{name}' in the storage" + checks.did_you_mean(name, names)
                             + "; start one with --config SPEC") from None
    stored = study.user_attrs.get("setup")
    if stored is None and wanted is not None:
        study.set_user_attr("setup", wanted)
        return wanted
    if stored is None:
        raise UsageError(f"study '{name}' was not made by mnistcls tune; give --config to start another study")
    if wanted is not None and wanted != stored:
        raise UsageError(f"study '{name}' was started with another spec or search space; give the same ones, "
                         "leave out --config to continue it as it was, or name a new study with --study")
    return stored


def _grid(params):
    grid = {name: p.grid_values() for name, p in params.items()}
    continuous = [name for name, values in grid.items() if values is None]
    if continuous:
        raise UsageError(f"--sampler grid needs finite values: give {', '.join(continuous)} a step "
                         f"(at most {spaces.GRID_MAX_VALUES} values), or a choice")
    return grid


def _counted(study):
    return len(study.get_trials(deepcopy=False, states=COUNTED))


class PruningCallback(keras.callbacks.Callback):
    """Reports each epoch's validation accuracy to an Optuna trial; stops training when the pruner says so.

    It stops Keras' loop (stop_training) rather than raising inside it, so the epoch
    is recorded and the run folder ends whole; the trial is then told it was pruned.
    """

    def __init__(self, trial):
        super().__init__()
        self.trial = trial
        self.pruned_at = None  # the epoch after which it stopped

    def on_epoch_end(self, epoch, logs=None):
        self.trial.report(float(logs["val_accuracy"]), epoch + 1)
        if self.trial.should_prune():
            self.pruned_at = epoch + 1
            self.model.stop_training = True


class _Objective:
    """One trial: draw values, resolve and check the spec, train it as an ordinary run."""

    def __init__(self, study, setup, params, dataset, placement, runs_directory, target, reporter):
        self.study, self.setup, self.params, self.dataset = study, setup, params, dataset
        self.placement, self.runs_directory, self.target, self.reporter = placement, runs_directory, target, reporter
        self.hold_out = [f"train.validation={setup['hold_out']}"] if setup["hold_out"] else []
        self.current = None
        self.failures = 0  # trials failed in a row here

    def __call__(self, trial):
        from mnistcls import train  # imports TensorFlow

        self.current = trial.number
        for key in ("run", "error", "epochs"):  # a retried trial starts with the attributes of the one it repeats
            if trial.user_attrs.get(key) is not None:
                trial.set_user_attr(key, None)
        trial.set_user_attr("host", socket.gethostname())
        values = {name: _suggest(trial, param) for name, param in self.params.items()}
        try:
            spec = trial_spec(self.study.study_name, self.setup, self.params, values, self.hold_out)
            build_model(spec, (*self.dataset.image_shape, 1), self.dataset.num_classes)
            train.check_sizes(spec, len(self.dataset.x_train))
        except SpecError as err:
            message = "; ".join(f"{p.path}: {p.message}" if p.path else p.message for p in err.problems)
            trial.set_user_attr("error", message)
            raise optuna.TrialPruned(message) from None
        if self._surplus(trial):
            trial.set_user_attr("error", f"not needed: the study had {self.target} trials when it started")
            self.study.stop()
            raise _TrialFailed(trial.user_attrs["error"])
        return self._train(trial, spec, values)

    def _surplus(self, trial):
        """Whether N trials numbered before this one are finished or running (another worker took the last)."""
        before = [t for t in self.study.get_trials(deepcopy=False, states=(*COUNTED, TrialState.RUNNING))
                  if t.number < trial.number]
        return len(before) >= self.target

    def _train(self, trial, spec, values):
        placement, dataset = self.placement, self.dataset
        precision = runtime.choose_precision(spec.train.precision, placement.on_gpu)
        sweep = {name: value if isinstance(value, str) else json.dumps(value) for name, value in values.items()}
        run = runs.create(self.runs_directory, spec, spec.data.dataset, {
            "study": self.study.study_name, "trial": trial.number,
            **runner.run_environment(spec, dataset, placement, precision, sweep)})
        trial.set_user_attr("run", run.id)
        pruning = PruningCallback(trial)
        title = f"{spec.name}, trial {trial.number}: " + ", ".join(f"{k}={_short(v)}" for k, v in values.items())
        try:
            result = runner.train_and_record(run, spec, dataset, placement, precision, title=title,
                                           reporter=self.reporter, callbacks=[pruning], test=False)
        except Interrupted:  # the run is recorded as interrupted; tune() queues the trial again
            trial.set_user_attr("error", "interrupted (Ctrl-C)")
            raise KeyboardInterrupt from None
        except Diverged as err:  # a learning rate too high for the model: the sampler learns to avoid it
            trial.set_user_attr("error", str(err))
            raise optuna.TrialPruned(str(err)) from None
        except Exception as err:  # a trial's own error (say, out of memory for its width): the next may do better
            message = f"{type(err).__name__}: {err}"
            trial.set_user_attr("error", message)
            self.failures += 1
            if self.failures >= FAILURES_IN_A_ROW:  # failed trials do not count: without this it would never end
                raise MnistclsError(f"{self.failures} trials failed in a row, the last (run {run.id}) with "
                                    f"{message}; stopping") from err
            raise _TrialFailed(message) from err
        finally:
            run.release()
        self.failures = 0
        trial.set_user_attr("epochs", result.epochs_run)
        if pruning.pruned_at:
            run.update(status="pruned")
            raise optuna.TrialPruned(f"at epoch {pruning.pruned_at}")
        return result.best_val_accuracy


def trial_spec(study_name, setup, params, values, extra=()):
    """The study's spec with `values` for its searched fields (and `extra` overrides first)."""
    overrides = [*extra, *(params[name].override(value) for name, value in values.items())]
    return specs.parse_spec(yaml.safe_dump(setup["spec"], sort_keys=False), f"study {study_name}", overrides)


def _suggest(trial, param):
    if param.kind == "choice":
        return trial.suggest_categorical(param.name, list(param.choices))
    suggest = trial.suggest_int if param.kind == "int" else trial.suggest_float
    return suggest(param.name, param.low, param.high, log=param.log, **({"step": param.step} if param.step else {}))


def _short(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# --- results ----------------------------------------------------------------------

def results(study, setup, params, dataset, runs_directory, *, target, storage_words):
    """Everything `tune` reports on a study: its trials, the best one (test accuracy measured once, its
    spec written), parameter importances, and the PNGs of the search."""
    trials = [_row(t, study.trials) for t in study.trials]
    folder = inside(runs.runs_dir(runs_directory) / "studies", study.study_name)
    best = _best(study, setup, params, dataset, runs_directory, folder)
    importances, note = _importances(study, params)
    finished = [row for row in trials if row["value"] is not None]
    pictures = {}
    if finished:
        pictures["Optimisation history"] = str(plots.tuning_history(
            [row["number"] for row in finished], [row["value"] for row in finished],
            [row["state"] for row in finished], folder / "history.png", title=f"study {study.study_name}"))
        for name, param in params.items():
            pictures[f"{name} against validation accuracy"] = str(plots.param_effect(
                [row["params"].get(name) for row in finished], [row["value"] for row in finished],
                [row["state"] for row in finished], folder / f"param-{name_part(name)}.png", param_name=name,
                log_x=param.log, categorical=param.kind == "choice"))
    return {"study": study.study_name, "storage": storage_words, "target": target, "counted": _counted(study),
            "params": list(params), "trials": trials, "best": best, "importances": importances,
            "importance_note": note, "pictures": pictures}


def _row(trial, every):
    retried_as = [t.number for t in every if t.system_attrs.get("failed_trial") is not None
                  and trial.number in [*t.system_attrs.get("retry_history", [])]]
    note = trial.user_attrs.get("error") or ""
    if trial.state == TrialState.FAIL and not note:
        note = "its process was lost (killed, or its machine stopped)"
    if retried_as:
        note += f"; run again as trial {retried_as[0]}"
    if trial.state == TrialState.PRUNED and trial.intermediate_values and not trial.user_attrs.get("error"):
        note = f"pruned after epoch {max(trial.intermediate_values)}"
    reached = trial.value if trial.state == TrialState.COMPLETE else (
        max(trial.intermediate_values.values()) if trial.intermediate_values else None)
    seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() \
        if trial.datetime_complete and trial.datetime_start else None
    return {"number": trial.number, "state": trial.state.name.lower(), "params": trial.params, "value": reached,
            "epochs": trial.user_attrs.get("epochs"), "seconds": seconds, "run": trial.user_attrs.get("run"),
            "host": trial.user_attrs.get("host"), "note": note.lstrip("; ")}


def _best(study, setup, params, dataset, runs_directory, folder):
    """The best COMPLETE trial: its run, its test accuracy (measured once) and its spec as a YAML file."""
    try:
        trial = study.best_trial
    except ValueError:
        return None
    best = {"number": trial.number, "value": trial.value, "params": trial.params,
            "run": trial.user_attrs.get("run"), "host": trial.user_attrs.get("host")}
    run = runs.Run(runs.runs_dir(runs_directory) / best["run"]) if best["run"] else None
    if run is not None and (run.path / "model.keras").is_file():
        best.update(_test_once(run, dataset))
    else:
        best["test_note"] = (f"run {best['run']} is on {best['host']}: measure its test accuracy there with "
                             f"mnistcls evaluate --run {best['run']}")
    spec = trial_spec(study.study_name, setup, params, trial.params)
    spec.name, spec.description = f"{spec.name}_tuned", (
        f"Best of study {study.study_name} (trial {trial.number}, validation accuracy {trial.value:.4f})")
    header = (f"# Trial {trial.number} of study {study.study_name}: validation accuracy {trial.value:.4f} "
              f"(run {best['run']}).\n# Searched: " + ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
              + "\n# Train it: mnistcls train --config THIS_FILE\n")
    best["spec_file"] = str(_write_new(folder / "best.yaml", header + yaml.safe_dump(spec.to_dict(), sort_keys=False)))
    return best


def _test_once(run, dataset):
    """The run's test accuracy and loss: measured on the first call, then read from its metrics.json."""
    metrics = run.metrics
    if metrics.get("test_accuracy") is None:
        from mnistcls import evaluate

        evaluation = evaluate.evaluate(evaluate.load_model(run.path / "model.keras"), dataset,
                                       runs.test_time_augmentation(run))
        metrics = {**metrics, "test_accuracy": evaluation.accuracy, "test_loss": evaluation.loss}
        write_json(run.path / "metrics.json", metrics)
    return {"test_accuracy": metrics["test_accuracy"], "test_loss": metrics["test_loss"]}


def _write_new(path, text):
    """Write `text` to `path`, or to path-2, path-3... : never over another file; the same text is kept as is."""
    for candidate in numbered(path):
        if not candidate.exists():
            break
        if candidate.read_text(encoding="utf-8") == text:
            return candidate
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_text(new_file(path), text)


def _importances(study, params):
    """(parameter -> importance, None) or (None, why there are none)."""
    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if len(params) < 2:
        return None, "one parameter searched: nothing to rank"
    if complete < IMPORTANCE_MIN_TRIALS:
        return None, f"importances need {IMPORTANCE_MIN_TRIALS} completed trials; the study has {complete}"
    try:
        # Named, not Optuna's default: before Optuna 5 that was fANOVA, which needs scikit-learn.
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        return optuna.importance.get_param_importances(study, evaluator=evaluator), None
    except (RuntimeError, ValueError) as err:
        return None, f"importances could not be computed: {err}"
