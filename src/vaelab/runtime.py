"""Process-wide settings that make CPU training fast."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

# glibc mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's maximum on 64-bit
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024

_tuned = False


def tune_malloc() -> bool:
    """Keep freed activation buffers in the heap instead of returning them to the OS each step.

    glibc serves each multi-MB activation/gradient buffer of a training step with a fresh ``mmap`` and
    unmaps it when freed, so every step page-faults its memory in again: for the conv VAE on 2 cores
    that was ~18 % of CPU time in the kernel and 1,450 instead of 2,230 images/s (docs/performance.md).
    Raising the mmap and trim thresholds keeps that memory mapped. Returns True if applied (Linux with
    glibc); elsewhere it does nothing.
    """
    global _tuned
    if _tuned:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    _tuned = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
    if not _tuned:
        log.debug("mallopt refused the thresholds; allocator left as it is")
    return _tuned
