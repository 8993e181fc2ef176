"""Optuna studies shared by a sweep and its jobs: storages from URLs, search spaces from Hydra's override syntax.

The sweeper (``hydra_plugins.vaelab_optuna_sweeper``) asks trials and launches them as Hydra jobs; each
job reaches its own trial through the storage (``trial_of_this_job``) to report per-epoch values for
pruning, so this works with any launcher whose jobs can open the storage (local, joblib, SLURM).
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra.utils
import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages._heartbeat import is_heartbeat_enabled

from vaelab.errors import VaelabError

# The sweeper sets this in each job's environment (hydra.job.env_set): the number of the job's trial.
TRIAL_ENV = "VAELAB_OPTUNA_TRIAL"
JOURNAL_PREFIX = "journal:"
SQLITE_PREFIX = "sqlite:///"


def storage_file(url: str) -> Path | None:
    """The local file behind a ``sqlite:///`` or ``journal:`` storage URL; None for a database server."""
    if url.startswith(JOURNAL_PREFIX):
        return Path(url.removeprefix(JOURNAL_PREFIX).removeprefix("//"))
    if url.startswith(SQLITE_PREFIX):
        return Path(url.removeprefix(SQLITE_PREFIX))
    return None


def open_storage(url: str, heartbeat_interval: int | None = None) -> optuna.storages.BaseStorage:
    """An Optuna storage: an RDB URL (``sqlite:///file.db``, ``postgresql://...``) or ``journal:<file>``, an
    append-only log that is safe on network file systems where sqlite is not. Creates a file's folder.

    ``heartbeat_interval`` (RDB storages): trials whose sweep process stopped sending heartbeats for two
    intervals (killed, node lost) can be marked failed by ``fail_stale_trials``."""
    path = storage_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    if url.startswith(JOURNAL_PREFIX):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(path)))
    engine_kwargs: dict[str, Any] = {}
    if url.startswith(SQLITE_PREFIX):
        # Several sweep processes on one file: wait for the write lock instead of failing at once.
        engine_kwargs["connect_args"] = {"timeout": 60}
    attempts = 5 if url.startswith(SQLITE_PREFIX) else 1
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval
                )
        except Exception as error:  # two workers creating one new sqlite file race on its schema: try again
            if attempt == attempts - 1:
                first_line = str(error).splitlines()[0]
                raise VaelabError(
                    f"hydra.sweeper.storage={url}: cannot open it as an Optuna storage ({first_line})."
                ) from None
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def instantiate_setting(key: str, config: Mapping[str, Any]) -> Any:
    """``hydra.utils.instantiate(config)``; a bad target or argument is one ``VaelabError`` naming ``key``."""
    try:
        return hydra.utils.instantiate(config)
    except Exception as error:
        cause = error.__cause__ or error
        raise VaelabError(f"{key}: cannot build {config.get('_target_')!r} ({str(cause).splitlines()[0]})") from None


def build_pruner(config: Mapping[str, Any] | None) -> optuna.pruners.BasePruner:
    """The configured pruner (a ``_target_`` mapping), or none."""
    return instantiate_setting("hydra.sweeper.pruner", config) if config else optuna.pruners.NopPruner()


