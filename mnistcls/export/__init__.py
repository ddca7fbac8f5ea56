"""A run's model in the formats people deploy, each artefact proven by the runtime that will run it.

    savedmodel/                 TensorFlow SavedModel (TF Serving, TF.js converter, C++): tf.saved_model.load
    model.tflite                TFLite / LiteRT, float32 (phones, Raspberry Pi): the LiteRT interpreter
    model-float16.tflite        the same with float16 weights (half the size)
    model-int8.tflite           full integer quantisation (microcontrollers, Edge TPU), uint8 in and out
    model.onnx                  ONNX (onnxruntime in C++, C#, Java, the browser): onnxruntime
    <artefact>.card.json        beside each: classes, input, photo preparation, training, accuracy, versions

Every artefact takes raw pixel values (0-255, bright content on black) of shape
(N, 28, 28, 1): the rescaling the model was trained with is its first layer, so it
travels inside each export. Every artefact computes in float32 (int8 apart) and
outputs class probabilities, whatever precision and loss the model was trained
with; the Keras model they are compared with is that float32 model.

Each artefact is written under a temporary name, loaded back with its own runtime,
run on the whole test split and compared with the Keras model; only when that check
passes is it renamed into place and its card written. Converters: Keras 3's own
`model.export` for the SavedModel and for ONNX (it drives tf2onnx with the patches
that TensorFlow 2.21 needs), TensorFlow's `TFLiteConverter` for TFLite, and the
`ai-edge-litert` interpreter to run it (`tf.lite.Interpreter` is deprecated).

formats.py holds each format's writer and runtime; this module is the export
command around them (plan, write, check, card) and `open_artefact` for predict.
"""

import importlib
import importlib.metadata
import os
import shutil
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mnistcls import data, evaluate, runs, runtime
from mnistcls.errors import MnistclsError, UsageError
from mnistcls.export.formats import FORMATS, INPUT_NAME, SUFFIXES, Runner
from mnistcls.files import read_json, write_json
from mnistcls.pipeline import EVAL_BATCH_SIZE
from mnistcls.spec import STYLES, TEST_TIME_AUGMENTATIONS

EXTRA = "pip install 'mnistcls[export]'"
QUANTIZATIONS = ("none", "float16", "int8")  # TFLite only; the other formats are float32
CALIBRATION_IMAGES = 500  # training images the int8 converter measures activation ranges on
CALIBRATION_SEED = 0
MIN_FLOAT_AGREEMENT = 0.999  # share of test images whose top-1 class a float artefact must share with Keras
MAX_INT8_ACCURACY_DROP = 0.01  # how far below the Keras test accuracy an int8 artefact may score
CARD_SUFFIX = ".card.json"


@dataclass
class Checked:
    """One artefact and how it did on the test split against the Keras model."""

    format: str
    quantization: str
    path: str
    card: str | None  # None when the check failed (nothing was left in place)
    runtime: str
    bytes: int | None  # None (and so the figures below) when conversion or loading failed
    test_accuracy: float | None
    agreement: float | None  # share of test images with the same top-1 class as the Keras model
    images_per_second: float | None
    passed: bool
    problem: str | None = None

    def to_dict(self):
        return asdict(self)


# --- the export command ----------------------------------------------------------------

