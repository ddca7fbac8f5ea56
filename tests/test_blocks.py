"""Blocks in a spec (residual, parallel, repeat): paths, shape checks, summaries against hand counts, and
every command on a small graph model."""

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

import shapes
from conftest import TINY_GRAPH
from mnistcls import build, runner, search, spec as specs
from mnistcls.cli import cli
from mnistcls.errors import SpecError



# The example, with a projection that halves the image.
EXAMPLE = """\
model:
  - conv2d: {filters: 8, kernel_size: 3, padding: same, use_bias: false}
  - batchnorm
  - activation: relu
  - repeat:
      times: 3
      layers:
        - residual:
            - conv2d: {filters: 8, kernel_size: 3, padding: same, use_bias: false}
            - batchnorm
            - activation: relu
            - conv2d: {filters: 8, kernel_size: 3, padding: same, use_bias: false}
            - batchnorm
        - activation: relu
  - residual:
      shortcut: projection
      layers:
        - conv2d: {filters: 16, kernel_size: 3, strides: 2, padding: same}
  - parallel:
      merge: concat
      branches:
        - [conv2d: {filters: 4, kernel_size: 1}]
        - [conv2d: {filters: 4, kernel_size: 3, padding: same}]
  - globalavgpool
  - dense: {units: 10, activation: softmax}
"""


def parse(text, overrides=()):
    return specs.parse_spec(text, "example.yaml", list(overrides))


def summary_of(text, overrides=(), dtype="float32"):
    spec = parse(text, overrides)
    model, paths = build.lay_out(spec, dtype=dtype)
    return build.summarize(model, spec.name, paths=paths), model


# --- the spec: paths, overrides, sweeps, search spaces ------------------------------------------

def test_every_entry_has_a_dotted_path_and_fields_inside_blocks_are_set_by_it():
    spec = parse(EXAMPLE)
    assert [e.path for e in specs.walk(spec.model)][3:7] == [
        "model.3", "model.3.layers.0", "model.3.layers.0.layers.0", "model.3.layers.0.layers.1"]
    assert specs.find_entry(spec.model, "model.5.branches.1.0").args["kernel_size"] == 3
    assert spec.origins["model.3.layers.0.layers.0.filters"] == ("example.yaml", 9)

    changed = parse(EXAMPLE, ["model.3.layers.0.layers.3.filters=16", "model.3.times=1"])
    assert changed.model[3].args["times"] == 1
    with pytest.raises(SpecError, match=r"model.3.layers.0 \(in copy 1 of 1\)|identity shortcut"):
        build.build_model(changed)  # 8 channels in, 16 out of the body: the identity cannot add them


def test_a_resolved_spec_reads_back_as_itself():
    spec = parse(EXAMPLE)
    again = parse(yaml.safe_dump(spec.to_dict(), sort_keys=False))
    assert again.to_dict() == spec.to_dict()
    assert build.build_model(again).count_params() == build.build_model(spec).count_params()


def test_times_of_a_repeat_can_be_swept_and_each_copy_has_weights_of_its_own(tmp_path):
    path = tmp_path / "example.yaml"
    path.write_text(EXAMPLE)
    planned = runner.plan([str(path)], [], ["model.3.times=1,3"])
    assert [job.sweep for job in planned] == [{"model.3.times": "1"}, {"model.3.times": "3"}]
    one, three = (build.build_model(job.spec).count_params() for job in planned)
    block = 2 * (3 * 3 * 8 * 8) + 2 * (4 * 8)  # two convolutions and two batch normalizations
    assert three - one == 2 * block


def test_search_spaces_reach_inside_blocks(tmp_path):
    path = tmp_path / "example.yaml"
    path.write_text(EXAMPLE)
    space = search.load_space(str(path), None, ["model.3.times={int: [1, 3]}",
                                                "model.3.layers.0.layers.0={choice: [8, 16]}"], [])
    targets = {p.name: p.target for p in space.params.values()}
    assert targets == {"model.3.times": "model.3.times",
                       "model.3.layers.0.layers.0": "model.3.layers.0.layers.0.filters"}
    with pytest.raises(SpecError, match=r"model.3: a 'repeat' block has no bare-value form"):
        search.load_space(str(path), None, ["model.3={int: [1, 3]}"], [])
    with pytest.raises(SpecError, match=r"model.3.time.*did you mean 'times'"):
        search.load_space(str(path), None, ["model.3.time={int: [1, 3]}"], [])