def open_study(
    storage: str,
    study_name: str,
    direction: str = "minimize",
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    heartbeat_interval: int | None = None,
) -> optuna.Study:
    """Create the study, or load it if the storage already has one of that name (trials then add up)."""
    # The sweeper records heartbeats itself (heartbeats()); Optuna warns that they are meant for optimize().
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    try:
        return optuna.create_study(
            storage=open_storage(storage, heartbeat_interval),
            study_name=study_name,
            direction=direction,
            sampler=sampler,
            pruner=pruner,
            load_if_exists=True,
        )
    except ValueError as error:  # e.g. an existing study with another direction
        raise VaelabError(f"study {study_name!r} in {storage}: {error}") from None


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Mark FAIL the RUNNING trials whose sweep process stopped sending heartbeats; returns their numbers."""
    before = {t.number for t in study.trials if t.state == optuna.trial.TrialState.RUNNING}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    return sorted(t.number for t in study.trials if t.number in before and t.state == optuna.trial.TrialState.FAIL)


@contextmanager
def heartbeats(study: optuna.Study, trials: list[optuna.Trial], interval: int | None) -> Iterator[None]:
    """Record a heartbeat for each of ``trials`` every ``interval`` seconds while the block runs (RDB storages)."""
    storage = study._storage
    if not interval or not is_heartbeat_enabled(storage):
        yield
        return
    study_id = storage.get_study_id_from_name(study.study_name)
    trial_ids = [storage.get_trial_id_from_study_id_trial_number(study_id, trial.number) for trial in trials]
    stop = threading.Event()

    def beat() -> None:
        while True:
            for trial_id in trial_ids:
                storage.record_heartbeat(trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name="optuna-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def trial_of_this_job(sweeper_config: Mapping[str, Any]) -> optuna.Trial | None:
    """The trial this job runs for, when the vaelab Optuna sweeper launched it; else None."""
    number = os.environ.get(TRIAL_ENV)
    if number is None or not sweeper_config.get("storage"):
        return None
    study = open_study(
        sweeper_config["storage"],
        sweeper_config["study_name"],
        sweeper_config.get("direction", "minimize"),
        pruner=build_pruner(sweeper_config.get("pruner")),
    )
    storage = study._storage
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), int(number)
    )
    return optuna.trial.Trial(study, trial_id)


def format_value(value: Any) -> str:
    """A Python value as Hydra override text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{key}:{format_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, str) and (not value or any(c in value for c in " ,()[]{}:=\"'\\")):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(value)


def distribution_of(override: Override) -> BaseDistribution:
    """The Optuna distribution of one sweep override: ``choice(...)``, ``range(...)``, ``interval(...)``,
    optionally ``tag(log, ...)``. Choices that are not plain values (lists, dicts) are searched as their
    override text."""
    sweep = override.value()
    log = "log" in getattr(sweep, "tags", set())
    if isinstance(sweep, ChoiceSweep):
        choices = list(sweep.list)
        plain = all(choice is None or isinstance(choice, (bool, int, float, str)) for choice in choices)
        return CategoricalDistribution(choices if plain else [format_value(choice) for choice in choices])
    if isinstance(sweep, RangeSweep):
        values = list(override.sweep_iterator())
        if all(isinstance(v, int) for v in values):
            return IntDistribution(int(values[0]), int(values[-1]), step=int(sweep.step), log=log)
        return FloatDistribution(float(values[0]), float(values[-1]), step=float(sweep.step), log=log)
    if isinstance(sweep, IntervalSweep):
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):
            return IntDistribution(sweep.start, sweep.end, log=log)
        return FloatDistribution(float(sweep.start), float(sweep.end), log=log)
    raise VaelabError(f"{override.input_line}: not a search space (use choice, range or interval).")


def split_search_space(lines: list[str]) -> tuple[dict[str, BaseDistribution], list[str]]:
    """Overrides (``key=value`` text) -> the search space (sweep overrides) and the fixed overrides (the rest)."""
    space: dict[str, BaseDistribution] = {}
    fixed: list[str] = []
    for override in OverridesParser.create().parse_overrides(lines):
        if override.is_sweep_override():
            try:
                space[override.get_key_element()] = distribution_of(override)
            except ValueError as error:
                raise VaelabError(f"{override.input_line}: {error}") from None
        else:
            fixed.append(override.input_line or f"{override.get_key_element()}={override.get_value_element_as_str()}")
    return space, fixed


def trial_overrides(params: Mapping[str, Any]) -> list[str]:
    """A trial's parameters as Hydra overrides (categorical override texts go in as they are)."""
    return [f"{key}={value if isinstance(value, str) and value[:1] in '[{' else format_value(value)}"
            for key, value in params.items()]  # fmt: skip
