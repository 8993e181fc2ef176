"""Encoder and decoder networks (plain ``nn.Module``s); the Lightning modules only wire them up.

Every encoder maps ``(images [B, 1, 28, 28], condition [B, C] or None)`` to
``(z_mean [B, D], log_var [B, D])``; every decoder maps ``(z [B, D], condition)`` to pixel
logits ``[B, 1, 28, 28]``. ``condition`` is the one-hot label for conditional models.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

IMAGE_SHAPE = (1, 28, 28)
IMAGE_PIXELS = 28 * 28


def join_condition(features: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
    """Concatenate the condition to features along dim 1, broadcast over any spatial dims."""
    if condition is None:
        return features
    if features.dim() == 4:  # [B, C, H, W]: one constant plane per label class
        condition = condition[:, :, None, None].expand(-1, -1, *features.shape[2:])
    return torch.cat([features, condition.to(features.dtype)], dim=1)


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers between consecutive ``sizes``, each followed by ReLU."""
    layers: list[nn.Module] = []
    for in_features, out_features in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(in_features, out_features), nn.ReLU()]
    return nn.Sequential(*layers)


class GaussianHead(nn.Module):
    """Two linear maps from features to the posterior's mean and log-variance."""

    def __init__(self, in_features: int, latent_dim: int) -> None:
        super().__init__()
        self.z_mean = nn.Linear(in_features, latent_dim)
        self.log_var = nn.Linear(in_features, latent_dim)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.z_mean(features), self.log_var(features)


class DenseEncoder(nn.Module):
    """784 pixels (+ condition) -> hidden_dims -> (z_mean, log_var)."""

    def __init__(self, latent_dim: int, hidden_dims: Sequence[int], num_classes: int = 0) -> None:
        super().__init__()
        self.body = mlp([IMAGE_PIXELS + num_classes, *hidden_dims])
        self.head = GaussianHead(hidden_dims[-1] if hidden_dims else IMAGE_PIXELS + num_classes, latent_dim)

    def forward(self, images: torch.Tensor, condition: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.body(join_condition(images.flatten(1), condition)))


class DenseDecoder(nn.Module):
    """z (+ condition) -> hidden_dims -> 784 pixel logits."""

    def __init__(self, latent_dim: int, hidden_dims: Sequence[int], num_classes: int = 0) -> None:
        super().__init__()
        self.body = mlp([latent_dim + num_classes, *hidden_dims])
        self.to_pixels = nn.Linear(hidden_dims[-1] if hidden_dims else latent_dim + num_classes, IMAGE_PIXELS)

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.to_pixels(self.body(join_condition(z, condition)))
        return logits.view(-1, *IMAGE_SHAPE)


def _conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution, stride 2, 'same' padding, ReLU: halves height and width."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1), nn.ReLU())


def _deconv(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 transposed convolution, stride 2, 'same' padding, ReLU: doubles height and width."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1), nn.ReLU()
    )


class PixelLogits(nn.ConvTranspose2d):
    """The decoder's last layer: a 3x3 stride-1 transposed convolution to one channel of pixel logits. Without
    autograd on the CPU it runs as one matmul to the 9 taps and 9 shifted adds: 7.8 s per million decodes against
    oneDNN's 29.3 s (docs/performance.md); the two agree to float32 rounding. Training keeps the convolution."""

    def __init__(self, in_channels: int) -> None:
        super().__init__(in_channels, 1, 3, stride=1, padding=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if torch.is_grad_enabled() or features.device.type != "cpu":
            return super().forward(features)
        return self.tap_logits(features)

    def tap_logits(self, features: torch.Tensor) -> torch.Tensor:
        """The layer as one matmul to the 9 kernel taps and 9 shifted adds (autograd follows it too)."""
        batch, channels, height, width = features.shape
        columns = features.permute(0, 2, 3, 1).reshape(batch, height * width, channels)  # a view when NHWC
        weight = self.weight.reshape(channels, 9).t().to(columns.dtype)
        taps = torch.matmul(weight, columns.transpose(1, 2)).view(batch, 9, height, width)
        logits = taps[:, 4] + self.bias.to(taps.dtype)  # the centre tap covers every pixel
        for tap in (0, 1, 2, 3, 5, 6, 7, 8):
            dy, dx = 1 - tap // 3, 1 - tap % 3  # logits[y, x] += taps[tap][y + dy, x + dx] inside the image
            logits[:, max(0, -dy) : height - max(0, dy), max(0, -dx) : width - max(0, dx)] += taps[
                :, tap, max(0, dy) : height + min(0, dy), max(0, dx) : width + min(0, dx)
            ]
        return logits.unsqueeze(1)


class ResidualBlock(nn.Module):
    """``relu(x + conv(relu(conv(x))))`` with 3x3 stride-1 convolutions: depth at one scale, same shape out."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.relu(features + self.convs(features))


def _residual(channels: int, blocks: int) -> nn.Sequential:
    """``blocks`` residual blocks in a row (an identity when 0, holding no parameters)."""
    return nn.Sequential(*(ResidualBlock(channels) for _ in range(blocks)))


class ConvEncoder(nn.Module):
    """Conv(c1, s2) [+ condition planes] -> Conv(c2, s2) -> dense hidden_dim -> (z_mean, log_var): the condition
    joins as one constant 14x14 plane per class; ``residual_blocks`` (0 in the study) follow each strided conv."""

    def __init__(
        self,
        latent_dim: int,
        channels: Sequence[int] = (32, 64),
        hidden_dim: int = 16,
        num_classes: int = 0,
        residual_blocks: int = 0,
    ) -> None:
        super().__init__()
        first, second = channels
        self.conv1 = _conv(IMAGE_SHAPE[0], first)
        self.conv2 = _conv(first + num_classes, second)
        self.blocks1, self.blocks2 = _residual(first, residual_blocks), _residual(second, residual_blocks)
        self.dense = mlp([second * 7 * 7, hidden_dim])
        self.head = GaussianHead(hidden_dim, latent_dim)

    def forward(self, images: torch.Tensor, condition: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.blocks1(self.conv1(images))
        features = self.blocks2(self.conv2(join_condition(features, condition)))
        return self.head(self.dense(features.flatten(1)))


class ConvDecoder(nn.Module):
    """z [+ condition] [-> dense hidden_dim] -> dense 7*7*c1 -> ConvT(c1, s2) -> ConvT(c2, s2) -> ConvT(1) logits.

    ``hidden_dim`` (default none, as in the study) adds a dense layer before the 7*7*c1 one, mirroring
    the encoder's dense bottleneck; ``residual_blocks`` adds residual blocks after each transposed convolution.
    """

    def __init__(
        self,
        latent_dim: int,
        channels: Sequence[int] = (64, 32),
        num_classes: int = 0,
        hidden_dim: int | None = None,
        residual_blocks: int = 0,
    ) -> None:
        super().__init__()
        first, second = channels
        self.first_channels = first
        hidden = [hidden_dim] if hidden_dim else []
        self.dense = mlp([latent_dim + num_classes, *hidden, first * 7 * 7])
        self.deconv1 = _deconv(first, first)
        self.deconv2 = _deconv(first, second)
        self.blocks1, self.blocks2 = _residual(first, residual_blocks), _residual(second, residual_blocks)
        self.to_pixels = PixelLogits(second)

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        features = self.dense(join_condition(z, condition)).view(-1, self.first_channels, 7, 7)
        features = self.blocks2(self.deconv2(self.blocks1(self.deconv1(features))))
        return self.to_pixels(features)
