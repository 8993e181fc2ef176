"""The command lines (``vaelab-train``/``vaelab-eval``; ``train.py``/``evaluate.py`` call them): one Hydra job each,
composed from the package's configs (``vaelab/conf``; ``--config-dir`` adds a user's). A single run ends a user
error with one ``error:`` line and exit status 1; a multirun job records any error in its folder
(``RunFolder.record_failure``) and the sweep goes on, ``FailedJobsReport`` exiting non-zero at its end.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import yaml
from omegaconf import DictConfig

from vaelab.checks import check_eval_settings, check_train_settings
from vaelab.errors import Interrupted, VaelabError, user_error
from vaelab.exits import exit_with_error
from vaelab.hydra_compat import main_options
from vaelab.job import JOB_THREADS_ENV, Job
from vaelab.run import guard as run_guard
from vaelab.run.folder import CONFIG_RECORD, HYDRA_RECORD, JOB_RECORD, RunFolder, RunStatus
from vaelab.run.overrides import with_given_overrides, with_run_overrides, with_search_as_multirun
from vaelab.secrets import check_command_line
from vaelab.targets import TRUSTED_PACKAGES, require

log = logging.getLogger(__name__)
CONFIG_PATH = "conf"  # beside this file: vaelab/conf


def _not_a_tip(record: logging.LogRecord) -> bool:  # a function, not a lambda: addFilter adds it once per process
    return not str(record.msg).startswith("💡 Tip:")


def quiet_lightning() -> None:
    """Lightning's messages once, through Hydra's handlers (``import lightning`` adds a stderr handler of its own:
    every line twice), and without the Trainer's cloud advert."""
    import lightning  # noqa: F401  (adds the handler this removes)

    if logging.getLogger().hasHandlers():
        lightning_logger = logging.getLogger("lightning")
        for handler in list(lightning_logger.handlers):
            lightning_logger.removeHandler(handler)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_not_a_tip)


def run_job(
    task: str,
    cfg: DictConfig,
    check: Callable[[DictConfig, Job], None],
    resumed: Callable[[DictConfig, Job], DictConfig] | None = None,
) -> Any:
    """The job read from Hydra and the environment (``Job.from_hydra``), ``check(cfg, job)``, then the function
    ``task`` names (``module:function``) on ``cfg`` and the job (on ``resumed(cfg, job)`` when ``resume=`` names the
    job's folder), errors reported as the module docstring says (``HYDRA_FULL_ERROR=1``: with tracebacks, as Hydra
    does); None when a sweep job failed."""
    job = Job.from_hydra()
    folder = RunFolder(Path(cfg.paths.output_dir))
    threads = job.intra_op_threads()
    if threads is not None:  # Lightning's DDP processes run the command line again: they read it from here
        os.environ[JOB_THREADS_ENV] = str(threads)
    if job.multirun and resumed is not None:  # a sweep being finished: this job's folder may hold its first try
        earlier = earlier_try(folder, job.restart_count)
        if earlier == "kept":
            return folder.read_metrics()
        if earlier == "resume":
            cfg.resume = str(folder.path)
    try:
        # Before torch and Lightning load (~7 s): a refused setting answers at once, the folder's record put back.
        resuming = run_guard.resumes(folder.path, cfg.get("resume"))
        with run_guard.writing(folder.path, resuming, owner=not job.ddp_child, command=job.command):
            if resuming and resumed is not None and not job.multirun:
                cfg = resumed(cfg, job)
            check(cfg, job)
        quiet_lightning()
        module, function = task.split(":")
        # A failure before it trains puts the folder's record back (vaelab.run.guard.writing).
        return getattr(importlib.import_module(module), function)(cfg, job)
    except BaseException as error:
        if job.full_error:
            raise
        if isinstance(error, KeyboardInterrupt):  # Ctrl-C before fit handles it: while the job is being set up
            error = Interrupted("stopped by Ctrl-C while the job was set up, before it trained")
        if not isinstance(error, Exception):
            raise
        cause = user_error(error)
        if not job.multirun:
            if cause is None:
                raise
            exit_with_error(cause)
        # One line: a user error's message, else the exception's type and its message's first line.
        first = str(error).strip().splitlines()[:1]
        line = str(cause) if cause is not None else ": ".join([type(error).__name__, *first])
        log.error("error: %s", line)
        interrupted = isinstance(cause, Interrupted)  # Ctrl-C or SIGTERM (a pre-emption): stop the sweep
        if not (interrupted and cause.recorded):  # training records its own, with what the fit measured
            folder.record_failure(line, interrupted, details="" if cause is not None else traceback.format_exc())
        if interrupted:
            log.error("the sweep stopped at job %s: resume=%s finishes it (completed jobs are kept, this one goes on "
                      "from its last checkpoint, the rest run)", folder.path.name, folder.path.parent)  # fmt: skip
            raise SystemExit(1) from None
        return None


