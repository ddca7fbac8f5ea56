"""Run records: one new folder per training run under the runs directory.

    runs/20261123-153000_cnn_relu_fashion/
      run.json        what ran: config, dataset, status, versions, device, precision, data source
      spec.yaml       the fully resolved spec (overrides and seed applied); `--resume` reads it
      model.keras     the model after the last completed epoch (then the final one)
      history.json    per-epoch losses, accuracies, learning rate, seconds (also history.csv)
      metrics.json    final results: test accuracy and loss, best validation, time per epoch
      curves.png      learning curves (report draws it)
      confusion-DATASET.png, misclassified-DATASET.png   written by `mnistcls evaluate`
      backup/         previous.keras, the model of the epoch before model.keras, while a run is unfinished
      tensorboard/    TensorBoard logs

A folder is never reused or overwritten; every file in it is written atomically.
"""

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mnistcls.errors import MnistclsError, UsageError
from mnistcls.spec import STYLES, TEST_TIME_AUGMENTATIONS, DataSpec, read_yaml
from mnistcls.files import name_part, new_file, read_json, write_json, write_text
from mnistcls.metrics import history_figures


def runs_dir(path=None):
    """The runs directory: `--runs-dir`, else $MNISTCLS_RUNS_DIR, else ./runs."""
    return Path(path or os.environ.get("MNISTCLS_RUNS_DIR") or "runs")


def comparison_paths(directory=None):
    """The PNGs of a new `runs compare`: RUNS_DIR/comparisons/<time>-curves.png and -sweep.png, never taken."""
    prefix = runs_dir(directory) / "comparisons" / time.strftime("%Y%m%d-%H%M%S")
    return new_file(f"{prefix}-curves.png"), new_file(f"{prefix}-sweep.png")


LOCK_FILE = "run.lock"  # held by the process that trains the run (see `create` and `resume`)


@dataclass
class Run:
    path: Path
    lock: object = field(default=None, repr=False, compare=False)  # this process' hold on it, while training

    @property
    def id(self):
        return self.path.name

    @property
    def info(self):
        info = read_json(self.path / "run.json", {})
        return info if isinstance(info, dict) else {}

    @property
    def metrics(self):
        metrics = read_json(self.path / "metrics.json", {})
        return metrics if isinstance(metrics, dict) else {}

    @property
    def history(self):
        return read_json(self.path / "history.json", [])

    @property
    def curves(self):
        """The history per metric, as Keras' History.history has it: {"loss": [...], ...}."""
        history = self.history
        return {key: [row.get(key) for row in history] for key in dict.fromkeys(k for r in history for k in r)}

    @property
    def spec_text(self):
        try:
            return (self.path / "spec.yaml").read_text(encoding="utf-8")
        except OSError as err:
            raise UsageError(f"run {self.id}: cannot read its spec.yaml ({err.strerror}); "
                             "the run folder is damaged") from None

    @property
    def spec_data(self):
        """spec.yaml as plain data, read with the spec's limits; a UsageError where it is damaged."""
        try:
            return read_yaml(self.spec_text)
        except yaml.YAMLError as err:
            raise UsageError(f"run {self.id}: its spec.yaml cannot be read ({getattr(err, 'message', err)}); "
                             "the run folder is damaged") from None

    @property
    def status(self):
        """As recorded, except that a 'running' run whose process is gone was killed."""
        info = self.info
        status = info.get("status", "failed")
        if status == "running" and not self._trained_now(info):
            return "killed"
        return status

    def _trained_now(self, info):
        """Whether the process recorded in `info` still trains this run.

        Its lock tells, on any machine that shares the runs folder: a free lock means the
        process is gone, however it ended. Where the lock cannot be tried (a read-only
        folder), a process on this machine is looked up by its pid and start time.
        """
        if self.lock is not None:  # held here: the recorded process is this one, or it is gone
            return {key: info.get(key) for key in ("pid", "host", "process_started")} == _process()
        import filelock

        probe = filelock.FileLock(self.path / LOCK_FILE, timeout=0)
        try:
            probe.acquire()
        except filelock.Timeout:
            return True
        except OSError:
            return info.get("host") != socket.gethostname() or _alive(info.get("pid"), info.get("process_started"))
        probe.release()
        return False

    def release(self):
        """Let another process train this run (this process has finished with it)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def update(self, **fields):
        """Change some fields of run.json; a damaged run.json is an error, never replaced by those fields alone."""
        info = read_json(self.path / "run.json", None)
        if not isinstance(info, dict):
            raise MnistclsError(f"run {self.id}: its run.json is missing or damaged, so it was left as it is "
                                f"(not rewritten with only {', '.join(fields)}); repair or remove {self.path}")
        write_json(self.path / "run.json", {**info, **fields})


def picture_style(run):
    """The style (spec.STYLES) the run's training images were prepared in: its spec's data.style, else its dataset's."""
    style = _data_spec(run).picture_style()
    if style not in STYLES:
        raise UsageError(f"run {run.id}: its spec.yaml names an unknown data.style {style!r}; "
                         f"the run folder is damaged")
    return style


