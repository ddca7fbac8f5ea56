"""What the commands do, step by step, without click: the layer between the library and the CLI.

`train_all` plans every run (configs x sweep values x datasets), checks every spec
and loads every dataset before the first epoch, so a mistake in the last spec of a
study is found in seconds, not hours. Each run is then trained and recorded in
turn.
"""

import dataclasses
import functools
import itertools
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from mnistcls import data, images, keras_compat, plots, progress, report, runs, runtime, spec as specs
from mnistcls.build import build_model, lay_out, summarize
from mnistcls.errors import DataError, Diverged, Interrupted, SpecError, UsageError


@dataclass
class Job:
    spec: object
    dataset: str  # as the user named it: mnist, fashion, or a folder
    sweep: dict = field(default_factory=dict)  # swept field -> this run's value
    run: object = None  # set when resuming


def summarize_specs(configs, overrides):
    """A build.ModelSummary per spec (every bundled config when `configs` is empty).

    Every spec is checked before any is reported: one SpecError lists the problems of all.
    """
    paths = configs or [str(p) for p in specs.bundled_configs()]
    summaries, problems = [], []
    for path in paths:
        try:
            spec = specs.load_spec(path, overrides)
            model, paths = lay_out(spec)
            summaries.append(summarize(model, spec.name, spec.description, paths))
        except SpecError as err:
            problems += err.problems
    if problems:
        raise SpecError(problems)
    return summaries


def train_all(configs, datasets, overrides, *, resume=None, restart=False, planned=None, on_run=None,
              device=runtime.DEFAULT_DEVICE, gpus=None, runs_directory=None, data_dir=None, offline=None,
              reporter=progress.SILENT):
    """Train every planned run; return one result dict per run.

    `resume` names a run to continue (`restart`: train it again from its first epoch).
    `planned` (Jobs from `plan` and `resumed_job`, as a study makes them) replaces
    configs, datasets, overrides and resume. `on_run(job, run)` is called as each
    run's folder is made or taken up again, before its first epoch, so that a
    caller can record where the run lives even if it is then interrupted.
    """
    keras_compat.check_keras_version()  # before any run folder is made
    placement = runtime.select_strategy(device, gpus)
    if not placement.is_chief:
        runs_directory = runs.worker_runs_dir(placement.task_index)
    if planned is None:
        planned = [resumed_job(resume, runs_directory)] if resume else plan(configs, datasets, overrides)
    loaded = load_datasets({job.dataset for job in planned}, data_dir, offline, reporter)
    from mnistcls import train  # imports TensorFlow

    problems = []
    for job in planned:  # every shape and size checked before the first epoch
        dataset = loaded[job.dataset]
        try:
            build_model(job.spec, (*dataset.image_shape, 1), dataset.num_classes)
            train.check_sizes(job.spec, len(dataset.x_train))
        except SpecError as err:
            problems += [p for p in err.problems if p not in problems]
    if problems:
        raise SpecError(problems)
    runtime.enable_determinism()
    reporter.note(f"Training on {placement.description}")
    return [_train_one(job, loaded[job.dataset], placement, runs_directory, reporter, on_run, restart)
            for job in planned]


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


def _train_one(job, dataset, placement, runs_directory, reporter, on_run=None, restart=False):
    """Train one planned job in its run folder; its result row (status "diverged" and an error if it diverged)."""
    spec = job.spec
    if job.run:  # a resumed run keeps the precision it started with, wherever it continues
        precision = job.run.info.get("precision") or runtime.choose_precision(spec.train.precision, placement.on_gpu)
        runs.resume(job.run)
    else:
        precision = runtime.choose_precision(spec.train.precision, placement.on_gpu)
    run = job.run or runs.create(runs_directory, spec, job.dataset,
                                 run_environment(spec, dataset, placement, precision, job.sweep),
                                 started=runtime.chiefs_value(placement, time.time()))
    if on_run:
        on_run(job, run)
    row = {"run": run.id, "config": spec.name, "dataset": dataset.name, "sweep": job.sweep}
    try:
        result = train_and_record(run, spec, dataset, placement, precision, title=f"{spec.name} on {dataset.name}",
                                  reporter=reporter, restart=restart)
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
    plots.learning_curves({run.id: run.curves}, run.path / "curves.png", title=title,
                          validation=validated_on([spec.train.validation]))
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