# --- what the model outputs ---------------------------------------------------------------------

@pytest.mark.parametrize("tail, softmax", [
    ("  - repeat: {times: 2, layers: [dense: {units: 10, activation: softmax}]}\n", True),
    ("  - parallel: {merge: average, branches: [[dense: {units: 10, activation: softmax}],"
     " [dense: {units: 10, activation: softmax}]]}\n", True),
    ("  - parallel: {merge: maximum, branches: [[dense: {units: 10, activation: softmax}],"
     " [dense: {units: 10, activation: softmax}]]}\n", False),
    ("  - residual: [dense: {units: 10, activation: softmax}]\n", False),
], ids=["repeat", "average", "maximum", "residual"])
def test_a_model_that_ends_in_a_block_outputs_what_its_last_layers_make(tail, softmax):
    text = "model:\n  - flatten\n  - dense: 10\n" + tail + f"train: {{from_logits: {str(not softmax).lower()}}}\n"
    assert specs.parse_spec(text, "t.yaml").train.from_logits is not softmax  # accepted as it is written
    wrong = text.replace(f"from_logits: {str(not softmax).lower()}", f"from_logits: {str(softmax).lower()}")
    with pytest.raises(SpecError, match="the last layer"):
        specs.parse_spec(wrong, "t.yaml")


def test_the_layer_that_makes_the_output_computes_in_float32_under_mixed_precision():
    _, model = summary_of(EXAMPLE.replace("  - globalavgpool\n  - dense: {units: 10, activation: softmax}\n",
                                          "  - flatten\n  - dense: 10\n  - residual: [dense: 10]\n")
                          + "train: {from_logits: true}\n", dtype="mixed_bfloat16")
    assert type(model.layers[-1]).__name__ == "Add" and model.layers[-1].dtype_policy.name == "float32"
    assert model.layers[-2].dtype_policy.name == "mixed_bfloat16" and model.output.dtype == "float32"


# --- summaries: parameters and multiply-accumulates against hand counts ------------------------

def test_a_residual_block_counts_its_convolutions_and_its_add():
    summary, model = summary_of("model:\n  - conv2d: {filters: 4, kernel_size: 3, padding: same}\n"
                                "  - residual: [conv2d: {filters: 4, kernel_size: 3, padding: same}]\n"
                                "  - globalavgpool\n  - dense: {units: 10, activation: softmax}\n")
    rows = {row.kind: row for row in summary.rows}
    assert rows["Add"].macs == 28 * 28 * 4  # one addition per value
    assert rows["Add"].inputs == tuple(r.name for r in summary.rows if r.kind == "Conv2D")  # shortcut, body
    assert summary.macs == 3 * 3 * 1 * 4 * 784 + 3 * 3 * 4 * 4 * 784 + 28 * 28 * 4 + 4 * 10
    assert summary.total == model.count_params() == (9 * 4 + 4) + (9 * 16 + 4) + (4 * 10 + 10)
    assert summary.is_graph and rows["Add"].path == "model.1"


def test_a_projection_shortcut_counts_its_1x1_convolution_and_batch_normalization():
    summary, model = summary_of("model:\n  - conv2d: {filters: 4, kernel_size: 3, padding: same}\n"
                                "  - residual: {shortcut: projection, layers: "
                                "[conv2d: {filters: 8, kernel_size: 3, strides: 2, padding: same}]}\n"
                                "  - globalavgpool\n  - dense: {units: 10, activation: softmax}\n")
    shortcut = [row for row in summary.rows if row.path == "model.1.shortcut"]
    assert [row.kind for row in shortcut] == ["Conv2D", "BatchNormalization"]
    assert shortcut[0].macs == 4 * 8 * 14 * 14 and shortcut[0].params == 4 * 8  # 1x1, stride 2, no bias
    assert shortcut[1].params == 4 * 8  # gamma, beta, moving mean and variance
    assert summary.macs == (9 * 4 * 784) + (9 * 4 * 8 * 196) + (4 * 8 * 196) + 8 * 196 + 8 * 10
    assert summary.total == model.count_params()


