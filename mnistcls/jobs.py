"""What the commands other than train, study and tune do, step by step, without click: summaries,
evaluation, comparisons, predictions, benchmarks, samples. (Training goes through runner.py.)
"""

import functools
import json
from pathlib import Path

from mnistcls import data, images, metrics, plots, progress, runner, runs, runtime, spec as specs
from mnistcls.build import lay_out, summarize
from mnistcls.errors import DataError, SpecError, UsageError


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
    loaded = runner.load_datasets(set(evaluated_on), data_dir, offline, reporter, splits=("test",))
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
        title=f"{run.id}\non {result.dataset}: test accuracy {result.accuracy:.2%}")
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
    (run.json "sweep"). Runs of one spec that differ only in their seed are repeats:
    their figures' spread is summed up as a study's rows are. Returns {"runs":
    runs.describe of each, "curves": path, "sweep": path or None, "seeds": None, or
    {"seeds": [...], figure: metrics.spread} for repeats}.
    """
    chosen = [runs.find(reference, runs_directory) for reference in references]
    empty = [run.id for run in chosen if not run.history]
    if empty:
        raise UsageError(f"no completed epoch to draw in run {', '.join(empty)}")
    rows = [runs.describe(run) for run in chosen]
    curves = plots.learning_curves({run.id: run.curves for run in chosen}, curves_path,
                                   title=f"{len(chosen)} runs compared",
                                   validation=plots.validated_on([row["validation"] for row in rows]))
    return {"runs": rows, "curves": str(curves), "sweep": plots.sweep_picture(rows, sweep_path),
            "seeds": _over_seeds(chosen, rows)}


SEED_FIGURES = ("test_accuracy", "best_val_accuracy", "epochs_run", "seconds_per_epoch")


def _over_seeds(chosen, rows):
    """The spread of the runs' figures when they are one spec and dataset trained with different seeds, else None."""
    recorded = [(run.spec_data, run.info.get("dataset")) for run in chosen]
    seeds = [spec.get("train", {}).get("seed") for spec, _ in recorded]
    others = {(json.dumps({**spec, "train": {k: v for k, v in spec.get("train", {}).items() if k != "seed"}},
                          sort_keys=True), dataset) for spec, dataset in recorded}
    if len(others) != 1 or len(set(seeds)) != len(seeds):
        return None
    return {"seeds": seeds, **{field: metrics.spread([row.get(field) for row in rows]) for field in SEED_FIGURES}}


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
    extra = [f"data.dataset={json.dumps(runner.dataset_name(dataset))}"] if dataset else []
    speeds, probes = [], {}
    for spec in [specs.load_spec(config, [*overrides, *extra]) for config in configs]:
        precision = runtime.choose_precision(spec.train.precision, placement.on_gpu)
        if precision not in probes:
            probes[precision] = bench.PeakProbe(precision)
        speeds.append(bench.measure(spec, strategy=placement.strategy, precision=precision, steps=steps,
                                    workload=bench.workload(spec.data.dataset, data_dir, offline),
                                    peak_probe=probes[precision]))
    return speeds, placement.description


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
