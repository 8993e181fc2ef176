"""``train(cfg)``: build everything from the Hydra config, fit, test the best checkpoint, report."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import hydra.utils
import lightning.pytorch as pl
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from vaelab.callbacks import FigureCallback
from vaelab.callbacks.pruning import OptunaPruning
from vaelab.callbacks.timing import FitTimer
from vaelab.checkpoints import check_resumable, read_checkpoint
from vaelab.config_tree import print_config_tree, run_tags
from vaelab.errors import Interrupted, VaelabError
from vaelab.jobs import rerun_only_this_job_in_ddp_processes, write_metrics
from vaelab.loggers import before_test, describe, finish_run, start_run
from vaelab.models.base import NonFiniteLossError
from vaelab.runtime import describe_device, set_job_threads, tune_malloc
from vaelab.studies import TRIAL_ENV, trial_of_this_job

log = logging.getLogger(__name__)


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` entry of a config group (callbacks, loggers)."""
    if not group:
        return []
    return [hydra.utils.instantiate(entry) for entry in group.values() if entry and "_target_" in entry]


def build_model(model_cfg: DictConfig) -> pl.LightningModule:
    """The model, with plain-Python arguments; the optimizer config stays a config for the module to build."""
    return hydra.utils.instantiate(model_cfg, _recursive_=False, _convert_="all")


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    return {name: float(value) for name, value in sorted(metrics.items())}


def resume_checkpoint(cfg: DictConfig) -> str | None:
    """The checkpoint to resume from: ``ckpt_path``, or ``<resume>/checkpoints/last.ckpt``."""
    if cfg.get("resume"):
        last = Path(cfg.resume) / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise VaelabError(f"resume={cfg.resume}: no checkpoints/last.ckpt in that run folder.")
        return str(last)
    return cfg.get("ckpt_path")


def best_checkpoint_callback(callbacks: list[Any]) -> ModelCheckpoint | None:
    """The ModelCheckpoint that keeps the best epoch (the one with a monitor; ``last.ckpt`` has its own)."""
    return next((c for c in callbacks if isinstance(c, ModelCheckpoint) and c.monitor), None)


