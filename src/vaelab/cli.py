"""The command lines (``vaelab-train``/``vaelab-eval``, and ``train.py``/``evaluate.py``, which call them): one Hydra
job (``train``/``evaluate``) run the way a user and a sweep need it: the process set-up (allocator, threads),
one-line errors and sweep containment. The configs are the package's own (``vaelab/conf``, which ``conf/`` in a
clone links to); ``--config-dir`` or ``hydra.searchpath`` adds a user's.

A single run turns a user error into one ``error:`` line on stderr and exit status 1. Inside a
multirun (``-m``) any exception is contained: its one line goes to the job's log and console, the job
folder records it (``FAILED`` and ``metrics.json`` with ``"status": "failed"``), and the sweep goes on;
``FailedJobsReport`` (a Hydra callback) exits non-zero at the end if any job failed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TypeVar

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, read_write

from vaelab.errors import Interrupted, VaelabError, exit_with_error, require, user_error
from vaelab.run import guard as run_guard
from vaelab.run.folder import RunFolder, RunStatus, in_multirun
from vaelab.run.resume import with_run_overrides

log = logging.getLogger(__name__)
Result = TypeVar("Result")
CONFIG_PATH = "conf"  # beside this file: vaelab/conf

# glibc mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's maximum on 64-bit
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024

JOB_THREADS_ENV = "VAELAB_JOB_THREADS"


@cache
def tune_malloc() -> bool:
    """Keep freed activation buffers in the heap instead of returning them to the OS each step.

    glibc serves each multi-MB activation/gradient buffer of a training step with a fresh ``mmap`` and
    unmaps it when freed, so every step page-faults its memory in again: for the conv VAE on 2 cores
    that was ~18 % of CPU time in the kernel and 1,450 instead of 2,230 images/s (docs/performance.md).
    Raising the mmap and trim thresholds keeps that memory mapped. Returns True if applied (Linux with
    glibc); elsewhere it does nothing.
    """
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
    """Intra-op threads for a job run by ``launcher`` (Hydra's launcher config), or None to keep torch's default.

    Jobs that run at once must split the cores: OpenMP threads spin, so two 2-thread processes on 2 cores
    run ~5x slower each (docs/performance.md). Read from the launcher's own settings: ``n_jobs`` jobs at once
    (joblib; -1: one per core), or ``cpus_per_task`` cores per job (submitit: a SLURM allocation, or a share here).
    """
    launcher = launcher or {}
    if launcher.get("cpus_per_task"):
        return max(1, min(cores, int(launcher["cpus_per_task"])))
    if launcher.get("n_jobs") is not None:
        n_jobs = int(launcher["n_jobs"])
        parallel = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)  # joblib: -1 = all cores, -2 = all but one
        return max(1, cores // parallel)
    return None


def set_job_threads() -> int:
    """Apply ``job_threads`` to the running Hydra job; returns the thread count in use.

    The count is exported as ``VAELAB_JOB_THREADS`` for the DDP processes Lightning starts from this job.
    """
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


def _not_a_tip(record: logging.LogRecord) -> bool:  # a function, not a lambda: addFilter adds it once per process
    return not str(record.msg).startswith("💡 Tip:")


def quiet_lightning() -> None:
    """Lightning's messages once, in Hydra's console and log file: ``import lightning`` gives its logger a
    stderr handler of its own (every line twice under Hydra, and noise before a one-line error), and the
    Trainer advertises cloud services at every start."""
    import lightning  # noqa: F401  (adds the handler this removes)

    if logging.getLogger().hasHandlers():
        lightning_logger = logging.getLogger("lightning")
        for handler in list(lightning_logger.handlers):
            lightning_logger.removeHandler(handler)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_not_a_tip)


def run_job(task: Callable[[DictConfig], Result], cfg: DictConfig) -> Result | None:
    """``task(cfg)``, with errors reported as the module docstring says; None when a sweep job failed.

    ``HYDRA_FULL_ERROR=1`` lets every error propagate with its traceback, as Hydra does.
    """
    quiet_lightning()
    folder = RunFolder(Path(cfg.paths.output_dir))
    try:
        return task(cfg)
    except BaseException as error:
        run_guard.restore(folder.path)  # failed before it trained: the folder's record as it was
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or not isinstance(error, Exception):
            raise
        cause = user_error(error)
        if not in_multirun():
            if cause is None:
                raise
            exit_with_error(cause)
        # One line: a user error's message, else the exception's type and its message's first line.
        first = str(error).strip().splitlines()[:1]
        line = str(cause) if cause is not None else ": ".join([type(error).__name__, *first])
        log.error("error: %s", line)
        interrupted = isinstance(cause, Interrupted)  # Ctrl-C or SIGTERM (a pre-emption): stop the sweep
        folder.write_metrics({"status": RunStatus.INTERRUPTED if interrupted else RunStatus.FAILED, "error": line})
        if interrupted:
            raise SystemExit(1) from None
        # FAILED: the line, and the traceback of an unexpected error.
        folder.failed_file.write_text(line + "\n" + ("" if cause is not None else f"\n{traceback.format_exc()}"))
        return None


@contextmanager
def rerun_only_this_job_in_ddp_processes(output_dir: Path, world_size: int) -> Iterator[None]:
    """Let Lightning's DDP processes 1..n-1 re-run this job, not the whole sweep.

    Lightning starts them by re-running the command line plus ``hydra.run.dir=<HydraConfig run.dir>``. In
    a multirun job that command is the sweep itself, and ``run.dir`` is not the job folder; here both are
    pointed at this job (its own overrides, run mode, its folder) while the job runs.
    """
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


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def _train_job(cfg: DictConfig) -> float | None:
    from vaelab.training import train

    metrics = run_job(train, cfg)  # None: a sweep job that failed (recorded in its folder)
    # optimized_metric is checked against the metrics a run logs before it trains (training.check_optimized_metric).
    return metrics.get(cfg.get("optimized_metric")) if metrics else None


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="eval")
def _evaluate_job(cfg: DictConfig) -> list[dict] | None:
    from vaelab.evaluation import evaluate

    return run_job(evaluate, cfg)  # the metrics of every checkpoint evaluated (one, or each run compared)


# The Hydra plugin each launcher config needs (conf/launcher/), all in the sweeps extra.
LAUNCHER_PLUGINS = {"joblib": "hydra_plugins.hydra_joblib_launcher",
                    "slurm": "hydra_plugins.hydra_submitit_launcher",
                    "submitit_local": "hydra_plugins.hydra_submitit_launcher"}  # fmt: skip


def check_launcher_installed(argv: list[str]) -> None:
    """``launcher=joblib`` without its Hydra plugin is one line naming the extra, not Hydra's search-path report."""
    for token in argv[1:]:
        name = token.partition("launcher=")[2] if token.lstrip("+~").startswith("launcher=") else None
        if name in LAUNCHER_PLUGINS:
            require(LAUNCHER_PLUGINS[name], extra="sweeps", purpose=f"launcher={name}")


def train_command() -> None:
    """``vaelab-train``: Hydra's command line for ``vaelab.training.train``; ``resume=<run>`` goes on with the
    run's own overrides."""
    try:
        sys.argv = with_run_overrides(sys.argv)
        check_launcher_installed(sys.argv)
    except (VaelabError, OSError) as error:
        exit_with_error(user_error(error) or error)
    # experiment is an optional group of train.yaml's defaults: Hydra would refuse the appending form that older
    # runs recorded and other templates teach.
    sys.argv = [re.sub(r"^\+{1,2}experiment=", "experiment=", token) for token in sys.argv]
    _train_job()


def evaluate_command() -> None:
    """``vaelab-eval``: Hydra's command line for ``vaelab.evaluation.evaluate``."""
    _evaluate_job()
