"""Summarise a multirun folder: every job's overrides, status and final metrics, sorted, as markdown, CSV and a figure.

    vaelab-sweeps logs/train/multiruns/<date>_<time> [--metric val/loss]     (or python -m vaelab.sweep.summary)

Writes ``summary.{md,csv,png}`` (one row per job, failed ones with their error line), ``settings.{md,csv,png}``
(jobs that differ only by seed as one setting, ``vaelab.sweep.replicas``: n, mean, std, 95 % interval, best run,
ranked by mean) and, for an Optuna sweep, ``study.{md,csv}`` and Optuna's history and importance plots of the
whole study.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from vaelab.errors import VaelabError
from vaelab.figures import plots
from vaelab.run.folder import HISTORY_COLUMNS, STUDY_FILE, SWEEP_RECORD, RunFolder, RunStatus, sweep_jobs
from vaelab.sweep.replicas import (
    group_replicas,
    rank_by_mean,
    setting_of,
    spread,
    without_seeds,
    write_ranking,
)
from vaelab.sweep.study_summary import summarise_study
from vaelab.tables import as_number, markdown_table, short_number, write_csv

METRIC_COLUMNS = ("val/loss", "val/recon", "val/kl", "val/nelbo", "test/loss",
                  "epochs", "best_epoch", "seconds_per_epoch")  # fmt: skip
EPOCH_COLUMNS = {"epochs", "best_epoch"}
CONVENTION_COLUMNS = ("binarize", "likelihood")
# What a run can record, whether or not these jobs did (test/* only when they test).
TEST_COLUMNS = [column.replace("val/", "test/") for column in HISTORY_COLUMNS if column.startswith("val/")]
KNOWN_METRICS = {*METRIC_COLUMNS, *HISTORY_COLUMNS, *TEST_COLUMNS}


def collect_jobs(
    sweep_dir: Path, metric_columns: tuple[str, ...] = METRIC_COLUMNS
) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per job folder: the overrides that vary between jobs, its status and error line, its final metrics
    and its best epoch (``history.csv``); and the overrides every job shares."""
    jobs_found = list(map(RunFolder, sweep_jobs(sweep_dir)))
    overrides = {job: job.overrides() for job in jobs_found}
    common = (
        [o for o in overrides[jobs_found[0]] if all(o in others for others in overrides.values())] if jobs_found else []
    )
    jobs = []
    for job in jobs_found:
        metrics = job.read_metrics()
        status, error = job.status()
        unreadable = job.unreadable_files() if status != RunStatus.FAILED else []
        if unreadable:  # named in the summary: the job's record cannot be trusted
            status, error = RunStatus.UNREADABLE, "cannot read " + ", ".join(str(job.path / n) for n in unreadable)
        points = job.validation_losses()  # the best epoch: the lowest val/loss in history.csv
        metrics["best_epoch"] = min(points, key=lambda point: point[1])[0] if points else float("nan")
        varying = " ".join(o for o in overrides[job] if o not in common)
        seed = job.config().get("seed")
        row: dict[str, Any] = {"job": job.path.name, "overrides": varying, "seed": seed if seed is not None else "",
                               "status": status, "error": error, "setting_key": setting_of(job)}  # fmt: skip
        # The convention of its numbers (docs/evaluation.md): the pixels it saw, its likelihood.
        row.update({key: metrics.get(key, "") for key in CONVENTION_COLUMNS})
        row.update({column: as_number(metrics.get(column)) for column in metric_columns})
        for column in EPOCH_COLUMNS & row.keys():  # counts print as 4, not 4.00
            row[column] = row[column] if math.isnan(row[column]) else int(row[column])
        jobs.append(row)
    return jobs, common


