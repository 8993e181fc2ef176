"""Process-wide settings that make CPU training fast."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform
from pathlib import Path

import torch

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


def describe_device(device: torch.device) -> str:
    """A short name of the machine a run used, for reports: the GPU's name, or the CPU's and its threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model_name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {model_name}, {torch.get_num_threads()} threads"
