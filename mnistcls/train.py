"""Training: a validated spec and in-memory data in, a trained model and its history out.

Everything around the loop is a Keras callback plugged into `fit`: resuming
(from the model saved after each epoch), early stopping, the learning-rate plateau rule, TensorBoard,
and the two of our own below (an atomic per-epoch record, and progress events for
the display). The loop itself is Keras'.

The input pipeline shuffles with a permutation computed from (seed, epoch), not
from an iterator's state, so a run resumed at epoch k sees exactly the batches an
uninterrupted run sees: with the same seed both end with the same weights.
"""

import json
import os
import shutil
import signal
import threading
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mnistcls import keras_compat
from mnistcls.build import build_model, summarize
from mnistcls.errors import Diverged, MnistclsError, SpecError
from mnistcls.files import atomic_path, read_json, write_json, write_text
from mnistcls.runtime import smallest_value
from mnistcls.spec import OPTIMIZERS

EVAL_BATCH_SIZE = 1000  # inference needs no small batches; larger ones are faster


@dataclass
class TrainResult:
    """The figures a finished (or interrupted) run is judged by."""

    test_accuracy: float | None  # None: not measured (tune's trials never look at the test set)
    test_loss: float | None
    best_val_accuracy: float
    best_val_loss: float
    best_epoch: int  # 1-based epoch of the best validation accuracy
    validation: object  # what the best_val_* figures were measured on: "test", or the held-out fraction
    epochs_run: int
    seconds_per_epoch: float  # median over the epochs of this process
    params: int
    test_accuracy_without_tta: float | None = None  # set when the spec's data.tta made test_accuracy

    def to_dict(self):
        return asdict(self)


def fit(spec, dataset, run_dir, *, strategy, precision, progress=None, callbacks=(), test=True, restart=False):
    """Train `spec` on `dataset`, keeping the run's state in `run_dir`; resume from the epochs it holds.

    Args:
        spec: a validated Spec.
        dataset: a data.Dataset with train and test splits loaded.
        run_dir: the run's folder: model.keras, history.{json,csv}, backup/, tensorboard/.
        strategy: the tf.distribute strategy to build and train under. The spec's
            batch size is the global batch, split across replicas (and workers);
            the learning rate is the one for that global batch.
        precision: the Keras dtype policy, e.g. "float32" or "mixed_bfloat16".
        progress: optional object with `epoch_begin(epoch, epochs, steps)`,
            `batch_end(step, logs)` and `epoch_end(epoch, logs, seconds)`.
        callbacks: further Keras callbacks, called after each epoch is recorded on disk
            (tune's pruning decision).
        test: evaluate the final model on the test split (False: test figures are None).
        restart: discard the epochs `run_dir` holds and train from the first one.

    Returns:
        (the trained keras.Model, TrainResult)

    Raises:
        MnistclsError: the run's saved state cannot be resumed (see `saved_state`).
    """
    run_dir = Path(run_dir)
    train_x, train_y, val_x, val_y = _split(dataset, spec.train)
    steps = steps_per_epoch(spec.train, len(dataset.x_train))
    if restart:
        for path in _model_copies(run_dir):
            path.unlink(missing_ok=True)
        state, history = None, []
    else:
        state, history = saved_state(run_dir, strategy)
    first_epoch = state.epoch if state else 0

    pixel_stats = _pixel_stats(train_x) if spec.data.preprocess == "standardize" else (0.0, 1.0)
    model, schedule_callbacks = compiled_model(spec, dataset, pixel_stats, steps, strategy=strategy,
                                               precision=precision)
    one_hot = spec.train.loss == "categorical_crossentropy"
    train_data = training_batches(train_x, train_y, spec.train.batch_size, spec.train.seed, first_epoch,
                                   spec.train.epochs, dataset.num_classes, one_hot)
    val_data = batches(val_x, val_y, EVAL_BATCH_SIZE, dataset.num_classes, one_hot)

    # Callbacks run in this order at the end of an epoch: the schedule's and early
    # stopping's decisions first, so that the files written last (history, then
    # model; kept whole by SavingSection) hold the state after them.
    # TerminateOnNaN stops within the epoch whose loss stopped being a number; that epoch is still recorded.
    extra_callbacks, callbacks = callbacks, [RestoreState(state.path)] if state else []
    callbacks += [RandomnessPerEpoch(spec.train.seed), keras.callbacks.TerminateOnNaN(), *schedule_callbacks]
    if spec.train.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(**spec.train.early_stopping))
    callbacks.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False))
    if progress is not None:
        callbacks.append(ProgressEvents(progress, spec.train.epochs, steps))
    recorder = EpochRecorder(run_dir, history)
    saving = SavingSection()
    callbacks += [saving.opener, recorder, saving.closer, *extra_callbacks]

    with saving:
        model.fit(train_data, epochs=spec.train.epochs, initial_epoch=first_epoch, steps_per_epoch=steps,
                  validation_data=val_data, callbacks=callbacks, shuffle=False, verbose=0)  # we shuffle
    _check_finite(recorder.history)
    # Again: EarlyStopping may have restored the best weights.
    save_model(model, run_dir / "model.keras", epoch=len(recorder.history))
    test_loss, test_accuracy = model.evaluate(
        batches(dataset.x_test, dataset.y_test, EVAL_BATCH_SIZE, dataset.num_classes, one_hot),
        verbose=0) if test else (None, None)
    return model, _result(recorder.history, test_loss, test_accuracy, summarize(model, spec.name).total,
                          spec.train.validation)