def export_run(reference, formats, *, quantizations=(), out=None, runs_directory=None, data_dir=None,
               offline=None, verbose=False):
    """Export run `reference`'s model in each of `formats`; check every artefact before it is put in place.

    Args:
        formats: names from FORMATS.
        quantizations: for TFLite, one artefact per entry of QUANTIZATIONS (none: float32 only); the
            other formats are float32.
        out: the folder the artefacts go into (default: the run folder's `export/`).
        verbose: let the converters and runtimes print their own log lines.

    Returns:
        {"run", "dataset", "keras": {"test_accuracy", "images_per_second"}, "exports": [Checked.to_dict()]};
        a failed check has passed=False and its artefact is gone.

    Raises:
        UsageError: an unknown run, format or quantisation, a missing extra, or an output path
            that exists and was not written by `mnistcls export`; nothing is written then.
    """
    planned = _plan(formats, quantizations)
    _require(planned)
    run = runs.find(reference, runs_directory)
    model_path = run.path / "model.keras"
    if not model_path.is_file():
        raise UsageError(f"run {run.id} ({run.status}) has no model.keras to export")
    out = Path(out) if out else run.path / "export"
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder; --out names the folder the artefacts go into")
    targets = [(fmt, q, out / fmt.artefact(q)) for fmt, q in planned]
    for _, _, path in targets:
        _check_ours(path)

    int8 = any(q == "int8" for _, q in planned)
    dataset = data.load(run.info.get("dataset"), data_dir=data_dir, offline=offline,
                        splits=("train", "test") if int8 else ("test",))
    model = _deployable(evaluate.load_model(model_path))
    try:
        evaluate.check_fits(model, dataset.image_shape, dataset.num_classes, dataset.name)
    except UsageError as err:
        raise UsageError(f"run {run.id}: {err}") from None
    # One batch at a time (Runner batches): predict_on_batch, as no tf.data iterator is worth building for it.
    keras_runner = Runner({"keras": lambda batch: model.predict_on_batch(batch.astype(np.float32))}, {}, {})
    keras_probabilities, keras_speed = _timed(keras_runner, dataset.x_test)
    keras_top1 = keras_probabilities.argmax(axis=1)
    keras_accuracy = float(np.mean(keras_top1 == dataset.y_test))
    calibration = _calibration_images(dataset) if int8 else None

    out.mkdir(parents=True, exist_ok=True)
    exports = []
    for fmt, quantization, path in targets:
        with _staged(path) as staged:
            with nullcontext() if verbose else runtime.stderr_to_devnull():
                checked, runner = _write_and_check(fmt, quantization, model, calibration, staged, path, dataset,
                                                   keras_top1, keras_accuracy)
            if checked.passed:
                _put_in_place(staged, path)
                checked.card = str(_write_card(path, fmt, quantization, run, dataset, runner, checked,
                                               keras_accuracy))
        exports.append(checked)
    return {"run": run.id, "dataset": dataset.name, "out": str(out),
            "keras": {"test_accuracy": keras_accuracy, "images_per_second": keras_speed, "images": len(keras_top1)},
            "exports": [c.to_dict() for c in exports]}


def _plan(formats, quantizations):
    """(Format, quantization) of each artefact asked for, or a UsageError for an impossible request."""
    unknown = [name for name in [*formats] if name not in FORMATS]
    if unknown or not formats:
        raise UsageError(f"unknown export format {', '.join(map(repr, unknown))}; choose from {', '.join(FORMATS)}"
                         if unknown else f"no export format given; choose from {', '.join(FORMATS)}")
    bad = [q for q in quantizations if q not in QUANTIZATIONS]
    if bad:
        raise UsageError(f"unknown quantisation {', '.join(map(repr, bad))}; choose from {', '.join(QUANTIZATIONS)}")
    quantizations = list(dict.fromkeys(quantizations or ("none",)))
    if quantizations != ["none"] and "tflite" not in formats:
        raise UsageError("--quantize applies to TFLite only; add --format tflite")
    return [(FORMATS[name], q) for name in dict.fromkeys(formats)
            for q in (quantizations if name == "tflite" else ["none"])]


def _require(planned):
    """A UsageError naming the extra to install when a converter or runtime is missing."""
    missing = []
    for fmt, _ in planned:
        for module, distribution in fmt.packages:
            try:
                importlib.import_module(module)
            except ImportError:
                missing.append(f"{distribution} (for {fmt.name})")
    if missing:
        raise UsageError(f"export needs {', '.join(dict.fromkeys(missing))}, which is not installed: {EXTRA}")


def _check_ours(path):
    """Raise UsageError if `path` or its card exists and is not an earlier `mnistcls export`'s artefact."""
    card = _card_path(path)
    if not (path.exists() or card.exists()):
        return
    recorded = read_json(card)
    if not (isinstance(recorded, dict) and recorded.get("exported_by") == "mnistcls"
            and recorded.get("file") == path.name):
        taken = path if path.exists() else card
        raise UsageError(f"{taken}: exists and was not written by mnistcls export; "
                         "choose another --out folder or move it away")


def _card_path(path):
    return path.with_name(path.name + CARD_SUFFIX)


