"""The `mnistcls` command line: thin click commands that wire the library together.

Each command parses its options, calls spec / build / data / train / evaluate /
runs, and hands the results to `report`. Errors a user can fix are
`MnistclsError`s: they print as one message and set the exit code (1 for a failed
job, 2 for bad input, 130 when interrupted); they never show a traceback.
"""

import os
import sys
from pathlib import Path

import click

from mnistcls import __version__, phases, progress, report
from mnistcls.errors import MnistclsError, UsageError
from mnistcls.files import new_file
from mnistcls.runs import ORDERS as RUN_ORDERS
from mnistcls.runtime import DEFAULT_DEVICE, DEVICES
from mnistcls.shorthands import SHORTHANDS, as_overrides
from mnistcls.spec import PRECISIONS


class Group(click.Group):
    """A click group that turns MnistclsError into one message and an exit code."""

    def invoke(self, ctx):
        phases.reset()
        try:
            return super().invoke(ctx)
        except MnistclsError as err:
            report.error(str(err))
            ctx.exit(err.exit_code)
        except KeyboardInterrupt:
            report.error("interrupted")
            ctx.exit(130)


# --- options shared by several commands (defined once) ------------------------------

def config_option(required):
    return click.option(
        "--config", "-c", "configs", multiple=True, required=required, metavar="SPEC",
        help="Model spec: a YAML file, or the name of a bundled config (e.g. cnn_relu.yaml). Repeatable.")


set_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE",
    help="Override a spec field by its dotted path, e.g. train.epochs=3 or model.3.units=256. Repeatable.")

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of tables.")


def data_options(command):
    """--data-dir and --offline: where datasets are looked for, and whether they may be downloaded."""
    command = click.option("--offline", is_flag=True, default=None,
                           help="Never download; also MNISTCLS_OFFLINE=1.")(command)
    return click.option("--data-dir", type=click.Path(file_okay=False), metavar="DIR",
                        help="Folder with one subfolder per dataset (mnist/, fashion/), looked in first; "
                             "default: $MNISTCLS_DATA_DIR, which this replaces.")(command)


def shorthand_option(name, type, metavar, note=""):
    """--NAME, short for `--set FIELD=VALUE` (shorthands.SHORTHANDS says which field)."""
    return click.option(f"--{name.replace('_', '-')}", name, type=type,
                        help=f"Same as --set {SHORTHANDS[name]}={metavar}{note}.")


precision_option = shorthand_option("precision", click.Choice(PRECISIONS), "P", " (default: the spec's, auto)")

device_option = click.option("--device", type=click.Choice(DEVICES), default=DEFAULT_DEVICE,
                             show_default=True, help="auto uses the GPUs when there are any.")

runs_dir_option = click.option("--runs-dir", type=click.Path(file_okay=False), metavar="DIR",
                               help="Where run folders live (default ./runs, or MNISTCLS_RUNS_DIR).")


def _reporter(as_json):
    """How a long job shows its progress: on the console, or not at all under --json."""
    return progress.SILENT if as_json else progress.Reporter()


def _tensorflow(ctx):
    """Import TensorFlow now, quietly unless --verbose: only commands that need it call this."""
    from mnistcls.runtime import import_tensorflow

    with phases.phase("import TensorFlow and Keras"):
        import_tensorflow(verbose=ctx.find_root().params["verbose"])


# --- commands ---------------------------------------------------------------------

@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mnistcls")
@click.option("--verbose", is_flag=True, help="Show TensorFlow's own log messages.")
def cli(verbose):
    """Train and compare image classifiers on MNIST and Fashion-MNIST from YAML specs.

    \b
    Examples:
      mnistcls summary                                  # every bundled config
      mnistcls summary --config cnn_relu.yaml           # one model's layer table
      mnistcls train --config cnn_relu.yaml --dataset fashion --epochs 5
      mnistcls evaluate --dataset fashion
    """


