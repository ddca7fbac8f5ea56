"""The layer vocabulary of a spec: one registry from spec names to Keras layers.

A spec's `model:` is a list of layers, each written as `- NAME: ARGS`:

    - conv2d: {filters: 32, kernel_size: 3, padding: same}
    - activation: relu          # a bare value sets the layer's primary argument
    - flatten                   # no arguments at all

NAME is one of the short names in `LAYERS` below, or any Keras layer class by its
Keras name (`RandomTranslation`, `SeparableConv2D`, ...). Adding a short name is one
entry in `LAYERS`. Arguments are checked against the Keras class' own signature, so
a spec can never pass something Keras would not accept by name.

Keras is imported only when a layer is checked or built, never on import.
"""

import inspect
from dataclasses import dataclass, field

from mnistcls import checks


@dataclass(frozen=True)
class LayerType:
    """What a short layer name stands for.

    Args:
        keras_class: the class' name in `keras.layers`.
        primary: the argument a bare value sets (`- dense: 128` sets `units`).
        flat_input: the layer expects (batch, features) input; a Flatten or global
            pooling layer must come before it on images.
        limits: checks (from mnistcls.checks) of arguments whose range Keras
            itself does not check, by argument name.
    """

    keras_class: str
    primary: str | None = None
    flat_input: bool = False
    limits: dict = field(default_factory=dict)


def _positive_integer(value):
    return checks.integer(value, 1)


LAYERS = {
    "conv2d": LayerType("Conv2D", "filters", limits={"filters": _positive_integer}),
    "maxpool": LayerType("MaxPooling2D", "pool_size"),
    "avgpool": LayerType("AveragePooling2D", "pool_size"),
    "globalmaxpool": LayerType("GlobalMaxPooling2D"),
    "globalavgpool": LayerType("GlobalAveragePooling2D"),
    "dense": LayerType("Dense", "units", flat_input=True, limits={"units": _positive_integer}),
    "batchnorm": LayerType("BatchNormalization"),
    "dropout": LayerType("Dropout", "rate", limits={"rate": lambda v: checks.number(v, 0.0, 1.0, high_open=True)}),
    "activation": LayerType("Activation", "activation"),
    "flatten": LayerType("Flatten"),
}

# Keras classes a spec may not name: they run arbitrary code, load files, or are
# not layers one stacks (inputs, wrappers, base classes).
FORBIDDEN = {
    "Lambda", "TFSMLayer", "JaxLayer", "FlaxLayer", "TorchModuleWrapper",
    "Layer", "Input", "InputLayer", "InputSpec", "Wrapper", "Pipeline",
}

# Arguments every Keras layer takes beyond its own signature.
COMMON_ARGS = {"name", "dtype", "trainable"}

# Arguments whose spec value is a small mapping turned into a Keras object.
REGULARIZER_ARGS = {"kernel_regularizer", "bias_regularizer", "activity_regularizer",
                    "beta_regularizer", "gamma_regularizer", "depthwise_regularizer",
                    "pointwise_regularizer"}


def keras_layer_names():
    """Every Keras layer class a spec may name."""
    import keras

    return sorted(
        name for name, obj in vars(keras.layers).items()
        if inspect.isclass(obj) and issubclass(obj, keras.layers.Layer) and name not in FORBIDDEN
    )


def resolve(name):
    """Return (keras class, LayerType) for a spec layer name, or None if unknown."""
    import keras

    # A Keras class name shares its short name's entry: `Dense` is checked like `dense`.
    layer_type = LAYERS.get(name) or next((t for t in LAYERS.values() if t.keras_class == name), LayerType(name))
    if layer_type.keras_class in FORBIDDEN:
        return None
    cls = getattr(keras.layers, layer_type.keras_class, None)
    if not (inspect.isclass(cls) and issubclass(cls, keras.layers.Layer)):
        return None
    return cls, layer_type


def signature_parameters(cls):
    """The keyword arguments `cls.__init__` names, with their defaults."""
    return {
        p.name: p for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }


def check_arguments(cls, args, limits=None):
    """Check keyword arguments against `cls`' signature.

    Returns a list of (argument name or "", message); empty when all is well.
    """
    params = signature_parameters(cls)
    known = set(params) | (COMMON_ARGS if _is_layer(cls) else set())
    problems = []
    for name, value in args.items():
        if name not in known:
            problems.append((name, f"unknown argument for {cls.__name__}" + checks.did_you_mean(name, known)
                             + f"; allowed: {', '.join(sorted(known))}"))
            continue
        if name in REGULARIZER_ARGS:
            message = _regularizer_problem(value)
        elif name in params:
            message = _type_problem(value, params[name].default)
        else:
            message = None
        limit = (limits or {}).get(name)
        message = message or (limit(value) if limit else None)
        if message:
            problems.append((name, message))
    misspelt = any(name not in known for name in args)  # then a "missing" argument is likely that one
    for name, p in params.items():
        if p.default is inspect.Parameter.empty and name not in args and not misspelt:
            problems.append(("", f"{cls.__name__} needs the argument '{name}'"))
    return problems


def make_layer(name, args):
    """Instantiate the Keras layer for a spec entry whose arguments were checked."""
    cls, _ = resolve(name)
    return cls(**{k: to_keras_value(k, v) for k, v in args.items()})


def to_keras_value(arg, value):
    """Turn a spec value into what Keras takes: lists become tuples, regularizers objects."""
    import keras

    if arg in REGULARIZER_ARGS and isinstance(value, dict):
        if set(value) == {"l1"}:
            return keras.regularizers.L1(value["l1"])
        if set(value) == {"l2"}:
            return keras.regularizers.L2(value["l2"])
        return keras.regularizers.L1L2(l1=value.get("l1", 0.0), l2=value.get("l2", 0.0))
    if isinstance(value, list):
        return tuple(value)
    return value


def _is_layer(cls):
    import keras

    return issubclass(cls, keras.layers.Layer)


def _type_problem(value, default):
    """Check a value against the type of its Keras default, where the default tells one."""
    if default is inspect.Parameter.empty or default is None or value is None:
        return None
    if isinstance(default, bool):
        ok = isinstance(value, bool)
        expected = "true or false"
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
        ok = ok or (isinstance(value, list) and all(isinstance(v, int) for v in value))
        expected = "an integer"
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        expected = "a number"
    elif isinstance(default, str):
        ok = isinstance(value, str)
        expected = "a string"
    elif isinstance(default, tuple):
        # Sizes and strides are whole numbers; a default holding a float (a range such as
        # RandomErasing's scale=(0.02, 0.33)) takes any numbers.
        kinds = (int, float) if any(isinstance(v, float) for v in default) else (int,)
        values = value if isinstance(value, list) else [value]
        ok = all(isinstance(v, kinds) and not isinstance(v, bool) for v in values)
        expected = "a number or a list of numbers" if float in kinds else "an integer or a list of integers"
    else:
        return None
    return None if ok else f"must be {expected}, got {value!r}"


def _regularizer_problem(value):
    if value is None or value in ("l1", "l2", "l1_l2"):
        return None
    if (isinstance(value, dict) and value and set(value) <= {"l1", "l2"}
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                    for v in value.values())):
        return None
    return f"must be a mapping such as {{l2: 0.01}} or {{l1: 0.001, l2: 0.01}}, got {value!r}"
