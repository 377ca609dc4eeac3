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

from omegaconf import DictConfig

from ..errors import InterruptedRun

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signals_recorded():
    """Within the block, SIGINT and SIGTERM are recorded in the yielded list and stop the run with
    KeyboardInterrupt (Lightning composes its own SIGTERM handler with this one); restored after."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield received
        return

    def record(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    previous = {signum: signal.signal(signum, record) for signum in SIGNALS}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def interrupted(signum: int, cfg: DictConfig, run_dir: Path) -> InterruptedRun:
    """The one line for a run stopped by ``signum``: where its last checkpoint is and the command
    that resumes from it, or that it stopped before its first checkpoint."""
    name = signal.Signals(signum).name
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return InterruptedRun(f"stopped by {name} before the first checkpoint; nothing was kept", signum)
    command = shlex.join(["qsnn", "train", *sys.argv[2:]]) if sys.argv[1:2] == ["train"] else f"qsnn train {cfg.name}"
    return InterruptedRun(f"stopped by {name}; the last checkpoint is {last}: resume with {command} ckpt_path={last}", signum)
