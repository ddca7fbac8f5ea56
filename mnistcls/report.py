"""Everything mnistcls prints: rich tables built by a few shared helpers.

Commands build their output here so every table looks alike: numbers right-aligned
with thousands separators, accuracies as percentages, one style of title.
"""

import json
import math
import sys
from pathlib import Path

from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from mnistcls.build import format_shape

# Piped output (logs, CI) gets room for wide tables instead of rich's 80 columns.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, highlight=False)


def plain(value):
    """`value` as text rich shows as it is: paths, run ids and names may hold `[`, which is not markup.

    A `Text` (styled on purpose, e.g. `styled("finished", "green")`) is kept as it is.
    """
    return value if isinstance(value, Text) else Text(str(value))


def styled(value, style):
    """User text in a style, its `[` still plain."""
    return Text(str(value), style=style)


def table(title, columns, rows, caption=None, whole=(0,)):
    """A table whose numeric columns (names ending in '>') are right-aligned; every cell is `plain`.

    The columns at the indices `whole` are never wrapped: by default the first, which
    names the row (a run id, a file).
    """
    t = Table(title=plain(title), caption=None if caption is None else plain(caption), title_justify="left",
              caption_justify="left")
    rows = [[plain(v) for v in row] for row in rows]
    for i, col in enumerate(columns):
        numeric = col.endswith(">")
        name = col[:-1] if numeric else col
        # A number is never cut or wrapped either: its column is at least as wide as its widest cell
        # and its header's longest word (the header wraps between words). Other text folds where
        # room runs out.
        widest = max([len(word) for word in name.split()] + [row[i].cell_len for row in rows if i < len(row)])
        t.add_column(plain(name), justify="right" if numeric else "left", no_wrap=i in whole,
                     min_width=widest if numeric or i in whole else min(8, widest), overflow="fold")
    for row in rows:
        t.add_row(*row)
    return t


def count(n):
    """A whole number with thousands separators; None (unknown) as "n/a"."""
    return "n/a" if n is None else f"{n:,}"


def percent(x):
    return "-" if x is None else f"{100 * x:.2f}%"


def print_json(data):
    """Machine-readable output for `--json`: nothing else goes to stdout.

    NaN and infinity are not JSON (a diverged run's loss is one): they are written as null.
    """
    json.dump(_finite_or_none(data), sys.stdout, indent=2, allow_nan=False)
    sys.stdout.write("\n")


def _finite_or_none(data):
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: _finite_or_none(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite_or_none(value) for value in data]
    return data


def error(message):
    # Messages quote paths and spec text: square brackets in them are not rich markup.
    err_console.print(Text.assemble(("error:", "bold red"), " ", plain(message)), soft_wrap=True)


# --- summary -----------------------------------------------------------------------

def model_summary(summary):
    """Keras' summary layout (Layer (type) | Output Shape | Param #) plus MACs; for a graph (a model with
    residual or parallel blocks), also each layer's spec entry and the layers it takes its input from."""
    graph = summary.is_graph
    rows = [(f"{r.name} ({r.kind})", *([r.path or "-"] if graph else []), format_shape(r.output_shape),
             count(r.params), count(r.macs), *([", ".join(r.inputs)] if graph else [])) for r in summary.rows]
    caption = (f"Total params: {count(summary.total)}\n"
               f"Trainable params: {count(summary.trainable)}\n"
               f"Non-trainable params: {count(summary.non_trainable)}\n"
               f"Multiply-accumulates per image: {count(summary.macs)} ({_mflops(summary.macs, 1)} MFLOPs)")
    caption += ("\nMACs of pooling, activation, normalization, dropout and reshaping layers count as 0 "
                "(next to nothing)" + ("; n/a: a layer type whose MACs mnistcls cannot count" if summary.macs is None
                                       else ""))
    title = f"{summary.name}: {summary.description}" if summary.description else summary.name
    if not graph:
        return table(title, ["Layer (type)", "Output Shape", "Param #>", "MACs>"], rows, caption)
    caption += "\nMerges count one operation per value for each input beyond the first; a concat, none"
    # Six columns rarely fit: the layer's and its inputs' names fold, its spec entry and shape stay whole.
    return table(title, ["Layer (type)", "Spec entry", "Output Shape", "Param #>", "MACs>", "Connected to"], rows,
                 caption, whole=(1, 2))