# --- evaluate ---------------------------------------------------------------------------

MISCLASSIFIED_SHOWN = 36  # images in the grid of misclassified test images


def evaluate_runs(references, dataset, *, every=False, runs_directory=None, data_dir=None, offline=None,
                  reporter=progress.SILENT):
    """Evaluate runs on the test split of `dataset` (None: each run's own); return one result dict per run.

    Without `references`, the most recent run trained on `dataset` that saved a
    model, or all of them with `every`. Each run's folder gets a confusion heatmap
    and a grid of misclassified test images, named by the dataset evaluated on.
    """
    from mnistcls import evaluate  # imports TensorFlow

    chosen = _runs_to_evaluate(references, dataset, every, runs_directory)
    model_paths = [_saved_model(run) for run in chosen]  # every run checked before any work
    evaluated_on = [dataset or run.info.get("dataset") for run in chosen]
    loaded = load_datasets(set(evaluated_on), data_dir, offline, reporter, splits=("test",))
    results = []
    for run, model_path, test in zip(chosen, model_paths, (loaded[name] for name in evaluated_on)):
        try:
            result = evaluate.evaluate(evaluate.load_model(model_path), test, runs.test_time_augmentation(run))
        except UsageError as err:
            raise UsageError(f"run {run.id} (trained on {run.info.get('dataset')}): {err}") from None
        results.append({"run": run.id, "config": run.info.get("config"), "trained_on": run.info.get("dataset"),
                        "trained_elsewhere": dataset is not None and not runs.was_trained_on(run, dataset),
                        **result.to_dict(), "files": _evaluation_pictures(run, result, test)})
    return results


def _runs_to_evaluate(references, dataset, every, runs_directory):
    if references:
        return [runs.find(reference, runs_directory) for reference in references]
    trained = runs.trained_on(dataset, runs_directory)
    if not trained:
        raise UsageError(f"no run in {runs.runs_dir(runs_directory)} was trained on {dataset} and saved a model; "
                         f"train one (mnistcls train -c cnn_relu.yaml -d {dataset}) or name one with --run")
    return trained if every else trained[-1:]


def _saved_model(run):
    """The path of the run's model.keras; a UsageError if it has none."""
    path = run.path / "model.keras"
    if not path.is_file():
        where = "is still in" if run.status == "running" else "stopped before the end of"
        raise UsageError(f"run {run.id} ({run.status}) has no model.keras: a model is saved at the end of each "
                         f"epoch, and this run {where} its first one")
    return path


def _evaluation_pictures(run, result, test):
    """Write (or refresh) the run's confusion heatmap and misclassified grid for `result`; return their paths."""
    names = result.class_names
    key = data.dataset_key(test.name if test.verified else test.source)  # a folder: by its path
    confusion = plots.confusion_heatmap(
        result.confusion, names, run.path / f"confusion-{key}.png",
        title=f"{run.id}\non {result.dataset}: test accuracy {report.percent(result.accuracy)}")
    misclassified = run.path / f"misclassified-{key}.png"
    shown = result.mistakes[:MISCLASSIFIED_SHOWN]
    if len(shown) == 0:
        misclassified.unlink(missing_ok=True)  # an earlier evaluation's mistakes are not this one's
        return {"confusion": str(confusion), "misclassified": None}
    plots.image_grid(test.x_test[shown], [f"true: {names[result.labels[i]]}\n"
                                          f"pred: {names[result.predicted[i]]} {result.confidence[i]:.0%}"
                                          for i in shown], misclassified,
                     title=f"{run.id}: the {len(shown)} most confident of {result.errors:,} "
                           f"misclassified {result.dataset} test images")
    return {"confusion": str(confusion), "misclassified": str(misclassified)}


# --- compare ----------------------------------------------------------------------------

def compare_runs(references, *, runs_directory=None, curves_path, sweep_path):
    """Overlay the learning curves of several runs in `curves_path`; for a sweep, also draw `sweep_path`.

    Runs form a sweep when each was trained with the same single swept field
    (run.json "sweep"). Returns {"runs": runs.describe of each, "curves": path,
    "sweep": path or None}.
    """
    chosen = [runs.find(reference, runs_directory) for reference in references]
    empty = [run.id for run in chosen if not run.history]
    if empty:
        raise UsageError(f"no completed epoch to draw in run {', '.join(empty)}")
    rows = [runs.describe(run) for run in chosen]
    curves = plots.learning_curves({run.id: run.curves for run in chosen}, curves_path,
                                   title=f"{len(chosen)} runs compared",
                                   validation=validated_on([row["validation"] for row in rows]))
    return {"runs": rows, "curves": str(curves), "sweep": sweep_picture(rows, sweep_path)}


