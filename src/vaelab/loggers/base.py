"""What a vaelab run tells its loggers besides the metrics Lightning logs, as one mixin each backend overrides."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class RunHooks:
    """The run's hooks on a logger (a backend mixes this in before its Lightning class); the defaults, which a plain
    Lightning logger gets: the config as hyperparameters, no figures (the PNGs stay in the run folder), its folder."""

    def start_run(self, config: dict[str, Any], tags: Sequence[str], resumed_step: int | None) -> None:
        """At the start (a resume from ``resumed_step`` included): the config and the run's ``tags``."""
        self.log_hyperparams(config)  # type: ignore[attr-defined]

    def before_test(self, step: int, epoch: int) -> None:
        """The test metrics about to be logged come from the checkpoint of this step and epoch."""

    def publish_figure(self, name: str, figure: Figure, png_file: Path, step: int | None) -> None:
        """A figure, already saved as ``png_file``; ``step`` None for the final one (it repeats the last epoch's)."""

    def finish_run(
        self, config: Mapping[str, Any], metrics: Mapping[str, float], best_checkpoint: str, step: int
    ) -> None:
        """The run's outcome: its final metrics and best checkpoint."""

    def publish_evaluation(self, scores: Mapping[str, float], figures: Mapping[str, Any], step: int) -> None:
        """An evaluation of a checkpoint of the run (``vaelab-eval``): its scores (per image, nats) and its figures
        (``name -> HxWxC`` pixels), at the checkpoint's training step. Default: nothing (the evaluation's own
        folder keeps them)."""

    def describe(self) -> str:
        """One line of the closing summary: how to open what this logger wrote."""
        return folder_line(self)


class PlainLogger(RunHooks):
    """Any other Lightning logger (a user's, or fast_dev_run's dummy), with the defaults of ``RunHooks``."""

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        self.logger.log_hyperparams(params)

    def describe(self) -> str:
        return folder_line(self.logger)


def folder_line(logger: Any) -> str:
    """``CSV:          <its folder>``: the logger's name and where it wrote; "" for one without a folder (fast_dev_run's
    dummy writes nothing)."""
    folder = getattr(logger, "log_dir", None)
    return f"{type(logger).__name__.removesuffix('Logger') + ':':<14}{folder}" if folder else ""


def finite_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The metrics a backend can store as numbers: the finite floats (a NaN or infinity would be refused or shown as
    text)."""
    return {name: value for name, value in metrics.items() if isinstance(value, float) and math.isfinite(value)}


def recorded_id(path: Path) -> str | None:
    """The id a run folder keeps for its run in a tracking service (a resume in place goes on in it); None if none."""
    return (path.read_text().strip() or None) if path.is_file() else None
