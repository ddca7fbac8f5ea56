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
from mnistcls.spec.model import last_entry

MNIST_SHAPE = (28, 28, 1)


@dataclass
class LayerRow:
    name: str
    kind: str  # the Keras class name
    output_shape: tuple
    params: int
    macs: int | None  # multiply-accumulates per image; None where mnistcls cannot count them
    path: str = ""  # the spec entry it was made for ("model.2.layers.0 #3": the third copy of a repeat)
    inputs: tuple = ()  # the names of the layers whose outputs it takes


@dataclass
class ModelSummary:
    """What `mnistcls summary` shows of a model: Keras' table plus MACs, and for a graph what feeds each layer."""

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

    @property
    def is_graph(self):
        """Whether some layer takes another input than the layer before it (a residual or parallel block)."""
        return any(list(row.inputs) != [before.name] for before, row in zip(self.rows, self.rows[1:]))

    def to_dict(self):
        return {
            "name": self.name, "description": self.description,
            "layers": [{"name": r.name, "type": r.kind, "path": r.path, "output_shape": list(r.output_shape),
                        "params": r.params, "macs": r.macs, "inputs": list(r.inputs)} for r in self.rows],
            "total_params": self.total, "trainable_params": self.trainable,
            "non_trainable_params": self.non_trainable, "macs_per_image": self.macs,
            "flops_per_image": None if self.macs is None else 2 * self.macs,
        }


def build_model(spec, input_shape=MNIST_SHAPE, num_classes=10, pixel_stats=(0.0, 1.0), dtype="float32",
                replicas=1):
    """Lay out the spec's entries as a Keras functional model.

    Args:
        spec: a validated `Spec`.
        input_shape: (H, W, channels) of the dataset's images.
        num_classes: the dataset's number of classes; the output must have this size.
        pixel_stats: (mean, std) of the training set's x/255, used by `standardize`.
        dtype: Keras dtype policy for the layers (e.g. "mixed_bfloat16"); the layer
            that makes the output (a block's merge, where the model ends in a block)
            always computes in float32 so the loss stays accurate.
        replicas: how many replicas train the model in lockstep (distribution strategies):
            above 1, batch normalization takes its statistics over the global batch, as
            one process would, unless the spec says `synchronized: false`.

    Raises:
        SpecError: naming the first entry whose shapes cannot work.
    """
    return lay_out(spec, input_shape, num_classes, pixel_stats, dtype, replicas)[0]


def lay_out(spec, input_shape=MNIST_SHAPE, num_classes=10, pixel_stats=(0.0, 1.0), dtype="float32", replicas=1):
    """(the model build_model makes, {layer name: the spec path it was made for}), for summaries."""
    import keras

    inputs = keras.Input(shape=input_shape, dtype="float32", name="image")
    x = _preprocessing(spec.data.preprocess, pixel_stats, dtype)(inputs)
    layout = Layout(spec, dtype, replicas)
    x = layout.entries(spec.model, x, final=True)
    if tuple(x.shape[1:]) != (num_classes,):
        raise SpecError([spec.problem(last_entry(spec.model), f"the model outputs shape {format_shape(x.shape)}, but "
                                                              f"the dataset has {num_classes} classes: end with a "
                                                              f"layer of {num_classes} units")])
    return keras.Model(inputs, x, name=spec.name), layout.paths


class Layout:
    """Lays out a spec's entries one after another; blocks lay out theirs through it (blocks.BlockType.lay_out).

    The first entry whose shapes cannot work stops the layout with a SpecError
    naming it: the shapes after it are unknown.
    """

    def __init__(self, spec, dtype, replicas=1):
        self.spec, self.policy = spec, dtype
        # Keras class -> arguments it gets unless the spec gives them
        self.defaults = {"BatchNormalization": {"synchronized": True}} if replicas > 1 else {}
        self.paths = {}  # Keras layer name -> the spec path (and copy) it was made for
        self.parameters = 0  # of the layers laid out so far
        self._copies = []  # (copy, of how many) of each repeat the layout is inside, outermost first

    def entries(self, entries, x, final, copy=None):
        """x after each of `entries`; `final`: the last of them makes the model's output."""
        if copy:
            self._copies.append(copy)
        try:
            for position, entry in enumerate(entries):
                x = self.entry(entry, x, final and position == len(entries) - 1)
        finally:
            if copy:
                self._copies.pop()
        return x

    def entry(self, entry, x, final):
        if entry.block:
            return entry.block.lay_out(self, entry, x, final)
        return self._layer(entry, x, final)

    def _layer(self, entry, x, final):
        cls, layer_type = layers.resolve(entry.type)
        if layer_type.flat_input and len(x.shape) > 2:
            raise self.problem(entry.path, f"'{entry.type}' needs flat input but gets shape {format_shape(x.shape)}: "
                                           "add `- flatten` or a global pooling layer before it")
        try:
            layer = layers.make_layer(entry.type, {"dtype": self.dtype(final), **self.defaults.get(cls.__name__, {}),
                                                   **entry.args})
            window = _window_too_large(layer, x.shape)
            if window:
                arg = "kernel_size" if "kernel_size" in entry.args else "pool_size"
                raise self.problem(f"{entry.path}.{arg}", f"'{entry.type}' {window}")
            x = self.apply(layer, x, entry.path)
        except (ValueError, TypeError) as err:
            # What Keras raises when a layer's arguments or input cannot work: a spec problem. Anything
            # else is a bug (in mnistcls or Keras) and keeps its traceback.
            raise self.problem(entry.path, f"'{entry.type}' cannot work here: {_keras_message(err)}") from None
        if any(d is not None and d < 1 for d in x.shape[1:]):
            raise self.problem(entry.path, f"'{entry.type}' shrinks the image to nothing: "
                                           f"output shape {format_shape(x.shape)}")
        return x

    def batch_normalization(self):
        """The batch normalization a block adds of its own (a projection's)."""
        import keras

        return keras.layers.BatchNormalization(dtype=self.dtype(False), **self.defaults.get("BatchNormalization", {}))

    def apply(self, layer, inputs, path):
        """Call `layer` on `inputs`, recording which spec entry (and copy of a repeat) it belongs to.

        Keras allocates a layer's weights when it is first called: the weights are
        counted from the shapes first, and a model whose weights alone would not fit
        in this machine's memory is a spec problem before anything is allocated.
        """
        counted = _weights_from_shapes(layer, inputs.shape if hasattr(inputs, "shape") else inputs[0].shape)
        if counted is not None:
            self._check_memory(self.parameters + counted, path)
        outputs = layer(inputs)
        self.parameters += layer.count_params() if counted is None else counted
        self.paths[layer.name] = path + (" #" + ".".join(str(copy) for copy, _ in self._copies) if self._copies else "")
        return outputs

    def _check_memory(self, parameters, path):
        needed, there = parameters * WEIGHT_BYTES, machine_memory()
        if needed > there:
            raise self.problem(path, f"the model's weights would need {_bytes(needed)} ({parameters:,} parameters "
                                     f"by here, {WEIGHT_BYTES} bytes each) before training even starts, and this "
                                     f"machine has {_bytes(there)} of memory: use fewer units or filters")

    def dtype(self, final):
        """The dtype policy of a layer: the spec's, but float32 for the one that makes the model's output."""
        return "float32" if final else self.policy

    def problem(self, path, message):
        """A SpecError at `path`, saying which copy of a repeat it is in."""
        where = "".join(f" (in copy {copy} of {count})" for copy, count in self._copies if count > 1)
        return SpecError([self.spec.problem(path, message + where)])

    @staticmethod
    def shape(tensor):
        return format_shape(tensor.shape)


