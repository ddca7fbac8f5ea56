"""Studies: a named set of experiments, each trained as ordinary runs, reported as one table.

A study file is plain YAML (bundled ones live in configs/studies/ and are found by
bare name, `seed_a`):

    name: seed_a                          # default: the file name
    description: "..."
    experiments:                          # in the order the table lists them
      A3:                                 # the experiment's name
        config: a3_width.yaml             # a bundled config, or a path (relative to this file)
        datasets: [mnist, fashion]        # default: the config's own
        set:                              # --set overrides; a list is a sweep, one run per value
          model.1.units: [10, 32, 100, 317, 1000]
        reported: {mnist: "about 0.9"}    # what the seed reported: text or a number (an accuracy),
                                          # one for all datasets or one per dataset
    compare: [[A4 naive, A4 tuned]]       # optional: learning curves drawn together, per dataset

Each experiment x dataset x swept value is one run in the runs directory, made by
`runner.train_all` like any other. The study's folder (RUNS_DIR/studies/NAME, with
the narrowing of a quick pass in its name) keeps study.json, which run each of
them is; running the study again skips finished runs and resumes unfinished ones.
Every pass writes its table as new Markdown and CSV files there, and for each
sweep a plot of the best validation loss and accuracy against the swept value and
one of the runs' learning curves overlaid.
"""

import csv
import io
import json
import shlex
import time
from dataclasses import dataclass, field

import yaml

from mnistcls import checks, data, plots, progress, report, runner, runs, runtime, spec as specs
from mnistcls.errors import Interrupted, Problem, SpecError, UsageError
from mnistcls.files import inside, name_part, read_json, write_json, write_text

STUDY_DIR = specs.CONFIG_DIR / "studies"
STATE_FILE = "study.json"
ESTIMATE_STEPS = 32  # training steps `--dry-run` times per distinct model (after bench's warm-up)

STUDY_KEYS = {"name", "description", "experiments", "compare"}
EXPERIMENT_KEYS = {"config", "datasets", "set", "reported"}


@dataclass
class Experiment:
    name: str
    config: str  # a path, or a bundled config's name
    datasets: list  # as written; empty: the config's own
    overrides: list  # --set strings; a sweep's values joined by commas
    reported: dict  # dataset -> the seed's figure; key None: for every dataset


@dataclass
class Study:
    name: str
    description: str
    source: str
    experiments: list
    compare: list  # groups of experiment names whose learning curves are drawn together
    problem: object = field(repr=False, default=None)  # problem(path, message): a Problem at that line


@dataclass
class Unit:
    """One run of a study: an experiment on one dataset with one value of each swept field."""

    experiment: Experiment
    job: runner.Job
    run: runs.Run | None = None  # the run recorded for it, if it can be used
    status: str = "new"  # new | resume | finished | running (in another process)

    @property
    def key(self):
        sweep = ", ".join(f"{k}={v}" for k, v in sorted(self.job.sweep.items()))
        return " | ".join(part for part in (self.experiment.name, self.job.dataset, sweep) if part)


# --- study files ------------------------------------------------------------------------

def bundled_studies():
    """The study files shipped in configs/studies/, sorted by name."""
    return sorted(STUDY_DIR.glob("*.yaml"))


def find_study(name_or_path):
    """A study file by path, or by bare name among the bundled studies (`seed_a` or `seed_a.yaml`)."""
    return specs.find_file(name_or_path, STUDY_DIR, "study")