@cli.command()
@config_option(required=False)
@set_option
@json_option
@click.pass_context
def summary(ctx, configs, overrides, as_json):
    """Show layer tables and parameter counts of model specs.

    Without --config, one overview line per bundled config.

    \b
    Examples:
      mnistcls summary
      mnistcls summary --config cnn_relu.yaml --config cnn_sigmoid_bn.yaml
      mnistcls summary --config a3_width.yaml --set model.1.units=317 --json
    """
    from mnistcls import jobs

    _tensorflow(ctx)  # checking a spec's layers against Keras' signatures imports Keras
    summaries = jobs.summarize_specs(configs, overrides)
    if as_json:
        report.print_json([s.to_dict() for s in summaries])
    elif configs:
        for s in summaries:
            report.console.print(report.model_summary(s))
    else:
        report.console.print(report.models_overview(summaries))


@cli.command()
@config_option(required=False)
@click.option("--dataset", "-d", "datasets", multiple=True, metavar="NAME",
              help="mnist, fashion, or a folder of IDX files (default: the spec's). Repeatable.")
@shorthand_option("epochs", click.IntRange(1), "N")
@shorthand_option("batch_size", click.IntRange(1), "N")
@shorthand_option("lr", float, "X")
@shorthand_option("seed", click.IntRange(0), "N")
@precision_option
@set_option
@device_option
@click.option("--gpus", type=click.IntRange(1), help="Train on this many GPUs (MirroredStrategy); default all.")
@click.option("--resume", metavar="RUN", help="Continue an interrupted run to its planned epochs.")
@click.option("--restart", is_flag=True,
              help="With --resume: discard the epochs the run holds and train it again from the first.")
@runs_dir_option
@data_options
@json_option
@click.pass_context
def train(ctx, configs, datasets, epochs, batch_size, lr, seed, precision, overrides, device, gpus, resume,
          restart, runs_dir, data_dir, offline, as_json):
    """Train models from specs, recording each run in its own folder.

    Several --config and --dataset values train every combination; a --set with
    comma-separated values trains one run per value (a sweep). Ends with a results
    table, and a comparison table when there were several runs.

    \b
    Examples:
      mnistcls train --config cnn_relu.yaml --dataset fashion
      mnistcls train -c cnn_relu.yaml -c cnn_sigmoid.yaml -d mnist -d fashion --epochs 5
      mnistcls train -c a3_width.yaml --set model.1.units=10,32,100,317,1000
      mnistcls train --resume 20261123-153000_cnn_relu_fashion
      mnistcls train --resume 20261123-153000_cnn_relu_fashion --restart
    """
    from mnistcls import runner

    if not configs and not resume:
        raise UsageError("give a spec with --config (e.g. --config cnn_relu.yaml), or --resume RUN")
    if restart and not resume:
        raise UsageError("--restart trains a run again from its first epoch: name the run with --resume RUN")
    overrides = as_overrides(overrides, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, precision=precision)
    if resume and (configs or datasets or overrides):
        raise UsageError("--resume continues a run as it was planned: leave out --config, --dataset and "
                         "every option that changes the spec")
    _tensorflow(ctx)
    results = runner.train_all(configs, datasets, overrides, resume=resume, restart=restart, device=device,
                             gpus=gpus, runs_directory=runs_dir, data_dir=data_dir, offline=offline,
                             reporter=_reporter(as_json))
    # A run that diverged or learned nothing is recorded, and the others still train; the command then fails.
    useless = [row for row in results if row["status"] in ("diverged", "at chance")]
    with phases.phase("tables"):
        if as_json:
            report.print_json(results)
        else:
            if len(results) > 1:
                report.console.print(report.results_table(results, title="Comparison"))
            for row in useless:
                report.error(row["error"])
    if ctx.find_root().params["verbose"] and not as_json:
        report.err_console.print(report.phases_table(phases.spent(), phases.since_process_start()))
    if useless:
        ctx.exit(1)


