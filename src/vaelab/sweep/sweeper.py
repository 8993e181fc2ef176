"""A Hydra sweeper that runs an Optuna study kept in a persistent storage (docs/sweeps.md).

Each batch of ``n_jobs`` trials is asked from the study, launched as Hydra jobs (folders named by trial number, or
``<trial>_<replica>`` with ``replicas``) and told back: the job's metric, ``PRUNED`` when its ``metrics.json``
says so, ``FAIL`` otherwise. ``replicas`` runs each trial over several seeds (its value: their mean);
``rerun_top`` searches nothing and re-runs the study's best trials over fresh seeds, ranked by mean.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from vaelab.config_tree import flat_config
from vaelab.errors import VaelabError
from vaelab.exits import ends_on_user_error
from vaelab.job import TRIAL_ENV
from vaelab.run.files import json_safe
from vaelab.run.folder import STUDY_FILE, SWEEP_RECORD, RunStatus
from vaelab.sweep.lifecycle import fail_stale_trials, heartbeats, job_outcome
from vaelab.sweep.replicas import setting_key, spread
from vaelab.sweep.rerun import rerun_best
from vaelab.sweep.space import split_search_space, suggest, trial_overrides
from vaelab.sweep.study import build_pruner, check_setting, open_storage, open_study, write_results
from vaelab.targets import instantiate

log = logging.getLogger(__name__)


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
        replicas: int = 1,
        replica_seeds: Sequence[int] | None = None,
        rerun_top: int = 0,
        allow_other_setting: bool = False,
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
        self.replicas = replicas
        self.replica_seeds = list(replica_seeds) if replica_seeds is not None else None
        self.rerun_top = rerun_top
        self.allow_other_setting = allow_other_setting

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.sweep_dir = Path(config.hydra.sweep.dir)

    @ends_on_user_error  # a bad setting: one line, as train.py gives for its own
    def sweep(self, arguments: list[str]) -> list[optuna.trial.FrozenTrial]:
        # The settings are checked when Hydra builds the sweeper (OptunaSweeperConf.check).
        space, fixed = split_search_space([f"{key}={value}" for key, value in self.params.items()] + list(arguments))
        if not space:
            raise VaelabError("nothing to search: hydra.sweeper.params is empty and no override is a sweep.")
        # Compose one job first, so a key the model lacks is one error here, not a failure of every trial.
        example = {k: d.choices[0] if isinstance(d, CategoricalDistribution) else d.low for k, d in space.items()}
        self.validate_batch_is_legal([fixed + trial_overrides(example)])
        fixed_settings = self._fixed_settings(fixed + trial_overrides(example), space)

        sampler = self._sampler(offset=0)  # built before any trial is asked: a bad target leaves no trial behind
        pruner = build_pruner(self.pruner_config)
        self._storage = open_storage(self.storage, self.heartbeat_interval)
        study = open_study(self._storage, self.study_name, self.direction, sampler, pruner)
        setting = {"model": str(self.config.hydra.runtime.choices.get("model")), "space": sorted(space),
                   "fixed": fixed_settings}  # fmt: skip
        check_setting(study, self.storage, setting, self.allow_other_setting)
        stale = fail_stale_trials(study)
        if stale:
            log.info(f"Trials {stale} had no heartbeat (their sweep was killed): marked FAIL")
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, self.sweep_dir / SWEEP_RECORD)
        # Where its study is, for vaelab-sweeps and for the jobs that report to a trial (studies.trial_of_this_job).
        (self.sweep_dir / STUDY_FILE).write_text(OmegaConf.to_yaml({
            "storage": self.storage, "study_name": self.study_name, "direction": self.direction,
            "pruner": _plain(self.pruner_config) if self.pruner_config else None,
        }))  # fmt: skip
        if self.rerun_top:
            return rerun_best(self, study, fixed)
        log.info(
            f"Study {self.study_name} in {self.storage}: {len(study.trials)} trials so far, {self.n_trials} to run"
        )

        launched, exhausted = 0, False
        while launched < self.n_trials and not exhausted:
            trials = [study.ask() for _ in range(min(self.n_jobs, self.n_trials - launched))]
            if launched == 0:
                # Seeded from the first trial's number: a continued study or a second worker samples new points.
                study.sampler = self._sampler(offset=trials[0].number)
            try:
                for trial in trials:
                    for name, distribution in space.items():
                        suggest(trial, name, distribution)
            except ValueError as error:  # e.g. a key searched as choice() in this study before, interval() now
                for trial in trials:
                    study.tell(trial, state=TrialState.FAIL)
                raise VaelabError(
                    f"study {self.study_name!r} does not accept this search space ({error}); "
                    "give a new hydra.sweeper.study_name"
                ) from None
            exhausted = self._run_batch(study, trials, fixed)
            launched += len(trials)
        write_results(study, self.sweep_dir, self.storage, fixed)
        return study.trials

    def _fixed_settings(self, job_overrides: list[str], space: dict[str, Any]) -> dict[str, Any]:
        """Every setting of a job of this sweep that is not searched, as ``{dotted key: value}``: its composed config
        without Hydra's, the seeds, where it writes (``replicas.PLACE_KEYS``) and the searched keys."""
        job = self.hydra_context.config_loader.load_sweep_config(master_config=self.config,
                                                                 sweep_overrides=job_overrides)  # fmt: skip
        config = json.loads(setting_key(OmegaConf.to_container(job, resolve=False)))
        searched = tuple(space)
        return {key: value for key, value in flat_config(config).items()
                if not any(key == name or key.startswith(f"{name}.") for name in searched)}  # fmt: skip

    def _sampler(self, offset: int) -> optuna.samplers.BaseSampler:
        config = dict(self.sampler_config or {"_target_": "optuna.samplers.TPESampler"})
        if config.get("seed") is not None:
            config["seed"] = int(config["seed"]) + offset
        return instantiate(config, key="hydra.sweeper.sampler")

    def _run_batch(self, study: optuna.Study, trials: Sequence[optuna.Trial], fixed: list[str]) -> bool:
        """Launch the trials, each over its seeds; True when the sampler has run its whole search space (a grid or
        brute-force sampler)."""
        seeds = self.replica_seeds or [self.base_seed() + replica for replica in range(self.replicas)]
        for trial in trials:
            trial.set_user_attr("job_dir", str(self.sweep_dir / self.folder(trial.number, 0)))
            trial.set_user_attr("seeds", seeds)
        try:
            with heartbeats(self._storage, study, list(trials), self.heartbeat_interval):
                # The first seed reports each epoch to the pruner; the others run for the trials it kept.
                first = self.launch_jobs([(trial, seeds[0], 0, True) for trial in trials], fixed)
                kept = [trial for trial, job in zip(trials, first) if job_outcome(job)[0] == RunStatus.COMPLETED]
                replica_jobs = [
                    (trial, seed, replica, False) for trial in kept for replica, seed in enumerate(seeds[1:], 1)
                ]
                others = self.launch_jobs(replica_jobs, fixed)
        except BaseException:
            for trial in trials:  # interrupted: leave no trial RUNNING forever
                study.tell(trial, state=TrialState.FAIL)
            raise
        jobs = {trial.number: [job] for trial, job in zip(trials, first)}
        for (trial, _, _, _), job in zip(replica_jobs, others):
            jobs[trial.number].append(job)
        exhausted = False
        for trial in trials:
            exhausted = self._tell(study, trial, seeds, jobs[trial.number]) or exhausted  # every trial is told
        return exhausted

    def launch_jobs(self, jobs: Sequence[tuple[optuna.Trial, int, int, bool]], fixed: list[str]) -> Sequence[Any]:
        """Launch ``(trial, seed, replica, reports)`` jobs in one batch of the launcher; returns their JobReturns."""
        if not jobs:
            return []
        overrides = []
        for trial, seed, replica, reports in jobs:
            job = [
                *fixed,
                *trial_overrides(trial.params),
                f"hydra.sweep.subdir='{self.folder(trial.number, replica)}'",
            ]
            job += [f"seed={seed}"] if self.replicas > 1 else []
            if reports:  # the job's trial number (vaelab.sweep.study.trial_of_this_job; the study is in STUDY_FILE)
                job.append(f"++hydra.job.env_set.{TRIAL_ENV}={trial.number}")
            overrides.append(job)
        return self.launcher.launch(overrides, initial_job_idx=jobs[0][0].number * self.replicas + jobs[0][2])

    def folder(self, trial_number: int, replica: int) -> str:
        """The job folder's name (quoted in the override: Hydra reads an unquoted ``1_0`` as the number 10)."""
        return f"{trial_number}_{replica}" if self.replicas > 1 else str(trial_number)

    def base_seed(self) -> int:
        """The sweep's ``seed`` (0 if none): a trial's first replica runs with it."""
        seed = self.config.get("seed")
        return int(seed) if isinstance(seed, int) else 0

    def _tell(self, study: optuna.Study, trial: optuna.Trial, seeds: Sequence[int], jobs: Sequence[Any]) -> bool:
        """Tell the study the trial's outcome over its replicas; True when the sampler has run its whole space."""
        outcomes = [job_outcome(job) for job in jobs]
        values = [value for status, value in outcomes if status == RunStatus.COMPLETED]
        if self.replicas > 1:
            replica_values = {str(seed): value for seed, (_, value) in zip(seeds, outcomes)}
            summary = spread(values)
            trial.set_user_attr("replica_values", replica_values)
            trial.set_user_attr("value_std", json_safe(summary.std))
            trial.set_user_attr("value_ci95", json_safe(summary.ci95))
        if outcomes[0][0] == RunStatus.PRUNED:
            outcome: dict[str, Any] = {"state": TrialState.PRUNED}
        elif len(values) == self.replicas:
            outcome = {"values": math.fsum(values) / len(values)}
        else:  # a seed failed or diverged: the setting is not reliable
            outcome = {"state": TrialState.FAIL}
        try:
            study.tell(trial, **outcome)
        except RuntimeError as error:
            # A grid sampler's study.stop() after its last point (allowed in optimize() only); the result is stored.
            if "Study.stop" not in str(error):
                raise
            log.info("The sampler has run every point of the search space: no more trials")
            exhausted = True
        else:
            exhausted = False
        state = study.trials[trial.number].state.name
        log.info(f"Trial {trial.number}: {state} {trial.params} values={[value for _, value in outcomes]}")
        return exhausted


def _plain(config: Any) -> Any:
    return OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else config
