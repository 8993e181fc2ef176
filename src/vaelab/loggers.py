"""Loggers: what every run tells each logger (config, tags, figures, outcome) in one place, a CSV logger whose
resumed runs keep their history, and an MLflow logger that knows vaelab's run and sweep folders."""

from __future__ import annotations

import csv
import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.loggers import MLFlowLogger as LightningMLFlowLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import DummyLogger, rank_zero_experiment
from lightning.pytorch.utilities.rank_zero import rank_zero_only, rank_zero_warn
from matplotlib.figure import Figure

from vaelab.config_tree import flat_config
from vaelab.errors import VaelabError
from vaelab.tensorboard_logger import HPARAM_METRICS, SCALARS_LAYOUT, tensorboard_hparams
from vaelab.tensorboard_logger import TensorBoardLogger as VaelabTensorBoardLogger


class _HistoryWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing ``metrics.csv``; this one keeps its rows logged before
    ``keep_before`` (the step a resumed run goes on from) and appends after them."""

    def __init__(self, log_dir: str, keep_before: int | None) -> None:
        self.keep_before = keep_before
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        if self.keep_before is None or not self._fs.isfile(self.metrics_file_path):
            super()._check_log_dir_exists()
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            reader = csv.DictReader(file)
            keys = list(reader.fieldnames or [])
            rows = [row for row in reader if row.get("step") and int(float(row["step"])) < self.keep_before]
        with self._fs.open(self.metrics_file_path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        self.metrics_keys = keys


class CSVLogger(LightningCSVLogger):
    """Lightning's CSVLogger; after ``keep_history_before(step)`` (a resume) it appends to the run's metrics.csv."""

    _keep_before: int | None = None

    def keep_history_before(self, step: int) -> None:
        self._keep_before = step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _HistoryWriter(log_dir=self.log_dir, keep_before=self._keep_before)
        return self._experiment


# --- Run setup and figures, for every logger in one place ----------------------------------------------------------


def start_run(
    loggers: Sequence[Logger], config: dict[str, Any], tags: Sequence[str], resumed_step: int | None = None
) -> None:
    """Log the resolved config as hyperparameters and the run's ``tags`` to each logger, in its own way; a run
    resumed from ``resumed_step`` keeps the CSV history logged before that step."""
    for logger in loggers:
        if isinstance(logger, CSVLogger) and resumed_step is not None:
            logger.keep_history_before(resumed_step)
        if isinstance(logger, TensorBoardLogger):  # the HParams entry is written by finish_run, with real metrics
            logger.experiment.add_custom_scalars(SCALARS_LAYOUT)
            if tags:
                logger.experiment.add_text("tags", ", ".join(tags))
        elif isinstance(logger, MLFlowLogger):
            logger.add_tags(tags)
            logger.log_hyperparams(flat_config(config))
        else:  # CSV: hparams.yaml holds the config, tags included
            logger.log_hyperparams(config)


def finish_run(
    loggers: Sequence[Logger], config: Mapping[str, Any], metrics: Mapping[str, float], best_checkpoint: str, step: int
) -> None:
    """Record the run's outcome where each logger shows it: TensorBoard's HParams entry (the curated
    hyperparameters and the final metrics this run has, no placeholders), MLflow's best-checkpoint tag."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            final = {tag: metrics[name] for name, tag in HPARAM_METRICS.items() if name in metrics}
            overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
            if isinstance(logger, VaelabTensorBoardLogger):
                logger.log_outcome(tensorboard_hparams(config, overrides), final, step)
            elif final:  # Lightning's own TensorBoardLogger
                logger.log_hyperparams(tensorboard_hparams(config, overrides), metrics=final, step=step)
                logger.experiment.flush()
        elif isinstance(logger, MLFlowLogger) and best_checkpoint:
            logger.experiment.set_tag(logger.run_id, "best_checkpoint", best_checkpoint)


def before_test(loggers: Sequence[Logger], step: int, epoch: int) -> None:
    """The test metrics about to be logged come from the checkpoint of this step and epoch: TensorBoard draws
    them there (``vaelab.tensorboard_logger.TensorBoardLogger``), beside the validation curve they were chosen on."""
    for logger in loggers:
        if isinstance(logger, VaelabTensorBoardLogger):
            logger.attach_test_to(step, epoch)


