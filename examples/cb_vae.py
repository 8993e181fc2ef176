"""A VAE with a continuous Bernoulli decoder (Loaiza-Ganem & Cunningham, NeurIPS 2019), as a vaelab user adds it:
this file and ``conf/model/cb_conv_vae.yaml`` beside it, nothing in vaelab changed (README, "Add your own model").

MNIST's pixels are grey levels in [0, 1], not coin flips. The Bernoulli likelihood the built-in models use is then
not a density of the data; the continuous Bernoulli CB(x | lam) = C(lam) lam^x (1 - lam)^(1 - x) on [0, 1] is,
and its normalising constant C(lam) = 2 artanh(1 - 2 lam) / (1 - 2 lam) is all that changes the loss:
-log p(x | z) = BCE(x, lam) - sum log C(lam). With lam = sigmoid(l), C = l / tanh(l / 2) (2 at l = 0).
Its values are log densities, so they can go below 0 and are not comparable with the Bernoulli models' nats.

    PYTHONPATH=examples python train.py --config-dir examples/conf model=cb_conv_vae
    PYTHONPATH=examples python evaluate.py ckpt_path=<run>/checkpoints/last.ckpt \
        'trusted_models=[cb_vae.ContinuousBernoulliConvVAE]'
"""

from __future__ import annotations

import math

import torch

from vaelab.models import ConvVAE
from vaelab.models.probability import bernoulli_nll

SMALL_LOGIT = 1e-3  # below it, the series: C and the mean are 0/0 at l = 0


def log_normalizer(logits: torch.Tensor) -> torch.Tensor:
    """log C(sigmoid(l)) = log(l / tanh(l / 2)), elementwise, stable at l = 0 (log 2 + l^2 / 12)."""
    small = logits.abs() < SMALL_LOGIT
    safe = torch.where(small, torch.ones_like(logits), logits)  # no 0/0 in the branch torch.where discards
    return torch.where(small, math.log(2.0) + logits**2 / 12, torch.log(safe / torch.tanh(safe / 2)))


def mean(logits: torch.Tensor) -> torch.Tensor:
    """E[x] under CB(sigmoid(l)) = sigmoid(l) / tanh(l / 2) - 1 / l, elementwise (1/2 + l / 12 near l = 0)."""
    small = logits.abs() < SMALL_LOGIT
    safe = torch.where(small, torch.ones_like(logits), logits)
    return torch.where(small, 0.5 + logits / 12, torch.sigmoid(safe) / torch.tanh(safe / 2) - 1 / safe)


class ContinuousBernoulliConvVAE(ConvVAE):
    """vaelab's conv VAE, networks and settings unchanged, scored with the continuous Bernoulli likelihood."""

    model_name = "cb_conv_vae"

    def recon_nll(self, logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        return bernoulli_nll(logits, images) - log_normalizer(logits.float()).flatten(1).sum(1)

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return mean(self.decode_logits(z, labels).float())  # the figures show the mean image, not lam
