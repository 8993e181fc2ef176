"""Summarise a multirun folder: every job's overrides and final metrics, sorted, as markdown, CSV and a figure.

    python -m vaelab.sweeps logs/train/multiruns/<date>_<time> [--metric val/loss]

Writes ``summary.md``, ``summary.csv`` and ``summary.png`` into the sweep folder and prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import yaml

from vaelab import plots
from vaelab.tables import markdown_table, write_csv

METRIC_COLUMNS = ("val/loss", "val/recon", "val/kl", "val/nelbo", "test/loss", "epochs", "seconds_per_epoch")


def collect_jobs(sweep_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per job folder (``<sweep>/<n>/`` with ``.hydra/overrides.yaml``): the overrides that vary
    between jobs and the final metrics from its ``metrics.json``; and the overrides every job shares."""
    job_dirs = sorted((p for p in sweep_dir.iterdir() if (p / ".hydra" / "overrides.yaml").is_file()), key=_job_order)
    overrides = {job: yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or [] for job in job_dirs}
    common = (
        [o for o in overrides[job_dirs[0]] if all(o in others for others in overrides.values())] if job_dirs else []
    )
    jobs = []
    for job_dir in job_dirs:
        metrics_file = job_dir / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        varying = " ".join(o for o in overrides[job_dir] if o not in common)
        row: dict[str, Any] = {"job": job_dir.name, "overrides": varying}
        row.update({column: metrics.get(column, float("nan")) for column in METRIC_COLUMNS})
        jobs.append(row)
    return jobs, common


def _job_order(path: Path) -> tuple[int, str]:
    return (int(path.name), "") if path.name.isdigit() else (1 << 30, path.name)


def sort_by(jobs: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Best first; jobs without the metric (failed, unfinished) last."""
    return sorted(jobs, key=lambda row: (math.isnan(row[metric]), row[metric] if not math.isnan(row[metric]) else 0))


def summarise(sweep_dir: Path, metric: str = "val/loss") -> list[dict[str, Any]]:
    """Write ``summary.{md,csv,png}`` into ``sweep_dir``; returns the sorted rows."""
    jobs, common = collect_jobs(sweep_dir)
    if not jobs:
        raise SystemExit(f"error: no job folders (with .hydra/overrides.yaml) in {sweep_dir}")
    jobs = sort_by(jobs, metric)
    table = markdown_table(jobs, ["job", "overrides", *METRIC_COLUMNS])
    shared = f"Overrides of every job: `{' '.join(common)}`\n\n" if common else ""
    (sweep_dir / "summary.md").write_text(f"# Sweep {sweep_dir.name}, sorted by {metric}\n\n{shared}" + table)
    write_csv(sweep_dir / "summary.csv", jobs, list(jobs[0]))
    labels = [f"{row['job']}: {row['overrides']}" for row in jobs]
    plots.ranked_bars(labels, [row[metric] for row in jobs], metric, title=f"Sweep {sweep_dir.name}").savefig(
        sweep_dir / "summary.png"
    )
    print(table + f"\nWritten: {sweep_dir / 'summary.md'}, summary.csv, summary.png")
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun folder, e.g. logs/train/multiruns/<date>_<time>")
    parser.add_argument("--metric", default="val/loss", help="metric to sort by (lower is better)")
    args = parser.parse_args()
    if not args.sweep_dir.is_dir():
        raise SystemExit(f"error: {args.sweep_dir} is not a folder")
    summarise(args.sweep_dir, args.metric)


if __name__ == "__main__":
    main()