def publish_figure(loggers: Sequence[Logger], name: str, figure: Figure, png_file: Path, step: int | None) -> None:
    """Hand a figure (already saved as ``png_file``) to every logger: TensorBoard gets the image under
    ``figures/<name>`` (not when ``step`` is None: the final figure repeats the last epoch's), MLflow the PNG
    as an artifact under ``figures/``; CSV and others keep the PNG file in the run folder."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger) and step is not None:
            logger.experiment.add_figure(f"figures/{name}", figure, global_step=step, close=False)
        elif isinstance(logger, MLFlowLogger):
            logger.experiment.log_artifact(logger.run_id, str(png_file), artifact_path="figures")


def describe(logger: Logger) -> str:
    """One line of the closing summary: how to open what this logger wrote ("" for fast_dev_run's dummy)."""
    if isinstance(logger, DummyLogger):
        return ""
    if isinstance(logger, TensorBoardLogger):  # the folder above the run's: TensorBoard then shows the run's name
        return f"TensorBoard:  tensorboard --logdir {logger.root_dir}  (losses first: http://localhost:6006/#custom_scalars)"
    if isinstance(logger, MLFlowLogger):
        return f"MLflow:       mlflow ui --backend-store-uri {logger._tracking_uri}  (run {logger.run_id})"
    return f"{type(logger).__name__.removesuffix('Logger') + ':':<14}{logger.log_dir}"


# --- MLflow ----------------------------------------------------------------------------------------------------------

RUN_ID_FILE = "mlflow_run_id"  # in the run folder: a run resumed in place goes on in the same MLflow run
SWEEP_RUN_FILE = "mlflow_sweep_run_id"  # in the sweep folder: the parent run the jobs' runs nest under


def check_mlflow(tracking_uri: str | None) -> None:
    """One line instead of a traceback when MLflow is missing; a SQLite store's folder is made if needed."""
    if importlib.util.find_spec("mlflow") is None:
        raise VaelabError("logger=mlflow needs MLflow: pip install 'vaelab[mlflow]' (or mlflow>=3)")
    if tracking_uri and tracking_uri.startswith("sqlite:///"):
        folder = Path(tracking_uri.removeprefix("sqlite:///")).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise VaelabError(
                f"logger.mlflow.tracking_uri={tracking_uri}: cannot create {folder} ({error.strerror})"
            ) from None


def default_run_name() -> str:
    """``conv_vae 2026-11-25_19-40-01-...`` for a run, ``conv_vae <sweep folder> #3`` for a sweep job (its folder's
    name: the job number, or ``<trial>_<replica>`` for the Optuna sweeper's replicas)."""
    if not HydraConfig.initialized():
        return "vaelab"
    hydra_cfg = HydraConfig.get()
    model = hydra_cfg.runtime.choices.get("model", "model")
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return f"{model} {Path(hydra_cfg.sweep.dir).name} #{Path(hydra_cfg.runtime.output_dir).name}"
    return f"{model} {Path(hydra_cfg.runtime.output_dir).name}"


def sweep_tags() -> dict[str, str]:
    """In a sweep job: the sweep's folder, the job's number and overrides, and the sweep's parent run if any."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return {}
    hydra_cfg = HydraConfig.get()
    tags = {
        "sweep": str(hydra_cfg.sweep.dir),
        "job": Path(hydra_cfg.runtime.output_dir).name,
        "overrides": " ".join(hydra_cfg.overrides.task)[:5000],
    }
    parent = Path(hydra_cfg.sweep.dir) / SWEEP_RUN_FILE
    if parent.is_file():
        tags["mlflow.parentRunId"] = parent.read_text().strip()
    return tags


class MLFlowLogger(LightningMLFlowLogger):
    """Lightning's MLflow logger with vaelab's conventions.

    The run is named after the model and the run folder (:func:`default_run_name`); in a sweep it nests under the
    sweep's parent run and carries the job's number and overrides as tags. Its id is kept in the run folder,
    so a run resumed in place (``resume=<run folder>``) goes on in the same MLflow run; the parameters it
    already has keep their first values (MLflow cannot change a parameter), changed ones are named in a
    warning.
    """

    def __init__(self, run_dir: str, run_name: str | None = None, tags: Mapping[str, Any] | None = None, **kwargs: Any):
        check_mlflow(kwargs.get("tracking_uri"))
        self._run_id_file = Path(run_dir) / RUN_ID_FILE
        run_id = self._run_id_file.read_text().strip() if self._run_id_file.is_file() else None
        super().__init__(run_name=run_name or default_run_name(), tags={**sweep_tags(), **(tags or {})},
                         run_id=run_id, **kwargs)  # fmt: skip

    def add_tags(self, tags: Sequence[str]) -> None:
        """The run's ``tags`` (``tags=[baseline,seed-sweep]``) as MLflow tags with the value ``true``; set on the
        run itself, so a run resumed in place (whose creation tags are long written) gets them too."""
        for tag in tags:
            self.experiment.set_tag(self.run_id, tag, "true")

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._initialized:
            return self._mlflow_client
        if self._run_id is not None:
            try:
                self._mlflow_client.get_run(self._run_id)
            except Exception:  # the store was moved or deleted: start a new run rather than fail the resume
                rank_zero_warn(f"MLflow run {self._run_id} is not in {self._tracking_uri}: starting a new run")
                self._run_id = None
        client = super().experiment
        self._run_id_file.parent.mkdir(parents=True, exist_ok=True)
        self._run_id_file.write_text(f"{self._run_id}\n")
        return client

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any]) -> None:  # type: ignore[override]
        logged = self.experiment.get_run(self.run_id).data.params
        changed = sorted(key for key, value in params.items() if key in logged and logged[key] != str(value)[:250])
        if changed:
            rank_zero_warn(f"MLflow keeps the first value of a parameter; not updated: {', '.join(changed)}")
        super().log_hyperparams({key: value for key, value in params.items() if key not in logged})
