"""A run's loggers, one module per backend (``csv``, ``tensorboard``, ``mlflow``): each a Lightning logger with
vaelab's ``RunHooks`` (``base``), which say what the run tells it besides its metrics. Adding a backend is one
module; any other Lightning logger gets the hooks' defaults. Run names and sweep tags come from ``naming``.

Light to import (Hydra's callbacks use it): the backends load on first use, as ``vaelab.loggers.CSVLogger``,
``vaelab.loggers.TensorBoardLogger`` and ``vaelab.loggers.MLFlowLogger`` (the configs' targets).
"""

from __future__ import annotations

import importlib
import importlib.util
import socket
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vaelab.errors import VaelabError, make_folder
from vaelab.loggers.base import PlainLogger, RunHooks

BACKENDS = {"CSVLogger": "csv", "TensorBoardLogger": "tensorboard", "MLFlowLogger": "mlflow"}


def __getattr__(name: str) -> Any:
    if name in BACKENDS:
        return getattr(importlib.import_module(f"vaelab.loggers.{BACKENDS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def hooks(loggers: Sequence[Any]) -> list[RunHooks]:
    """The run hooks of each logger: its own for vaelab's backends, the defaults for any other."""
    return [logger if isinstance(logger, RunHooks) else PlainLogger(logger) for logger in loggers]


# The port a tracking server listens on when its URI names none.
DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306}
CONNECT_SECONDS = 5.0


def check_mlflow(tracking_uri: str | None) -> None:
    """One line instead of a traceback when MLflow is missing; a SQLite store's folder is made if needed; a server
    that does not answer within seconds is one line (MLflow's client retries for minutes)."""
    if importlib.util.find_spec("mlflow") is None:
        raise VaelabError("logger=mlflow needs MLflow: pip install 'vaelab[mlflow]' (or mlflow>=3)")
    if tracking_uri and tracking_uri.startswith("sqlite:///"):
        make_folder(Path(tracking_uri.removeprefix("sqlite:///")).parent, f"logger.mlflow.tracking_uri={tracking_uri}")
    address = urllib.parse.urlsplit(tracking_uri or "")
    scheme = address.scheme.split("+")[0]  # postgresql+psycopg
    if scheme in DEFAULT_PORTS and address.hostname:
        try:
            port = address.port or DEFAULT_PORTS[scheme]
            socket.create_connection((address.hostname, port), timeout=CONNECT_SECONDS).close()
        except (OSError, ValueError) as error:
            reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
            raise VaelabError(
                f"logger.mlflow.tracking_uri={tracking_uri}: cannot reach the tracking server ({reason}); start it, "
                "or pass another tracking_uri (a sqlite:/// file needs no server)."
            ) from None
