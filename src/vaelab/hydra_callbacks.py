"""Hydra callbacks: checks before Hydra touches the file system, and the failed-jobs report of a multirun."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from vaelab.jobs import FAILED_FILE


class OutputDirCheck(Callback):
    """Stop with one line when the run (or sweep) folder cannot be created, instead of Hydra's traceback."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(OmegaConf.select(config, "hydra.run.dir"))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(OmegaConf.select(config, "hydra.sweep.dir"))

    @staticmethod
    def _check(folder: str | None) -> None:
        if folder is None:
            return
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            print(
                f"error: cannot create the run folder {folder} ({error.strerror}); "
                "pass paths.log_dir=<a writable folder> or hydra.run.dir=<folder>.",
                file=sys.stderr,
            )
            sys.exit(1)


class FailedJobsReport(Callback):
    """At the end of a multirun: list the jobs of this sweep that failed and exit with status 1 if any did.

    Jobs record their own failure (``vaelab.jobs``), in whatever process a launcher ran them, so this
    reads the job folders this multirun wrote rather than the launcher's return values.
    """

    def __init__(self) -> None:
        self.started = 0.0

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time() - 1.0  # file times can be a little behind the clock

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(OmegaConf.select(config, "hydra.sweep.dir")))
        jobs = [p.parents[1] for p in sweep_dir.glob("*/.hydra/overrides.yaml") if self._new(p)]
        failed = sorted(
            (job for job in jobs if self._new(job / FAILED_FILE)), key=lambda job: (len(job.name), job.name)
        )
        if not failed:
            return
        lines = [f"error: {len(failed)} of {len(jobs)} jobs failed (each folder's FAILED file says why):"]
        lines += [f"  {job}: {(job / FAILED_FILE).read_text().splitlines()[0]}" for job in failed]
        print("\n".join(lines), file=sys.stderr, flush=True)
        sys.exit(1)

    def _new(self, path: Path) -> bool:
        """True if ``path`` exists and was written by this multirun."""
        return path.is_file() and path.stat().st_mtime >= self.started