def validated_on(validations):
    """What the val_* figures of runs with these `validation` settings measure, for a picture's labels.

    With `validation: test` they are test scores taken during training, and are named so.
    """
    return "test" if validations and all(v == "test" for v in validations) else "validation"


def sweep_picture(rows, path):
    """Draw best validation loss and accuracy against the swept value, when `rows` are one sweep."""
    fields = {tuple(row["sweep"]) for row in rows}
    if len(fields) != 1 or len(next(iter(fields))) != 1:
        return None
    (swept,) = fields.pop()
    values = [_number_or_text(row["sweep"][swept]) for row in rows]
    numeric = all(isinstance(v, (int, float)) for v in values)
    # Swept sizes and rates usually grow by factors (10, 32, 100, 317, 1000): spread them on a log axis.
    log_x = numeric and min(values) > 0 and max(values) >= 10 * min(values)
    nan = float("nan")  # an unfinished run may not have validated yet
    return str(plots.sweep_plot(values, [row.get("best_val_loss", nan) for row in rows],
                                [row.get("best_val_accuracy", nan) for row in rows], path,
                                param_name=swept, log_x=log_x,
                                validation=validated_on([row["validation"] for row in rows])))


def _number_or_text(value):
    """A swept value as recorded ("317", "0.01", "adam") as a number where it is one."""
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


# --- predict ----------------------------------------------------------------------------

def predict_images(reference, paths, *, top, model_path=None, runs_directory=None, show_path=None):
    """Classify the user's image files with a run's model, or with an exported artefact at `model_path`,
    each prepared as the model's training images were.

    An unreadable file gets an "error" entry and the others are still classified.
    With `show_path`, writes each original beside the 28x28 input the model saw.

    Returns:
        {"run", "trained_on", "style", "images": [{"image", "top": [{"class", "label", "probability"}]} or
        {"image", "error"}], "show": path or None}
    """
    from mnistcls import evaluate  # imports TensorFlow

    if model_path:
        source, trained_on, style, names, classify = _artefact_classifier(model_path, top)
    else:
        run = runs.find(reference, runs_directory)
        model = evaluate.load_model(_saved_model(run))
        _check_input_size(f"run {run.id}'s model", model.input_shape[1:3])
        source, trained_on, style = run.id, run.info.get("dataset"), runs.picture_style(run)
        names = _class_names(run, model.output_shape[-1])
        classify = functools.partial(evaluate.classify, model, top=top, tta=runs.test_time_augmentation(run))
    entries, pictures = [], []
    for path in paths:
        try:
            pictures.append(images.load_picture(path, style))
            entries.append({"image": str(path)})
        except UsageError as err:
            entries.append({"image": str(path), "error": str(err)})
    readable = [entry for entry in entries if "error" not in entry]
    if pictures:
        for entry, ranked in zip(readable, classify([inputs for _, inputs in pictures])):
            entry["top"] = [{"class": names[c], "label": c, "probability": p} for c, p in ranked]
    shown = None
    if show_path and pictures:
        pairs = [picture for pair in pictures for picture in pair]  # original, input, original, input...
        titles = [title for entry in readable for title in (
            Path(entry["image"]).name, f"model input\n{entry['top'][0]['class']} {entry['top'][0]['probability']:.0%}")]
        shown = str(plots.image_grid(pairs, titles, show_path, cols=2,
                                     title=f"What the model saw ({style} style: {specs.STYLES[style]})"))
    return {"run": source, "trained_on": trained_on, "style": style, "images": entries, "show": shown,
            **({"model": str(model_path)} if model_path else {})}