@cli.group()
def data():
    """Find, check, download and look at the datasets.

    \b
    Examples:
      mnistcls data list
      mnistcls data download fashion
      mnistcls data show --dataset fashion --split test --count 36
    """


@data.command("list")
@click.option("--data-dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Look first in this folder instead of $MNISTCLS_DATA_DIR (the cache and system "
                   "folders are still looked in).")
@json_option
def data_list(data_dir, as_json):
    """Show every place each dataset is looked for, what is there, and whether it verified.

    \b
    Example:
      mnistcls data list
      MNISTCLS_DATA_DIR=~/datasets mnistcls data list     # ~/datasets/mnist/, ~/datasets/fashion/
    """
    from mnistcls import data as datasets

    reports = datasets.survey(data_dir=data_dir)
    if as_json:
        report.print_json([r.to_dict() for r in reports])
        return
    for r in reports:
        report.console.print(report.dataset_places(r))


@data.command("download")
@click.argument("name", type=click.Choice(["mnist", "fashion", "all"]), default="all")
@data_options
def data_download(name, data_dir, offline):
    """Download the files of a dataset that are found nowhere, into mnistcls' cache.

    Files found elsewhere are checked instead of downloaded again.

    \b
    Example:
      mnistcls data download fashion
    """
    from mnistcls import data as datasets

    names = datasets.DATASET_NAMES if name == "all" else (name,)
    with _reporter(as_json=False).downloads() as downloads:
        for each in names:
            folder = datasets.download(each, data_dir=data_dir, offline=offline, progress=downloads)
            report.console.print(report.plain(f"{each}: ready (cache: {folder})"))


@data.command("show")
@click.option("--dataset", "-d", default="mnist", show_default=True, metavar="NAME",
              help="mnist, fashion, or a folder of IDX files.")
@click.option("--split", type=click.Choice(["train", "test"]), default="train", show_default=True)
@click.option("--count", type=click.IntRange(1, 400), default=36, show_default=True, help="How many images.")
@click.option("--seed", type=int, help="Pick a random sample with this seed (default: the first images).")
@click.option("--out", type=click.Path(dir_okay=False), help="PNG to write (default: a new file here).")
@data_options
def data_show(dataset, split, count, seed, out, data_dir, offline):
    """Draw a grid of sample images titled with their class names, and print the PNG's path.

    \b
    Example:
      mnistcls data show --dataset fashion --split test --count 36
    """
    from mnistcls import jobs

    path = jobs.show_samples(dataset, split, count, seed, data_dir=data_dir, offline=offline,
                             path=Path(out) if out else None, new_file=new_file)
    report.console.print(str(path), markup=False)


@cli.command()
@click.option("--dataset", "-d", metavar="NAME",
              help="mnist, fashion, or a folder of IDX files; only its test split is needed. "
                   "Default with --run: the dataset each run was trained on.")
@click.option("--run", "references", multiple=True, metavar="RUN",
              help="A run id (or a unique start of it) or folder; repeatable. "
                   "Default: the latest run trained on --dataset.")
@click.option("--all", "every", is_flag=True, help="Evaluate every run trained on --dataset.")
@runs_dir_option
@data_options
@json_option
@click.pass_context
def evaluate(ctx, dataset, references, every, runs_dir, data_dir, offline, as_json):
    """Score trained models on a test split: accuracy, per-class scores, confusion matrix.

    Also writes into each run's folder a confusion heatmap and a grid of
    misclassified test images (confusion-DATASET.png, misclassified-DATASET.png),
    and prints their paths. A run may be evaluated on a dataset other than its own.

    \b
    Examples:
      mnistcls evaluate --dataset fashion
      mnistcls evaluate --dataset fashion --all
      mnistcls evaluate --run 20261123-153000_cnn_relu_fashion --dataset mnist --json
    """
    from mnistcls import jobs

    if every and references:
        raise UsageError("--all evaluates every run trained on --dataset: leave out --run")
    if not (dataset or references):
        raise UsageError("say which dataset to evaluate on (e.g. --dataset fashion), or which runs with --run")
    _tensorflow(ctx)
    results = jobs.evaluate_runs(references, dataset, every=every, runs_directory=runs_dir, data_dir=data_dir,
                                 offline=offline, reporter=_reporter(as_json))
    if as_json:
        report.print_json(results)
        return
    report.console.print(report.evaluation_table(results))
    for result in results:
        report.console.print(report.class_report_table(result))
        report.console.print(report.confusion_table(result))
        report.console.print(report.top_confusions_text(result))
        report.console.print(report.files_text({"Confusion heatmap": result["files"]["confusion"],
                                                "Misclassified images": result["files"]["misclassified"]}))