def _check_finite(history):
    """Raise Diverged when the last recorded epoch's loss (training or validation) is NaN or infinite.

    The validation loss catches weights that broke in the epoch's last step.
    """
    last = history[-1] if history else {}
    broken = [f"{key} {last[key]}" for key in ("loss", "val_loss") if key in last and not np.isfinite(last[key])]
    if broken:
        raise Diverged(f"training diverged in epoch {last['epoch']} ({', '.join(broken)}) at learning rate "
                       f"{last['learning_rate']:.3g}: lower the learning rate (--lr or train.optimizer.learning_rate)")


def compiled_model(spec, dataset, pixel_stats, steps, *, strategy, precision):
    """The spec's model, compiled for training under `strategy`, and the schedule's callbacks.

    `steps` is the number of steps in an epoch (schedules count in steps).
    """
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    with strategy.scope():
        model = build_model(spec, input_shape=(*dataset.image_shape, 1), num_classes=dataset.num_classes,
                            pixel_stats=pixel_stats, dtype=precision)
        learning_rate, schedule_callbacks = _learning_rate(spec.train, steps)
        optimizer = _optimizer(spec.train.optimizer, learning_rate)
        if precision == "mixed_float16":
            # float16 gradients underflow without loss scaling. Keras wraps the optimizer itself only
            # when the model's own policy is mixed_float16; here only the layers carry the policy.
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        model.compile(
            optimizer=optimizer,
            loss=_loss(spec.train),
            metrics=["accuracy"],
            steps_per_execution=steps_per_execution(spec.train, steps, strategy),
            jit_compile=False,  # XLA was about 2x slower on CPU here (issue 6 measurements)
        )
    if multi_worker:
        one_hot = spec.train.loss == "categorical_crossentropy"
        keras_compat.work_around_multi_worker_bugs(model, dataset.num_classes if one_hot else None)
    return model, schedule_callbacks


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
    copies = [path for path in _model_copies(run_dir) if path.exists()]
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
        _cannot_resume(run_dir, "another worker of the cluster cannot (its own message says why)")
    return state, history