def models_overview(summaries):
    """One line per model: what `mnistcls summary` shows without --config."""
    rows = [(s.name, len(s.rows) - 1, count(s.total), count(s.trainable),
             count(s.non_trainable), f"{_mflops(s.macs, 2)}M", s.description) for s in summaries]
    return table("Bundled configs",
                 ["Config", "Layers>", "Params>", "Trainable>", "Non-trainable>", "FLOPs/image>", "Description"],
                 rows)


def _mflops(macs, digits):
    return "n/a" if macs is None else f"{2 * macs / 1e6:.{digits}f}"


# --- training ----------------------------------------------------------------------

def results_table(results, title="Results"):
    """One row per run (its id names config and dataset), plus a column per swept field.

    `results`: dicts with run, [sweep], validation and TrainResult's fields.
    """
    swept = sorted({k for r in results for k in r.get("sweep", {})})
    best, caption, mark_test = _best_val_column(results)
    columns = ["Run", *swept, "Test acc>", "Test loss>", best, "@ epoch>", "Epochs>", "s/epoch>", "Params>"]
    rows = []
    for r in results:
        rows.append([r["run"], *[r.get("sweep", {}).get(k, "") for k in swept],
                     percent(r.get("test_accuracy")) + (" (chance)" if r.get("at_chance") else ""),
                     _number(r.get("test_loss")),
                     _best_val(r, mark_test), r.get("best_epoch", "-"), r.get("epochs_run", "-"),
                     _number(r.get("seconds_per_epoch"), 1), count(r["params"]) if "params" in r else "-"])
    return table(title, columns, rows, caption)


def _best_val_column(rows):
    """(column title, caption, whether to mark test-validated values) for the best validation accuracy.

    A run with `validation: test` validated on the test set, so its "best validation
    accuracy" is the best test accuracy over its epochs: the column is named so, and
    in a table mixing both kinds such values are marked "(test)".
    """
    on_test = [r.get("validation") == "test" for r in rows]
    if all(on_test):
        return "Best test acc in training>", "validation: test: the best test accuracy over the epochs", False
    if any(on_test):
        return ("Best val acc>", "(test): validation: test, so this is the best test accuracy over the epochs, "
                "not a hold-out score", True)
    return "Best val acc>", None, False


def _best_val(row, mark_test):
    value = percent(row.get("best_val_accuracy"))
    return f"{value} (test)" if mark_test and row.get("validation") == "test" else value


def _number(x, digits=4):
    return "-" if x is None else f"{x:.{digits}f}"


# --- data ----------------------------------------------------------------------------

_FILE_MARKS = {"verified": styled("ok", "green"), "bad": styled("BAD", "red"), "missing": styled("-", "dim"),
               "not checked": styled("?", "yellow")}
_FILE_HEADERS = {"train-images-idx3-ubyte": "train\nimages", "train-labels-idx1-ubyte": "train\nlabels",
                 "t10k-images-idx3-ubyte": "test\nimages", "t10k-labels-idx1-ubyte": "test\nlabels"}


def dataset_places(dataset_report):
    """For `data list`: every place looked for one dataset, what each file there is, and why a copy is bad.

    Narrow enough for an 80-column terminal: a place's path folds under its name,
    files get one short mark each, and each bad copy's reason is a line below.
    """
    t = Table(title=plain(f"{dataset_report.title} ({dataset_report.name})"), title_justify="left",
              caption_justify="left")
    t.add_column("Place (path)", overflow="fold", ratio=1)
    for file in dataset_report.places[0].files:
        t.add_column(_FILE_HEADERS.get(file.file, file.file), justify="center", no_wrap=True)
    for place in dataset_report.places:
        path = plain(place.path) if place.exists else styled(f"{place.path} (none)", "dim")
        t.add_row(Text.assemble(f"{place.place}\n", path), *[_FILE_MARKS[str(f.status)] for f in place.files])
    lines = [plain("ok: verified   BAD: wrong or damaged   -: missing   ?: not checked yet")]
    lines += [Text.assemble(("BAD", "red"), f" {f.path}: {f.reason}")
              for place in dataset_report.places for f in place.files if f.status == "bad"]
    if dataset_report.ready:
        lines.append(Text.assemble(("ready", "green"), ": every file's first copy is verified"))
    else:
        missing = dataset_report.missing
        lines.append(Text.assemble(("missing", "red"), f": {', '.join(missing)}") if missing else
                     Text.assemble(("not ready", "red"), ": a file is bad"))
        lines += [plain(line) for line in dataset_report.advice]
    t.caption = Text("\n").join(lines)
    return t


