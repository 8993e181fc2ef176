"""Callbacks that draw the standard figures during training.

Each writes ``<output_dir>/<name>_epoch<NNN>.png`` every ``every_n_epochs`` epochs and
``<output_dir>/<name>.png`` at the end of training, and hands each figure to every logger
(:func:`vaelab.loggers.publish_figure`: TensorBoard images, MLflow artifacts).
The images they encode are the first ``num_points`` validation images, taken once, so the figures of
different epochs are comparable.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn
from matplotlib.figure import Figure

from vaelab import figures
from vaelab.loggers import publish_figure
from vaelab.models.base import ELBOModule


class FigureCallback(pl.Callback):
    """Base class: subclasses implement ``figures(model, images, labels) -> {name: Figure}``."""

    def __init__(self, output_dir: str, every_n_epochs: int = 1, num_points: int = 2000) -> None:
        self.output_dir = Path(output_dir)
        self.every_n_epochs = every_n_epochs
        self.num_points = num_points
        self._points: tuple[torch.Tensor, torch.Tensor] | None = None
        self._logged_step: int | None = None

    def figures(self, model: ELBOModule, images: torch.Tensor, labels: torch.Tensor) -> dict[str, Figure]:
        raise NotImplementedError

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: ELBOModule) -> None:
        if self.every_n_epochs > 0 and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._emit(trainer, pl_module, suffix=f"_epoch{trainer.current_epoch:03d}")

    def on_train_end(self, trainer: pl.Trainer, pl_module: ELBOModule) -> None:
        self._emit(trainer, pl_module, suffix="")

    def _validation_points(self, trainer: pl.Trainer) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self._points is None:
            loaders = trainer.val_dataloaders
            loader = loaders[0] if isinstance(loaders, Sequence) and loaders else loaders
            if not loader:
                return None
            self._points = figures.first_images(loader, self.num_points)
        return self._points

    def _emit(self, trainer: pl.Trainer, pl_module: ELBOModule, suffix: str) -> None:
        if not trainer.is_global_zero:
            return
        points = self._validation_points(trainer)
        if points is None:
            rank_zero_warn(f"{type(self).__name__}: no validation data, no figures drawn")
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        new_step = self._logged_step != trainer.global_step  # the final call may repeat the last epoch's
        for name, figure in self.figures(pl_module, *points).items():
            png_file = self.output_dir / f"{name}{suffix}.png"
            figure.savefig(png_file)
            publish_figure(trainer.loggers, name, figure, png_file, trainer.global_step if new_step else None)
        self._logged_step = trainer.global_step


class LatentScatter(FigureCallback):
    """z_mean of validation images (first two dims), coloured by digit."""

    def figures(self, model: ELBOModule, images: torch.Tensor, labels: torch.Tensor) -> dict[str, Figure]:
        return {"latent_scatter": figures.latent_scatter_figure(model, images, labels)}


class LatentGrid(FigureCallback):
    """A ``grid_size`` x ``grid_size`` grid decoded over the active latent range of the validation images;
    for a conditional model one grid per digit in ``digits`` (default all)."""

    def __init__(
        self,
        output_dir: str,
        every_n_epochs: int = 1,
        num_points: int = 2000,
        grid_size: int = 20,
        digits: Sequence[int] | None = None,
    ) -> None:
        super().__init__(output_dir, every_n_epochs, num_points)
        self.grid_size = grid_size
        self.digits = list(digits) if digits is not None else None

    def figures(self, model: ELBOModule, images: torch.Tensor, labels: torch.Tensor) -> dict[str, Figure]:
        return figures.latent_grid_figures(model, images, labels, self.grid_size, self.digits)


class CentreDecode(FigureCallback):
    """The decode of z = 0 (per digit for a conditional model)."""

    def figures(self, model: ELBOModule, images: torch.Tensor, labels: torch.Tensor) -> dict[str, Figure]:
        return {"centre_decode": figures.centre_decode_figure(model)}
