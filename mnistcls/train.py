"""Training: a validated spec and in-memory data in, a trained model and its history out.

The loop is Keras' own `fit`; everything around it is a Keras callback: resuming from
the model saved after each epoch (checkpoints.py), the per-epoch record, exact
randomness on resume, Ctrl-C held back while files are written and the progress
display (callbacks.py), and Keras' early stopping, plateau rule, TensorBoard and
a stop when the loss is no longer a number. The batches come from pipeline.py, the optimizer, loss and
schedule from optimizers.py. With the same seed, a resumed run ends with the same
weights as an uninterrupted one.
"""

from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mnistcls import keras_compat, optimizers, phases
from mnistcls.build import build_model, summarize
from mnistcls.callbacks import (EpochOfTheData, EpochRecorder, ProgressEvents, RandomnessPerEpoch, RestoreState,
                                 SavingSection, StopWhenLossIsNotANumber, TimedTensorBoard)
from mnistcls.checkpoints import discard_epochs, save_model, saved_state
from mnistcls.errors import Diverged, SpecError
from mnistcls.metrics import history_figures
from mnistcls.pipeline import EVAL_BATCH_SIZE, batches, held_out, pixel_stats, split, training_batches


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
    chance_accuracy: float | None = None  # the share of the most common class: what guessing it scores
    at_chance: bool = False  # the final accuracy is no better than that: the run learned nothing

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
    train_x, train_y, val_x, val_y = split(dataset, spec.train)
    steps = steps_per_epoch(spec.train, len(dataset.x_train))
    if restart:
        discard_epochs(run_dir)
        state, history = None, []
    else:
        state, history = saved_state(run_dir, strategy)
    first_epoch = state.epoch if state else 0

    stats = pixel_stats(train_x) if spec.data.preprocess == "standardize" else (0.0, 1.0)
    with phases.phase("build and compile the model"):
        model, schedule_callbacks = compiled_model(spec, dataset, stats, steps, strategy=strategy,
                                                   precision=precision)
    one_hot = spec.train.loss == "categorical_crossentropy"
    train_data, data_epoch = training_batches(train_x, train_y, spec.train.batch_size, spec.train.seed,
                                              dataset.num_classes, one_hot)
    val_data = batches(val_x, val_y, EVAL_BATCH_SIZE, dataset.num_classes, one_hot)

    # Callbacks run in this order at the end of an epoch: the schedule's and early
    # stopping's decisions first, so that the files written last (history, then
    # model; kept whole by SavingSection) hold the state after them.
    # StopWhenLossIsNotANumber stops within the epoch whose loss stopped being a number; that epoch is still
    # recorded.
    extra_callbacks, callbacks = callbacks, [RestoreState(state.path)] if state else []
    callbacks += [EpochOfTheData(data_epoch), RandomnessPerEpoch(spec.train.seed), StopWhenLossIsNotANumber(),
                  *schedule_callbacks]
    if spec.train.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(**spec.train.early_stopping))
    callbacks.append(TimedTensorBoard(str(run_dir / "tensorboard"), write_graph=False))
    if progress is not None:
        callbacks.append(ProgressEvents(progress, spec.train.epochs, steps))
    recorder = EpochRecorder(run_dir, history)
    saving = SavingSection()
    callbacks += [saving.opener, recorder, saving.closer, *extra_callbacks]

    with saving, phases.phase("epochs"):
        model.fit(train_data, epochs=spec.train.epochs, initial_epoch=first_epoch, validation_data=val_data,
                  callbacks=callbacks, shuffle=False, verbose=0)  # we shuffle
    _check_finite(recorder.history)
    trained_here = [row["seconds"] for row in recorder.history[first_epoch:]]
    if len(trained_here) > 1:  # the first epoch of a process also traces the training step
        phases.add("tracing, in the first epoch", max(0.0, trained_here[0] - float(np.median(trained_here[1:]))),
                   part_of="epochs")
    with phases.phase("the final model.keras"):  # again: EarlyStopping may have restored the best weights
        save_model(model, run_dir / "model.keras", epoch=len(recorder.history))
    with phases.phase("test evaluation"):
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
    keras.utils.set_random_seed(spec.train.seed)  # the initial weights follow from the spec's seed
    with strategy.scope():
        model = build_model(spec, input_shape=(*dataset.image_shape, 1), num_classes=dataset.num_classes,
                            pixel_stats=pixel_stats, dtype=precision, replicas=strategy.num_replicas_in_sync)
        learning_rate, schedule_callbacks = optimizers.learning_rate(spec.train, steps)
        optimizer = optimizers.optimizer(spec.train.optimizer, learning_rate)
        if precision == "mixed_float16":
            # float16 gradients underflow without loss scaling. Keras wraps the optimizer itself only
            # when the model's own policy is mixed_float16; here only the layers carry the policy.
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        model.compile(
            optimizer=optimizer,
            loss=optimizers.loss(spec.train),
            metrics=["accuracy"],
            steps_per_execution=steps_per_execution(spec.train, steps, strategy),
            jit_compile=False,  # XLA was about 2x slower on CPU here (issue 6 measurements)
        )
    if multi_worker:
        one_hot = spec.train.loss == "categorical_crossentropy"
        keras_compat.work_around_multi_worker_bugs(model, dataset.num_classes if one_hot else None)
    return model, schedule_callbacks


# --- pieces of fit ---------------------------------------------------------------

def check_sizes(spec, train_count):
    """Raise SpecError unless the spec's batch size and validation split fit `train_count` images."""
    held = held_out(spec.train, train_count)
    problems = []
    if spec.train.validation != "test" and held == 0:
        problems.append(spec.problem("train.validation", f"holds out no image of the {train_count:,}: "
                                     "use a larger fraction, or 'test'"))
    if (train_count - held) // spec.train.batch_size == 0:
        problems.append(spec.problem("train.batch_size", f"{spec.train.batch_size} is more than the "
                                     f"{train_count - held:,} training images: not one batch per epoch"))
    if problems:
        raise SpecError(problems)


def steps_per_epoch(train_spec, train_count):
    """Training steps in an epoch over `train_count` images less the hold-out.

    Whole batches only: every replica gets its share.
    """
    return (train_count - held_out(train_spec, train_count)) // train_spec.batch_size


def steps_per_execution(train_spec, steps, strategy):
    """The steps per call into TensorFlow a run really uses: the spec's `steps_per_execution`, at most the
    epoch's `steps` (the run records it).

    Each epoch's batches are iterated on their own (pipeline.training_batches), so
    the last call of an epoch runs what is left of it. Keras 3's multi-step loop
    fails under MultiWorkerMirroredStrategy: one step per call there.
    """
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 1
    return min(steps, train_spec.steps_per_execution)


def _result(history, test_loss, test_accuracy, params, validation):
    figures = history_figures(history)
    return TrainResult(
        test_accuracy=None if test_accuracy is None else float(test_accuracy),
        test_loss=None if test_loss is None else float(test_loss),
        best_val_accuracy=figures.get("best_val_accuracy", float("nan")),
        best_val_loss=figures.get("best_val_loss", float("nan")),
        best_epoch=figures.get("best_epoch", 1), validation=validation, epochs_run=figures["epochs_run"],
        seconds_per_epoch=figures.get("seconds_per_epoch", 0.0), params=int(params))
