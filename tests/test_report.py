"""User text in tables and lines (names, paths, run ids) is shown as it is, `[` included: never as rich markup."""

import json
import os

from click.testing import CliRunner

from mnistcls import report
from mnistcls.cli import cli

MARKUP = "a[bold]b[red]c"  # what rich would read as markup and hide


def test_a_spec_name_with_brackets_is_shown_as_written(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: '{MARKUP}'\ndescription: 'x[red]y'\n"
                    "model: [flatten, {dense: {units: 10, activation: softmax}}]\n")
    result = CliRunner().invoke(cli, ["summary", "--config", str(spec)])
    assert result.exit_code == 0, result.output
    assert MARKUP in result.output and "x[red]y" in result.output


def test_run_ids_paths_and_errors_with_brackets_are_shown_as_written(tmp_path):
    runs_dir = tmp_path / "runs[red]"
    run = runs_dir / "20260101-000000_a[bold]b_mnist"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({
        "id": run.name, "config": MARKUP, "config_file": "/home/[dim]me/spec.yaml", "dataset": "/data/[green]x",
        "status": "failed", "error": "ValueError: [red]no", "overrides": ["model.0.units=[1, 2]"]}))
    (run / "spec.yaml").write_text("train: {epochs: 3}\n")
    shown = CliRunner().invoke(cli, ["runs", "show", run.name, "--runs-dir", str(runs_dir)])
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    for written in (run.name, MARKUP, "/home/[dim]me/spec.yaml", "/data/[green]x", "ValueError: [red]no",
                    "model.0.units=[1, 2]"):
        assert written in text
    listing = CliRunner().invoke(cli, ["runs", "--runs-dir", str(runs_dir)])
    assert run.name in listing.output


def test_every_cell_title_caption_and_line_is_plain_text_unless_styled_on_purpose():
    console = report.Console(width=200, record=True, color_system=None)
    console.print(report.table(f"title {MARKUP}", ["Col [x]", "n>"], [(MARKUP, report.styled("[ok]", "green"))],
                               caption=f"caption {MARKUP}"))
    console.print(report.files_text({"Picture": f"/tmp/{MARKUP}.png"}))
    out = console.export_text()
    assert out.count(MARKUP) == 4 and "Col [x]" in out and "[ok]" in out


def test_numbers_are_never_cut_when_a_table_is_crowded():
    from rich.console import Console

    from mnistcls import report

    row = {"run": "20261125-013942_a2_hidden128_mnist", "sweep": {"train.optimizer.learning_rate": "0.0316"},
           "test_accuracy": 0.8588, "test_loss": 0.63, "best_val_accuracy": 0.8588, "best_epoch": 1,
           "epochs_run": 1, "seconds_per_epoch": 2.2, "params": 101770, "validation": "test"}
    console = Console(width=120, record=True, file=open(os.devnull, "w"))
    console.print(report.results_table([row]))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 120
    for number in ("85.88%", "0.6300", "2.2", "101,770", "0.0316"):
        assert number in text  # whole, on one line: the run id folds instead
