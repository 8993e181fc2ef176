"""The ELBO training module every VAE variant builds on.

Loss per image, in nats: -log p(x|z) summed over the 784 pixels (``likelihood``: ``bernoulli``, the binary
cross-entropy computed from logits, or ``continuous_bernoulli``, a normalised density of grey levels) + beta *
KL(q(z|x) || N(0, I)) summed over the latent dimensions. Logged values are
means over the images of an epoch: ``{stage}/recon``, ``{stage}/kl``, ``{stage}/loss``, plus
``{stage}/nelbo`` (recon + kl, equal to ``loss`` when beta = 1) and ``train/loss_step`` (the batch mean)
every step.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from vaelab.errors import VaelabError
from vaelab.models.contract import check_contract
from vaelab.models.metric_names import LIKELIHOODS, LOGGED_TERMS, STAGES
from vaelab.models.optimization import build_optimization, optimizer_config, stretch_schedules
from vaelab.models.probability import bernoulli_nll, continuous_bernoulli_mean, continuous_bernoulli_nll, gaussian_kl
from vaelab.models.resume_state import ExactResumeState
from vaelab.validators import check_choice, check_number


class NonFiniteLossError(VaelabError):
    """The training loss became NaN or infinite (usually a learning rate too high)."""


class ELBOModule(ExactResumeState, pl.LightningModule):
    """A VAE trained on the negative ELBO; subclasses assign ``self.encoder`` and ``self.decoder`` (or override
    ``encode``/``decode_logits``). A model of your own (docs/own-model.md) meets this contract, which
    ``check_contract`` checks once, when a run builds it:

    - ``encode(images [B, 1, 28, 28], labels [B] or None) -> (z_mean, log_var)``, each ``[B, latent_dim]``;
    - ``decode_logits(z [B, latent_dim], labels) -> [B, 1, 28, 28]`` logits, which ``recon_nll`` scores against the
      images (Bernoulli: summed binary cross-entropy; override both it and ``decode`` for another likelihood);
      ``decode`` gives the pixel means figures draw, ``sample(n, labels)`` decodes z ~ N(0, I);
    - ``num_classes``: 0, or the number of classes whose one-hot label conditions the model (it then needs labels);
    - every ``__init__`` argument is a hyper-parameter saved in the checkpoint (``save_hyperparameters`` here
      collects the subclass's arguments too), so a checkpoint alone rebuilds the model.
    """

    num_classes: int = 0  # > 0: the one-hot label conditions encoder and decoder
    model_name: str = ""  # the variant's name in conf/model/ (vae, conv_vae, cond_conv_vae)
    encoder: nn.Module
    decoder: nn.Module

    def __init__(
        self,
        latent_dim: int,
        beta: float = 1.0,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        kl_warmup_epochs: float = 0,
        likelihood: str = "bernoulli",
    ) -> None:
        super().__init__()
        check_number("model.latent_dim", latent_dim, minimum=1, integer=True)
        check_choice("model.likelihood", likelihood, LIKELIHOODS, "likelihood")
        check_number("model.beta", beta, minimum=0)
        check_number("model.kl_warmup_epochs", kl_warmup_epochs, minimum=0)
        # Collects the subclass's __init__ arguments too, so a checkpoint alone rebuilds the model.
        self.save_hyperparameters()
        self.latent_dim = latent_dim
        self.beta = beta
        self.kl_warmup_epochs = kl_warmup_epochs
        self.likelihood = likelihood
        self.optimizer_config = optimizer_config(optimizer)
        self.scheduler_config = dict(scheduler) if scheduler else None
        # Per-stage means of (recon, kl, loss) over the epoch's images, synced across DDP processes at epoch end.
        for stage in STAGES:  # train_means, val_means, test_means
            means = {term: MeanMetric(nan_strategy="disable") for term in LOGGED_TERMS}
            setattr(self, f"{stage}_means", nn.ModuleDict(means))
        self.init_resume_state()
        self._configured_horizons: list[dict[str, Any]] = []
        # What Lightning's model summary passes through ``forward``: its FLOPs and sizes columns (zeros without).
        self.example_input_array = (torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long))

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The logits of ``images``' reconstruction from their mean codes (no sampling): the model summary's pass."""
        z_mean, _ = self.encode(images, labels)
        return self.decode_logits(z_mean, labels)

    def condition(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        if self.num_classes == 0:
            return None
        if labels is None:
            raise ValueError(f"{type(self).__name__} is conditional: pass the digit labels")
        return F.one_hot(labels.long(), self.num_classes).to(self.dtype)

    def epoch_means(self, stage: str) -> nn.ModuleDict:
        """The running means of ``stage``'s epoch, one ``MeanMetric`` per logged term."""
        return getattr(self, f"{stage}_means")

    def encode(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters ``(z_mean, log_var)``, each ``[B, latent_dim]``."""
        return self.encoder(images, self.condition(labels))

    def decode_logits(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Pixel logits ``[B, 1, 28, 28]``."""
        return self.decoder(z, self.condition(labels))

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Pixel means ``[B, 1, 28, 28]`` in (0, 1): the images figures draw."""
        logits = self.decode_logits(z, labels)
        if self.likelihood == "continuous_bernoulli":  # its mean is not its parameter sigmoid(l)
            return continuous_bernoulli_mean(logits.float())
        return torch.sigmoid(logits)

    def recon_nll(self, logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """-log p(x | z) per image, ``[B]`` nats, from ``decode_logits``' output, under ``likelihood``."""
        if self.likelihood == "continuous_bernoulli":
            return continuous_bernoulli_nll(logits, images)
        return bernoulli_nll(logits, images)

    def check_contract(self) -> None:
        """One ``VaelabError`` line naming the first part of the class docstring's contract this model breaks."""
        check_contract(self)

    def sample(
        self, n: int, labels: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``n`` images decoded from z ~ N(0, I) (drawn on the CPU from ``generator``, the global RNG if None);
        conditional models cycle digits 0-9 unless given labels."""
        if self.num_classes and labels is None:
            labels = torch.arange(n, device=self.device) % self.num_classes
        z = torch.randn(n, self.latent_dim, generator=generator).to(self.device, self.dtype)
        return self.decode(z, labels)

    def reparameterize(
        self, z_mean: torch.Tensor, log_var: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``z = z_mean + sigma * eps``, ``eps`` from ``generator`` (the global RNG if None)."""
        noise = torch.randn(z_mean.shape, generator=generator, device=z_mean.device, dtype=z_mean.dtype)
        return z_mean + noise * torch.exp(0.5 * log_var)

    def loss_terms(
        self, images: torch.Tensor, labels: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Per-image ``recon``, ``kl`` and ``loss = recon + beta * kl``, each ``[B]`` nats (``beta`` the target value,
        not the warm-up one: logged losses stay comparable across epochs)."""
        z_mean, log_var = self.encode(images, labels)
        logits = self.decode_logits(self.reparameterize(z_mean, log_var, generator), labels)
        recon = self.recon_nll(logits, images)
        kl = gaussian_kl(z_mean, log_var)
        return {"recon": recon, "kl": kl, "loss": recon + self.beta * kl}

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        """Loss of one batch; per-image sums are accumulated for the epoch means logged at epoch end. Validation and
        test run in float32 whatever the trainer's precision: bf16 moved an IWAE estimate by 5 seed deviations
        (docs/performance.md), so reported numbers do not depend on the precision a model trained in."""
        images, labels = batch
        with nullcontext() if stage == "train" else torch.autocast(images.device.type, enabled=False):
            terms = self.loss_terms(images, labels, self.noise_generator(stage, images.device))
        for name, mean in self.epoch_means(stage).items():
            mean.update(terms[name].detach())
        loss = terms["loss"].mean()
        if stage != "train":
            return loss
        self.log("train/loss_step", loss.detach(), prog_bar=True)  # the only per-step log: ~0.3 ms a call
        weight = self.kl_weight()
        objective = loss if weight == self.beta else (terms["recon"] + weight * terms["kl"]).mean()
        if not torch.isfinite(objective):  # a host sync: free on CPU, small next to a step on GPU
            raise NonFiniteLossError(
                f"the training loss became {objective.item()} at epoch {self.current_epoch}, step {self.global_step}; "
                "stopped (try a lower model.optimizer.lr)"
            )
        return objective

    def kl_weight(self) -> float:
        """The KL weight this step: ``beta``, ramped linearly from 0 over ``kl_warmup_epochs`` epochs when set."""
        if not self.kl_warmup_epochs or self._trainer is None:
            return self.beta
        steps_per_epoch = max(self.trainer.num_training_batches // self.trainer.accumulate_grad_batches, 1)
        return self.beta * min(1.0, self.global_step / steps_per_epoch / self.kl_warmup_epochs)

    def log_epoch_means(self, stage: str) -> None:
        """Log ``{stage}/recon``, ``{stage}/kl``, ``{stage}/loss`` (means per image over the epoch, all processes)
        and ``{stage}/nelbo``, the negative ELBO itself (KL weight 1): comparable across beta, sweeps rank on it."""
        means = self.epoch_means(stage)
        if not means["loss"].update_called:
            return
        values = {name: mean.compute() for name, mean in means.items()}
        for name, value in values.items():
            self.log(f"{stage}/{name}", value, prog_bar=name == "loss" and stage != "test")
        self.log(f"{stage}/nelbo", values["recon"] + values["kl"])  # the means reset when the next epoch starts

    def on_train_epoch_start(self) -> None:
        self._reset_epoch("train")

    def on_validation_epoch_start(self) -> None:
        self._reset_epoch("val")

    def on_test_epoch_start(self) -> None:
        self._reset_epoch("test")

    def _reset_epoch(self, stage: str) -> None:
        for mean in self.epoch_means(stage).values():
            mean.reset()
        if stage != "train":
            self._noise.pop(stage, None)  # evaluation noise restarts from its seed

    def on_train_epoch_end(self) -> None:
        self.log_epoch_means("train")
        if self.kl_warmup_epochs:
            self.log("train/kl_weight", self.kl_weight())

    def on_validation_epoch_end(self) -> None:
        self.log_epoch_means("val")

    def on_test_epoch_end(self) -> None:
        self.log_epoch_means("test")

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.step(batch, "test")

    def configure_optimizers(self) -> Any:
        optimization, self._configured_horizons = build_optimization(
            self.parameters(), self.optimizer_config, self.scheduler_config
        )
        return optimization

    def on_train_start(self) -> None:
        stretch_schedules(self.trainer.lr_scheduler_configs, self._configured_horizons)

    @classmethod
    def checkpoint_name(cls) -> str:
        """The dotted class name a checkpoint records, which ``vaelab.run.checkpoints`` looks up (never imports)."""
        return f"{cls.__module__}.{cls.__qualname__}"

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lets ``vaelab.run.checkpoints.load_model`` rebuild the right variant from the file alone.
        checkpoint["vaelab_model_class"] = self.checkpoint_name()
        self.save_resume_state(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.load_resume_state(checkpoint)