@cli.group("runs", invoke_without_command=True)
@click.option("--sort", type=click.Choice(list(RUN_ORDERS)), default="started", show_default=True,
              help="Order of the list; accuracies best first, params and speed smallest first.")
@click.option("--dataset", "-d", metavar="NAME", help="Only runs trained on this dataset.")
@click.option("--config", "-c", metavar="NAME", help="Only runs of this config (e.g. cnn_relu).")
@runs_dir_option
@json_option
@click.pass_context
def runs_group(ctx, sort, dataset, config, runs_dir, as_json):
    """List the runs in the runs directory; compare or show them.

    \b
    Examples:
      mnistcls runs
      mnistcls runs --dataset fashion --sort test-acc
      mnistcls runs compare 20261123-153000 20261123-160000
      mnistcls runs show 20261123-153000_cnn_relu_fashion
    """
    if ctx.invoked_subcommand:
        if dataset or config or sort != "started":
            raise UsageError(f"--dataset, --config and --sort choose and order the list of runs; `runs "
                             f"{ctx.invoked_subcommand}` takes the runs you name: leave them out")
        return
    from mnistcls import runs

    rows = runs.listing(runs_dir, dataset=dataset, config=config, order=sort)
    if as_json:
        report.print_json(rows)
    elif rows:
        report.console.print(report.runs_table(rows))
    else:
        report.console.print(report.plain(f"no runs in {runs.runs_dir(runs_dir)}"
                                          + (" match --dataset / --config" if dataset or config else "")))


def _group_runs_dir(ctx, runs_dir):
    """--runs-dir given to the subcommand, else to `runs` itself (mnistcls runs --runs-dir D compare ...)."""
    return runs_dir or ctx.parent.params["runs_dir"]


@runs_group.command("compare")
@click.argument("references", nargs=-1, required=True, metavar="RUN RUN [RUN ...]")
@runs_dir_option
@json_option
@click.pass_context
def runs_compare(ctx, references, runs_dir, as_json):
    """Overlay the learning curves of several runs in one PNG and show their results side by side.

    For the runs of a sweep (trained with one swept --set), also draws the best
    validation loss and accuracy against the swept value. The PNGs go to
    RUNS_DIR/comparisons/ as new files; their paths are printed.

    \b
    Examples:
      mnistcls runs compare 20261123-153000 20261123-160000
      mnistcls runs compare --runs-dir sweeps/ 20261123-153000 20261123-153100 20261123-153200
    """
    from mnistcls import jobs, runs

    if len(references) < 2:
        raise UsageError("give at least two runs to compare")
    runs_dir = _group_runs_dir(ctx, runs_dir)
    curves_path, sweep_path = runs.comparison_paths(runs_dir)
    comparison = jobs.compare_runs(references, runs_directory=runs_dir, curves_path=curves_path,
                                   sweep_path=sweep_path)
    if as_json:
        report.print_json(comparison)
        return
    report.console.print(report.results_table(comparison["runs"], title="Comparison"))
    if comparison["seeds"]:
        report.console.print(report.seeds_summary(comparison["seeds"]))
    report.console.print(report.files_text({"Learning curves": comparison["curves"], "Sweep": comparison["sweep"]}))


