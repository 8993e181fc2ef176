"""The probabilistic maths of a VAE with a Bernoulli or continuous Bernoulli decoder and a standard-normal prior, in
nats.

- ``gaussian_kl``: KL(q(z|x) || N(0, I)), the ELBO's regulariser;
- ``bernoulli_nll``: -log p(x|z), binary cross-entropy summed over the pixels (a likelihood of binary pixels; of
  grey levels it is a cross-entropy, not a density);
- ``continuous_bernoulli_nll``: -log p(x|z) under the continuous Bernoulli (Loaiza-Ganem and Cunningham, NeurIPS
  2019), a normalised density on [0, 1]: CB(x | lam) = C(lam) lam^x (1 - lam)^(1 - x), so the cross-entropy minus
  log C(lam) per pixel; with lam = sigmoid(l), C = l / tanh(l / 2) (2 at l = 0);
- ``gaussian_log_density``: log N(z; mean, var), for importance weights;
- ``iwae_log_likelihood``: the importance-weighted bound on log p(x) (Burda et al. 2016),

      log p(x) >= E[log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k | x)],  z_k ~ q(z | x),

  which is the ELBO at K = 1 and tightens as K grows.

No plotting and no Lightning here: the models and the evaluation both build on this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from vaelab.models.inference import inference

if TYPE_CHECKING:
    from vaelab.models.base import ELBOModule

LOG_2PI = math.log(2 * math.pi)


def gaussian_kl(z_mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(z_mean, exp(log_var)) || N(0, I)) summed over latent dims: ``[B, D] -> [B]`` nats."""
    z_mean, log_var = z_mean.float(), log_var.float()
    return 0.5 * (z_mean.square() + log_var.exp() - 1.0 - log_var).sum(dim=1)


def bernoulli_nll(logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy summed over pixels: ``[B, 1, 28, 28] -> [B]`` nats, stable in logits.

    Computed in float32 even under bf16 autocast: a 784-term sum in bf16 would lose ~1 nat.
    """
    return F.binary_cross_entropy_with_logits(logits.float(), images.float(), reduction="none").flatten(1).sum(dim=1)


SMALL_LOGIT = 1e-3  # below it, the series: the continuous Bernoulli's C and mean are 0/0 at l = 0


def continuous_bernoulli_log_normalizer(logits: torch.Tensor) -> torch.Tensor:
    """log C(sigmoid(l)) = log(l / tanh(l / 2)), elementwise, stable at l = 0 (log 2 + l^2 / 12)."""
    small = logits.abs() < SMALL_LOGIT
    safe = torch.where(small, torch.ones_like(logits), logits)  # no 0/0 in the branch torch.where discards
    return torch.where(small, math.log(2.0) + logits**2 / 12, torch.log(safe / torch.tanh(safe / 2)))


def continuous_bernoulli_mean(logits: torch.Tensor) -> torch.Tensor:
    """E[x] under CB(sigmoid(l)) = sigmoid(l) / tanh(l / 2) - 1 / l, elementwise (1/2 + l / 12 near l = 0)."""
    small = logits.abs() < SMALL_LOGIT
    safe = torch.where(small, torch.ones_like(logits), logits)
    return torch.where(small, 0.5 + logits / 12, torch.sigmoid(safe) / torch.tanh(safe / 2) - 1 / safe)


def continuous_bernoulli_nll(logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """-log CB(images | sigmoid(logits)) summed over pixels: ``[B, 1, 28, 28] -> [B]`` nats (a density: it can be
    below 0). In float32, as ``bernoulli_nll``."""
    return bernoulli_nll(logits, images) - continuous_bernoulli_log_normalizer(logits.float()).flatten(1).sum(dim=1)


def gaussian_log_density(z: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """log N(z; mean, exp(log_var)) summed over the last dim."""
    return -0.5 * (LOG_2PI + log_var + (z - mean).square() / log_var.exp()).sum(dim=-1)


def iwae_log_likelihood(
    model: ELBOModule,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    num_samples: int,
    max_decodes: int = 300,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """IWAE estimate of log p(x) (conditional models: log p(x | y)) for each image: ``[B]`` nats.

    The ``num_samples`` decodes per image run in chunks of at most ``max_decodes`` decodes (at least one image).
    300 keeps the conv decoder's largest activation (32 x 28 x 28 floats, 100 KB a decode) under the 32 MiB
    that ``vaelab.process.tune_malloc`` lets glibc reuse: bigger chunks are mapped and unmapped on every call,
    ~1.6x slower in all (docs/performance.md). ``progress`` is called with the images done after each chunk.
    """
    images_per_chunk = max(1, max_decodes // num_samples)
    estimates = []
    with inference(model):
        for start in range(0, len(images), images_per_chunk):
            chunk = images[start : start + images_per_chunk].to(model.device)
            chunk_labels = labels[start : start + images_per_chunk].to(model.device) if labels is not None else None
            estimates.append(_iwae_chunk(model, chunk, chunk_labels, num_samples).cpu())
            if progress is not None:
                progress(len(chunk))
    return torch.cat(estimates)


def _iwae_chunk(model: ELBOModule, images: torch.Tensor, labels: torch.Tensor | None, num_samples: int) -> torch.Tensor:
    batch = len(images)
    z_mean, log_var = (t.float() for t in model.encode(images, labels))
    z = z_mean + torch.randn(num_samples, *z_mean.shape, device=z_mean.device) * (0.5 * log_var).exp()  # [K, B, D]
    repeated_labels = labels.repeat(num_samples) if labels is not None else None
    logits = model.decode_logits(z.reshape(num_samples * batch, -1).to(model.dtype), repeated_labels)
    log_px_given_z = -model.recon_nll(logits, images.repeat(num_samples, 1, 1, 1)).view(num_samples, batch)
    log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
    log_qz = gaussian_log_density(z, z_mean, log_var)
    log_weights = log_px_given_z + log_pz - log_qz  # [K, B]
    return torch.logsumexp(log_weights, dim=0) - math.log(num_samples)
