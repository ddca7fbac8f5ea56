"""The Keras callbacks mnistcls plugs into `fit`, kept apart as Keras keeps its own; one job each.

EpochRecorder writes the run's record after every epoch; RestoreState loads the state a
run resumes from; RandomnessPerEpoch makes dropout and augmentation resume exactly;
SavingSection holds Ctrl-C back while an epoch's files are written; ProgressEvents
feeds the display.
"""

import math
import signal
import threading
import time
from pathlib import Path

import keras

from mnistcls import checkpoints, keras_compat, phases
from mnistcls.files import write_json, write_text


class EpochRecorder(keras.callbacks.Callback):
    """Keeps the cumulative per-epoch history and the model on disk after every epoch.

    The history is written first: a kill before the model is saved leaves a
    history one epoch longer than the model, which resuming cuts back.
    """

    def __init__(self, run_dir, history):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.history = list(history)  # of the epochs before this process' first
        self._started = None
        self._learning_rate = None

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()
        # The rate of the epoch's first step: a schedule evaluated at the step about to run, and the
        # plateau rule's decisions of earlier epochs (read after the epoch, it would be the next one's).
        self._learning_rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()},
               "learning_rate": self._learning_rate, "seconds": time.perf_counter() - self._started}
        self.history.append(row)
        with phases.phase("each epoch's history and model.keras", part_of="epochs"):
            write_json(self.run_dir / "history.json", self.history)
            write_history_csv(self.run_dir / "history.csv", self.history)
            model_path = self.run_dir / "model.keras"
            if checkpoints.saved_epoch(model_path) is not None:  # never a damaged model.keras over the good copy
                checkpoints.keep_previous(model_path, self.run_dir / checkpoints.PREVIOUS_MODEL)
            checkpoints.save_model(self.model, model_path, epoch=len(self.history))


class TimedTensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard logs, their cost counted as a phase of the command (phases.py)."""

    def on_train_begin(self, logs=None):
        with phases.phase("TensorBoard logs", part_of="epochs"):
            super().on_train_begin(logs)

    def on_epoch_end(self, epoch, logs=None):
        with phases.phase("TensorBoard logs", part_of="epochs"):
            super().on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        with phases.phase("TensorBoard logs", part_of="epochs"):
            super().on_train_end(logs)


class RestoreState(keras.callbacks.Callback):
    """Loads a saved model's weights and optimizer state as training begins."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_train_begin(self, logs=None):
        if not self.model.optimizer.built:  # outside a strategy Keras builds it only at the first step
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(self.path)


class EpochOfTheData(keras.callbacks.Callback):
    """Tells the training pipeline (pipeline.training_batches) which epoch's batches to make, as each begins."""

    def __init__(self, epoch_variable):
        super().__init__()
        self.epoch_variable = epoch_variable

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_variable.assign(epoch)


class StopWhenLossIsNotANumber(keras.callbacks.Callback):
    """Keras' TerminateOnNaN without the line it prints: the run's record and mnistcls' own error say it better."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True


class RandomnessPerEpoch(keras.callbacks.Callback):
    """Sets the random state of dropout and augmentation layers from (seed, epoch) as each epoch starts.

    The saved model does not keep these states, so without this a resumed run would
    draw other dropout masks and augmentations than an uninterrupted one.
    """

    def __init__(self, seed):
        super().__init__()
        self.seed = seed

    def on_epoch_begin(self, epoch, logs=None):
        for index, generator in enumerate(keras_compat.seed_generators(self.model)):
            # [seed, counter]: a stream of its own per generator, and per epoch far apart.
            state = [self.seed * 7919 + index, epoch * 2**24]
            generator.state.assign(keras.ops.convert_to_tensor(state, dtype=generator.state.dtype))


class SavingSection:
    """Holds Ctrl-C back while an epoch's files are written, so history and model agree.

    Its `opener` callback goes before the callbacks that save at the end of an
    epoch and its `closer` after them; a Ctrl-C in between is raised by `closer`.
    """

    def __init__(self):
        self.saving = False
        self.pending = False
        self.opener = AfterEachEpoch(lambda epochs: self._open())
        self.closer = AfterEachEpoch(lambda epochs: self._close())
        self._previous_handler = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # signals reach only the main thread
            self._previous_handler = signal.signal(signal.SIGINT, self._interrupt)
        return self

    def __exit__(self, *exc):
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)

    def _interrupt(self, signum, frame):
        if self.saving:
            self.pending = True
        else:
            raise KeyboardInterrupt

    def _open(self):
        self.saving = True

    def _close(self):
        self.saving = False
        if self.pending:
            raise KeyboardInterrupt


class AfterEachEpoch(keras.callbacks.Callback):
    """Calls `hook(epochs done)` at the end of each epoch (a study records there how far its run is)."""

    def __init__(self, hook):
        super().__init__()
        self.hook = hook

    def on_epoch_end(self, epoch, logs=None):
        self.hook(epoch + 1)


class ProgressEvents(keras.callbacks.Callback):
    """Forwards Keras' training events to a display object that knows nothing of Keras."""

    def __init__(self, display, epochs, steps):
        super().__init__()
        self.display, self.epochs, self.steps = display, epochs, steps
        self._started = None

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()
        self.display.epoch_begin(epoch + 1, self.epochs, self.steps)

    def on_train_batch_end(self, batch, logs=None):
        # `batch` is the last step of a call into TensorFlow; an epoch's last call may run fewer
        self.display.batch_end(min(batch + 1, self.steps), logs or {})

    def on_epoch_end(self, epoch, logs=None):
        self.display.epoch_end(epoch + 1, logs or {}, time.perf_counter() - self._started)


def write_history_csv(path, history):
    columns = list(dict.fromkeys(key for row in history for key in row))
    lines = [",".join(columns)] + [",".join(f"{row.get(c, '')}" for c in columns) for row in history]
    write_text(path, "\n".join(lines) + "\n")
