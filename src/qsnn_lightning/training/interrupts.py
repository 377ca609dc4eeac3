"""Ctrl-C (SIGINT) and SIGTERM (what cluster schedulers send) during a run: the run stops at once,
keeps the checkpoints it has written, and says in one line where the last one is and how to resume.

Lightning turns KeyboardInterrupt into ``sys.exit(1)`` and SIGTERM into an exit status of 0 after
the current batch (lightning 2.6), so neither says what happened; the signal is recorded here instead.
"""

import contextlib
import shlex
import signal
import sys
import threading
from pathlib import Path

from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig

from ..errors import InterruptedRun

SIGNALS = (signal.SIGINT, signal.SIGTERM)


RECEIVED: list[int] = []  # the signals received while a run fits, in order


@contextlib.contextmanager
def signals_recorded():
    """Within the block, SIGINT and SIGTERM are recorded in the yielded list (:data:`RECEIVED`);
    :class:`StopOnSignal` stops the run at the end of the current batch, a second signal at once.
    (A handler that raised on the first could do so inside a weakref callback, where Python ignores
    the exception and the run went on.) Lightning composes its SIGTERM handler with this one."""
    RECEIVED.clear()
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield RECEIVED
        return

    def record(signum, frame):
        RECEIVED.append(signum)
        if len(RECEIVED) > 1:
            raise KeyboardInterrupt

    previous = {signum: signal.signal(signum, record) for signum in SIGNALS}
    try:
        yield RECEIVED
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class StopOnSignal(Callback):
    """Stops the run with KeyboardInterrupt after the batch during which a signal arrived."""

    def _stop_if_signalled(self, *args, **kwargs) -> None:
        if RECEIVED:
            raise KeyboardInterrupt

    on_train_batch_end = on_validation_batch_end = on_test_batch_end = _stop_if_signalled


def interrupted(signum: int, cfg: DictConfig, run_dir: Path) -> InterruptedRun:
    """The one line for a run stopped by ``signum``: where its last checkpoint is and the command
    that resumes from it, or that it stopped before its first checkpoint."""
    name = signal.Signals(signum).name
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return InterruptedRun(f"stopped by {name} before the first checkpoint; nothing was kept", signum)
    given = [item for item in sys.argv[2:] if not item.startswith("ckpt_path=")]  # a resumed run's own ckpt_path is replaced
    command = shlex.join(["qsnn", "train", *given]) if sys.argv[1:2] == ["train"] else f"qsnn train {cfg.name}"
    return InterruptedRun(f"stopped by {name}; the last checkpoint is {last}: resume with {command} ckpt_path={last}", signum)