def _deployable(model):
    """The trained model as it is deployed: float32 throughout, no training-only layers, probabilities out.

    A model trained in mixed precision (bfloat16 or float16 compute) is rebuilt with
    float32 compute around the same (float32) weights: the TFLite converter has no
    bfloat16 kernels, and every runtime computes float32 best. Random layers that
    pass their input through at inference (augmentation, dropout, noise) are left
    out: their unused random ops would still be traced, and TFLite has no kernels for
    them (each passes its input on in the copy's graph). A model trained on logits
    gets a softmax on top.
    """
    import keras

    config = model.get_config()
    for layer in config["layers"]:
        if isinstance(layer["config"].get("dtype"), dict):  # a DTypePolicy, e.g. mixed_bfloat16
            layer["config"]["dtype"] = "float32"
    float32 = keras.Model.from_config(config)
    float32.set_weights(model.get_weights())

    def call(layer, *args, **kwargs):
        return args[0] if _passes_through_at_inference(layer) else layer(*args, **kwargs)

    inputs = keras.Input(shape=float32.input_shape[1:], dtype="float32", name=INPUT_NAME)
    deployed = keras.models.clone_model(float32, input_tensors=inputs, clone_function=lambda layer: layer,
                                        call_function=call)
    x = deployed.output
    if model.loss.get_config().get("from_logits"):
        x = keras.layers.Softmax(name="probabilities")(x)
    return keras.Model(inputs, x, name=model.name)


def _passes_through_at_inference(layer):
    """Whether `layer` is random in training and returns its input unchanged otherwise (tried, not assumed:
    RandomCrop, say, crops at inference too)."""
    import keras

    random = any(isinstance(value, keras.random.SeedGenerator) for value in vars(layer).values())
    if not random or layer.input.shape != layer.output.shape:
        return False
    sample = np.random.default_rng(0).uniform(0, 1, (2, *layer.input.shape[1:])).astype(np.float32)
    return np.array_equal(np.asarray(layer(sample, training=False)), sample)


def _calibration_images(dataset):
    rng = np.random.default_rng(CALIBRATION_SEED)
    count = min(CALIBRATION_IMAGES, len(dataset.x_train))
    return dataset.x_train[np.sort(rng.choice(len(dataset.x_train), count, replace=False))]


def _timed(runner, pixels, entry_point=None):
    """(probabilities, images per second) of `runner` on `pixels`, after one warm-up batch."""
    runner.predict(pixels[:EVAL_BATCH_SIZE], entry_point)
    start = time.perf_counter()
    probabilities = runner.predict(pixels, entry_point)
    return probabilities, len(pixels) / max(time.perf_counter() - start, 1e-9)


def _write_and_check(fmt, quantization, model, calibration, staged, path, dataset, keras_top1, keras_accuracy):
    """Convert to `staged` and check it; (Checked, Runner or None). A converter or runtime that fails
    (each with its own errors: ConverterError, ValueError, RuntimeError...) is a failed check."""
    try:
        fmt.write(model, staged, quantization, calibration)
    except Exception as err:  # noqa: BLE001
        return _failed(fmt, quantization, path, f"the converter failed ({_first_line(err)}); "
                                                "--verbose shows its log"), None
    try:
        return _check(fmt, quantization, staged, path, dataset, keras_top1, keras_accuracy)
    except Exception as err:  # noqa: BLE001
        return _failed(fmt, quantization, path, f"{fmt.runtime} cannot run it ({_first_line(err)})"), None


def _failed(fmt, quantization, path, problem):
    return Checked(fmt.name, quantization, str(path), None, fmt.runtime, None, None, None, None, False, problem)


def _check(fmt, quantization, staged, path, dataset, keras_top1, keras_accuracy):
    """Run the staged artefact with its own runtime on the whole test split; (Checked, Runner)."""
    runner = fmt.open(staged)
    results = []
    for entry_point in runner.entry_points:  # a SavedModel's float and uint8 signatures are both checked
        probabilities, speed = _timed(runner, dataset.x_test, entry_point)
        top1 = probabilities.argmax(axis=1)
        results.append((float(np.mean(top1 == keras_top1)), float(np.mean(top1 == dataset.y_test)), speed,
                        entry_point))
    agreement, accuracy, speed, entry_point = min(results)
    if quantization == "int8":
        problem = (f"test accuracy {accuracy:.2%} is more than {MAX_INT8_ACCURACY_DROP:.0%} below the Keras "
                   f"model's {keras_accuracy:.2%}") if accuracy < keras_accuracy - MAX_INT8_ACCURACY_DROP else None
    else:
        problem = (f"agrees with the Keras model on only {agreement:.2%} of test images "
                   f"(at least {MIN_FLOAT_AGREEMENT:.1%} needed)") if agreement < MIN_FLOAT_AGREEMENT else None
    if problem and len(results) > 1:
        problem = f"{entry_point}: {problem}"
    return Checked(fmt.name, quantization, str(path), None, fmt.runtime, _size(staged), accuracy, agreement, speed,
                   problem is None, problem), runner


