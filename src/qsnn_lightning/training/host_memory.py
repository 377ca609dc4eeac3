"""Keep freed host memory in the process for the next training step (glibc only).

A training step on CPU allocates and frees many large temporaries: a Q-SNN more than a
full-precision network, since it recomputes each layer's quantized weight in the backward pass
instead of keeping it and converts the spike inputs it saves as bool. glibc's malloc serves
blocks above a threshold (128 KiB at start, adjusted up to 32 MiB as blocks are freed) by mmap
and returns them to the kernel when freed, and trims the top of its heap, so the next step
faults the same memory back in page by page and the kernel zeroes every page again: measured
here, two to three times the page faults of the full-precision network per step and 5 to 8% of
a step's time (docs/results.md). :func:`reuse_freed_memory` sets the mmap threshold to glibc's
maximum (32 MiB) and turns trimming off, so blocks up to 32 MiB are reused from the heap. The
cost: the process keeps its peak resident set instead of shrinking after it, which a training
process reaches again at every step anyway. It is process-wide, as allocator settings are.

The lean path (``speed.activation_memory=lean``) exists for a small resident set: it uses
:func:`return_freed_memory` instead, whatever ``speed.reuse_freed_memory`` says.
"""

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1  # mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems
NEVER_TRIM = -1  # mallopt(3): -1 disables trimming
RETURN_THRESHOLD = 2**20  # return_freed_memory(): blocks above 1 MiB are mmapped


def _mallopt(settings: list[tuple[int, int]]) -> bool:
    """Apply mallopt(3) ``(parameter, value)`` pairs; False (and nothing changed) where the C
    library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all([bool(mallopt(parameter, value)) for parameter, value in settings])


def reuse_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed blocks up to 32 MiB for reuse and never trim its heap.
    Returns False (and changes nothing) where the C library is not glibc."""
    return _mallopt([(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX), (M_TRIM_THRESHOLD, NEVER_TRIM)])


def return_freed_memory() -> bool:
    """Tell glibc's malloc to serve every block above 1 MiB by its own mmap, which goes back to
    the kernel when freed (a fixed threshold: glibc stops raising it): the lean path's kept
    state, freed block by block in the backward pass, leaves the resident set instead of
    staying in the heap. Returns False where the C library is not glibc."""
    return _mallopt([(M_MMAP_THRESHOLD, RETURN_THRESHOLD)])
