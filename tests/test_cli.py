"""The command line itself: help, version, exit codes, and start-up cost."""

import os
import subprocess
import sys

from click.testing import CliRunner

from mnistcls import __version__
from mnistcls.cli import cli


def _python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_help_and_version_do_not_import_tensorflow():
    code = ("import sys; from click.testing import CliRunner; from mnistcls.cli import cli; "
            "r1 = CliRunner().invoke(cli, ['--help']); r2 = CliRunner().invoke(cli, ['--version']); "
            "[CliRunner().invoke(cli, [c, '--help']) for c in cli.commands]; "
            "print(r1.exit_code, r2.exit_code, 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    assert _python(code).split() == ["0", "0", "False", "False"]


def test_version_is_the_package_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_every_command_help_shows_an_example():
    for name in cli.commands:
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0
        assert "mnistcls " + name in result.output, name


def test_unknown_option_is_a_usage_error():
    assert CliRunner().invoke(cli, ["summary", "--no-such-option"]).exit_code == 2


def test_data_list_shows_where_each_dataset_was_found(real_data_dir, fashion_system_dir):
    result = CliRunner().invoke(cli, ["data", "list", "--json", "--data-dir", str(real_data_dir)])
    assert result.exit_code == 0, result.output
    import json

    mnist, fashion = json.loads(result.output)
    assert fashion["ready"] and any(p["path"] == str(fashion_system_dir) and
                                    all(f["status"] == "verified" for f in p["files"]) for p in fashion["places"])
    assert mnist["ready"] and mnist["missing"] == []
    assert any("mnistcls data download mnist" in line for line in mnist["advice"])


def test_data_list_says_why_a_copy_is_bad_in_80_columns(tmp_path, monkeypatch):
    from rich.console import Console

    from mnistcls import report

    folder = tmp_path / "very-long-folder-name-that-has-to-fold-somewhere" / "mnist"
    folder.mkdir(parents=True)
    (folder / "t10k-labels.idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x27\x10")  # no labels
    monkeypatch.setattr(report, "console", Console(width=80, record=True, file=open(os.devnull, "w")))
    result = CliRunner().invoke(cli, ["data", "list", "--data-dir", str(folder.parent)])
    assert result.exit_code == 0, result.output
    text = report.console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    unfolded = " ".join(line.strip() for line in text.splitlines())
    assert "BAD" in text
    # The reason follows the bad copy's path (folded over lines where it is long).
    assert "t10k-labels.idx1-ubyte:is8byteslong(uncompressed)butitsIDXheader(10000)callsfor10,008" \
        in unfolded.replace(" ", "")


def test_data_show_writes_a_new_png_and_never_overwrites(fashion_system_dir, tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    (tmp_path / "fashion-test-samples.png").write_text("mine")
    result = CliRunner().invoke(cli, ["data", "show", "-d", "fashion", "--split", "test", "--count", "9"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "fashion-test-samples-2.png"
    assert (tmp_path / "fashion-test-samples.png").read_text() == "mine"
    assert Image.open(tmp_path / "fashion-test-samples-2.png").size[0] > 200


def test_a_corrupt_data_file_is_one_clear_message(tmp_path):
    folder = tmp_path / "fashion"
    folder.mkdir()
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b not really gzip")
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"")
    result = CliRunner().invoke(cli, ["data", "show", "-d", "fashion", "--split", "test",
                                      "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "t10k-images-idx3-ubyte" in result.output and "Traceback" not in result.output


def test_data_dir_replaces_the_environment_folder_as_its_help_says(tmp_path, monkeypatch):
    import json

    env_folder, option_folder = tmp_path / "env", tmp_path / "option"
    monkeypatch.setenv("MNISTCLS_DATA_DIR", str(env_folder))
    result = CliRunner().invoke(cli, ["data", "list", "--json", "--data-dir", str(option_folder)])
    assert result.exit_code == 0, result.output
    looked_in = [place["path"] for dataset in json.loads(result.output) for place in dataset["places"]]
    assert any(path.startswith(str(option_folder)) for path in looked_in)
    assert not any(path.startswith(str(env_folder)) for path in looked_in)
    for command in (["data", "list"], ["data", "show"], ["train"]):
        help_text = " ".join(CliRunner().invoke(cli, [*command, "--help"]).output.split())
        assert "MNISTCLS_DATA_DIR" in help_text and "also look" not in help_text.lower(), command
        assert "instead of $MNISTCLS_DATA_DIR" in help_text or "which this replaces" in help_text, command


def test_data_and_runs_commands_do_not_import_tensorflow(tmp_path):
    code = ("import sys; from click.testing import CliRunner; from mnistcls.cli import cli; "
            f"r1 = CliRunner().invoke(cli, ['runs', '--runs-dir', {str(tmp_path)!r}]); "
            f"r2 = CliRunner().invoke(cli, ['data', 'list', '--data-dir', {str(tmp_path)!r}]); "
            "print(r1.exit_code, r2.exit_code, 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    assert _python(code).split() == ["0", "0", "False", "False"]


def test_a_shorthand_option_is_the_set_it_stands_for_and_an_explicit_set_wins():
    from conftest import TINY_SPEC
    from mnistcls.shorthands import as_overrides
    from mnistcls.spec import load_spec

    spec = load_spec(TINY_SPEC, as_overrides([], epochs=2, lr=0.5, seed=None))
    assert (spec.train.epochs, spec.train.optimizer.learning_rate) == (2, 0.5)
    assert load_spec(TINY_SPEC, as_overrides(["train.epochs=3"], epochs=2)).train.epochs == 3
