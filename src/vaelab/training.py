"""``train(cfg)``: build the run from the Hydra config, fit, test the best checkpoint, report."""

from __future__ import annotations

import errno
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from vaelab.builders import build_model, build_trainer, instantiate_group
from vaelab.callbacks import FigureLogger
from vaelab.checks import check_train_settings
from vaelab.config_tree import print_config_tree, run_tags
from vaelab.data.datamodule import check_labels
from vaelab.errors import Interrupted, VaelabError
from vaelab.job import Job
from vaelab.loggers import hooks
from vaelab.models.base import NonFiniteLossError
from vaelab.process import set_threads, tune_malloc
from vaelab.reporting import checkpoint_paths, fit_time, report
from vaelab.run import guard as run_guard
from vaelab.run.checkpoints import check_resumable, read_checkpoint
from vaelab.run.folder import RunFolder, RunStatus
from vaelab.run.resume import ResumePlan, resume_plan
from vaelab.sweep.pruning import OptunaPruning
from vaelab.targets import instantiate, trusting

log = logging.getLogger(__name__)


@dataclass
class Run:
    """A training run, built: what it fits, how, and where it writes."""

    cfg: DictConfig
    job: Job
    folder: RunFolder
    datamodule: pl.LightningDataModule
    model: pl.LightningModule
    trainer: pl.Trainer
    callbacks: list[Any]
    config: dict[str, Any]  # the resolved config, as the loggers record it
    resume: ResumePlan | None  # where fit goes on from, when it does

    @property
    def status(self) -> RunStatus:
        """What the fit did: pruned, untrained (not one optimizer step) or completed."""
        if any(isinstance(c, OptunaPruning) and c.pruned_epoch is not None for c in self.callbacks):
            return RunStatus.PRUNED
        return RunStatus.COMPLETED if self.trainer.global_step else RunStatus.UNTRAINED


def train(cfg: DictConfig, job: Job | None = None) -> dict[str, Any]:
    """Fit ``cfg.model`` on ``cfg.data``, test the best checkpoint, write ``metrics.json``; returns the metrics.
    ``job``: the Hydra job it runs as (the commands pass theirs; None: a single run with no overrides)."""
    job = job or Job()
    folder = Path(cfg.paths.output_dir)
    resuming = run_guard.resumes(folder, cfg.get("resume"))
    with trusting(cfg), run_guard.writing(folder, resuming, owner=not job.ddp_child, command=job.command) as commit:
        run = build(cfg, job)
        commit()  # it trains: a failure from here on keeps the folder's new record
        with job.rerun_only_this_job_in_ddp_processes(run.folder.path, run.trainer.world_size):
            metrics = fit(run)
            # Read before testing: restoring the best checkpoint resets the callbacks' state (the Timer's included).
            checkpoints, timing = checkpoint_paths(run), fit_time(run.callbacks, run.trainer.current_epoch)
            if run.status == RunStatus.UNTRAINED:
                log.warning("no batch was trained (trainer.limit_train_batches=0?): status untrained, nothing tested")
            elif cfg.get("test") and run.status == RunStatus.COMPLETED:
                fit_record = {**metrics, "epochs": run.trainer.current_epoch, **timing}
                metrics.update(test(run, checkpoints["best"] or None, fit_record))
        return report(run, metrics, checkpoints, timing)


