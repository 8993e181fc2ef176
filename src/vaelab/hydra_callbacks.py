"""Hydra callbacks: checks that must run before Hydra itself touches the file system."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


class OutputDirCheck(Callback):
    """Stop with one line when the run (or sweep) folder cannot be created, instead of Hydra's traceback."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(OmegaConf.select(config, "hydra.run.dir"))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(OmegaConf.select(config, "hydra.sweep.dir"))

    @staticmethod
    def _check(folder: str | None) -> None:
        if folder is None:
            return
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            print(
                f"error: cannot create the run folder {folder} ({error.strerror}); "
                "pass paths.log_dir=<a writable folder> or hydra.run.dir=<folder>.",
                file=sys.stderr,
            )
            sys.exit(1)
