"""Keras' private names are used only with the Keras versions they were checked against."""

import keras
import pytest
from click.testing import CliRunner

from conftest import TINY_SPEC
from mnistcls import keras_compat, runs
from mnistcls.cli import cli
from mnistcls.errors import MnistclsError


def test_the_installed_keras_is_a_tested_one():
    keras_compat.check_keras_version()


@pytest.mark.parametrize("version", ["3.14.2", "3.16.0", "3.16.0.dev2026", "4.0.0", "nightly"])
def test_other_keras_versions_are_refused(version):
    with pytest.raises(MnistclsError, match=f"Keras {version} is installed.*pip install 'keras>=3.15,<3.16'"):
        keras_compat.check_keras_version(version)


def test_training_under_an_untested_keras_fails_before_any_run_is_made(small_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(keras, "__version__", "3.16.0")
    result = CliRunner().invoke(cli, ["train", "-c", TINY_SPEC, "-d", str(small_dataset), "--runs-dir", str(tmp_path)])
    assert result.exit_code == 1 and "Keras 3.16.0 is installed" in result.output and "Traceback" not in result.output
    assert runs.all_runs(tmp_path) == []


def test_each_private_use_checks_the_version(monkeypatch):
    from mnistcls import build, spec as specs

    model = build.build_model(specs.load_spec(TINY_SPEC, []), (28, 28, 1), 10)
    assert len(keras_compat.seed_generators(model)) == 1  # the dropout layer's
    monkeypatch.setattr(keras, "__version__", "3.16.0")
    for use in (keras_compat.seed_generators, lambda m: keras_compat.work_around_multi_worker_bugs(m, 10)):
        with pytest.raises(MnistclsError, match="Keras 3.16.0"):
            use(model)
