"""The debug presets (`debug=fdr|overfit|profiler|anomaly`) do what their names promise."""

from __future__ import annotations

import json
from pathlib import Path

import hydra.utils
import lightning.pytorch as pl
import torch

from helpers import NO_FIGURES, compose_config, tiny_data_overrides
from vaelab.builders import build_model, build_trainer
from vaelab.training import train


class BatchRecorder(pl.Callback):
    """The labels of every training batch, per epoch, and whether anomaly detection was on."""

    def __init__(self) -> None:
        self.epochs: list[list[torch.Tensor]] = []
        self.anomaly_detection: set[bool] = set()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epochs.append([])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        self.epochs[-1].append(batch[1].clone())
        self.anomaly_detection.add(torch.is_anomaly_enabled())


def fit_preset(preset: str, tiny_mnist: Path, tmp_path: Path, *overrides: str) -> BatchRecorder:
    """Fit the dense model with the preset's trainer settings, in this process."""
    cfg = compose_config("train", [f"debug={preset}", "model=vae", "data.batch_size=50", f"paths.output_dir={tmp_path}",
                                   *tiny_data_overrides(tiny_mnist), *overrides])  # fmt: skip
    recorder = BatchRecorder()
    trainer = build_trainer(cfg.trainer, callbacks=[recorder], logger=False, enable_checkpointing=False)
    trainer.fit(build_model(cfg.model), datamodule=hydra.utils.instantiate(cfg.data))
    return recorder


def test_overfit_sees_the_same_batches_every_epoch(tiny_mnist: Path, tmp_path: Path) -> None:
    recorder = fit_preset("overfit", tiny_mnist, tmp_path, "trainer.max_epochs=3")
    assert len(recorder.epochs) == 3 and len(recorder.epochs[0]) == 3
    for epoch in recorder.epochs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(epoch, recorder.epochs[0]))
    assert recorder.anomaly_detection == {False}


def test_anomaly_preset_turns_detection_on(tiny_mnist: Path, tmp_path: Path) -> None:
    recorder = fit_preset("anomaly", tiny_mnist, tmp_path, "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                          "trainer.limit_val_batches=1")  # fmt: skip
    assert recorder.anomaly_detection == {True}


def test_profiler_report_in_the_run_folder(tiny_mnist: Path, tmp_path: Path) -> None:
    fit_preset("profiler", tiny_mnist, tmp_path)
    report = (tmp_path / "fit-profiler.txt").read_text()
    assert "run_training_epoch" in report and "Total" in report


def test_fast_dev_run_preset(tiny_mnist: Path, tmp_path: Path) -> None:
    cfg = compose_config("train", ["debug=fdr", "model=vae", *NO_FIGURES, *tiny_data_overrides(tiny_mnist),
                                   f"paths.output_dir={tmp_path}", "print_config=false"])  # fmt: skip
    metrics = train(cfg)
    assert metrics["epochs"] == 1 and "test/loss" in metrics
    assert json.loads((tmp_path / "metrics.json").read_text())["test/loss"] == metrics["test/loss"]
    # Lightning's fast_dev_run: no checkpoints, and the loggers write nothing.
    assert not list(tmp_path.glob("checkpoints/*.ckpt")) and not (tmp_path / "tensorboard").exists()


def test_a_debug_preset_overrides_an_experiment_and_writes_under_logs_debug() -> None:
    """debug comes last in the defaults: `experiment=capacity debug=fast` is the one-epoch smoke run, not 30
    epochs; every preset writes under logs/debug/ (its runs, studies and MLflow store), apart from real runs."""
    for preset in ("fast", "fdr", "overfit", "profiler", "anomaly"):
        cfg = compose_config("train", ["experiment=capacity", "model=conv_vae", f"debug={preset}"])
        assert cfg.paths.log_dir.endswith("/logs/debug"), preset
    cfg = compose_config("train", ["experiment=capacity", "model=conv_vae", "debug=fast"])
    assert cfg.trainer.max_epochs == 1 and cfg.trainer.limit_train_batches == 5
    assert compose_config("eval", ["debug=fast"]).paths.log_dir.endswith("/logs/debug")
    assert compose_config("train", ["experiment=capacity", "model=conv_vae"]).trainer.max_epochs == 30
