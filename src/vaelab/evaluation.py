"""``evaluate(cfg)``: test a checkpoint on the official test split, write metrics and figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hydra.utils
import pytorch_lightning as pl
from omegaconf import DictConfig

from vaelab import figures
from vaelab.checkpoints import load_model
from vaelab.data import MNISTDataModule
from vaelab.runtime import tune_malloc


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Per-image test recon, KL and loss of ``cfg.ckpt_path``; ``metrics.json`` and figures in the run folder."""
    tune_malloc()
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)  # the ELBO is a one-sample estimate: seed it
    output_dir = Path(cfg.paths.output_dir)
    model = load_model(cfg.ckpt_path)
    datamodule: MNISTDataModule = hydra.utils.instantiate(cfg.data)
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=[])
    (results,) = trainer.test(model, datamodule=datamodule)

    latent_dim = model.latent_dim
    metrics: dict[str, Any] = {
        "checkpoint": str(Path(cfg.ckpt_path).resolve()),
        "model": type(model).__name__,
        "split": "test",
        "images": len(datamodule.test_set),
        "latent_dim": latent_dim,
        "seed": cfg.get("seed"),
        "recon": results["test/recon"],
        "kl": results["test/kl"],
        "loss": results["test/loss"],
        # The study averaged the KL over the latent dims instead of summing it.
        "loss_study_convention": results["test/recon"] + results["test/kl"] / latent_dim,
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")

    figure_dir = output_dir / "figures"
    figure_dir.mkdir(exist_ok=True)
    model = model.to(trainer.strategy.root_device)
    images, labels = figures.first_images(datamodule.test_dataloader(), cfg.figures.num_points)
    drawn = {
        "latent_scatter": figures.latent_scatter_figure(model, images, labels),
        **figures.latent_grid_figures(model, images, labels, cfg.figures.grid_size),
        "centre_decode": figures.centre_decode_figure(model),
    }
    for name, figure in drawn.items():
        figure.savefig(figure_dir / f"{name}.png")

    print(
        f"Metrics:  {output_dir / 'metrics.json'}\nFigures:  {figure_dir}\n"
        f"Per image (test, KL summed over {latent_dim} dims): recon={metrics['recon']:.2f} "
        f"kl={metrics['kl']:.2f} loss={metrics['loss']:.2f} (study convention {metrics['loss_study_convention']:.2f})",
        flush=True,
    )
    return metrics
