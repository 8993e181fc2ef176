"""The tables and plots of the Optuna study behind a sweep folder (``study.md``, ``study.csv``, Optuna's history
and importance plots), for ``vaelab-sweeps``."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from vaelab.errors import VaelabError
from vaelab.run.folder import STUDY_FILE
from vaelab.sweep.replicas import RERUN_PREFIX
from vaelab.tables import as_number, markdown_table, write_csv
from vaelab.targets import require


def replica_columns(trial: Any, rerun: dict[str, Any] | None) -> dict[str, Any]:
    """A trial's spread over its seeds (Optuna sweeper with ``replicas``) and over its re-runs, if it has them."""
    attrs, columns = trial.user_attrs, {}
    if "replica_values" in attrs:
        columns = {"seeds": len(attrs["replica_values"]), "value_std": as_number(attrs.get("value_std")),
                   "value_ci95": as_number(attrs.get("value_ci95"))}  # fmt: skip
    if rerun:
        columns.update({f"rerun_{key}": as_number(rerun.get(key)) for key in ("mean", "std")}, rerun_n=rerun.get("n"))
    return columns


def summarise_study(sweep_dir: Path) -> list[dict[str, Any]]:
    """The Optuna study behind a sweep folder: every trial (state, value, parameters, job folder), the best
    parameters, and Optuna's optimisation-history and parameter-importance plots, written beside the summary."""
    optuna = require("optuna", extra="sweeps", purpose="the study's tables")
    from optuna.visualization import matplotlib as optuna_plots

    from vaelab.sweep.study import open_storage, storage_file

    reference = yaml.safe_load((sweep_dir / STUDY_FILE).read_text())
    url = str(reference["storage"])
    if storage_file(url) is not None and not storage_file(url).is_file():
        raise VaelabError(f"its storage {url} does not exist (moved or deleted?)")
    study = optuna.load_study(study_name=reference["study_name"], storage=open_storage(reference["storage"]))
    rows = [
        {"trial": t.number, "state": t.state.name, "value": t.value if t.value is not None else float("nan"),
         **replica_columns(t, study.user_attrs.get(f"{RERUN_PREFIX}{t.number}")),
         "epochs_reported": len(t.intermediate_values), **t.params, "job_dir": t.user_attrs.get("job_dir", "")}
        for t in study.trials
    ]  # fmt: skip
    columns = list(dict.fromkeys(key for row in rows for key in row))
    rows = [{column: row.get(column, "") for column in columns} for row in rows]
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = study.best_trial if completed else None
    headline = f"Best: trial {best.number}, value {best.value:.2f}, {best.params}\n" if best else ""
    states = ", ".join(f"{state}: {count}" for state, count in sorted(Counter(r["state"] for r in rows).items()))
    text = (f"# Study {study.study_name} ({reference['storage']})\n\n{len(rows)} trials ({states})\n\n{headline}\n"
            + markdown_table(rows, columns))  # fmt: skip
    (sweep_dir / "study.md").write_text(text)
    write_csv(sweep_dir / "study.csv", rows, columns)
    written = ["study.md", "study.csv"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        if completed:
            optuna_plots.plot_optimization_history(study).figure.savefig(sweep_dir / "optuna_history.png")
            written.append("optuna_history.png")
        try:
            if len(completed) < 2:
                raise ValueError(f"{len(completed)} completed trials, importances need 2 or more")
            optuna_plots.plot_param_importances(study, evaluator=_importance_evaluator()).figure.savefig(
                sweep_dir / "optuna_importances.png", bbox_inches="tight"
            )
            written.append("optuna_importances.png")
        except (ValueError, RuntimeError) as error:  # too few completed trials, or a single parameter value
            print(f"No parameter importances yet: {error}")
    print(text + f"\nWritten: {', '.join(str(sweep_dir / name) for name in written)}")
    return rows


def _importance_evaluator() -> Any:
    """fANOVA (Optuna's default) when scikit-learn is installed, else PED-ANOVA, which needs nothing more."""
    import optuna.importance

    try:
        import sklearn  # noqa: F401
    except ImportError:
        return optuna.importance.PedAnovaImportanceEvaluator()
    return optuna.importance.FanovaImportanceEvaluator(seed=0)
