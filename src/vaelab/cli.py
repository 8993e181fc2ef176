"""The command lines (``vaelab-train``/``vaelab-eval``; ``train.py``/``evaluate.py`` call them): one Hydra job each,
composed from the package's configs (``vaelab/conf``; ``--config-dir`` adds a user's). A single run ends a user
error with one ``error:`` line and exit status 1; a multirun job records any error in its folder
(``RunFolder.record_failure``) and the sweep goes on, ``FailedJobsReport`` exiting non-zero at its end.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import hydra
from omegaconf import DictConfig

from vaelab.errors import Interrupted, VaelabError, exit_with_error, require, user_error
from vaelab.run.folder import RunFolder, in_multirun
from vaelab.run.resume import with_run_overrides

log = logging.getLogger(__name__)
Result = TypeVar("Result")
CONFIG_PATH = "conf"  # beside this file: vaelab/conf


def _not_a_tip(record: logging.LogRecord) -> bool:  # a function, not a lambda: addFilter adds it once per process
    return not str(record.msg).startswith("💡 Tip:")


def quiet_lightning() -> None:
    """Lightning's messages once, through Hydra's handlers (``import lightning`` adds a stderr handler of its own:
    every line twice), and without the Trainer's cloud advert."""
    import lightning  # noqa: F401  (adds the handler this removes)

    if logging.getLogger().hasHandlers():
        lightning_logger = logging.getLogger("lightning")
        for handler in list(lightning_logger.handlers):
            lightning_logger.removeHandler(handler)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_not_a_tip)


def run_job(task: Callable[[DictConfig], Result], cfg: DictConfig) -> Result | None:
    """``task(cfg)``, errors reported as the module docstring says (``HYDRA_FULL_ERROR=1``: with tracebacks, as
    Hydra does); None when a sweep job failed."""
    quiet_lightning()
    folder = RunFolder(Path(cfg.paths.output_dir))
    try:
        return task(cfg)  # a failure before it trains has put the folder's record back (vaelab.run.guard.writing)
    except BaseException as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or not isinstance(error, Exception):
            raise
        cause = user_error(error)
        if not in_multirun():
            if cause is None:
                raise
            exit_with_error(cause)
        # One line: a user error's message, else the exception's type and its message's first line.
        first = str(error).strip().splitlines()[:1]
        line = str(cause) if cause is not None else ": ".join([type(error).__name__, *first])
        log.error("error: %s", line)
        interrupted = isinstance(cause, Interrupted)  # Ctrl-C or SIGTERM (a pre-emption): stop the sweep
        folder.record_failure(line, interrupted, details="" if cause is not None else traceback.format_exc())
        if interrupted:
            raise SystemExit(1) from None
        return None


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def _train_job(cfg: DictConfig) -> float | None:
    from vaelab.training import train

    metrics = run_job(train, cfg)  # None: a sweep job that failed (recorded in its folder)
    # optimized_metric is checked against the metrics a run logs before it trains (training.check_optimized_metric).
    return metrics.get(cfg.get("optimized_metric")) if metrics else None


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="eval")
def _evaluate_job(cfg: DictConfig) -> list[dict] | None:
    from vaelab.evaluation import evaluate

    return run_job(evaluate, cfg)  # the metrics of every checkpoint evaluated (one, or each run compared)


# The Hydra plugin each launcher config needs (conf/launcher/), all in the sweeps extra.
LAUNCHER_PLUGINS = {"joblib": "hydra_plugins.hydra_joblib_launcher",
                    "slurm": "hydra_plugins.hydra_submitit_launcher",
                    "submitit_local": "hydra_plugins.hydra_submitit_launcher"}  # fmt: skip


def check_launcher_installed(argv: list[str]) -> None:
    """``launcher=joblib`` without its Hydra plugin is one line naming the extra, not Hydra's search-path report."""
    for token in argv[1:]:
        name = token.partition("launcher=")[2] if token.lstrip("+~").startswith("launcher=") else None
        if name in LAUNCHER_PLUGINS:
            require(LAUNCHER_PLUGINS[name], extra="sweeps", purpose=f"launcher={name}")


def train_command() -> None:
    """``vaelab-train``: Hydra's command line for ``vaelab.training.train``; ``resume=<run>`` goes on with the
    run's own overrides."""
    try:
        sys.argv = with_run_overrides(sys.argv)
        check_launcher_installed(sys.argv)
    except (VaelabError, OSError) as error:
        exit_with_error(user_error(error) or error)
    # experiment is an optional default of train.yaml: Hydra refuses the +experiment= that older runs recorded.
    sys.argv = [re.sub(r"^\+{1,2}experiment=", "experiment=", token) for token in sys.argv]
    _train_job()


def evaluate_command() -> None:
    """``vaelab-eval``: Hydra's command line for ``vaelab.evaluation.evaluate``."""
    _evaluate_job()
