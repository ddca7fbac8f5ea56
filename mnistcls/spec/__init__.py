"""Model specs: a YAML file (plus `--set` overrides) in, a validated `Spec` out.

A spec has four sections; every field but `model` has a default, and each default
is written once, in the dataclasses of sections.py:

    name: cnn_relu
    description: Seed A's CNN with relu
    data:  {dataset: fashion, preprocess: scale}
    model:
      - conv2d: {filters: 32, kernel_size: 3, padding: same}
      - ...
    train: {optimizer: {name: adam, learning_rate: 3.0e-4}, epochs: 10}

A spec goes through the modules of this package in order:

    reader.py     YAML text -> plain data and the line of every field, within size limits
    overrides.py  `--set KEY=VALUE` applied to that data; `KEY=a,b,c` split into a sweep
    model.py      the `model:` list normalized and each layer checked against Keras
    sections.py   the dataclasses (Spec, DataSpec, TrainSpec, ...) and the checks of their fields

`load_spec` checks the whole file and raises one `SpecError` listing every problem
with its file, line and field path. Shapes are checked later, when `build` lays
the layers out (a shape can only be known once every argument is valid).

Field paths are dotted, list entries by position: `train.optimizer.learning_rate`,
`model.3.units`; inside a block (mnistcls.blocks) `model.2.times`,
`model.2.layers.0.filters`, `model.5.branches.1.0.kernel_size`. The same paths
name fields in messages, `--set`, a study's `set:` and tune's search spaces.
"""

from pathlib import Path

from mnistcls import checks
from mnistcls.errors import SpecError, UsageError
from mnistcls.spec.model import LayerSpec, find_entry, normalize_model, walk
from mnistcls.spec.overrides import apply_override, split_sweep
from mnistcls.spec.reader import (MAX_YAML_CHARS, MAX_YAML_DEPTH, MAX_YAML_VALUES, YAMLLimitError, locate,
                                  read_yaml, read_yaml_lines)
from mnistcls.spec.sections import (DATASET_STYLES, LOSSES, OPTIMIZERS, PRECISIONS, SCHEDULES, STYLES,
                                    TEST_TIME_AUGMENTATIONS, DataSpec, OptimizerSpec, ScheduleSpec, Spec,
                                    TrainSpec, validate)

__all__ = [
    "CONFIG_DIR", "find_config", "find_file", "bundled_configs", "load_spec", "parse_spec", "split_sweep",
    "read_yaml", "read_yaml_lines", "locate", "YAMLLimitError", "MAX_YAML_CHARS", "MAX_YAML_DEPTH",
    "MAX_YAML_VALUES", "Spec", "DataSpec", "TrainSpec", "OptimizerSpec", "ScheduleSpec", "LayerSpec", "find_entry", "walk",
    "OPTIMIZERS", "SCHEDULES", "LOSSES", "PRECISIONS", "STYLES", "DATASET_STYLES", "TEST_TIME_AUGMENTATIONS",
]

# Bundled specs: inside the package once installed, at the top of a source checkout.
_PACKAGE = Path(__file__).resolve().parent.parent
CONFIG_DIR = next((d for d in (_PACKAGE / "configs", _PACKAGE.parent / "configs") if d.is_dir()),
                  _PACKAGE / "configs")


def find_config(name_or_path):
    """A spec file by path, or by bare file name among the bundled configs."""
    return find_file(name_or_path, CONFIG_DIR, "spec")


def find_file(name_or_path, folder, kind):
    """A YAML file by path, or by bare name (`cnn_relu` or `cnn_relu.yaml`) among those bundled in `folder`.

    Specs, study files and search spaces are all found this way. Raises a
    UsageError naming the bundled files, and the closest one, when there is none.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.name == str(name_or_path):  # a bare name, not the path of a missing file
        for candidate in (folder / path.name, folder / f"{path.name}.yaml"):
            if candidate.is_file():
                return candidate
    bundled = sorted(folder.glob("*.yaml"))
    names = [p.name for p in bundled]
    hint = checks.did_you_mean(path.name, names if path.suffix else [p.stem for p in bundled])
    raise UsageError(f"{name_or_path}: no such {kind} file (bundled: {', '.join(names)})" + hint)


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
    raw, origins = read_yaml_lines(text, source)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError([locate(origins, source, "", "a spec must be a mapping with a 'model:' list of layers")])
    raw, problems = dict(raw), []
    normalize_model(raw, origins, source, problems)
    for override in overrides:
        apply_override(raw, override, origins, problems)
    normalize_model(raw, origins, source, problems)  # a --set may have put in a whole new layer
    spec = validate(raw, source, origins, problems)
    if problems:
        raise SpecError(problems)
    spec.overrides = list(overrides)
    return spec
