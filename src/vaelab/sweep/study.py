"""Optuna studies shared by a sweep, its jobs and its summary: storages from URLs, the study, the setting it
belongs to, its best trial written out, a job's trial. Each job
reaches its own trial through the storage (``trial_of_this_job``) to report for pruning, so any launcher whose jobs
can open the storage works (local, joblib, SLURM).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from vaelab.errors import VaelabError
from vaelab.targets import instantiate, require
from vaelab.validators import make_folder

if TYPE_CHECKING:  # the sweeps extra: imported where it is used (a plain install has no Optuna)
    import optuna

log = logging.getLogger(__name__)
JOURNAL_PREFIX = "journal:"
SQLITE_PREFIX = "sqlite:///"
RESULTS_FILE = "optimization_results.yaml"  # in a sweep folder: the study's best trial
SETTING_ATTR = "vaelab_setting"  # study user attribute: the model and search space the study belongs to


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
    optuna = require("optuna", extra="sweeps", purpose="hparams_search=optuna")
    path = storage_file(url)
    if path is not None:
        if not path.name or path.is_dir():
            raise VaelabError(f"hydra.sweeper.storage={url} names no file (a folder or nothing); "
                              "give one, e.g. journal:logs/optuna/vaelab.log")  # fmt: skip
        make_folder(path.parent, f"hydra.sweeper.storage={url}")
    if url.startswith(JOURNAL_PREFIX):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        try:
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as error:
            raise VaelabError(f"hydra.sweeper.storage={url}: cannot open {path} ({error.strerror})") from None
    engine_kwargs: dict[str, Any] = {}
    if url.startswith(SQLITE_PREFIX):
        # Several sweep processes on one file: wait for the write lock instead of failing at once.
        engine_kwargs["connect_args"] = {"timeout": 60}
    for attempt in range(5):  # workers that start together on a new database (a file or a server) race to create it
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval
                )
        except Exception as error:  # the loser of that race sees a duplicate table or key: try again
            reason = (str(error).splitlines() or [type(error).__name__])[0]
            time.sleep(0.5 + attempt if attempt < 4 else 0)
    raise VaelabError(f"hydra.sweeper.storage={url}: cannot open it as an Optuna storage ({reason}).")


def build_pruner(config: Mapping[str, Any] | None) -> optuna.pruners.BasePruner:
    """The configured pruner (a ``_target_`` mapping), or none."""
    optuna = require("optuna", extra="sweeps", purpose="hparams_search=optuna")
    return instantiate(config, key="hydra.sweeper.pruner") if config else optuna.pruners.NopPruner()


def open_study(
    storage: optuna.storages.BaseStorage,
    study_name: str,
    direction: str = "minimize",
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    """Create the study, or load it if the storage (``open_storage``) already has one of that name (trials then add
    up)."""
    optuna = require("optuna", extra="sweeps", purpose="hparams_search=optuna")
    # The sweeper records heartbeats itself (heartbeats()); Optuna warns that they are meant for optimize().
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    verbosity = optuna.logging.get_verbosity()
    # Optuna's "Using an existing study" would come before a refusal of that study: the sweeper says so after its
    # checks.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            storage=storage, study_name=study_name, direction=direction, sampler=sampler, pruner=pruner,
            load_if_exists=True,
        )  # fmt: skip
    except ValueError as error:  # a direction that is neither minimize nor maximize
        raise VaelabError(f"study {study_name!r}: {error}") from None
    finally:
        optuna.logging.set_verbosity(verbosity)
    kept = study.direction.name.lower()  # Optuna loads an existing study whatever direction is asked
    if kept != str(direction).lower():
        raise VaelabError(f"study {study_name!r} is to {kept}, not {direction}: pass another hydra.sweeper.study_name.")
    return study


def trial_of_this_job(sweep_dir: Path, number: int) -> optuna.Trial:
    """The trial this job runs for: its ``number`` (the vaelab Optuna sweeper tells a job its trial's, ``Job.trial``)
    in the study its sweep's ``STUDY_FILE`` names (storage, study, pruner)."""
    import yaml

    from vaelab.run.folder import STUDY_FILE

    optuna = require("optuna", extra="sweeps", purpose="hparams_search=optuna")
    reference = {**yaml.safe_load((sweep_dir / STUDY_FILE).read_text()), "number": number}
    storage = open_storage(reference["storage"])
    pruner = build_pruner(reference.get("pruner"))  # the study's sampler stays the sweeper's: a job only reports
    study = optuna.load_study(study_name=reference["study_name"], storage=storage, pruner=pruner)
    study_id = storage.get_study_id_from_name(study.study_name)
    return optuna.trial.Trial(study, storage.get_trial_id_from_study_id_trial_number(study_id, reference["number"]))


def check_setting(study: optuna.Study, storage: str | None, setting: dict[str, Any], allow_other: bool) -> None:
    """A study belongs to the model, the searched keys and every other setting that made it (user attribute
    ``vaelab_setting``; the searched ranges may change between sweeps): trials of another would become its best,
    with best parameters that omit what differed. Refused unless ``allow_other_setting``; a study without the
    record gets it."""
    fixed, recorded = setting["fixed"], study.user_attrs.get(SETTING_ATTR)
    if recorded is None:
        study.set_user_attr(SETTING_ATTR, setting)
        return
    if allow_other:
        return
    advice = ("pass another hydra.sweeper.study_name, or hydra.sweeper.allow_other_setting=true to add these "
              "trials to it.")  # fmt: skip
    if recorded.get("model") != setting["model"] or recorded.get("space") != setting["space"]:
        what = "model" if recorded.get("model") != setting["model"] else "search space"
        raise VaelabError(
            f"study {study.study_name!r} in {storage} belongs to model={recorded.get('model')} searching "
            f"{recorded.get('space')}, and this sweep has another {what} (model={setting['model']} searching "
            f"{setting['space']}); {advice}"
        )
    before = recorded.get("fixed")  # None: a study recorded before fixed settings were
    differing = sorted(key for key in {*fixed, *(before or {})} if (before or {}).get(key) != fixed.get(key))
    if before is not None and differing:
        key = differing[0]
        raise VaelabError(
            f"study {study.study_name!r} in {storage} was searched with {key}={before.get(key)!r}, this sweep "
            f"has {key}={fixed.get(key)!r} ({len(differing)} fixed settings differ); {advice}"
        )


def write_results(study: optuna.Study, sweep_dir: Path, storage: str | None, fixed: list[str]) -> None:
    """``optimization_results.yaml``: the best trial's parameters, with the overrides every trial shared (the
    rest of each job's settings is in its folder's .hydra/config.yaml)."""
    completed = [t for t in study.trials if t.state.name == "COMPLETE"]
    results: dict[str, Any] = {"name": "optuna", "study_name": study.study_name, "storage": storage,
                               "trials": len(study.trials), "completed": len(completed),
                               "fixed_overrides": list(fixed)}  # fmt: skip
    if completed:
        results.update(best_trial=study.best_trial.number, best_params=study.best_params, best_value=study.best_value)
    (sweep_dir / RESULTS_FILE).write_text(OmegaConf.to_yaml(results))
    log.info(f"Best of study {study.study_name}: {results.get('best_params')} -> {results.get('best_value')}")
