"""Runs as replicas: which runs differ only by their seed, and the spread of a metric over them.

Two runs are replicas of one *setting* when their saved configs are equal once the seeds (``REPLICA_KEYS``) and the
keys that only say where things go or how they are shown (``PLACE_KEYS``) are left out. Per setting: n, mean,
standard deviation, 95 % confidence half-width of the mean (Student t) and the best run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from scipy import stats

from vaelab.run.folder import RunFolder
from vaelab.tables import markdown_table, write_csv

# The random streams a run draws from: runs that differ only here are replicas of one setting.
REPLICA_KEYS = ("seed", "data.shuffle_seed")
# Where a run reads and writes, and what it prints or records about itself: not part of what it trains.
PLACE_KEYS = (
    "task_name", "tags", "print_config", "ckpt_path", "resume", "test", "optimized_metric", "paths", "logger",
    "callbacks", "hydra", "trainer.default_root_dir", "trainer.enable_progress_bar", "data.data_dir",
    "data.download", "data.num_workers", "data.pin_memory", "data.eval_batch_size",
)  # fmt: skip

# The study user attribute that holds the re-runs of trial <n> (seeds, values, mean, std, ci95).
RERUN_PREFIX = "rerun_of_trial_"

Item = TypeVar("Item")


@dataclass(frozen=True)
class Spread:
    """A metric over the replicas of one setting (NaN values, from failed or pruned runs, left out)."""

    n: int
    mean: float
    std: float  # sample standard deviation (n - 1); NaN below 2 runs
    ci95: float  # half-width of the 95 % confidence interval of the mean (Student t, n - 1 dof); NaN below 2
    best: float  # the lowest value

    def as_row(self, prefix: str = "") -> dict[str, float | int]:
        return {f"{prefix}{name}": getattr(self, name) for name in ("n", "mean", "std", "ci95", "best")}


def spread(values: Iterable[float]) -> Spread:
    """n, mean, sample std, 95 % CI half-width and minimum of the finite ``values``."""
    finite = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    n = len(finite)
    if n == 0:
        return Spread(0, math.nan, math.nan, math.nan, math.nan)
    mean = math.fsum(finite) / n
    if n == 1:
        return Spread(1, mean, math.nan, math.nan, mean)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / (n - 1))
    return Spread(n, mean, std, float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n), min(finite))


def differ_beyond_noise(a: Spread, b: Spread) -> bool | None:
    """Whether two settings' means differ at the 5 % level (Welch's t-test); None when either has < 2 runs."""
    if a.n < 2 or b.n < 2:
        return None
    if a.std == 0 and b.std == 0:
        return a.mean != b.mean
    return bool(stats.ttest_ind_from_stats(a.mean, a.std, a.n, b.mean, b.std, b.n, equal_var=False).pvalue < 0.05)


def rank_by_mean(rows: list[dict[str, Any]], maximize: bool = False) -> list[dict[str, Any]]:
    """``rows`` (each with a ``spread``) best mean first, those without a value last; each gets ``rank`` and
    ``vs_best``: ``best``, ``worse`` (beyond the noise, ``differ_beyond_noise``), ``within noise``, or ``-``."""
    ranked = sorted(rows, key=lambda row: (row["spread"].n == 0, (-1 if maximize else 1) * row["spread"].mean
                                           if row["spread"].n else 0.0))  # fmt: skip
    verdicts = {True: "worse", False: "within noise", None: "-"}
    for rank, row in enumerate(ranked, 1):
        if rank == 1:
            verdict = "best" if row["spread"].n else "-"  # a setting without a value is nobody's best
        else:
            verdict = verdicts[differ_beyond_noise(row["spread"], ranked[0]["spread"])]
        row.update(rank=rank, vs_best=verdict)
    return ranked


def write_ranking(folder: Path, name: str, title: str, intro: str, rows: list[dict[str, Any]], columns: Sequence[str]
                  ) -> None:  # fmt: skip
    """``<name>.md`` (``title``, ``intro``, what the spread columns mean, the table) and ``<name>.csv`` of rows that
    ``rank_by_mean`` ranked; prints the table and the ``<name>.*`` files."""
    table = markdown_table(rows, columns)
    notes = ("std: sample standard deviation; ci95: half-width of the 95 % confidence interval of the mean (Student "
             "t); vs_best: whether the mean differs from the best one's beyond the noise (Welch's t-test, 5 %; '-' "
             "below two runs).")  # fmt: skip
    (folder / f"{name}.md").write_text(f"# {title}\n\n{intro} {notes}\n\n{table}")
    write_csv(folder / f"{name}.csv", rows, columns)
    written = ", ".join(sorted(path.name for path in folder.glob(f"{name}.*")))
    print(f"\n{table}Written in {folder}: {written}", flush=True)


def setting_key(config: Any) -> str:
    """A run's config (as saved in ``.hydra/config.yaml``) without its seeds and place keys, as canonical text:
    equal for replicas of one setting."""
    trimmed = json.loads(json.dumps(config, default=str)) if isinstance(config, dict) else {}
    for dotted in (*REPLICA_KEYS, *PLACE_KEYS):
        _drop(trimmed, dotted.split("."))
    return json.dumps(trimmed, sort_keys=True)


def _drop(tree: dict[str, Any], keys: Sequence[str]) -> None:
    node = tree
    for key in keys[:-1]:
        node = node.get(key)
        if not isinstance(node, dict):
            return
    node.pop(keys[-1], None)


def without_seeds(overrides: Iterable[str]) -> list[str]:
    """Command-line overrides without those that set a replica key (``seed=43``, ``data.shuffle_seed=1``)."""
    return [o for o in overrides if o.lstrip("+~").partition("=")[0] not in REPLICA_KEYS]


def group_replicas(items: Sequence[Item], key: Callable[[Item], str]) -> list[list[Item]]:
    """``items`` grouped by ``key``, groups in the order of their first member."""
    groups: dict[str, list[Item]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return list(groups.values())


def setting_of(folder: RunFolder) -> str:
    """The setting a run folder trained: its ``setting_key``; its overrides without seeds where no config was saved."""
    config = folder.config()
    return setting_key(config) if config else json.dumps(sorted(without_seeds(folder.overrides())))
