"""The sections of a spec as dataclasses, each field with its default, its help and its check.

`validate` turns checked plain data (see reader, overrides, model) into a `Spec`,
adding every problem it finds to a list, so that one SpecError reports them all.
"""

from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

from mnistcls import checks, layers
from mnistcls.spec.model import check_model, last_entry, output_activation
from mnistcls.spec.reader import locate

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


@dataclass(frozen=True)
class AveragedViews:
    """The views of a test image whose predictions are averaged (evaluate.with_tta makes them)."""

    shifts: tuple  # pixel shifts, each (rows down, columns right); (0, 0) is the image itself
    mirrored: bool  # each shifted view also mirrored left-right
    description: str


# A one-pixel shift keeps a digit or a garment what it is; a mirror keeps a garment a garment, not a digit.
_ONE_PIXEL = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))
TEST_TIME_AUGMENTATIONS = {
    "none": AveragedViews(((0, 0),), False, "the image alone"),
    "flip": AveragedViews(((0, 0),), True, "the image and its left-right mirror (for garments)"),
    "shift": AveragedViews(_ONE_PIXEL, False, "the image and its four one-pixel shifts (up, down, left, "
                                              "right, the edge they uncover black)"),
    "flip_shift": AveragedViews(_ONE_PIXEL, True, "the image and its four one-pixel shifts, each also "
                                                  "mirrored left-right: ten views (for garments)"),
}

# How each picture `predict` is given is prepared, as the training images of a dataset were:
STYLES = {
    "mnist": "grey, bright on black, fitted into 20x20 and centred by mass in 28x28 (as MNIST)",
    "fashion": "trimmed to its bounding box, longer side scaled to 28, centred by the box, bright on black "
               "(as Fashion-MNIST)",
}
# The built-in datasets (data.DATASETS has the rest of what is known about them) and their style.
# A folder of IDX files is prepared in the style its spec's `data.style` names, mnist unless told.
DATASET_STYLES = {"mnist": "mnist", "fashion": "fashion"}


# --- field checks beyond mnistcls.checks: each returns None, or what is wrong ----------

def _validation(value):
    if value == "test":
        return None
    message = checks.number(value, 0, 1, low_open=True, high_open=True)
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
        if value.get(key) is not None and checks.number(value[key], low):
            messages.append(f"{key}: {checks.number(value[key], low)}")
    return "; ".join(messages) or None


def _doc(text, check):
    return {"doc": text, "check": check}


def _dataset(value):
    """A built-in dataset's name, or an existing folder (its files are checked when it is loaded)."""
    if checks.string(value) or value in DATASET_STYLES or Path(value).expanduser().is_dir():
        return checks.string(value)
    return (f"unknown dataset {value!r}" + checks.did_you_mean(value, DATASET_STYLES)
            + f"; give {' or '.join(DATASET_STYLES)}, or the path of a folder of IDX files")


@dataclass
class DataSpec:
    dataset: str = field(default="mnist", metadata=_doc(
        "default dataset: mnist, fashion, or a folder of IDX files", _dataset))
    preprocess: str = field(default="scale", metadata=_doc(
        "scale: x/255 to [0, 1]; standardize: (x/255 - mean) / std of the training set",
        lambda v: checks.one_of(v, PREPROCESSING)))
    style: str = field(default="auto", metadata=_doc(
        "how predict prepares a picture: " + "; ".join(f"{k}: {v}" for k, v in STYLES.items())
        + "; auto: the built-in dataset's own, mnist for a folder", lambda v: checks.one_of(v, ("auto", *STYLES))))

    tta: str = field(default="none", metadata=_doc(
        "test-time augmentation, used by the final test, evaluate and predict: the average prediction over "
        + "; ".join(f"{k}: {v.description}" for k, v in TEST_TIME_AUGMENTATIONS.items()),
        lambda v: checks.one_of(v, TEST_TIME_AUGMENTATIONS)))

    def picture_style(self):
        """The STYLES entry pictures are prepared in for a model trained on this data."""
        return self.style if self.style != "auto" else DATASET_STYLES.get(self.dataset, "mnist")


@dataclass
class OptimizerSpec:
    name: str = field(default="adam", metadata=_doc(
        "sgd | adam | adamw | rmsprop", lambda v: checks.one_of(v, OPTIMIZERS)))
    learning_rate: float = field(default=1e-3, metadata=_doc(
        "initial learning rate", lambda v: checks.number(v, low=0, low_open=True)))
    # Any further key (momentum, nesterov, weight_decay, beta_1, ...) is passed to the
    # Keras optimizer and checked against its signature.
    options: dict = field(default_factory=dict)


