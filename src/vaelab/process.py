"""The process a job runs in: the allocator tuned for training, the job's share of the cores, and Lightning's DDP
processes pointed at one sweep job. Used by ``training`` and ``evaluation``; the commands (``cli``) set up nothing
of their own."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import read_write

from vaelab.run.folder import in_multirun

log = logging.getLogger(__name__)

# glibc mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's maximum on 64-bit
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024

JOB_THREADS_ENV = "VAELAB_JOB_THREADS"


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


def job_threads(launcher: dict | None, cores: int) -> int | None:
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


def set_job_threads() -> int:
    """Apply ``job_threads`` to the running Hydra job (and, through ``VAELAB_JOB_THREADS``, to the DDP processes
    Lightning starts from it); returns the thread count in use."""
    import torch

    threads = None
    if HydraConfig.initialized():
        launcher = HydraConfig.get().get("launcher")
        # The cores this process may run on: its affinity mask (a SLURM or container limit counts), where there is one.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = job_threads(dict(launcher) if launcher is not None else None, cores)
    if threads is None and os.environ.get(JOB_THREADS_ENV):
        threads = int(os.environ[JOB_THREADS_ENV])
    if threads is not None:
        torch.set_num_threads(threads)
        os.environ[JOB_THREADS_ENV] = str(threads)
    return torch.get_num_threads()


@contextmanager
def rerun_only_this_job_in_ddp_processes(output_dir: Path, world_size: int) -> Iterator[None]:
    """Let Lightning's DDP processes 1..n-1 re-run this job, not the whole sweep: Lightning re-runs the command line
    with ``hydra.run.dir=<run.dir>``, which in a multirun job are the sweep's; both point at this job meanwhile."""
    if world_size <= 1 or not in_multirun() or "LOCAL_RANK" in os.environ:
        yield
        return
    hydra_cfg = HydraConfig.get()
    saved_argv, saved_run_dir, saved_environ = sys.argv, hydra_cfg.run.dir, dict(os.environ)
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task, "hydra.mode=RUN"]
    with read_write(hydra_cfg.run):
        hydra_cfg.run.dir = str(output_dir)
    try:
        yield
    finally:
        sys.argv = saved_argv
        with read_write(hydra_cfg.run):
            hydra_cfg.run.dir = saved_run_dir
        # The next job starts its own process group, on a fresh port (Lightning left MASTER_PORT & co. set).
        import torch.distributed

        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        os.environ.clear()
        os.environ.update(saved_environ)
