"""Errors a user can act on.

Anything raised as a `MnistclsError` reaches the user as its message alone (no
traceback) and ends the command with the error's exit code. Everything else is a
bug in mnistcls and keeps its traceback.
"""

from dataclasses import dataclass


class MnistclsError(Exception):
    """A problem with the user's input or environment, with a message saying what to do."""

    exit_code = 1


class UsageError(MnistclsError):
    """A wrong option, path or name on the command line."""

    exit_code = 2


class DataError(MnistclsError):
    """A dataset that is missing, corrupt or cannot be downloaded."""

    exit_code = 1


class GPUUnavailableError(MnistclsError):
    """`--device gpu` was asked for on a machine without one."""

    exit_code = 1


class Diverged(MnistclsError):
    """Training stopped because its loss became NaN or infinite; the run is recorded as diverged."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One mistake in a spec: where it is and what is wrong."""

    file: str
    line: int | None  # 1-based; None when the value came from the command line
    path: str  # dotted field path, e.g. "model.3.units"
    message: str

    def __str__(self):
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class SpecError(MnistclsError):
    """One or more problems in a model spec; all of them are reported together."""

    exit_code = 2

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class Interrupted(MnistclsError):
    """Ctrl-C during a job that has been left in a clean state."""

    exit_code = 130