def load_study(name_or_path):
    """Read and check a study file; raise one SpecError listing every problem (file:line)."""
    path = find_study(name_or_path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: cannot read the study file ({err})") from None
    raw, origins = specs.read_yaml_lines(text, source)

    def problem(path, message):
        return specs.locate(origins, source, path, message)
    problems = []

    def report_problem(where, message):
        problems.append(problem(where, message))

    if not isinstance(raw, dict) or not isinstance(raw.get("experiments"), dict) or not raw["experiments"]:
        raise SpecError([problem("experiments" if isinstance(raw, dict) else "",
                                 "a study needs `experiments:`, a mapping of experiment names to "
                                 "{config: ..., datasets: [...], set: {...}, reported: ...}")])
    _unknown_keys(raw, STUDY_KEYS, "", "field", report_problem)
    name, description = raw.get("name", path.stem), raw.get("description", "")
    for key, value in (("name", name), ("description", description)):
        if not isinstance(value, str):
            report_problem(key, f"must be a string, got {value!r}")
    experiments = [_experiment(str(key), value, path.parent, report_problem)
                   for key, value in raw["experiments"].items()]
    compare = _compare(raw.get("compare", []), [str(key) for key in raw["experiments"]], report_problem)
    if problems:
        raise SpecError(problems)
    return Study(str(name), description, source, experiments, compare, problem)


def _compare(groups, names, report_problem):
    """`compare: [[A4 naive, A4 tuned]]`: each group, a list of two or more experiment names."""
    if not isinstance(groups, list) or not all(isinstance(g, list) and len(g) >= 2 for g in groups):
        report_problem("compare", "must be a list of groups of experiments, e.g. [[A4 naive, A4 tuned]]")
        return []
    for i, group in enumerate(groups):
        for j, name in enumerate(group):
            if str(name) not in names:
                report_problem(f"compare.{i}.{j}", f"no experiment {name!r} in this study"
                               + checks.did_you_mean(str(name), names))
    return [[str(name) for name in group] for group in groups]


def _unknown_keys(mapping, allowed, where, what, report_problem):
    for key in mapping:
        if key not in allowed:
            report_problem(f"{where}.{key}" if where else str(key), f"unknown {what}"
                           + checks.did_you_mean(str(key), allowed) + f"; allowed: {', '.join(sorted(allowed))}")


def _experiment(name, raw, folder, report_problem):
    where = f"experiments.{name}"
    if not isinstance(raw, dict):
        report_problem(where, "an experiment is a mapping: {config: ..., datasets: [...], set: {...}, reported: ...}")
        return None
    _unknown_keys(raw, EXPERIMENT_KEYS, where, "experiment field", report_problem)
    config = raw.get("config")
    if not isinstance(config, str) or not config:
        report_problem(f"{where}.config" if "config" in raw else where,
                       "needs `config:`, a bundled config (e.g. cnn_relu.yaml) or a spec file")
    else:
        beside = folder / config  # a path in a study file is relative to the study file
        config = str(beside) if beside.is_file() else config
        try:
            specs.find_config(config)
        except UsageError as err:
            report_problem(f"{where}.config", f"unknown config: {err}")
    datasets = raw.get("datasets", [])
    datasets = [datasets] if isinstance(datasets, str) else datasets
    if not isinstance(datasets, list) or not all(isinstance(d, str) and d for d in datasets):
        report_problem(f"{where}.datasets", f"must be a list of dataset names or folders, got {datasets!r}")
        datasets = []
    # A folder is relative to the study file, like its configs, and recorded absolute.
    datasets = [str((folder / d).resolve()) if d not in data.DATASET_NAMES and (folder / d).is_dir() else d
                for d in datasets]
    overrides = _overrides(raw.get("set") or {}, f"{where}.set", report_problem)
    reported = raw.get("reported")
    figures = reported.items() if isinstance(reported, dict) else [(None, reported)]
    for key, figure in figures:
        path = f"{where}.reported" + (f".{key}" if key is not None else "")
        if figure is not None and not isinstance(figure, (str, int, float)):
            report_problem(path, f"must be text or a number (an accuracy), got {figure!r}")
        if key is not None and datasets and key not in datasets:
            report_problem(path, "not a dataset of this experiment" + checks.did_you_mean(str(key), datasets)
                           + f"; its datasets: {', '.join(datasets)}")
    return Experiment(name, config, datasets, overrides, dict(figures))


def _overrides(raw, where, report_problem):
    """`set:` as --set strings: {key: value} -> key=value; {key: [a, b]} -> key=a,b (a sweep)."""
    if not isinstance(raw, dict):
        report_problem(where, "must be a mapping of field paths to values, e.g. {train.epochs: 5}")
        return []
    overrides = []
    for key, value in raw.items():
        if isinstance(value, list):
            if not value or not all(isinstance(v, (str, int, float, bool)) and "," not in str(v) for v in value):
                report_problem(f"{where}.{key}", "a sweep is a non-empty list of plain values (numbers or words "
                                                 f"without commas), got {value!r}")
                continue
            if len({_value_text(v) for v in value}) < len(value):
                report_problem(f"{where}.{key}", f"a sweep names each value once, got {value!r}")
                continue
            overrides.append(f"{key}={','.join(_value_text(v) for v in value)}")
        else:
            overrides.append(f"{key}={_value_text(value)}")
    return overrides


def _value_text(value):
    """A YAML value as the text of a --set (read back as YAML by spec)."""
    if isinstance(value, str):
        return value
    return json.dumps(value)  # numbers, true/false/null, mappings: JSON is YAML


# --- planning ---------------------------------------------------------------------------

def plan_study(study, *, epochs=None, datasets=()):
    """Every Unit of `study`, its spec checked; raise one SpecError listing every problem.

    `epochs` overrides every experiment's; `datasets` narrows the study: a dataset
    the study names keeps only its runs, any other (a folder) is run by every experiment.
    """
    extra = [f"train.epochs={epochs}"] if epochs else []
    problems, planned = [], []
    for experiment in study.experiments:
        try:
            # Without `datasets:`, the one the spec names (a `set: {data.dataset: ...}` included).
            own = experiment.datasets or [
                runner.plan([experiment.config], [], [*experiment.overrides, *extra])[0].dataset]
            planned.append((experiment, own))
        except SpecError as err:
            problems += [p for p in _in_study(err.problems, experiment, study) if p not in problems]
    named = {d for _, own in planned for d in own}
    units = []
    for experiment, own in planned:
        chosen = own if not datasets else [d for d in own if d in datasets] + [d for d in datasets if d not in named]
        if not chosen:
            continue
        try:
            planned_jobs = runner.plan([experiment.config], chosen, [*experiment.overrides, *extra])
            # plan() varies the dataset fastest; the table reads better with each dataset's runs together.
            order = [job.dataset for job in planned_jobs[:len(chosen)]]
            units += [Unit(experiment, job) for job in sorted(planned_jobs, key=lambda j: order.index(j.dataset))]
        except SpecError as err:
            problems += [p for p in _in_study(err.problems, experiment, study) if p not in problems]
    if problems:
        raise SpecError(problems)
    return units


def _in_study(problems, experiment, study):
    """Problems of a `set:` override, located at its line in the study file instead of at '--set ...'."""
    located = []
    for p in problems:
        if p.file.startswith("--set "):
            key = p.file[len("--set "):].partition("=")[0]
            where = study.problem(f"experiments.{experiment.name}.set.{key}", p.message)
            p = Problem(where.file, where.line, f"experiments.{experiment.name}.set.{p.path}", p.message)
        if p not in located:  # each value of a sweep has the same problem
            located.append(p)
    return located


def study_folder(study, *, epochs=None, datasets=(), runs_directory=None):
    """RUNS_DIR/studies/NAME[-epochsN][-DATASET...]: a narrowed pass keeps its own state and tables."""
    # Sorted: `-d mnist -d fashion` and `-d fashion -d mnist` are one pass.
    parts = [study.name, *([f"epochs{epochs}"] if epochs else []), *sorted(set(map(data.dataset_key, datasets)))]
    return inside(runs.runs_dir(runs_directory) / "studies", "-".join(parts))


def _take_stock(units, folder, runs_directory):
    """Set each unit's run and status from the study's state; a recorded run of another spec is not used."""
    recorded = _recorded_runs(folder)
    for unit in units:
        run_id = recorded.get(unit.key)
        path = runs.runs_dir(runs_directory) / str(run_id)
        if not run_id or not (path / "run.json").is_file() or not _same_spec(unit.job.spec, path):
            continue
        unit.run = runs.Run(path)
        status = unit.run.status
        # A diverged run is an outcome (its learning rate is too high), not something to resume.
        unit.status = status if status in ("finished", "running", "diverged") else "resume"


def _recorded_runs(folder):
    """The study's state: unit key -> run id (empty for a new study, or a state file that is not one)."""
    state = read_json(folder / STATE_FILE, {})
    recorded = state.get("runs") if isinstance(state, dict) else None
    return recorded if isinstance(recorded, dict) else {}


def _record_run(folder, header, key, run_id):
    """Add `key` -> `run_id` to the study's state, under its lock and from the file as it is now, so that
    processes recording runs of one study at once keep each other's."""
    import filelock

    folder.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(folder / f"{STATE_FILE}.lock", timeout=60):
        write_json(folder / STATE_FILE, {**header, "runs": {**_recorded_runs(folder), key: run_id}})


def _same_spec(spec, run_path):
    try:
        recorded = specs.read_yaml((run_path / "spec.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    return recorded == specs.read_yaml(yaml.safe_dump(spec.to_dict(), sort_keys=False))


def prepare(name_or_path, *, epochs=None, datasets=(), runs_directory=None):
    """(study, its folder, its units with what is done already)."""
    study = load_study(name_or_path)
    units = plan_study(study, epochs=epochs, datasets=datasets)
    folder = study_folder(study, epochs=epochs, datasets=datasets, runs_directory=runs_directory)
    _take_stock(units, folder, runs_directory)
    return study, folder, units


# --- dry run ----------------------------------------------------------------------------

def dry_run(name_or_path, *, epochs=None, datasets=(), runs_directory=None, device=runtime.DEFAULT_DEVICE):
    """What a pass would train and how long it would take, from `bench`; trains nothing.

    Returns {"study", "folder", "units": [{"experiment", "dataset", "sweep", "status",
    "run", "epochs", "seconds"}], "seconds", "device"}.
    """
    from mnistcls import bench  # imports TensorFlow

    study, folder, units = prepare(name_or_path, epochs=epochs, datasets=datasets, runs_directory=runs_directory)
    placement = runtime.select_strategy(device)
    speeds, rows = {}, []
    for unit in units:
        spec = unit.job.spec
        to_train = 0 if unit.status in ("finished", "running", "diverged") else spec.train.epochs - len(
            unit.run.history if unit.run else [])
        seconds = 0.0
        if to_train:
            precision = runtime.choose_precision(spec.train.precision, placement.on_gpu)
            # Speed depends on the layers, the batch and the precision, not on the rest of the recipe.
            key = json.dumps([spec.to_dict()["model"], spec.train.batch_size, spec.train.steps_per_execution,
                              precision, unit.job.dataset])
            if key not in speeds:
                speeds[key] = bench.measure(spec, strategy=placement.strategy, precision=precision,
                                            steps=ESTIMATE_STEPS,
                                            workload=runner.workload(unit.job.dataset)).seconds_per_epoch
            seconds = to_train * speeds[key]
        rows.append({**_identity(unit), "status": unit.status, "epochs": to_train, "seconds": seconds})
    return {"study": study.name, "folder": str(folder), "units": rows, "seconds": sum(r["seconds"] for r in rows),
            "device": placement.description}


def _identity(unit):
    return {"experiment": unit.experiment.name, "dataset": data.dataset_label(unit.job.dataset),
            "sweep": dict(unit.job.sweep), "run": unit.run.id if unit.run else None}


# --- running ----------------------------------------------------------------------------

def run_study(name_or_path, *, epochs=None, datasets=(), runs_directory=None, data_dir=None, offline=None,
              device=runtime.DEFAULT_DEVICE, reporter=progress.SILENT, new_file):
    """Train what is left of a study, then write its table (Markdown, CSV) and sweep plots.

    `new_file(path)` gives a path that is not taken yet (the CLI's rule for new files).
    Returns {"study", "description", "folder", "skipped", "trained", "rows", "files"}:
    one row per unit (see `_row`); files: {"markdown", "csv", "sweeps": [paths], "curves": [paths]}.
    """
    study, folder, units = prepare(name_or_path, epochs=epochs, datasets=datasets, runs_directory=runs_directory)
    header = {"study": study.name, "file": study.source, "epochs": epochs, "datasets": list(datasets)}
    by_job = {id(unit.job): unit for unit in units}

    def record(job, run):  # as soon as a run has a folder, so that an interrupted one is resumed next time
        by_job[id(job)].run = run
        _record_run(folder, header, by_job[id(job)].key, run.id)

    running = [unit.run for unit in units if unit.status == "running"]
    if running:
        raise UsageError(f"run {running[0].id} of this study is still running (process {running[0].info.get('pid')} "
                         f"on {running[0].info.get('host')}): wait for it, or stop it and run the study again")
    to_train = [unit for unit in units if unit.status not in ("finished", "diverged")]
    planned = []
    for unit in to_train:
        if unit.status == "resume":
            unit.job = runner.resumed_job(str(unit.run.path), runs_directory)
            by_job[id(unit.job)] = unit
        planned.append(unit.job)
    if planned:
        try:
            runner.train_all(None, None, None, planned=planned, on_run=record, device=device,
                           runs_directory=runs_directory, data_dir=data_dir, offline=offline, reporter=reporter)
        except Interrupted as err:
            raise Interrupted(f"{err}; or run the study again, which resumes it: mnistcls study "
                              f"{shlex.quote(str(name_or_path))}{_narrowing_options(epochs, datasets)}") from None
    rows = [_row(unit) for unit in units]
    folder.mkdir(parents=True, exist_ok=True)
    prefix = folder / time.strftime("%Y%m%d-%H%M%S")
    files = {"markdown": str(_write(new_file(f"{prefix}-results.md"), markdown(study, rows))),
             "csv": str(_write(new_file(f"{prefix}-results.csv"), csv_text(rows))),
             **_sweep_plots(units, prefix, new_file)}
    files["curves"] += _compared_curves(study, units, prefix, new_file)
    return {"study": study.name, "description": study.description, "folder": str(folder),
            "skipped": len(units) - len(to_train), "trained": len(to_train), "rows": rows, "files": files}


def _narrowing_options(epochs, datasets):
    return (f" --epochs {epochs}" if epochs else "") + "".join(f" --dataset {shlex.quote(d)}" for d in datasets)


def _row(unit):
    """A unit's figures: ours, and what the seed reported beside them."""
    run, spec = unit.run, unit.job.spec
    described = runs.describe(run)
    validation = spec.train.validation
    return {**_identity(unit), "config": spec.name, "params": described.get("params"),
            "test_accuracy": described.get("test_accuracy"),
            "best_accuracy_in_training": described.get("best_val_accuracy"),
            "best_loss_in_training": described.get("best_val_loss"),
            # Seed A validates on the test set: its "best validation accuracy" is the best test accuracy seen.
            "validated_on": "test set" if validation == "test" else f"{validation:.0%} of training set",
            "epochs": described.get("epochs_run"), "seconds": sum(row.get("seconds", 0) for row in run.history),
            "status": described.get("status"),
            "reported": unit.experiment.reported.get(unit.job.dataset,
                                                     unit.experiment.reported.get(None))}


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, text)


def markdown(study, rows):
    """The study's table as GitHub Markdown (numbers right-aligned), with its notes."""
    columns, cells = report.study_cells(rows)
    head = [c.rstrip(">") for c in columns]
    rule = ["---:" if c.endswith(">") else "---" for c in columns]
    lines = [f"# Study {study.name}", "", *([study.description, ""] if study.description else []),
             *("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in [head, rule, *cells]),
             "", report.STUDY_NOTE, ""]
    return "\n".join(lines)


CSV_FIELDS = ["experiment", "dataset", "sweep", "config", "params", "test_accuracy", "best_accuracy_in_training",
              "best_loss_in_training", "validated_on", "epochs", "seconds", "status", "reported", "run"]


def csv_text(rows):
    """The study's table as CSV: plain numbers (accuracies as fractions), one line per run."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "sweep": "; ".join(f"{k}={v}" for k, v in row["sweep"].items()),
                         "reported": "" if row["reported"] is None else row["reported"]})
    return out.getvalue()


def _sweep_plots(units, prefix, new_file):
    """For each sweep on each dataset: best validation loss and accuracy against the swept value
    (as the seed drew them against learning rate and width), and the runs' learning curves overlaid."""
    groups = {}
    for unit in units:
        if unit.job.sweep:
            groups.setdefault((unit.experiment.name, unit.job.dataset), []).append(unit)
    drawn = {"sweeps": [], "curves": []}
    for (experiment, dataset), members in groups.items():
        if len(members) < 2:
            continue
        name = f"{prefix}-{{}}-{name_part(experiment)}-{name_part(data.dataset_label(dataset))}.png"
        sweep = plots.sweep_picture([runs.describe(unit.run) for unit in members], new_file(name.format("sweep")))
        if sweep:
            drawn["sweeps"].append(sweep)
        drawn["curves"].append(_curves(members, new_file(name.format("curves")),
                                       f"{experiment} on {data.dataset_label(dataset)}"))
    return drawn


def _compared_curves(study, units, prefix, new_file):
    """The learning curves of each `compare:` group's runs in one picture per dataset (seed A's naive vs tuned)."""
    paths = []
    for group in study.compare:
        members = [unit for unit in units if unit.experiment.name in group]
        for dataset in dict.fromkeys(unit.job.dataset for unit in members):
            on_dataset = [unit for unit in members if unit.job.dataset == dataset]
            if len(on_dataset) < 2:
                continue
            label = data.dataset_label(dataset)
            name = f"{prefix}-curves-{'-vs-'.join(map(name_part, group))}-{name_part(label)}.png"
            paths.append(_curves(on_dataset, new_file(name), f"{' vs '.join(group)} on {label}"))
    return paths


def _curves(units, path, title):
    """The units' runs' learning curves in one picture, labelled by experiment and swept value."""
    curves = {report.experiment_text(_identity(unit)): unit.run.curves for unit in units}
    validation = plots.validated_on([unit.job.spec.train.validation for unit in units])
    return str(plots.learning_curves(curves, path, title=title, validation=validation))