def never_ran(sweep_dir: Path) -> list[tuple[str, str]]:
    """The jobs of a grid sweep (Hydra's basic sweeper) that have no folder, with the overrides that set them apart:
    the sweep stopped before them. [] for a search (its trials are asked one by one) or without Hydra's record."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    from vaelab.run.overrides import is_grid, parse_all

    try:
        hydra = yaml.safe_load((sweep_dir / SWEEP_RECORD).read_text())["hydra"]
        if not is_grid(hydra["sweeper"]["_target_"]):
            return []
        params = [f"{key}={value}" for key, value in (hydra["sweeper"].get("params") or {}).items()]
        overrides = parse_all([*params, *hydra["overrides"]["task"]])
        jobs = [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]
    except Exception:  # noqa: BLE001 (no record, or not one this reads: nothing to name)
        return []
    shared = [o for o in jobs[0] if all(o in job for job in jobs)] if jobs else []
    return [(str(number), " ".join(o for o in job if o not in shared)) for number, job in enumerate(jobs)
            if not (sweep_dir / str(number)).is_dir()]  # fmt: skip


def short_overrides(overrides: str) -> str:
    """A job's overrides as a chart label: each key by its last part where that is unique among them
    (``model.optimizer.lr`` -> ``lr``), long numbers to 3 significant digits (``0.0018724000045`` -> ``0.00187``)."""
    pairs = [item.partition("=") for item in overrides.split()]
    last_parts = [key.rsplit(".", 1)[-1] for key, _, _ in pairs]
    short = []
    for (key, equals, value), last in zip(pairs, last_parts, strict=True):
        name = last if last_parts.count(last) == 1 and not key.startswith(("+", "~")) else key
        short.append(f"{name}{equals}{short_number(value)}")
    return " ".join(short)


def summarise(sweep_dir: Path, metric: str = "val/loss") -> list[dict[str, Any]]:
    """Write ``summary.{md,csv,png}`` (and the study's files for an Optuna sweep) into ``sweep_dir``; returns
    the sorted rows."""
    metric_columns = METRIC_COLUMNS if metric in METRIC_COLUMNS else (metric, *METRIC_COLUMNS)
    jobs, common = collect_jobs(sweep_dir, metric_columns)
    if not jobs:
        raise VaelabError(f"no job folders (with .hydra/overrides.yaml) in {sweep_dir}")
    recorded = sorted({key for job in sweep_jobs(sweep_dir) for key in RunFolder(job).read_metrics()} - {"status"})
    if metric not in KNOWN_METRICS and metric not in recorded:  # a misspelling would rank every job as equal
        raise VaelabError(f"--metric {metric}: no job of {sweep_dir} recorded it; its jobs recorded "
                          f"{', '.join(recorded) or 'no metric'}")  # fmt: skip
    # Best first; jobs without the metric (failed, pruned early, unfinished) last.
    jobs = sorted(jobs, key=lambda row: (math.isnan(row[metric]), row[metric] if not math.isnan(row[metric]) else 0))
    table = markdown_table(jobs, ["job", "status", "overrides", *CONVENTION_COLUMNS, *metric_columns])
    shared = f"Overrides of every job: `{' '.join(common)}`\n\n" if common else ""
    failed = [row for row in jobs if row["status"] in (RunStatus.FAILED, RunStatus.UNREADABLE)]
    failures = "".join(f"- job {row['job']}: {row['error']}\n" for row in failed)
    failures = f"\n## Failed jobs\n\n{failures}" if failed else ""
    missing = "".join(f"- job {name} ({overrides}): never ran\n" for name, overrides in never_ran(sweep_dir))
    if missing:
        failures += f"\n## Jobs that never ran\n\n{missing}\n`vaelab-train resume={sweep_dir}` runs them.\n"
    (sweep_dir / "summary.md").write_text(f"# Sweep {sweep_dir.name}, sorted by {metric}\n\n{shared}{table}{failures}")
    write_csv(sweep_dir / "summary.csv", jobs, [column for column in jobs[0] if column != "setting_key"])
    labels = [f"{row['job']}: {short_overrides(row['overrides'])}" for row in jobs]
    plots.ranked_bars(labels, [row[metric] for row in jobs], metric, title=f"Sweep {sweep_dir.name}").savefig(
        sweep_dir / "summary.png"
    )
    print(table + failures + f"\nWritten: {sweep_dir / 'summary.md'}, summary.csv, summary.png")
    summarise_settings(sweep_dir, jobs, metric)
    if (sweep_dir / STUDY_FILE).is_file():
        try:
            summarise_study(sweep_dir)
        except (KeyError, VaelabError) as error:  # the storage moved or was deleted: the job table still stands
            print(f"Could not read the Optuna study of this sweep: {error}")
    return jobs


def settings_table(jobs: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """One row per setting (jobs that differ only by seed), best mean first: the spread of ``metric`` over its jobs,
    which jobs and seeds, and whether its mean differs from the best setting's beyond the noise (``rank_by_mean``)."""
    rows = []
    for group in group_replicas(jobs, key=lambda row: row["setting_key"]):
        values = [row[metric] for row in group]
        summary = spread(values)
        best_row = min((row for row in group if math.isfinite(row[metric])), key=lambda row: row[metric], default=None)
        label = " ".join(without_seeds(group[0]["overrides"].split())) or "(no varying overrides)"
        rows.append({"setting": label, **summary.as_row(), "best_job": best_row["job"] if best_row else "",
                     "not_counted": len(group) - summary.n, "jobs": " ".join(row["job"] for row in group),
                     "seeds": " ".join(str(row["seed"]) for row in group), "spread": summary})  # fmt: skip
    return rank_by_mean(rows)


SETTING_COLUMNS = ("setting", "n", "mean", "std", "ci95", "best", "best_job", "vs_best", "not_counted", "jobs",
                   "seeds")  # fmt: skip


def summarise_settings(sweep_dir: Path, jobs: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Write ``settings.{md,csv,png}``: the sweep's settings ranked by their mean ``metric`` over seeds."""
    rows = settings_table(jobs, metric)
    intro = (f"Jobs that differ only by seed are one setting. n: jobs with a finite {metric} (not_counted: failed, "
             "pruned or unfinished ones);")  # fmt: skip
    plots.ranked_bars(
        [short_overrides(row["setting"]) for row in rows], [row["mean"] for row in rows], metric,
        title=f"Sweep {sweep_dir.name}: settings", errors=[row["ci95"] for row in rows],
        points=[[job[metric] for job in jobs if job["job"] in row["jobs"].split()] for row in rows],
    ).savefig(sweep_dir / "settings.png")  # fmt: skip
    write_ranking(sweep_dir, "settings", f"Settings of sweep {sweep_dir.name}, {metric}", intro, rows, SETTING_COLUMNS)
    return rows


if __name__ == "__main__":
    from vaelab.cli_tools import sweeps_command

    sweeps_command()
