"""Model specs: a YAML file (plus `--set` overrides) in, a validated `Spec` out.

A spec has four sections; every field but `model` has a default, and each default
is written once, in the dataclasses below:

    name: cnn_relu
    description: Seed A's CNN with relu
    data:  {dataset: fashion, preprocess: scale}
    model:
      - conv2d: {filters: 32, kernel_size: 3, padding: same}
      - ...
    train: {optimizer: {name: adam, learning_rate: 3.0e-4}, epochs: 10}

`load_spec` checks the whole file and raises one `SpecError` listing every problem
with its file, line and field path. Shapes are checked later, when `build` lays
the layers out (a shape can only be known once every argument is valid).
"""

import math
import re
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

import yaml

from mnistcls import layers
from mnistcls.errors import Problem, SpecError, UsageError

# Bundled specs: inside the package once installed, at the top of a source checkout.
_PACKAGE = Path(__file__).resolve().parent
CONFIG_DIR = next((d for d in (_PACKAGE / "configs", _PACKAGE.parent / "configs") if d.is_dir()),
                  _PACKAGE / "configs")

# Keras optimizer classes by spec name; their options are checked against Keras' signature.
OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop"}

# Learning-rate schedules by spec name, with the ScheduleSpec fields each one reads.
SCHEDULES = {
    "constant": (),
    "step": ("every_epochs", "factor"),  # lr * factor every `every_epochs` epochs
    "exponential": ("factor",),  # lr * factor ** epoch, smoothly
    "cosine": ("warmup_epochs", "min_lr"),  # linear warm-up, then cosine down to min_lr
    "inverse_time": ("decay",),  # lr / (1 + decay * step): Keras 2's SGD `decay`
    "plateau": ("factor", "patience", "min_lr"),  # ReduceLROnPlateau on val_loss
}

MONITORED = ("val_loss", "val_accuracy", "loss", "accuracy")  # what training logs each epoch
LOSSES = ("categorical_crossentropy", "sparse_categorical_crossentropy")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
PREPROCESSING = ("scale", "standardize")
TEST_TIME_AUGMENTATIONS = ("none", "flip")

# How each picture `predict` is given is prepared, as the training images of a dataset were:
STYLES = {
    "mnist": "grey, bright on black, fitted into 20x20 and centred by mass in 28x28 (as MNIST)",
    "fashion": "trimmed to its bounding box, longer side scaled to 28, centred by the box, bright on black "
               "(as Fashion-MNIST)",
}
# The built-in datasets (data.DATASETS has the rest of what is known about them) and their style.
# A folder of IDX files is prepared in the style its spec's `data.style` names, mnist unless told.
DATASET_STYLES = {"mnist": "mnist", "fashion": "fashion"}


# --- value checks: each returns None, or what is wrong ----------------------------

def _one_of(value, choices):
    if value in choices:
        return None
    return f"must be one of {', '.join(choices)}, got {value!r}" + layers.did_you_mean(str(value), choices)


def _bool(value):
    return None if isinstance(value, bool) else f"must be true or false, got {value!r}"


def _int(value, low):
    if not isinstance(value, int) or isinstance(value, bool):
        return f"must be an integer, got {value!r}"
    return None if value >= low else f"must be >= {low}, got {value}"


def _number(value, low=None, high=None, low_open=False, high_open=False):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return f"must be a number, got {value!r}"
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
        return f"must be {' and '.join(p for p in (lo, hi) if p)}, got {value}"
    return None


def _validation(value):
    if value == "test":
        return None
    message = _number(value, 0, 1, low_open=True, high_open=True)
    return f"must be 'test' or a fraction between 0 and 1, got {value!r}" if message else None


def _early_stopping(value):
    import keras

    if value is None:
        return None
    if not isinstance(value, dict):
        return "must be null or a mapping such as {patience: 3, restore_best_weights: true}"
    # min_delta is a real number although Keras' default (0) is written as an integer: checked here.
    typed_by_keras = {key: v for key, v in value.items() if key != "min_delta"}
    messages = [f"{arg}: {msg}" if arg else msg
                for arg, msg in layers.check_arguments(keras.callbacks.EarlyStopping, typed_by_keras)]
    monitor = value.get("monitor", "val_loss")
    if monitor not in MONITORED:
        messages.append(f"monitor: must be one of {', '.join(MONITORED)}, got {monitor!r}")
    for key, low in (("baseline", None), ("min_delta", 0)):
        if value.get(key) is not None and _number(value[key], low):
            messages.append(f"{key}: {_number(value[key], low)}")
    return "; ".join(messages) or None