def _state_at(run_dir, epoch, copies, readable):
    """saved_state's answer at `epoch`, which the workers agreed on, from this worker's files."""
    history_path = run_dir / "history.json"
    history = read_json(history_path, None) if history_path.exists() else []
    if not isinstance(history, list):
        _cannot_resume(run_dir, "its history.json cannot be read (damaged)")
    if copies and not readable:
        _cannot_resume(run_dir, " and ".join(str(path.relative_to(run_dir)) for path in copies)
                       + " cannot be read (damaged, or saved by an older mnistcls)")
    if not readable:
        if history:
            _cannot_resume(run_dir, f"its history.json records {len(history)} epochs but it has no model.keras")
        return None, []
    state = next((s for s in readable if s.epoch == epoch), None)
    if state is None:
        _cannot_resume(run_dir, f"it holds the model after epoch {readable[0].epoch}, but another worker of the "
                       f"cluster only reached epoch {epoch} and this one has no copy of it")
    if len(history) < state.epoch:
        _cannot_resume(run_dir, f"its history.json records {len(history)} epochs but {state.path.name} "
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


def _model_copies(run_dir):
    """model.keras and the copy of the epoch before it, newest first."""
    return [run_dir / "model.keras", run_dir / PREVIOUS_MODEL]


def _cannot_resume(run_dir, why):
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


def _keep_previous(path, previous):
    """Make `previous` a copy of `path` (a hard link where the disk allows), atomically."""
    previous.parent.mkdir(exist_ok=True)
    with atomic_path(previous) as tmp:
        try:
            os.link(path, tmp)
        except OSError:
            shutil.copyfile(path, tmp)


# --- callbacks ------------------------------------------------------------------

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
        write_json(self.run_dir / "history.json", self.history)
        _write_csv(self.run_dir / "history.csv", self.history)
        model_path = self.run_dir / "model.keras"
        if saved_epoch(model_path) is not None:  # never a damaged model.keras over the good previous copy
            _keep_previous(model_path, self.run_dir / PREVIOUS_MODEL)
        save_model(self.model, model_path, epoch=len(self.history))


class RestoreState(keras.callbacks.Callback):
    """Loads a saved model's weights and optimizer state as training begins."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_train_begin(self, logs=None):
        if not self.model.optimizer.built:  # outside a strategy Keras builds it only at the first step
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(self.path)


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
        self.opener = _EpochEndHook(self._open)
        self.closer = _EpochEndHook(self._close)
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


class _EpochEndHook(keras.callbacks.Callback):
    def __init__(self, hook):
        super().__init__()
        self.hook = hook

    def on_epoch_end(self, epoch, logs=None):
        self.hook()


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
        self.display.batch_end(batch + 1, logs or {})

    def on_epoch_end(self, epoch, logs=None):
        self.display.epoch_end(epoch + 1, logs or {}, time.perf_counter() - self._started)


# --- pieces of fit ---------------------------------------------------------------

def check_sizes(spec, train_count):
    """Raise SpecError unless the spec's batch size and validation split fit `train_count` images."""
    held = _held_out(spec.train, train_count)
    problems = []
    if spec.train.validation != "test" and held == 0:
        problems.append(spec.problem("train.validation", f"holds out no image of the {train_count:,}: "
                                     "use a larger fraction, or 'test'"))
    if (train_count - held) // spec.train.batch_size == 0:
        problems.append(spec.problem("train.batch_size", f"{spec.train.batch_size} is more than the "
                                     f"{train_count - held:,} training images: not one batch per epoch"))
    if problems:
        raise SpecError(problems)


def _held_out(train_spec, train_count):
    return 0 if train_spec.validation == "test" else int(round(train_spec.validation * train_count))


def _split(dataset, train_spec):
    """(train_x, train_y, val_x, val_y): the test set, or a seeded held-out fraction."""
    if train_spec.validation == "test":
        return dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test
    order = np.random.default_rng(train_spec.seed).permutation(len(dataset.x_train))
    held = _held_out(train_spec, len(order))
    val, train = np.sort(order[:held]), np.sort(order[held:])
    return dataset.x_train[train], dataset.y_train[train], dataset.x_train[val], dataset.y_train[val]


def steps_per_epoch(train_spec, train_count):
    """Training steps in an epoch over `train_count` images less the hold-out.

    Whole batches only: every replica gets its share.
    """
    return (train_count - _held_out(train_spec, train_count)) // train_spec.batch_size


def steps_per_execution(train_spec, steps, strategy):
    """The steps per call into TensorFlow a run really uses: the largest divisor of an epoch's `steps`
    up to the spec's `steps_per_execution` (which the run records, as it may be lower).

    Keras runs whole executions, so one that does not divide the epoch would
    take batches of the next epoch, and a resumed run would no longer see the
    batches of an uninterrupted one. Keras 3's multi-step loop fails under
    MultiWorkerMirroredStrategy: one step per call there.
    """
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 1
    return max(n for n in range(1, min(steps, train_spec.steps_per_execution) + 1) if steps % n == 0)


def _pixel_stats(images):
    """Mean and std of x/255 over the training images, for `standardize`."""
    x = np.asarray(images, dtype=np.float32) / 255.0
    return float(x.mean()), float(x.std())


def training_batches(x, y, batch_size, seed, first_epoch, epochs, num_classes, one_hot):
    """Shuffled global batches for epochs first_epoch..epochs-1.

    Each epoch's order is a permutation computed from (seed, epoch) alone, so a
    resumed run, and every worker of a cluster, sees the same global batches. Under
    a distribution strategy Keras splits each global batch into one slice per
    replica; sharding by data (not by input file, there is none) gives each worker
    its own slices of the same global batch.
    """
    images, labels = tf.constant(x), tf.constant(y)
    count = len(x)

    def epoch_batches(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(count), seed=tf.stack([tf.cast(seed, tf.int64), epoch]))
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder=True)

    def gather(index):  # one gather per batch, far cheaper than a map per image
        return _features(tf.gather(images, index), tf.gather(labels, index), num_classes, one_hot)

    return (tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch_batches)
            .map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(tf.data.AUTOTUNE).with_options(_SHARD_BY_DATA))


