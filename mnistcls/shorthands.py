"""Command-line shorthands for `--set`: `--epochs 5` is `--set train.epochs=5`, and so on.

At the spec layer: each shorthand names one spec field by the dotted path `--set` takes.
"""

# Option name (as a Python identifier) -> the spec field it sets.
SHORTHANDS = {
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "lr": "train.optimizer.learning_rate",
    "seed": "train.seed",
    "precision": "train.precision",
}


def as_overrides(overrides=(), **shorthands):
    """The shorthands given (those not None) as KEY=VALUE overrides, then `overrides`: an explicit
    --set of the same field comes later, so it wins."""
    return [f"{SHORTHANDS[name]}={value}" for name, value in shorthands.items() if value is not None] + list(overrides)
