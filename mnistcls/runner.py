"""Training runs: planned from specs, checked together, then each trained and recorded in its folder.

The one path every run takes, whichever command asks for it: `mnistcls train`
(through jobs), `mnistcls study` and `mnistcls tune`. `train_all` plans every run
(configs x sweep values x datasets), checks every spec and loads every dataset
before the first epoch, so a mistake in the last spec of a study is found in
seconds, not hours; `train_and_record` trains one run in its folder and records
how it ended.
"""

import dataclasses
import itertools
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from mnistcls import data, keras_compat, phases, plots, progress, runs, runtime, spec as specs
from mnistcls.build import build_model
from mnistcls.errors import Diverged, Interrupted, SpecError


@dataclass
class Job:
    spec: object
    dataset: str  # as the user named it: mnist, fashion, or a folder
    sweep: dict = field(default_factory=dict)  # swept field -> this run's value
    run: object = None  # set when resuming



def train_all(configs, datasets, overrides, *, resume=None, restart=False, device=runtime.DEFAULT_DEVICE,
              gpus=None, runs_directory=None, data_dir=None, offline=None, reporter=progress.SILENT):
    """Train every planned run; return one result dict per run.

    `resume` names a run to continue (`restart`: train it again from its first epoch).
    """
    placement = place(device, gpus)
    if not placement.is_chief:
        runs_directory = runs.worker_runs_dir(placement.task_index)
    planned = [resumed_job(resume, runs_directory)] if resume else plan(configs, datasets, overrides)
    loaded = check_and_load(planned, data_dir, offline, reporter)
    reporter.note(f"Training on {placement.description}")
    return [train_one(job, loaded[job.dataset], placement, runs_directory, reporter, restart=restart)
            for job in planned]


def place(device=runtime.DEFAULT_DEVICE, gpus=None):
    """Where runs will train (runtime.Placement), once the installed Keras is known to be one mnistcls was
    tested with: before any run folder is made."""
    keras_compat.check_keras_version()
    with phases.phase("choose the device"):
        return runtime.select_strategy(device, gpus)


def check_and_load(planned, data_dir, offline, reporter):
    """Load the datasets of the `planned` Jobs and check every model's shapes and batch size on them, all
    before the first epoch; {dataset name: data.Dataset}. One SpecError lists the problems of all."""
    with phases.phase("find, verify and load the data"):
        loaded = load_datasets({job.dataset for job in planned}, data_dir, offline, reporter)
    from mnistcls import train  # imports TensorFlow

    problems = []
    for job in _differently_built(planned):
        dataset = loaded[job.dataset]
        try:
            with phases.phase("check every model's shapes and batch size"):
                build_model(job.spec, (*dataset.image_shape, 1), dataset.num_classes)
                train.check_sizes(job.spec, len(dataset.x_train))
        except SpecError as err:
            problems += [p for p in err.problems if p not in problems]
    if problems:
        raise SpecError(problems)
    runtime.enable_determinism()
    return loaded


def _differently_built(planned):
    """One job of each group that builds and checks alike: jobs that differ only in their seed (a study's
    repeats) build the same model from the same data."""
    distinct = {}
    for job in planned:
        recipe = job.spec.to_dict()
        recipe["train"] = {**recipe["train"], "seed": None}
        distinct.setdefault(json.dumps([recipe, job.dataset], sort_keys=True), job)
    return distinct.values()


def plan(configs, datasets, overrides):
    """One Job per config x sweep value x dataset; raise one SpecError listing every problem."""
    alternatives = [specs.split_sweep(o) for o in overrides]
    swept = [alt for alt in alternatives if len(alt) > 1]
    jobs, problems = [], []
    for config in configs:
        for combination in itertools.product(*alternatives):
            for dataset in datasets or [None]:
                extra = [f"data.dataset={json.dumps(dataset_name(dataset))}"] if dataset else []
                try:
                    spec = specs.load_spec(config, [*combination, *extra])
                except SpecError as err:
                    problems += [p for p in err.problems if p not in problems]
                    continue
                sweep = {o.partition("=")[0]: o.partition("=")[2] for o in combination
                         if any(o in alt for alt in swept)}
                jobs.append(Job(spec, spec.data.dataset, sweep))
    if problems:
        raise SpecError(problems)
    return jobs


def dataset_name(dataset):
    """A built-in dataset's name, or a folder's absolute path (so that the run can be found from anywhere)."""
    if dataset in data.DATASET_NAMES or not Path(dataset).is_dir():
        return dataset
    return str(Path(dataset).resolve())


def resumed_job(reference, runs_directory=None):
    """The Job that continues an unfinished run (a UsageError if it cannot be resumed)."""
    run = runs.find(reference, runs_directory)
    runs.check_resumable(run)
    spec = specs.parse_spec(run.spec_text, str(run.path / "spec.yaml"))
    return Job(spec, run.info["dataset"], run.info.get("sweep", {}), run)


def load_datasets(names, data_dir, offline, reporter, splits=data.SPLITS):
    with reporter.downloads() as downloads:
        return {name: data.load(name, data_dir=data_dir, offline=offline, splits=splits, progress=downloads)
                for name in names}


