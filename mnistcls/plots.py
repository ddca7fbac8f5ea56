"""Pictures of data and results, written as PNG files.

Every picture comes as a pair of functions: `<name>_figure(...)` draws it and
returns the matplotlib Figure (for tests and notebooks), and `<name>(..., path)`
draws it and writes it to `path` as a PNG, returning the Path.

Only matplotlib's object API is used (a `Figure` with its own Agg canvas), never
pyplot: there is no global figure state to leak between plots, and no GUI backend
is needed, so this works the same on a headless server.
"""

import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from mnistcls.errors import MnistclsError
from mnistcls.files import publish

DPI = 120
WRONG_COLOUR = "tab:red"
# Few epochs draw short lines; markers show where each epoch's value lies.
MARKER_MAX_EPOCHS = 20


def _new_figure(width, height, title=None):
    """A blank figure in the common style: constrained layout, fixed DPI, optional title.

    Args:
        width: width in inches.
        height: height in inches.
        title: optional title above all panels.
    """
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    if title:
        fig.suptitle(title, fontsize="large")
    return fig


def _save(fig, path):
    """Write `fig` to `path` as a PNG, atomically, and return the Path.

    The PNG is first written to a hidden file beside `path` and then renamed over
    it, so a reader never sees a half-written picture and a crash leaves the old
    file (if any) in place. Missing parent folders are created.

    Args:
        fig: the Figure to write.
        path: where the PNG goes; an existing file there is replaced, unless `path` is a
            files.NewFile, which never replaces one.

    Raises:
        MnistclsError: the file cannot be written.
    """
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return publish(path, lambda tmp: fig.savefig(tmp, format="png"))
    except OSError as exc:
        raise MnistclsError(
            f"cannot write the picture {path}: {exc.strerror or exc}; choose a folder you can write to"
        ) from exc


def image_grid_figure(images, titles, *, title=None, cols=None, mistakes=None):
    """Draw grey images in a grid, each with a small title.

    To show pairs side by side (say a user's image and the 28x28 input the model
    saw), interleave them and pass `cols=2`.

    Args:
        images: sequence of grey uint8 arrays of shape (H, W); sizes may differ.
        titles: one title per image, e.g. a class name or "true: Shirt\\npred: Coat".
        title: optional title above the grid.
        cols: images per row; by default the grid is about square.
        mistakes: optional booleans, one per image; titles of True ones are red.
    """
    n = len(images)
    if n == 0:
        raise ValueError("no images to draw")
    if len(titles) != n or (mistakes is not None and len(mistakes) != n):
        raise ValueError("images, titles and mistakes must have the same length")
    cols = min(cols or math.ceil(math.sqrt(n)), n)
    rows = math.ceil(n / cols)
    title_lines = max(str(t).count("\n") + 1 for t in titles)
    cell_height = 1.6 + 0.2 * title_lines
    fig = _new_figure(1.6 * cols, cell_height * rows + (0.4 if title else 0), title)

    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_axis_off()  # the empty cells after the last image
    for ax, image, label, wrong in zip(axes, images, titles, mistakes or [False] * n):
        ax.imshow(np.asarray(image), cmap="gray", vmin=0, vmax=255)
        ax.set_title(label, fontsize="small", color=WRONG_COLOUR if wrong else "black")
        # No ticks, but keep a thin frame so a white image stays visible on the white page.
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_color("0.75")
    return fig


def image_grid(images, titles, path, *, title=None, cols=None, mistakes=None):
    """Write `image_grid_figure(...)` to `path` as a PNG and return the Path."""
    return _save(image_grid_figure(images, titles, title=title, cols=cols, mistakes=mistakes), path)


