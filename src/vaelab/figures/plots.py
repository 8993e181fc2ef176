"""Drawing: tensors and numbers in, ``matplotlib.figure.Figure`` out (no pyplot state, no models).

``vaelab.figures.model`` draws a model's figures with these; evaluation comparisons and sweep summaries
draw their charts with ``comparison`` and ``ranked_bars``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from torchvision.utils import make_grid

GAP = 2  # pixels of white between the images of a row picture


def latent_scatter(
    z_mean: torch.Tensor,
    labels: torch.Tensor,
    title: str = "Latent space (z_mean)",
    class_names: Sequence[str] | None = None,
) -> Figure:
    """Scatter of the first two latent dims, coloured by class, with a colour bar of the classes (their
    ``class_names``, else "digit" and the numbers); one colour for unlabeled data (labels < 0)."""
    points, labels = z_mean.detach().float().cpu().numpy(), labels.cpu().numpy()
    fig = Figure(figsize=(7, 6), dpi=100)
    ax = fig.add_subplot()
    y_values = points[:, 1] if points.shape[1] > 1 else np.zeros(len(points))
    if len(labels) and labels.min() < 0:
        ax.scatter(points[:, 0], y_values, s=4, alpha=0.8)
    else:
        classes = len(class_names) if class_names else 10
        scatter = ax.scatter(points[:, 0], y_values, c=labels, cmap="tab10" if classes <= 10 else "tab20",
                             vmin=-0.5, vmax=classes - 0.5, s=4, alpha=0.8)  # fmt: skip
        colorbar = fig.colorbar(scatter, ax=ax, ticks=range(classes))
        if class_names:
            colorbar.set_ticklabels(list(class_names))
        colorbar.set_label("class" if class_names else "digit")
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]" if points.shape[1] > 1 else "")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def decoded_grid(
    images: torch.Tensor, x_values: torch.Tensor, y_values: torch.Tensor, title: str = "Decoded latent grid"
) -> Figure:
    """Images decoded on a grid: ``images[i * len(x_values) + j]`` is decoded at ``(x_values[j], y_values[i])``.

    ``y_values`` run from top to bottom of the figure (pass them in decreasing order for a
    conventional upward axis); axis ticks show the latent coordinates.
    """
    rows, cols = len(y_values), len(x_values)
    picture = make_grid(images.detach().float().cpu(), nrow=cols, padding=0)[0].numpy()  # row-major tiles
    height, width = images.shape[-2:]
    fig = Figure(figsize=(8, 8), dpi=100)
    ax = fig.add_subplot()
    ax.imshow(picture, cmap="Greys_r", vmin=0, vmax=1)
    step = max(1, cols // 5)
    ax.set_xticks(np.arange(cols)[::step] * width + width / 2, [f"{v:.2f}" for v in x_values[::step].tolist()])
    step = max(1, rows // 5)
    ax.set_yticks(np.arange(rows)[::step] * height + height / 2, [f"{v:.2f}" for v in y_values[::step].tolist()])
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def image_row(images: torch.Tensor, titles: Sequence[str], suptitle: str = "") -> Figure:
    """Images ``[K, 1, H, W]`` side by side, each with its title above it."""
    return image_rows([images], [""], suptitle, column_titles=titles, figsize=(1.6 * len(images) + 0.4, 2.2))


def image_rows(
    rows: Sequence[torch.Tensor],
    row_titles: Sequence[str],
    title: str = "",
    column_titles: Sequence[str] = (),
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Rows of images ``[K, 1, H, W]`` (same K), one title per row (e.g. inputs above reconstructions) and, if given,
    per column (above the top row), as one picture: one axes, not one per image, which took most of an evaluation's
    time (``docs/performance.md``)."""
    count, (height, width) = len(rows[0]), rows[0].shape[-2:]
    tiles = torch.cat([row.detach().float().cpu() for row in rows])
    picture = make_grid(tiles, nrow=count, padding=GAP, pad_value=1.0)[0].numpy()  # white lines between the tiles
    fig = Figure(figsize=figsize or (0.9 * count + 1.2, 1.0 * len(rows) + 0.6), dpi=100)
    ax = fig.add_subplot()
    ax.imshow(picture, cmap="Greys_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([(width + GAP) * i + GAP + width / 2 for i in range(len(column_titles))], column_titles, fontsize=9)
    ax.set_yticks([(height + GAP) * i + GAP + height / 2 for i in range(len(rows))], row_titles, fontsize=9)
    ax.tick_params(left=False, bottom=False, top=False, labelbottom=False, labeltop=True)
    ax.spines[:].set_visible(False)
    if title:
        fig.suptitle(title)  # above the column titles, which tight_layout makes room for
    fig.tight_layout()
    return fig


def save_png(figure: Figure, path: Path) -> np.ndarray:
    """Write ``figure`` as a PNG, drawn once, and return its ``[H, W, 3]`` uint8 pixels: the loggers take the file or
    the pixels instead of drawing the figure again."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def png_pixels(path: Path) -> np.ndarray:
    """A PNG ``save_png`` wrote, as ``[H, W, 3]`` uint8 pixels (what TensorBoard's ``add_image`` takes)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def comparison(
    names: Sequence[str],
    recon: Sequence[float],
    kl: Sequence[float],
    val_curves: dict[str, tuple[Sequence[int], Sequence[float], Sequence[float]]],
    errors: Sequence[float] | None = None,
) -> Figure:
    """Left: stacked per-image recon + KL bars per setting, with ``errors`` (the loss's standard deviation over
    seeds; NaN for a single run) as error bars. Right: validation loss per epoch of each setting, ``(epochs, mean,
    std)``, the band ±1 std where it has several seeds."""
    fig = Figure(figsize=(13, 4.8), dpi=100, layout="constrained")  # makes room for the legend outside the axes
    bars, curves = fig.subplots(1, 2)
    positions = np.arange(len(names))
    totals = np.asarray(recon, dtype=float) + np.asarray(kl, dtype=float)
    spreads = np.nan_to_num(np.asarray(errors if errors is not None else [np.nan] * len(names), dtype=float))
    bars.bar(positions, recon, label="recon (BCE)")
    bars.bar(positions, kl, bottom=recon, label="KL", yerr=spreads if spreads.any() else None, capsize=4)
    for x, total, std in zip(positions, totals, spreads):
        text = f"{total:.1f}" + (f"±{std:.1f}" if std else "")
        bars.text(x, total + std, text, ha="center", va="bottom", fontsize=9)
    bars.set_xticks(positions, names, rotation=20, ha="right")
    bars.set_ylabel("nats per image (test; mean ± std over seeds)")
    bars.set_title("Test negative ELBO")
    bars.set_ylim(0, 1.18 * max(totals + spreads, default=1.0))  # headroom for the legend
    bars.legend(loc="upper center", ncol=2, frameon=False)
    for name, (epochs, losses, stds) in val_curves.items():
        (line,) = curves.plot(epochs, losses, marker=".", label=name)
        if any(stds):
            low, high = np.subtract(losses, stds), np.add(losses, stds)
            curves.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    curves.set_xlabel("epoch")
    curves.set_ylabel("val/loss (nats per image)")
    curves.set_title("Validation loss")
    if val_curves:  # beside the chart, not over the curves
        curves.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    return fig


def ranked_bars(
    labels: Sequence[str],
    values: Sequence[float],
    metric: str,
    title: str = "Sweep",
    errors: Sequence[float] | None = None,
    points: Sequence[Sequence[float]] | None = None,
) -> Figure:
    """Horizontal bars, one per job or setting, best (lowest) at the top; the figure is as wide as its longest label
    needs. ``errors``: a half-width per bar drawn as an error bar (e.g. the 95 % CI of a mean; NaN draws none);
    ``points``: the single runs behind each bar, drawn as dots on it."""
    label_width = 0.07 * max((len(label) for label in labels), default=0)  # inches at 8 pt
    fig = Figure(figsize=(6 + label_width, 0.4 * len(labels) + 1.5), dpi=100)
    ax = fig.add_subplot()
    positions = np.arange(len(labels))[::-1]
    half_widths = np.nan_to_num(np.asarray(errors, dtype=float), nan=0.0) if errors is not None else None
    ax.barh(positions, values, xerr=half_widths, capsize=3 if errors is not None else 0, color="tab:blue", alpha=0.8)
    for position, runs in zip(positions, points or []):
        ax.plot(list(runs), [position] * len(runs), "k.", markersize=5)
    ax.set_yticks(positions, labels, fontsize=8)
    ends = [v for v in values if np.isfinite(v)]
    if half_widths is not None:
        ends += [v + s * e for v, e in zip(values, half_widths) for s in (-1, 1) if np.isfinite(v)]
    ends += [v for runs in points or [] for v in runs if np.isfinite(v)]
    if ends:
        margin = 0.05 * (max(ends) - min(ends) + 1)
        ax.set_xlim(min(ends) - margin, max(ends) + margin)
    ax.set_xlabel(metric + (" (mean, 95 % CI, single runs as dots)" if errors is not None else ""))
    ax.set_title(title)
    fig.tight_layout()
    return fig
