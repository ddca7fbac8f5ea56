"""The command line itself: help, version, exit codes, and start-up cost."""

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
