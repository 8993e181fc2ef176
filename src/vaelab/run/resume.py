"""``train.py resume=<run folder>`` goes on with the run's own settings from its last checkpoint: the plan of where
fit goes on from (``resume_plan``: ``ckpt_path``, the run's last checkpoint, or a requeued SLURM job's own), checked
before Lightning reads the file. How ``resume=`` on the command line brings back the run's settings:
``vaelab.run.overrides``.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vaelab.errors import VaelabError
from vaelab.run.folder import RunFolder, RunStatus

if TYPE_CHECKING:  # this module runs before Hydra parses the command line: torch and Lightning load later
    import lightning.pytorch as pl
    from omegaconf import DictConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResumePlan:
    """Where a run goes on from: the checkpoint ``fit`` restores, and its global step (the loggers keep what was
    logged before it, ``history.csv`` its rows up to it). ``test_only``: the fit had finished and its test had not
    (interrupted, or the process died): ``fit`` restores the state and trains nothing, then the test runs."""

    checkpoint: str
    step: int
    test_only: bool = False


def requeued_folder(cfg: DictConfig, restart_count: int) -> str | None:
    """This run's own folder when SLURM runs the job again (``scontrol requeue``, a pre-emption, submitit's requeue
    before a time limit: ``restart_count``, SLURM's ``SLURM_RESTART_COUNT``, > 0) and the first attempt left a last
    checkpoint there."""
    if restart_count < 1 or cfg.get("resume") or cfg.get("ckpt_path"):
        return None
    folder = Path(cfg.paths.output_dir)
    return str(folder) if RunFolder(folder).last_checkpoint.is_file() else None


def resume_plan(cfg: DictConfig, model: pl.LightningModule, restart_count: int = 0) -> ResumePlan | None:
    """The checkpoint to go on from (``ckpt_path``, the ``resume`` folder's last one, or a requeued SLURM job's own:
    ``restart_count`` > 0), checked before Lightning reads it (one line for a bad file, no code run); None for a
    fresh run."""
    from vaelab.run.checkpoints import check_resumable, read_checkpoint

    path, trusted = cfg.get("ckpt_path"), list(cfg.get("trusted_models") or [])
    resume = cfg.get("resume") or requeued_folder(cfg, restart_count)
    if resume and not cfg.get("resume"):
        log.warning("SLURM runs this job again (restart %s): resuming from %s", restart_count,
                    RunFolder(Path(resume)).last_checkpoint)  # fmt: skip
    if resume:
        trusted.append(model.checkpoint_name())  # the run's own checkpoints hold the class it builds
        run = RunFolder(Path(resume))
        if run.stopped_before_first_checkpoint():
            log.info("resume=%s: the run was stopped before its first checkpoint: starting it again", resume)
            return None
        last = run.last_checkpoint
        if not last.is_file():
            raise VaelabError(f"resume={resume}: no {last.relative_to(resume)} in that run folder.")
        path = str(last)
        # Resuming in place writes into the run's own checkpoint folder: Lightning's warning is noise here.
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    if not path:
        return None
    checkpoint = read_checkpoint(path, trusted=trusted)
    check_resumable(checkpoint, model, path)
    step = int(checkpoint.get("global_step", 0))
    if resume and cfg.get("test") and nothing_to_train(checkpoint, cfg) and not tested(RunFolder(Path(resume))):
        log.info("resume=%s: the fit finished, its test did not: testing the best checkpoint", resume)
        return ResumePlan(str(path), step, test_only=True)
    check_trains_more(checkpoint, cfg, f"resume={resume}" if resume else f"ckpt_path={path}")
    return ResumePlan(str(path), step)


def tested(run: RunFolder) -> bool:
    """True when the run's ``metrics.json`` records a finished run (its test done, or ``test=false``)."""
    return run.read_metrics().get("status") in (RunStatus.COMPLETED, RunStatus.PRUNED, RunStatus.UNTRAINED)


def epochs_done(checkpoint: dict) -> int | None:
    """The training epochs a checkpoint has finished (Lightning's fit-loop progress; None if it has none): a
    checkpoint saved at an epoch's end counts that epoch, one saved mid-epoch (an interrupt) does not."""
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
    processed = progress.get("processed") if isinstance(progress, dict) else None
    return processed if isinstance(processed, int) else None


def check_trains_more(checkpoint: dict, cfg: DictConfig, source: str) -> None:
    """One line, before anything is written, when going on from ``checkpoint`` would train nothing
    (``nothing_to_train``). A resume that trains nothing must not rewrite the record."""
    reason = nothing_to_train(checkpoint, cfg)
    if reason:
        raise VaelabError(f"{source}: {reason}. Nothing was changed.")


def nothing_to_train(checkpoint: dict, cfg: DictConfig) -> str | None:
    """Why going on from ``checkpoint`` would train nothing, and how to train on: its run already reached
    ``trainer.max_epochs`` (or ``max_steps``); None when it would train."""
    done, step = epochs_done(checkpoint), int(checkpoint.get("global_step", 0))
    max_epochs, max_steps = cfg.trainer.get("max_epochs"), cfg.trainer.get("max_steps") or -1
    if done is not None and isinstance(max_epochs, int) and done >= max_epochs:
        return (f"the run has already trained {done} epochs (trainer.max_epochs={max_epochs}); "
                f"pass trainer.max_epochs={done + 1} or more to train on")  # fmt: skip
    if max_steps > 0 and step >= max_steps:
        return (f"the run has already trained {step} steps (trainer.max_steps={max_steps}); "
                "pass a larger trainer.max_steps to train on")  # fmt: skip
    return None
