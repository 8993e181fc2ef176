"""Wall-clock time of the epochs a fit runs (resumed runs count only their own epochs)."""

from __future__ import annotations

import time

import lightning.pytorch as pl


class FitTimer(pl.Callback):
    """Seconds and epochs of the last ``fit``; training, validation and every callback included."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.epochs = 0
        self._started = 0.0
        self._first_epoch = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.perf_counter()
        self._first_epoch = trainer.current_epoch

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seconds = time.perf_counter() - self._started
        self.epochs = trainer.current_epoch - self._first_epoch

    @property
    def seconds_per_epoch(self) -> float:
        return self.seconds / self.epochs if self.epochs else float("nan")
