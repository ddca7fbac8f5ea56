"""What a long job shows while it runs: live progress bars, a line now and then, each run's results.

jobs, study and tune tell a `Reporter` what happens instead of printing it, so
that the CLI decides what is shown: `Reporter()` on the console, `SILENT` under
--json (and, by default, for code that calls the library).
"""

from contextlib import nullcontext

from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn,
                           TransferSpeedColumn)

from mnistcls.report import console, err_console, plain, results_table, styled


class Reporter:
    """Shows a long job's progress and results on the console."""

    def note(self, text):
        """One line, shown as it is (never read as markup)."""
        console.print(plain(text))

    def run_finished(self, row):
        """A finished run's results (a row of `jobs`' results)."""
        console.print(results_table([row]))

    def downloads(self):
        """A context giving `data.load` its progress callable."""
        return DownloadProgress()

    def training(self, title):
        """A context giving `train.fit` its progress display."""
        return TrainingProgress(title)


class Silent(Reporter):
    """Shows nothing."""

    def note(self, text):
        pass

    def run_finished(self, row):
        pass

    def downloads(self):
        return nullcontext()

    def training(self, title):
        return nullcontext()


SILENT = Silent()


class TrainingProgress:
    """A live bar per epoch (steps, loss, accuracy, ETA) that leaves one line per finished epoch.

    Driven by callbacks.ProgressEvents; used as a context manager around `fit`.
    """

    def __init__(self, title, out=None):
        self.console = out or console
        self.title = title
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[metrics]}"), TimeRemainingColumn(),
                                 console=self.console, transient=True)
        self.task = None

    def __enter__(self):
        self.console.print(styled(self.title, "bold"))
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def epoch_begin(self, epoch, epochs, steps):
        self.epochs = epochs
        self.task = self.progress.add_task(f"epoch {epoch}/{epochs}", total=steps, metrics="")

    def batch_end(self, step, logs):
        self.progress.update(self.task, completed=step, metrics=_metrics_text(logs))

    def epoch_end(self, epoch, logs, seconds):
        self.progress.remove_task(self.task)
        width = len(str(self.epochs))
        self.console.print(f"epoch {epoch:>{width}}/{self.epochs}  {_metrics_text(logs)}  {seconds:6.1f}s")


def _metrics_text(logs):
    parts = []
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        if key in logs:
            parts.append(f"{key} {logs[key]:.4f}")
    return "  ".join(parts)


class DownloadProgress:
    """A progress bar per downloaded file; called as progress(description, done_bytes, total_bytes)."""

    def __init__(self, out=None):
        self.progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(), console=out or err_console,
                                 transient=False)
        self.tasks = {}

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def __call__(self, description, done, total):
        if description not in self.tasks:
            self.tasks[description] = self.progress.add_task(description, total=total)
        self.progress.update(self.tasks[description], completed=done, total=total)
