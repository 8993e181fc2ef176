"""Optimizer and learning-rate schedule of a model, built from ``_partial_`` Hydra configs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import hydra.utils
import torch

from vaelab.errors import VaelabError
from vaelab.validators import check_number

# What a model built in Python (not from conf/optimizer/) trains with: Adam, lr 1e-3, fused.
DEFAULT_OPTIMIZER = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3, "fused": True}
# Where a schedule ends: a resume takes it from its config (a longer max_epochs stretches a cosine), not the file.
SCHEDULE_HORIZON_ATTRIBUTES = ("T_max",)


def optimizer_config(optimizer: Mapping[str, Any] | None) -> dict[str, Any]:
    """The model's optimizer config (``DEFAULT_OPTIMIZER`` if None), checked: ``_partial_`` and a positive lr."""
    config = dict(optimizer if optimizer is not None else DEFAULT_OPTIMIZER)
    if not config.get("_partial_", False):
        raise VaelabError("model.optimizer needs `_partial_: true` so the module can bind its parameters.")
    check_number("model.optimizer.lr", config.get("lr", 1.0), minimum=0, strict=True)
    return config


def build_optimization(
    parameters: Iterable[torch.nn.Parameter], optimizer: Mapping[str, Any], scheduler: Mapping[str, Any] | None
) -> tuple[Any, list[dict[str, Any]]]:
    """``configure_optimizers``' return value, and the schedule horizons the config asks for.

    The configs are ``_partial_`` targets: instantiated, then bound to the parameters (and the optimizer).
    """
    built = hydra.utils.instantiate(dict(optimizer))(parameters)
    if scheduler is None:
        return built, []
    schedule = hydra.utils.instantiate(dict(scheduler))(built)
    horizons = [{name: getattr(schedule, name) for name in SCHEDULE_HORIZON_ATTRIBUTES if hasattr(schedule, name)}]
    # Named so that LearningRateMonitor logs the curve as train/lr.
    lr_scheduler = {"scheduler": schedule, "interval": "epoch", "name": "train/lr"}
    return {"optimizer": built, "lr_scheduler": lr_scheduler}, horizons


def stretch_schedules(scheduler_configs: Sequence[Any], horizons: Sequence[Mapping[str, Any]]) -> None:
    """After a resume restored the schedulers: give each the configured horizon and the lr that horizon implies
    at the current epoch (closed form), so a longer run stretches the schedule instead of training at lr 0."""
    for config, horizon in zip(scheduler_configs, horizons):
        scheduler = config.scheduler
        changed = {name: value for name, value in horizon.items() if getattr(scheduler, name) != value}
        if not changed:
            continue
        for name, value in changed.items():
            setattr(scheduler, name, value)
        # torch has no public setter of a schedule's lr: its private closed form and _last_lr, here only (tested).
        if hasattr(scheduler, "_get_closed_form_lr"):
            for group, lr in zip(scheduler.optimizer.param_groups, scheduler._get_closed_form_lr()):
                group["lr"] = lr
            scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]