@runs_group.command("show")
@click.argument("reference", metavar="RUN")
@runs_dir_option
@json_option
@click.pass_context
def runs_show(ctx, reference, runs_dir, as_json):
    """Show one run: what ran, its spec, its history epoch by epoch, and its results.

    \b
    Example:
      mnistcls runs show 20261123-153000_cnn_relu_fashion
    """
    from mnistcls import runs

    run = runs.find(reference, _group_runs_dir(ctx, runs_dir))
    if as_json:
        report.print_json(runs.record(run))
        return
    report.console.print(report.run_info_table(run))
    report.console.print("spec.yaml", style="italic")
    report.console.print(report.spec_syntax(run.spec_text))
    report.console.print(report.history_table(run.history))
    report.console.print(report.results_table([runs.describe(run)]))


@cli.command()
@click.option("--run", "reference", metavar="RUN", help="The run whose model classifies the images.")
@click.option("--model", "model_path", type=click.Path(), metavar="PATH",
              help="Instead of --run: an exported model (SavedModel folder, .tflite or .onnx from mnistcls export), "
                   "run by its own runtime.")
@click.argument("paths", nargs=-1, required=True, metavar="IMAGE [IMAGE ...]")
@click.option("--show", is_flag=True,
              help="Also write a PNG of each image beside the 28x28 input the model saw (a new file here).")
@click.option("--top", type=click.IntRange(1), default=3, show_default=True,
              help="How many of the most probable classes to give per image.")
@runs_dir_option
@json_option
@click.pass_context
def predict(ctx, reference, model_path, paths, show, top, runs_dir, as_json):
    """Classify your own images (PNG, JPEG, TIFF, BMP, GIF: any size, colour or grey, 8 or 16 bits,
    dark on light or light on dark).

    Each image is prepared as the model's training images were: for MNIST, fitted
    into 20x20 and centred by mass in 28x28; for Fashion-MNIST, trimmed, scaled so
    the longer side is 28 and centred; for a folder, as its spec's data.style says.
    The most probable classes are printed. An unreadable file is reported and the
    others are still classified (exit code 1).

    \b
    Examples:
      mnistcls predict --run 20261123-153000_cnn_relu_mnist my_digit.png
      mnistcls predict --run 20261123-153000_cnn_relu_fashion --show --top 5 shoe.jpg shirt.jpg
      mnistcls predict --model runs/20261123-153000_cnn_relu_mnist/export/model-int8.tflite my_digit.png
    """
    from mnistcls import jobs

    if (reference is None) == (model_path is None):
        raise UsageError("give either --run RUN or --model PATH (an exported model)")
    _tensorflow(ctx)
    prediction = jobs.predict_images(reference, paths, model_path=model_path, runs_directory=runs_dir, top=top,
                                     show_path=new_file("predict-inputs.png") if show else None)
    failed = [entry for entry in prediction["images"] if "error" in entry]
    if as_json:
        report.print_json(prediction)
    else:
        if len(failed) < len(paths):
            report.console.print(report.predictions_table(prediction))
        for entry in failed:
            report.error(entry["error"])
        report.console.print(report.files_text({"Inputs shown": prediction["show"]}))
    if failed:
        ctx.exit(1)


@cli.command("export")
@click.argument("reference", metavar="RUN")
@click.option("--format", "-f", "formats", multiple=True, required=True, metavar="FORMAT",
              help="savedmodel (TensorFlow Serving), tflite (LiteRT: phones, microcontrollers) or onnx "
                   "(onnxruntime). Repeatable.")
@click.option("--quantize", "-q", "quantizations", multiple=True, metavar="MODE",
              help="TFLite only: none (float32, default), float16 (weights) or int8 (full integer, calibrated "
                   "on training images). Repeatable: one .tflite each.")
@click.option("--out", type=click.Path(), metavar="DIR",
              help="Folder for the artefacts and their model cards (default: the run folder's export/).")