def pruning_callback(cfg: DictConfig) -> OptunaPruning | None:
    """Report to this job's Optuna trial, when the vaelab Optuna sweeper launched the job."""
    if TRIAL_ENV not in os.environ or not HydraConfig.initialized():
        return None
    sweeper = OmegaConf.to_container(HydraConfig.get().sweeper, resolve=True)
    if not isinstance(sweeper, dict) or not sweeper.get("storage"):
        return None
    return OptunaPruning(lambda: trial_of_this_job(sweeper), monitor=cfg.get("optimized_metric") or "val/loss")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit ``cfg.model`` on ``cfg.data``, test the best checkpoint, write ``metrics.json``; returns the metrics."""
    tune_malloc()
    set_job_threads()
    output_dir = Path(cfg.paths.output_dir)
    tags = run_tags(cfg.get("tags"))
    if cfg.get("print_config") and rank_zero_only.rank == 0:
        print_config_tree(cfg, output_dir / "config_tree.log")
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)

    datamodule: pl.LightningDataModule = hydra.utils.instantiate(cfg.data)
    model = build_model(cfg.model)
    resume_from = resume_checkpoint(cfg)
    resumed_step = None
    if resume_from:  # checked before Lightning reads it: one line for a bad file, and never any code run
        checkpoint = read_checkpoint(resume_from)
        check_resumable(checkpoint, model, resume_from)
        resumed_step = int(checkpoint.get("global_step", 0))
        # Resuming in place writes into the run's own checkpoints/ folder: Lightning's warning is noise here.
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    fit_timer = FitTimer()
    pruning = pruning_callback(cfg)
    callbacks = [*instantiate_group(cfg.get("callbacks")), fit_timer, *([pruning] if pruning else [])]
    loggers: list[Logger] = instantiate_group(cfg.get("logger"))
    for logger in loggers:
        if resumed_step is not None and hasattr(logger, "keep_history_before"):
            logger.keep_history_before(resumed_step)
    if loggers and getattr(model, "scheduler_config", None):  # the learning-rate curve, as train/lr
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    loggers = trainer.loggers  # fast_dev_run swaps in Lightning's dummy logger
    config = OmegaConf.to_container(cfg, resolve=True)
    start_run(loggers, config, tags)

    checkpoint = best_checkpoint_callback(callbacks)
    last_checkpoint = output_dir / "checkpoints" / "last.ckpt"
    with rerun_only_this_job_in_ddp_processes(output_dir, trainer.world_size):
        try:
            trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
        except SIGTERMException:
            raise Interrupted(f"stopped by SIGTERM; resume with resume={output_dir}") from None
        except NonFiniteLossError as error:
            last = last_checkpoint if last_checkpoint.is_file() else "none saved yet"
            raise VaelabError(f"{error}; last good checkpoint: {last}") from None
        metrics: dict[str, Any] = scalar_metrics(trainer.callback_metrics)

        # Read before testing: restoring the best checkpoint resets the callback's state.
        checkpoint_paths = {"best": checkpoint.best_model_path if checkpoint else "",
                            "last": str(last_checkpoint) if last_checkpoint.is_file() else ""}  # fmt: skip
        pruned = pruning is not None and pruning.pruned_epoch is not None
        if cfg.get("test") and not pruned:
            best = checkpoint_paths["best"] or None
            if best is None:
                log.warning("no best checkpoint recorded: testing the current weights")
            else:  # the path comes from the checkpoint's callback state: read it as untrusted, like any user file
                best_state = read_checkpoint(best)
                check_resumable(best_state, model, best)
                before_test(loggers, int(best_state.get("global_step", 0)), int(best_state.get("epoch", 0)))
            trainer.test(model, datamodule=datamodule, ckpt_path=best, weights_only=True)
            metrics.update(scalar_metrics(trainer.callback_metrics))

    run_facts = {
        "status": "pruned" if pruned else "completed",
        "epochs": trainer.current_epoch,
        "fit_seconds": round(fit_timer.seconds, 1),
        # Wall time per epoch of this fit: training, validation and figure callbacks included.
        "seconds_per_epoch": round(fit_timer.seconds_per_epoch, 1),
        "device": describe_device(trainer.strategy.root_device),
        "threads": torch.get_num_threads(),
    }
    finish_run(loggers, config, metrics, checkpoint_paths["best"], trainer.global_step)
    if trainer.is_global_zero:
        write_metrics(output_dir, {**metrics, **run_facts})
        print_locations(output_dir, checkpoint_paths, loggers, callbacks, metrics)
    return {**metrics, **run_facts}


def print_locations(
    output_dir: Path,
    checkpoint_paths: dict[str, str],
    loggers: list[Logger],
    callbacks: list[Any],
    metrics: dict[str, float],
) -> None:
    """The closing lines of a run: where everything it wrote is, and the headline numbers."""
    lines = [f"Run folder:   {output_dir}"]
    if checkpoint_paths:
        lines.append(f"Checkpoints:  best {checkpoint_paths['best'] or '-'}")
        lines.append(f"              last {checkpoint_paths['last'] or '-'}")
    lines += [line for logger in loggers if (line := describe(logger))]
    figure_dirs = sorted({str(c.output_dir) for c in callbacks if isinstance(c, FigureCallback)})
    if figure_dirs:
        lines.append(f"Figures:      {', '.join(figure_dirs)}")
    lines.append(f"Metrics:      {output_dir / 'metrics.json'}")
    headline = [
        f"{name}={metrics[name]:.2f}" for name in ("val/loss", "test/recon", "test/kl", "test/loss") if name in metrics
    ]
    if headline:
        lines.append("Per image:    " + "  ".join(headline))
    print("\n".join(lines), flush=True)
