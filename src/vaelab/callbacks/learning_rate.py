"""The learning-rate curve of a run with a schedule, as ``train/lr`` in its loggers."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import LearningRateMonitor


class LearningRateCurve(LearningRateMonitor):
    """Lightning's ``LearningRateMonitor`` (``train/lr`` once per epoch) for a run with a logger and a scheduler; any
    other run: nothing (Lightning's refuses a run without a logger and logs a constant without a schedule)."""

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