# --- evaluate ------------------------------------------------------------------------

def evaluation_table(results):
    """Test accuracy, loss and errors, one row per evaluated run; notes runs trained on another dataset."""
    rows = [(r["run"], r["dataset"], percent(r["test_accuracy"]), _number(r["test_loss"]), count(r["errors"]),
             count(r["images"])) for r in results]
    notes = [Text.assemble(("note:", "yellow"), f" {r['run']} was trained on {r['trained_on']}, not on {r['dataset']}")
             for r in results if r["trained_elsewhere"]]
    return table("Test results", ["Run", "Dataset", "Test acc>", "Test loss>", "Errors>", "Images>"], rows,
                 Text("\n").join(notes) if notes else None)


def class_report_table(result):
    """Precision, recall, F1 and support of every class, then the macro and weighted averages."""
    def scores(s):
        return _number(s["precision"]), _number(s["recall"]), _number(s["f1"]), count(s["support"])

    columns = ["Class", "Precision>", "Recall>", "F1>", "Support>"]
    t = table(f"{result['run']} on {result['dataset']}: per class", columns,
              [(c["class"], *scores(c)) for c in result["classes"]])
    t.add_section()
    for average in ("macro", "weighted"):
        t.add_row(f"{average} average", *scores(result[average]))
    return t


def confusion_table(result):
    """The confusion matrix: a row per true class, a column per predicted class (by label number).

    Correct counts are green; mistakes are red, bold where they are at least 5% of the row.
    """
    names = [c["class"] for c in result["classes"]]
    rows = [(f"{i} {name}", *[_confusion_cell(n, i == j, sum(counts)) for j, n in enumerate(counts)])
            for i, (name, counts) in enumerate(zip(names, result["confusion"]))]
    return table(f"{result['run']} on {result['dataset']}: confusion matrix",
                 ["True class", *[f"{j}>" for j in range(len(names))]], rows,
                 "rows: true class; columns: predicted class, by number")


def _confusion_cell(n, correct, row_total):
    if n == 0:
        return styled(0, "dim")
    if correct:
        return styled(f"{n:,}", "green")
    return styled(f"{n:,}", "bold red" if n >= 0.05 * row_total else "red")


def top_confusions_text(result):
    """The most frequent mistakes in words: "Shirt predicted as T-shirt/top: 112"."""
    lines = [f"  {c['true']} predicted as {c['predicted']}: {c['count']:,}" for c in result["top_confusions"]]
    return plain("\n".join(["Most frequent mistakes:", *lines]) if lines else "No mistakes.")


def files_text(files):
    """One "what: path" line per picture written (None: not written)."""
    return plain("\n".join(f"{what}: {path}" for what, path in files.items() if path))


# --- runs ----------------------------------------------------------------------------

_STATUS_STYLES = {"finished": "green", "running": "cyan", "interrupted": "yellow", "failed": "red", "killed": "red",
                  "diverged": "red", "pruned": "yellow", "at chance": "red"}


def runs_table(rows):
    """`mnistcls runs`: one line per run (rows from runs.describe).

    A run's id names its config and dataset (stamp_config_dataset), so they get
    no columns of their own: that keeps the table within 120 columns.
    """
    best, caption, mark_test = _best_val_column(rows)
    return table("Runs", ["Run", "Epochs>", best, "Test acc>", "Params>", "s/epoch>", "Status"],
                 [(r["run"], f"{r['epochs_run']}/{r['epochs'] or '?'}", _best_val(r, mark_test),
                   percent(r.get("test_accuracy")), count(r["params"]) if "params" in r else "-",
                   _number(r.get("seconds_per_epoch"), 1), _status(r["status"])) for r in rows], caption)


def _status(status):
    return styled(status, _STATUS_STYLES.get(status, "default"))


