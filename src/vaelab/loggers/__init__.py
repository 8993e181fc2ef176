"""A run's loggers, one module per backend (``csv``, ``tensorboard``, ``mlflow``, ``wandb``, ``comet``): a Lightning
logger with vaelab's ``RunHooks`` (``base``); any other Lightning logger gets the hooks' defaults. The backends load
on first use, as ``vaelab.loggers.CSVLogger``, ``TensorBoardLogger``, ``MLFlowLogger``, ``WandbLogger`` and
``CometLogger`` (the configs' targets).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from vaelab.loggers.base import PlainLogger, RunHooks

BACKENDS = {
    "CSVLogger": "csv",
    "TensorBoardLogger": "tensorboard",
    "MLFlowLogger": "mlflow",
    "WandbLogger": "wandb",
    "CometLogger": "comet",
}


def __getattr__(name: str) -> Any:
    if name in BACKENDS:
        return getattr(importlib.import_module(f"vaelab.loggers.{BACKENDS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def hooks(loggers: Sequence[Any]) -> list[RunHooks]:
    """The run hooks of each logger: its own for vaelab's backends, the defaults for any other."""
    return [logger if isinstance(logger, RunHooks) else PlainLogger(logger) for logger in loggers]