def train_one(job, dataset, placement, runs_directory, reporter, *, on_run=None, callbacks=(), restart=False):
    """Train one planned job in its run folder; its result row (status "diverged" and an error if it diverged).

    `on_run(run)` is called as the run's folder is made or taken up again, before its
    first epoch, so that a caller can record where the run lives even if it is then
    interrupted. `callbacks` are Keras callbacks called after each epoch is recorded.
    """
    spec = job.spec
    if job.run:  # a resumed run keeps the precision it started with, wherever it continues
        precision = job.run.info.get("precision") or runtime.choose_precision(spec.train.precision, placement.on_gpu)
        runs.resume(job.run)
    else:
        precision = runtime.choose_precision(spec.train.precision, placement.on_gpu)
    with phases.phase("make the run's folder and record"):
        run = job.run or runs.create(runs_directory, spec, job.dataset,
                                     run_environment(spec, dataset, placement, precision, job.sweep),
                                     started=runtime.chiefs_value(placement, time.time()))
    if on_run:
        on_run(run)
    row = {"run": run.id, "config": spec.name, "dataset": dataset.name, "sweep": job.sweep}
    try:
        result = train_and_record(run, spec, dataset, placement, precision, title=f"{spec.name} on {dataset.name}",
                                  reporter=reporter, callbacks=callbacks, restart=restart)
    except Diverged as err:  # recorded; the other runs of a sweep or study still train
        return {**row, "status": "diverged", "validation": spec.train.validation, "error": str(err)}
    finally:
        run.release()
    row = {**row, "status": "at chance" if result.at_chance else "finished", **result.to_dict()}
    if result.at_chance:
        row["error"] = at_chance_message(run.id, result)
    reporter.run_finished(row)
    return row


def at_chance_message(run_id, result):
    reached = result.test_accuracy if result.test_accuracy is not None else result.best_val_accuracy
    return (f"run {run_id} learned nothing: it ends at {reached:.1%}, what always guessing the most common class "
            f"scores ({result.chance_accuracy:.1%}); lower the learning rate (--lr or "
            "train.optimizer.learning_rate), or look for labels that do not match their images")


def run_environment(spec, dataset, placement, precision, sweep):
    """What run.json records about how a new run is trained, beside its spec."""
    from mnistcls import train  # imports TensorFlow

    steps = train.steps_per_epoch(spec.train, len(dataset.x_train))
    return {
        "sweep": sweep, "device": placement.description, "replicas": placement.strategy.num_replicas_in_sync,
        "precision": precision, "versions": runtime.versions(), "command": sys.argv,
        "data": {"source": dataset.source, "verified": dataset.verified},
        # What best_val_* were measured on: "test" makes them the best test scores seen during training.
        "validation": spec.train.validation,
        # The spec's steps_per_execution, at most an epoch's steps (one per call on a cluster): the one used.
        "steps_per_epoch": steps, "steps_per_execution": train.steps_per_execution(spec.train, steps,
                                                                                    placement.strategy),
    }


def train_and_record(run, spec, dataset, placement, precision, *, title, reporter, callbacks=(), test=True,
                     restart=False):
    """Train `spec` in `run`'s folder and record how it ended; the TrainResult of a finished run.

    The run's status follows what happened: finished; interrupted (raised as
    Interrupted, with the command that continues it); diverged (Diverged); failed
    (the error is raised again). With `test`, the final test uses the spec's
    test-time augmentation.
    """
    from mnistcls import train  # imports TensorFlow

    try:
        with reporter.training(f"{title}  ({precision}, run {run.path})") as shown:
            model, result = train.fit(spec, dataset, run.path, strategy=placement.strategy, precision=precision,
                                      progress=shown, callbacks=callbacks, test=test, restart=restart)
        if test and spec.data.tta != "none":
            with phases.phase("test-time augmentation of the test"):
                result = _tested_with_tta(model, dataset, spec.data.tta, result)
        result = _judged_against_chance(result, dataset)
    except KeyboardInterrupt:
        run.update(status="interrupted")
        raise Interrupted(f"interrupted: {run.path} keeps the last completed epoch; "
                          f"continue with: mnistcls train --resume {run.id}") from None
    except Diverged as err:
        run.update(status="diverged", error=str(err))
        raise Diverged(f"run {run.id}: {err}") from None
    except BaseException as err:
        run.update(status="failed", error=f"{type(err).__name__}: {err}")
        raise
    runs.finish(run, result.to_dict())
    shutil.rmtree(run.path / "backup", ignore_errors=True)  # only a cluster's unfinished run needs it
    with phases.phase("curves.png"):
        plots.learning_curves({run.id: run.curves}, run.path / "curves.png", title=title,
                              validation=plots.validated_on([spec.train.validation]))
    return result


CHANCE_MARGIN = 0.01  # within a point of always guessing the most common class: nothing was learned


def _judged_against_chance(result, dataset):
    """`result` with the accuracy of always guessing the most common class, and whether it did no better.

    A learning rate far too high can keep the loss finite while the weights learn
    nothing: such a run must not read as a result. The final test accuracy is judged
    where it was measured, else the best validation accuracy (tune's trials).
    """
    import numpy as np

    labels = dataset.y_test if result.test_accuracy is not None else dataset.y_train
    chance = float(np.bincount(labels).max() / len(labels))
    reached = result.test_accuracy if result.test_accuracy is not None else result.best_val_accuracy
    return dataclasses.replace(result, chance_accuracy=chance, at_chance=bool(reached <= chance + CHANCE_MARGIN))


def _tested_with_tta(model, dataset, tta, result):
    """`result` with its test figures measured under test-time augmentation `tta`, as evaluate measures them."""
    from mnistcls import evaluate

    tested = evaluate.evaluate(model, dataset, tta)
    return dataclasses.replace(result, test_accuracy=tested.accuracy, test_loss=tested.loss,
                               test_accuracy_without_tta=result.test_accuracy)

