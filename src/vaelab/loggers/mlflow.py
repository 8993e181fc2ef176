"""MLflow: Lightning's MLflow logger with vaelab's run names, sweep nesting and resume in the same run."""

from __future__ import annotations

import importlib.util
import socket
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning.pytorch.loggers import MLFlowLogger as LightningMLFlowLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities.rank_zero import rank_zero_only, rank_zero_warn

from vaelab.config_tree import flat_config
from vaelab.errors import VaelabError
from vaelab.job import Job
from vaelab.loggers import naming
from vaelab.loggers.base import RunHooks
from vaelab.run.folder import MLFLOW_RUN_ID_FILE as RUN_ID_FILE
from vaelab.run.folder import MLFLOW_URI_FILE as URI_FILE
from vaelab.validators import make_folder

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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


class MLFlowLogger(RunHooks, LightningMLFlowLogger):
    """Lightning's MLflow logger, its run named by ``naming.run_name`` and nested under a sweep's parent run. Its id
    is kept in the run folder, so a run resumed in place goes on in the same MLflow run (parameters keep their first
    values: MLflow cannot change one; changed ones are named in a warning)."""

    def __init__(self, run_dir: str, run_name: str | None = None, tags: Mapping[str, Any] | None = None,
                 job: Job | None = None, **kwargs: Any):  # fmt: skip
        check_mlflow(kwargs.get("tracking_uri"))
        self._run_id_file = Path(run_dir) / RUN_ID_FILE
        run_id = tracked_run(Path(run_dir))[0] if self._run_id_file.is_file() else None
        self.tracking_uri = kwargs.get("tracking_uri")
        job = job or Job()
        super().__init__(run_name=run_name or naming.run_name(job), tags={**naming.sweep_tags(job), **(tags or {})},
                         run_id=run_id, **kwargs)  # fmt: skip

    def start_run(self, config: dict[str, Any], tags: Sequence[str], resumed_step: int | None) -> None:
        """The run's ``tags`` as MLflow tags valued ``true``, set on the run itself (so a run resumed in place gets
        them too); the flattened config as parameters."""
        for tag in tags:
            self.experiment.set_tag(self.run_id, tag, "true")
        self.log_hyperparams(flat_config(config))

    def publish_figure(self, name: str, figure: Figure, png_file: Path, step: int | None) -> None:
        self.experiment.log_artifact(self.run_id, str(png_file), artifact_path="figures")

    def finish_run(
        self, config: Mapping[str, Any], metrics: Mapping[str, float], best_checkpoint: str, step: int
    ) -> None:
        if best_checkpoint:
            self.experiment.set_tag(self.run_id, "best_checkpoint", best_checkpoint)

    def describe(self) -> str:
        return f"MLflow:       mlflow ui --backend-store-uri {self.tracking_uri}  (run {self.run_id})"

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        # No public way to check a run id before the run starts: Lightning's private attributes, here only (tested).
        if self._initialized:
            return self._mlflow_client
        if self._run_id is not None:
            try:
                self._mlflow_client.get_run(self._run_id)
            except Exception:  # the store was moved or deleted: start a new run rather than fail the resume
                rank_zero_warn(f"MLflow run {self._run_id} is not in {self.tracking_uri}: starting a new run")
                self._run_id = None
        if self._run_id is None and self._experiment_id is None:
            self._experiment_id = self._find_or_create_experiment()
        client = super().experiment
        self._run_id_file.parent.mkdir(parents=True, exist_ok=True)
        self._run_id_file.write_text(f"{self._run_id}\n")
        (self._run_id_file.parent / URI_FILE).write_text(f"{self.tracking_uri or ''}\n")  # evaluation logs there too
        return client

    def _find_or_create_experiment(self) -> str | None:
        """The experiment's id, made in a new store without Lightning's warning (a first run is no surprise); None
        for a deleted one, which Lightning handles."""
        found = self._mlflow_client.get_experiment_by_name(self._experiment_name)
        if found is not None:
            return found.experiment_id if found.lifecycle_stage != "deleted" else None
        try:
            return self._mlflow_client.create_experiment(
                self._experiment_name, artifact_location=self._artifact_location
            )
        except Exception:  # noqa: BLE001 (another job made it meanwhile: MLflow's RESOURCE_ALREADY_EXISTS)
            found = self._mlflow_client.get_experiment_by_name(self._experiment_name)
            return found.experiment_id if found is not None else None

    @classmethod
    def of_run(cls, run_dir: Path) -> MLFlowLogger | None:
        """The MLflow run a training run logged to (its folder's ``mlflow_run_id`` and ``mlflow_tracking_uri``), to
        publish an evaluation of its checkpoints to; None when it logged to none. A store that is gone or a server
        that does not answer is a ``VaelabError`` (MLflow would make a new, empty store)."""
        run_id, uri = tracked_run(run_dir)
        if run_id is None or uri is None:
            return None
        if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
            raise VaelabError(f"its store {uri} is gone")
        return cls(run_dir=str(run_dir), tracking_uri=uri)

    def publish_evaluation(self, scores: Mapping[str, float], figures: Mapping[str, Any], step: int) -> None:
        """``eval/<score>`` metrics of the run at the checkpoint's step: its trackers get the evaluation as they got
        the training (the figures stay in the evaluation's folder)."""
        for name, value in scores.items():
            self._mlflow_client.log_metric(self._run_id, f"eval/{name}", float(value), step=step)

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any]) -> None:  # type: ignore[override]
        logged = self.experiment.get_run(self.run_id).data.params
        changed = sorted(key for key, value in params.items() if key in logged and logged[key] != str(value)[:250])
        if changed:
            rank_zero_warn(f"MLflow keeps the first value of a parameter; not updated: {', '.join(changed)}")
        super().log_hyperparams({key: value for key, value in params.items() if key not in logged})


def tracked_run(run_dir: Path) -> tuple[str | None, str | None]:
    """``(run id, tracking URI)`` of the MLflow run a run folder logged to (``mlflow_run_id`` and
    ``mlflow_tracking_uri``; a folder of an older vaelab has no URI), or None for what it lacks."""
    found = []
    for name in (RUN_ID_FILE, URI_FILE):
        try:
            found.append((run_dir / name).read_text().strip() or None)
        except OSError:
            found.append(None)
    return found[0], found[1]
