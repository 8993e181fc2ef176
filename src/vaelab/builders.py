"""The parts of a run built from its config: the model (its settings checked against its class), the trainer
(``precision: auto`` resolved for this machine), and the callback and logger groups. Training builds all of them;
evaluation its trainer."""

from __future__ import annotations

import inspect
import logging
from typing import Any

import hydra.utils
import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig

from vaelab.errors import VaelabError
from vaelab.job import Job
from vaelab.machine import resolve_precision
from vaelab.models.base import ELBOModule
from vaelab.targets import instantiate

log = logging.getLogger(__name__)


def build_trainer(trainer_cfg: DictConfig, **kwargs: Any) -> pl.Trainer:
    """The Lightning ``Trainer`` of ``trainer_cfg`` (conf/trainer/), its ``precision: auto`` resolved for this machine
    (``machine.resolve_precision``) and said in the log."""
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():  # Lightning's own refusal is 6 lines
        raise VaelabError(f"trainer.accelerator={accelerator}: torch sees no GPU on this machine; use trainer=cpu, "
                          "or run where a GPU is visible (CUDA_VISIBLE_DEVICES, a CUDA build of torch)")  # fmt: skip
    precision, reason = resolve_precision(trainer_cfg.get("precision"), accelerator)
    if rank_zero_only.rank == 0:
        log.info("precision: %s (%s)", precision, reason)
    return instantiate(trainer_cfg, precision=precision, **kwargs)


def instantiate_group(group: DictConfig | None, job: Job) -> list[Any]:
    """Instantiate every ``_target_`` entry of a config group (callbacks, loggers); a class that takes a ``job``
    argument (vaelab's loggers, the pruning callback) gets the run's."""
    if not group:
        return []
    entries = [entry for entry in group.values() if entry and "_target_" in entry]
    # The job as itself: a keyword of instantiate would become a config (and its launcher's _target_ be built).
    return [instantiate(entry, _partial_=True)(job=job) if takes_job(entry) else instantiate(entry)
            for entry in entries]  # fmt: skip


def takes_job(entry: DictConfig) -> bool:
    """Whether the class ``entry`` builds has a ``job`` parameter (False when it cannot be found: instantiate says
    why)."""
    try:
        target = hydra.utils.get_object(str(entry._target_))
    except Exception:  # noqa: BLE001 (a bad _target_: instantiate's error names it)
        return False
    try:
        return "job" in inspect.signature(target).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        return False


def build_model(model_cfg: DictConfig) -> pl.LightningModule:
    """The model, with plain-Python arguments; the optimizer config stays a config for the module to build."""
    check_model_settings(model_cfg)
    model = instantiate(model_cfg, _recursive_=False, _convert_="all")
    if not isinstance(model, ELBOModule):
        raise VaelabError(f"model._target_={model_cfg.get('_target_')} is not a subclass of vaelab.models.ELBOModule.")
    model.check_contract()
    return model


def check_model_settings(model_cfg: DictConfig) -> None:
    """A key the model class does not take (an experiment for another model: ``experiment=capacity model=vae``)
    is one line naming it and the class's settings, not a TypeError inside Hydra's instantiate."""
    try:
        model_class = hydra.utils.get_class(str(model_cfg.get("_target_")))
    except Exception:  # a bad _target_: Hydra's own error says which
        return
    parameters = inspect.signature(model_class.__init__).parameters
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    settings = [name for name in parameters if name != "self"]
    unknown = [key for key in model_cfg if not str(key).startswith("_") and key not in settings]
    if unknown:
        name = getattr(model_class, "model_name", model_class.__name__)
        raise VaelabError(
            f"model.{unknown[0]} is not a setting of {model_class.__name__} (model={name}); "
            f"its settings: {', '.join(settings)}"
        )