def learning_curves_figure(histories, *, title=None, validation="validation"):
    """Draw loss (log scale) and accuracy per epoch for one or more training runs.

    Each run has its own colour; training is solid and validation dashed.

    Args:
        histories: dict run label -> Keras-style history, e.g. {"loss": [...],
            "val_loss": [...], "accuracy": [...], "val_accuracy": [...]}; any key
            may be missing and is then not drawn.
        title: optional title above both panels.
        validation: what the val_* curves were measured on, for the legend (e.g. "test set").
    """
    if not histories:
        raise ValueError("no training histories to draw")
    fig = _new_figure(10, 4, title)
    loss_ax, acc_ax = fig.subplots(1, 2)
    has_validation = False
    for i, history in enumerate(histories.values()):
        colour = f"C{i % 10}"
        for ax, metric in ((loss_ax, "loss"), (acc_ax, "accuracy")):
            for key, style in ((metric, "-"), (f"val_{metric}", "--")):
                values = history.get(key)
                if values is None or len(values) == 0:
                    continue
                has_validation |= key.startswith("val_")
                epochs = np.arange(1, len(values) + 1)
                marker = "o" if len(values) <= MARKER_MAX_EPOCHS else None
                ax.plot(epochs, values, linestyle=style, color=colour, marker=marker, markersize=3)

    loss_ax.set_yscale("log")  # losses shrink by orders of magnitude; log shows late progress
    for ax, name in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)

    # One legend explains both encodings: colour = run (if several), line style = split.
    handles = []
    if len(histories) > 1:
        handles += [Line2D([], [], color=f"C{i % 10}", label=str(label)) for i, label in enumerate(histories)]
    handles.append(Line2D([], [], color="0.3", linestyle="-", label="train"))
    if has_validation:
        handles.append(Line2D([], [], color="0.3", linestyle="--", label=validation))
    acc_ax.legend(handles=handles, loc="best", fontsize="small")
    return fig


def learning_curves(histories, path, *, title=None, validation="validation"):
    """Write `learning_curves_figure(...)` to `path` as a PNG and return the Path."""
    return _save(learning_curves_figure(histories, title=title, validation=validation), path)


def _is_number(value):
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def sweep_plot_figure(values, best_val_loss, best_val_accuracy, *, param_name, log_x=False, validation="validation",
                      spreads=None):
    """Draw the best validation loss and accuracy reached for each value of a swept setting.

    Numeric values are placed at their value on the x axis (sorted, and ticked at
    exactly the swept values); anything else (e.g. optimizer names) is placed as
    evenly spaced categories in the given order.

    Args:
        values: the swept values, e.g. hidden units [10, 32, 100, 317, 1000].
        best_val_loss: the lowest validation loss of the run for each value.
        best_val_accuracy: the highest validation accuracy of the run for each value.
        param_name: what was swept, used as the x axis label.
        log_x: use a log x axis; only for numeric values, which must then be > 0.
        validation: what the scores were measured on, for the titles (e.g. "test set").
        spreads: (loss, accuracy) standard deviations per value, over repeated runs: drawn as
            error bars (each score is then the runs' mean); None where a value has one run.
    """
    values = list(values)
    if not values or not len(values) == len(best_val_loss) == len(best_val_accuracy):
        raise ValueError("values, best_val_loss and best_val_accuracy must be non-empty and of the same length")
    numeric = all(_is_number(v) for v in values)
    if numeric and log_x and min(values) <= 0:
        raise ValueError(f"a log x axis needs positive values of {param_name}, got {min(values)}")

    if numeric:
        order = np.argsort(values, kind="stable")
        x = np.asarray(values, dtype=float)[order]
        tick_labels = [f"{v:g}" for v in x]
    else:
        order = np.arange(len(values))
        x = order.astype(float)
        tick_labels = [str(v) for v in values]

    fig = _new_figure(10, 4)
    spreads = spreads or ([None] * len(values), [None] * len(values))
    panels = zip(fig.subplots(1, 2), (f"best {validation} loss", f"best {validation} accuracy"),
                 (best_val_loss, best_val_accuracy), spreads)
    for ax, name, scores, spread in panels:
        y = np.asarray(scores, dtype=float)[order]
        errors = np.asarray([np.nan if s is None else s for s in spread], dtype=float)[order]
        ax.plot(x, y, "o-")
        if np.isfinite(errors).any():
            ax.errorbar(x, y, yerr=np.nan_to_num(errors), fmt="none", capsize=4, label="± 1 standard deviation")
            ax.legend(fontsize="x-small")
            name += " (mean of the seeds)"
        for xi, yi in zip(x, y):
            ax.annotate(f"{yi:.3g}", (xi, yi), textcoords="offset points", xytext=(0, 6),
                        ha="center", fontsize="x-small")
        if numeric and log_x:
            ax.set_xscale("log")
        ax.set_xticks(x, tick_labels)
        ax.minorticks_off()  # log axes add minor ticks between the swept values
        ax.margins(x=0.08, y=0.15)  # room for the first/last point and the value labels
        ax.set_title(name)
        ax.set_xlabel(param_name)
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
    return fig


