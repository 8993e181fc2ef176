"""``hydra.sweeper.rerun_top``: a study's best trials run again over fresh seeds and ranked by their mean, so that
a search's winner is not one lucky seed."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from vaelab.errors import VaelabError
from vaelab.run.files import json_safe
from vaelab.run.folder import RunStatus
from vaelab.sweep.lifecycle import job_outcome
from vaelab.sweep.replicas import RERUN_PREFIX, rank_by_mean, spread, write_ranking
from vaelab.sweep.space import trial_overrides

if TYPE_CHECKING:
    from vaelab.sweep.sweeper import OptunaSweeper

log = logging.getLogger(__name__)
RERUN_COLUMNS = ("rank", "trial", "params", "n", "mean", "std", "ci95", "best", "search_value", "vs_best", "seeds",
                 "jobs")  # fmt: skip


def rerun_best(sweeper: OptunaSweeper, study: optuna.Study, fixed: list[str]) -> list[optuna.trial.FrozenTrial]:
    """Run the study's best ``rerun_top`` completed trials again over fresh seeds; rank them by mean."""
    if sweeper.replicas < 2:
        raise VaelabError("hydra.sweeper.rerun_top needs hydra.sweeper.replicas >= 2 (seeds per trial).")
    completed = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if not completed:
        raise VaelabError(f"study {sweeper.study_name!r} in {sweeper.storage} has no completed trial to re-run.")
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    top = sorted(completed, key=lambda t: -t.value if maximize else t.value)[: sweeper.rerun_top]
    seeds = sweeper.replica_seeds or [
        fresh_seed(study, sweeper.base_seed()) + replica for replica in range(sweeper.replicas)
    ]
    log.info(f"Re-running trials {[t.number for t in top]} of study {sweeper.study_name} with seeds {seeds}")
    jobs = [(trial, seed, replica, False) for trial in top for replica, seed in enumerate(seeds)]
    returns = sweeper.launch_jobs(jobs, fixed)
    rows = []
    for index, trial in enumerate(top):
        outcomes = [job_outcome(job) for job in returns[index * len(seeds) : (index + 1) * len(seeds)]]
        values = [value if status == RunStatus.COMPLETED else None for status, value in outcomes]
        summary = spread(value for value in values if value is not None)
        record = study.user_attrs.get(f"{RERUN_PREFIX}{trial.number}", {"seeds": [], "values": []})
        record = {"seeds": record["seeds"] + seeds, "values": record["values"] + values}
        record.update(spread(v for v in record["values"] if v is not None).as_row())
        study.set_user_attr(f"{RERUN_PREFIX}{trial.number}", json_safe(record))
        rows.append({"trial": trial.number, "params": " ".join(trial_overrides(trial.params)),
                     **summary.as_row(), "search_value": trial.value, "seeds": " ".join(map(str, seeds)),
                     "jobs": " ".join(sweeper.folder(trial.number, r) for r in range(len(seeds))),
                     "spread": summary})  # fmt: skip
    title = f"Study {sweeper.study_name}: its best {len(top)} trials re-run over seeds {seeds}"
    intro = "Ranked by the mean over the new seeds; search_value: the trial's value in the search;"
    write_ranking(sweeper.sweep_dir, "rerun", title, intro, rank_by_mean(rows, maximize), RERUN_COLUMNS)
    return study.trials


def fresh_seed(study: optuna.Study, base_seed: int) -> int:
    """The first seed after every seed the study's trials and re-runs have used."""
    used = [seed for t in study.trials for seed in t.user_attrs.get("seeds", [base_seed])]
    used += [seed for key, record in study.user_attrs.items() if key.startswith(RERUN_PREFIX)
             for seed in record.get("seeds", [])]  # fmt: skip
    return max(used) + 1