@runs_dir_option
@data_options
@json_option
@click.pass_context
def export_command(ctx, reference, formats, quantizations, out, runs_dir, data_dir, offline, as_json):
    """Export a run's model for deployment, and check each file with its own runtime.

    Every artefact takes raw 0-255 pixels (N, 28, 28, 1) and outputs class
    probabilities; a JSON model card goes beside it. Each is loaded back with the
    runtime that will run it (tf.saved_model.load, LiteRT, onnxruntime), run on the
    whole test split and compared with the Keras model before it is put in place:
    float formats must agree on 99.9% of test images, int8 must stay within 1 point
    of the Keras accuracy; otherwise nothing is left and the exit code is 1.
    Needs: pip install 'mnistcls[export]'.

    \b
    Examples:
      mnistcls export 20261123-153000_cnn_relu_mnist --format tflite --quantize int8
      mnistcls export 20261123-153000 -f savedmodel -f tflite -f onnx --out deploy/
      mnistcls export 20261123-153000 -f tflite -q none -q float16 -q int8
    """
    _tensorflow(ctx)  # before export's imports (Keras, the converters), so their start-up lines are quiet
    from mnistcls import export

    exported = export.export_run(reference, formats, quantizations=quantizations, out=out,
                                 runs_directory=runs_dir, data_dir=data_dir, offline=offline,
                                 verbose=ctx.find_root().params["verbose"])
    failed = [e for e in exported["exports"] if not e["passed"]]
    if as_json:
        report.print_json(exported)
    else:
        report.console.print(report.export_table(exported))
        for entry in failed:
            report.error(f"{entry['path']}: check failed, not written: {entry['problem']}")
    if failed:
        ctx.exit(1)


@cli.command()
@config_option(required=False)
@set_option
@precision_option
@device_option
@click.option("--steps", type=click.IntRange(4), default=64, show_default=True, help="Training steps to time.")
@click.option("--dataset", "-d", metavar="NAME",
              help="Time each model as it trains on this dataset (its image size, classes and steps per epoch); "
                   "default: each spec's own. A folder's files are read; mnist and fashion need none.")
@data_options
@json_option
@click.pass_context
def bench(ctx, configs, overrides, precision, device, steps, dataset, data_dir, offline, as_json):
    """Measure how fast this machine trains and evaluates a model, and how near its matrix-multiply peak.

    Times the real training step (model, pipeline, precision and steps per call
    that `mnistcls train` uses for the spec on its dataset) on random images of
    the dataset's shape, so the data itself is not needed, and estimates the time
    of an epoch. Beside each model's rate in GFLOP/s it prints its share of this
    machine's peak for large matrix products in the same precision, probed
    between the model's timed steps (so a busy machine slows both alike): how
    much a bigger batch, a wider layer or another precision could still gain.
    Default: the bundled cnn_relu.yaml.

    \b
    Examples:
      mnistcls bench
      mnistcls bench --config fast_fashion.yaml --config best_fashion.yaml
      mnistcls bench --config my_spec.yaml --dataset data/kmnist --precision float32
    """
    from mnistcls import jobs

    _tensorflow(ctx)
    overrides = as_overrides(overrides, precision=precision)
    speeds, device_words = jobs.bench_all(configs or ["cnn_relu.yaml"], overrides, device=device, steps=steps,
                                          dataset=dataset, data_dir=data_dir, offline=offline)
    if as_json:
        report.print_json([s.to_dict() for s in speeds])
    else:
        report.console.print(report.speed_table(speeds, device_words))


@cli.command()
@click.argument("name", metavar="NAME|FILE")
@click.option("--epochs", type=click.IntRange(1), help="Train every experiment this many epochs (a quick pass).")
@click.option("--dataset", "-d", "datasets", multiple=True, metavar="NAME",
              help="Only the runs on this dataset; a dataset the study does not name (a folder of IDX files) "
                   "is run by every experiment. Repeatable.")
