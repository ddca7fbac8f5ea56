"""Every plot draws what it claims to and is written as a readable PNG."""

import numpy as np
import pytest
from PIL import Image

from mnistcls import plots
from mnistcls.errors import MnistclsError

NAMES = ["zero", "one", "two"]


def history(epochs, validation=True):
    e = np.arange(1, epochs + 1)
    h = {"loss": list(np.exp(-e / 5)), "accuracy": list(1 - 0.5 * np.exp(-e / 5))}
    if validation:
        h |= {"val_loss": list(1.2 * np.exp(-e / 6)), "val_accuracy": list(0.95 - 0.5 * np.exp(-e / 6))}
    return h


def open_png(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        return image.size


def test_image_grid_png(tmp_path):
    images = [np.full((28, 28), 40 * i, np.uint8) for i in range(5)]
    path = plots.image_grid(images, [f"img {i}" for i in range(5)], tmp_path / "grid.png", title="samples")
    assert path == tmp_path / "grid.png"
    width, height = open_png(path)
    assert 200 < width < 1000 and 200 < height < 1000
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed, not left behind


def test_image_grid_layout_titles_and_mistakes():
    images = [np.zeros((28, 28), np.uint8)] * 5
    titles = [f"true: {i}\npred: {i if i % 2 else 0}" for i in range(5)]
    fig = plots.image_grid_figure(images, titles, mistakes=[False, False, True, False, True], cols=2)
    axes = fig.axes
    assert len(axes) == 6  # 3 rows of 2; the sixth cell is empty
    assert [len(ax.images) for ax in axes] == [1, 1, 1, 1, 1, 0]
    assert not axes[5].axison
    assert [ax.get_title() for ax in axes[:5]] == titles
    red = [ax.title.get_color() == plots.WRONG_COLOUR for ax in axes[:5]]
    assert red == [False, False, True, False, True]


def test_image_grid_shows_pairs_of_different_sizes():
    original = np.full((200, 300), 255, np.uint8)
    fig = plots.image_grid_figure([original, np.zeros((28, 28), np.uint8)], ["yours", "model input"], cols=2)
    assert [ax.images[0].get_array().shape for ax in fig.axes] == [(200, 300), (28, 28)]


def test_image_grid_rejects_mismatched_titles():
    with pytest.raises(ValueError):
        plots.image_grid_figure([np.zeros((28, 28), np.uint8)] * 2, ["only one"])


def test_learning_curves_one_run(tmp_path):
    fig = plots.learning_curves_figure({"A2": history(10)}, title="A2 on MNIST")
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_yscale() == "log"
    assert acc_ax.get_yscale() == "linear"
    assert (loss_ax.get_title(), acc_ax.get_title()) == ("loss", "accuracy")
    assert fig.get_suptitle() == "A2 on MNIST"
    # Train solid, validation dashed, x from epoch 1.
    assert [line.get_linestyle() for line in loss_ax.lines] == ["-", "--"]
    assert list(loss_ax.lines[0].get_xdata()) == list(range(1, 11))
    assert list(acc_ax.lines[1].get_ydata()) == history(10)["val_accuracy"]
    assert [t.get_text() for t in acc_ax.get_legend().get_texts()] == ["train", "validation"]

    width, height = open_png(plots.learning_curves({"A2": history(10)}, tmp_path / "curves.png"))
    assert width > height > 300


def test_learning_curves_three_runs_share_a_colour_per_run(tmp_path):
    runs = {"sgd": history(30), "adam": history(20), "no-val": history(25, validation=False)}
    fig = plots.learning_curves_figure(runs)
    loss_ax, acc_ax = fig.axes
    assert len(loss_ax.lines) == len(acc_ax.lines) == 5  # 2 + 2 + 1 (no validation)
    colours = [line.get_color() for line in loss_ax.lines]
    assert colours[0] == colours[1] != colours[2] == colours[3] != colours[4]
    assert [t.get_text() for t in acc_ax.get_legend().get_texts()] == ["sgd", "adam", "no-val", "train", "validation"]
    open_png(plots.learning_curves(runs, tmp_path / "compare.png"))


def test_sweep_plot_numeric_log_axis(tmp_path):
    units = [1000, 10, 100, 32, 317]  # out of order on purpose
    loss = [0.066, 0.2, 0.075, 0.11, 0.068]
    acc = [0.983, 0.94, 0.978, 0.967, 0.981]
    fig = plots.sweep_plot_figure(units, loss, acc, param_name="hidden units", log_x=True)
    loss_ax, acc_ax = fig.axes
    for ax in fig.axes:
        assert ax.get_xscale() == "log"
        assert ax.get_xlabel() == "hidden units"
        assert [t.get_text() for t in ax.get_xticklabels()] == ["10", "32", "100", "317", "1000"]
    # Points are sorted by value, each score staying with its value.
    assert list(loss_ax.lines[0].get_xdata()) == [10, 32, 100, 317, 1000]
    assert list(acc_ax.lines[0].get_ydata()) == [0.94, 0.967, 0.978, 0.981, 0.983]

    width, height = open_png(plots.sweep_plot(units, loss, acc, tmp_path / "sweep.png", param_name="units"))
    assert width > height > 300


def test_sweep_plot_categorical_values():
    fig = plots.sweep_plot_figure(["sgd", "adam"], [0.2, 0.1], [0.9, 0.95], param_name="optimizer")
    ax = fig.axes[0]
    assert ax.get_xscale() == "linear"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["sgd", "adam"]
    assert list(ax.lines[0].get_ydata()) == [0.2, 0.1]


def test_sweep_plot_log_axis_needs_positive_values():
    with pytest.raises(ValueError, match="positive"):
        plots.sweep_plot_figure([0, 1], [0.2, 0.1], [0.9, 0.95], param_name="dropout", log_x=True)


def test_confusion_heatmap_annotates_every_count(tmp_path):
    confusion = np.array([[50, 2, 0], [3, 40, 7], [1, 0, 45]])
    fig = plots.confusion_heatmap_figure(confusion, NAMES, title="test set")
    ax = fig.axes[0]
    assert sorted(int(t.get_text()) for t in ax.texts) == sorted(confusion.ravel().tolist())
    # Each count sits on its own cell: x = predicted column, y = true row.
    cells = {t.get_position(): int(t.get_text()) for t in ax.texts}
    assert cells[(2, 1)] == 7 and cells[(0, 1)] == 3
    # Dark (large) cells get white text.
    assert {t.get_text(): t.get_color() for t in ax.texts}["50"] == "white"
    assert [t.get_text() for t in ax.get_xticklabels()] == NAMES
    assert [t.get_text() for t in ax.get_yticklabels()] == NAMES
    assert ax.get_xticklabels()[0].get_rotation() == 45
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted", "true")
    assert len(fig.axes) == 2  # the heatmap and its colourbar

    width, height = open_png(plots.confusion_heatmap(confusion, NAMES, tmp_path / "cm.png"))
    assert width > 300 and height > 300


def test_confusion_heatmap_rejects_wrong_number_of_names():
    with pytest.raises(ValueError):
        plots.confusion_heatmap_figure(np.eye(3), ["a", "b"])


def test_existing_file_is_replaced(tmp_path):
    path = tmp_path / "out" / "curves.png"  # the folder is created
    plots.learning_curves({"a": history(3)}, path)
    first = path.read_bytes()
    plots.learning_curves({"a": history(8)}, path)
    assert path.read_bytes() != first
    assert sorted(p.name for p in path.parent.iterdir()) == ["curves.png"]


def test_unwritable_path_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(MnistclsError, match="cannot write the picture .*file/x.png"):
        plots.learning_curves({"a": history(3)}, blocker / "x.png")