def run_info_table(run):
    """What `runs show` says first: what ran, where, when and how it ended."""
    info = run.info
    fields = [("Status", _status(run.status)), ("Config", f"{info.get('config')} ({info.get('config_file')})"),
              ("Overrides", " ".join(info.get("overrides") or []) or "-"), ("Dataset", info.get("dataset")),
              ("Started", info.get("started")), ("Finished", info.get("finished", "-")),
              ("Device", f"{info.get('device')}, {info.get('precision')}"),
              ("Validation", _validation_text(info.get("validation"))),
              ("Steps", f"{info['steps_per_epoch']:,} per epoch, {info['steps_per_execution']} per call into "
                        "TensorFlow (the spec's steps_per_execution; an epoch's last call runs what is left; "
                        "one under MultiWorkerMirroredStrategy)" if "steps_per_execution" in info else "-"),
              ("Command", " ".join(["mnistcls", *info["command"][1:]]) if info.get("command") else "-")]
    if "study" in info:  # a trial of `mnistcls tune`
        fields.append(("Study", f"{info['study']}, trial {info.get('trial')}"))
    if "error" in info:
        fields.append(("Error", styled(info["error"], "red")))
    return table(f"Run {run.id}", ["Field", "Value"], fields)


def _validation_text(validation):
    if validation is None:
        return "-"
    if validation == "test":
        return "the test set (best val acc is the best test accuracy during training)"
    return f"{validation:.0%} of the training images, held out"


def spec_syntax(text):
    """A spec's YAML, highlighted."""
    return Syntax(text.rstrip(), "yaml", theme="ansi_dark", background_color="default")


def history_table(history):
    """One row per epoch: losses, accuracies, learning rate and time."""
    rows = [(row["epoch"], _number(row.get("loss")), percent(row.get("accuracy")), _number(row.get("val_loss")),
             percent(row.get("val_accuracy")), f"{row['learning_rate']:.3g}" if "learning_rate" in row else "-",
             _number(row.get("seconds"), 1)) for row in history]
    return table("History", ["Epoch>", "Loss>", "Accuracy>", "Val loss>", "Val acc>", "Learning rate>", "Seconds>"],
                 rows)


# --- predict -------------------------------------------------------------------------

def predictions_table(prediction):
    """The most probable classes of each readable image, best first (from jobs.predict_images)."""
    read = [entry for entry in prediction["images"] if "top" in entry]
    ranks = max(len(entry["top"]) for entry in read)
    rows = [(entry["image"], *[f"{c['class']}  {percent(c['probability'])}" for c in entry["top"]]) for entry in read]
    return table(f"{prediction.get('model') or prediction['run']} (trained on {prediction['trained_on']}; "
                 f"pictures prepared in its {prediction['style']} style)",
                 ["Image", *[f"Guess {rank}" for rank in range(1, ranks + 1)]], rows)


def export_table(exported):
    """`mnistcls export`: each artefact's size, test accuracy, agreement with Keras and speed."""
    keras = exported["keras"]
    rows = [("keras (reference)", "float32", "-", percent(keras["test_accuracy"]), "-",
             f"{keras['images_per_second']:,.0f}", "")]
    rows += [(Path(e["path"]).name, e["quantization"] if e["quantization"] != "none" else "float32",
              _bytes(e["bytes"]), percent(e["test_accuracy"]), percent(e["agreement"]),
              "-" if e["images_per_second"] is None else f"{e['images_per_second']:,.0f}",
              styled("passed", "green") if e["passed"] else styled("failed", "red"))
             for e in exported["exports"]]
    return table(f"Exports of {exported['run']} in {exported['out']} (checked on "
                 f"{keras['images']:,} {exported['dataset']} test images)",
                 ["Artefact", "Weights", "Size>", "Test acc>", "Agrees>", "Images/s>", "Check"],
                 rows, caption="Agrees: share of test images with the Keras model's top-1 class")


def _bytes(n):
    if n is None:
        return "-"
    return f"{n / 1e6:,.2f} MB" if n >= 1e5 else f"{n / 1e3:,.1f} kB"