def test_time_augmentation(run):
    """The run's data.tta (spec.TEST_TIME_AUGMENTATIONS): how its model is asked at test time."""
    tta = _data_spec(run).tta
    if tta not in TEST_TIME_AUGMENTATIONS:
        raise UsageError(f"run {run.id}: its spec.yaml names an unknown data.tta {tta!r}; the run folder is damaged")
    return tta


def _data_spec(run):
    """The data section of the run's spec.yaml (runs from before a field existed get its default)."""
    recorded = run.spec_data
    section = recorded.get("data") if isinstance(recorded, dict) else None
    section = section if isinstance(section, dict) else {}
    return DataSpec(dataset=run.info.get("dataset") or section.get("dataset"),
                    **{key: section[key] for key in ("style", "tta") if key in section})


def create(directory, spec, dataset, environment, started=None):
    """Make a new run folder for `spec` trained on `dataset` and record what is about to run.

    `started` (seconds since the epoch, default now) names the folder; the workers
    of a cluster pass the chief's, so that the run has one id everywhere.
    """
    directory = runs_dir(directory)
    started = time.localtime(started)
    stamp = time.strftime("%Y%m%d-%H%M%S", started)
    from mnistcls.data import dataset_label  # not at the top, see worker_runs_dir

    base = f"{stamp}_{name_part(spec.name)}_{name_part(dataset_label(dataset))}"
    for attempt in range(1, 1000):
        path = directory / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            path.mkdir(parents=True)  # exclusive: two runs in the same second get different folders
            break
        except FileExistsError:
            continue
        except OSError as err:
            raise UsageError(f"{directory}: cannot create a run folder there ({err.strerror}); "
                             "choose another with --runs-dir") from None
    run = Run(path)
    _take(run)  # the folder is new: no other process can hold it yet
    write_text(path / "spec.yaml", yaml.safe_dump(spec.to_dict(), sort_keys=False))
    write_json(path / "run.json", {
        "id": run.id, "config": spec.name, "config_file": spec.source, "overrides": spec.overrides,
        "dataset": dataset, "status": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%S", started),
        **_process(), **environment,
    })
    return run


def worker_runs_dir(task_index):
    """Where a non-chief worker of a cluster keeps its own record of each run.

    It trains the same model in lockstep with the chief, and resumes from its own
    saved model here; it writes nothing into the chief's runs directory.
    """
    from mnistcls import data  # here, not at the top: `mnistcls --help` imports this module and not numpy

    return data.cache_dir() / "cluster" / f"worker-{task_index}" / "runs"


def resume(run):
    """Take an unfinished run for this process and mark it running; a UsageError if it cannot be resumed,
    or if another process holds it (checked under the lock, so two processes cannot both take it)."""
    _take(run)
    try:
        check_resumable(run)
        run.update(status="running", **_process())
    except BaseException:
        run.release()
        raise


def _take(run):
    """Hold the run's lock for this process; a UsageError naming the process that holds it instead.

    An operating-system lock on run.lock, released when the process ends however it
    ends (kill -9 included), so a lock is never left behind.
    """
    import filelock

    # A second's wait rides over another process' look at the lock (see Run._trained_now).
    lock = filelock.FileLock(run.path / LOCK_FILE, timeout=1)
    try:
        lock.acquire()
    except filelock.Timeout:
        info = run.info
        raise UsageError(f"run {run.id} is being trained by another process (process {info.get('pid')} on "
                         f"{info.get('host')}): wait for it to end, or stop it first") from None
    except OSError as err:
        raise UsageError(f"run {run.id}: cannot lock {run.path / LOCK_FILE} ({err.strerror})") from None
    run.lock = lock


def check_resumable(run):
    """Raise UsageError unless `run` is unfinished and not running."""
    if not (run.path / "spec.yaml").is_file():
        raise UsageError(f"run {run.id} has no spec.yaml: it cannot be resumed")
    if run.status == "finished":
        raise UsageError(f"run {run.id} has already finished; there is nothing to resume")
    if run.status == "running":
        raise UsageError(f"run {run.id} is still running (process {run.info.get('pid')})")
    if run.status == "diverged":  # its model.keras holds the weights that stopped being numbers
        raise UsageError(f"run {run.id} diverged ({run.info.get('error', 'its loss became NaN')}); resuming would "
                         "continue from broken weights: train it again with a lower learning rate")


