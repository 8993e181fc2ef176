"""A Hydra sweeper that runs an Optuna study kept in a persistent storage.

Each batch of ``n_jobs`` trials is asked from the study, launched as Hydra jobs through the configured
launcher, and told back: the job's returned metric for a completed trial, ``PRUNED`` when the job stopped
on the pruner's word (its ``metrics.json`` says so), ``FAIL`` otherwise. Job folders are named by trial
number, so sweeps that continue a study, or run beside each other on one storage, never share a folder.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from vaelab.errors import VaelabError
from vaelab.run_folder import RunFolder
from vaelab.studies import (
    TRIAL_ENV,
    build_pruner,
    fail_stale_trials,
    heartbeats,
    instantiate_setting,
    open_study,
    split_search_space,
    trial_overrides,
)

log = logging.getLogger(__name__)
STUDY_FILE = "optuna_study.yaml"  # in the sweep folder: where the study lives, for `python -m vaelab.sweeps`
RESULTS_FILE = "optimization_results.yaml"


class OptunaSweeper(Sweeper):
    def __init__(
        self,
        storage: str | None,
        study_name: str,
        n_trials: int,
        n_jobs: int,
        direction: str,
        sampler: Any,
        pruner: Any,
        params: dict[str, str] | None,
        heartbeat_interval: int | None = 60,
    ) -> None:
        self.storage = storage
        self.study_name = study_name
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.direction = direction
        self.sampler_config = _plain(sampler)
        self.pruner_config = _plain(pruner)
        self.params = dict(params or {})
        self.heartbeat_interval = heartbeat_interval

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.sweep_dir = Path(config.hydra.sweep.dir)

    def sweep(self, arguments: list[str]) -> list[optuna.trial.FrozenTrial]:
        try:
            return self._sweep(arguments)
        except VaelabError as error:  # a bad setting: one line, as train.py gives for its own
            print(f"error: {error}", file=sys.stderr)
            sys.exit(1)

    def _sweep(self, arguments: list[str]) -> list[optuna.trial.FrozenTrial]:
        if not self.storage:
            raise VaelabError(
                "hydra.sweeper.storage is not set: give an Optuna storage, e.g. sqlite:///logs/optuna/vaelab.db"
            )
        for key, value in (("n_trials", self.n_trials), ("n_jobs", self.n_jobs)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise VaelabError(f"hydra.sweeper.{key} must be an integer >= 1, got {value!r}.")
        space, fixed = split_search_space([f"{key}={value}" for key, value in self.params.items()] + list(arguments))
        if not space:
            raise VaelabError("nothing to search: hydra.sweeper.params is empty and no override is a sweep.")
        # Compose one job first, so a key the model lacks is one error here, not a failure of every trial.
        self.validate_batch_is_legal([fixed + trial_overrides({k: _example(d) for k, d in space.items()})])

        sampler = self._sampler(offset=0)  # built before any trial is asked: a bad target leaves no trial behind
        pruner = build_pruner(self.pruner_config)
        study = open_study(self.storage, self.study_name, self.direction, sampler, pruner, self.heartbeat_interval)
        stale = fail_stale_trials(study)
        if stale:
            log.info(f"Trials {stale} had no heartbeat (their sweep was killed): marked FAIL")
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, self.sweep_dir / "multirun.yaml")
        (self.sweep_dir / STUDY_FILE).write_text(
            OmegaConf.to_yaml({"storage": self.storage, "study_name": self.study_name, "direction": self.direction})
        )
        log.info(
            f"Study {self.study_name} in {self.storage}: {len(study.trials)} trials so far, {self.n_trials} to run"
        )

        launched, exhausted = 0, False
        while launched < self.n_trials and not exhausted:
            trials = [study.ask() for _ in range(min(self.n_jobs, self.n_trials - launched))]
            if launched == 0:
                # Seeded from the first trial's number: a continued study, or a second worker on the same
                # storage, samples new points instead of repeating the first run's.
                study.sampler = self._sampler(offset=trials[0].number)
            try:
                for trial in trials:
                    for name, distribution in space.items():
                        _suggest(trial, name, distribution)
            except ValueError as error:  # e.g. a key searched as choice() in this study before, interval() now
                for trial in trials:
                    study.tell(trial, state=TrialState.FAIL)
                raise VaelabError(
                    f"study {self.study_name!r} does not accept this search space ({error}); "
                    "give a new hydra.sweeper.study_name"
                ) from None
            exhausted = self._run_batch(study, trials, fixed)
            launched += len(trials)
        self._write_results(study)
        return study.trials

    def _sampler(self, offset: int) -> optuna.samplers.BaseSampler:
        config = dict(self.sampler_config or {"_target_": "optuna.samplers.TPESampler"})
        if config.get("seed") is not None:
            config["seed"] = int(config["seed"]) + offset
        return instantiate_setting("hydra.sweeper.sampler", config)

    def _run_batch(self, study: optuna.Study, trials: Sequence[optuna.Trial], fixed: list[str]) -> bool:
        """Launch the trials (consecutive numbers in one launch, so job folders carry the trial numbers); True when
        the sampler has run its whole search space (a grid or brute-force sampler)."""
        exhausted = False
        for group in _consecutive_runs(trials):
            overrides = [
                [*fixed, *trial_overrides(trial.params), f"++hydra.job.env_set.{TRIAL_ENV}={trial.number}"]
                for trial in group
            ]
            for trial in group:
                trial.set_user_attr("job_dir", str(self.sweep_dir / str(trial.number)))
            try:
                with heartbeats(study, group, self.heartbeat_interval):
                    returns = self.launcher.launch(overrides, initial_job_idx=group[0].number)
            except BaseException:
                for trial in group:  # interrupted: leave no trial RUNNING forever
                    study.tell(trial, state=TrialState.FAIL)
                raise
            for trial, job in zip(group, returns):
                exhausted = self._tell(study, trial, job) or exhausted  # every trial is told
        return exhausted

    def _tell(self, study: optuna.Study, trial: optuna.Trial, job: Any) -> bool:
        """Tell the study the job's outcome; True when the sampler has run its whole search space."""
        metrics = RunFolder(Path(str(job.hydra_cfg.hydra.runtime.output_dir))).read_metrics() if job.hydra_cfg else {}
        status = metrics.get("status", "completed") if metrics else "failed"  # no metrics.json: the job died
        value = job.return_value if job.status == JobStatus.COMPLETED else None
        if status == "pruned":
            outcome: dict[str, Any] = {"state": TrialState.PRUNED}
        elif status == "completed" and isinstance(value, (int, float)) and math.isfinite(value):
            outcome = {"values": float(value)}
        else:
            outcome = {"state": TrialState.FAIL}
        try:
            study.tell(trial, **outcome)
        except RuntimeError as error:
            # Grid and brute-force samplers call study.stop() once every point has run, which Optuna allows only
            # inside study.optimize(); the trial's result is stored by then. Stop launching: the search is done.
            if "Study.stop" not in str(error):
                raise
            log.info("The sampler has run every point of the search space: no more trials")
            exhausted = True
        else:
            exhausted = False
        log.info(f"Trial {trial.number}: {study.trials[trial.number].state.name} {trial.params} value={value}")
        return exhausted

    def _write_results(self, study: optuna.Study) -> None:
        completed = [t for t in study.trials if t.state == TrialState.COMPLETE]
        results: dict[str, Any] = {"name": "optuna", "study_name": self.study_name, "storage": self.storage,
                                   "trials": len(study.trials), "completed": len(completed)}  # fmt: skip
        if completed:
            results.update(
                best_trial=study.best_trial.number, best_params=study.best_params, best_value=study.best_value
            )
        (self.sweep_dir / RESULTS_FILE).write_text(OmegaConf.to_yaml(results))
        log.info(f"Best of study {self.study_name}: {results.get('best_params')} -> {results.get('best_value')}")


def _plain(config: Any) -> Any:
    return OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else config


def _suggest(trial: optuna.Trial, name: str, distribution: optuna.distributions.BaseDistribution) -> None:
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        trial.suggest_categorical(name, distribution.choices)
    elif isinstance(distribution, optuna.distributions.IntDistribution):
        trial.suggest_int(name, distribution.low, distribution.high, step=distribution.step, log=distribution.log)
    else:
        trial.suggest_float(name, distribution.low, distribution.high, step=distribution.step, log=distribution.log)


def _example(distribution: optuna.distributions.BaseDistribution) -> Any:
    """A value from the distribution, to check that the overrides compose."""
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return distribution.choices[0]
    return distribution.low


def _consecutive_runs(trials: Sequence[optuna.Trial]) -> list[list[optuna.Trial]]:
    groups: list[list[optuna.Trial]] = []
    for trial in trials:
        if groups and trial.number == groups[-1][-1].number + 1:
            groups[-1].append(trial)
        else:
            groups.append([trial])
    return groups
