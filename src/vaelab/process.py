"""The process a job runs in: the allocator tuned for training and the job's share of the cores. Used by
``training`` and ``evaluation``; the commands (``cli``) set up nothing of their own."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Mapping
from functools import cache

log = logging.getLogger(__name__)

# glibc mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's maximum on 64-bit
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024


@cache
def tune_malloc() -> bool:
    """Keep freed activation buffers in the heap: glibc maps each multi-MB buffer afresh and unmaps it when freed, so
    every step page-faulted its memory in again (conv VAE, 2 cores: ~18 % of CPU time in the kernel, 1,450 instead of
    2,230 images/s; docs/performance.md). True if applied (Linux with glibc)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    tuned = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
    if not tuned:
        log.debug("mallopt refused the thresholds; allocator left as it is")
    return tuned


def available_cores() -> int:
    """The cores this process may run on: its affinity mask (a SLURM or container limit counts), where there is one."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def job_threads(launcher: Mapping[str, object] | None, cores: int) -> int | None:
    """Intra-op threads for a job run by ``launcher`` (Hydra's launcher config: joblib's ``n_jobs``, submitit's
    ``cpus_per_task``), or None to keep torch's. Jobs at once split the cores: OpenMP threads spin, and two 2-thread
    processes on 2 cores ran ~5x slower each (docs/performance.md)."""
    launcher = launcher or {}
    if launcher.get("cpus_per_task"):
        return max(1, min(cores, int(launcher["cpus_per_task"])))
    if launcher.get("n_jobs") is not None:
        n_jobs = int(launcher["n_jobs"])
        parallel = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)  # joblib: -1 = all cores, -2 = all but one
        return max(1, cores // parallel)
    return None


def set_threads(threads: int | None) -> int:
    """Run torch's intra-op work on ``threads`` (None: keep torch's); returns the thread count in use."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()
