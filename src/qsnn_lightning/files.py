"""Writing files so that a reader never sees half of one."""

import os
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_open(path: Path, mode: str = "wb", **kwargs):
    """Open a temporary file beside ``path`` for writing; when the block ends without an error it
    replaces ``path`` in one rename, so an interrupted write leaves no partial ``path`` behind."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, mode, **kwargs) as file:
            yield file
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