def speed_table(speeds, device):
    """`mnistcls bench`: images per second, the estimated epoch time, and how near the matmul peak, per config."""
    def rate(gflops, share):
        return "n/a" if gflops is None else f"{gflops:,.0f} ({share:.0%})" if share is not None else f"{gflops:,.0f}"

    rows = [(s.config, s.precision.removeprefix("mixed_"), s.batch_size, s.steps_per_execution,
             f"{s.train_images_per_second:,.0f}",
             f"{s.eval_images_per_second:,.0f}", f"{s.seconds_per_epoch:.1f}",
             "n/a" if s.flops_per_image is None else f"{s.flops_per_image / 1e6:,.1f}",
             rate(s.train_gflops, s.share_of_peak(s.train_gflops)), rate(s.eval_gflops, s.share_of_peak(s.eval_gflops)))
            for s in speeds]
    peaks = {}  # precision -> the peaks probed beside its models
    for s in speeds:
        if s.peak_gflops:
            peaks.setdefault(s.precision.removeprefix("mixed_"), []).append(s.peak_gflops)
    caption = (f"Epoch: {speeds[0].train_images:,} training images and validation on {speeds[0].test_images:,}"
               if len({(s.train_images, s.test_images) for s in speeds}) == 1 else "Epoch: each config's dataset's")
    caption += ("\nGFLOP/s: 2 per multiply-accumulate of a forward pass, 3 forward passes a training step; in "
                "brackets the share of this machine's matrix-multiply peak, probed between each model's timed steps: "
                + ", ".join(f"{_span(gflops)} GFLOP/s in {precision}" for precision, gflops in peaks.items()))
    return table(f"Speed on {device}", ["Config", "Compute", "Batch>", "Steps per call>", "Train img/s>",
                                         "Eval img/s>", "Epoch s (est.)>", "MFLOP per img>", "Train GFLOP/s>",
                                         "Eval GFLOP/s>"], rows, caption=caption)


def _span(values):
    """'640' for one value or several alike, '610-680' for a spread."""
    low, high = f"{min(values):,.0f}", f"{max(values):,.0f}"
    return low if low == high else f"{low}-{high}"


def phases_table(spent, total):
    """`--verbose`: where a command's time went, phase by phase (phases.py), and what nothing accounts for."""
    rows = [(name if part_of is None else f"  of which {name}", f"{seconds:.2f}", f"{seconds / total:.0%}")
            for name, seconds, part_of in spent]
    accounted = sum(seconds for _, seconds, part_of in spent if part_of is None)
    rows.append(("the rest (Python's start-up, other imports)", f"{total - accounted:.2f}",
                 f"{(total - accounted) / total:.0%}"))
    return table(f"Where the {total:.1f} s went", ["Phase", "Seconds>", "Share>"], rows)


# --- study ---------------------------------------------------------------------------

STUDY_NOTE = ("Best acc: the best accuracy of any epoch on the data the run validated on. 'test' marks seed A's "
              "way, validating on the test set: that figure is the best test accuracy seen during training, an "
              "optimistic one. 'val' marks a hold-out of the training set (seed B).")
REPEATS_NOTE = ("With several runs (seeds) an accuracy is their mean ± standard deviation{range}, epochs and time "
                "their mean. Vs best: the "
                "difference of a variant's mean test accuracy from the best variant's of its sweep or compare group, "
                "in points, and Welch's t-test of it (two-sided p; below 0.05 the difference is larger than the "
                "seeds' spread explains).")


def study_cells(groups, detailed=False):
    """(columns, plain-text cells): one row per group of a study's runs (study._groups), ours beside the seed's
    figures; with repeated runs, each figure's mean and spread (`detailed`: also its minimum and maximum)."""
    repeated = any(g["finished"] < g["runs"] for g in groups) and any(g["runs"] > 1 for g in groups)
    compared = any("comparison" in g for g in groups)
    columns = ["Experiment", "Dataset", "Params>", *(["Runs>"] if repeated else []), "Test acc>", "Best acc>",
               "Epochs>", "Time>", *(["Vs best"] if compared else []), "Seed reported"]
    cells = []
    for g in groups:
        on = "test" if g["validation"] == "test" else "val"
        unfinished = ", ".join(status for status in g["statuses"] if status != "finished")
        test = _spread(g["test_accuracy"], percent, detailed) if g["finished"] else unfinished or "-"
        best = _spread(g["best_accuracy_in_training"], percent, detailed)
        cells.append([experiment_text(g), g["dataset"], count(g["params"]) if g.get("params") else "-",
                      *([f"{g['finished']}/{g['runs']}"] if repeated else []),
                      test + (f" ({unfinished})" if g["finished"] and unfinished else ""),
                      "-" if best == "-" else f"{best} {on}", _mean(g["epochs"], lambda v: f"{v:g}"),
                      _mean(g["seconds"], duration),
                      *([_versus_best(g.get("comparison"))] if compared else []), _reported(g.get("reported"))])
    return columns, cells