def test_a_parallel_block_counts_each_branch_and_a_concat_costs_nothing():
    summary, model = summary_of("model:\n  - parallel:\n      branches:\n"
                                "        - [conv2d: {filters: 2, kernel_size: 1}]\n"
                                "        - [conv2d: {filters: 3, kernel_size: 3, padding: same}]\n"
                                "        - []\n"
                                "  - globalavgpool\n  - dense: {units: 10, activation: softmax}\n")
    rows = {row.kind: row for row in summary.rows}
    assert rows["Concatenate"].output_shape == (None, 28, 28, 2 + 3 + 1) and rows["Concatenate"].macs == 0
    assert set(rows["Concatenate"].inputs) == {"scale", *(r.name for r in summary.rows if r.kind == "Conv2D")}
    assert summary.macs == 1 * 2 * 784 + 9 * 1 * 3 * 784 + 6 * 10
    assert summary.total == model.count_params()


def test_summary_shows_the_spec_entry_and_connections_of_a_graph():
    result = CliRunner().invoke(cli, ["summary", "-c", TINY_GRAPH])
    assert result.exit_code == 0, result.output
    assert "Spec entry" in result.output and "Connected to" in result.output
    plain = CliRunner().invoke(cli, ["summary", "-c", "cnn_relu.yaml"])
    assert "Connected to" not in plain.output  # a chain reads as Keras prints a Sequential model


def test_a_graph_summary_in_120_columns_keeps_each_shape_and_spec_entry_on_one_line():
    result = CliRunner().invoke(cli, ["summary", "-c", "inception_fashion.yaml"], terminal_width=120,
                                env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= 120
    for whole in ("(None, 14, 14, 32)", "model.5.branches.2.0", "2,709,504"):
        assert whole in result.output


# --- saving, loading, and every command on a small graph model ---------------------------------

def test_repeated_copies_have_distinct_names_and_the_saved_model_predicts_the_same(tmp_path):
    import keras

    spec = parse(EXAMPLE)
    model = build.build_model(spec)
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    model.save(tmp_path / "m.keras")
    images = np.random.default_rng(0).uniform(0, 255, (4, 28, 28, 1)).astype("float32")
    again = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-6)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def graph_run(small_dataset, tmp_path_factory):
    """(runs directory, run id) of tiny_graph trained for two epochs with ten-view test averaging."""
    runs_dir = tmp_path_factory.mktemp("graph-runs")
    result = invoke("train", "-c", TINY_GRAPH, "-d", small_dataset, "--set", "data.tta=flip_shift",
                    "--runs-dir", runs_dir, "--json")
    assert result.exit_code == 0, result.output
    return runs_dir, json.loads(result.stdout)[0]["run"]