def sweep_plot(values, best_val_loss, best_val_accuracy, path, *, param_name, log_x=False, validation="validation",
               spreads=None):
    """Write `sweep_plot_figure(...)` to `path` as a PNG and return the Path."""
    return _save(sweep_plot_figure(values, best_val_loss, best_val_accuracy, param_name=param_name, log_x=log_x,
                                   validation=validation, spreads=spreads), path)


def confusion_heatmap_figure(confusion, class_names, *, title=None):
    """Draw a confusion matrix as a heatmap with the count written in every cell.

    Args:
        confusion: square count matrix, rows = true class, columns = predicted.
        class_names: one name per class, in label order.
        title: optional title above the heatmap.
    """
    confusion = np.asarray(confusion)
    n = len(class_names)
    if confusion.shape != (n, n):
        raise ValueError(f"{n} class names for a confusion matrix of shape {confusion.shape}")
    side = max(4.0, 0.55 * n + 2.5)
    fig = _new_figure(side + 1, side, title)
    ax = fig.subplots()
    image = ax.imshow(confusion, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8, label="count")

    # Dark cells get white text so every count stays readable.
    dark = confusion.max() / 2
    for (row, col), count in np.ndenumerate(confusion):
        ax.text(col, row, str(count), ha="center", va="center", fontsize="small",
                color="white" if count > dark else "black")

    ax.set_xticks(range(n), class_names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return fig


def confusion_heatmap(confusion, class_names, path, *, title=None):
    """Write `confusion_heatmap_figure(...)` to `path` as a PNG and return the Path."""
    return _save(confusion_heatmap_figure(confusion, class_names, title=title), path)


# Trial states as `mnistcls tune` names them, and how each is drawn.
_TRIAL_MARKS = {"complete": ("o", "tab:blue"), "pruned": ("x", "0.55")}


def tuning_history_figure(numbers, values, states, *, title=None):
    """Draw each trial's validation accuracy by trial number, and the best so far as a step line.

    Args:
        numbers: trial numbers.
        values: the validation accuracy each reached (a pruned trial: the best of its epochs).
        states: "complete" or "pruned" per trial; pruned ones are grey crosses and do not
            count for the best so far.
        title: optional title.
    """
    if not len(numbers) == len(values) == len(states) or not numbers:
        raise ValueError("numbers, values and states must be non-empty and of the same length")
    fig = _new_figure(7, 4, title)
    ax = fig.subplots()
    for state, (marker, colour) in _TRIAL_MARKS.items():
        shown = [(n, v) for n, v, s in zip(numbers, values, states) if s == state]
        if shown:
            ax.scatter(*zip(*shown), marker=marker, color=colour, label=state, zorder=3)
    complete = sorted((n, v) for n, v, s in zip(numbers, values, states) if s == "complete")
    if complete:
        best = np.maximum.accumulate([v for _, v in complete])
        ax.step([n for n, _ in complete], best, where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return fig


def tuning_history(numbers, values, states, path, *, title=None):
    """Write `tuning_history_figure(...)` to `path` as a PNG and return the Path."""
    return _save(tuning_history_figure(numbers, values, states, title=title), path)


def param_effect_figure(values, objective, states, *, param_name, log_x=False, categorical=False):
    """Draw the validation accuracy of every trial against the value it drew for one parameter.

    Args:
        values: the parameter's value per trial (None where a trial did not draw it: left out).
        objective: the validation accuracy per trial.
        states: "complete" or "pruned" per trial.
        param_name: the x axis label.
        log_x: a log x axis (the parameter was searched on a log scale).
        categorical: the values are choices: evenly spaced, in order of first appearance.
    """
    drawn = [(v, y, s) for v, y, s in zip(values, objective, states) if v is not None]
    if not drawn:
        raise ValueError(f"no trial drew {param_name}")
    categories = list(dict.fromkeys(str(v) for v, _, _ in drawn)) if categorical else None
    fig = _new_figure(6, 4, f"validation accuracy against {param_name}")
    ax = fig.subplots()
    for state, (marker, colour) in _TRIAL_MARKS.items():
        shown = [(categories.index(str(v)) if categorical else v, y) for v, y, s in drawn if s == state]
        if shown:
            ax.scatter(*zip(*shown), marker=marker, color=colour, label=state, alpha=0.8)
    if categorical:
        ax.set_xticks(range(len(categories)), categories)
        ax.margins(x=0.2)
    elif log_x:
        ax.set_xscale("log")
    ax.set_xlabel(param_name)
    ax.set_ylabel("validation accuracy")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return fig


def param_effect(values, objective, states, path, *, param_name, log_x=False, categorical=False):
    """Write `param_effect_figure(...)` to `path` as a PNG and return the Path."""
    return _save(param_effect_figure(values, objective, states, param_name=param_name, log_x=log_x,
                                     categorical=categorical), path)


# --- from run rows ---------------------------------------------------------------------

def validated_on(validations):
    """What the val_* figures of runs with these `validation` settings measure, for a picture's labels.

    With `validation: test` they are test scores taken during training, and are named so.
    """
    return "test" if validations and all(v == "test" for v in validations) else "validation"


def _one_sweep(items):
    """(the swept field, its values as numbers where they are, whether to spread them on a log axis) when
    every item (a run's row or a study's group) was trained with the same single swept field, else None."""
    fields = {tuple(item["sweep"]) for item in items}
    if len(fields) != 1 or len(next(iter(fields))) != 1:
        return None
    (swept,) = fields.pop()
    values = [_number_or_text(item["sweep"][swept]) for item in items]
    numeric = all(isinstance(v, (int, float)) for v in values)
    # Swept sizes and rates usually grow by factors (10, 32, 100, 317, 1000): spread them on a log axis.
    return swept, values, numeric and min(values) > 0 and max(values) >= 10 * min(values)


def sweep_picture(rows, path):
    """Draw best validation loss and accuracy against the swept value, when `rows` are one sweep."""
    sweep = _one_sweep(rows)
    if sweep is None:
        return None
    swept, values, log_x = sweep
    nan = float("nan")  # an unfinished run may not have validated yet
    return str(sweep_plot(values, [row.get("best_val_loss", nan) for row in rows],
                          [row.get("best_val_accuracy", nan) for row in rows], path,
                          param_name=swept, log_x=log_x, validation=validated_on([row["validation"] for row in rows])))


def sweep_of_groups(groups, path):
    """Draw the mean best validation loss and accuracy of a study's groups (its rows, study._groups) against
    their one swept value, with the spread over their seeds as error bars; None unless they are one sweep."""
    sweep = _one_sweep(groups)
    if sweep is None:
        return None
    swept, values, log_x = sweep
    nan = float("nan")

    def means(field):
        return [nan if group[field]["mean"] is None else group[field]["mean"] for group in groups]

    spreads = tuple([group[field]["std"] for group in groups]
                    for field in ("best_loss_in_training", "best_accuracy_in_training"))
    validation = validated_on([group["validation"] for group in groups])
    return str(sweep_plot(values, means("best_loss_in_training"), means("best_accuracy_in_training"), path,
                          param_name=swept, log_x=log_x, validation=validation, spreads=spreads))


def _number_or_text(value):
    """A swept value as recorded ("317", "0.01", "adam") as a number where it is one."""
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value
