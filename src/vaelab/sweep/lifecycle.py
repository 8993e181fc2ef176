"""A study's trials while a sweep runs: heartbeats from the sweep process, trials whose sweep died marked FAIL, and
what each launched job ended as."""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobStatus

from vaelab.run.folder import RunFolder, RunStatus


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Mark FAIL the RUNNING trials whose sweep process stopped sending heartbeats; returns their numbers."""
    before = {t.number for t in study.trials if t.state == optuna.trial.TrialState.RUNNING}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    return sorted(t.number for t in study.trials if t.number in before and t.state == optuna.trial.TrialState.FAIL)


@contextmanager
def heartbeats(
    storage: optuna.storages.BaseStorage, study: optuna.Study, trials: list[optuna.Trial], interval: int | None
) -> Iterator[None]:
    """Record a heartbeat for each of ``trials`` every ``interval`` seconds while the block runs (RDB storages)."""
    if not interval or not isinstance(storage, optuna.storages.RDBStorage):
        yield
        return
    study_id = storage.get_study_id_from_name(study.study_name)
    trial_ids = [storage.get_trial_id_from_study_id_trial_number(study_id, trial.number) for trial in trials]
    stop = threading.Event()

    def beat() -> None:
        while True:
            for trial_id in trial_ids:
                storage.record_heartbeat(trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name="optuna-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def job_outcome(job: Any) -> tuple[str, float | None]:
    """``(status, value)`` of a launched job: completed (with its finite returned metric), or what its folder says
    (``RunFolder.status``: pruned, untrained, failed, or unfinished for a job that died)."""
    status = (
        RunFolder(Path(str(job.hydra_cfg.hydra.runtime.output_dir))).status()[0]
        if job.hydra_cfg
        else RunStatus.UNFINISHED
    )
    value = job.return_value if job.status == JobStatus.COMPLETED else None
    if status == RunStatus.COMPLETED and not (isinstance(value, (int, float)) and math.isfinite(value)):
        status = RunStatus.FAILED
    return status, float(value) if status == RunStatus.COMPLETED else None