def finish(run, metrics):
    write_json(run.path / "metrics.json", metrics)
    run.update(status="finished", finished=time.strftime("%Y-%m-%dT%H:%M:%S"))


def all_runs(directory=None):
    """Every run in the runs directory, oldest first."""
    directory = runs_dir(directory)
    if not directory.is_dir():
        return []
    return [Run(p) for p in sorted(directory.iterdir()) if (p / "run.json").is_file()]


def find(reference, directory=None):
    """A run by folder path, by id, or by a unique start of its id."""
    path = Path(reference)
    if (path / "run.json").is_file():
        return Run(path)
    runs = all_runs(directory)
    matches = [r for r in runs if r.id == reference] or [r for r in runs if r.id.startswith(reference)]
    if len(matches) == 1:
        return matches[0]
    where = runs_dir(directory)
    if not matches:
        raise UsageError(f"no run '{reference}' in {where}" + (
            f"; `mnistcls runs` lists the {len(runs)} there" if runs else " (it holds no runs yet)"))
    raise UsageError(f"'{reference}' matches {len(matches)} runs in {where}: "
                     + ", ".join(r.id for r in matches[:5]) + "; give more of the id")


def _process():
    return {"pid": os.getpid(), "host": socket.gethostname(), "process_started": _started(os.getpid())}


def _alive(pid, started=None):
    """Whether process `pid` runs, and is the one that started at `started` (when known): pids are reused."""
    import psutil

    try:
        process = psutil.Process(int(pid))
        return started is None or not isinstance(started, float) or process.create_time() == started
    except (TypeError, ValueError, psutil.NoSuchProcess):
        return False
    except psutil.AccessDenied:  # it exists; whose it is cannot be told
        return True


def _started(pid):
    """When process `pid` started (seconds since the epoch, as psutil reads it on every OS); None if unknown."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


# --- finding and listing runs ----------------------------------------------------------

def was_trained_on(run, dataset):
    """Whether `run` was trained on `dataset`: a name, or a folder however its path is written."""
    recorded = run.info.get("dataset")
    if recorded == dataset:
        return True
    # Two spellings of one folder (data/x, ./data/x, /home/me/data/x) are one dataset.
    from mnistcls.data import DATASET_NAMES  # not at the top, see worker_runs_dir

    folders = [Path(name) for name in (recorded, dataset) if name and name not in DATASET_NAMES]
    return len(folders) == 2 and all(f.is_dir() for f in folders) and folders[0].samefile(folders[1])


def trained_on(dataset, directory=None):
    """The runs trained on `dataset` that saved a model (so they can be evaluated), oldest first."""
    return [r for r in all_runs(directory) if was_trained_on(r, dataset) and (r.path / "model.keras").is_file()]


def describe(run):
    """A run as one row of `mnistcls runs`: what ran, how far it got and how well, as plain values.

    Scores come from metrics.json when the run finished; otherwise they are worked
    out from its history the same way, so unfinished runs show what they reached.
    """
    info, metrics, status = run.info, run.metrics, run.status
    reached = history_figures(run.history)
    # A finished run that learned nothing (metrics.json says so) is shown as what it is.
    status = "at chance" if status == "finished" and metrics.get("at_chance") else status
    return {"run": run.id, "config": info.get("config"), "dataset": info.get("dataset"),
            "sweep": info.get("sweep") or {}, "started": info.get("started"), "epochs": _planned_epochs(run),
            "validation": info.get("validation"), **reached, **metrics, "status": status}


# `mnistcls runs --sort`: name -> (field of `describe`, whether the largest comes first)
def record(run):
    """Everything `runs show` says about one run, as JSON-ready data."""
    return {"info": {**run.info, "status": run.status}, "spec": run.spec_data, "history": run.history,
            "results": describe(run)}


ORDERS = {"started": ("started", False), "test-acc": ("test_accuracy", True), "val-acc": ("best_val_accuracy", True),
          "params": ("params", False), "speed": ("seconds_per_epoch", False), "config": ("config", False)}


def listing(directory=None, *, dataset=None, config=None, order="started"):
    """`describe` of the runs trained on `dataset` from `config` (None: any), sorted by ORDERS[order].

    Runs without a value for the sort field (say, no test accuracy yet) come last.
    """
    rows = [describe(r) for r in all_runs(directory)
            if (dataset is None or was_trained_on(r, dataset))
            and (config is None or r.info.get("config") in (config, Path(config).stem))]
    key, largest_first = ORDERS[order]
    known = [row for row in rows if row.get(key) is not None]
    return sorted(known, key=lambda row: row[key], reverse=largest_first) + [r for r in rows if r.get(key) is None]


def _planned_epochs(run):
    try:
        return run.spec_data["train"]["epochs"]
    except (UsageError, KeyError, TypeError):
        return None
