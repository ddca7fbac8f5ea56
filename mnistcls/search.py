"""Search spaces for `mnistcls tune`: which spec fields vary, and over what values.

A space names fields by the dotted paths `--set` takes, each with a range or a list:

    search:
      train.optimizer.learning_rate: {float: [1.0e-4, 1.0e-2], log: true}
      train.optimizer.name: {choice: [sgd, adam]}
      model.1.units: {int: [10, 1000], log: true}
      model.5: {float: [0.0, 0.5]}       # a layer's bare-value form: Dropout's rate
      train.batch_size: {int: [32, 256], step: 32}

It may be a `search:` section of the spec itself, a separate file (whose `set:`
mapping fixes further fields for the whole study), or `--search KEY=SPEC` on the
command line; a later one replaces an earlier one's entry for the same field.

A space is checked like a spec, before any trial: its shape (empty ranges, log
ranges through zero, unknown options) and, by resolving the spec with each end of
every range and each choice, its paths (unknown fields with a suggestion) and the
values themselves. Only what depends on the combination of values (say, a kernel
larger than its input) is left to the trial that draws it.
"""

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from mnistcls import checks, layers, spec as specs
from mnistcls.errors import Problem, SpecError, UsageError

SPACE_DIR = specs.CONFIG_DIR / "search"  # bundled search spaces, found by bare name
KINDS = ("float", "int", "choice")
OPTIONS = {"float": ("log", "step"), "int": ("log", "step"), "choice": ()}
# The objective must be measured the same way in every trial: these fields stay fixed.
FIXED_FIELDS = ("train.validation", "data.dataset")
GRID_MAX_VALUES = 1000  # values of one parameter a grid search may try
EXAMPLE = "{float: [1.0e-4, 1.0e-2], log: true}, {int: [10, 1000]} or {choice: [sgd, adam]}"


