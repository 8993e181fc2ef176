"""Dense VAE: fully connected encoder and decoder, no convolutions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from vaelab.models.base import ELBOModule
from vaelab.models.networks import DenseDecoder, DenseEncoder
from vaelab.validators import check_sizes


class VAE(ELBOModule):
    """784 -> hidden_dims -> (z_mean, log_var); z -> reversed(hidden_dims) -> 784 logits."""

    model_name = "vae"

    def __init__(
        self,
        latent_dim: int = 2,
        hidden_dims: Sequence[int] = (512, 256),
        beta: float = 1.0,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        kl_warmup_epochs: float = 0,
        likelihood: str = "bernoulli",
    ) -> None:
        super().__init__(latent_dim, beta, optimizer, scheduler, kl_warmup_epochs, likelihood)
        hidden_dims = check_sizes("model.hidden_dims", hidden_dims)
        self.encoder = DenseEncoder(latent_dim, hidden_dims, self.num_classes)
        self.decoder = DenseDecoder(latent_dim, hidden_dims[::-1], self.num_classes)
