"""Convolutional VAE, and its conditional variant (the same networks with the digit label joined)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from vaelab.models.base import ELBOModule
from vaelab.models.networks import ConvDecoder, ConvEncoder
from vaelab.validators import check_number, check_sizes


class ConvVAE(ELBOModule):
    """Encoder Conv 32, 64 (3x3, stride 2) -> dense 16 -> (z_mean, log_var);
    decoder dense 7*7*64 -> ConvTranspose 64, 32 (stride 2) -> ConvTranspose 1 (sigmoid in ``decode``).
    ``decoder_hidden_dim`` adds a dense layer between z and the 7*7*64 one, ``residual_blocks`` that many
    residual blocks after every strided convolution on both sides (neither is in the study).

    ``channels_last`` stores the conv weights in NHWC order, about 1.5x faster on CPU.
    """

    model_name = "conv_vae"

    def __init__(
        self,
        latent_dim: int = 2,
        encoder_channels: Sequence[int] = (32, 64),
        decoder_channels: Sequence[int] = (64, 32),
        hidden_dim: int = 16,
        decoder_hidden_dim: int | None = None,
        residual_blocks: int = 0,
        beta: float = 1.0,
        channels_last: bool = True,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        kl_warmup_epochs: float = 0,
        likelihood: str = "bernoulli",
    ) -> None:
        super().__init__(latent_dim, beta, optimizer, scheduler, kl_warmup_epochs, likelihood)
        check_number("model.residual_blocks", residual_blocks, minimum=0, integer=True)
        check_number("model.hidden_dim", hidden_dim, minimum=1, integer=True)
        if decoder_hidden_dim is not None:  # 0 or null: no such layer
            check_number("model.decoder_hidden_dim", decoder_hidden_dim, minimum=0, integer=True)
        encoder_channels = check_sizes("model.encoder_channels", encoder_channels, length=2)
        decoder_channels = check_sizes("model.decoder_channels", decoder_channels, length=2)
        self.encoder = ConvEncoder(latent_dim, encoder_channels, hidden_dim, self.num_classes, residual_blocks)
        self.decoder = ConvDecoder(latent_dim, decoder_channels, self.num_classes, decoder_hidden_dim, residual_blocks)
        if channels_last:
            self.to(memory_format=torch.channels_last)


class CondConvVAE(ConvVAE):
    """``ConvVAE`` conditioned on the digit: the one-hot label joins the encoder features after the
    first convolution and joins z before the decoder."""

    model_name = "cond_conv_vae"
    num_classes = 10