def summarize(model, name, description="", paths=None):
    """Keras' summary figures for `model`, plus multiply-accumulates per image and, with the `paths` of
    `lay_out`, the spec entry of each layer."""
    rows = []
    inputs = _inputs_by_layer(model.get_config())
    for layer in model.layers[1:]:  # layers[0] is the Input
        rows.append(LayerRow(layer.name, type(layer).__name__, tuple(layer.output.shape), layer.count_params(),
                             _macs(layer), (paths or {}).get(layer.name, ""), inputs.get(layer.name, ())))
    total = model.count_params()
    trainable = sum(_size(weight) for weight in model.trainable_weights)  # Keras counts it so, privately
    return ModelSummary(name, description, rows, total, trainable, total - trainable)


WEIGHT_BYTES = 4  # weights are float32, whatever precision the layers compute in


def machine_memory():
    """Bytes of memory this machine has."""
    import psutil

    return psutil.virtual_memory().total


def _bytes(count):
    return f"{count / 2**30:,.1f} GiB"


def _weights_from_shapes(layer, input_shape):
    """How many weights `layer` will make on input of `input_shape`, from its arguments, before it makes
    them; None for a kind of layer not counted here (it is counted once built)."""
    counter = _WEIGHT_COUNTERS.get(type(layer).__name__)
    channels = input_shape[-1]
    if counter is None or channels is None:
        return None
    return counter(layer, channels, getattr(layer, "use_bias", False))


def _dense_weights(layer, channels, bias):
    return channels * layer.units + bias * layer.units


def _conv_weights(layer, channels, bias):
    groups = getattr(layer, "groups", 1) or 1
    return math.prod(layer.kernel_size) * channels // groups * layer.filters + bias * layer.filters


def _depthwise_weights(layer, channels, bias):
    return (math.prod(layer.kernel_size) + bias) * channels * layer.depth_multiplier


def _separable_weights(layer, channels, bias):
    depthwise = math.prod(layer.kernel_size) * channels * layer.depth_multiplier
    return depthwise + channels * layer.depth_multiplier * layer.filters + bias * layer.filters


# Keras class name -> its weight count from (layer, input channels, whether it has a bias): the layers a
# spec can make huge. Every other layer is counted once built.
_WEIGHT_COUNTERS = {
    "Dense": _dense_weights,
    **{f"Conv{d}D{t}": _conv_weights for d in (1, 2, 3) for t in ("", "Transpose")},
    **{f"DepthwiseConv{d}D": _depthwise_weights for d in (1, 2)},
    **{f"SeparableConv{d}D": _separable_weights for d in (1, 2)},
    "BatchNormalization": lambda layer, channels, bias: 4 * channels,  # gamma, beta, moving mean and variance
}


def _inputs_by_layer(config):
    """{layer name: names of the layers it takes its inputs from}, read from a functional model's config,
    where each input is written as a tensor with its `keras_history` [layer name, node, tensor]."""
    def sources(value):
        if isinstance(value, dict):
            history = value.get("config", {}).get("keras_history") if value.get("class_name") == "__keras_tensor__" \
                else None
            return [history[0]] if history else [name for v in value.values() for name in sources(v)]
        if isinstance(value, (list, tuple)):
            return [name for v in value for name in sources(v)]
        return []

    return {layer["name"]: tuple(sources(layer.get("inbound_nodes", []))) for layer in config.get("layers", [])}


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


def _merged(layer):
    # One operation per output value for each input beyond the first (an average also divides once).
    extra = 1 if type(layer).__name__ == "Average" else 0
    return (len(layer.input) - 1 + extra) * math.prod(layer.output.shape[1:])


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
    counters.update({name: _merged for name in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")})
    counters["Concatenate"] = lambda layer: 0  # a copy
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
