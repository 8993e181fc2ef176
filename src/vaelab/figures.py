"""The standard figures of a trained VAE, computed from a model and some images.

Shared by the training callbacks and ``evaluate.py``. For ``latent_dim > 2`` the scatter shows
the first two latent dims and the grid varies the first two dims with the others held at 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
from matplotlib.figure import Figure

from vaelab import plots
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


def first_images(loader: Iterable[tuple[torch.Tensor, torch.Tensor]], count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` ``(images, labels)`` a loader yields, concatenated."""
    images, labels, taken = [], [], 0
    for batch_images, batch_labels in loader:
        images.append(batch_images)
        labels.append(batch_labels)
        taken += len(batch_images)
        if taken >= count:
            break
    return torch.cat(images)[:count], torch.cat(labels)[:count]


def encode_means(model: ELBOModule, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """z_mean ``[N, latent_dim]`` on the CPU for images ``[N, 1, 28, 28]``."""
    means = []
    with inference(model):
        for start in range(0, len(images), batch_size):
            chunk = slice(start, start + batch_size)
            z_mean, _ = model.encode(images[chunk].to(model.device), labels[chunk].to(model.device))
            means.append(z_mean.float().cpu())
    return torch.cat(means)


def grid_axes(z_mean: torch.Tensor, grid_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Evenly spaced values over the active range (min to max of z_mean) of the first two dims.

    Returns ``(x_values increasing, y_values decreasing)`` so the grid's top row is the largest z[1].
    """
    low, high = z_mean.min(dim=0).values, z_mean.max(dim=0).values
    x_values = torch.linspace(low[0].item(), high[0].item(), grid_size)
    if z_mean.shape[1] > 1:
        y_values = torch.linspace(high[1].item(), low[1].item(), grid_size)
    else:
        y_values = torch.zeros(1)
    return x_values, y_values


def grid_latents(x_values: torch.Tensor, y_values: torch.Tensor, latent_dim: int) -> torch.Tensor:
    """Latent points ``[len(y) * len(x), latent_dim]`` in row-major grid order; other dims 0."""
    z = torch.zeros(len(y_values), len(x_values), latent_dim)
    z[..., 0] = x_values[None, :]
    if latent_dim > 1:
        z[..., 1] = y_values[:, None]
    return z.reshape(-1, latent_dim)


def latent_scatter_figure(model: ELBOModule, images: torch.Tensor, labels: torch.Tensor) -> Figure:
    return plots.latent_scatter(encode_means(model, images, labels), labels)


def latent_grid_figures(
    model: ELBOModule,
    images: torch.Tensor,
    labels: torch.Tensor,
    grid_size: int = 20,
    digits: Sequence[int] | None = None,
) -> dict[str, Figure]:
    """One grid decoded over the active latent range; for a conditional model one per digit.

    ``digits`` picks the digits for a conditional model (default all); it is ignored otherwise.
    """
    x_values, y_values = grid_axes(encode_means(model, images, labels), grid_size)
    z = grid_latents(x_values, y_values, model.latent_dim).to(model.device, model.dtype)
    figures = {}
    with inference(model):
        if model.num_classes == 0:
            figures["latent_grid"] = plots.decoded_grid(model.decode(z), x_values, y_values)
        else:
            for digit in digits if digits is not None else range(model.num_classes):
                label = torch.full((len(z),), digit, device=model.device, dtype=torch.long)
                figures[f"latent_grid_digit{digit}"] = plots.decoded_grid(
                    model.decode(z, label), x_values, y_values, title=f"Decoded latent grid, digit {digit}"
                )
    return figures


def centre_decode_figure(model: ELBOModule) -> Figure:
    """The decode of z = 0; one per digit 0-9 for a conditional model."""
    count = max(model.num_classes, 1)
    labels = torch.arange(count, device=model.device) if model.num_classes else None
    with inference(model):
        images = model.decode(torch.zeros(count, model.latent_dim, device=model.device, dtype=model.dtype), labels)
    titles = [f"digit {d}" for d in range(count)] if model.num_classes else ["z = 0"]
    return plots.image_row(images, titles, suptitle="Decode of z = 0")


def reconstruction_figure(model: ELBOModule, images: torch.Tensor, labels: torch.Tensor, count: int = 12) -> Figure:
    """Inputs (top row) above their reconstructions: the decode of z_mean."""
    images, labels = images[:count].to(model.device), labels[:count].to(model.device)
    with inference(model):
        z_mean, _ = model.encode(images, labels)
        reconstructions = model.decode(z_mean, labels)
    return plots.image_rows([images, reconstructions], ["input", "reconstruction"], title="Reconstructions")


def interpolation_figure(
    model: ELBOModule, images: torch.Tensor, labels: torch.Tensor, pairs: int = 4, steps: int = 10
) -> Figure:
    """Decodes along straight lines in latent space between the z_mean of pairs of test digits.

    Pair ``i`` joins image ``2i`` and ``2i + 1``; a conditional model decodes the first image's label.
    """
    starts, ends = images[0 : 2 * pairs : 2], images[1 : 2 * pairs : 2]
    start_labels, end_labels = labels[0 : 2 * pairs : 2], labels[1 : 2 * pairs : 2]
    weights = torch.linspace(0, 1, steps, device=model.device)[:, None]
    rows, titles = [], []
    with inference(model):
        z_start, _ = model.encode(starts.to(model.device), start_labels.to(model.device))
        z_end, _ = model.encode(ends.to(model.device), end_labels.to(model.device))
        for index in range(len(starts)):
            path = (1 - weights) * z_start[index] + weights * z_end[index]
            row_labels = start_labels[index].repeat(steps).to(model.device)
            rows.append(model.decode(path, row_labels))
            titles.append(f"{start_labels[index].item()} -> {end_labels[index].item()}")
    return plots.image_rows(rows, titles, title="Latent interpolation")


def samples_figure(model: ELBOModule, per_row: int = 10, rows: int = 4, seed: int = 0) -> Figure:
    """Images decoded from z drawn from the prior N(0, I) (what the model generates); a conditional model gets one
    row per digit 0-9. ``seed`` fixes the draws, so the figures of two checkpoints are comparable."""
    count = model.num_classes or rows
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(count * per_row, model.latent_dim, generator=generator).to(model.device, model.dtype)
    labels = torch.arange(count, device=model.device).repeat_interleave(per_row) if model.num_classes else None
    with inference(model):
        images = model.decode(z, labels)
    titles = [f"digit {d}" for d in range(count)] if model.num_classes else [""] * count
    return plots.image_rows(list(images.split(per_row)), titles, title="Samples from the prior")