@click.option("--repeats", type=click.IntRange(1, 100), metavar="N",
              help="Train every run with seeds 0..N-1 (default: the study file's `repeats:`, else 1).")
@click.option("--storage", metavar="URL",
              help="Where the study's work is shared: a database URL (sqlite:///f.db, postgresql://user:pw@host/db) "
                   "or a journal file path. Default: studies.db in the runs directory.")
@click.option("--dry-run", is_flag=True, help="List what would train and the time it would take; train nothing.")
@click.option("--status", "show_status", is_flag=True,
              help="Show which runs are done, running (where, since when, which epoch), waiting or failed.")
@click.option("--report", "report_only", is_flag=True,
              help="Write the table, Markdown, CSV and plots from what has finished; train nothing.")
@device_option
@runs_dir_option
@data_options
@json_option
@click.pass_context
def study(ctx, name, epochs, datasets, repeats, storage, dry_run, show_status, report_only, device, runs_dir,
          data_dir, offline, as_json):
    """Run a study: every experiment of a study file as ordinary runs, then one table.

    NAME is a bundled study (seed_a, seed_b) or a study file. The table puts our
    test accuracy, best accuracy during training, parameters and time beside the
    figure the seed reported; it is also written as Markdown and CSV, with the
    plots of each sweep (best scores against the swept value, learning curves),
    into RUNS_DIR/studies/NAME/. With --repeats (or `repeats:` in the file) every
    run is trained with several seeds, and each row shows the mean and spread,
    and whether a variant differs from the best by more than the seeds' spread.

    The runs are shared through a storage: start the same command in several
    processes, or on several machines with one --storage, and each takes the
    next run no one has, until none is left. Running it again resumes what was
    interrupted. --epochs and --dataset make a quick pass of its own
    (RUNS_DIR/studies/NAME-epochsN-DATASET/).

    \b
    Examples:
      mnistcls study seed_b --dry-run
      mnistcls study seed_a --epochs 1 --dataset fashion
      mnistcls study seed_a --epochs 1 --dataset fashion --repeats 2 &      # two processes share the work
      mnistcls study seed_a --epochs 1 --dataset fashion --repeats 2
      mnistcls study seed_a --status
      mnistcls study seed_a --storage postgresql://me:secret@dbhost/studies   # on every machine
    """
    from mnistcls import study as studies

    if sum([dry_run, show_status, report_only]) > 1:
        raise UsageError("--dry-run, --status and --report each say what to do instead of training: give one")
    narrowing = {"epochs": epochs, "datasets": datasets, "repeats": repeats, "storage": storage,
                 "runs_directory": runs_dir}
    _tensorflow(ctx)  # checking the specs imports Keras
    if show_status:
        state = studies.status(name, **narrowing)
        if as_json:
            report.print_json(state)
        else:
            report.console.print(report.study_status_table(state))
        return
    if dry_run:
        plan = studies.dry_run(name, device=device, **narrowing)
        if as_json:
            report.print_json(plan)
        else:
            report.console.print(report.study_plan_table(plan))
        return
    result = studies.run_study(name, report_only=report_only, data_dir=data_dir, offline=offline, device=device,
                               reporter=_reporter(as_json), verbose=ctx.find_root().params["verbose"],
                               new_file=new_file, **narrowing)
    if as_json:
        report.print_json(report.study_json(result))
    else:
        report.console.print(report.study_summary(result))
        report.console.print(report.study_table(result))
        report.console.print(report.study_files(result))
    if result["counts"].get("failed"):
        ctx.exit(1)


@cli.command()
@config_option(required=False)
@click.option("--space", "space_file", metavar="FILE",
              help="A search space file (`search:` and optionally `set:`), or a bundled one by name "
                   "(e.g. a2_lr_sgd.yaml). The spec's own `search:` section is used too.")
