"""The `mnistcls` command line: thin click commands that wire the library together.

Each command parses its options, calls spec / build / data / train / evaluate /
runs, and hands the results to `report`. Errors a user can fix are
`MnistclsError`s: they print as one message and set the exit code (1 for a failed
job, 2 for bad input, 130 when interrupted); they never show a traceback.
"""

import click

from mnistcls import __version__, report
from mnistcls.errors import MnistclsError


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


def main():
    cli(prog_name="mnistcls")
