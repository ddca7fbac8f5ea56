"""The `mnistcls` command line: thin click commands that wire the library together.

Each command parses its options, calls spec / build / data / train / evaluate /
runs, and hands the results to `report`. Errors a user can fix are
`MnistclsError`s: they print as one message and set the exit code (1 for a failed
job, 2 for bad input, 130 when interrupted); they never show a traceback.
"""

import itertools
from pathlib import Path

import click

from mnistcls import __version__, report
from mnistcls.errors import MnistclsError, UsageError
from mnistcls.spec import PRECISIONS


class Group(click.Group):
    """A click group that turns MnistclsError into one message and an exit code."""

    def invoke(self, ctx):
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
                        help="Folder with one subfolder per dataset (mnist/, fashion/); "
                             "also MNISTCLS_DATA_DIR.")(command)


runs_dir_option = click.option("--runs-dir", type=click.Path(file_okay=False), metavar="DIR",
                               help="Where run folders live (default ./runs, or MNISTCLS_RUNS_DIR).")


def _tensorflow(ctx):
    """Import TensorFlow now, quietly unless --verbose: only commands that need it call this."""
    from mnistcls.runtime import import_tensorflow

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
    from mnistcls import build, spec as specs

    _tensorflow(ctx)  # checking a spec's layers against Keras' signatures imports Keras
    paths = configs or [str(p) for p in specs.bundled_configs()]
    loaded = [specs.load_spec(path, overrides) for path in paths]
    summaries = [build.summarize(build.build_model(s), s.name, s.description) for s in loaded]
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
@click.option("--epochs", type=click.IntRange(1), help="Same as --set train.epochs=N.")
@click.option("--batch-size", type=click.IntRange(1), help="Same as --set train.batch_size=N.")
@click.option("--lr", type=float, help="Same as --set train.optimizer.learning_rate=X.")
@click.option("--seed", type=click.IntRange(0), help="Same as --set train.seed=N.")
@click.option("--precision", type=click.Choice(PRECISIONS), help="Same as --set train.precision=P.")
@set_option
@click.option("--device", type=click.Choice(["auto", "cpu", "gpu"]), default="auto", show_default=True,
              help="auto uses the GPUs when there are any.")
@click.option("--gpus", type=click.IntRange(1), help="Train on this many GPUs (MirroredStrategy); default all.")
@click.option("--resume", metavar="RUN", help="Continue an interrupted run to its planned epochs.")
@runs_dir_option
@data_options
@json_option
@click.pass_context
def train(ctx, configs, datasets, epochs, batch_size, lr, seed, precision, overrides, device, gpus, resume,
          runs_dir, data_dir, offline, as_json):
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
    """
    from mnistcls import jobs

    if not configs and not resume:
        raise UsageError("give a spec with --config (e.g. --config cnn_relu.yaml), or --resume RUN")
    if resume and (configs or datasets):
        raise UsageError("--resume continues a run as it was planned: leave out --config and --dataset")
    shorthands = {"train.epochs": epochs, "train.batch_size": batch_size,
                  "train.optimizer.learning_rate": lr, "train.seed": seed, "train.precision": precision}
    overrides = [f"{k}={v}" for k, v in shorthands.items() if v is not None] + list(overrides)
    _tensorflow(ctx)
    results = jobs.train_all(configs, datasets, overrides, resume=resume, device=device, gpus=gpus,
                             runs_directory=runs_dir, data_dir=data_dir, offline=offline, quiet=as_json)
    if as_json:
        report.print_json(results)
    elif len(results) > 1:
        report.console.print(report.results_table(results, title="Comparison"))


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
              help="Also look in this folder (as MNISTCLS_DATA_DIR does).")
@json_option
def data_list(data_dir, as_json):
    """Show every place each dataset is looked for, what is there, and whether it verified.

    \b
    Example:
      MNISTCLS_DATA_DIR=../shared/data mnistcls data list
    """
    from dataclasses import asdict

    from mnistcls import data as datasets

    reports = datasets.survey(data_dir=data_dir)
    if as_json:
        report.print_json([{**asdict(r), "ready": r.ready, "missing": r.missing} for r in reports])
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
    with report.DownloadProgress() as progress:
        for each in names:
            folder = datasets.download(each, data_dir=data_dir, offline=offline, progress=progress)
            report.console.print(f"{each}: ready (cache: {folder})")


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
    import numpy as np

    from mnistcls import data as datasets, plots

    loaded = datasets.load(dataset, data_dir=data_dir, offline=offline, splits=(split,))
    images, labels = (loaded.x_train, loaded.y_train) if split == "train" else (loaded.x_test, loaded.y_test)
    picked = (np.random.default_rng(seed).choice(len(images), count, replace=False) if seed is not None
              else np.arange(min(count, len(images))))
    path = Path(out) if out else _new_file(f"{loaded.name}-{split}-samples.png")
    plots.image_grid(images[picked], [loaded.class_names[labels[i]] for i in picked], path,
                     title=f"{loaded.name}, {split} split: {len(picked)} images")
    report.console.print(str(path))


def _new_file(name):
    """`name` in the current folder, or name-2, name-3... so that nothing existing is overwritten."""
    path = Path(name)
    for n in itertools.count(2):
        if not path.exists():
            return path
        path = Path(f"{Path(name).stem}-{n}{Path(name).suffix}")


def main():
    cli(prog_name="mnistcls")