def _size(path):
    path = Path(path)
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


@contextmanager
def _staged(path):
    """A temporary name beside `path` (same suffix: converters look at it); removed unless put in place."""
    staged = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    _remove(staged)
    try:
        yield staged
    finally:
        _remove(staged)


def _put_in_place(staged, path):
    """Replace an earlier export at `path` (checked to be ours) by the staged one; the old card goes first,
    so a half-replaced artefact never looks finished."""
    _card_path(path).unlink(missing_ok=True)
    if path.is_dir():
        shutil.rmtree(path)
    os.replace(staged, path)


def _remove(path):
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _write_card(path, fmt, quantization, run, dataset, runner, checked, keras_accuracy):
    info = run.info
    style, tta = runs.picture_style(run), runs.test_time_augmentation(run)
    card = {
        "exported_by": "mnistcls",
        "file": path.name,
        "format": fmt.name,
        "quantization": quantization,
        "runtime": fmt.runtime,
        "run": run.id,
        "run_status": run.status,  # an unfinished run exports the model of its last completed epoch
        "config": info.get("config"),
        "classes": [{"label": label, "name": name} for label, name in enumerate(dataset.class_names)],
        "input": runner.input if len(runner.input) > 1 else next(iter(runner.input.values())),
        "input_values": "raw pixel values 0-255 (grey, bright content on black), shape (N, H, W, 1); "
                        "the model rescales them itself",
        "output": {**runner.output, "meaning": "probability of each class, in label order"},
        # How a photo must be prepared before any artefact sees it: as `mnistcls predict` does.
        "photo_preparation": {"style": style, "how": STYLES[style], "reference": "mnistcls.images.load_picture"},
        # The run's test figure recorded at training averages the predictions of these views of a
        # picture, and predict --model does too; this file's and the Keras model's are of single views.
        "test_time_augmentation": tta,
        "test_time_augmentation_views": TEST_TIME_AUGMENTATIONS[tta].description,
        "training": {"spec": run.spec_data, "dataset": info.get("dataset"), "data": info.get("data"),
                     "precision": info.get("precision"), "trained_versions": info.get("versions")},
        "test_accuracy": {"this_file": checked.test_accuracy, "keras_model": keras_accuracy,
                          "agreement_with_keras": checked.agreement, "test_images": len(dataset.y_test),
                          "recorded_at_training": run.metrics.get("test_accuracy")},
        "versions": {**runtime.versions(), **{dist: importlib.metadata.version(dist) for _, dist in fmt.packages}},
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    card_path = _card_path(path)
    write_json(card_path, card)
    return card_path


# --- running an exported artefact (predict --model) ------------------------------------

def open_artefact(path):
    """(Runner, card or {}) of an exported artefact: a SavedModel folder, a .tflite or an .onnx file.

    Raises:
        UsageError: not such an artefact, or the extra its runtime needs is missing.
    """
    path = Path(path)
    name = "savedmodel" if path.is_dir() else SUFFIXES.get(path.suffix.lower())
    if not path.exists() or name is None:
        raise UsageError(f"{path}: not an exported model; give a SavedModel folder, a .tflite or an .onnx file "
                         "(written by mnistcls export)")
    fmt = FORMATS[name]
    _require([(fmt, "none")])
    try:
        runner = fmt.open(path)
    except Exception as err:  # each runtime has its own errors for a file it cannot read
        raise MnistclsError(f"{path}: {fmt.runtime} cannot load it ({_first_line(err)})") from None
    card = read_json(_card_path(path), {})
    return runner, card if isinstance(card, dict) else {}


def _first_line(err):
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else 'no details'}"
