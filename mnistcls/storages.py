"""Optuna storages that `tune` and `study` share their work through, across processes and machines.

A storage is the default SQLite file in the runs directory (a few processes on one
machine), a database URL (PostgreSQL for many machines: it serves concurrent
writers well and keeps heartbeats), or a journal file on a shared disk. Trials are
claimed atomically by the storage; a trial whose process was lost is ended and
queued again, once, by whichever process notices first.
"""

import socket
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from mnistcls import runs
from mnistcls.errors import MnistclsError, UsageError

STORAGE_FILE = "studies.db"  # the default SQLite storage, in the runs directory
HEARTBEAT_SECONDS = 30  # database storages: a trial silent for twice this long is stale
MAX_RETRIES = 2  # copies of an interrupted trial run again (a trial that kills its process stops somewhere)


def open_storage(url, runs_directory):
    """(an Optuna storage, words for it): the default SQLite file, a database URL, or a journal file."""
    given = url is not None
    if url is None:
        directory = runs.runs_dir(runs_directory)
        directory.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{(directory / STORAGE_FILE).resolve()}"
    if "://" not in url:  # a file: Optuna's journal, for a shared disk without a database server
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        try:
            Path(url).parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(url))), f"journal {url}"
        except OSError as err:
            raise UsageError(f"--storage {url}: cannot open the journal file ({err})") from None
    shown = without_password(url)
    where = f"--storage {shown}" if given else shown
    try:
        return _database_storage(url), shown
    except ImportError as err:
        raise UsageError(f"{where}: the database driver is missing ({err}); for PostgreSQL: "
                         "pip install 'mnistcls[postgres]'") from None
    except Exception as err:
        raise MnistclsError(f"{where}: cannot open the study storage "
                            f"({type(err).__name__}: {str(err).splitlines()[0]})") from None


def _database_storage(url, attempts=5):
    """Optuna's RDBStorage for `url`, which creates its tables on first use.

    Workers started together on a new database race to create them, and only one
    wins (PostgreSQL: a unique violation in its catalogue for the others; SQLite:
    "table already exists"): the losers try again once the winner's tables exist.
    """
    import sqlalchemy.exc

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=2 * HEARTBEAT_SECONDS,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=MAX_RETRIES))
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.OperationalError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))


def without_password(url):
    scheme, _, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    return f"{scheme}://{credentials.partition(':')[0]}{':***' if ':' in credentials else ''}@{host}" if at else url


def quiet_optuna(verbose=False):
    """Optuna's log lines (unless `verbose`) and its warnings of experimental features say nothing a user of
    mnistcls needs: mnistcls reports each trial and run itself."""
    import warnings

    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def retry(study, trial):
    """Queue a copy of `trial` (its values and user attributes) to run again, at most MAX_RETRIES times."""
    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)(study, trial)


def local_run(trial, runs_directory):
    """The run folder of `trial`'s try where that try ran on this machine and recorded its run, else None."""
    run_id = trial.user_attrs.get("run")
    if trial.user_attrs.get("host") != socket.gethostname() or not run_id:
        return None
    return runs.Run(runs.runs_dir(runs_directory) / run_id)


def lost_here(trial, runs_directory):
    """Whether `trial` is RUNNING on this machine but its process is gone: its run folder says killed."""
    if trial.state != TrialState.RUNNING:
        return False
    run = local_run(trial, runs_directory)
    return run is not None and run.status == "killed"


def end_lost_trials(study, runs_directory):
    """Record as FAIL (and queue again) RUNNING trials whose process is gone.

    This machine's own trials are known from their run folders at once; those of
    other machines from Optuna's heartbeat, once their grace period has passed.
    """
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if lost_here(trial, runs_directory):
            try:  # as Optuna's fail_stale_trials does: only the process that ends the trial queues its copy
                study.tell(trial.number, state=TrialState.FAIL)
            except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
                continue  # another process ended it first
            retry(study, study.trials[trial.number])
    optuna.storages.fail_stale_trials(study)  # by heartbeat, where the storage keeps one
