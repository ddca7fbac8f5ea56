"""Spec parsing and validation: bundled configs, overrides, and one broken spec per kind of mistake."""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from mnistcls import spec as specs
from mnistcls.build import build_model, summarize
from mnistcls.cli import cli
from mnistcls.errors import SpecError

from conftest import TINY_SPEC

BROKEN = sorted((Path(__file__).parent / "specs" / "broken").glob("*.yaml"))

# Parameter counts the seeds printed (see configs/studies/): total, trainable, non-trainable.
STUDY_PARAMS = {
    "a1_linear": (7_850, 7_850, 0),
    "a2_hidden128": (101_770, 101_770, 0),
    "a3_width": (795_010, 795_010, 0),
    "a4_deep": (44_860, 44_860, 0),
    "a4_deep_tuned": (45_460, 45_160, 300),
    "cnn_relu": (454_410, 454_410, 0),
    "cnn_sigmoid": (454_410, 454_410, 0),
    "cnn_sigmoid_bn": (455_346, 454_878, 468),
    "cnn_one_block": (804_554, 804_554, 0),
}


def _expectation(path):
    """A broken spec's first line: `# expect: LINE PATH | TEXT` (PATH '-' for none)."""
    match = re.match(r"# expect: (\d+) (\S+) \| (.*)", path.read_text().splitlines()[0])
    line, field, text = match.groups()
    return int(line), "" if field == "-" else field, text.strip()


@pytest.mark.parametrize("config", sorted(STUDY_PARAMS))
def test_bundled_config_matches_study_parameter_counts(config):
    spec = specs.load_spec(f"{config}.yaml")
    summary = summarize(build_model(spec), spec.name)
    assert (summary.total, summary.trainable, summary.non_trainable) == STUDY_PARAMS[config]


def test_every_bundled_config_is_valid_and_builds():
    for path in specs.bundled_configs():
        spec = specs.load_spec(path)
        assert build_model(spec).output.shape[1:] == (10,), path.name


def test_there_are_at_least_twenty_broken_specs():
    assert len(BROKEN) >= 20


