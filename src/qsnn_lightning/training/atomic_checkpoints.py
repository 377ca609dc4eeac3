"""Checkpoints written whole or not at all, and a full disk told in one line.

Lightning's ``_atomic_save`` writes a local file in place inside an fsspec transaction (lightning
2.6, fsspec 2025): on a full disk it leaves a partial ``last.ckpt`` that no longer loads, in place
of the previous, whole one. Here the checkpoint goes to a temporary file in the same folder and is
renamed over the old one only once written.
"""

import errno
import io
import shutil
from pathlib import Path

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..errors import DiskFullError
from ..files import atomic_open


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose files are renamed into place once whole. ``last_size``: the bytes
    of the last checkpoint this process wrote or tried to write, for the disk-full message."""

    last_size = 0

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        """Serialize ``checkpoint`` in memory, then write it beside ``path`` and rename it there."""
        if storage_options is not None:
            raise TypeError(f"storage_options are not supported by {type(self).__name__}")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        AtomicCheckpointIO.last_size = buffer.tell()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(Path(path)) as file:
            file.write(buffer.getbuffer())


def disk_full(error: BaseException, run_dir: Path) -> DiskFullError | None:
    """The one-line error for a run stopped by a full disk (None for any other error): the free
    space, and what the run's checkpoints need (best.ckpt, last.ckpt and the copy being written)."""
    if not isinstance(error, OSError) or error.errno != errno.ENOSPC:
        return None
    free = shutil.disk_usage(run_dir if run_dir.exists() else run_dir.parent).free
    size = AtomicCheckpointIO.last_size
    need = f"; its checkpoints need about {3 * size / 1e6:.1f} MB (best, last and the copy being written) plus logs" if size else ""
    return DiskFullError(f"the disk under {run_dir} is full ({free / 1e6:.1f} MB free){need}: free some space or choose "
                         "another run_dir=")
