"""A multirun's Hydra callbacks: the configuration it started with kept for all its jobs (``ConfigSnapshot``), the
jobs that failed reported at its end (``FailedJobsReport``), the MLflow run its jobs' runs nest under
(``MLflowSweepRun``); and the checks of a sweep folder that ``hydra_callbacks.RunFolderGuard`` runs before Hydra
writes there."""

from __future__ import annotations

import importlib.resources
import shutil
import sys
from pathlib import Path
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from vaelab.errors import VaelabError
from vaelab.exits import ends_on_user_error
from vaelab.job import is_ddp_child
from vaelab.run.folder import MLFLOW_SWEEP_RUN_FILE, SWEEP_CONFIGS, RunFolder, RunStatus, sweep_jobs
from vaelab.run.overrides import is_grid, parse_all, sweep_record


def check_no_repeats(overrides: list[str]) -> None:
    """A value listed twice in a sweep (``seed=1,1``) would train the same job twice and count it as two replicas:
    one line instead."""
    for override in parse_all(overrides):
        if not override.is_discrete_sweep():
            continue
        values = list(override.sweep_string_iterator())
        repeated = sorted({value for value in values if values.count(value) > 1})
        if repeated:
            raise VaelabError(f"{override.input_line} lists {', '.join(repeated)} more than once: a repeated job is "
                              "not a replica (it trains the same); for replicas give distinct seeds.")  # fmt: skip


def check_same_sweep(config: DictConfig, sweep_dir: Path, jobs: int) -> None:
    """Going on with the sweep already in ``sweep_dir`` (its own command again, or ``resume=<sweep>``) is allowed
    when it is the same sweep: the same overrides, a grid of Hydra's basic sweeper (an Optuna search goes on
    through its study). Anything else is one line."""
    try:
        recorded, _ = sweep_record(sweep_dir)
    except VaelabError as error:
        raise VaelabError(f"{sweep_dir} already holds a sweep ({jobs} job folders) and {error}") from None
    now = list(OmegaConf.select(config, "hydra.overrides.task") or [])
    basic = is_grid(OmegaConf.select(config, "hydra.sweeper._target_"))
    if recorded != now or not basic:
        what = "a search (its study goes on in a new folder)" if not basic else f"other settings: {' '.join(recorded)}"
        raise VaelabError(f"{sweep_dir} already holds a sweep ({jobs} job folders) of {what}; pass another "
                          f"hydra.sweep.dir (by default every sweep gets a new one).")  # fmt: skip


