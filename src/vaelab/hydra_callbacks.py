"""The Hydra callback of every run and sweep: the checks before Hydra touches the file system, and one writer per
folder. A multirun's own callbacks (its config snapshot, failed-jobs report, MLflow parent run) are in
``vaelab.sweep.callbacks``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from vaelab.errors import VaelabError
from vaelab.exits import ends_on_user_error
from vaelab.job import command_line, is_ddp_child
from vaelab.run.folder import SWEEP_RECORD, RunFolder, sweep_jobs
from vaelab.run.guard import check_not_nested, claim, release, resumes, start_sweep
from vaelab.secrets import check_no_passwords
from vaelab.sweep.callbacks import check_no_repeats, check_same_sweep

log = logging.getLogger(__name__)


class RunFolderGuard(Callback):
    """One writer per run folder, and no silent reuse (``vaelab.run.guard``): a single run claims its folder before
    Hydra writes its record there (the job's ``guard.writing`` goes on with that claim); a multirun refuses a sweep
    folder that already holds jobs, and each of its jobs claims its own folder. Lightning's DDP processes 1..n-1
    leave it to rank 0. A folder that cannot be created is one line, not Hydra's traceback."""

    @ends_on_user_error
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not is_ddp_child():
            folder = Path(str(OmegaConf.select(config, "hydra.run.dir")))
            check_no_passwords(config)  # before anything is written
            claim(folder, resumes(folder, OmegaConf.select(config, "resume")), command=command_line())

    @ends_on_user_error
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(OmegaConf.select(config, "hydra.sweep.dir")))
        if not is_ddp_child():
            check_no_passwords(config)  # before anything is written
            check_no_repeats(list(OmegaConf.select(config, "hydra.overrides.task") or []))
            check_not_nested(sweep_dir)
            if RunFolder(sweep_dir).holds_run():
                raise VaelabError(f"{sweep_dir} holds a run; pass another hydra.sweep.dir.")
        start_sweep(sweep_dir)
        jobs = sweep_jobs(sweep_dir)
        if not is_ddp_child() and (jobs or (sweep_dir / SWEEP_RECORD).is_file()):
            check_same_sweep(config, sweep_dir, len(jobs))
            log.info("finishing the sweep in %s: completed and failed jobs are kept, interrupted ones go on from "
                     "their checkpoints, the others run", sweep_dir)  # fmt: skip

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if OmegaConf.select(config, "hydra.mode") == RunMode.MULTIRUN and not is_ddp_child():
            claim(Path(str(config.hydra.runtime.output_dir)), resuming=False, new_job=True, command=command_line())

    def on_job_end(self, config: DictConfig, **kwargs: Any) -> None:
        release(Path(str(config.hydra.runtime.output_dir)))

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        release(Path(str(OmegaConf.select(config, "hydra.run.dir"))))
