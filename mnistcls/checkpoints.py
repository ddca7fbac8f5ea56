"""What a run resumes from: the model saved atomically after each epoch, with its epoch inside."""

import json
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from mnistcls.errors import MnistclsError
from mnistcls.files import atomic_path, read_json
from mnistcls.runtime import smallest_value

# The model after each completed epoch (model.keras, written atomically) is the state a run
# resumes from: weights and optimizer state in one file, with the number of epochs behind
# them in an entry of our own in the same zip, so the three can never disagree. (The
# optimizer's `iterations` cannot tell the epoch: loss scaling skips steps without
# counting them.) The copy before it stays in backup/ for a cluster, whose workers
# may be one epoch apart when killed.
EPOCH_ENTRY = "mnistcls-epoch.json"
PREVIOUS_MODEL = Path("backup") / "previous.keras"


@dataclass
class SavedState:
    path: Path  # a .keras file saved by save_model
    epoch: int  # the epochs completed when it was saved


def saved_state(run_dir, strategy):
    """(the SavedState to resume from or None to start at the first epoch, the history up to it).

    The latest readable copy of the model is used: model.keras, or the copy of the
    epoch before it when model.keras is damaged. The workers of a cluster resume
    together, at the earliest epoch any of them holds, or all stop (one alone would
    wait for the others forever). The history is cut to that epoch (a kill can come
    between writing the history and the model). Anything that would make the resumed
    run differ from an uninterrupted one is an error that names the damaged file,
    never a silent start from scratch.
    """
    run_dir = Path(run_dir)
    copies = [path for path in model_copies(run_dir) if path.exists()]
    readable = [SavedState(path, epoch) for path in copies if (epoch := saved_epoch(path)) is not None]
    agreed = smallest_value(strategy, readable[0].epoch if readable else 0)
    try:
        state, history = _state_at(run_dir, agreed, copies, readable)
        problem = None
    except MnistclsError as err:
        problem = err
    everyone_can = smallest_value(strategy, 0 if problem else 1)
    if problem:
        raise problem
    if not everyone_can:
        cannot_resume(run_dir, "another worker of the cluster cannot (its own message says why)")
    return state, history


def _state_at(run_dir, epoch, copies, readable):
    """saved_state's answer at `epoch`, which the workers agreed on, from this worker's files."""
    history_path = run_dir / "history.json"
    history = read_json(history_path, None) if history_path.exists() else []
    if not isinstance(history, list):
        cannot_resume(run_dir, "its history.json cannot be read (damaged)")
    if copies and not readable:
        cannot_resume(run_dir, " and ".join(str(path.relative_to(run_dir)) for path in copies)
                       + " cannot be read (damaged, or saved by an older mnistcls)")
    if not readable:
        if history:
            cannot_resume(run_dir, f"its history.json records {len(history)} epochs but it has no model.keras")
        return None, []
    state = next((s for s in readable if s.epoch == epoch), None)
    if state is None:
        cannot_resume(run_dir, f"it holds the model after epoch {readable[0].epoch}, but another worker of the "
                       f"cluster only reached epoch {epoch} and this one has no copy of it")
    if len(history) < state.epoch:
        cannot_resume(run_dir, f"its history.json records {len(history)} epochs but {state.path.name} "
                       f"holds epoch {state.epoch}")
    return state, history[:state.epoch]


def saved_epoch(path):
    """The epochs behind a model saved by save_model; None when the file is damaged or has no such record."""
    try:
        with zipfile.ZipFile(path) as archive:
            if archive.testzip() is not None:  # a member fails its checksum
                return None
            epoch = json.loads(archive.read(EPOCH_ENTRY))["epoch"]
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, TypeError):
        return None
    return epoch if isinstance(epoch, int) and epoch > 0 else None


def model_copies(run_dir):
    """model.keras and the copy of the epoch before it, newest first."""
    return [run_dir / "model.keras", run_dir / PREVIOUS_MODEL]


def discard_epochs(run_dir):
    """Remove what a run's trained epochs left (models, history, TensorBoard logs), for --restart.

    Left behind, the old history.csv would stand until the first new epoch and TensorBoard
    would draw the old curves over the new ones.
    """
    for path in [*model_copies(run_dir), run_dir / "history.json", run_dir / "history.csv"]:
        path.unlink(missing_ok=True)
    shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)


def cannot_resume(run_dir, why):
    raise MnistclsError(f"cannot resume {run_dir}: {why}. To train it again from its first epoch, discarding "
                        f"the epochs it holds: mnistcls train --resume {run_dir.name} --restart")


def save_model(model, path, epoch=None):
    """Save a .keras file atomically: a kill mid-write leaves the previous file intact.

    With `epoch`, the file also records that many completed epochs (see saved_state).
    """
    with atomic_path(path) as tmp:
        model.save(tmp)
        if epoch is not None:
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(EPOCH_ENTRY, json.dumps({"epoch": epoch}))


def keep_previous(path, previous):
    """Make `previous` a copy of `path` (a hard link where the disk allows), atomically."""
    previous.parent.mkdir(exist_ok=True)
    with atomic_path(previous) as tmp:
        try:
            os.link(path, tmp)
        except OSError:
            shutil.copyfile(path, tmp)