def test_a_graph_model_trains_and_evaluates_to_its_recorded_accuracy(graph_run, small_dataset):
    runs_dir, run_id = graph_run
    result = invoke("evaluate", "--run", run_id, "-d", small_dataset, "--runs-dir", runs_dir, "--json")
    assert result.exit_code == 0, result.output
    (evaluated,) = json.loads(result.stdout)
    metrics = json.loads((runs_dir / run_id / "metrics.json").read_text())
    assert evaluated["test_accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-9)
    assert metrics["test_accuracy"] > 0.3 and metrics["test_accuracy_without_tta"] is not None


def test_a_graph_model_exports_to_every_format_and_predicts_from_it(graph_run, small_dataset, tmp_path):
    runs_dir, run_id = graph_run
    result = invoke("export", run_id, "-f", "savedmodel", "-f", "tflite", "-f", "onnx", "--out", tmp_path,
                    "--runs-dir", runs_dir, "--json")
    assert result.exit_code == 0, result.output
    exports = json.loads(result.stdout)["exports"]
    assert len(exports) == 3 and all(e["passed"] and e["agreement"] >= 0.999 for e in exports)

    from PIL import Image

    picture = tmp_path / "shape.png"
    Image.fromarray(shapes.images(1, seed=5)[0][0]).resize((112, 112)).save(picture)
    by_run = invoke("predict", "--run", run_id, picture, "--runs-dir", runs_dir, "--json")
    by_file = invoke("predict", "--model", tmp_path / "model.onnx", picture, "--json")
    assert by_run.exit_code == by_file.exit_code == 0, by_run.output + by_file.output
    top = [json.loads(r.stdout)["images"][0]["top"][0] for r in (by_run, by_file)]
    assert top[0]["class"] == top[1]["class"] and top[0]["probability"] == pytest.approx(top[1]["probability"],
                                                                                           abs=1e-4)


def test_a_graph_model_is_tuned_over_the_times_of_its_repeat(small_dataset, tmp_path):
    result = invoke("tune", "-c", TINY_GRAPH, "-d", small_dataset, "--search", "model.1.times={int: [1, 2]}",
                    "--trials", "2", "--epochs", "1", "--sampler", "grid", "--runs-dir", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    trials = json.loads(result.stdout)["trials"]
    assert sorted(t["params"]["model.1.times"] for t in trials) == [1, 2]
    assert all(t["state"] == "complete" for t in trials)


def test_a_study_and_bench_take_a_graph_model(small_dataset, tmp_path):
    study = tmp_path / "graphs.yaml"
    study.write_text(f"experiments:\n  depths:\n    config: {TINY_GRAPH}\n    set: {{model.1.times: [1, 2]}}\n")
    result = invoke("study", study, "-d", small_dataset, "--epochs", "1", "--runs-dir", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [row["sweep"] for row in rows] == [{"model.1.times": "1"}, {"model.1.times": "2"}]
    assert all(row["status"] == "finished" for row in rows)
    bench = invoke("bench", "-c", TINY_GRAPH, "--steps", "4", "--json")
    assert bench.exit_code == 0, bench.output
    assert json.loads(bench.stdout)[0]["train_images_per_second"] > 0


@pytest.mark.parametrize("config", ["resnet_fashion.yaml", "inception_fashion.yaml"])
def test_the_bundled_graph_specs_train_resume_summarize_export_and_tune(config, small_dataset, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from conftest import wait_for_epochs
    from mnistcls import runs

    summary = invoke("summary", "-c", config)
    assert summary.exit_code == 0 and "Connected to" in summary.output

    small = ["-d", small_dataset, "--set", "train.batch_size=64", "--set", "train.validation=test"]
    process = subprocess.Popen([sys.executable, "-m", "mnistcls", "train", "-c", config, *map(str, small),
                                "--epochs", "3", "--runs-dir", str(tmp_path)], env=os.environ,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run = wait_for_epochs(tmp_path, 1, process)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130 and run.status == "interrupted", output
    resumed = invoke("train", "--resume", run.id, "--runs-dir", tmp_path)
    assert resumed.exit_code == 0 and run.status == "finished" and len(run.history) == 3, resumed.output

    exported = invoke("export", run.id, "-f", "onnx", "--runs-dir", tmp_path, "--json")
    assert exported.exit_code == 0 and json.loads(exported.stdout)["exports"][0]["passed"], exported.output

    tuned = invoke("tune", "-c", config, *small, "--search", "train.optimizer.learning_rate={float: [0.001, 0.01]}",
                   "--trials", "1", "--epochs", "1", "--runs-dir", tmp_path / "tune", "--json")
    assert tuned.exit_code == 0, tuned.output
    assert [t["state"] for t in json.loads(tuned.stdout)["trials"]] == ["complete"]
    assert runs.all_runs(tmp_path / "tune")
