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
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from vaelab.config_tree import flat_config
from vaelab.errors import VaelabError
from vaelab.exits import ends_on_user_error
from vaelab.job import TRIAL_ENV
from vaelab.run.folder import STUDY_FILE, SWEEP_RECORD, RunFolder, RunStatus, json_safe
from vaelab.sweep.lifecycle import fail_stale_trials, heartbeats
from vaelab.sweep.replicas import RERUN_PREFIX, rank_by_mean, setting_key, spread, write_ranking
from vaelab.sweep.space import split_search_space, trial_overrides
from vaelab.sweep.study import (
    build_pruner,
    open_storage,
    open_study,
)
from vaelab.targets import instantiate

log = logging.getLogger(__name__)
RESULTS_FILE = "optimization_results.yaml"
SETTING_ATTR = "vaelab_setting"  # study user attribute: the model and search space the study belongs to
RERUN_COLUMNS = ("rank", "trial", "params", "n", "mean", "std", "ci95", "best", "search_value", "vs_best", "seeds",
                 "jobs")  # fmt: skip


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
        self._check_setting(study, space, fixed_settings)
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
            return self._rerun(study, fixed)
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
        self._write_results(study, fixed)
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

    def _check_setting(self, study: optuna.Study, space: dict[str, Any], fixed: dict[str, Any]) -> None:
        """A study belongs to the model, the searched keys and every other setting that made it (user attribute
        ``vaelab_setting``; the searched ranges may change between sweeps): trials of another would become its best,
        with best parameters that omit what differed. Refused unless ``allow_other_setting``; a study without the
        record gets it."""
        setting = {"model": str(self.config.hydra.runtime.choices.get("model")), "space": sorted(space),
                   "fixed": fixed}  # fmt: skip
        recorded = study.user_attrs.get(SETTING_ATTR)
        if recorded is None:
            study.set_user_attr(SETTING_ATTR, setting)
            return
        if self.allow_other_setting:
            return
        advice = ("pass another hydra.sweeper.study_name, or hydra.sweeper.allow_other_setting=true to add these "
                  "trials to it.")  # fmt: skip
        if recorded.get("model") != setting["model"] or recorded.get("space") != setting["space"]:
            what = "model" if recorded.get("model") != setting["model"] else "search space"
            raise VaelabError(
                f"study {self.study_name!r} in {self.storage} belongs to model={recorded.get('model')} searching "
                f"{recorded.get('space')}, and this sweep has another {what} (model={setting['model']} searching "
                f"{setting['space']}); {advice}"
            )
        before = recorded.get("fixed")  # None: a study recorded before fixed settings were
        differing = sorted(key for key in {*fixed, *(before or {})} if (before or {}).get(key) != fixed.get(key))
        if before is not None and differing:
            key = differing[0]
            raise VaelabError(
                f"study {self.study_name!r} in {self.storage} was searched with {key}={before.get(key)!r}, this sweep "
                f"has {key}={fixed.get(key)!r} ({len(differing)} fixed settings differ); {advice}"
            )

    def _sampler(self, offset: int) -> optuna.samplers.BaseSampler:
        config = dict(self.sampler_config or {"_target_": "optuna.samplers.TPESampler"})
        if config.get("seed") is not None:
            config["seed"] = int(config["seed"]) + offset
        return instantiate(config, key="hydra.sweeper.sampler")

    def _run_batch(self, study: optuna.Study, trials: Sequence[optuna.Trial], fixed: list[str]) -> bool:
        """Launch the trials, each over its seeds; True when the sampler has run its whole search space (a grid or
        brute-force sampler)."""
        seeds = self.replica_seeds or [self._base_seed() + replica for replica in range(self.replicas)]
        for trial in trials:
            trial.set_user_attr("job_dir", str(self.sweep_dir / self._folder(trial.number, 0)))
            trial.set_user_attr("seeds", seeds)
        try:
            with heartbeats(self._storage, study, list(trials), self.heartbeat_interval):
                # The first seed reports each epoch to the pruner; the others run for the trials it kept.
                first = self._launch([(trial, seeds[0], 0, True) for trial in trials], fixed)
                kept = [trial for trial, job in zip(trials, first) if _outcome(job)[0] == RunStatus.COMPLETED]
                replica_jobs = [
                    (trial, seed, replica, False) for trial in kept for replica, seed in enumerate(seeds[1:], 1)
                ]
                others = self._launch(replica_jobs, fixed)
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

    def _launch(self, jobs: Sequence[tuple[optuna.Trial, int, int, bool]], fixed: list[str]) -> Sequence[Any]:
        """Launch ``(trial, seed, replica, reports)`` jobs in one batch of the launcher; returns their JobReturns."""
        if not jobs:
            return []
        overrides = []
        for trial, seed, replica, reports in jobs:
            job = [
                *fixed,
                *trial_overrides(trial.params),
                f"hydra.sweep.subdir='{self._folder(trial.number, replica)}'",
            ]
            job += [f"seed={seed}"] if self.replicas > 1 else []
            if reports:  # the job's trial number (vaelab.sweep.study.trial_of_this_job; the study is in STUDY_FILE)
                job.append(f"++hydra.job.env_set.{TRIAL_ENV}={trial.number}")
            overrides.append(job)
        return self.launcher.launch(overrides, initial_job_idx=jobs[0][0].number * self.replicas + jobs[0][2])

    def _folder(self, trial_number: int, replica: int) -> str:
        """The job folder's name (quoted in the override: Hydra reads an unquoted ``1_0`` as the number 10)."""
        return f"{trial_number}_{replica}" if self.replicas > 1 else str(trial_number)

    def _base_seed(self) -> int:
        seed = self.config.get("seed")
        return int(seed) if isinstance(seed, int) else 0

    def _tell(self, study: optuna.Study, trial: optuna.Trial, seeds: Sequence[int], jobs: Sequence[Any]) -> bool:
        """Tell the study the trial's outcome over its replicas; True when the sampler has run its whole space."""
        outcomes = [_outcome(job) for job in jobs]
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

    def _rerun(self, study: optuna.Study, fixed: list[str]) -> list[optuna.trial.FrozenTrial]:
        """Run the study's best ``rerun_top`` completed trials again over fresh seeds; rank them by mean."""
        if self.replicas < 2:
            raise VaelabError("hydra.sweeper.rerun_top needs hydra.sweeper.replicas >= 2 (seeds per trial).")
        completed = [t for t in study.trials if t.state == TrialState.COMPLETE]
        if not completed:
            raise VaelabError(f"study {self.study_name!r} in {self.storage} has no completed trial to re-run.")
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        top = sorted(completed, key=lambda t: -t.value if maximize else t.value)[: self.rerun_top]
        seeds = self.replica_seeds or [self._fresh_seed(study) + replica for replica in range(self.replicas)]
        log.info(f"Re-running trials {[t.number for t in top]} of study {self.study_name} with seeds {seeds}")
        jobs = [(trial, seed, replica, False) for trial in top for replica, seed in enumerate(seeds)]
        returns = self._launch(jobs, fixed)
        rows = []
        for index, trial in enumerate(top):
            outcomes = [_outcome(job) for job in returns[index * len(seeds) : (index + 1) * len(seeds)]]
            values = [value if status == RunStatus.COMPLETED else None for status, value in outcomes]
            summary = spread(value for value in values if value is not None)
            record = study.user_attrs.get(f"{RERUN_PREFIX}{trial.number}", {"seeds": [], "values": []})
            record = {"seeds": record["seeds"] + seeds, "values": record["values"] + values}
            record.update(spread(v for v in record["values"] if v is not None).as_row())
            study.set_user_attr(f"{RERUN_PREFIX}{trial.number}", json_safe(record))
            rows.append({"trial": trial.number, "params": " ".join(trial_overrides(trial.params)),
                         **summary.as_row(), "search_value": trial.value, "seeds": " ".join(map(str, seeds)),
                         "jobs": " ".join(self._folder(trial.number, r) for r in range(len(seeds))),
                         "spread": summary})  # fmt: skip
        title = f"Study {self.study_name}: its best {len(top)} trials re-run over seeds {seeds}"
        intro = "Ranked by the mean over the new seeds; search_value: the trial's value in the search;"
        write_ranking(self.sweep_dir, "rerun", title, intro, rank_by_mean(rows, maximize), RERUN_COLUMNS)
        return study.trials

    def _fresh_seed(self, study: optuna.Study) -> int:
        """The first seed after every seed the study's trials and re-runs have used."""
        used = [seed for t in study.trials for seed in t.user_attrs.get("seeds", [self._base_seed()])]
        used += [seed for key, record in study.user_attrs.items() if key.startswith(RERUN_PREFIX)
                 for seed in record.get("seeds", [])]  # fmt: skip
        return max(used) + 1

    def _write_results(self, study: optuna.Study, fixed: list[str]) -> None:
        """``optimization_results.yaml``: the best trial's parameters, with the overrides every trial shared (the
        rest of each job's settings is in its folder's .hydra/config.yaml)."""
        completed = [t for t in study.trials if t.state == TrialState.COMPLETE]
        results: dict[str, Any] = {"name": "optuna", "study_name": self.study_name, "storage": self.storage,
                                   "trials": len(study.trials), "completed": len(completed),
                                   "fixed_overrides": list(fixed)}  # fmt: skip
        if completed:
            results.update(
                best_trial=study.best_trial.number, best_params=study.best_params, best_value=study.best_value
            )
        (self.sweep_dir / RESULTS_FILE).write_text(OmegaConf.to_yaml(results))
        log.info(f"Best of study {self.study_name}: {results.get('best_params')} -> {results.get('best_value')}")