class ConfigSnapshot(Callback):
    """A multirun keeps the configuration it started with: the config folders it composes from (the package's
    ``vaelab/conf``, a ``--config-dir``, Hydra's own) are copied into ``<sweep>/.configs/`` at its start, and every
    job is composed from the copies, in whatever process a launcher runs it (the config loader travels with the job).
    Editing a YAML file while the sweep runs changes none of its later jobs."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if is_ddp_child():
            return
        snapshot = Path(str(OmegaConf.select(config, "hydra.sweep.dir"))) / SWEEP_CONFIGS
        loader = GlobalHydra.instance().config_loader()
        search_path = loader.get_search_path()
        for index, element in enumerate(search_path.get_path()):
            folder = config_folder(element.path)
            if folder is not None:
                copy = snapshot / f"{index}-{element.provider}"
                if not copy.is_dir():  # a sweep being finished composes its jobs from the copies it started with
                    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("__pycache__", "*.py[co]"))
                element.path = f"file://{copy}"
        loader.repository.initialize_sources(search_path)


def config_folder(path: str) -> Path | None:
    """The folder behind a config search path entry (``file://<folder>``, ``pkg://<package>``); None for the
    structured configs Hydra keeps in memory, or a package that is not a folder on disk."""
    if path.startswith("file://"):
        folder = Path(path.removeprefix("file://"))
    elif path.startswith("pkg://"):
        try:
            folder = Path(str(importlib.resources.files(path.removeprefix("pkg://"))))
        except (ImportError, TypeError, ValueError):
            return None
    else:
        return None
    return folder if folder.is_dir() else None


class FailedJobsReport(Callback):
    """At the end of a multirun: where the sweep is and how to rank it (a grid), then the jobs of this sweep that
    failed, exiting with status 1 if any did.

    Jobs record their own failure (``vaelab.cli``), in whatever process a launcher ran them, so this
    reads the job folders this multirun wrote rather than the launcher's return values.
    """

    @ends_on_user_error
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not ended_normally():
            return
        sweep_dir = Path(str(OmegaConf.select(config, "hydra.sweep.dir")))
        jobs = sweep_jobs(sweep_dir)
        if is_grid(OmegaConf.select(config, "hydra.sweeper._target_")):
            # A search writes its own results as it ends; a grid says where its ranking is.
            print(f"Sweep folder: {sweep_dir} ({len(jobs)} jobs); ranked: vaelab-sweeps {sweep_dir}", flush=True)
        failed = failed_jobs(jobs)
        if not failed:
            return
        lines = [f"{len(failed)} of {len(jobs)} jobs failed (each folder's FAILED file says why):"]
        lines += [f"  {job}: {error}" for job, error in failed.items()]
        raise VaelabError("\n".join(lines))


MLFLOW_TARGETS = ("vaelab.loggers.MLFlowLogger", "vaelab.loggers.mlflow.MLFlowLogger")


class MLflowSweepRun(Callback):
    """A multirun that logs to MLflow gets one parent run, named after the sweep's folder, that every job's run nests
    under (``naming.sweep_tags``); finished at the end of the multirun, as FAILED if a job failed."""

    def __init__(self) -> None:
        self.parent: tuple[Any, Path] | None = None  # (Lightning's MLFlowLogger of the parent run, sweep folder)

    @ends_on_user_error
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        settings = next((entry for entry in (OmegaConf.select(config, "logger") or {}).values()
                         if entry and entry.get("_target_") in MLFLOW_TARGETS), None)  # fmt: skip
        if settings is None:
            return
        from vaelab.loggers.mlflow import check_mlflow

        check_mlflow(settings.tracking_uri)
        from lightning.pytorch.loggers import MLFlowLogger  # Lightning's own: finds or creates the experiment

        sweep_dir = Path(str(OmegaConf.select(config, "hydra.sweep.dir")))
        overrides = " ".join(OmegaConf.select(config, "hydra.overrides.task") or [])
        parent = MLFlowLogger(
            experiment_name=settings.experiment_name, run_name=f"sweep {sweep_dir.name}",
            tracking_uri=settings.tracking_uri, artifact_location=settings.get("artifact_location"),
            tags={"sweep": str(sweep_dir), "overrides": overrides[:5000]},
        )  # fmt: skip
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / MLFLOW_SWEEP_RUN_FILE).write_text(f"{parent.run_id}\n")
        self.parent = (parent, sweep_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.parent is None:
            return
        parent, sweep_dir = self.parent
        if not ended_normally():  # refused or interrupted
            parent.experiment.set_terminated(parent.run_id, "KILLED")  # MLflow's run states
            return
        failed = failed_jobs(sweep_jobs(sweep_dir))
        parent.experiment.set_terminated(parent.run_id, "FAILED" if failed else "FINISHED")


def ended_normally() -> bool:
    """Whether the multirun whose ``on_multirun_end`` asks ended without an exception. Hydra 1.4 calls that hook in a
    ``finally``, after a refused or interrupted sweep too (1.3 only after one that ended): there the exception on its
    way out (a one-line refusal, Ctrl-C) says what happened, and the end-of-sweep report would only add to it."""
    return sys.exc_info()[0] is None


def failed_jobs(jobs: list[Path]) -> dict[Path, str]:
    """The failed ones of a sweep's ``jobs``, with their error lines."""
    return {job: status[1] for job in jobs if (status := RunFolder(job).status())[0] == RunStatus.FAILED}
