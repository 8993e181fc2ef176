"""What the loggers call a run, from the job (``vaelab.job.Job``): its name, its sweep tags."""

from __future__ import annotations

import re

from vaelab.job import Job
from vaelab.run.folder import MLFLOW_SWEEP_RUN_FILE
from vaelab.tables import short_number


def run_name(job: Job, varied: bool = False) -> str:
    """``conv_vae 2026-12-01_20-30-00`` (the model and the run folder's name); in a sweep
    ``conv_vae 2026-12-01_20-30-00 #3`` (the sweep folder's name and the job's: its number, or ``<trial>_<replica>``
    for the Optuna sweeper's replicas), followed by what the job varied (``model.beta=0.5``) when ``varied``.
    ``vaelab`` for a job with no folder (a call from Python). Safe as a folder name."""
    if job.output_dir is None:
        return "vaelab"
    model = job.choices.get("model", "model")
    name = f"{model} {job.name}"
    if job.sweep_dir is not None:
        name = f"{model} {job.sweep_dir.name} #{job.name}"
        if varied:
            for key, equals, value in (override.partition("=") for override in job.swept):
                name += f" {key}{equals}{short_number(value, 4)}"  # a trial's lr=0.00024156772025296256: lr=0.0002416
    return re.sub(r"[/\\\x00-\x1f]", "_", name).strip()[:150]


def sweep_tags(job: Job) -> dict[str, str]:
    """In a sweep job: the sweep's folder, the job's number and overrides, and the sweep's parent run if any."""
    if job.sweep_dir is None:
        return {}
    tags = {"sweep": str(job.sweep_dir), "job": job.name, "overrides": " ".join(job.overrides)[:5000]}
    parent = job.sweep_dir / MLFLOW_SWEEP_RUN_FILE
    if parent.is_file():
        tags["mlflow.parentRunId"] = parent.read_text().strip()
    return tags
