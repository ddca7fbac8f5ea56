"""Spec -> Keras model, with the shape checks only a real layout can make.

The model takes raw pixel values (0-255) of shape (H, W, 1): the spec's
preprocessing is a weightless Rescaling layer in front (x/255, or standardization
with the training set's mean and std), so a saved model classifies raw images with
nothing to repeat. The input is float32 rather than uint8 because distribution
strategies all-reduce a sample batch when training starts, which uint8 cannot do.
"""

import math
import re
from dataclasses import dataclass
from functools import cache

from mnistcls import layers
from mnistcls.errors import SpecError

MNIST_SHAPE = (28, 28, 1)


@dataclass
class LayerRow:
    name: str
    kind: str  # the Keras class name
    output_shape: tuple
    params: int
    macs: int | None  # multiply-accumulates per image; None where mnistcls cannot count them


@dataclass
class ModelSummary:
    """What `mnistcls summary` shows of a model: Keras' table plus MACs."""

    name: str
    description: str
    rows: list
    total: int
    trainable: int
    non_trainable: int

    @property
    def macs(self):
        """Multiply-accumulates per image; None when a layer's are unknown (a partial sum would be wrong)."""
        macs = [r.macs for r in self.rows]
        return None if None in macs else sum(macs)

    def to_dict(self):
        return {
            "name": self.name, "description": self.description,
            "layers": [{"name": r.name, "type": r.kind, "output_shape": list(r.output_shape),
                        "params": r.params, "macs": r.macs} for r in self.rows],
            "total_params": self.total, "trainable_params": self.trainable,
            "non_trainable_params": self.non_trainable, "macs_per_image": self.macs,
            "flops_per_image": None if self.macs is None else 2 * self.macs,
        }


def build_model(spec, input_shape=MNIST_SHAPE, num_classes=10, pixel_stats=(0.0, 1.0), dtype="float32"):
    """Lay out the spec's layers as a Keras functional model.

    Args:
        spec: a validated `Spec`.
        input_shape: (H, W, channels) of the dataset's images.
        num_classes: the dataset's number of classes; the output must have this size.
        pixel_stats: (mean, std) of the training set's x/255, used by `standardize`.
        dtype: Keras dtype policy for the layers (e.g. "mixed_bfloat16"); the last
            layer always computes in float32 so the loss stays accurate.

    Raises:
        SpecError: naming each layer whose shape cannot work.
    """
    import keras

    inputs = keras.Input(shape=input_shape, dtype="float32", name="image")
    x = _preprocessing(spec.data.preprocess, pixel_stats, dtype)(inputs)
    problems = []
    for position, layer_spec in enumerate(spec.model):
        path = f"model.{layer_spec.index}"
        last = position == len(spec.model) - 1
        _, layer_type = layers.resolve(layer_spec.type)
        if layer_type.flat_input and len(x.shape) > 2:
            problems.append(spec.problem(path, f"'{layer_spec.type}' needs flat input but gets shape "
                                         f"{format_shape(x.shape)}: add `- flatten` or a global pooling "
                                         "layer before it"))
            break
        args = {"dtype": "float32" if last else dtype, **layer_spec.args}
        try:
            layer = layers.make_layer(layer_spec.type, args)
            window = _window_too_large(layer, x.shape)
            if window:
                arg = "kernel_size" if "kernel_size" in layer_spec.args else "pool_size"
                problems.append(spec.problem(f"{path}.{arg}", f"'{layer_spec.type}' {window}"))
                break
            x = layer(x)
        except (ValueError, TypeError) as err:
            # What Keras raises when a layer's arguments or input cannot work: a spec problem. Anything
            # else is a bug (in mnistcls or Keras) and keeps its traceback.
            problems.append(spec.problem(path, f"'{layer_spec.type}' cannot work here: {_keras_message(err)}"))
            break
        if any(d is not None and d < 1 for d in x.shape[1:]):
            problems.append(spec.problem(path, f"'{layer_spec.type}' shrinks the image to nothing: "
                                         f"output shape {format_shape(x.shape)}"))
            break
    else:
        if tuple(x.shape[1:]) != (num_classes,):
            problems.append(spec.problem(f"model.{spec.model[-1].index}",
                                         f"the model outputs shape {format_shape(x.shape)}, but the dataset has "
                                         f"{num_classes} classes: end with a layer of {num_classes} units"))
    if problems:
        raise SpecError(problems)
    return keras.Model(inputs, x, name=spec.name)


