"""Weights & Biases: Lightning's W&B logger with vaelab's run names, the sweep's jobs grouped, the figures as
images and the outcome in the run's summary. Offline (``WANDB_MODE=offline``, or ``offline: true``), the run is
kept in ``<run folder>/wandb/`` for ``wandb sync``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from vaelab.job import Job
from vaelab.loggers import naming
from vaelab.loggers.base import RunHooks, finite_metrics, recorded_id
from vaelab.targets import require

if TYPE_CHECKING:
    from matplotlib.figure import Figure

RUN_ID_FILE = "wandb_run_id"  # in the run folder: the W&B run a resume in place goes on in


class WandbLogger(RunHooks, LightningWandbLogger):
    """Lightning's ``WandbLogger``: named like the other loggers' runs (``naming.run_name``), a sweep's jobs in one
    group (the sweep's folder name) with their job number and overrides in the config; the run's id kept in the run
    folder (``wandb_run_id``), so ``resume=<run>`` goes on in the same W&B run."""

    def __init__(self, run_dir: str, run_name: str | None = None, group: str | None = None, job: Job | None = None,
                 **kwargs: Any) -> None:  # fmt: skip
        require("wandb", extra="wandb", purpose="logger=wandb")
        job = job or Job()
        sweep = naming.sweep_tags(job)
        group = group or (Path(sweep["sweep"]).name if sweep else None)
        self._run_id_file = Path(run_dir) / RUN_ID_FILE
        # A run resumed in place goes on in the same W&B run (Lightning asks W&B to resume an id it is given).
        run_id = recorded_id(self._run_id_file)
        kwargs.setdefault("id", run_id or None)
        super().__init__(name=run_name or naming.run_name(job), group=group, save_dir=run_dir, **kwargs)
        self._wandb_init.pop("anonymous", None)  # W&B warns that the setting does nothing, whatever its value
        self._sweep = sweep

    def start_run(self, config: dict[str, Any], tags: Sequence[str], resumed_step: int | None) -> None:
        self.log_hyperparams({**config, **({"sweep": self._sweep} if self._sweep else {})})
        self._run_id_file.write_text(f"{self.experiment.id}\n")
        if tags:
            self.experiment.tags = tuple(tags)

    @rank_zero_only
    def publish_figure(self, name: str, figure: Figure, png_file: Path, step: int | None) -> None:
        if step is not None:  # the final figure repeats the last epoch's
            self.log_image(f"figures/{name}", [str(png_file)], step=step)

    @rank_zero_only
    def finish_run(
        self, config: Mapping[str, Any], metrics: Mapping[str, float], best_checkpoint: str, step: int
    ) -> None:
        finite = finite_metrics(metrics)
        self.experiment.summary.update({**finite, "best_checkpoint": best_checkpoint})
        # Finished here: the next job of a sweep in this process starts a run of its own (W&B would attach it to
        # this one), and an offline run's log is complete when the job returns.
        self.experiment.finish()

    def describe(self) -> str:
        return f"W&B:          {self.save_dir}/wandb  (offline: wandb sync {self.save_dir}/wandb/offline-run-*)"
