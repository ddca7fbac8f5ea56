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
    repeats: 3                            # optional: every run with seeds 0, 1, 2 (also per experiment)

Each experiment x dataset x swept value (x seed) is one run in the runs directory,
trained through runner like any other. The study's units of work live in an Optuna
storage (storages.py: by default the runs directory's studies.db, or a database or
journal file that several machines share), queued once as trials: every process
started on the study claims the next waiting one, atomically, until none is left,
and records each run's figures in the storage, so any process prints the whole
table. A claimed unit whose process is lost (Ctrl-C, kill -9, a lost machine) is
queued again and resumed from its run folder where that folder is on this machine.
Every report writes the table as new Markdown and CSV files in the study's folder
(RUNS_DIR/studies/NAME, with the narrowing of a quick pass in its name), and for
each sweep a plot of the best validation loss and accuracy against the swept value
and one of the runs' learning curves overlaid. With repeats, a row is the mean and
spread over the seeds, and differences between variants are tested against that
spread (Welch's t-test).
"""

import csv
import io
import json
import os
import shlex
import socket
import time
from dataclasses import dataclass, field

import yaml

from mnistcls import checks, data, metrics, plots, progress, report, runner, runs, runtime, spec as specs, storages
from mnistcls.errors import Interrupted, MnistclsError, Problem, SpecError, UsageError
from mnistcls.files import inside, name_part, write_text

STUDY_DIR = specs.CONFIG_DIR / "studies"
ESTIMATE_STEPS = 32  # training steps `--dry-run` times per distinct model (after bench's warm-up)

STUDY_KEYS = {"name", "description", "experiments", "compare", "repeats"}
EXPERIMENT_KEYS = {"config", "datasets", "set", "reported", "repeats"}
MAX_REPEATS = 100


@dataclass
class Experiment:
    name: str
    config: str  # a path, or a bundled config's name
    datasets: list  # as written; empty: the config's own
    overrides: list  # --set strings; a sweep's values joined by commas
    reported: dict  # dataset -> the seed's figure; key None: for every dataset
    repeats: int | None = None  # runs with seeds 0..repeats-1; None: the study's


@dataclass
class Study:
    name: str
    description: str
    source: str
    experiments: list
    compare: list  # groups of experiment names whose learning curves are drawn together
    repeats: int = 1  # runs of each experiment, with seeds 0..repeats-1 (an experiment may say otherwise)
    problem: object = field(repr=False, default=None)  # problem(path, message): a Problem at that line


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
    repeats = _repeats(raw.get("repeats", 1), "repeats", report_problem)
    if problems:
        raise SpecError(problems)
    return Study(str(name), description, source, experiments, compare, repeats, problem)


def _repeats(value, where, report_problem):
    problem = checks.integer(value, 1) or (f"must be <= {MAX_REPEATS}, got {value}" if value > MAX_REPEATS else None)
    if problem:
        report_problem(where, problem)
        return 1
    return value


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
    repeats = _repeats(raw["repeats"], f"{where}.repeats", report_problem) if "repeats" in raw else None
    return Experiment(name, config, datasets, overrides, dict(figures), repeats)


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

@dataclass
class Unit:
    """One run of a study: an experiment on one dataset with one value of each swept field (and one seed)."""

    experiment: Experiment
    job: runner.Job
    seed: int | None = None  # the repeat's train.seed, when the study repeats its runs

    @property
    def group(self):
        """What the unit is, seeds aside: its row of the table."""
        sweep = ", ".join(f"{k}={v}" for k, v in sorted(self.job.sweep.items()))
        return " | ".join(part for part in (self.experiment.name, self.job.dataset, sweep) if part)

    @property
    def key(self):
        return self.group + ("" if self.seed is None else f" | seed={self.seed}")


def plan_study(study, *, epochs=None, datasets=(), repeats=None):
    """Every Unit of `study`, its spec checked; raise one SpecError listing every problem.

    `epochs` overrides every experiment's; `datasets` narrows the study: a dataset
    the study names keeps only its runs, any other (a folder) is run by every
    experiment. `repeats` (default: the experiment's, else the study's) trains each
    run with seeds 0..repeats-1.
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
        count = repeats or experiment.repeats or study.repeats
        seeds = [None] if count == 1 else range(count)
        try:
            for seed in seeds:
                seeded = [] if seed is None else [f"train.seed={seed}"]
                planned_jobs = runner.plan([experiment.config], chosen, [*experiment.overrides, *extra, *seeded])
                # plan() varies the dataset fastest; the table reads better with each dataset's runs together.
                order = [job.dataset for job in planned_jobs[:len(chosen)]]
                units += [Unit(experiment, job, seed)
                          for job in sorted(planned_jobs, key=lambda j: order.index(j.dataset))]
        except SpecError as err:
            problems += [p for p in _in_study(err.problems, experiment, study) if p not in problems]
    if problems:
        raise SpecError(problems)
    return sorted(units, key=lambda unit: [u.group for u in units].index(unit.group))  # a group's seeds together


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


@dataclass
class Pass:
    """A study narrowed to what one command asks for: its units, its folder and its state in the storage."""

    study: Study
    folder: object  # Path
    units: list
    storage: str | None  # --storage, None for the runs directory's default
    runs_directory: object

    @property
    def name(self):
        """The pass' name in the storage: its folder's, which says the narrowing."""
        return f"study:{self.folder.name}"

    def definition(self):
        """What every process working on this pass must agree on: each unit and its resolved spec."""
        return json.loads(json.dumps({"units": [[unit.key, unit.job.spec.to_dict()] for unit in self.units]}))


def prepare(name_or_path, *, epochs=None, datasets=(), repeats=None, storage=None, runs_directory=None):
    study = load_study(name_or_path)
    units = plan_study(study, epochs=epochs, datasets=datasets, repeats=repeats)
    folder = study_folder(study, epochs=epochs, datasets=datasets, runs_directory=runs_directory)
    return Pass(study, folder, units, storage, runs_directory)


# --- the board: a pass' units as trials in an Optuna storage -------------------------------

READY_SECONDS = 60  # how long a process waits for the one that creates a pass' board to queue its units


def open_board(work, *, create):
    """The pass' Optuna study, its units queued once as WAITING trials (by whichever process creates it).

    With `create` false, None where the pass has no board yet (nothing trained). A
    pass started with another definition (a changed study file, other --repeats)
    is a UsageError: its runs would not be the ones the table names.
    """
    import optuna

    if not create and work.storage is None and not (runs.runs_dir(work.runs_directory) / storages.STORAGE_FILE).is_file():
        return None  # the default storage does not exist yet: nothing to read, and nothing is made
    store, _ = storages.open_storage(work.storage, work.runs_directory)
    wanted = work.definition()
    if not create:
        try:
            board = optuna.load_study(study_name=work.name, storage=store)
        except KeyError:
            return None
        if not board.user_attrs.get("ready"):
            return None
    else:
        try:
            board = optuna.create_study(storage=store, study_name=work.name, direction="maximize")
        except optuna.exceptions.DuplicatedStudyError:
            board = optuna.load_study(study_name=work.name, storage=store)
        else:  # this process made it: it alone queues the units
            board.set_user_attr("definition", wanted)
            for unit in work.units:
                board.enqueue_trial({}, user_attrs={"unit": unit.key})
            board.set_user_attr("ready", True)
    deadline = time.monotonic() + READY_SECONDS
    while not board.user_attrs.get("ready"):
        if time.monotonic() > deadline:
            raise MnistclsError(f"{work.name}: the process that started this study did not queue its runs within "
                                f"{READY_SECONDS} s; start the study again")
        time.sleep(0.5)
    if board.user_attrs.get("definition") != wanted:
        raise UsageError(f"study {work.study.name} ({work.folder.name}) was started with other experiments, specs, "
                         "datasets or repeats than the study file gives now; run it as it was, or give the study "
                         "file another name: to start a new study")
    return board


def unit_states(work, board):
    """{unit key: the latest trial of that unit (a FrozenTrial), or None if it was never queued}."""
    latest = {}
    for trial in board.get_trials(deepcopy=False) if board else []:
        key = trial.user_attrs.get("unit")
        if key is not None:
            latest[key] = trial  # trials are in order: a retried unit's copy comes last
    return {unit.key: latest.get(unit.key) for unit in work.units}


def _status(trial):
    """A unit's state in words: waiting, running, finished (or diverged, at chance), failed."""
    from optuna.trial import TrialState

    if trial is None or trial.state == TrialState.WAITING:
        return "waiting"
    if trial.state == TrialState.RUNNING:
        return "running"
    if trial.state == TrialState.COMPLETE:
        return trial.user_attrs.get("figures", {}).get("status", "finished")
    return "failed"


# --- dry run and status -----------------------------------------------------------------

def dry_run(name_or_path, *, epochs=None, datasets=(), repeats=None, storage=None, runs_directory=None,
            device=runtime.DEFAULT_DEVICE):
    """What a pass would train and how long it would take, from `bench`; trains nothing and makes nothing.

    Returns {"study", "folder", "units": [{"experiment", "dataset", "sweep", "seed", "status", "run",
    "epochs", "seconds"}], "seconds", "device"}; status: new, resume (its run folder is here), running,
    finished (or diverged, at chance), failed.
    """
    from mnistcls import bench  # imports TensorFlow

    storages.quiet_optuna()
    work = prepare(name_or_path, epochs=epochs, datasets=datasets, repeats=repeats, storage=storage,
                   runs_directory=runs_directory)
    states = unit_states(work, open_board(work, create=False))
    placement = runtime.select_strategy(device)
    speeds, rows = {}, []
    for unit in work.units:
        trial = states[unit.key]
        lost = trial is not None and storages.lost_here(trial, work.runs_directory)
        status = "waiting" if lost else _status(trial)  # a lost unit is queued again at the start
        resumable = _resumable_run(trial, work.runs_directory, unit) if status in ("waiting", "failed") else None
        status = {"waiting": "resume" if resumable else "new"}.get(status, status)
        spec = unit.job.spec
        to_train = spec.train.epochs - len(resumable.history) if resumable else spec.train.epochs
        to_train = to_train if status in ("new", "resume") else 0
        seconds = 0.0
        if to_train:
            precision = runtime.choose_precision(spec.train.precision, placement.on_gpu)
            # Speed depends on the layers, the batch and the precision, not on the rest of the recipe.
            key = json.dumps([spec.to_dict()["model"], spec.train.batch_size, spec.train.steps_per_execution,
                              precision, unit.job.dataset])
            if key not in speeds:
                speeds[key] = bench.measure(spec, strategy=placement.strategy, precision=precision,
                                            steps=ESTIMATE_STEPS,
                                            workload=bench.workload(unit.job.dataset)).seconds_per_epoch
            seconds = to_train * speeds[key]
        rows.append({**_identity(unit), "status": status, "run": (trial.user_attrs.get("run") if trial else None),
                     "epochs": to_train, "seconds": seconds})
    return {"study": work.study.name, "folder": str(work.folder), "units": rows,
            "seconds": sum(r["seconds"] for r in rows), "device": placement.description}


def status(name_or_path, *, epochs=None, datasets=(), repeats=None, storage=None, runs_directory=None):
    """Where each unit of a pass stands, from the storage: {"study", "folder", "units": [{"experiment",
    "dataset", "sweep", "seed", "status", "run", "host", "since", "epoch", "error"}], "counts"}."""
    storages.quiet_optuna()
    work = prepare(name_or_path, epochs=epochs, datasets=datasets, repeats=repeats, storage=storage,
                   runs_directory=runs_directory)
    rows = []
    for unit, trial in zip(work.units, unit_states(work, open_board(work, create=False)).values()):
        attrs = trial.user_attrs if trial else {}
        state = "killed" if trial is not None and storages.lost_here(trial, work.runs_directory) else _status(trial)
        rows.append({**_identity(unit), "status": state, "run": attrs.get("run"), "host": attrs.get("host"),
                     "since": trial.datetime_start.isoformat(timespec="seconds")
                     if trial and trial.datetime_start and state == "running" else None,
                     "epoch": attrs.get("epoch") if state == "running" else None, "error": attrs.get("error")})
    return {"study": work.study.name, "folder": str(work.folder), "units": rows, "counts": _counts(rows)}


def _counts(rows):
    """{status: how many rows have it}, in the order the statuses first appear."""
    return {state: sum(row["status"] == state for row in rows) for state in dict.fromkeys(r["status"] for r in rows)}


def _identity(unit):
    return {"experiment": unit.experiment.name, "dataset": data.dataset_label(unit.job.dataset),
            "sweep": dict(unit.job.sweep), "seed": unit.seed}


def _resumable_run(trial, runs_directory, unit):
    """The run folder of a unit's earlier try, where it is on this machine and can be resumed with the unit's
    own spec; else None."""
    run = storages.local_run(trial, runs_directory) if trial is not None else None
    if run is None or run.status not in ("interrupted", "killed", "failed") or not _same_spec(unit.job.spec, run.path):
        return None
    return run


def _same_spec(spec, run_path):
    try:
        recorded = specs.read_yaml((run_path / "spec.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    return recorded == specs.read_yaml(yaml.safe_dump(spec.to_dict(), sort_keys=False))


# --- running ----------------------------------------------------------------------------

class _UnitFailed(Exception):
    """A unit's own error (recorded on its trial); the other units still train."""


def run_study(name_or_path, *, epochs=None, datasets=(), repeats=None, storage=None, report_only=False,
              runs_directory=None, data_dir=None, offline=None, device=runtime.DEFAULT_DEVICE,
              reporter=progress.SILENT, verbose=False, new_file):
    """Train the units of a pass that no process has claimed yet, then write its table (Markdown, CSV) and
    sweep plots from the figures in the storage. `report_only`: train nothing.

    `new_file(path)` gives a path that is not taken yet (the CLI's rule for new files).
    Returns {"study", "description", "folder", "trained", "rows", "groups", "files", "counts"}:
    one row per unit (see `_row`), one group per row of the table (see `_groups`).
    """
    storages.quiet_optuna(verbose)
    work = prepare(name_or_path, epochs=epochs, datasets=datasets, repeats=repeats, storage=storage,
                   runs_directory=runs_directory)
    board = open_board(work, create=not report_only)
    trained = [] if report_only else _work_on(work, board, device, data_dir, offline, reporter, name_or_path,
                                              epochs, datasets, repeats, storage)
    states = unit_states(work, board)
    rows = [_row(unit, states[unit.key]) for unit in work.units]
    groups = _groups(work, rows)
    work.folder.mkdir(parents=True, exist_ok=True)
    prefix = work.folder / time.strftime("%Y%m%d-%H%M%S")
    files = {"markdown": str(_write(new_file(f"{prefix}-results.md"), markdown(work.study, groups))),
             "csv": str(_write(new_file(f"{prefix}-results.csv"), csv_text(groups))),
             **_sweep_plots(rows, groups, prefix, new_file)}
    files["curves"] += _compared_curves(work, rows, prefix, new_file)
    return {"study": work.study.name, "description": work.study.description, "folder": str(work.folder),
            "trained": trained, "rows": [{k: v for k, v in row.items() if k != "curves"} for row in rows],
            "groups": groups, "files": files, "counts": _counts(rows)}


def _work_on(work, board, device, data_dir, offline, reporter, name_or_path, epochs, datasets, repeats, storage):
    """Claim and train waiting units until none is left; the keys of those this process trained."""
    from optuna.trial import TrialState

    storages.end_lost_trials(board, work.runs_directory)
    if not board.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        return []
    placement = runner.place(device)
    if placement.num_workers > 1:
        raise UsageError("a study trains each run in one process: unset TF_CONFIG and start `mnistcls study` on "
                         "each machine with one --storage instead")
    loaded = runner.check_and_load([unit.job for unit in work.units], data_dir, offline, reporter)
    reporter.note(f"Study {work.study.name}: training on {placement.description}")
    claim = _Claim(work, {unit.key: unit for unit in work.units}, loaded, placement, reporter)

    def stop_when_none_waits(study, trial):
        storages.end_lost_trials(study, work.runs_directory)
        if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            study.stop()

    try:
        board.optimize(claim, catch=(_UnitFailed,), callbacks=[stop_when_none_waits])
    except KeyboardInterrupt:
        if claim.current is not None and board.trials[claim.current].state == TrialState.FAIL:
            storages.retry(board, board.trials[claim.current])
        raise Interrupted("interrupted: the run in progress keeps its last completed epoch and is queued again; "
                          f"continue the study (this or another process resumes it): mnistcls study "
                          f"{shlex.quote(str(name_or_path))}{_narrowing_options(epochs, datasets, repeats, storage)}"
                          ) from None
    return claim.trained


class _Claim:
    """The objective of a worker: train the unit of the trial Optuna gives it (the next WAITING one)."""

    def __init__(self, work, by_key, loaded, placement, reporter):
        self.work, self.by_key, self.loaded, self.placement, self.reporter = work, by_key, loaded, placement, reporter
        self.current = None
        self.trained = []

    def __call__(self, trial):
        import optuna

        from mnistcls.callbacks import AfterEachEpoch  # imports Keras

        key = trial.user_attrs.get("unit")
        if key not in self.by_key:  # another process took the last waiting unit a moment before
            trial.study.stop()
            raise optuna.TrialPruned("no unit left to claim")
        self.current = trial.number
        unit = self.by_key[key]
        earlier = _resumable_run(trial, self.work.runs_directory, unit)
        job = runner.resumed_job(str(earlier.path), self.work.runs_directory) if earlier else unit.job
        if trial.user_attrs.get("run") and not earlier:
            self.reporter.note(f"{key}: its earlier run {trial.user_attrs['run']} (on {trial.user_attrs.get('host')}) "
                               "cannot be resumed here: training it again")
        for name in ("run", "error", "epoch", "figures"):  # a retried unit starts with the attributes of its try
            if trial.user_attrs.get(name) is not None:
                trial.set_user_attr(name, None)
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        try:
            row = runner.train_one(job, self.loaded[unit.job.dataset], self.placement, self.work.runs_directory,
                                   self.reporter, on_run=lambda run: trial.set_user_attr("run", run.id),
                                   callbacks=[AfterEachEpoch(lambda epochs: trial.set_user_attr("epoch", epochs))])
        except Interrupted:
            trial.set_user_attr("error", "interrupted (Ctrl-C)")
            raise KeyboardInterrupt from None
        except MnistclsError as err:  # a unit's own failure (its data, a damaged folder): the others go on
            trial.set_user_attr("error", str(err))
            raise _UnitFailed(str(err)) from err
        except Exception as err:  # out of memory for its width, say
            trial.set_user_attr("error", f"{type(err).__name__}: {err}")
            raise _UnitFailed(str(err)) from err
        run = runs.find(row["run"], self.work.runs_directory)
        trial.set_user_attr("figures", _figures(run, row))
        self.trained.append(key)
        return row.get("test_accuracy") or 0.0


def _figures(run, row):
    """What the table, the plots and other machines need of a finished run, from its folder."""
    described = runs.describe(run)
    return {"status": row["status"], "params": described.get("params"),
            "test_accuracy": described.get("test_accuracy"),
            "best_val_accuracy": described.get("best_val_accuracy"), "best_val_loss": described.get("best_val_loss"),
            "epochs_run": described.get("epochs_run"), "validation": described.get("validation"),
            "seconds": sum(epoch.get("seconds", 0) for epoch in run.history), "curves": run.curves}


def _narrowing_options(epochs, datasets, repeats, storage):
    return ((f" --epochs {epochs}" if epochs else "") + "".join(f" --dataset {shlex.quote(d)}" for d in datasets)
            + (f" --repeats {repeats}" if repeats else "")
            + (f" --storage {shlex.quote(storages.without_password(storage))}" if storage else ""))


# --- the table ----------------------------------------------------------------------------

def _row(unit, trial):
    """A unit's figures as the storage has them (any machine's), and what the seed reported beside them."""
    figures = (trial.user_attrs.get("figures") if trial else None) or {}
    return {**_identity(unit), "config": unit.job.spec.name, "status": _status(trial),
            "run": trial.user_attrs.get("run") if trial else None, "host": trial.user_attrs.get("host") if trial else None,
            "params": figures.get("params"), "test_accuracy": figures.get("test_accuracy"),
            "best_accuracy_in_training": figures.get("best_val_accuracy"),
            "best_loss_in_training": figures.get("best_val_loss"),
            # Seed A validates on the test set: its "best validation accuracy" is the best test accuracy seen.
            "validation": unit.job.spec.train.validation,
            "epochs": figures.get("epochs_run"), "seconds": figures.get("seconds"),
            "reported": unit.experiment.reported.get(unit.job.dataset, unit.experiment.reported.get(None)),
            "curves": figures.get("curves")}


SPREAD_FIELDS = ("test_accuracy", "best_accuracy_in_training", "best_loss_in_training", "seconds", "epochs")


def _groups(work, rows):
    """One row of the table per unit group (its seeds together): the runs' figures' spread, and how the group
    compares with the best of the variants it is compared with (metrics.welch_p)."""
    by_group = {}
    for unit, row in zip(work.units, rows):
        by_group.setdefault(unit.group, []).append(row)
    groups = []
    for members in by_group.values():
        first = members[0]
        finished = [r for r in members if r["status"] == "finished"]
        groups.append({**{k: first[k] for k in ("experiment", "dataset", "sweep", "config", "validation",
                                                  "reported")},
                       "params": first["params"], "runs": len(members), "finished": len(finished),
                       "statuses": sorted({r["status"] for r in members}),
                       **{field: metrics.spread([r[field] for r in finished]) for field in SPREAD_FIELDS},
                       "test_accuracies": [r["test_accuracy"] for r in finished]})
    for family in _families(work, groups):
        _compare_within(family)
    return groups


def _families(work, groups):
    """Sets of groups whose rows are compared: the values of one sweep on one dataset, and each `compare:`
    group of experiments on one dataset."""
    families = {}
    for group in groups:
        if group["sweep"]:
            families.setdefault(("sweep", group["experiment"], group["dataset"]), []).append(group)
    for i, names in enumerate(work.study.compare):
        for group in groups:
            if group["experiment"] in names and not group["sweep"]:
                families.setdefault(("compare", i, group["dataset"]), []).append(group)
    return [family for family in families.values() if len(family) > 1]


def _compare_within(family):
    """Mark each group of `family` against the one with the best mean test accuracy."""
    scored = [g for g in family if g["test_accuracy"]["mean"] is not None]
    if len(scored) < 2:
        return
    best = max(scored, key=lambda g: g["test_accuracy"]["mean"])
    for group in scored:
        if group is best:
            group["comparison"] = {"best": True, "p": None, "differs": None}
            continue
        p = metrics.welch_p(group["test_accuracies"], best["test_accuracies"])
        group["comparison"] = {"best": False, "p": p, "differs": None if p is None else p < metrics.SIGNIFICANCE,
                               "difference": group["test_accuracy"]["mean"] - best["test_accuracy"]["mean"],
                               "against": report.experiment_text(best)}


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, text)


def markdown(study, groups):
    """The study's table as GitHub Markdown (numbers right-aligned), with its notes."""
    columns, cells = report.study_cells(groups, detailed=True)
    head = [c.rstrip(">") for c in columns]
    rule = ["---:" if c.endswith(">") else "---" for c in columns]
    lines = [f"# Study {study.name}", "", *([study.description, ""] if study.description else []),
             *("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in [head, rule, *cells]),
             "", report.study_note(groups), ""]
    return "\n".join(lines)


def csv_text(groups):
    """The study's table as CSV: plain numbers (accuracies as fractions), one line per row of the table, each
    figure's mean, standard deviation, minimum and maximum over its runs (seeds)."""
    out = io.StringIO()
    figures = [f"{field}_{part}" for field in SPREAD_FIELDS for part in ("mean", "std", "min", "max")]
    fields = ["experiment", "dataset", "sweep", "config", "params", "runs", "finished", *figures,
              "differs_from_best", "welch_p", "validated_on", "statuses", "reported"]
    writer = csv.DictWriter(out, fields, lineterminator="\n")
    writer.writeheader()
    for group in groups:
        comparison = group.get("comparison") or {}
        writer.writerow({
            **{k: group[k] for k in ("experiment", "dataset", "config", "params", "runs", "finished")},
            "validated_on": report.validation_words(group["validation"]),
            "sweep": "; ".join(f"{k}={v}" for k, v in group["sweep"].items()),
            **{f"{field}_{part}": "" if group[field][part] is None else group[field][part]
               for field in SPREAD_FIELDS for part in ("mean", "std", "min", "max")},
            "differs_from_best": "" if comparison.get("differs") is None else comparison["differs"],
            "welch_p": "" if comparison.get("p") is None else comparison["p"],
            "statuses": " ".join(group["statuses"]), "reported": "" if group["reported"] is None else group["reported"]})
    return out.getvalue()


def _sweep_plots(rows, groups, prefix, new_file):
    """For each sweep on each dataset: best validation loss and accuracy against the swept value (as the seed
    drew them against learning rate and width; with repeats, their mean and spread), and the runs' learning
    curves overlaid."""
    families = {}
    for group in groups:
        if group["sweep"]:
            families.setdefault((group["experiment"], group["dataset"]), []).append(group)
    drawn = {"sweeps": [], "curves": []}
    for (experiment, dataset), members in families.items():
        if len(members) < 2:
            continue
        name = f"{prefix}-{{}}-{name_part(experiment)}-{name_part(dataset)}.png"
        sweep = plots.sweep_of_groups(members, new_file(name.format("sweep")))
        if sweep:
            drawn["sweeps"].append(sweep)
        chosen = [row for row in rows if row["experiment"] == experiment and row["dataset"] == dataset]
        curves = _curves(chosen, new_file(name.format("curves")), f"{experiment} on {dataset}")
        if curves:
            drawn["curves"].append(curves)
    return drawn


def _compared_curves(work, rows, prefix, new_file):
    """The learning curves of each `compare:` group's runs in one picture per dataset (seed A's naive vs tuned)."""
    paths = []
    for group in work.study.compare:
        members = [row for row in rows if row["experiment"] in group]
        for dataset in dict.fromkeys(row["dataset"] for row in members):
            on_dataset = [row for row in members if row["dataset"] == dataset]
            if len({row["experiment"] for row in on_dataset}) < 2:
                continue
            name = f"{prefix}-curves-{'-vs-'.join(map(name_part, group))}-{name_part(dataset)}.png"
            curves = _curves(on_dataset, new_file(name), f"{' vs '.join(group)} on {dataset}")
            if curves:
                paths.append(curves)
    return paths


def _curves(rows, path, title):
    """The learning curves (from the storage) of the rows' finished runs in one picture, labelled by experiment,
    swept value and seed; None when no run has any."""
    curves = {report.experiment_text(row) + ("" if row["seed"] is None else f", seed {row['seed']}"): row["curves"]
              for row in rows if row.get("curves")}
    if not curves:
        return None
    validation = plots.validated_on([row["validation"] for row in rows])
    return str(plots.learning_curves(curves, path, title=title, validation=validation))
