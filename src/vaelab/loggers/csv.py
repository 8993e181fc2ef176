"""CSV: Lightning's CSV logger, whose resumed runs keep their history."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from vaelab.loggers.base import RunHooks
from vaelab.run.files import drop_rows_from


class _HistoryWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing ``metrics.csv``; this one keeps its rows logged before
    ``keep_before`` (the step a resumed run goes on from) and appends after them."""

    def __init__(self, log_dir: str, keep_before: int | None) -> None:
        self.keep_before = keep_before
        super().__init__(log_dir)

    # No public way to keep a file: Lightning's private _check_log_dir_exists and _experiment, here only (tested).
    def _check_log_dir_exists(self) -> None:
        if self.keep_before is None or not Path(self.metrics_file_path).is_file():
            super()._check_log_dir_exists()
            return
        self.metrics_keys = drop_rows_from(Path(self.metrics_file_path), self.keep_before)


class CSVLogger(RunHooks, LightningCSVLogger):
    """Lightning's CSVLogger (``hparams.yaml`` holds the config, tags included); a resumed run appends to the
    run's ``metrics.csv`` after the rows logged before the step it resumes from."""

    _keep_before: int | None = None

    def start_run(self, config: dict[str, Any], tags: Sequence[str], resumed_step: int | None) -> None:
        self._keep_before = resumed_step
        self.log_hyperparams(config)

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _HistoryWriter(log_dir=self.log_dir, keep_before=self._keep_before)
        return self._experiment
