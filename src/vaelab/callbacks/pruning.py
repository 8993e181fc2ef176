"""Report each epoch's validation metric to the job's Optuna trial and stop the run when the pruner says so."""

from __future__ import annotations

import math
from collections.abc import Callable

import lightning.pytorch as pl
from lightning.pytorch.utilities.rank_zero import rank_zero_info


class OptunaPruning(pl.Callback):
    """``trial.report(<monitor>, epoch)`` after every validation; a pruned run stops at the end of that epoch
    (its checkpoints are written as usual) and ``pruned_epoch`` says when. Only rank 0 talks to the storage;
    the decision is broadcast so every DDP process stops together."""

    def __init__(self, trial_source: Callable[[], object], monitor: str) -> None:
        self.trial_source = trial_source  # opens the trial lazily, on rank 0 only
        self.monitor = monitor
        self.pruned_epoch: int | None = None
        self._trial = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        prune = False
        if trainer.is_global_zero:
            value = trainer.callback_metrics.get(self.monitor)
            if value is not None and math.isfinite(float(value)):
                self._trial = self._trial or self.trial_source()
                self._trial.report(float(value), step=trainer.current_epoch)
                prune = bool(self._trial.should_prune())
        if trainer.strategy.broadcast(prune):
            self.pruned_epoch = trainer.current_epoch
            trainer.should_stop = True
            rank_zero_info(f"Pruned by the Optuna pruner after epoch {trainer.current_epoch} ({self.monitor})")