def _string(value):
    return None if isinstance(value, str) and value else f"must be a non-empty string, got {value!r}"


def _doc(text, check):
    return {"doc": text, "check": check}


def _dataset(value):
    """A built-in dataset's name, or an existing folder (its files are checked when it is loaded)."""
    if _string(value) or value in DATASET_STYLES or Path(value).expanduser().is_dir():
        return _string(value)
    return (f"unknown dataset {value!r}" + layers.did_you_mean(value, DATASET_STYLES)
            + f"; give {' or '.join(DATASET_STYLES)}, or the path of a folder of IDX files")


@dataclass
class DataSpec:
    dataset: str = field(default="mnist", metadata=_doc(
        "default dataset: mnist, fashion, or a folder of IDX files", _dataset))
    preprocess: str = field(default="scale", metadata=_doc(
        "scale: x/255 to [0, 1]; standardize: (x/255 - mean) / std of the training set",
        lambda v: _one_of(v, PREPROCESSING)))
    style: str = field(default="auto", metadata=_doc(
        "how predict prepares a picture: " + "; ".join(f"{k}: {v}" for k, v in STYLES.items())
        + "; auto: the built-in dataset's own, mnist for a folder", lambda v: _one_of(v, ("auto", *STYLES))))

    tta: str = field(default="none", metadata=_doc(
        "test-time augmentation, used by the final test, evaluate and predict: none, or flip (average each "
        "image's prediction with its left-right mirror's: for garments, not for digits)",
        lambda v: _one_of(v, TEST_TIME_AUGMENTATIONS)))

    def picture_style(self):
        """The STYLES entry pictures are prepared in for a model trained on this data."""
        return self.style if self.style != "auto" else DATASET_STYLES.get(self.dataset, "mnist")


@dataclass
class OptimizerSpec:
    name: str = field(default="adam", metadata=_doc(
        "sgd | adam | adamw | rmsprop", lambda v: _one_of(v, OPTIMIZERS)))
    learning_rate: float = field(default=1e-3, metadata=_doc(
        "initial learning rate", lambda v: _number(v, low=0, low_open=True)))
    # Any further key (momentum, nesterov, weight_decay, beta_1, ...) is passed to the
    # Keras optimizer and checked against its signature.
    options: dict = field(default_factory=dict)


@dataclass
class ScheduleSpec:
    name: str = field(default="constant", metadata=_doc(
        " | ".join(SCHEDULES), lambda v: _one_of(v, SCHEDULES)))
    every_epochs: int = field(default=10, metadata=_doc("step: epochs between drops", lambda v: _int(v, 1)))
    factor: float = field(default=0.5, metadata=_doc(
        "step, exponential, plateau: multiplier per drop", lambda v: _number(v, 0, 1, low_open=True, high_open=True)))
    warmup_epochs: int = field(default=0, metadata=_doc("cosine: epochs of linear warm-up", lambda v: _int(v, 0)))
    min_lr: float = field(default=0.0, metadata=_doc("cosine, plateau: lowest learning rate", lambda v: _number(v, 0)))
    decay: float = field(default=0.0, metadata=_doc("inverse_time: decay per step", lambda v: _number(v, 0)))
    patience: int = field(default=3, metadata=_doc("plateau: epochs without improvement", lambda v: _int(v, 1)))

    def to_dict(self):
        """Only the fields this schedule reads, so a resolved spec re-validates."""
        return {"name": self.name, **{key: getattr(self, key) for key in SCHEDULES[self.name]}}


@dataclass
class TrainSpec:
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)
    loss: str = field(default="categorical_crossentropy", metadata=_doc(
        " | ".join(LOSSES), lambda v: _one_of(v, LOSSES)))
    from_logits: bool = field(default=False, metadata=_doc(
        "true when the last layer has no softmax", _bool))
    label_smoothing: float = field(default=0.0, metadata=_doc(
        "categorical_crossentropy only", lambda v: _number(v, 0, 1, high_open=True)))
    batch_size: int = field(default=128, metadata=_doc("images per step", lambda v: _int(v, 1)))
    epochs: int = field(default=10, metadata=_doc("passes over the training set", lambda v: _int(v, 1)))
    validation: float | str = field(default="test", metadata=_doc(
        "'test' validates on the test set (seed A); a fraction such as 0.2 holds out that much "
        "of the training set (seed B)", _validation))
    early_stopping: dict | None = field(default=None, metadata=_doc(
        "null, or keras.callbacks.EarlyStopping arguments, e.g. {patience: 3, restore_best_weights: true}",
        _early_stopping))
    seed: int = field(default=0, metadata=_doc("seed for weights, shuffling and the validation split",
                                               lambda v: _int(v, 0)))
    precision: str = field(default="auto", metadata=_doc(
        " | ".join(PRECISIONS) + "; auto picks what the hardware does well",
        lambda v: _one_of(v, PRECISIONS)))
    steps_per_execution: int = field(default=32, metadata=_doc(
        "training steps run per call into TensorFlow (fewer Python round trips)", lambda v: _int(v, 1)))