@dataclass(frozen=True)
class Param:
    """One searched field: its name as written, the `--set` path it sets, and its values."""

    name: str  # as written, e.g. "model.5"
    target: str  # the field it sets, e.g. "model.5.rate"
    kind: str  # float | int | choice
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    def override(self, value):
        """The `--set` string that gives this field `value`."""
        return f"{self.target}={json.dumps(value)}"

    def values_to_check(self):
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]

    def grid_values(self):
        """Every value a grid search tries, or None when the range is continuous."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "float" and self.step is None:
            return None
        step = self.step or 1
        count = int(math.floor((self.high - self.low) / step + 1e-9)) + 1
        if count > GRID_MAX_VALUES:
            return None
        return [self.low + i * step if self.kind == "int" else round(self.low + i * step, 12) for i in range(count)]

    def to_dict(self):
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


@dataclass
class Space:
    """A base spec (with the fixed overrides applied) and the parameters searched over it."""

    spec: object  # spec.Spec, every fixed override applied
    text: str  # the spec file's text
    source: str  # the spec file's path
    fixed: list  # `--set` strings fixed for the whole study (the space file's `set:`, then the command line's)
    params: dict  # name -> Param, in the order written

    def setup(self):
        """What defines the study, as plain data: a reopened study must be given the same."""
        return {"spec": self.spec.to_dict(), "search": {name: p.to_dict() for name, p in self.params.items()}}


def find_space(name_or_path):
    """A search space file by path, or by bare name among the bundled ones."""
    return specs.find_file(name_or_path, SPACE_DIR, "search space")


def load_space(config, space_file=None, search=(), overrides=()):
    """The Space for a spec file, an optional space file and `--search`/`--set` strings.

    Raises one SpecError listing every problem, each at its file and line.
    """
    spec_path = specs.find_config(config)
    spec_text = _read(spec_path)
    raw_spec, spec_origins = specs.read_yaml_lines(spec_text, str(spec_path))
    problems, entries, fixed, places = [], {}, [], {}
    if isinstance(raw_spec, dict):
        _collect(raw_spec.get("search"), "search", spec_origins, str(spec_path), entries, problems)
    if space_file:
        path = find_space(space_file)
        raw, origins = specs.read_yaml_lines(_read(path), str(path))
        fixed, places = _read_space_file(raw, origins, str(path), entries, problems)
    for text in search:
        key, sep, value = text.partition("=")
        where = f"--search {text}"
        if not sep or not key:
            problems.append(Problem(where, None, "",
                                    "expected KEY=SPEC, e.g. --search 'model.1.units={int: [10, 1000]}'"))
            continue
        try:
            entries[key] = (specs.read_yaml(value), (where, None))
        except yaml.YAMLError:
            problems.append(Problem(where, None, key, f"not readable as YAML; expected e.g. {EXAMPLE}"))
    fixed = [*fixed, *overrides]
    try:
        spec = specs.parse_spec(spec_text, str(spec_path), fixed)
    except SpecError as err:
        raise SpecError(problems + _relocate(err.problems, places)) from None
    params = {}
    for name, (value, (file, line)) in entries.items():
        param = _param(name, value, spec, lambda path, message, f=file, n=line: problems.append(
            Problem(f, n, path, message)))
        if param:
            params[name] = param
    for param in params.values():
        problems += _check_values(param, spec_text, str(spec_path), fixed, entries[param.name][1])
    if not params and not problems:
        problems.append(Problem(str(space_file or spec_path), None, "search",
                                "nothing to search: add a `search:` section, a space file (--space), "
                                "or --search KEY=SPEC, e.g. --search 'train.optimizer.learning_rate="
                                "{float: [1.0e-4, 1.0e-2], log: true}'"))
    if problems:
        raise SpecError(sorted(problems, key=lambda p: (p.file, p.line or 0)))
    return Space(spec, spec_text, str(spec_path), fixed, params)


def _read(path):
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: cannot read it ({err})") from None


def _collect(raw, section, origins, source, entries, problems):
    """Add the `search:` mapping's entries to `entries` as name -> (value, (file, line))."""
    if raw is None:
        return
    if not isinstance(raw, dict):
        problems.append(specs.locate(origins, source, section, f"must be a mapping of field path to {EXAMPLE}"))
        return
    for name, value in raw.items():
        entries[name] = (value, origins.get(f"{section}.{name}", (source, None)))


def _read_space_file(raw, origins, source, entries, problems):
    """A space file's `search:` into `entries`; its `set:` as (override strings, {--set string: (file, line)})."""
    allowed = ("search", "set")
    if not isinstance(raw, dict) or "search" not in raw:
        problems.append(Problem(source, None, "", "a search space file is a mapping with a `search:` section "
                                "(and optionally `set:`, fields fixed for the whole study)"))
        return [], {}
    for key in raw:
        if key not in allowed:
            problems.append(specs.locate(origins, source, str(key), "unknown section"
                                         + checks.did_you_mean(str(key), allowed)
                                         + f"; allowed: {', '.join(allowed)}"))
    _collect(raw["search"], "search", origins, source, entries, problems)
    fixed = raw.get("set") or {}
    if not isinstance(fixed, dict):
        problems.append(specs.locate(origins, source, "set", "must be a mapping of field path to value, "
                                      "e.g. {train.optimizer.name: sgd}"))
        return [], {}
    overrides = [f"{path}={json.dumps(value)}" for path, value in fixed.items()]
    places = {f"--set {o}": origins.get(f"set.{path}", (source, None)) for o, path in zip(overrides, fixed)}
    return overrides, places


def _relocate(problems, places):
    """Problems found through generated `--set` strings, pointed back at the line that wrote them."""
    return [Problem(*places[p.file], p.path, p.message) if p.file in places else p for p in problems]


