"""Run one Hydra job (``train``/``evaluate``) the way a user and a sweep need it.

A single run turns a user error into one ``error:`` line on stderr and exit status 1. Inside a
multirun (``-m``) any exception is contained: its one line goes to the job's log and console, the job
folder records it (``FAILED`` and ``metrics.json`` with ``"status": "failed"``), and the sweep goes on;
``FailedJobsReport`` (a Hydra callback) exits non-zero at the end if any job failed.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, read_write

from vaelab import run_guard
from vaelab.errors import Interrupted, user_error
from vaelab.run_folder import RunFolder, RunStatus
from vaelab.runtime import quiet_lightning

log = logging.getLogger(__name__)
Result = TypeVar("Result")


def in_multirun() -> bool:
    """True inside a job of ``-m`` (or ``hydra.mode=MULTIRUN``)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def record_failure(output_dir: Path, line: str, details: str = "") -> None:
    """Mark a job folder failed: ``FAILED`` holds the error line (and the traceback of an unexpected error)."""
    run = RunFolder(output_dir)
    run.write_metrics({"status": RunStatus.FAILED, "error": line})
    run.failed_file.write_text(line + "\n" + (f"\n{details}" if details else ""))


def error_line(error: BaseException) -> str:
    """One line for an error: a user error's message, else the exception's type and first line."""
    cause = user_error(error)
    if cause is not None:
        return str(cause)
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def run_job(task: Callable[[DictConfig], Result], cfg: DictConfig) -> Result | None:
    """``task(cfg)``, with errors reported as the module docstring says; None when a sweep job failed.

    ``HYDRA_FULL_ERROR=1`` lets every error propagate with its traceback, as Hydra does.
    """
    quiet_lightning()
    try:
        return task(cfg)
    except BaseException as error:
        run_guard.restore(Path(cfg.paths.output_dir))  # failed before it trained: the folder's record as it was
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or not isinstance(error, Exception):
            raise
        cause = user_error(error)
        if not in_multirun():
            if cause is None:
                raise
            print(f"error: {cause}", file=sys.stderr)
            raise SystemExit(1) from None
        line = error_line(error)
        log.error("error: %s", line)
        if isinstance(cause, Interrupted):  # Ctrl-C or SIGTERM (a cluster's pre-emption): stop the sweep, do not go on
            RunFolder(Path(cfg.paths.output_dir)).write_metrics({"status": RunStatus.INTERRUPTED, "error": line})
            raise SystemExit(1) from None
        record_failure(Path(cfg.paths.output_dir), line, "" if cause is not None else traceback.format_exc())
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
