"""Comparing runs (``runs=``): one results row per setting (replicas averaged, with their spread), the Markdown and
CSV tables and ``comparison.png``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vaelab.figures import plots
from vaelab.models.metric_names import IWAE_KEYS
from vaelab.run.folder import RunFolder
from vaelab.sweep.replicas import group_replicas, setting_of, spread, without_seeds
from vaelab.tables import markdown_table, write_csv

# The results table's columns; "iwae" stands for the IWAE figure's name (metric_names.iwae_key: one per comparison,
# whose runs share one convention).
RESULT_COLUMNS = (
    "setting", "model", "run", "split", "binarize", "likelihood", "latent_dim", "epochs", "recon", "kl", "loss",
    "loss_kl_averaged", "iwae", "seeds", "loss_std", "loss_ci95", "iwae_std", "iwae_ci95", "loss_best",
    "seconds_per_epoch", "device",
)  # fmt: skip

# Averaged over the replicas of a setting in its results row.
MEAN_COLUMNS = ("recon", "kl", "loss", "loss_kl_averaged", *IWAE_KEYS, "seconds_per_epoch")


def figure_labels(results: list[dict[str, Any]], sources: list[Path]) -> list[str]:
    """Short names for the comparison figure: each run's setting (``capacity conv_vae``), with the overrides that set
    apart runs sharing one (seeds left out), or the run label where even those are the same."""
    settings = [result["setting"] for result in results]
    overrides = [
        set(without_seeds(folder.overrides())) if (folder := RunFolder.of_checkpoint(s)) else set() for s in sources
    ]
    labels = []
    for index, setting in enumerate(settings):
        twins = [i for i, other in enumerate(settings) if other == setting]
        shared = set.intersection(*(overrides[i] for i in twins))
        labels.append(" ".join([setting, *sorted(overrides[index] - shared)]))
    return [label if labels.count(label) == 1 else result["run"] for label, result in zip(labels, results)]


def replica_groups(sources: list[Path]) -> list[list[int]]:
    """Indices of ``sources`` grouped by setting: runs that differ only by seed share a group; a checkpoint
    outside a run folder is a group of its own."""
    folders = [RunFolder.of_checkpoint(source) for source in sources]
    return group_replicas(
        range(len(sources)), key=lambda i: setting_of(folders[i]) if folders[i] else f"checkpoint {sources[i]}"
    )


def setting_row(members: list[dict[str, Any]]) -> dict[str, Any]:
    """The results row of one setting: its runs' mean metrics, ``seeds`` runs, the loss's spread."""
    first, loss = members[0], spread(member["loss"] for member in members)
    iwae_name = next(key for key in IWAE_KEYS if key in first)
    iwae = spread(member[iwae_name] for member in members)
    row = {column: first[column] for column in RESULT_COLUMNS if column in first}
    row.update({column: spread(member[column] for member in members).mean for column in MEAN_COLUMNS
                if column in first})  # fmt: skip
    epochs = sorted({member["epochs"] for member in members})
    row.update(
        run=" ".join(member["run"] for member in members),
        epochs=epochs[0] if len(epochs) == 1 else " ".join(map(str, epochs)),
        seeds=len(members), loss_std=loss.std, loss_ci95=loss.ci95, loss_best=loss.best,
        **{f"{iwae_name}_std": iwae.std, f"{iwae_name}_ci95": iwae.ci95},
        device="; ".join(sorted({str(member["device"]) for member in members})),
    )  # fmt: skip
    return row


def validation_band(folders: list[RunFolder | None]) -> tuple[list[int], list[float], list[float]] | None:
    """Mean and standard deviation of ``val/loss`` per epoch over replicas (epochs every run reached)."""
    curves = [dict(folder.validation_losses()) for folder in folders if folder]
    curves = [curve for curve in curves if curve]
    if not curves:
        return None
    epochs = sorted(set.intersection(*(set(curve) for curve in curves)))
    spreads = [spread(curve[epoch] for curve in curves) for epoch in epochs]
    return epochs, [s.mean for s in spreads], [s.std if s.n > 1 else 0.0 for s in spreads]


def write_comparison(
    results: list[dict[str, Any]], sources: list[Path], output_dir: Path, report_dir: str | None, left_out: list[str]
) -> None:
    """``results.csv`` and ``results_table.md`` (one row per setting, replicas averaged; the runs left out named
    below it) and ``comparison.png``; copies into ``report_dir``."""
    groups = replica_groups(sources)
    # Each setting named by what sets it apart (``conv_vae model.optimizer.lr=0.001``), in the tables as in the figure.
    names = figure_labels([results[group[0]] for group in groups], [sources[group[0]] for group in groups])
    rows = [{**setting_row([results[i] for i in group]), "setting": name} for name, group in zip(names, groups)]
    iwae_name = next(key for key in IWAE_KEYS if key in results[0])  # one convention (pixel_convention)
    columns = [column.replace("iwae", iwae_name) for column in RESULT_COLUMNS]
    table = markdown_table(rows, columns)
    if left_out:
        table += "\nLeft out (only completed runs count):\n\n" + "".join(f"- {line}\n" for line in left_out)
    names = [name + (f" (n={len(group)})" if len(group) > 1 else "") for name, group in zip(names, groups)]
    curves = {
        name: band
        for name, group in zip(names, groups)
        if (band := validation_band([RunFolder.of_checkpoint(sources[i]) for i in group]))
    }
    figure = plots.comparison(
        names, [r["recon"] for r in rows], [r["kl"] for r in rows], curves, errors=[r["loss_std"] for r in rows]
    )
    for folder in [output_dir, *([Path(report_dir)] if report_dir else [])]:
        folder.mkdir(parents=True, exist_ok=True)
        write_csv(folder / "results.csv", rows, columns)
        (folder / "results_table.md").write_text(table)
        figure.savefig(folder / "comparison.png")
    print(table + f"\nComparison: {output_dir}" + (f" and {report_dir}" if report_dir else ""), flush=True)
