"""Scoring one checkpoint on the test split: the test metrics, the IWAE figure, the figures and the Projector's codes,
each phase recorded in ``metrics.json`` as it ends, published to TensorBoard and the training run's MLflow run."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from omegaconf import DictConfig
from tqdm import tqdm

from vaelab.data import IDXDataModule
from vaelab.errors import Interrupted
from vaelab.figures import plots
from vaelab.figures.model import draw_figures
from vaelab.figures.projector import write_projector
from vaelab.figures.settings import FIGURES, FigureSettings
from vaelab.loggers.mlflow import MLFlowLogger
from vaelab.loggers.tensorboard import TensorBoardLogger
from vaelab.machine import machine_facts
from vaelab.models.base import ELBOModule
from vaelab.models.inference import encode_means
from vaelab.models.metric_names import IWAE_KEYS, iwae_key
from vaelab.models.probability import iwae_log_likelihood
from vaelab.run.checkpoints import model_from_checkpoint
from vaelab.run.folder import RunFolder
from vaelab.validators import make_folder

# The numbers an evaluation scores a checkpoint with (TensorBoard test/*, MLflow eval/*), its IWAE figure besides.
SCORES = ("recon", "kl", "loss", "loss_kl_averaged")


def evaluate_checkpoint(
    cfg: DictConfig,
    checkpoint_path: Path,
    checkpoint: dict[str, Any],
    datamodule: IDXDataModule,
    trainer: pl.Trainer,
    output_dir: Path,
    setting: str,
    label: str,
    keep_folder: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Test metrics, IWAE estimate, figures and projector embedding of one checkpoint (``run_names`` says
    ``setting`` and ``label``). ``metrics.json`` is written after the test and again after each phase, marked
    ``"evaluation": "partial"`` (then ``"complete"``) with the ``phases`` done; from the first write on, the folder is
    kept (``keep_folder``), and a Ctrl-C marks it ``"interrupted"`` and raises ``Interrupted``."""
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)  # the ELBO and IWAE are Monte-Carlo estimates
    model = model_from_checkpoint(checkpoint, checkpoint_path)  # after the seed, as the published figures had it
    try:
        (test,) = trainer.test(model, datamodule=datamodule, verbose=False)
    except SystemExit:  # Lightning's exit after Ctrl-C
        if not trainer.interrupted:
            raise
        raise Interrupted(f"stopped by Ctrl-C during the test of {checkpoint_path}; nothing of it was kept") from None
    model = model.to(trainer.strategy.root_device).eval()
    # Every number of the report on the images the test saw (trainer.limit_test_batches may take the first few).
    tested = min(len(datamodule.test_set.labels), int(trainer.num_test_batches[0]) * datamodule.eval_batch_size)
    # On the CPU (the set may live on the GPU, data.device): the estimate moves its chunks to the model.
    images, labels = datamodule.test_set.images[:tested].cpu(), datamodule.test_set.labels[:tested].cpu()
    folder = RunFolder.of_checkpoint(checkpoint_path)
    training = folder.read_metrics() if folder else {}
    iwae = iwae_key(datamodule.binarize, model.likelihood)
    metrics: dict[str, Any] = {
        "checkpoint": str(checkpoint_path.resolve()),
        "model": model.model_name,
        "run": label,
        "setting": setting,
        "split": "test",
        "binarize": datamodule.binarize,
        "binarize_seed": datamodule.binarize_seed,
        "likelihood": model.likelihood,
        "images": len(labels),
        "latent_dim": model.latent_dim,
        "epochs": checkpoint.get("epoch", -1) + 1,
        "seed": cfg.get("seed"),
        "recon": test["test/recon"],
        "kl": test["test/kl"],
        "loss": test["test/loss"],
        # The reference study's convention (README, "Loss conventions"): KL averaged over the latent dims, not summed.
        "loss_kl_averaged": test["test/recon"] + test["test/kl"] / model.latent_dim,
        "iwae_samples": cfg.iwae_samples,
        iwae: float("nan"),
        "seconds_per_epoch": training.get("seconds_per_epoch", float("nan")),
        "device": training.get("device", ""),
        # Where these numbers were computed (the training run's own facts are in its metrics.json).
        "evaluated_on": machine_facts(trainer.strategy.root_device),
        "precision": str(trainer.precision),
        "evaluation": "partial",
        "phases": ["test"],
    }
    metrics["device"] = metrics["device"] or metrics["evaluated_on"]["device"]
    record = RunFolder(output_dir)
    make_folder(output_dir, "hydra.run.dir")
    record.write_metrics(metrics)
    keep_folder()
    phase = "the IWAE estimate"
    try:
        if cfg.iwae_samples is not None:
            # In float32 whatever trainer.precision: bf16 moved the estimate by 5 seed deviations (docs/performance.md).
            with progress_bar(f"IWAE, K={cfg.iwae_samples}", len(labels), "img") as bar:
                log_likelihood = iwae_log_likelihood(model, images, labels if model.num_classes else None,
                                                     cfg.iwae_samples, progress=bar.update)  # fmt: skip
            metrics[iwae] = -log_likelihood.mean().item()
            finish_phase(record, metrics, "iwae")
        phase = "the figures"
        drawn = save_figures(model, images, labels, output_dir / "figures", cfg.figures, datamodule.class_names)
        # TensorBoard names the run after this folder: "eval <model> <training run> epoch N".
        tensorboard = TensorBoardLogger(str(output_dir / "tensorboard"), run=f"eval {label} epoch {metrics['epochs']}")
        step = int(checkpoint.get("global_step", 0))
        tensorboard.publish_evaluation(scores(metrics), drawn, step)
        log_dir = Path(tensorboard.log_dir)
        finish_phase(record, metrics, "figures")
        if folder is not None:  # the training run's MLflow run, if it had one; the files above stand without it
            publish_to_training_run(folder, metrics, step, label)
        phase = "the projector's codes"
        if cfg.projector:  # the whole test split, with its digits and thumbnails
            codes = encode_means(model, images, labels)
            write_projector(log_dir, codes, labels, images, class_names=datamodule.class_names)
            finish_phase(record, metrics, "projector")
    except KeyboardInterrupt:
        metrics["evaluation"] = "interrupted"
        record.write_metrics(metrics)
        done = ", ".join(metrics["phases"])
        raise Interrupted(
            f"stopped by Ctrl-C during {phase}; {record.metrics_file} keeps what was done ({done}), marked interrupted"
        ) from None
    metrics["evaluation"] = "complete"
    record.write_metrics(metrics)
    print(
        f"{label}: test per image: recon={metrics['recon']:.2f} kl={metrics['kl']:.2f} "
        f"loss={metrics['loss']:.2f} (KL averaged {metrics['loss_kl_averaged']:.2f}) "
        f"{iwae}(K={cfg.iwae_samples})={metrics[iwae]:.2f}\n  -> {output_dir}",
        flush=True,
    )
    return metrics


