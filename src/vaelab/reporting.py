"""A run's outcome, once it is tested: its metrics and facts to the loggers and ``metrics.json``, and the closing
lines that say where everything it wrote is."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from lightning.pytorch.callbacks import ModelCheckpoint, Timer

from vaelab.callbacks import FigureLogger
from vaelab.loggers import hooks
from vaelab.machine import machine_facts

if TYPE_CHECKING:
    from vaelab.training import Run


def report(
    run: Run, metrics: dict[str, float], checkpoints: dict[str, str], timing: dict[str, float]
) -> dict[str, Any]:
    """The run's outcome to the loggers, ``metrics.json`` and the closing lines; returns metrics and facts."""
    trainer = run.trainer
    facts = {
        "status": run.status,
        # The convention of every number above: the pixels the model saw and its likelihood (docs/evaluation.md).
        **run.datamodule.state_dict(),
        "likelihood": getattr(run.model, "likelihood", "bernoulli"),
        "epochs": trainer.current_epoch,
        **timing,
        **machine_facts(trainer.strategy.root_device),
        "precision": str(trainer.precision),
    }
    for logger in hooks(trainer.loggers):
        logger.finish_run(run.config, metrics, checkpoints["best"], trainer.global_step)
    if trainer.is_global_zero:
        run.folder.write_metrics({**metrics, **facts})
        print_locations(run, checkpoints, metrics)
    return {**metrics, **facts}


def fit_time(callbacks: list[Any], epochs: int) -> dict[str, float]:
    """``fit_seconds`` and ``seconds_per_epoch`` from the run's ``Timer`` (NaN without one, or no epoch)."""
    timer = next((callback for callback in callbacks if isinstance(callback, Timer)), None)
    seconds = timer.time_elapsed("train") if timer else math.nan
    return {"fit_seconds": round(seconds, 1), "seconds_per_epoch": round(seconds / epochs, 1) if epochs else math.nan}


def checkpoint_paths(run: Run) -> dict[str, str]:
    """``best`` (the ModelCheckpoint with a monitor; the last checkpoint has none) and ``last``; "" if none."""
    best = next((c for c in run.callbacks if isinstance(c, ModelCheckpoint) and c.monitor), None)
    last = run.folder.last_checkpoint
    return {"best": best.best_model_path if best else "", "last": str(last) if last.is_file() else ""}


def print_locations(run: Run, checkpoints: dict[str, str], metrics: dict[str, float]) -> None:
    """The closing lines of a run: where everything it wrote is, and the headline numbers."""
    folder = run.folder
    lines = [f"Run folder:   {folder.path}"]
    lines.append(f"Checkpoints:  best {checkpoints['best'] or '-'}")
    lines.append(f"              last {checkpoints['last'] or '-'}")
    lines += [line for logger in hooks(run.trainer.loggers) if (line := logger.describe())]
    figure_dirs = sorted({str(c.output_dir) for c in run.callbacks if isinstance(c, FigureLogger)})
    if figure_dirs:
        lines.append(f"Figures:      {', '.join(figure_dirs)}")
    lines.append(f"Metrics:      {folder.metrics_file}  (per epoch: {folder.history_file})")
    headline = [
        f"{name}={metrics[name]:.2f}" for name in ("val/loss", "test/recon", "test/kl", "test/loss") if name in metrics
    ]
    if headline:
        lines.append("Per image:    " + "  ".join(headline))
    print("\n".join(lines), flush=True)