@pytest.mark.parametrize("path", BROKEN, ids=[p.stem for p in BROKEN])
def test_broken_spec_gives_one_clear_message(path):
    line, field, text = _expectation(path)
    result = CliRunner().invoke(cli, ["summary", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    messages = [m for m in result.output.splitlines() if m.strip()]
    assert len(messages) == 1, messages
    message = messages[0]
    location = f"{path}:{line}: " + (f"{field}: " if field else "")
    assert location in message, message
    assert text in message, message


def test_all_problems_of_a_spec_are_reported_in_one_run(tmp_path):
    path = tmp_path / "many.yaml"
    path.write_text("model:\n  - flaten\n  - dense: {units: -1}\ntrain:\n  epochs: 0\n  batch_size: x\n")
    with pytest.raises(SpecError) as err:
        specs.load_spec(path)
    found = {(p.line, p.path) for p in err.value.problems}
    assert found == {(2, "model.0"), (3, "model.1.units"), (5, "train.epochs"), (6, "train.batch_size")}


def test_overrides_are_type_checked_and_name_the_command_line():
    with pytest.raises(SpecError) as err:
        specs.load_spec("cnn_relu.yaml", ["train.epochs=three"])
    (problem,) = err.value.problems
    assert problem.file == "--set train.epochs=three" and problem.line is None
    assert "must be an integer" in problem.message


def test_overrides_reach_layers_and_nested_train_fields():
    spec = specs.load_spec("a3_width.yaml", ["model.1.units=317", "train.optimizer.learning_rate=0.01"])
    assert spec.model[1].args["units"] == 317
    assert spec.train.optimizer.learning_rate == 0.01
    assert summarize(build_model(spec), spec.name).total == 784 * 317 + 317 + 317 * 10 + 10


def test_defaults_make_a_minimal_spec_a_layer_list():
    spec = specs.parse_spec("model: [flatten, {dense: {units: 10, activation: softmax}}]", "mini.yaml")
    assert spec.name == "mini"
    assert (spec.train.batch_size, spec.train.optimizer.name, spec.train.validation) == (128, "adam", "test")
    assert spec.data.preprocess == "scale"


def test_a_bare_value_sets_the_primary_argument_by_short_or_keras_name():
    spec = specs.parse_spec("model: [flatten, {Dense: 32}, {dropout: 0.5}, {dense: 10}, {activation: softmax}]",
                            "bare.yaml")
    assert [(layer.type, layer.args) for layer in spec.model] == [
        ("flatten", {}), ("Dense", {"units": 32}), ("dropout", {"rate": 0.5}), ("dense", {"units": 10}),
        ("activation", {"activation": "softmax"})]


def test_sweep_values_split_on_commas_but_not_inside_yaml_lists():
    assert specs.split_sweep("train.optimizer.learning_rate=0.01,0.1") == [
        "train.optimizer.learning_rate=0.01", "train.optimizer.learning_rate=0.1"]
    assert specs.split_sweep("model.0.kernel_size=[3,3]") == ["model.0.kernel_size=[3,3]"]


def test_bundled_configs_are_found_by_bare_name_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert specs.find_config("cnn_relu.yaml") == specs.CONFIG_DIR / "cnn_relu.yaml"


def test_missing_spec_file_is_a_usage_error_with_a_suggestion():
    result = CliRunner().invoke(cli, ["summary", "--config", "cnn_rleu.yaml"])
    assert result.exit_code == 2
    assert "cnn_rleu.yaml: no such spec file" in result.output and "cnn_relu.yaml" in result.output


def test_standardize_is_a_weightless_step_using_the_training_statistics():
    import numpy as np

    spec = specs.load_spec("seedb_cnn.yaml")
    model = build_model(spec, pixel_stats=(0.1307, 0.3081))
    step = model.get_layer("standardize")
    assert step.count_params() == 0
    out = np.asarray(step(np.array([[0, 255]], dtype="uint8")))
    np.testing.assert_allclose(out, [[-0.1307 / 0.3081, (1 - 0.1307) / 0.3081]], rtol=1e-5)


def test_numbers_in_exponent_form_are_numbers_in_files_and_overrides():
    spec = specs.parse_spec("model: [flatten, {dense: {units: 10, activation: softmax}}]\n"
                            "train: {optimizer: {name: adam, learning_rate: 1e-3}}\n", "e.yaml",
                            ["train.schedule={name: inverse_time, decay: 1e-6}"])
    assert spec.train.optimizer.learning_rate == 0.001 and spec.train.schedule.decay == 1e-6
    overridden = specs.load_spec("cnn_relu.yaml", ["train.optimizer.learning_rate=1e-4"])
    assert overridden.train.optimizer.learning_rate == 1e-4


def test_summary_of_several_specs_reports_the_problems_of_all_of_them():
    paths = [str(BROKEN[0].parent / name) for name in ("unknown_layer.yaml", "dropout_rate.yaml")]
    result = CliRunner().invoke(cli, ["summary", "-c", paths[0], "-c", paths[1]])
    assert result.exit_code == 2
    assert all(f"{path}:" in result.output for path in paths)


# --- hostile YAML: every reader of a user's YAML refuses bombs in one line ----------------

def _alias_bomb(levels=9):
    """A billion-laughs document: each anchor's list holds nine aliases of the one before (9**levels values)."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(["model: [flatten]", *lines]) + "\n"


def _deep(levels=5000):
    return "model: " + "[" * levels + "]" * levels + "\n"


@pytest.mark.parametrize("text, message", [
    (_alias_bomb(), "stand for more than 100,000 values"),
    (_deep(), f"nested more than {specs.MAX_YAML_DEPTH} levels deep"),
    ("model: [flatten]\n" + "#" * (specs.MAX_YAML_CHARS + 1) + "\n", "characters long"),
    ("model: &a [flatten, *a]\n", "an alias stands for a list or mapping that contains it"),
], ids=["alias-bomb", "deep", "huge", "recursive"])
def test_yaml_bombs_are_refused_in_one_line_before_anything_walks_them(tmp_path, text, message):
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    result = CliRunner().invoke(cli, ["summary", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and message in result.output
    assert len(result.output.strip().splitlines()) == 1 and str(path) in result.output


def test_a_bomb_says_the_line_where_it_goes_beyond_the_limit(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb())
    with pytest.raises(SpecError) as caught:
        specs.load_spec(path)
    (problem,) = caught.value.problems
    assert problem.line == 7  # a6 stands for 9**7 values, the first beyond 100,000


def test_an_alias_used_within_the_limit_still_reads():
    spec = specs.parse_spec("description: &flat flatten\nmodel: [*flat, {dense: {units: 10, activation: softmax}}]\n",
                            "aliases.yaml")
    assert spec.description == "flatten" and spec.model[0].type == "flatten"


@pytest.mark.parametrize("value, message", [
    ("[" * 5000 + "]" * 5000, "nested more than"),
    ("{" + _alias_bomb().replace("\n", ", ").rstrip(", ") + "}", "stand for more than"),
], ids=["deep", "alias-bomb"])
def test_set_values_get_the_same_limits(value, message):
    result = CliRunner().invoke(cli, ["summary", "--config", TINY_SPEC, "--set", f"train.epochs={value}"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--set train.epochs=" in result.output and message in result.output


def test_run_records_that_are_bombs_make_a_damaged_run_not_a_traceback(tmp_path):
    run = tmp_path / "20260101-000000_tiny_fashion"
    run.mkdir()
    (run / "run.json").write_text('{"id": "20260101-000000_tiny_fashion", "status": "finished"}')
    (run / "spec.yaml").write_text(_alias_bomb())
    (run / "metrics.json").write_text("[" * 100_000 + "]" * 100_000)
    listing = CliRunner().invoke(cli, ["runs", "--runs-dir", str(tmp_path)])
    assert listing.exit_code == 0 and run.name in listing.output  # planned epochs and results unknown
    shown = CliRunner().invoke(cli, ["runs", "show", run.name, "--runs-dir", str(tmp_path), "--json"])
    assert shown.exit_code == 2 and "spec.yaml cannot be read" in shown.output and "Traceback" not in shown.output


def test_unknown_dataset_names_are_caught_with_the_spec_unless_they_name_a_folder(tmp_path, monkeypatch):
    with pytest.raises(SpecError, match=r"data.dataset: unknown dataset 'cifar10'; give mnist or fashion"):
        specs.parse_spec("data: {dataset: cifar10}\nmodel: [flatten, {dense: {units: 10, activation: softmax}}]\n",
                         "s.yaml")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cifar10").mkdir()
    spec = specs.parse_spec("data: {dataset: cifar10}\nmodel: [flatten, {dense: {units: 10, activation: softmax}}]\n",
                            "s.yaml")
    assert spec.data.dataset == str((tmp_path / "cifar10").resolve())  # a folder, recorded absolute


def test_the_built_in_datasets_are_the_data_layers_and_each_has_a_picture_style():
    from mnistcls import data, images

    assert tuple(specs.DATASET_STYLES) == data.DATASET_NAMES
    assert set(specs.DATASET_STYLES.values()) <= set(specs.STYLES) == set(images.PREPARATIONS)


def test_tuple_arguments_take_numbers_where_keras_default_holds_them_and_integers_elsewhere():
    head = "model:\n  - RandomErasing: {scale: [0.02, 0.2], value_range: [0, 1]}\n"
    tail = "  - flatten\n  - dense: {units: 10, activation: softmax}\n"
    assert specs.parse_spec(head + tail, "erasing.yaml").model[0].args["scale"] == [0.02, 0.2]
    with pytest.raises(SpecError, match=r"model.0.pool_size: must be an integer or a list of integers"):
        specs.parse_spec("model:\n  - maxpool: [2.5, 2]\n" + tail, "pool.yaml")


def test_early_stopping_min_delta_is_a_real_number():
    text = "model: [flatten, {dense: {units: 10, activation: softmax}}]\ntrain:\n  early_stopping: {min_delta: %s}\n"
    assert specs.parse_spec(text % "0.001", "es.yaml").train.early_stopping == {"min_delta": 0.001}
    with pytest.raises(SpecError, match=r"min_delta: must be >= 0, got -0.5"):
        specs.parse_spec(text % "-0.5", "es.yaml")