def finish_phase(record: RunFolder, metrics: dict[str, Any], phase: str) -> None:
    """``phase`` done: named in ``metrics["phases"]`` and ``metrics.json`` written again."""
    metrics["phases"].append(phase)
    record.write_metrics(metrics)


def progress_bar(description: str, total: int, unit: str) -> tqdm:
    """A bar with the rate and the time left, on stderr (as Lightning's bars)."""
    return tqdm(total=total, desc=description, unit=unit, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)


def publish_to_training_run(folder: RunFolder, metrics: dict[str, Any], step: int, label: str) -> None:
    """The scores as ``eval/*`` in the training run's MLflow run, if it had one; one line on stderr when that run
    cannot be reached (its server down, its store gone, MLflow not installed)."""
    try:
        logger = MLFlowLogger.of_run(folder.path)
        if logger is not None:
            logger.publish_evaluation(scores(metrics), {}, step)
            print(f"{label}: logged as eval/* to the training run's MLflow run", flush=True)
    except Exception as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        print(f"{label}: not logged to the training run's MLflow run ({reason})", file=sys.stderr, flush=True)


def save_figures(
    model: ELBOModule,
    images: torch.Tensor,
    labels: torch.Tensor,
    figure_dir: Path,
    settings: Any,
    class_names: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """Every standard figure (``vaelab.figures.model.FIGURES``) on the test split, saved as PNGs as it is drawn, with
    a progress bar; returns each one's pixels by name. ``settings`` is eval.yaml's ``figures``
    (``FigureSettings``' fields)."""
    pixels: dict[str, np.ndarray] = {}
    with progress_bar("figures", len(FIGURES), "figure") as bar:

        def save(figures: dict[str, Any]) -> None:
            pixels.update(
                {name: plots.save_png(figure, figure_dir / f"{name}.png") for name, figure in figures.items()}
            )
            bar.update()

        draw_figures(model, images, labels, FIGURES,
                     FigureSettings.from_config(settings, "figures", class_names=class_names), each=save)  # fmt: skip
    return pixels


def scores(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite scores of an evaluation (``SCORES`` and its IWAE figure, under its own name)."""
    names = [*SCORES, *(key for key in IWAE_KEYS if key in metrics)]
    return {name: metrics[name] for name in names if math.isfinite(metrics[name])}
