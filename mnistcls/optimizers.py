"""The optimizer, loss and learning-rate schedule a spec's `train` section asks for."""

import keras

from mnistcls.spec import OPTIMIZERS


def optimizer(optimizer_spec, learning_rate):
    cls = getattr(keras.optimizers, OPTIMIZERS[optimizer_spec.name])
    return cls(learning_rate=learning_rate, **optimizer_spec.options)


def loss(train_spec):
    if train_spec.loss == "categorical_crossentropy":
        return keras.losses.CategoricalCrossentropy(from_logits=train_spec.from_logits,
                                                    label_smoothing=train_spec.label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=train_spec.from_logits)


def learning_rate(train_spec, steps_per_epoch):
    """(learning rate or schedule, extra callbacks) for the spec's schedule."""
    schedule = train_spec.schedule
    return SCHEDULES[schedule.name](schedule, train_spec.optimizer.learning_rate, steps_per_epoch,
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
SCHEDULES = {"constant": _constant, "step": _step, "exponential": _exponential, "cosine": _cosine,
              "inverse_time": _inverse_time, "plateau": _plateau}
