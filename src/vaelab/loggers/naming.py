"""What the loggers call a run, from Hydra's record of the job: its name, what a sweep job varied, its sweep tags.
The one place the loggers read ``HydraConfig`` and the sweep's record (``SWEEP_RECORD``)."""

from __future__ import annotations

import re
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from vaelab.run.folder import MLFLOW_SWEEP_RUN_FILE, SWEEP_RECORD, in_multirun
from vaelab.tables import short_number


def run_name(varied: bool = False) -> str:
    """``conv_vae 2026-12-01_20-30-00`` (the model and the run folder's name); in a sweep
    ``conv_vae 2026-12-01_20-30-00 #3`` (the sweep folder's name and the job's: its number, or ``<trial>_<replica>``
    for the Optuna sweeper's replicas), followed by what the job varied (``model.beta=0.5``) when ``varied``.
    Safe as a folder name."""
    if not HydraConfig.initialized():
        return "vaelab"
    hydra_cfg, model = HydraConfig.get(), choices().get("model", "model")
    name = f"{model} {Path(hydra_cfg.runtime.output_dir).name}"
    if in_multirun():
        name = f"{model} {Path(hydra_cfg.sweep.dir).name} #{Path(hydra_cfg.runtime.output_dir).name}"
        if varied:
            for key, equals, value in (override.partition("=") for override in swept_overrides()):
                name += f" {key}{equals}{short_number(value, 4)}"  # a trial's lr=0.00024156772025296256: lr=0.0002416
    return re.sub(r"[/\\\x00-\x1f]", "_", name).strip()[:150]


def swept_overrides() -> list[str]:
    """In a sweep job: its overrides of the keys the sweep varies (``model.beta=0.5`` of ``model.beta=0.5,1``, or an
    Optuna trial's values), as the sweep's record tells them from the fixed ones; [] outside a sweep."""
    if not in_multirun():
        return []
    from hydra.core.override_parser.overrides_parser import OverridesParser

    hydra_cfg = HydraConfig.get()
    sweep_file = Path(hydra_cfg.sweep.dir) / SWEEP_RECORD
    command_line = list(OmegaConf.load(sweep_file).hydra.overrides.task) if sweep_file.is_file() else []
    parser = OverridesParser.create()
    fixed = {o.key_or_group for o in parser.parse_overrides(command_line) if not o.is_sweep_override()}
    job = parser.parse_overrides(list(hydra_cfg.overrides.task))
    return [text for o, text in zip(job, hydra_cfg.overrides.task) if o.key_or_group not in fixed and
            not o.key_or_group.startswith("hydra.")]  # fmt: skip


def choices() -> dict[str, str]:
    """The job's config group choices (``model: conv_vae``; {} outside Hydra)."""
    return dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}


def task_overrides() -> list[str]:
    """The job's command-line overrides ([] outside Hydra)."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def sweep_tags() -> dict[str, str]:
    """In a sweep job: the sweep's folder, the job's number and overrides, and the sweep's parent run if any."""
    if not in_multirun():
        return {}
    hydra_cfg = HydraConfig.get()
    tags = {
        "sweep": str(hydra_cfg.sweep.dir),
        "job": Path(hydra_cfg.runtime.output_dir).name,
        "overrides": " ".join(hydra_cfg.overrides.task)[:5000],
    }
    parent = Path(hydra_cfg.sweep.dir) / MLFLOW_SWEEP_RUN_FILE
    if parent.is_file():
        tags["mlflow.parentRunId"] = parent.read_text().strip()
    return tags
