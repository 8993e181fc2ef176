"""The sweeper's config schema, registered as ``hydra/sweeper=vaelab_optuna``."""

# No `from __future__ import annotations`: Hydra loads plugin modules in a way dataclasses then cannot resolve.
from dataclasses import dataclass, field, fields
from typing import Any

from hydra.core.config_store import ConfigStore

from vaelab.errors import VaelabError


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.vaelab_optuna_sweeper.sweeper.OptunaSweeper"
    # sampler and pruner reach the sweeper as configs: it builds them (the sampler's seed depends on the study).
    _recursive_: bool = False
    # An Optuna storage: sqlite:///<file>.db, another RDB URL, or journal:<file> (network file systems).
    storage: str | None = None
    study_name: str = "vaelab"
    # Trials this command runs; running it again on the same storage and study adds as many more.
    n_trials: int = 20
    # Trials launched at once (a batch for the launcher: parallel with joblib or submitit).
    n_jobs: int = 1
    direction: str = "minimize"
    sampler: Any = field(default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": None})
    # An Optuna pruner (_target_ mapping), or null for none.
    pruner: Any = None
    # Seconds between running trials' heartbeats (RDB storages): the next sweep fails a killed sweep's trials. null: off
    heartbeat_interval: int | None = 60
    # Seeds per trial: each trial runs as this many jobs (folders <trial>_<replica>), one per seed, and its value is
    # their mean; each seed's value stays on the trial (user attributes seeds, replica_values). Pruning decides on
    # the first seed, which every trial shares, and a trial that survives it runs its other seeds unpruned.
    replicas: int = 1
    # The seeds of a trial's replicas (as many as `replicas`); null: the config's seed, seed + 1, ...
    replica_seeds: list[int] | None = None
    # > 0: search nothing; re-run the study's best `rerun_top` trials over `replicas` fresh seeds, ranked by mean.
    rerun_top: int = 0
    # A study belongs to the model and search space that made it; true adds this sweep's trials to a study of another.
    allow_other_setting: bool = False
    # The search space in Hydra's override syntax: key -> choice(...), range(...), interval(...), tag(log, ...).
    params: dict[str, str] | None = None

    @classmethod
    def check(cls, settings: dict[str, Any]) -> None:
        """The settings a sweep cannot run with, each one ``VaelabError`` line naming it: checked when Hydra builds the
        sweeper, before Optuna loads or any trial is asked."""
        known = {f.name for f in fields(cls)}
        conf = cls(**{key: value for key, value in settings.items() if key in known})
        if not conf.storage:
            raise VaelabError(
                "hydra.sweeper.storage is not set: give an Optuna storage, e.g. sqlite:///logs/optuna/vaelab.db"
            )
        for key, least in (("n_trials", 1), ("n_jobs", 1), ("replicas", 1), ("rerun_top", 0)):
            value = getattr(conf, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise VaelabError(f"hydra.sweeper.{key} must be an integer >= {least}, got {value!r}.")
        seeds = conf.replica_seeds
        if seeds is not None and (len(seeds) != conf.replicas or not all(isinstance(seed, int) for seed in seeds)):
            raise VaelabError(
                f"hydra.sweeper.replica_seeds must be {conf.replicas} integers (hydra.sweeper.replicas), got "
                f"{list(seeds)!r}."
            )


ConfigStore.instance().store(group="hydra/sweeper", name="vaelab_optuna", node=OptunaSweeperConf, provider="vaelab")