def _outcome(job: Any) -> tuple[str, float | None]:
    """``(status, value)`` of a launched job: completed (with its finite returned metric), or what its folder says
    (``RunFolder.status``: pruned, untrained, failed, or unfinished for a job that died)."""
    status = (
        RunFolder(Path(str(job.hydra_cfg.hydra.runtime.output_dir))).status()[0]
        if job.hydra_cfg
        else RunStatus.UNFINISHED
    )
    value = job.return_value if job.status == JobStatus.COMPLETED else None
    if status == RunStatus.COMPLETED and not (isinstance(value, (int, float)) and math.isfinite(value)):
        status = RunStatus.FAILED
    return status, float(value) if status == RunStatus.COMPLETED else None


def _plain(config: Any) -> Any:
    return OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else config


def _suggest(trial: optuna.Trial, name: str, distribution: optuna.distributions.BaseDistribution) -> None:
    if isinstance(distribution, CategoricalDistribution):
        trial.suggest_categorical(name, distribution.choices)
    elif isinstance(distribution, optuna.distributions.IntDistribution):
        trial.suggest_int(name, distribution.low, distribution.high, step=distribution.step, log=distribution.log)
    else:
        trial.suggest_float(name, distribution.low, distribution.high, step=distribution.step, log=distribution.log)
