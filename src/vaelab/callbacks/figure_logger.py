"""The callback that draws the standard figures during training (``vaelab.figures.model``): ``<name>_epoch<NNN>.png``
every ``every_n_epochs`` epochs and ``<name>.png`` at the end, each also handed to the loggers
(``RunHooks.publish_figure``), all drawn on the same first ``num_points`` validation images.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn

from vaelab.figures import plots
from vaelab.figures.model import draw_figures
from vaelab.figures.settings import FROM_IMAGES, TRAINING_FIGURES, FigureSettings, check_figure_names
from vaelab.loggers import hooks
from vaelab.models.base import ELBOModule
from vaelab.validators import check_number

SETTINGS_KEY = "callbacks.figures"  # where conf/callbacks/default.yaml sets them


def first_images(loader: Iterable[tuple[torch.Tensor, torch.Tensor]], count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` ``(images, labels)`` a loader yields, concatenated."""
    images, labels, taken = [], [], 0
    for batch_images, batch_labels in loader:
        images.append(batch_images)
        labels.append(batch_labels)
        taken += len(batch_images)
        if taken >= count:
            break
    return torch.cat(images)[:count], torch.cat(labels)[:count]


class FigureLogger(pl.Callback):
    """Draws ``names`` (default ``TRAINING_FIGURES``: latent scatter, latent grid, centre decode; any of
    ``vaelab.figures.model.FIGURES``) on validation images; the other arguments are ``FigureSettings``'."""

    def __init__(
        self,
        output_dir: str,
        every_n_epochs: int = 1,
        names: Sequence[str] | None = None,
        num_points: int = 2000,
        grid_size: int = 20,
        digits: Sequence[int] | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.every_n_epochs = every_n_epochs
        self.names = list(names) if names is not None else list(TRAINING_FIGURES)
        check_figure_names(self.names, key="callbacks.figures.names")
        check_number(f"{SETTINGS_KEY}.every_n_epochs", every_n_epochs, minimum=0, integer=True)
        digits = list(digits) if isinstance(digits, Sequence) and not isinstance(digits, str) else digits
        self.settings = FigureSettings(num_points=num_points, grid_size=grid_size, digits=digits)
        self.settings.check(SETTINGS_KEY)
        self._points: tuple[torch.Tensor, torch.Tensor] | None = None
        self._logged_step: int | None = None

    def setup(self, trainer: pl.Trainer, pl_module: ELBOModule, stage: str) -> None:
        self.settings.class_names = getattr(trainer.datamodule, "class_names", None)  # the data set's, if it has
        self.check_model(pl_module)

    def check_model(self, model: ELBOModule) -> None:
        """``digits`` must be classes of a conditional ``model``: one line otherwise (``train`` asks before fitting)."""
        self.settings.check(SETTINGS_KEY, model.num_classes)

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
            self._points = first_images(loader, self.settings.num_points)
        return self._points

    def _emit(self, trainer: pl.Trainer, pl_module: ELBOModule, suffix: str) -> None:
        if not trainer.is_global_zero or not self.names:
            return
        if FROM_IMAGES & set(self.names):
            points = self._validation_points(trainer)
            if points is None:
                rank_zero_warn(f"{type(self).__name__}: no validation data, no figures drawn")
                return
        else:  # figures of the model alone (centre decode, samples): no images needed
            points = (torch.empty(0, 1, 28, 28), torch.empty(0, dtype=torch.long))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        new_step = self._logged_step != trainer.global_step  # the final call may repeat the last epoch's
        for name, figure in draw_figures(pl_module, *points, self.names, self.settings).items():
            png_file = self.output_dir / f"{name}{suffix}.png"
            plots.save_png(figure, png_file)
            for logger in hooks(trainer.loggers):
                logger.publish_figure(name, figure, png_file, trainer.global_step if new_step else None)
        self._logged_step = trainer.global_step
