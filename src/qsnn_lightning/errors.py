"""The errors that mean bad input: each carries one line that names the problem and the fix, and
the CLI reports any of them (``QSNNError``) with exit status 2 and no traceback."""


class QSNNError(Exception):
    """Bad input to qsnn-lightning, told in one line; the CLI exits with ``exit_status``."""

    exit_status = 2


class UsageError(QSNNError):
    """A bad command line: an unknown option, argument or value."""


class ConfigError(QSNNError, ValueError):
    """A bad experiment name, config key or value."""


class CheckpointError(QSNNError, ValueError):
    """A checkpoint that is missing, unreadable or not from qsnn-lightning."""


class DatasetNotFoundError(QSNNError, FileNotFoundError):
    """The dataset files are absent and could not (or may not) be downloaded."""


class DatasetCorruptError(QSNNError, ValueError):
    """A dataset file exists but cannot be read as the dataset's format."""


class SweepError(QSNNError, ValueError):
    """A sweep that cannot be read or run as asked."""


class ExportError(QSNNError, ValueError):
    """A model or setting the integer export cannot represent."""


class MissingDependencyError(QSNNError, ImportError):
    """An optional dependency a command needs is not installed; the message names the pip command."""


class DivergedError(QSNNError):
    """Weights or BatchNorm statistics that are no longer finite numbers (NaN or infinite)."""


class DiskFullError(QSNNError, OSError):
    """The run's disk filled up while it wrote its folder."""


class InterruptedRun(QSNNError):
    """A run stopped by SIGINT (Ctrl-C) or SIGTERM; the CLI exits with 128 + the signal's number."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.exit_status = 128 + signal_number


class MemoryEstimateError(QSNNError):
    """A training step that would not fit in the free memory of its device."""


def one_line(error: BaseException) -> str:
    """An exception's message on one line (its type's name when it has none)."""
    return " ".join(str(error).split()) or type(error).__name__


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): the cause,
    without the advice some libraries print below it."""
    lines = str(error).strip().splitlines()
    return lines[0].strip() if lines else type(error).__name__
