"""Comet: Lightning's Comet logger with vaelab's run names, a sweep's jobs tagged with their sweep, the figures as
images and the outcome in the experiment. Offline (``offline: true``), the experiment is archived in
``<run folder>/comet/<key>.zip`` for ``comet upload``."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning.pytorch.loggers import CometLogger as LightningCometLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from vaelab.errors import VaelabError
from vaelab.job import Job
from vaelab.loggers import naming
from vaelab.loggers.base import RunHooks, finite_metrics, recorded_id
from vaelab.targets import require
from vaelab.validators import make_folder

if TYPE_CHECKING:
    from matplotlib.figure import Figure

EXPERIMENT_KEY_FILE = "comet_experiment_key"  # in the run folder: the experiment a resume in place goes on in
# Comet's advice to import it before torch, for its automatic logging, which Lightning turns off (this logger logs).
LATE_IMPORT_ADVICE = "To get all data logged automatically"


def _not_late_import_advice(record: logging.LogRecord) -> bool:  # a function: addFilter adds it once per process
    return not str(record.msg).startswith(LATE_IMPORT_ADVICE)


class CometLogger(RunHooks, LightningCometLogger):
    """Lightning's ``CometLogger``: named like the other loggers' runs (``naming.run_name``), a sweep job tagged with
    its sweep folder's name and given its job number and overrides as parameters; online, the experiment's key kept
    in the run folder (``comet_experiment_key``), so ``resume=<run>`` goes on in the same experiment."""

    def __init__(self, run_dir: str, run_name: str | None = None, offline: bool = False, job: Job | None = None,
                 **kwargs: Any) -> None:  # fmt: skip
        comet_ml = require("comet_ml", extra="comet", purpose="logger=comet")
        if not offline and not comet_ml.config.get_api_key(kwargs.get("api_key"), comet_ml.config.get_config()):
            raise VaelabError(
                "logger=comet needs a Comet API key (COMET_API_KEY, or `comet login`); without an account or a "
                "network, logger.comet.offline=true archives the run for a later `comet upload`"
            )
        logging.getLogger("comet_ml.experiment").addFilter(_not_late_import_advice)
        job = job or Job()
        self._sweep = naming.sweep_tags(job)
        self._offline = offline
        self._key_file = Path(run_dir) / EXPERIMENT_KEY_FILE
        key = None if offline else recorded_id(self._key_file)
        kwargs.setdefault("experiment_key", key)
        kwargs.setdefault("offline_directory", str(Path(run_dir) / "comet"))
        if offline:  # the host's address is looked up by connecting to Comet's server: without a network, a warning
            kwargs.setdefault("log_env_host", False)
            make_folder(Path(kwargs["offline_directory"]), "logger.comet.offline_directory")  # Comet makes one level
        super().__init__(name=run_name or naming.run_name(job), **kwargs)

    def _create_experiment(self) -> None:
        # Lightning's offline mode (online=False) makes a *disabled* experiment, which records nothing: offline, this
        # asks Comet for its offline experiment, which archives everything for `comet upload`.
        import comet_ml

        self._experiment = comet_ml.start(
            api_key=self._api_key, workspace=self._workspace, project=self._project_name,
            experiment_key=self._experiment_key, mode=self._mode, online=False if self._offline else self._online,
            experiment_config=self._comet_config,
        )  # fmt: skip
        self._experiment_key = self._experiment.get_key()
        self._project_name = self._experiment.project_name

    def start_run(self, config: dict[str, Any], tags: Sequence[str], resumed_step: int | None) -> None:
        self.log_hyperparams({**config, **({"sweep": self._sweep} if self._sweep else {})})
        if not self._offline:
            self._key_file.write_text(f"{self.experiment.get_key()}\n")
        sweep_tag = [Path(self._sweep["sweep"]).name] if self._sweep else []
        if tags or sweep_tag:
            self.experiment.add_tags([*tags, *sweep_tag])

    @rank_zero_only
    def publish_figure(self, name: str, figure: Figure, png_file: Path, step: int | None) -> None:
        if step is not None:  # the final figure repeats the last epoch's
            self.experiment.log_image(str(png_file), name=f"figures/{name}", step=step)

    @rank_zero_only
    def finish_run(
        self, config: Mapping[str, Any], metrics: Mapping[str, float], best_checkpoint: str, step: int
    ) -> None:
        finite = finite_metrics(metrics)
        self.experiment.log_others({**{f"final/{name}": value for name, value in finite.items()},
                                    "best_checkpoint": best_checkpoint})  # fmt: skip
        # Ended here: the next job of a sweep in this process starts an experiment of its own, and an offline
        # experiment's archive is written when the job returns.
        self.experiment.end()
        self._experiment = None

    def describe(self) -> str:
        where = f"{self.save_dir}  (offline: comet upload {self.save_dir}/*.zip)" if self._offline else self.name
        return f"Comet:        {where}"
