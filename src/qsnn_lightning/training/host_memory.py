"""Host memory of a training process on Linux: freed blocks kept for the next step or returned
(glibc's malloc), and PyTorch's large tensors on transparent huge pages.

A training step on CPU allocates and frees many large temporaries: a Q-SNN more than a
full-precision network, since it recomputes each layer's quantized weight in the backward pass
instead of keeping it and converts the spike inputs it saves as bool. glibc's malloc serves
blocks above a threshold (128 KiB at start, adjusted up to 32 MiB as blocks are freed) by mmap
and returns them to the kernel when freed, and trims the top of its heap, so the next step
faults the same memory back in page by page and the kernel zeroes every page again (tens of
thousands of page faults per step, docs/results.md, "Page faults"). :func:`reuse_freed_memory` sets the mmap threshold to glibc's
maximum (32 MiB) and turns trimming off, so blocks up to 32 MiB are reused from the heap. The
cost: the process keeps its peak resident set instead of shrinking after it, which a training
process reaches again at every step anyway. It is process-wide, as allocator settings are.

``speed.reuse_freed_memory=false`` takes :func:`return_freed_memory` instead: every block above
1 MiB goes back to the kernel when freed, a smaller peak for more page faults (the lean path's
choice where memory is what limits the run; docs/results.md, "Training memory").

Every fault costs less on huge pages: :func:`use_huge_pages` sets PyTorch's
``THP_MEM_ALLOC_ENABLE`` (c10's CPU allocator, torch 2.14.1, reads it once, at its first
allocation), so allocations of 2 MB and more are aligned to 2 MB and madvised
``MADV_HUGEPAGE``, and a fresh block faults in 2 MB pages instead of 4 KiB ones where the
kernel's transparent huge pages are ``madvise`` or ``always``. ``qsnn`` sets it before it
imports torch.
"""

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1  # mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems
NEVER_TRIM = -1  # mallopt(3): -1 disables trimming
RETURN_THRESHOLD = 2**20  # return_freed_memory(): blocks above 1 MiB are mmapped
HUGE_PAGES_ENV = "THP_MEM_ALLOC_ENABLE"  # PyTorch's switch (c10/core/impl/alloc_cpu.cpp)


def use_huge_pages() -> None:
    """Ask PyTorch to put CPU allocations of 2 MB and more on transparent huge pages, unless the
    environment says otherwise (it takes effect only where torch has not allocated yet)."""
    os.environ.setdefault(HUGE_PAGES_ENV, "1")


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
    the kernel when freed (a fixed threshold: glibc stops raising it), so what a step frees,
    the lean path's kept state block by block, leaves the resident set instead of staying in
    the heap. Returns False where the C library is not glibc."""
    return _mallopt([(M_MMAP_THRESHOLD, RETURN_THRESHOLD)])