def build(cfg: DictConfig, job: Job) -> Run:
    """The process settings (allocator, threads, seed), then data, model, callbacks, loggers and trainer."""
    tune_malloc()
    set_threads(job.intra_op_threads())
    check_train_settings(cfg, job)
    folder, seed = RunFolder(Path(cfg.paths.output_dir)), cfg.get("seed")
    if seed is not None:  # the weights' initialisation draws from the global generators
        pl.seed_everything(seed, workers=True, verbose=False)

    datamodule: pl.LightningDataModule = instantiate(cfg.data)  # its training order: data.shuffle_seed
    model = build_model(cfg.model)
    model.noise_seed = seed or 0
    check_labels(model.num_classes, datamodule, f"model={model.model_name or type(model).__name__}")
    resume = resume_plan(cfg, model, job.restart_count)
    callbacks = instantiate_group(cfg.get("callbacks"), job)  # conf/callbacks/
    for figures in (callback for callback in callbacks if isinstance(callback, FigureLogger)):
        figures.check_model(model)  # before the run commits to its folder
    loggers: list[Logger] = instantiate_group(cfg.get("logger"), job)  # an unreachable tracking server: one line
    if rank_zero_only.rank == 0 and hasattr(datamodule, "check_files"):
        datamodule.check_files()  # a missing or damaged file now, not after the tree (or after training)
    # After the checks: a bad value is one line, not the tree and then a line.
    if cfg.get("print_config") and rank_zero_only.rank == 0:  # in a sweep, shown for its first job only
        print_config_tree(cfg, folder.path / "config_tree.log", show=job.shows_config())
    trainer = build_trainer(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    config = OmegaConf.to_container(cfg, resolve=True)
    # trainer.loggers: fast_dev_run swaps in Lightning's dummy logger.
    for logger in hooks(trainer.loggers):
        logger.start_run(config, run_tags(cfg.get("tags")), resume.step if resume else None)
    return Run(cfg, job, folder, datamodule, model, trainer, callbacks, config, resume)


def fit(run: Run) -> dict[str, float]:
    """``trainer.fit``, with Ctrl-C, SIGTERM and a diverged loss turned into one-line errors; the final metrics.
    A resume of a run whose fit had finished (``ResumePlan.test_only``) restores its state and trains nothing."""
    if run.resume and run.resume.test_only:
        run.trainer.num_sanity_val_steps = 0  # nothing trains: no validation to check
    try:
        run.trainer.fit(run.model, datamodule=run.datamodule, ckpt_path=run.resume.checkpoint if run.resume else None,
                        weights_only=True)  # fmt: skip
    except (SystemExit, SIGTERMException) as error:  # SystemExit: Lightning's exit after Ctrl-C
        # InterruptCheckpoint has saved the state, unless the sanity check was running: nothing to go on from.
        then = "resume with" if run.folder.last_checkpoint.is_file() else "nothing was saved yet: start it again with"
        line = f"stopped by {interrupt_name(run, error)}; {then} resume={run.folder.path}"
        raise interrupted(run, line, "fit") from None
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        # Resume needs a last checkpoint: before the first one, the only way on is to start the run again.
        then = (
            f"resume={run.folder.path}"
            if run.folder.last_checkpoint.is_file()
            else "run the command again in a new folder (none was saved to resume from)"
        )
        raise VaelabError(
            f"cannot write {error.filename or run.folder.path}: {error.strerror}; the files already there are intact "
            f"(each is written whole or not at all): free space, then {then}"
        ) from None
    except NonFiniteLossError as error:
        last = run.folder.last_checkpoint if run.folder.last_checkpoint.is_file() else "none saved yet"
        raise VaelabError(f"{error}; last good checkpoint: {last}") from None
    if run.resume and run.resume.test_only:
        return recorded_fit_metrics(run.folder)
    return scalar_metrics(run.trainer.callback_metrics)


def recorded_fit_metrics(folder: RunFolder) -> dict[str, float]:
    """What a finished fit measured, read back for a resume that only tests: the interrupted test's record, else
    (the process died) the latest value of each column of ``history.csv``."""
    record = folder.read_metrics()
    if record.get("phase") == "test":
        return {name: value for name, value in record.items() if "/" in name and isinstance(value, (int, float))}
    latest: dict[str, float] = {}
    for row in folder.read_history():
        latest.update({name: value for name, value in row.items() if "/" in name and math.isfinite(value)})
    return dict(sorted(latest.items()))


def test(run: Run, best: str | None, fit_metrics: dict[str, float]) -> dict[str, float]:
    """Test the best checkpoint (the current weights when none was recorded) on the test split. Ctrl-C or SIGTERM
    here keeps the fit (``last.ckpt`` is its end) and records it: ``resume=`` then runs the test alone."""
    if best is None:  # expected with fast_dev_run (debug=fdr), which saves no checkpoint
        say = log.info if run.trainer.fast_dev_run else log.warning
        say("no best checkpoint recorded: testing the current weights")
    else:  # the path comes from the checkpoint's callback state: read it as untrusted, like any user file
        best_state = read_checkpoint(best, trusted=[run.model.checkpoint_name()])  # the run's own class
        check_resumable(best_state, run.model, best)
        for logger in hooks(run.trainer.loggers):
            logger.before_test(int(best_state.get("global_step", 0)), int(best_state.get("epoch", 0)))
    try:
        run.trainer.test(run.model, datamodule=run.datamodule, ckpt_path=best, weights_only=True)
    except (SystemExit, SIGTERMException) as error:
        line = (f"stopped by {interrupt_name(run, error)} during the test; the fit is complete and kept: "
                f"resume={run.folder.path} runs the test")  # fmt: skip
        raise interrupted(run, line, "test", fit_metrics) from None
    return scalar_metrics(run.trainer.callback_metrics)


def interrupt_name(run: Run, error: BaseException) -> str:
    """``SIGTERM`` or ``Ctrl-C`` for what stopped the trainer; ``error`` raised again when it is a ``SystemExit`` that
    Lightning's handling of a Ctrl-C did not cause."""
    if isinstance(error, SystemExit) and not run.trainer.interrupted:
        raise error
    return "SIGTERM" if isinstance(error, SIGTERMException) else "Ctrl-C"


def interrupted(run: Run, line: str, phase: str, metrics: dict[str, float] | None = None) -> Interrupted:
    """The ``Interrupted`` error of ``line``, once ``metrics.json`` records it: status interrupted, the phase (fit or
    test) and what the fit measured."""
    if run.trainer.is_global_zero:
        measured = {"phase": phase, "epochs": run.trainer.current_epoch, **(metrics or {})}
        run.folder.record_failure(line, interrupted=True, measured=measured)
    return Interrupted(line, recorded=True)


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    return {name: float(value) for name, value in sorted(metrics.items())}
