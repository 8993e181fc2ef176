"""The layout of a run folder: what ``train.py`` writes there, and what evaluation and sweep summaries read back.

    <run>/.hydra/                  Hydra's record of the job: config.yaml, hydra.yaml (choices), overrides.yaml;
                                   resumes.yaml: each resume= and the overrides it gave (config.yaml has them)
    <run>/checkpoints/             best-epochNNN.ckpt (lowest val/loss), last.ckpt (end of the latest epoch)
    <run>/history.csv              one row per epoch: epoch, step and the epoch means of train/* and val/*
    <run>/metrics.json             the final metrics and facts, with "status" (a ``RunStatus``)
    <run>/FAILED                   a failed sweep job's error line (and traceback)
    <run>/figures/ tensorboard/ csv/ mlflow/   what the callbacks and loggers write

A sweep is a folder of such run folders (``<sweep>/<job number>/``), its ``multirun.yaml`` and ``.configs/`` (the
config folders it composes every job from, as they were when it started). Where runs go is set in
``conf/hydra/default.yaml``; the callbacks (``vaelab.callbacks``) name their files from here.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from vaelab.errors import VaelabError
from vaelab.run.files import json_safe, write_atomic
from vaelab.tables import as_number

CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"  # the end of the latest epoch, or where an interrupt stopped
BEST_CHECKPOINT_NAME = "best-epoch{epoch:03d}"  # Lightning's pattern: no '=', so ckpt_path= needs no quoting
BEST_CHECKPOINTS = "best*.ckpt"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
FAILED_FILE = "FAILED"
JOB_RECORD = ".hydra/overrides.yaml"  # every folder Hydra ran a job in has one
CONFIG_RECORD = ".hydra/config.yaml"
HYDRA_RECORD = ".hydra/hydra.yaml"
RESUME_RECORD = ".hydra/resumes.yaml"  # each resume= of the run: when, and the overrides it gave
SWEEP_RECORD = "multirun.yaml"  # in a sweep folder: Hydra's record of the sweep
SWEEP_CONFIGS = ".configs"  # in a sweep folder: the config folders as they were when it started
MLFLOW_RUN_ID_FILE = "mlflow_run_id"  # a run resumed in place goes on in the same MLflow run
MLFLOW_URI_FILE = "mlflow_tracking_uri"  # where that run is: evaluations of the run's checkpoints log there too
MLFLOW_SWEEP_RUN_FILE = "mlflow_sweep_run_id"  # in a sweep folder: the parent run the jobs' runs nest under
STUDY_FILE = (
    "optuna_study.yaml"  # in a sweep folder: where its Optuna study lives, for `python -m vaelab.sweep.summary`
)
HISTORY_COLUMNS = ("epoch", "step", "train/recon", "train/kl", "train/loss", "train/nelbo", "train/kl_weight",
                   "val/recon", "val/kl", "val/loss", "val/nelbo")  # fmt: skip


class RunStatus(StrEnum):
    """What happened to a run, as ``metrics.json`` records it (and sweep summaries show it)."""

    COMPLETED = "completed"  # trained at least one batch, tested unless ``test=false``
    UNTRAINED = "untrained"  # ended without one optimizer step (``trainer.limit_train_batches=0``): not tested
    PRUNED = "pruned"  # stopped early by an Optuna pruner
    FAILED = "failed"  # an error ended it (a sweep job; the line is in FAILED)
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM; resumable from its last checkpoint
    UNFINISHED = "unfinished"  # no readable metrics.json yet: still running, or its process died
    UNREADABLE = "unreadable"  # a record file is there but cannot be read as what it must hold


class Inside:
    """A path inside the run folder, read as an attribute: ``RunFolder(p).history_file`` is ``p / "history.csv"``."""

    def __init__(self, *parts: str) -> None:
        self.parts = parts

    def __get__(self, folder: RunFolder, owner: type | None = None) -> Path:
        return folder.path.joinpath(*self.parts)


@dataclass(frozen=True)
class RunFolder:
    path: Path

    @classmethod
    def of_checkpoint(cls, checkpoint: Path) -> RunFolder | None:
        """The run folder a checkpoint was saved in, if it is laid out as train.py lays it out."""
        parent = Path(checkpoint).resolve().parent
        return cls(parent.parent) if parent.name == CHECKPOINTS else None

    checkpoints = Inside(CHECKPOINTS)
    last_checkpoint = Inside(CHECKPOINTS, LAST_CHECKPOINT)
    history_file = Inside(HISTORY_FILE)
    metrics_file = Inside(METRICS_FILE)
    failed_file = Inside(FAILED_FILE)

    def holds_run(self) -> bool:
        """True when the folder has what a run leaves: its Hydra record, metrics, history or a checkpoint."""
        records = (self.path / CONFIG_RECORD, self.metrics_file, self.history_file)
        return any(path.is_file() for path in records) or any(self.checkpoints.glob("*.ckpt"))

    def stopped_before_first_checkpoint(self) -> bool:
        """True when the run was interrupted before it saved any checkpoint (in its sanity check, say): nothing to
        resume, so ``resume=`` (or a new run in the folder) starts it again from the beginning."""
        interrupted = self.read_metrics().get("status") == RunStatus.INTERRUPTED
        return interrupted and not any(self.checkpoints.glob("*.ckpt"))

    def best_checkpoint(self) -> Path:
        """The newest ``best*.ckpt``, else ``last.ckpt`` (a run that never validated); one line without either."""
        best = sorted(self.checkpoints.glob(BEST_CHECKPOINTS)) or [self.last_checkpoint]
        if not best[-1].is_file():
            raise VaelabError(f"{self.checkpoints} holds no {BEST_CHECKPOINTS} and no {LAST_CHECKPOINT}.")
        return best[-1]

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        """``metrics.json``, strict JSON (a missing or non-finite number is null), written whole or not at all."""
        write_atomic(self.metrics_file, json.dumps(json_safe(metrics), indent=2, allow_nan=False) + "\n")

    def read_metrics(self) -> dict[str, Any]:
        """``metrics.json``, or {} when it is missing or unreadable (a job that never finished)."""
        try:
            metrics = json.loads(self.metrics_file.read_text())
        except (OSError, ValueError):
            return {}
        return metrics if isinstance(metrics, dict) else {}

    def read_history(self) -> list[dict[str, float]]:
        """The rows of ``history.csv`` (numbers; an empty cell is NaN), or [] without a readable one
        (``unreadable_files`` names it)."""
        try:
            with self.history_file.open(newline="", encoding="utf-8") as handle:
                return [{key: as_number(value) for key, value in row.items()} for row in csv.DictReader(handle)]
        except (OSError, UnicodeDecodeError, csv.Error):
            return []

    def validation_losses(self) -> list[tuple[int, float]]:
        """``(epoch, val/loss)`` for each epoch of ``history.csv`` that validated."""
        rows = self.read_history()
        validated = [row for row in rows if not math.isnan(row.get("val/loss", math.nan))]
        return [(int(row["epoch"]), row["val/loss"]) for row in validated if math.isfinite(row.get("epoch", math.nan))]

    def overrides(self) -> list[str]:
        """The command-line overrides of the job (``.hydra/overrides.yaml``), or [] without a readable record."""
        recorded = _read_yaml(self.path / JOB_RECORD)
        return recorded if _is_overrides(recorded) else []

    def config(self) -> dict[str, Any]:
        """The job's composed config as Hydra saved it (``.hydra/config.yaml``, interpolations unresolved), or {}."""
        config = _read_yaml(self.path / CONFIG_RECORD)
        return config if isinstance(config, dict) else {}

    def config_choices(self) -> dict[str, str]:
        """The config group choices of the job (``model: conv_vae``, ``experiment: ...``)."""
        hydra = _read_yaml(self.path / HYDRA_RECORD)
        choices = hydra.get("hydra", {}).get("runtime", {}).get("choices", {}) if isinstance(hydra, dict) else {}
        return {key: value for key, value in choices.items() if isinstance(value, str)}

    def status(self) -> tuple[str, str]:
        """``(status, error line)``: a ``RunStatus`` (``metrics.json``'s; failed, with the ``FAILED`` file's line) or
        ``unfinished`` (no readable ``metrics.json`` yet). Reads two small files: the sweeper asks it of every job."""
        if self.failed_file.is_file():
            return RunStatus.FAILED, next(iter(self.failed_file.read_text(errors="replace").splitlines()), "")
        metrics = self.read_metrics()
        return (str(metrics.get("status", RunStatus.COMPLETED)), "") if metrics else (RunStatus.UNFINISHED, "")

    def record_failure(
        self, line: str, interrupted: bool = False, details: str = "", measured: dict[str, Any] | None = None
    ) -> None:
        """The one place a folder's failure is written: ``metrics.json`` (``failed`` or ``interrupted``, with the
        line and what was ``measured`` before) and, for a failure, ``FAILED`` (the line, then ``details``: the
        traceback of an unexpected error)."""
        status = RunStatus.INTERRUPTED if interrupted else RunStatus.FAILED
        self.write_metrics({"status": status, "error": line, **(measured or {})})
        if not interrupted:
            write_atomic(self.failed_file, line + "\n" + (f"\n{details}" if details else ""))

    def record_resume(self, record: dict[str, str], given: list[str], when: str) -> None:
        """A resume's record, once it trains: Hydra's three files (``record``: name -> YAML text; ``config.yaml``
        the configuration it goes on with), and ``resumes.yaml`` gains an entry with the overrides given now (the
        earlier entries stay)."""
        earlier = _read_yaml(self.path / RESUME_RECORD)
        entries = [*(earlier if isinstance(earlier, list) else []), {"resumed": when, "overrides": given}]
        for name, text in record.items():
            write_atomic(self.path / name, text)
        write_atomic(self.path / RESUME_RECORD, yaml.safe_dump(entries, sort_keys=False))

    def unreadable_files(self, *names: str) -> list[str]:
        """The record files (all, or those in ``names``: only those are read, ~20 ms for Hydra's) present but not
        readable as what they hold: a JSON object, a list of overrides, two mappings, a CSV with an ``epoch`` column."""
        readable = {
            METRICS_FILE: lambda: bool(self.read_metrics()),
            JOB_RECORD: lambda: _is_overrides(_read_yaml(self.path / JOB_RECORD)),
            CONFIG_RECORD: lambda: isinstance(_read_yaml(self.path / CONFIG_RECORD), dict),
            HYDRA_RECORD: lambda: isinstance(_read_yaml(self.path / HYDRA_RECORD), dict),
            HISTORY_FILE: lambda: "epoch" in _csv_header(self.history_file),
        }
        asked = [name for name in readable if not names or name in names]
        return [name for name in asked if (self.path / name).is_file() and not readable[name]()]


def sweep_jobs(sweep_dir: Path) -> list[Path]:
    """The job folders in ``sweep_dir`` (those with Hydra's record of a job), in job order."""
    return sorted((record.parents[1] for record in sweep_dir.glob(f"*/{JOB_RECORD}")), key=job_order)


def job_order(job: Path) -> tuple[tuple[int, ...], str]:
    """Job folders in number order: ``2`` before ``10``; a replica's ``<trial>_<replica>`` after its trial's."""
    parts = job.name.split("_")
    return (tuple(map(int, parts)), "") if all(part.isdigit() for part in parts) else ((1 << 30,), job.name)


def _read_yaml(path: Path) -> Any:
    """The file's YAML; None when it is missing or unreadable."""
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def _is_overrides(recorded: Any) -> bool:
    return isinstance(recorded, list) and all(isinstance(line, str) for line in recorded)


def _csv_header(path: Path) -> list[str]:
    try:
        with path.open(newline="") as handle:
            return next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
