"""Report each epoch's validation metric to the job's Optuna trial and stop the run when the pruner says so."""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from vaelab.job import Job


class OptunaPruning(pl.Callback):
    """In a job the vaelab Optuna sweeper launched (one with a ``job.trial``): ``trial.report(<monitor>,
    epoch)`` after every validation, and a pruned run stops at the end of that epoch (its checkpoints are written
    as usual; ``pruned_epoch`` says when). Any other run: nothing. Only rank 0 talks to the storage; the decision
    is broadcast so every DDP process stops together."""

    def __init__(self, monitor: str | None = None, job: Job | None = None) -> None:
        self.monitor = monitor or "val/loss"  # optimized_metric, when the run has one
        self.trial_number = job.trial if job else None
        self.pruned_epoch: int | None = None
        self._trial = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        prune = False
        if trainer.is_global_zero:
            value = trainer.callback_metrics.get(self.monitor)
            if value is not None and math.isfinite(float(value)) and self.trial_number is not None:
                from vaelab.sweep.study import trial_of_this_job  # optuna (0.35 s to import) only in a sweep's job

                # Opened lazily, on rank 0 only; the study is named in the sweep folder, the job folder's parent.
                self._trial = self._trial or trial_of_this_job(Path(trainer.default_root_dir).parent, self.trial_number)
                if self._trial is not None:
                    self._trial.report(float(value), step=trainer.current_epoch)
                    prune = bool(self._trial.should_prune())
        if trainer.strategy.broadcast(prune):
            self.pruned_epoch = trainer.current_epoch
            trainer.should_stop = True
            rank_zero_info(f"Pruned by the Optuna pruner after epoch {trainer.current_epoch} ({self.monitor})")