def _artefact_classifier(path, top):
    """(run id or path, dataset trained on, picture style, class names, classify) of an exported artefact,
    run by its own runtime; all but the last come from the model card beside it (defaults without one)."""
    import numpy as np

    from mnistcls import evaluate, export  # imports TensorFlow

    runner, card = export.open_artefact(path)
    _check_input_size(str(path), next(iter(runner.input.values()))["shape"][1:3])
    count = runner.output["shape"][-1]

    def entry(key, kind, default):  # a card is a file a user may have edited
        value = card.get(key) if isinstance(card, dict) else None
        return value if isinstance(value, kind) else default

    names = [c.get("name") for c in entry("classes", list, []) if isinstance(c, dict)]
    names = names if len(names) == count else [str(label) for label in range(count)]
    style = entry("photo_preparation", dict, {}).get("style", "mnist")
    tta = entry("test_time_augmentation", str, "none")
    if style not in specs.STYLES or tta not in specs.TEST_TIME_AUGMENTATIONS:
        raise UsageError(f"{path}: its model card names an unknown picture style {style!r} or test-time "
                         f"augmentation {tta!r}; export the run again")
    return (entry("run", str, str(path)), entry("training", dict, {}).get("dataset"), style, names,
            lambda pictures: evaluate.rank(evaluate.with_tta(runner.predict, np.stack(pictures), tta), top))


def _check_input_size(what, size):
    if tuple(size) != (images.SIZE, images.SIZE):
        raise UsageError(f"{what} takes {size[0]}x{size[1]} images; "
                         f"predict makes {images.SIZE}x{images.SIZE} inputs for models trained on them")


def _class_names(run, count):
    """The names of the classes of the run's dataset, or the label numbers where they are unknown."""
    trained_on = run.info.get("dataset")
    if trained_on in data.DATASETS:
        names = list(data.DATASETS[trained_on].class_names)
    else:  # a custom folder: its classes.txt, if the folder is still there
        try:
            names = data.load(trained_on, splits=("test",)).class_names
        except DataError:
            names = []
    return names if len(names) == count else [str(label) for label in range(count)]


# --- bench ------------------------------------------------------------------------------

def bench_all(configs, overrides, *, device, steps, dataset=None, data_dir=None, offline=None):
    """(one bench.Speed per config, words for the device) for `mnistcls bench`: each timed on the workload of
    `dataset` (default: its spec's own), and beside this machine's matmul peak in its precision."""
    from mnistcls import bench  # imports TensorFlow

    placement = runtime.select_strategy(device)
    extra = [f"data.dataset={json.dumps(dataset_name(dataset))}"] if dataset else []
    speeds, peaks = [], {}
    for spec in [specs.load_spec(config, [*overrides, *extra]) for config in configs]:
        precision = runtime.choose_precision(spec.train.precision, placement.on_gpu)
        speed = bench.measure(spec, strategy=placement.strategy, precision=precision, steps=steps,
                              workload=workload(spec.data.dataset, data_dir, offline))
        if precision not in peaks:
            peaks[precision] = bench.matmul_peak_gflops(precision)
        speed.peak_gflops = peaks[precision]
        speeds.append(speed)
    return speeds, placement.description


def workload(dataset, data_dir=None, offline=None):
    """The bench.Workload of a dataset: a built-in one's known sizes, or a folder's own (its files are read)."""
    from mnistcls import bench

    if dataset in data.DATASETS:
        return bench.Workload(num_classes=len(data.DATASETS[dataset].class_names))
    loaded = data.load(dataset, data_dir=data_dir, offline=offline)
    return bench.Workload(loaded.image_shape, loaded.num_classes, len(loaded.x_train), len(loaded.x_test))


# --- data show --------------------------------------------------------------------------

def show_samples(dataset, split, count, seed, *, data_dir=None, offline=None, path=None, new_file):
    """Draw `count` images of a split (the first ones, or a random sample with `seed`), titled with
    their class names; return the PNG's path (`path`, else `new_file(default name)`)."""
    import numpy as np

    loaded = data.load(dataset, data_dir=data_dir, offline=offline, splits=(split,))
    images, labels = (loaded.x_train, loaded.y_train) if split == "train" else (loaded.x_test, loaded.y_test)
    count = min(count, len(images))
    picked = (np.random.default_rng(seed).choice(len(images), count, replace=False) if seed is not None
              else np.arange(count))
    path = path or new_file(f"{data.dataset_key(dataset)}-{split}-samples.png")
    return plots.image_grid(images[picked], [loaded.class_names[labels[i]] for i in picked], path,
                            title=f"{loaded.name}, {split} split: {len(picked)} images")
