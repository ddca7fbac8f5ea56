"""User text in tables and lines (names, paths, run ids) is shown as it is, `[` included: never as rich markup."""

import json

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