def validation_words(validation):
    """What a study's runs validated on, from their spec's `validation`: "test set", "20% of training set"."""
    return "test set" if validation == "test" else f"{validation:.0%} of training set"


def study_json(result):
    """`mnistcls study --json`: the study's result (study.run_study) with each row's and group's `validation`
    setting given in words, as `validated_on`, as the CSV has it."""
    def in_words(item):  # the words take the setting's place, so the keys keep their order
        return dict(("validated_on", validation_words(value)) if key == "validation" else (key, value)
                    for key, value in item.items())

    return {**result, "rows": [in_words(row) for row in result["rows"]],
            "groups": [in_words(group) for group in result["groups"]]}


def seeds_summary(summary):
    """`runs compare` of repeats: one line of each figure's mean and spread over the seeds."""
    figures = [("test accuracy", summary["test_accuracy"], percent),
               ("best validation accuracy", summary["best_val_accuracy"], percent),
               ("epochs", summary["epochs_run"], lambda v: f"{v:g}"),
               ("seconds an epoch", summary["seconds_per_epoch"], lambda v: f"{v:.1f}")]
    return plain(f"Over seeds {', '.join(map(str, summary['seeds']))} (mean ± standard deviation [min, max]): "
                 + "; ".join(f"{name} {_spread(spread, show, True)}" for name, spread, show in figures
                             if spread["n"]))


def study_note(groups, detailed=True):
    """What a study table's figures mean."""
    if not any(g["runs"] > 1 for g in groups):
        return STUDY_NOTE
    return STUDY_NOTE + " " + REPEATS_NOTE.format(range=", then [minimum, maximum]" if detailed else "")


def _spread(spread, show, detailed):
    """A figure over runs: its mean, ± its standard deviation (accuracies in points), [min, max] if `detailed`."""
    if not spread["n"]:
        return "-"
    text = show(spread["mean"])
    if spread["std"] is not None:
        deviation = f"{100 * spread['std']:.2f}" if show is percent else show(spread["std"])
        text += f" ± {deviation}"
        if detailed:
            text += f" [{show(spread['min'])}, {show(spread['max'])}]"
    return text


def _mean(spread, show):
    return "-" if not spread["n"] else show(spread["mean"])


def _versus_best(comparison):
    if not comparison:
        return "-"
    if comparison["best"]:
        return "best"
    difference = f"{100 * comparison['difference']:+.2f}"
    if comparison["p"] is None:
        return f"{difference}, one run: no test"
    return f"{difference}, {'differs' if comparison['differs'] else 'within spread'} (p={comparison['p']:.2g})"


def experiment_text(row):
    """"A3: units=317": the experiment and its swept values (the field's last name is enough beside it)."""
    sweep = ", ".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in row["sweep"].items())
    return f"{row['experiment']}: {sweep}" if sweep else row["experiment"]


def _reported(figure):
    """What a seed reported: an accuracy as a percentage, text as written."""
    if figure is None:
        return "-"
    return percent(figure) if isinstance(figure, (int, float)) and 0 < figure <= 1 else str(figure)


