"""`mnistcls export`: each format written, reloaded by its own runtime (here, not through mnistcls) and
compared with the Keras model of a tiny run trained once on the generated shapes (conftest)."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mnistcls import data, export
from mnistcls.cli import cli


def run_export(runs_dir, *args):
    return CliRunner().invoke(cli, ["export", "--runs-dir", str(runs_dir), *args])


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    """(output folder, export's JSON, the Keras model, the test split): every format and quantisation at once."""
    import keras

    runs_dir, run_id = tiny_run
    out = tmp_path_factory.mktemp("exported")
    result = run_export(runs_dir, run_id, "-f", "savedmodel", "-f", "tflite", "-f", "onnx",
                        "-q", "none", "-q", "float16", "-q", "int8", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    (run_folder,) = [p for p in runs_dir.iterdir() if p.name == run_id]
    dataset = data.load(json.loads((run_folder / "run.json").read_text())["dataset"], splits=("test",))
    return out, json.loads(result.stdout), float32_model(keras.models.load_model(run_folder / "model.keras")), dataset


def float32_model(model):
    """The trained model computing in float32 (it was trained in bfloat16 where the CPU has it), as deployed."""
    import keras

    clone = keras.models.clone_model(model, clone_function=lambda layer: layer.__class__.from_config(
        {**layer.get_config(), "dtype": "float32"}))
    clone.set_weights(model.get_weights())
    return clone


def keras_top1(model, dataset):
    return model.predict(dataset.x_test[..., None].astype("float32"), verbose=0).argmax(axis=1)


def tflite_outputs(path, images):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    (given,), (returned,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.resize_tensor_input(given["index"], images.shape)
    interpreter.allocate_tensors()
    scale, zero_point = given["quantization"]
    fed = np.round(images / scale + zero_point) if scale else images
    interpreter.set_tensor(given["index"], fed.astype(given["dtype"]))
    interpreter.invoke()
    return interpreter.get_tensor(returned["index"])


def test_every_format_reloads_in_its_own_runtime_and_agrees_with_keras(exported):
    import onnxruntime
    import tensorflow as tf

    out, result, model, dataset = exported
    expected = keras_top1(model, dataset)
    images = dataset.x_test[..., None]

    saved = tf.saved_model.load(str(out / "savedmodel"))
    as_float = saved.signatures["serving_default"](image=tf.constant(images, tf.float32))
    as_uint8 = saved.signatures["serve_uint8"](image=tf.constant(images, tf.uint8))  # raw pixels, as stored
    onnx = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    tops = {
        "savedmodel float32": next(iter(as_float.values())).numpy().argmax(axis=1),
        "savedmodel uint8": next(iter(as_uint8.values())).numpy().argmax(axis=1),
        "onnx": onnx.run(None, {onnx.get_inputs()[0].name: images.astype(np.float32)})[0].argmax(axis=1),
        "tflite": tflite_outputs(out / "model.tflite", images.astype(np.float32)).argmax(axis=1),
        "tflite float16": tflite_outputs(out / "model-float16.tflite", images.astype(np.float32)).argmax(axis=1),
    }
    for name, top1 in tops.items():
        assert np.mean(top1 == expected) >= 0.999, name
    int8 = tflite_outputs(out / "model-int8.tflite", images).argmax(axis=1)
    keras_accuracy = np.mean(expected == dataset.y_test)
    assert np.mean(int8 == dataset.y_test) >= keras_accuracy - 0.01

    # What the command reported is what the runtimes give here.
    by_file = {e["path"].rsplit("/", 1)[-1]: e for e in result["exports"]}
    assert set(by_file) == {"savedmodel", "model.onnx", "model.tflite", "model-float16.tflite", "model-int8.tflite"}
    assert all(e["passed"] for e in by_file.values())
    assert by_file["model-int8.tflite"]["test_accuracy"] == pytest.approx(np.mean(int8 == dataset.y_test))
    assert by_file["model.onnx"]["agreement"] == pytest.approx(np.mean(tops["onnx"] == expected))
    assert result["keras"]["test_accuracy"] == pytest.approx(keras_accuracy)


def test_quantised_files_are_smaller(exported):
    out = exported[0]
    float32, float16, int8 = (out / name for name in ("model.tflite", "model-float16.tflite", "model-int8.tflite"))
    assert int8.stat().st_size < float16.stat().st_size < float32.stat().st_size


def test_each_artefact_has_a_model_card(exported, small_dataset):
    out, _, model, dataset = exported
    card = json.loads((out / "model-int8.tflite.card.json").read_text())
    names = (small_dataset / "classes.txt").read_text().splitlines()
    assert [c["name"] for c in card["classes"]] == names and [c["label"] for c in card["classes"]] == list(range(10))
    assert card["input"]["dtype"] == "uint8" and card["input"]["shape"] == [None, 28, 28, 1]
    assert card["photo_preparation"]["style"] == "mnist" and card["test_time_augmentation"] == "none"
    assert card["test_time_augmentation_views"] == "the image alone"
    assert card["training"]["spec"]["name"] == "tiny_cnn" and card["training"]["data"]["source"]
    assert card["test_accuracy"]["keras_model"] == pytest.approx(np.mean(keras_top1(model, dataset) == dataset.y_test))
    assert {"mnistcls", "tensorflow", "keras", "ai-edge-litert"} <= set(card["versions"])
    saved = json.loads((out / "savedmodel.card.json").read_text())
    assert {name: spec["dtype"] for name, spec in saved["input"].items()} == {
        "serving_default": "float32", "serve_uint8": "uint8"}
    assert json.loads((out / "model.onnx.card.json").read_text())["versions"]["onnxruntime"]


def test_exporting_again_replaces_its_own_files(tiny_run, exported):
    runs_dir, run_id = tiny_run
    out = exported[0]
    before = json.loads((out / "model.onnx.card.json").read_text())["exported"]
    result = run_export(runs_dir, run_id, "-f", "onnx", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "model.onnx" in result.output and "passed" in result.output
    assert json.loads((out / "model.onnx.card.json").read_text())["exported"] >= before
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary leftovers


@pytest.mark.parametrize("args, message", [
    (["no-such-run", "-f", "onnx"], "no run 'no-such-run'"),
    (["RUN", "-f", "coreml"], "unknown export format 'coreml'; choose from savedmodel, tflite, onnx"),
    (["RUN", "-f", "onnx", "-q", "int8"], "--quantize applies to TFLite only"),
    (["RUN", "-f", "tflite", "-q", "int4"], "unknown quantisation 'int4'"),
])
def test_bad_requests_get_one_line(tiny_run, tmp_path, args, message):
    runs_dir, run_id = tiny_run
    result = run_export(runs_dir, *[run_id if a == "RUN" else a for a in args], "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_a_file_that_is_not_ours_is_never_overwritten(tiny_run, tmp_path):
    runs_dir, run_id = tiny_run
    (tmp_path / "model.onnx").write_text("someone else's model")
    result = run_export(runs_dir, run_id, "-f", "savedmodel", "-f", "onnx", "--out", str(tmp_path))
    assert result.exit_code == 2 and "model.onnx: exists and was not written by mnistcls export" in result.output
    assert (tmp_path / "model.onnx").read_text() == "someone else's model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # the savedmodel was not made either

    (tmp_path / "file").write_text("mine")
    result = run_export(runs_dir, run_id, "-f", "onnx", "--out", str(tmp_path / "file"))
    assert result.exit_code == 2 and "exists and is not a folder" in result.output


def test_without_the_extra_export_says_what_to_install(tiny_run, tmp_path, monkeypatch):
    runs_dir, run_id = tiny_run
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    result = run_export(runs_dir, run_id, "-f", "onnx", "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "pip install 'mnistcls[export]'" in result.output and "onnxruntime" in result.output
    assert not (tmp_path / "out").exists()


def test_a_failed_check_leaves_nothing_that_looks_finished(tiny_run, tmp_path, monkeypatch):
    runs_dir, run_id = tiny_run
    monkeypatch.setattr(export, "MIN_FLOAT_AGREEMENT", 1.01)  # a bar no artefact can pass
    result = run_export(runs_dir, run_id, "-f", "tflite", "--out", str(tmp_path))
    assert result.exit_code == 1 and "check failed, not written" in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("artefact", ["savedmodel", "model.onnx", "model-int8.tflite"])
def test_predict_runs_an_exported_file_on_a_picture(tiny_run, exported, tmp_path, artefact):
    runs_dir, run_id = tiny_run
    out, _, _, dataset = exported
    picture = tmp_path / "item.png"
    Image.fromarray(255 - dataset.x_test[0]).resize((140, 140)).save(picture)  # dark on light, 5x larger

    def top(*args):
        result = CliRunner().invoke(cli, ["predict", "--runs-dir", str(runs_dir), *args, str(picture), "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    from_keras, from_file = top("--run", run_id), top("--model", str(out / artefact))
    assert from_file["model"] == str(out / artefact) and from_file["run"] == run_id
    assert from_file["images"][0]["top"][0]["class"] == from_keras["images"][0]["top"][0]["class"]


def test_predict_wants_one_of_run_and_model(tiny_run, exported, tmp_path):
    runs_dir, run_id = tiny_run
    both = CliRunner().invoke(cli, ["predict", "--run", run_id, "--model", str(exported[0] / "model.onnx"),
                                    "--runs-dir", str(runs_dir), "x.png"])
    assert both.exit_code == 2 and "either --run RUN or --model PATH" in both.output
    (tmp_path / "notes.txt").write_text("not a model")
    wrong = CliRunner().invoke(cli, ["predict", "--model", str(tmp_path / "notes.txt"), "x.png"])
    assert wrong.exit_code == 2 and "not an exported model" in wrong.output


def test_augmentation_layers_are_left_out_and_logits_become_probabilities(small_dataset, tmp_path):
    import onnxruntime

    spec = str(Path(__file__).parent / "specs" / "tiny_augmented_logits.yaml")
    trained = CliRunner().invoke(cli, ["train", "-c", spec, "-d", str(small_dataset), "--runs-dir", str(tmp_path),
                                       "--set", "data.tta=flip_shift", "--json"])
    assert trained.exit_code == 0, trained.output
    run_id = json.loads(trained.stdout)[0]["run"]
    recorded = json.loads(trained.stdout)[0]["test_accuracy"]
    result = run_export(tmp_path, run_id, "-f", "tflite", "-f", "onnx", "-f", "savedmodel", "--out",
                        str(tmp_path / "out"), "--json")
    assert result.exit_code == 0, result.output
    assert all(e["passed"] and e["agreement"] >= 0.999 for e in json.loads(result.stdout)["exports"])

    test = data.load(str(small_dataset), splits=("test",))
    images = test.x_test[..., None].astype(np.float32)
    onnx = onnxruntime.InferenceSession(str(tmp_path / "out" / "model.onnx"), providers=["CPUExecutionProvider"])
    for outputs in (tflite_outputs(tmp_path / "out" / "model.tflite", images),
                    onnx.run(None, {onnx.get_inputs()[0].name: images})[0]):
        assert outputs.min() >= 0 and np.allclose(outputs.sum(axis=1), 1, atol=1e-5)  # probabilities, not logits

    # One rule of test-time augmentation everywhere, for a model trained on logits too: each view's
    # probabilities, averaged. The exported file, run by its runtime, reproduces the recorded accuracy.
    from mnistcls import evaluate

    runner, _ = export.open_artefact(tmp_path / "out" / "model.onnx")
    by_file = evaluate.with_tta(runner.predict, test.x_test, "flip_shift").argmax(axis=1)
    assert np.mean(by_file == test.y_test) == pytest.approx(recorded, abs=1e-9)
    evaluated = CliRunner().invoke(cli, ["evaluate", "--run", run_id, "-d", str(small_dataset), "--runs-dir",
                                         str(tmp_path), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)[0]["test_accuracy"] == pytest.approx(recorded, abs=1e-9)


def test_a_hand_edited_model_card_is_one_line_not_a_traceback(exported, tmp_path):
    out = exported[0]
    copy = tmp_path / "model.tflite"
    shutil.copy(out / "model.tflite", copy)
    card = json.loads((out / "model.tflite.card.json").read_text())
    (tmp_path / "model.tflite.card.json").write_text(json.dumps({**card, "photo_preparation": ["mnist"],
                                                                 "test_time_augmentation": "rotate"}))
    picture = tmp_path / "item.png"
    Image.fromarray(np.full((28, 28), 255, np.uint8)).save(picture)
    result = CliRunner().invoke(cli, ["predict", "--model", str(copy), str(picture)])
    assert result.exit_code == 2 and "test-time augmentation 'rotate'" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
