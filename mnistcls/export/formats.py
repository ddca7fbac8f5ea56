"""The export formats: how each is written, and how its own runtime loads and runs it.

Adding a format is one `Format` in `FORMATS`: a writer (Keras model -> file) and an
opener (file -> `Runner`, which takes raw pixels and returns class probabilities).
"""

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnistcls import runtime
from mnistcls.pipeline import EVAL_BATCH_SIZE

INPUT_NAME = "image"


@dataclass(frozen=True)
class Format:
    """One export format: how to write it, how its own runtime runs it, and what it needs installed."""

    name: str
    file: str  # the artefact's name in the output folder (float32)
    runtime: str  # in words, for the table and the card
    packages: tuple  # (import name, distribution name) of what this format needs beyond mnistcls
    write: object  # (keras model, path, quantization, calibration images) -> None
    open: object  # path -> Runner

    def artefact(self, quantization):
        """The file name: model.tflite, or model-int8.tflite for a quantised one."""
        stem, dot, suffix = self.file.partition(".")
        return self.file if quantization == "none" else f"{stem}-{quantization}{dot}{suffix}"


@dataclass
class Runner:
    """A loaded artefact: `predict(pixels)` takes raw uint8 pixels (N, H, W) and returns probabilities (N, C)."""

    entry_points: dict  # name -> function(float32 or uint8 batch (n, H, W, 1)) -> (n, C)
    input: dict  # per entry point: shape, dtype, and quantization where there is one
    output: dict

    def predict(self, pixels, entry_point=None):
        run = self.entry_points[entry_point or next(iter(self.entry_points))]
        batches = [run(pixels[i:i + EVAL_BATCH_SIZE, ..., None]) for i in range(0, len(pixels), EVAL_BATCH_SIZE)]
        return np.concatenate(batches).astype(np.float32)


# --- writing ---------------------------------------------------------------------------

def _write_savedmodel(model, path, quantization, calibration):
    """A SavedModel with two signatures: `serving_default` (float32 pixels) and `serve_uint8` (raw uint8)."""
    import keras
    import tensorflow as tf

    shape = (None, *model.input_shape[1:])
    archive = keras.export.ExportArchive()
    archive.track(model)
    # training=False spelt out: Keras' image augmentation layers default to training=True.
    archive.add_endpoint("serve", lambda image: model(image, training=False),
                         input_signature=[tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)])
    archive.add_endpoint("serve_uint8", lambda image: model(tf.cast(image, tf.float32), training=False),
                         input_signature=[tf.TensorSpec(shape, tf.uint8, name=INPUT_NAME)])
    archive.write_out(str(path), verbose=False)


def _write_tflite(model, path, quantization, calibration):
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as saved:  # the converter reads a SavedModel, not a Keras 3 model
        model.export(saved, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        if quantization != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif quantization == "int8":
            # Integer kernels only; uint8 in, so a camera's raw pixels go straight in (scale 1, zero point 0).
            converter.representative_dataset = lambda: ([image[None, ..., None].astype(np.float32)]
                                                        for image in calibration)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.uint8
        Path(path).write_bytes(converter.convert())


def _write_onnx(model, path, quantization, calibration):
    with warnings.catch_warnings():  # Keras 3.15's tf2onnx glue probes `np.object` (gone in numpy 2)
        warnings.simplefilter("ignore", FutureWarning)
        model.export(str(path), format="onnx", verbose=False)


# --- running, each artefact with its own runtime ---------------------------------------

def _open_savedmodel(path):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    # Ours has both; a plain Keras model.export() of an mnistcls model has serving_default alone.
    signatures = {name: loaded.signatures[name] for name in ("serving_default", "serve_uint8")
                  if name in loaded.signatures}

    def entry(signature):
        dtype = signature.structured_input_signature[1][INPUT_NAME].dtype.as_numpy_dtype
        return lambda batch: next(iter(signature(**{INPUT_NAME: tf.constant(batch.astype(dtype))}).values())).numpy()

    describe = {name: _tensor(s.structured_input_signature[1][INPUT_NAME]) for name, s in signatures.items()}
    output = _tensor(next(iter(signatures["serving_default"].structured_outputs.values())))
    return Runner({name: entry(s) for name, s in signatures.items()}, describe, output)


def _open_tflite(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    with runtime.stderr_to_devnull():  # LiteRT announces its CPU delegate on stderr whatever the log level
        interpreter.allocate_tensors()
    (given,), (returned,) = interpreter.get_input_details(), interpreter.get_output_details()
    allocated = [None]

    def run(batch):
        if allocated[0] != batch.shape:  # the batch size is dynamic: resize once per size
            interpreter.resize_tensor_input(given["index"], batch.shape)
            interpreter.allocate_tensors()
            allocated[0] = batch.shape
        interpreter.set_tensor(given["index"], _quantize(batch, given))
        interpreter.invoke()
        return _dequantize(interpreter.get_tensor(returned["index"]), returned)

    return Runner({"tflite": run}, {"tflite": _details(given)}, _details(returned))


def _open_onnx(path):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (given,), (returned,) = session.get_inputs(), session.get_outputs()

    def describe(node):  # ONNX names float32 "tensor(float)"; a symbolic batch size is a string
        return {"name": node.name, "shape": [d if isinstance(d, int) else None for d in node.shape],
                "dtype": {"tensor(float)": "float32"}.get(node.type, node.type)}

    return Runner({"onnx": lambda batch: session.run(None, {given.name: batch.astype(np.float32)})[0]},
                  {"onnx": describe(given)}, describe(returned))


def _tensor(spec):
    return {"name": spec.name, "shape": list(spec.shape.as_list()), "dtype": spec.dtype.name}


def _details(detail):
    """A LiteRT tensor's shape, dtype and (for integer tensors) real = scale * (q - zero_point)."""
    scale, zero_point = detail["quantization"]
    described = {"name": detail["name"], "shape": [None if d < 0 else int(d) for d in detail["shape_signature"]],
                 "dtype": np.dtype(detail["dtype"]).name}
    if scale:
        described["quantization"] = {"scale": float(scale), "zero_point": int(zero_point)}
    return described


def _quantize(batch, detail):
    scale, zero_point = detail["quantization"]
    if not scale:
        return batch.astype(detail["dtype"])
    limits = np.iinfo(detail["dtype"])
    return np.clip(np.round(batch / scale + zero_point), limits.min, limits.max).astype(detail["dtype"])


def _dequantize(values, detail):
    scale, zero_point = detail["quantization"]
    return (values.astype(np.float32) - zero_point) * scale if scale else values


FORMATS = {f.name: f for f in (
    Format("savedmodel", "savedmodel", "TensorFlow (tf.saved_model.load)", (),  # TensorFlow: mnistcls' own
           _write_savedmodel, _open_savedmodel),
    Format("tflite", "model.tflite", "LiteRT interpreter (ai-edge-litert)", (("ai_edge_litert", "ai-edge-litert"),),
           _write_tflite, _open_tflite),
    Format("onnx", "model.onnx", "onnxruntime (CPU)",
           (("tf2onnx", "tf2onnx"), ("onnx", "onnx"), ("onnxruntime", "onnxruntime")), _write_onnx, _open_onnx),
)}
SUFFIXES = {Path(f.file).suffix: f.name for f in FORMATS.values() if Path(f.file).suffix}  # a SavedModel: a folder
