"""``history.csv`` in the run folder: one row per epoch, the plain record evaluation and sweep summaries read."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Checkpoint

from vaelab.run.files import drop_rows_from, write_atomic
from vaelab.run.folder import HISTORY_COLUMNS, RunFolder


class EpochHistory(Checkpoint):
    """Appends ``epoch, step`` and the epoch means (``HISTORY_COLUMNS``) after every training epoch.

    A ``Checkpoint`` subclass only for its place in Lightning's hook order: checkpoint callbacks run their
    ``on_train_epoch_end`` after the LightningModule's, which is where the training means are logged. A resumed
    run first drops the rows after the step it resumes from, so the file reads like one uninterrupted run.
    """

    def __init__(self, run_dir: str) -> None:
        self.folder = RunFolder(Path(run_dir))
        self._validated = False  # whether this epoch validated (``trainer.check_val_every_n_epoch`` may skip it)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            drop_rows_from(self.folder.history_file, trainer.global_step + 1)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._validated = False

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._validated = self._validated or not trainer.sanity_checking

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics  # val/* there is the last validation's: kept only for an epoch that ran one
        row = {name: float(metrics[name]) for name in HISTORY_COLUMNS
               if name in metrics and (self._validated or not name.startswith("val/"))}  # fmt: skip
        self._append({"epoch": trainer.current_epoch, "step": trainer.global_step, **row})

    def _append(self, row: dict[str, float]) -> None:
        """Append a row; the file is rewritten whole, so a failed write (a full disk) leaves the rows it had."""
        append = self.folder.history_file.is_file()
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\r\n")
        if not append:
            writer.writeheader()
        writer.writerow({key: "" if math.isnan(value) else value for key, value in row.items()})
        before = self.folder.history_file.read_bytes().decode() if append else ""  # as written: \r\n kept
        write_atomic(self.folder.history_file, before + text.getvalue())