def batches(x, y, batch_size, num_classes, one_hot):
    """Unshuffled batches for validation and evaluation."""
    return (tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
            .map(lambda a, b: _features(a, b, num_classes, one_hot)).prefetch(tf.data.AUTOTUNE)
            .with_options(_SHARD_BY_DATA))


_SHARD_BY_DATA = tf.data.Options()
_SHARD_BY_DATA.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA


def _features(images, labels, num_classes, one_hot):
    images = tf.cast(tf.expand_dims(images, -1), tf.float32)  # (batch, H, W) uint8 -> (batch, H, W, 1) pixels
    labels = tf.one_hot(tf.cast(labels, tf.int32), num_classes) if one_hot else tf.cast(labels, tf.int32)
    return images, labels


def _optimizer(optimizer_spec, learning_rate):
    cls = getattr(keras.optimizers, OPTIMIZERS[optimizer_spec.name])
    return cls(learning_rate=learning_rate, **optimizer_spec.options)


def _loss(train_spec):
    if train_spec.loss == "categorical_crossentropy":
        return keras.losses.CategoricalCrossentropy(from_logits=train_spec.from_logits,
                                                    label_smoothing=train_spec.label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=train_spec.from_logits)


def _learning_rate(train_spec, steps_per_epoch):
    """(learning rate or schedule, extra callbacks) for the spec's schedule."""
    schedule = train_spec.schedule
    return _SCHEDULES[schedule.name](schedule, train_spec.optimizer.learning_rate, steps_per_epoch,
                                     train_spec.epochs)


def _constant(schedule, lr, steps, epochs):
    return lr, []


def _step(schedule, lr, steps, epochs):
    return keras.optimizers.schedules.ExponentialDecay(
        lr, decay_steps=schedule.every_epochs * steps, decay_rate=schedule.factor, staircase=True), []


def _exponential(schedule, lr, steps, epochs):
    return keras.optimizers.schedules.ExponentialDecay(lr, decay_steps=steps, decay_rate=schedule.factor), []


def _cosine(schedule, lr, steps, epochs):
    warmup = schedule.warmup_epochs * steps
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else lr, decay_steps=max(1, epochs * steps - warmup),
        alpha=schedule.min_lr / lr, warmup_target=lr if warmup else None, warmup_steps=warmup), []


def _inverse_time(schedule, lr, steps, epochs):
    return keras.optimizers.schedules.InverseTimeDecay(lr, decay_steps=1, decay_rate=schedule.decay), []


def _plateau(schedule, lr, steps, epochs):
    return lr, [keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=schedule.factor,
                                                  patience=schedule.patience, min_lr=schedule.min_lr)]


# One builder per schedule name of spec.SCHEDULES (a test keeps the two in step).
_SCHEDULES = {"constant": _constant, "step": _step, "exponential": _exponential, "cosine": _cosine,
              "inverse_time": _inverse_time, "plateau": _plateau}


def _result(history, test_loss, test_accuracy, params, validation):
    val_acc = [row.get("val_accuracy", float("nan")) for row in history]
    best = int(np.nanargmax(val_acc)) if history else 0
    return TrainResult(
        test_accuracy=None if test_accuracy is None else float(test_accuracy),
        test_loss=None if test_loss is None else float(test_loss),
        best_val_accuracy=float(val_acc[best]) if history else float("nan"),
        best_val_loss=float(min(row.get("val_loss", float("inf")) for row in history)) if history else float("nan"),
        best_epoch=best + 1, validation=validation, epochs_run=len(history),
        seconds_per_epoch=float(np.median([row["seconds"] for row in history])) if history else 0.0,
        params=int(params))


def _write_csv(path, history):
    columns = list(dict.fromkeys(key for row in history for key in row))
    lines = [",".join(columns)] + [",".join(f"{row.get(c, '')}" for c in columns) for row in history]
    write_text(path, "\n".join(lines) + "\n")