@dataclass
class ScheduleSpec:
    name: str = field(default="constant", metadata=_doc(
        " | ".join(SCHEDULES), lambda v: checks.one_of(v, SCHEDULES)))
    every_epochs: int = field(default=10, metadata=_doc(
        "step: epochs between drops", lambda v: checks.integer(v, 1)))
    factor: float = field(default=0.5, metadata=_doc(
        "step, exponential, plateau: multiplier per drop",
        lambda v: checks.number(v, 0, 1, low_open=True, high_open=True)))
    warmup_epochs: int = field(default=0, metadata=_doc(
        "cosine: epochs of linear warm-up", lambda v: checks.integer(v, 0)))
    min_lr: float = field(default=0.0, metadata=_doc(
        "cosine, plateau: lowest learning rate", lambda v: checks.number(v, 0)))
    decay: float = field(default=0.0, metadata=_doc("inverse_time: decay per step", lambda v: checks.number(v, 0)))
    patience: int = field(default=3, metadata=_doc(
        "plateau: epochs without improvement", lambda v: checks.integer(v, 1)))

    def to_dict(self):
        """Only the fields this schedule reads, so a resolved spec re-validates."""
        return {"name": self.name, **{key: getattr(self, key) for key in SCHEDULES[self.name]}}


@dataclass
class TrainSpec:
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)
    loss: str = field(default="categorical_crossentropy", metadata=_doc(
        " | ".join(LOSSES), lambda v: checks.one_of(v, LOSSES)))
    from_logits: bool = field(default=False, metadata=_doc(
        "true when the last layer has no softmax", checks.boolean))
    label_smoothing: float = field(default=0.0, metadata=_doc(
        "categorical_crossentropy only", lambda v: checks.number(v, 0, 1, high_open=True)))
    batch_size: int = field(default=128, metadata=_doc("images per step", lambda v: checks.integer(v, 1)))
    epochs: int = field(default=10, metadata=_doc("passes over the training set", lambda v: checks.integer(v, 1)))
    validation: float | str = field(default="test", metadata=_doc(
        "'test' validates on the test set (seed A); a fraction such as 0.2 holds out that much "
        "of the training set (seed B)", _validation))
    early_stopping: dict | None = field(default=None, metadata=_doc(
        "null, or keras.callbacks.EarlyStopping arguments, e.g. {patience: 3, restore_best_weights: true}",
        _early_stopping))
    seed: int = field(default=0, metadata=_doc("seed for weights, shuffling and the validation split",
                                               lambda v: checks.integer(v, 0)))
    precision: str = field(default="auto", metadata=_doc(
        " | ".join(PRECISIONS) + "; auto picks what the hardware does well",
        lambda v: checks.one_of(v, PRECISIONS)))
    steps_per_execution: int = field(default=32, metadata=_doc(
        "training steps run per call into TensorFlow (fewer Python round trips)", lambda v: checks.integer(v, 1)))


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
            "model": [entry.to_dict() for entry in self.model],
            "train": _as_plain(self.train),
        }


# --- validation --------------------------------------------------------------------

def validate(raw, source, origins, problems):
    """The Spec that plain spec data stands for; each problem found is appended to `problems`."""
    def problem(path, message):
        problems.append(locate(origins, source, path, message))

    # `search` is the space `mnistcls tune` explores (read by mnistcls.search); training ignores it.
    allowed = {"name", "description", "data", "model", "train", "search"}
    for key in raw:
        if key not in allowed:
            problem(str(key), "unknown section" + checks.did_you_mean(str(key), allowed)
                    + f"; allowed: {', '.join(sorted(allowed))}")
    name = raw.get("name", Path(source).stem)
    description = raw.get("description", "")
    for key, value in (("name", name), ("description", description)):
        if not isinstance(value, str):
            problem(key, f"must be a string, got {value!r}")
    if isinstance(name, str) and "/" in name:
        problem("name", f"must not contain '/' (it names the Keras model), got {name!r}")
    _resolve_dataset_folder(raw, origins)
    data = _section(DataSpec, raw.get("data"), "data", problem)
    train = _section(TrainSpec, raw.get("train"), "train", problem)
    model = check_model(raw.get("model"), source, origins, problems)
    if not problems:
        _check_output(model, train, problem, written="train.from_logits" in origins)
    return Spec(str(name), str(description), data, model, train, source, origins)


def _resolve_dataset_folder(raw, origins):
    """A dataset folder written as a relative path is relative to the file that names it (the command line's
    folder for --set), and is recorded absolute, so that the run is found again from any folder."""
    section = raw.get("data")
    if not isinstance(section, dict) or not isinstance(section.get("dataset"), str) \
            or section["dataset"] in DATASET_STYLES:
        return
    written = Path(section["dataset"]).expanduser()
    named_in = Path(origins.get("data.dataset", ("",))[0])
    folder = written if written.is_absolute() else (named_in.parent if named_in.is_file() else Path.cwd()) / written
    if folder.is_dir():
        section["dataset"] = str(folder.resolve())


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
                problem(sub, "unknown field" + checks.did_you_mean(str(key), names)
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
        if options[arg] is not None and checks.number(options[arg]):
            problem(f"{path}.{arg}", checks.number(options[arg]))


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
    last = last_entry(model) if model else "model"
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