def _param(name, value, spec, problem):
    """A Param from one entry, or None after reporting what is wrong with its shape."""
    if not isinstance(value, dict) or len([k for k in value if k in KINDS]) != 1:
        problem(name, f"must be one of {EXAMPLE}")
        return None
    kind = next(k for k in value if k in KINDS)
    for option in value:
        if option != kind and option not in OPTIONS[kind]:
            allowed = OPTIONS[kind] or ("none",)
            problem(name, f"unknown option '{option}' for {kind}" + checks.did_you_mean(str(option), OPTIONS[kind])
                    + f"; allowed: {', '.join(allowed)}")
            return None
    target = _target(name, spec, problem)
    if target is None:
        return None
    if kind == "choice":
        return _choice(name, target, value["choice"], problem)
    return _range(name, target, kind, value, problem)


def _target(name, spec, problem):
    """The field `name` sets: a layer by its bare-value form sets the layer's main argument."""
    if any(name == f or name.startswith(f + ".") for f in FIXED_FIELDS):
        problem(name, "cannot be searched: every trial must be measured on the same data and hold-out")
        return None
    entry = specs.find_entry(spec.model, name)
    if entry is None:
        if re.fullmatch(r"model\.\d+", name):
            problem(name, f"no such layer (the model has {len(spec.model)})")
            return None
        return name
    kind = layers.LAYERS.get(entry.type)
    if kind is None or not kind.primary:
        what = "block" if entry.block else "layer"
        problem(name, f"a '{entry.type}' {what} has no bare-value form: name its argument, e.g. {name}.ARGUMENT")
        return None
    return f"{name}.{kind.primary}"


def _choice(name, target, choices, problem):
    if not isinstance(choices, list) or not choices:
        problem(name, "choice: must be a non-empty list of values, e.g. {choice: [sgd, adam]}")
        return None
    plain = (str, int, float, bool, type(None))
    if not all(isinstance(c, plain) for c in choices):
        problem(name, "choice: each value must be a plain number, word, true/false or null")
        return None
    if len(set(map(json.dumps, choices))) != len(choices):
        problem(name, "choice: a value is listed twice")
        return None
    return Param(name, target, "choice", choices=tuple(choices))


def _range(name, target, kind, value, problem):
    bounds, log, step = value[kind], value.get("log", False), value.get("step")
    number = int if kind == "int" else (int, float)
    if (not isinstance(bounds, list) or len(bounds) != 2
            or not all(isinstance(b, number) and not isinstance(b, bool) and math.isfinite(b) for b in bounds)):
        what = "whole numbers" if kind == "int" else "numbers"
        problem(name, f"{kind}: must be [LOW, HIGH], two {what}, e.g. {{{kind}: [10, 1000]}}")
        return None
    low, high = bounds
    messages = []
    if low >= high:
        messages.append(f"empty range [{low}, {high}]: LOW must be below HIGH")
    if not isinstance(log, bool):
        messages.append(f"log: must be true or false, got {log!r}")
    elif log and low <= 0:
        messages.append(f"a log range must start above 0, got {low}")
    if step is not None:
        if not isinstance(step, number) or isinstance(step, bool) or step <= 0:
            messages.append(f"step: must be a {'whole ' if kind == 'int' else ''}number above 0, got {step!r}")
        elif log:
            messages.append("step and log cannot be combined (Optuna samples a log range continuously)")
    for message in messages:
        problem(name, message)
    return None if messages else Param(name, target, kind, low=low, high=high, log=log, step=step)


def _check_values(param, text, source, fixed, location):
    """Resolve the spec with each end of the range (each choice) and report what does not validate.

    A problem every value shares is the path's own (an unknown field): it is said once.
    """
    found = {}
    for value in param.values_to_check():
        try:
            specs.parse_spec(text, source, [*fixed, param.override(value)])
            found[json.dumps(value)] = set()
        except SpecError as err:
            found[json.dumps(value)] = {(p.path, p.message) for p in err.problems}
    common = set.intersection(*found.values())
    problems = [Problem(*location, path, message) for path, message in sorted(common)]
    for value, each in found.items():
        problems += [Problem(*location, path, f"with {param.name} = {value}: {message}")
                     for path, message in sorted(each - common)]
    return problems
