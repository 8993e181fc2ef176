"""The learning-rate curve of a run with a schedule, as ``train/lr`` in its loggers."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import LearningRateMonitor


class LearningRateCurve(LearningRateMonitor):
    """Lightning's ``LearningRateMonitor`` (once per epoch) for a run that has a logger and a learning-rate
    scheduler (``vaelab.models.optimization`` names it ``train/lr``); any other run: nothing, where Lightning's
    would refuse a run without a logger and log a constant for one without a schedule."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{"logging_interval": "epoch", **kwargs})
        self.active = False

    def on_train_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        self.active = bool(trainer.loggers and trainer.lr_scheduler_configs)
        if self.active:
            super().on_train_start(trainer, *args, **kwargs)

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if self.active:
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if self.active:
            super().on_train_epoch_start(trainer, *args, **kwargs)
