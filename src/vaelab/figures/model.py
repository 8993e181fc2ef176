"""The standard figures of a trained VAE: a model and some images in, ``{name: Figure}`` out. ``FIGURES`` is the one
list; ``draw_figures`` draws any subset, encoding the images once. For ``latent_dim > 2`` the scatter and grid use
the first two latent dims, the others held at 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from matplotlib.figure import Figure

from vaelab.figures import plots
from vaelab.figures.settings import ENCODED, FIGURES, FigureSettings, check_figure_names
from vaelab.models.base import ELBOModule
from vaelab.models.inference import encode_means, inference


def draw_figures(
    model: ELBOModule,
    images: torch.Tensor,
    labels: torch.Tensor,
    names: Sequence[str] = FIGURES,
    settings: FigureSettings | None = None,
    each: Callable[[dict[str, Figure]], None] | None = None,
) -> dict[str, Figure]:
    """The figures ``names`` (a subset of ``FIGURES``, drawn in that order); a conditional model's grid is one
    figure per digit, ``latent_grid_digit<d>``. ``each`` takes the figures of each name as they are drawn."""
    check_figure_names(names)
    settings = settings or FigureSettings()
    z_mean = torch.empty(0, model.latent_dim)
    if ENCODED & set(names):
        points = slice(0, settings.num_points)
        z_mean = encode_means(model, images[points], labels[points])
    drawn: dict[str, Figure] = {}
    for name in (name for name in FIGURES if name in names):
        if name == "latent_scatter":
            figures = {name: plots.latent_scatter(z_mean, labels[: len(z_mean)], class_names=settings.class_names)}
        elif name == "latent_grid":
            figures = latent_grid_figures(model, z_mean, settings)
        elif name == "centre_decode":
            figures = {name: centre_decode_figure(model, settings)}
        elif name == "reconstructions":
            figures = {name: reconstruction_figure(model, images, labels)}
        elif name == "interpolation":
            figures = {name: interpolation_figure(model, images, labels, settings)}
        else:
            figures = {name: samples_figure(model, settings)}
        drawn.update(figures)
        if each is not None:
            each(figures)
    return drawn


def grid_axes(z_mean: torch.Tensor, grid_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Evenly spaced values over the active range (min to max of z_mean) of the first two dims: ``(x_values
    increasing, y_values decreasing)``, so the grid's top row is the largest z[1]."""
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


def latent_grid_figures(model: ELBOModule, z_mean: torch.Tensor, settings: FigureSettings) -> dict[str, Figure]:
    """A grid decoded over the active range of ``z_mean``; for a conditional model one per class in
    ``settings.digits`` (default all; ignored otherwise)."""
    x_values, y_values, digits = *grid_axes(z_mean, settings.grid_size), settings.digits
    z = grid_latents(x_values, y_values, model.latent_dim).to(model.device, model.dtype)
    figures = {}
    with inference(model):
        if model.num_classes == 0:
            figures["latent_grid"] = plots.decoded_grid(model.decode(z), x_values, y_values)
        else:
            for digit in digits if digits is not None else range(model.num_classes):
                label = torch.full((len(z),), digit, device=model.device, dtype=torch.long)
                figures[f"latent_grid_digit{digit}"] = plots.decoded_grid(
                    model.decode(z, label), x_values, y_values, title=f"Decoded latent grid, {settings.title(digit)}"
                )
    return figures


def centre_decode_figure(model: ELBOModule, settings: FigureSettings | None = None) -> Figure:
    """The decode of z = 0; one per class for a conditional model."""
    settings = settings or FigureSettings()
    count = max(model.num_classes, 1)
    labels = torch.arange(count, device=model.device) if model.num_classes else None
    with inference(model):
        images = model.decode(torch.zeros(count, model.latent_dim, device=model.device, dtype=model.dtype), labels)
    titles = [settings.title(d) for d in range(count)] if model.num_classes else ["z = 0"]
    return plots.image_row(images, titles, suptitle="Decode of z = 0")


def reconstruction_figure(model: ELBOModule, images: torch.Tensor, labels: torch.Tensor, count: int = 12) -> Figure:
    """Inputs (top row) above their reconstructions: the decode of z_mean."""
    images, labels = images[:count].to(model.device), labels[:count].to(model.device)
    with inference(model):
        z_mean, _ = model.encode(images, labels)
        reconstructions = model.decode(z_mean, labels)
    return plots.image_rows([images, reconstructions], ["input", "reconstruction"], title="Reconstructions")


def interpolation_figure(
    model: ELBOModule, images: torch.Tensor, labels: torch.Tensor, settings: FigureSettings, pairs: int = 4
) -> Figure:
    """Decodes along straight lines in latent space between the z_mean of image ``2i`` and ``2i + 1`` for each pair
    ``i``; a conditional model decodes the first image's label."""
    starts, ends = images[0 : 2 * pairs : 2], images[1 : 2 * pairs : 2]
    start_labels, end_labels = labels[0 : 2 * pairs : 2], labels[1 : 2 * pairs : 2]
    steps = settings.interpolation_steps
    weights = torch.linspace(0, 1, steps, device=model.device)[:, None]
    rows, titles = [], []
    with inference(model):
        z_start, _ = model.encode(starts.to(model.device), start_labels.to(model.device))
        z_end, _ = model.encode(ends.to(model.device), end_labels.to(model.device))
        for index in range(len(starts)):
            path = (1 - weights) * z_start[index] + weights * z_end[index]
            row_labels = start_labels[index].repeat(steps).to(model.device)
            rows.append(model.decode(path, row_labels))
            titles.append(f"{settings.title(int(start_labels[index]))} -> {settings.title(int(end_labels[index]))}")
    return plots.image_rows(rows, titles, title="Latent interpolation")


def samples_figure(
    model: ELBOModule, settings: FigureSettings | None = None, per_row: int = 10, rows: int = 4, seed: int = 0
) -> Figure:
    """Images decoded from z drawn from the prior N(0, I) (what the model generates); a conditional model gets one
    row per class. ``seed`` fixes the draws, so the figures of two checkpoints are comparable."""
    settings = settings or FigureSettings()
    count = model.num_classes or rows
    labels = torch.arange(count, device=model.device).repeat_interleave(per_row) if model.num_classes else None
    with inference(model):
        images = model.sample(count * per_row, labels, generator=torch.Generator().manual_seed(seed))
    titles = [settings.title(d) for d in range(count)] if model.num_classes else [""] * count
    return plots.image_rows(list(images.split(per_row)), titles, title="Samples from the prior")
