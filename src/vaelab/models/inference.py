"""Running a trained model without training it: eval mode, no autograd, batched encoding."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from vaelab.models.base import ELBOModule


@contextmanager
def inference(model: ELBOModule) -> Iterator[ELBOModule]:
    """Eval mode and no autograd for the block; the model's training flag is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def encode_means(model: ELBOModule, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """z_mean ``[N, latent_dim]`` on the CPU for images ``[N, 1, 28, 28]``."""
    means = []
    with inference(model):
        for start in range(0, len(images), batch_size):
            chunk = slice(start, start + batch_size)
            z_mean, _ = model.encode(images[chunk].to(model.device), labels[chunk].to(model.device))
            means.append(z_mean.float().cpu())
    return torch.cat(means)