def summarize(model, name, description=""):
    """Keras' summary figures for `model`, plus multiply-accumulates per image."""
    rows = []
    for layer in model.layers[1:]:  # layers[0] is the Input
        rows.append(LayerRow(layer.name, type(layer).__name__, tuple(layer.output.shape),
                             layer.count_params(), _macs(layer)))
    total = model.count_params()
    trainable = sum(_size(weight) for weight in model.trainable_weights)  # Keras counts it so, privately
    return ModelSummary(name, description, rows, total, trainable, total - trainable)


def _preprocessing(kind, pixel_stats, dtype):
    import keras

    mean, std = pixel_stats if kind == "standardize" else (0.0, 1.0)
    # (x/255 - mean) / std == x * scale + offset, so one weightless Rescaling does both.
    return keras.layers.Rescaling(scale=1 / (255.0 * std), offset=-mean / std, name=kind, dtype=dtype)


def _window_too_large(layer, input_shape):
    """Why a kernel or pooling window is larger than the image it slides over, or None.

    Keras accepts this with padding='same' (it pads the image out), but it is
    always a mistake in a spec: the window sees mostly padding.
    """
    window = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
    spatial = tuple(input_shape[1:-1])
    if not window or len(spatial) != len(window):
        return None
    if any(w > s for w, s in zip(window, spatial)):
        return (f"window {'x'.join(map(str, window))} is larger than its input "
                f"{'x'.join(map(str, spatial))}: use a smaller kernel_size/pool_size or pool less before it")
    return None


def _macs(layer):
    """Multiply-accumulates per image of one layer, or None where mnistcls cannot count them."""
    counter = _mac_counters().get(type(layer).__name__)
    return counter(layer) if counter else None


def _positions(shape):
    """How many places a kernel is applied at in a (batch, ..., channels) tensor: every axis but the two ends."""
    return math.prod(d for d in shape[1:-1])


def _size(weight):
    return math.prod(weight.shape)


def _kernel_at_each_output(layer):
    # Dense (on the last axis), convolutions and depthwise convolutions: each kernel weight is used once
    # per output position (a depthwise kernel is (k, k, channels, multiplier), one filter per channel).
    return _size(layer.kernel) * _positions(layer.output.shape)


def _kernel_at_each_input(layer):
    # A transposed convolution spreads each input position over a kernel-sized window of the output.
    return _size(layer.kernel) * _positions(layer.input.shape)


def _separable(layer):
    # A depthwise pass, then a 1x1 pointwise one, both at every output position.
    return (_size(layer.depthwise_kernel) + _size(layer.pointwise_kernel)) * _positions(layer.output.shape)


# Layers counted as 0 on purpose: they hold no kernel and do a comparison, copy or a few element-wise
# operations per value (pooling, activations, reshaping, normalization that folds into the layer before
# it at inference) or run only in training (dropout, noise, augmentation): next to nothing beside a
# Dense or convolution layer.
_NEGLIGIBLE = (
    "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "Softmax", "Flatten", "Reshape", "Permute", "RepeatVector",
    "Identity", "ActivityRegularization", "Rescaling", "BatchNormalization", "LayerNormalization",
    "GroupNormalization", "UnitNormalization", "RMSNormalization", "Normalization", "Dropout", "AlphaDropout",
    "GaussianDropout", "GaussianNoise", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
    *(f"{kind}Pooling{d}D" for kind in ("Max", "Average", "GlobalMax", "GlobalAverage", "AdaptiveMax",
                                        "AdaptiveAverage") for d in (1, 2, 3)),
    *(f"{kind}{d}D" for kind in ("ZeroPadding", "Cropping", "UpSampling") for d in (1, 2, 3)),
)


@cache
def _mac_counters():
    """Keras class name -> the function that counts its multiply-accumulates per image.

    Every class not named here is unknown: `summary` shows "n/a", never a guess.
    """
    import keras

    counters = {name: lambda layer: 0 for name in _NEGLIGIBLE}
    counters.update({name: lambda layer: 0 for name in dir(keras.layers) if name.startswith("Random")})
    counters.update({name: _kernel_at_each_output for name in (
        "Dense", "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv1D", "DepthwiseConv2D")})
    counters.update({name: _kernel_at_each_input for name in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")})
    counters.update({name: _separable for name in ("SeparableConv1D", "SeparableConv2D")})
    return counters


def format_shape(shape):
    """(None, 28, 28, 32) as Keras prints it."""
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def _keras_message(err):
    """The useful first sentence of a Keras error, without colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    lines = [ln.strip() for ln in text.splitlines()
             if ln.strip() and not ln.startswith(("Exception encountered", "Arguments received"))]
    return (lines[0] if lines else type(err).__name__)[:300]