def duration(seconds):
    """83.4 -> "1m 23s"; 4.2 -> "4.2s"."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes // 60}h {minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m {seconds:02d}s"


def _narrow_dataset_column(t):
    t.columns[1].min_width = None  # "mnist" needs no more: the room goes to the seed's words


def study_summary(result):
    """The line after a study: how many runs this process trained, how many of the study's are done, and how
    many are still running, waiting or failed."""
    counts = result["counts"]
    done = sum(counts.get(state, 0) for state in ("finished", "diverged", "at chance"))
    return plain(f"{len(result['trained'])} runs trained here; {done} of {len(result['rows'])} runs of the study "
                 "are done" + "".join(f", {n} {state}" for state, n in counts.items()
                                      if state in ("running", "waiting", "failed")))


def study_files(result):
    """The files a study wrote, one "what: path" line each."""
    files = result["files"]
    return files_text({"Markdown": files["markdown"], "CSV": files["csv"],
                       **{f"Sweep plot {i}": path for i, path in enumerate(files["sweeps"], 1)},
                       **{f"Learning curves {i}": path for i, path in enumerate(files["curves"], 1)}})


def study_table(result):
    """`mnistcls study`: the study's table, ours beside the seed's figures."""
    columns, cells = study_cells(result["groups"])
    t = table(f"Study {result['study']}", columns, cells, study_note(result["groups"], detailed=False))
    _narrow_dataset_column(t)
    return t


STUDY_PLAN_STATUS = {"new": "new run", "resume": "resume its run", "finished": "finished: skipped",
                     "diverged": "diverged: skipped", "at chance": "at chance: skipped",
                     "running": "running elsewhere", "failed": "failed: queued no more"}


def study_plan_table(plan):
    """`mnistcls study --dry-run`: what would train, and the time `bench` estimates for it."""
    rows = [(_unit_text(u), u["dataset"], STUDY_PLAN_STATUS[u["status"]], u["epochs"] or "-",
             duration(u["seconds"]) if u["epochs"] else "-") for u in plan["units"]]
    t = table(f"Study {plan['study']}: plan", ["Experiment", "Dataset", "Status", "Epochs>", "Est. time>"], rows,
              f"estimated {duration(plan['seconds'])} on {plan['device']} (`mnistcls bench`'s speed); "
              f"tables in {plan['folder']}")
    _narrow_dataset_column(t)
    return t


def study_status_table(state):
    """`mnistcls study --status`: where each run of a study stands, whichever process or machine has it."""
    rows = [(_unit_text(u), u["dataset"], styled(u["status"], _UNIT_STYLES.get(u["status"], "default")),
             u["run"] or "-", u["host"] or "-", u["since"] or "-", u["epoch"] or "-", u["error"] or "")
            for u in state["units"]]
    t = table(f"Study {state['study']}: " + ", ".join(f"{n} {what}" for what, n in state["counts"].items()),
              ["Experiment", "Dataset", "Status", "Run", "Host", "Since", "Epoch>", "Error"], rows)
    _narrow_dataset_column(t)
    return t


_UNIT_STYLES = {"finished": "green", "running": "cyan", "waiting": "dim", "failed": "red", "diverged": "red",
                "at chance": "red"}


def _unit_text(unit):
    return experiment_text(unit) + ("" if unit.get("seed") is None else f", seed {unit['seed']}")


# --- tune ----------------------------------------------------------------------------

_TRIAL_STYLES = {"complete": "green", "pruned": "yellow", "fail": "red", "running": "cyan", "waiting": "dim"}


def trials_table(study):
    """`mnistcls tune`: one row per trial of the study (rows from tune.results)."""
    names = study["params"]
    rows = [(t["number"], styled(t["state"], _TRIAL_STYLES.get(t["state"], "default")),
             *[_param_value(t["params"].get(name)) for name in names], percent(t["value"]),
             t["epochs"] if t["epochs"] is not None else "-", _number(t["seconds"], 1), t["note"])
            for t in study["trials"]]
    return table(f"Study {study['study']}: {study['counted']} of {study['target']} trials done ({study['storage']})",
                 ["Trial>", "State", *names, "Val acc>", "Epochs>", "Seconds>", "Note"], rows,
                 "Val acc: the best validation accuracy on the hold-out (a pruned trial: before it was stopped). "
                 "Each trial is a run tagged with its study and trial number in run.json (--json lists them).")


def _param_value(value):
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def tuning_summary(study):
    """The best trial (its values, run, test accuracy and spec file), importances and the pictures, as plain text."""
    best = study["best"]
    if best is None:
        lines = ["No trial has completed yet."]
    else:
        values = ", ".join(f"{k}={_param_value(v)}" for k, v in best["params"].items())
        test = (f"test accuracy {percent(best['test_accuracy'])} (measured once, for this trial only)"
                if "test_accuracy" in best else best["test_note"])
        lines = [f"Best: trial {best['number']}, validation accuracy {percent(best['value'])}: {values}",
                 f"  run {best['run']}; {test}",
                 f"  its spec, ready to train: mnistcls train --config {best['spec_file']}"]
    if study["importances"]:
        lines.append("Parameter importances: " + ", ".join(
            f"{name} {share:.2f}" for name, share in study["importances"].items()))
    else:
        lines.append(f"Parameter importances: {study['importance_note']}")
    lines += [f"{what}: {path}" for what, path in study["pictures"].items()]
    return plain("\n".join(lines))