@click.option("--search", "search", multiple=True, metavar="KEY=SPEC",
              help="Search a field, e.g. 'model.1.units={int: [10, 1000], log: true}'. Repeatable.")
@click.option("--trials", type=click.IntRange(1), required=True,
              help="Finished (complete or pruned) trials the study should have, all workers together.")
@click.option("--timeout", type=click.FloatRange(0, min_open=True), metavar="SECONDS",
              help="Start no new trial after this many seconds.")
@click.option("--sampler", type=click.Choice(["tpe", "random", "grid"]), default="tpe", show_default=True)
@click.option("--sampler-seed", type=click.IntRange(0), metavar="N",
              help="Draw the same values in the same order each time (one worker; workers sharing a study "
                   "need different seeds or none).")
@click.option("--pruner", type=click.Choice(["median", "none"]), default="median", show_default=True,
              help="median stops a trial whose validation accuracy falls below the median of earlier trials "
                   "at the same epoch.")
@click.option("--study", "study_name", metavar="NAME",
              help="The study to start or continue (default: from the spec, space and dataset names).")
@click.option("--storage", metavar="URL",
              help="Where the study lives: a database URL (sqlite:///f.db, postgresql://user:pw@host/db) or a "
                   "journal file path. Default: studies.db in the runs directory.")
@click.option("--dataset", "-d", metavar="NAME", help="mnist, fashion, or a folder of IDX files (default: the spec's).")
@shorthand_option("epochs", click.IntRange(1), "N", " (every trial)")
@set_option
@device_option
@runs_dir_option
@data_options
@json_option
@click.pass_context
def tune(ctx, configs, space_file, search, trials, timeout, sampler, sampler_seed, pruner, study_name, storage,
         dataset, epochs, overrides, device, runs_dir, data_dir, offline, as_json):
    """Search a spec's hyperparameters with Optuna; every trial is an ordinary run.

    The objective is the best validation accuracy on a hold-out of the training set
    (20% when the spec validates on the test set); the test set is read once, for the
    best trial. The study is kept in storage: run the same command again after
    Ctrl-C or a crash to continue it, or on several machines at once to share it.

    \b
    Examples:
      mnistcls tune -c a2_hidden128.yaml --space a2_lr_adam.yaml --trials 20
      mnistcls tune -c fast_fashion.yaml --space fast_fashion.yaml --trials 30 --timeout 3600
      mnistcls tune -c a3_width.yaml --search 'model.1.units={int: [10, 1000], log: true}' --trials 10 \\
          --study widths
      mnistcls tune --study widths --trials 20                            # continue it, to 20 trials
      mnistcls tune -c fast_fashion.yaml --space fast_fashion.yaml --trials 50 \\
          --storage postgresql://tune:secret@dbhost/studies                # the same on every machine
    """
    if len(configs) > 1:
        raise UsageError("tune searches one spec: give one --config")
    _tensorflow(ctx)
    from mnistcls import tune as tuning

    overrides = as_overrides(overrides, epochs=epochs)
    study = tuning.tune(configs[0] if configs else None, space_file=space_file, search=search, overrides=overrides,
                        dataset=dataset, trials=trials, timeout=timeout, sampler=sampler,
                        sampler_seed=sampler_seed, pruner=pruner,
                        study_name=study_name, storage=storage, device=device, runs_directory=runs_dir,
                        data_dir=data_dir, offline=offline, reporter=_reporter(as_json),
                        verbose=ctx.find_root().params["verbose"])
    if as_json:
        report.print_json(study)
    else:
        report.console.print(report.trials_table(study))
        report.console.print(report.tuning_summary(study))


def main():
    try:
        cli(prog_name="mnistcls")
    except SystemExit as done:
        code = done.code
    else:
        code = 0
    if "tensorflow" in sys.modules:
        # Everything is written and closed by now (every file atomically); what is left is the interpreter
        # tearing TensorFlow's thread pools and arrays down, most of a second a command: not worth a wait.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 0 if code is None else 1)
    sys.exit(code)
