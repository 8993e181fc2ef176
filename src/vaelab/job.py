"""The job a command runs, as the command layer sees it: what Hydra's runtime, the environment and the command line
say, read once (``Job.from_hydra``) and handed down as ``train(cfg, job)`` / ``evaluate(cfg, job)``.

Below the commands (``vaelab.cli``, the Hydra callbacks and plugins) no module reads ``HydraConfig``,
``os.environ`` or ``sys.argv``: a call from Python passes a ``Job`` it builds (``Job()`` is a single run with no
overrides), and gets what the command line gets.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

JOB_THREADS_ENV = "VAELAB_JOB_THREADS"  # a job's intra-op threads, set by the user or for Lightning's DDP processes
TRIAL_ENV = "VAELAB_OPTUNA_TRIAL"  # the Optuna trial a job runs for, set by the vaelab Optuna sweeper
RANK_ENVS = ("LOCAL_RANK", "NODE_RANK", "RANK", "SLURM_PROCID")  # > 0 in the processes 1..n-1 of a DDP run


@dataclass(frozen=True)
class Job:
    """One Hydra job: a single run (``multirun`` false) or one job of a sweep (``sweep_dir``)."""

    output_dir: Path | None = None  # Hydra's runtime output folder (None: a call from Python)
    multirun: bool = False  # one job of ``-m``: its folder is one of the sweep folder's
    sweep_dir: Path | None = None
    choices: Mapping[str, str | None] = field(default_factory=dict)  # config group choices: ``{"model": "conv_vae"}``
    overrides: tuple[str, ...] = ()  # the job's command-line overrides
    swept: tuple[str, ...] = ()  # those of ``overrides`` the sweep varies (``model.beta=0.5`` of ``=0.5,1``)
    launcher: Mapping[str, object] | None = None  # Hydra's launcher config (its jobs at once, cores per job)
    threads: int | None = None  # intra-op threads the user set (``VAELAB_JOB_THREADS``); None: the launcher's share
    trial: int | None = None  # the Optuna trial number, in a job the vaelab Optuna sweeper launched
    restart_count: int = 0  # ``SLURM_RESTART_COUNT``: > 0 when SLURM runs the job again
    ddp_child: bool = False  # one of Lightning's DDP processes 1..n-1: rank 0 owns the folder
    local_rank: int | None = None  # ``LOCAL_RANK``, set by whatever started the DDP processes (Lightning, torchrun)
    command: str = ""  # the command line, for the note of who holds a folder
    full_error: bool = False  # ``HYDRA_FULL_ERROR=1``: errors with their tracebacks, as Hydra shows them

    @classmethod
    def from_hydra(cls) -> Job:
        """The running Hydra job (``Job()`` outside one), with what the environment and command line say of it."""
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        environ = os.environ
        facts = {
            "threads": (number(environ.get(JOB_THREADS_ENV)) or None),  # 0 or text: torch's own count
            "trial": number(environ.get(TRIAL_ENV)),
            "restart_count": number(environ.get("SLURM_RESTART_COUNT")) or 0,
            "ddp_child": is_ddp_child(),
            "local_rank": number(environ.get("LOCAL_RANK")),
            "command": command_line(),
            "full_error": environ.get("HYDRA_FULL_ERROR") == "1",
        }
        if not HydraConfig.initialized():
            return cls(**facts)
        hydra_cfg = HydraConfig.get()
        multirun = hydra_cfg.mode == RunMode.MULTIRUN
        overrides = tuple(hydra_cfg.overrides.task)
        sweep_dir = Path(hydra_cfg.sweep.dir) if multirun else None
        launcher = hydra_cfg.get("launcher")
        return cls(
            output_dir=Path(hydra_cfg.runtime.output_dir),
            multirun=multirun,
            sweep_dir=sweep_dir,
            choices=dict(hydra_cfg.runtime.choices),
            overrides=overrides,
            swept=swept_overrides(sweep_dir, overrides) if sweep_dir else (),
            launcher=dict(launcher) if launcher is not None else None,
            **facts,
        )

    @property
    def name(self) -> str:
        """The job's folder name: the run's (``2026-12-01_20-30-00``), or a sweep job's number (``3``)."""
        return self.output_dir.name if self.output_dir else ""

    def intra_op_threads(self) -> int | None:
        """The job's share of the cores: its launcher's (jobs at once split them), else ``threads``; None: torch's."""
        from vaelab.process import available_cores, job_threads

        return job_threads(self.launcher, available_cores()) or self.threads

    def shows_config(self) -> bool:
        """Whether this job prints its config tree: a single run does, a sweep its first job only."""
        return not self.multirun or self.name == "0"

    @contextmanager
    def rerun_only_this_job_in_ddp_processes(self, output_dir: Path, world_size: int) -> Iterator[None]:
        """Let Lightning's DDP processes 1..n-1 re-run this job, not the whole sweep: Lightning re-runs the command
        line with ``hydra.run.dir=<run.dir>``, which in a multirun job are the sweep's; both point at this job
        meanwhile (Lightning reads them from ``sys.argv`` and ``HydraConfig``: no public way to tell it)."""
        if world_size <= 1 or not self.multirun or self.local_rank is not None:
            yield
            return
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import read_write

        hydra_cfg = HydraConfig.get()
        saved_argv, saved_run_dir, saved_environ = sys.argv, hydra_cfg.run.dir, dict(os.environ)
        sys.argv = [sys.argv[0], *self.overrides, "hydra.mode=RUN"]
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


def number(value: str | None) -> int | None:
    """An environment variable's whole number (None: unset, or not a number)."""
    return int(value) if value is not None and value.strip().isdigit() else None


def command_line() -> str:
    """This process's command line, as one string (the note of who holds a folder)."""
    return " ".join(sys.argv)[:500]


def is_ddp_child() -> bool:
    """True in the processes 1..n-1 that Lightning's DDP starts for a run: rank 0 owns the folder for them."""
    return any(os.environ.get(name, "").isdigit() and int(os.environ[name]) > 0 for name in RANK_ENVS)


def swept_overrides(sweep_dir: Path, overrides: tuple[str, ...]) -> tuple[str, ...]:
    """Of a sweep job's ``overrides``, those of the keys the sweep varies (``model.beta=0.5`` of
    ``model.beta=0.5,1``, or an Optuna trial's values), as the sweep's record tells them from the fixed ones."""
    from omegaconf import OmegaConf

    from vaelab.run.folder import SWEEP_RECORD
    from vaelab.run.overrides import parse_all

    sweep_file = sweep_dir / SWEEP_RECORD
    command_line = list(OmegaConf.load(sweep_file).hydra.overrides.task) if sweep_file.is_file() else []
    fixed = {o.key_or_group for o in parse_all(command_line) if not o.is_sweep_override()}
    job = parse_all(list(overrides))
    return tuple(text for o, text in zip(job, overrides) if o.key_or_group not in fixed and
                 not o.key_or_group.startswith("hydra."))  # fmt: skip
