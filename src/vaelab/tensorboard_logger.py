"""TensorBoard, in one place: run names that say which run it is, the HParams entry of a run (its curated
hyperparameters and final metrics), the Custom Scalars layout, and test metrics drawn at the epoch of the
checkpoint they were computed from."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import OmegaConf

from vaelab.config_tree import flat_config

# Final metrics shown in TensorBoard's HParams tab, under their own tags so the curves stay clean.
HPARAM_METRICS = {"val/loss": "hp/val_loss", "test/loss": "hp/test_loss", "val/nelbo": "hp/val_nelbo"}


# What TensorBoard's HParams tab shows of a run: its model, these config keys, the keys under ``model.`` that do
# not start with "_", and the model/data/trainer keys the command line or the sweep set. The full config stays in
# ``.hydra/``.
HPARAM_KEYS = ("data.batch_size", "data.val_size", "trainer.max_epochs", "trainer.precision", "seed", "tags")
HPARAM_GROUPS = ("model", "data", "trainer", "seed")  # overrides of these keys join the table (sweeps vary them)
NOT_HPARAMS = {"model.optimizer.fused", "model.channels_last", "data.data_dir", "data.fallback_data_dirs",
               "data.download", "data.num_workers", "data.pin_memory"}  # fmt: skip
# Train and validation curves of one quantity in one chart (TensorBoard's Custom Scalars tab).
SCALARS_LAYOUT = {
    "losses (per image, nats)": {
        name: ["Multiline", [f"train/{key}", f"val/{key}"]]
        for name, key in (("loss", "loss"), ("reconstruction", "recon"), ("KL", "kl"), ("negative ELBO", "nelbo"))
    },
    "schedule": {"learning rate": ["Multiline", ["train/lr"]]},
}


def tensorboard_hparams(config: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """The curated hyperparameters of a run for the HParams tab (see ``HPARAM_KEYS``); lists as text."""
    flat = flat_config(config)
    chosen = {key for key in flat if key.startswith("model.") and not key.split(".")[-1].startswith("_")}
    chosen |= {key for key in HPARAM_KEYS if key in flat}
    overridden = {o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o}
    chosen |= {key for key in overridden if key in flat and key.split(".")[0] in HPARAM_GROUPS}
    chosen -= NOT_HPARAMS
    if not flat.get("tags"):
        chosen.discard("tags")
    params: dict[str, Any] = {}
    if HydraConfig.initialized():
        choices = HydraConfig.get().runtime.choices
        params = {group: choices[group] for group in ("model", "experiment") if choices.get(group)}
    for key in sorted(chosen):
        value = flat[key]
        # Integers as text: TensorBoard shows every number with two decimals (a batch size of "128.00").
        params[key] = value if isinstance(value, bool | float | str) else str(value)
    return params


def swept_overrides() -> list[str]:
    """In a sweep job: the overrides this job has and the sweep's command line does not (``model.beta=0.5`` of
    ``model.beta=0.5,1``, or an Optuna trial's values); [] outside a sweep."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return []
    hydra_cfg = HydraConfig.get()
    sweep_file = Path(hydra_cfg.sweep.dir) / "multirun.yaml"
    common = set()
    if sweep_file.is_file():
        common = set(OmegaConf.load(sweep_file).hydra.overrides.task)
    return [o for o in hydra_cfg.overrides.task if o not in common and not o.startswith("++hydra.")]


def run_name() -> str:
    """``conv_vae 2026-12-01_20-30-00`` (the model and the run folder's date-time); in a sweep
    ``conv_vae 2026-12-01_20-30-00 #3 model.beta=0.5`` (the sweep folder's, the job's number and what it varied).
    Safe as a folder name: TensorBoard shows it as the run's name."""
    if not HydraConfig.initialized():
        return "run"
    hydra_cfg = HydraConfig.get()
    model = hydra_cfg.runtime.choices.get("model", "model")
    if hydra_cfg.mode == RunMode.MULTIRUN:
        name = f"{model} {Path(hydra_cfg.sweep.dir).name} #{hydra_cfg.job.num} {' '.join(swept_overrides())}"
    else:
        name = f"{model} {Path(hydra_cfg.runtime.output_dir).name}"
    return re.sub(r"[/\\\x00-\x1f]", "_", name).strip()[:150]


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's TensorBoard logger, writing to ``<save_dir>/<run name>`` (:func:`run_name`), so TensorBoard
    names the run whether it is pointed at the run, a sweep or all of ``logs/``. A run resumed in place goes on in
    the folder it has. After :meth:`attach_test_to`, test metrics are drawn at the step and epoch of the checkpoint
    they were computed from (the best one), not at the end of training."""

    def __init__(self, save_dir: str, **kwargs: Any) -> None:
        if not kwargs.get("version"):
            existing = sorted(p.name for p in Path(save_dir).glob("*") if any(p.glob("events.out.tfevents.*")))
            kwargs["version"] = existing[0] if len(existing) == 1 else run_name()
        kwargs.setdefault("name", "")
        super().__init__(save_dir, **kwargs)
        self._test_step: int | None = None
        self._test_epoch: int | None = None

    def attach_test_to(self, step: int, epoch: int) -> None:
        self._test_step, self._test_epoch = step, epoch

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self._test_step is not None and any(name.startswith("test/") for name in metrics):
            step = self._test_step
            metrics = {**metrics, **({"epoch": self._test_epoch} if "epoch" in metrics else {})}
        super().log_metrics(metrics, step)