def earlier_try(job: RunFolder, restart_count: int) -> str | None:
    """What a sweep job does with an earlier try in its folder (a sweep being finished): ``kept`` when it completed
    (or failed: deterministic failures would repeat), ``resume`` from its last checkpoint when it was interrupted or
    its process died, None to run (nothing there, or stopped before its first checkpoint)."""
    if restart_count > 0:  # SLURM runs the job again: resume_plan goes on
        return None
    status, _ = job.status()
    if status in (RunStatus.INTERRUPTED, RunStatus.UNFINISHED):
        if not job.last_checkpoint.is_file():
            return None
        log.info("job %s: going on from %s", job.path.name, job.last_checkpoint)
        return "resume"
    log.info("job %s: %s before, kept", job.path.name, status)
    return "kept"


def config_of_resumed_run(cfg: DictConfig, job: Job) -> DictConfig:
    """A resumed run's configuration: its own record, with what the overrides given now set
    (``run.overrides.with_given_overrides``); once it trains, the record gains the resume (``RunFolder.record_resume``;
    Hydra writes none for a resume in place, so that a refused one writes nothing). A run folder without Hydra's
    record (a run started from Python) goes on with ``cfg``."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    folder = RunFolder(Path(cfg.paths.output_dir))
    before = run_guard.record_before(folder.path)  # the folder's record (resume= has Hydra write none)
    text, recorded_overrides = before.get(CONFIG_RECORD), before.get(JOB_RECORD)
    if not HydraConfig.initialized():
        return cfg
    try:
        recorded = OmegaConf.create(text.decode()) if text is not None else None
        overrides = yaml.safe_load(recorded_overrides or b"[]") or []
    except Exception:  # noqa: BLE001 (YAML, OmegaConf and decoding errors: one line for any)
        raise VaelabError(f"resume={cfg.resume}: {folder.path / CONFIG_RECORD} is not readable as a config; start "
                          "a new run with the run's settings and ckpt_path= instead.") from None  # fmt: skip
    hydra_cfg = HydraConfig.get()
    given = [line for line in job.overrides if line not in overrides]
    packages = {group: group_package(group, choice) for group, choice in job.choices.items()
                if isinstance(choice, str) and not group.startswith("hydra/")}  # fmt: skip
    effective = with_given_overrides(recorded, cfg, given, packages) if recorded is not None else cfg
    hydra_record = OmegaConf.create({"hydra": OmegaConf.to_container(hydra_cfg, resolve=False)})
    hydra_record.hydra.output_subdir = ".hydra"  # where the record is, as Hydra would have written it
    record = {CONFIG_RECORD: OmegaConf.to_yaml(effective), JOB_RECORD: OmegaConf.to_yaml(hydra_cfg.overrides.task),
              HYDRA_RECORD: OmegaConf.to_yaml(hydra_record)}  # fmt: skip
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    run_guard.on_commit(folder.path, lambda: folder.record_resume(record, given, when))
    return effective


def group_package(group: str, choice: str) -> str | None:
    """The package (dotted key) that the config ``<group>/<choice>`` fills, from its ``# @package`` header; None for
    ``_global_``."""
    from hydra.core.global_hydra import GlobalHydra

    loaded = GlobalHydra.instance().config_loader().repository.load_config(f"{group}/{choice}")
    header = (loaded.header.get("package") if loaded is not None else None) or "_group_"
    package = header.replace("_group_", group.replace("/", "."))
    return None if package == "_global_" else package.removeprefix("_global_.")


@hydra.main(config_path=CONFIG_PATH, config_name="train", **main_options(TRUSTED_PACKAGES))
def _train_job(cfg: DictConfig) -> float | None:
    # None: a sweep job that failed (recorded in its folder).
    metrics = run_job("vaelab.training:train", cfg, check_train_settings, resumed=config_of_resumed_run)
    # optimized_metric is checked against the metrics a run logs before it trains (checks.check_optimized_metric).
    return metrics.get(cfg.get("optimized_metric")) if metrics else None


@hydra.main(config_path=CONFIG_PATH, config_name="eval", **main_options(TRUSTED_PACKAGES))
def _evaluate_job(cfg: DictConfig) -> list[dict] | None:
    # The metrics of every checkpoint evaluated (one, or each run compared).
    return run_job("vaelab.evaluation:evaluate", cfg, check_eval_settings)


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
        check_command_line(sys.argv)
        sys.argv = with_run_overrides(sys.argv)
        sys.argv = with_search_as_multirun(sys.argv)
        check_launcher_installed(sys.argv)
    except (VaelabError, OSError) as error:
        exit_with_error(user_error(error) or error)
    # experiment is an optional default of train.yaml: Hydra refuses the +experiment= that older runs recorded.
    sys.argv = [re.sub(r"^\+{1,2}experiment=", "experiment=", token) for token in sys.argv]
    try:
        _train_job()
    except KeyboardInterrupt:  # between a sweep's jobs, in Hydra's own code: one line, not its traceback
        run_guard.undo_unstarted_sweeps()
        exit_with_error("stopped by Ctrl-C")
    except BaseException:  # a refused multirun leaves no sweep folder behind
        run_guard.undo_unstarted_sweeps()
        raise


def evaluate_command() -> None:
    """``vaelab-eval``: Hydra's command line for ``vaelab.evaluation.evaluate``."""
    try:
        check_command_line(sys.argv)
    except VaelabError as error:
        exit_with_error(error)
    _evaluate_job()