@dataclass
class LayerSpec:
    type: str  # a short name from layers.LAYERS or a Keras class name
    args: dict  # keyword arguments for the Keras layer
    index: int  # position in the model list, for messages ("model.3")


@dataclass
class Spec:
    name: str
    description: str
    data: DataSpec
    model: list
    train: TrainSpec
    source: str  # the file it came from, for messages and run records
    origins: dict = field(default_factory=dict, repr=False)  # field path -> (file, line)
    overrides: list = field(default_factory=list)  # the `--set` strings applied

    def problem(self, path, message):
        """A Problem located at `path` (or its nearest parent that has a location)."""
        return locate(self.origins, self.source, path, message)

    def to_dict(self):
        """The fully resolved spec as plain data, in the layout of a spec file."""
        return {
            "name": self.name,
            "description": self.description,
            "data": _as_plain(self.data),
            "model": [{lay.type: lay.args} for lay in self.model],
            "train": _as_plain(self.train),
        }


def find_config(name_or_path):
    """A spec file by path, or by bare file name among the bundled configs."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    for candidate in (CONFIG_DIR / name_or_path, CONFIG_DIR / f"{name_or_path}.yaml"):
        if path.name == str(name_or_path) and candidate.is_file():
            return candidate
    bundled = ", ".join(p.name for p in bundled_configs())
    raise UsageError(f"{name_or_path}: no such spec file (bundled configs: {bundled})"
                     + layers.did_you_mean(path.name, [p.name for p in bundled_configs()]))


def bundled_configs():
    """The spec files shipped in configs/, sorted by name."""
    return sorted(CONFIG_DIR.glob("*.yaml"))


def load_spec(name_or_path, overrides=()):
    """Read, override and validate a spec file; raise SpecError listing every problem."""
    path = find_config(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: cannot read the spec file ({err})") from None
    return parse_spec(text, str(path), overrides)


def parse_spec(text, source, overrides=()):
    """Validate spec text; `source` names it in messages."""
    origins = {}
    raw = _read_yaml(text, source, origins)
    problems = []
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError([locate(origins, source, "", "a spec must be a mapping with a 'model:' list of layers")])
    raw = dict(raw)
    _normalize_model(raw, origins, source, problems)
    for text_override in overrides:
        _apply_override(raw, text_override, origins, problems)
    _normalize_model(raw, origins, source, problems)  # a --set may have put in a whole new layer
    spec = _validate(raw, source, origins, problems)
    if problems:
        raise SpecError(problems)
    spec.overrides = list(overrides)
    return spec


def split_sweep(override):
    """`key=a,b,c` -> [`key=a`, `key=b`, `key=c`]; a YAML list or mapping is one value."""
    key, sep, value = override.partition("=")
    if not sep or value.lstrip().startswith(("[", "{")) or "," not in value:
        return [override]
    return [f"{key}={v.strip()}" for v in value.split(",")]


# --- YAML with line numbers -------------------------------------------------------

# Limits on what a YAML file may stand for, checked while it is composed, before anything walks it:
# a few lines of nested anchors and aliases can stand for billions of values (a "billion laughs"),
# and thousands of nested brackets would exhaust Python's recursion. Specs use a tiny part of each.
MAX_YAML_CHARS = 1_000_000  # characters of text
MAX_YAML_DEPTH = 50  # levels of nested lists and mappings
MAX_YAML_VALUES = 100_000  # values the document stands for, each alias counted as all it stands for


class YAMLLimitError(yaml.YAMLError):
    """A document beyond one of the limits above; `line` is where it went beyond (1-based), if known."""

    def __init__(self, message, line=None):
        super().__init__(message)
        self.message, self.line = message, line


class SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading numbers as YAML 1.2 does (`1e-4` is a float, not a string),
    and refusing documents beyond the MAX_YAML limits while composing them."""

    def __init__(self, text):
        if len(text) > MAX_YAML_CHARS:
            raise YAMLLimitError(f"the document is {len(text):,} characters long; "
                                 f"at most {MAX_YAML_CHARS:,} are read")
        super().__init__(text)
        self._depth = 0
        self._sizes = {}  # id of a composed node -> values it stands for, children and aliases included

    def compose_node(self, parent, index):
        mark = self.peek_event().start_mark
        alias = self.check_event(yaml.AliasEvent)
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise YAMLLimitError(f"lists and mappings nested more than {MAX_YAML_DEPTH} levels deep",
                                     mark.line + 1)
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if alias and id(node) not in self._sizes:  # its anchor's node is still being composed: it holds itself
            raise YAMLLimitError("an alias stands for a list or mapping that contains it, which never ends",
                                 mark.line + 1)
        # An alias gives the node composed for its anchor, whose size is known: adding it once
        # more per alias counts what the document stands for in time linear in its text.
        if id(node) not in self._sizes:
            children = (node.value if isinstance(node, yaml.SequenceNode) else
                        [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else [])
            self._sizes[id(node)] = 1 + sum(self._sizes.get(id(child), 1) for child in children)
        if self._sizes[id(node)] > MAX_YAML_VALUES:
            raise YAMLLimitError(f"aliases make the document stand for more than {MAX_YAML_VALUES:,} values",
                                 mark.line + 1)
        return node


SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^[-+]?(?:[0-9][0-9_]*\.?[0-9_]*|\.[0-9_]+)(?:[eE][-+]?[0-9]+)$"""),
    list("-+0123456789."))


def read_yaml(text):
    """Plain data from YAML text, with the spec's number rules and limits (for `--set` values and run records).

    Raises:
        yaml.YAMLError: not YAML; YAMLLimitError: beyond a MAX_YAML limit.
    """
    loader = SpecLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml_lines(text, source):
    """For other YAML files checked like specs (study files, search spaces): (plain data, origins).

    `origins` maps each field path to its (file, line), for `locate`; broken YAML
    raises SpecError with its line, as for specs.
    """
    origins = {}
    return _read_yaml(text, source, origins), origins


def _read_yaml(text, source, origins):
    """Parse YAML safely, recording each field path's line in `origins`."""
    try:
        loader = SpecLoader(text)
    except YAMLLimitError as err:
        raise SpecError([Problem(source, None, "", err.message)]) from None
    try:
        node = loader.get_single_node()
        return None if node is None else _construct(loader, node, "", origins, source)
    except YAMLLimitError as err:
        raise SpecError([Problem(source, err.line, "", err.message)]) from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        message = f"YAML syntax error: {err.problem or err}"
        if err.context and err.context_mark and err.context_mark.line + 1 != line:
            message += f" ({err.context} that starts on line {err.context_mark.line + 1})"
        raise SpecError([Problem(source, line, "", message)]) from None
    except yaml.YAMLError as err:
        raise SpecError([Problem(source, None, "", f"YAML error: {err}")]) from None
    finally:
        loader.dispose()


def _construct(loader, node, path, origins, source):
    origins[path] = (source, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            child = f"{path}.{key}" if path else str(key)
            if not isinstance(key, str):
                raise SpecError([Problem(source, key_node.start_mark.line + 1, child,
                                         "field names must be words, e.g. `units: 10`")])
            if key in out:
                raise SpecError([Problem(source, key_node.start_mark.line + 1, child, "duplicate key")])
            out[key] = _construct(loader, value_node, child, origins, source)
            origins[child] = (source, key_node.start_mark.line + 1)  # a field is where its key is
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(loader, item, f"{path}.{i}", origins, source) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def locate(origins, source, path, message):
    """A Problem at the line of field `path`, or of its nearest parent that has one."""
    probe = path
    while probe not in origins and probe:
        probe = probe.rpartition(".")[0]
    file, line = origins.get(probe, (source, None))
    return Problem(file, line, path, message)


# --- model list --------------------------------------------------------------------

def _normalize_model(raw, origins, source, problems):
    if isinstance(raw.get("model"), list):
        raw["model"] = [_normalize_layer(entry, f"model.{i}", origins, source, problems)
                        for i, entry in enumerate(raw["model"])]


def _normalize_layer(entry, path, origins, source, problems):
    """`- dense: 128` / `- flatten` / `- conv2d: {...}` -> {"type": ..., **args}."""
    if entry is None or (isinstance(entry, dict) and "type" in entry):
        return entry  # normalized already, or reported already
    if isinstance(entry, str):
        return {"type": entry}
    if isinstance(entry, dict) and len(entry) == 1:
        (name, value), = entry.items()
        # Arguments live one level up in a normalized layer: model.3.units, not model.3.dense.units.
        for key in [k for k in origins if k.startswith(f"{path}.{name}.")]:
            origins[f"{path}.{key[len(path) + len(str(name)) + 2:]}"] = origins[key]
        if value is None:
            return {"type": name}
        if isinstance(value, dict):
            return {"type": name, **value}
        layer_type = layers.LAYERS.get(name)
        if layer_type and layer_type.primary:
            return {"type": name, layer_type.primary: value}
        problems.append(locate(origins, source, path,
                                f"'{name}' takes a mapping of arguments, e.g. `- {name}: {{...}}`"))
        return None
    problems.append(locate(origins, source, path,
                            "a layer is `- NAME`, `- NAME: VALUE` or `- NAME: {ARG: VALUE, ...}`"))
    return None


def _check_model(raw_model, source, origins, problems):
    if not isinstance(raw_model, list) or not raw_model:
        problems.append(locate(origins, source, "model", "must be a non-empty list of layers"))
        return []
    model = []
    for i, entry in enumerate(raw_model):
        if entry is None:
            continue
        path = f"model.{i}"
        args = {k: v for k, v in entry.items() if k != "type"}
        name = entry["type"]
        resolved = layers.resolve(name) if isinstance(name, str) else None
        if resolved is None:
            choices = sorted(layers.LAYERS) + layers.keras_layer_names()
            hint = "forbidden: it can run arbitrary code" if name in layers.FORBIDDEN else (
                "unknown layer" + layers.did_you_mean(str(name), choices)
                + f"; short names: {', '.join(sorted(layers.LAYERS))}, or any Keras layer class name")
            problems.append(locate(origins, source, path, f"'{name}': {hint}"))
            continue
        cls, layer_type = resolved
        for arg, message in layers.check_arguments(cls, args, layer_type.limits):
            problems.append(locate(origins, source, f"{path}.{arg}" if arg else path, message))
        model.append(LayerSpec(name, args, i))
    return model


# Layers that pass values through at inference: they do not change what the output is.
PASS_THROUGH = {"dropout", "flatten", "Dropout", "Flatten", "Identity", "Reshape", "SpatialDropout2D",
                "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization"}


def output_activation(model):
    """'softmax' when the model's output is probabilities, else None (logits).

    Decided by the last layer that is not a pass-through one: its `activation`
    argument, or a Softmax layer.
    """
    acting = [layer for layer in model if layer.type not in PASS_THROUGH]
    if not acting:
        return None
    last = acting[-1]
    return "softmax" if last.type == "Softmax" or last.args.get("activation") == "softmax" else None


# --- overrides ---------------------------------------------------------------------

def _apply_override(raw, text, origins, problems):
    """Apply one `--set a.b.c=value` to the raw tree; the value is read as YAML."""
    key, sep, value_text = text.partition("=")
    where = f"--set {text}"
    if not sep or not key:
        problems.append(Problem(where, None, "", "expected KEY=VALUE, e.g. --set train.epochs=3"))
        return
    try:
        value = read_yaml(value_text)
    except YAMLLimitError as err:
        problems.append(Problem(where, None, key, err.message))
        return
    except yaml.YAMLError:
        value = value_text
    parts = key.split(".")
    node = raw
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        path = ".".join(parts[:depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node) or node[int(part)] is None:
                problems.append(Problem(where, None, path, f"no such list entry (the list has {len(node)})"))
                return
            part = int(part)
        elif not isinstance(node, dict):
            problems.append(Problem(where, None, path, "cannot set a field inside a plain value"))
            return
        if last:
            node[part] = value
        else:
            if isinstance(node, dict) and not isinstance(node.get(part), (dict, list)):
                node[part] = {}
            node = node[part]
    for stale in [k for k in origins if k == key or k.startswith(key + ".")]:
        del origins[stale]
    origins[key] = (where, None)


# --- sections ----------------------------------------------------------------------

def _validate(raw, source, origins, problems):
    def problem(path, message):
        problems.append(locate(origins, source, path, message))

    # `search` is the space `mnistcls tune` explores (read by mnistcls.search); training ignores it.
    allowed = {"name", "description", "data", "model", "train", "search"}
    for key in raw:
        if key not in allowed:
            problem(str(key), "unknown section" + layers.did_you_mean(str(key), allowed)
                    + f"; allowed: {', '.join(sorted(allowed))}")
    name = raw.get("name", Path(source).stem)
    description = raw.get("description", "")
    for key, value in (("name", name), ("description", description)):
        if not isinstance(value, str):
            problem(key, f"must be a string, got {value!r}")
    if isinstance(name, str) and "/" in name:
        problem("name", f"must not contain '/' (it names the Keras model), got {name!r}")
    data = _section(DataSpec, raw.get("data"), "data", problem)
    train = _section(TrainSpec, raw.get("train"), "train", problem)
    model = _check_model(raw.get("model"), source, origins, problems)
    if not problems:
        _check_output(model, train, problem, written="train.from_logits" in origins)
    return Spec(str(name), str(description), data, model, train, source, origins)


def _section(cls, raw, path, problem):
    """Build dataclass `cls` from a raw mapping, reporting unknown keys and bad values."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problem(path, f"must be a mapping of {', '.join(f.name for f in fields(cls))}")
        return cls()
    names = {f.name for f in fields(cls)}
    takes_options = "options" in names
    values, options = {}, {}
    for key, value in raw.items():
        sub = f"{path}.{key}"
        if key not in names or key == "options":
            if takes_options:
                options[key] = value
            else:
                problem(sub, "unknown field" + layers.did_you_mean(str(key), names)
                        + f"; allowed: {', '.join(sorted(names))}")
            continue
        f = next(f for f in fields(cls) if f.name == key)
        default = f.default_factory() if f.default_factory is not dict and callable(f.default_factory) else None
        if is_dataclass(default):
            values[key] = _section(type(default), value, sub, problem)
            continue
        message = f.metadata["check"](value)
        if message:
            problem(sub, message)
        else:
            values[key] = value
    section = cls(**values)
    if cls is OptimizerSpec:
        _check_optimizer(section, options, path, problem)
    if cls is ScheduleSpec:
        _check_schedule(section, raw, path, problem)
    return section


def _check_optimizer(optimizer, options, path, problem):
    import keras

    optimizer.options = options
    if optimizer.name not in OPTIMIZERS:
        return
    cls = getattr(keras.optimizers, OPTIMIZERS[optimizer.name])
    for arg, message in layers.check_arguments(cls, options):
        problem(f"{path}.{arg}" if arg else path, message)
    # Options whose Keras default is None (clipnorm, clipvalue, ...) are numbers too.
    unset = {name for name, p in layers.signature_parameters(cls).items() if p.default is None and name != "name"}
    for arg in unset & set(options):
        if options[arg] is not None and _number(options[arg]):
            problem(f"{path}.{arg}", _number(options[arg]))


def _check_schedule(schedule, raw, path, problem):
    if schedule.name not in SCHEDULES:
        return  # the name itself is reported; which fields it reads is unknown
    used = SCHEDULES[schedule.name]
    for key in raw:
        if key != "name" and key in {f.name for f in fields(ScheduleSpec)} and key not in used:
            problem(f"{path}.{key}", f"not used by the '{schedule.name}' schedule"
                    + (f" (it reads: {', '.join(used)})" if used else " (it reads nothing)"))


def _check_output(model, train, problem, written):
    """The loss must read the model's output as what it is: probabilities or logits."""
    softmax = output_activation(model) == "softmax"
    last = f"model.{model[-1].index}" if model else "model"
    # Point at from_logits where the user wrote it, else at the layer that disagrees with its default.
    where = "train.from_logits" if written else last
    if softmax and train.from_logits:
        problem(where, f"the last layer ({last}) applies softmax, so the model outputs "
                "probabilities: set train.from_logits: false, or drop the softmax")
    if not softmax and not train.from_logits:
        problem(where, f"the last layer ({last}) outputs logits, not probabilities: "
                "end with softmax, or set train.from_logits: true")
    if train.loss == "sparse_categorical_crossentropy" and train.label_smoothing:
        problem("train.label_smoothing", "needs loss: categorical_crossentropy")


def _as_plain(obj):
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if is_dataclass(obj):
        out = {f.name: _as_plain(getattr(obj, f.name)) for f in fields(obj) if f.name != "options"}
        return {**out, **getattr(obj, "options", {})}
    return obj
