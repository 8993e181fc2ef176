"""Seeds as replicas: the spread statistics, settings of a grid sweep, grouped evaluation rows, and the Optuna
sweeper's replicated trials and re-runs of its best trials."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import optuna
import pytest
import yaml

from helpers import NO_FIGURES, run_inline, tiny_data_overrides
from vaelab.sweep.replicas import differ_beyond_noise, setting_key, spread, without_seeds
from vaelab.sweep.summary import summarise

TINY_JOB = ["model=vae", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
            "data.batch_size=50", *NO_FIGURES]  # fmt: skip
T_975 = {1: 12.706204736174707, 2: 4.302652729911275}  # Student t quantiles (0.975) by degrees of freedom


def test_spread_is_the_textbook_statistics() -> None:
    values = [146.47, 146.62, 151.72]  # three seeds of one 4-epoch setting (issue 22)
    summary = spread([*values, float("nan")])  # a failed run's NaN is left out
    assert summary.n == 3 and summary.mean == pytest.approx(statistics.mean(values))
    assert summary.std == pytest.approx(statistics.stdev(values))
    assert summary.ci95 == pytest.approx(T_975[2] * statistics.stdev(values) / math.sqrt(3))
    assert summary.best == 146.47
    one = spread([5.0])
    assert (one.n, one.mean, one.best) == (1, 5.0, 5.0) and math.isnan(one.std) and math.isnan(one.ci95)
    assert spread([]).n == 0 and math.isnan(spread([]).mean)
    # A 1-nat gap inside a 3-nat spread is noise; a 10-nat gap with a 0.1-nat spread is not.
    noisy, other = spread([146.5, 146.6, 151.7]), spread([147.5, 147.6, 152.7])
    assert differ_beyond_noise(noisy, other) is False
    assert differ_beyond_noise(spread([100.0, 100.1, 100.2]), spread([110.0, 110.1, 110.2])) is True
    assert differ_beyond_noise(one, noisy) is None


def test_replicas_are_runs_that_differ_only_by_seed() -> None:
    config = {"seed": 1, "model": {"lr": 1e-3}, "data": {"data_dir": "/a", "shuffle_seed": None, "batch_size": 64},
              "paths": {"root_dir": "/x"}, "tags": ["a"]}  # fmt: skip
    replica = {**config, "seed": 2, "data": {**config["data"], "data_dir": "/b", "shuffle_seed": 7},
               "paths": {"root_dir": "/y"}, "tags": []}  # fmt: skip
    other = {**config, "model": {"lr": 3e-3}}
    assert setting_key(config) == setting_key(replica) != setting_key(other)
    assert without_seeds(["model=vae", "seed=3", "+data.shuffle_seed=1", "model.seed_dim=2"]) == [
        "model=vae", "model.seed_dim=2"
    ]  # fmt: skip


def test_a_grid_over_two_lrs_and_three_seeds_makes_two_settings(tiny_mnist: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_inline("train.py", "-m", *TINY_JOB, "model.optimizer.lr=1e-3,3e-3", "seed=1,2,3", "logger=csv",
                        *tiny_data_overrides(tiny_mnist), f"hydra.sweep.dir={sweep}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summarise(sweep, "val/nelbo")

    rows = list(csv.DictReader((sweep / "settings.csv").open()))
    assert len(rows) == 2 and {row["n"] for row in rows} == {"3"}
    for row in rows:
        jobs = row["jobs"].split()
        values = [json.loads((sweep / job / "metrics.json").read_text())["val/nelbo"] for job in jobs]
        configs = [(sweep / job / ".hydra" / "overrides.yaml").read_text() for job in jobs]
        assert all(row["setting"].split("=")[1] in text for text in configs)  # the row's lr, in each of its jobs
        assert row["seeds"] == "1 2 3"
        assert float(row["mean"]) == pytest.approx(statistics.mean(values))
        assert float(row["std"]) == pytest.approx(statistics.stdev(values))
        assert float(row["ci95"]) == pytest.approx(T_975[2] * statistics.stdev(values) / math.sqrt(3))
        assert float(row["best"]) == pytest.approx(min(values))
    assert float(rows[0]["mean"]) <= float(rows[1]["mean"])  # ranked by mean
    assert rows[0]["vs_best"] == "best" and rows[1]["vs_best"] in {"worse", "within noise"}
    assert "| setting | n | mean | std | ci95 |" in (sweep / "settings.md").read_text()
    assert (sweep / "settings.png").stat().st_size > 5000
    # metrics.json says what makes the numbers machine-specific.
    metrics = json.loads((sweep / "0" / "metrics.json").read_text())
    assert {"torch", "cpu_capability", "cpu_features", "threads", "device"} <= set(metrics)

    # evaluate.py groups the same runs: one results row per setting, with its seeds and the loss's spread.
    evaluation = run_inline("evaluate.py", f"runs=[{sweep}]", "iwae_samples=2", "projector=false",
                            "figures.num_points=100", "figures.grid_size=3", *tiny_data_overrides(tiny_mnist),
                            f"hydra.run.dir={tmp_path / 'eval'}")  # fmt: skip
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    results = list(csv.DictReader((tmp_path / "eval" / "results.csv").open()))
    assert len(results) == 2 and {row["seeds"] for row in results} == {"3"}
    # Each row names the setting by what sets it apart, in the CSV and the markdown table alike.
    assert sorted(row["setting"] for row in results) == ["vae model.optimizer.lr=0.001", "vae model.optimizer.lr=0.003"]
    assert "| vae model.optimizer.lr=0.003 |" in (tmp_path / "eval" / "results_table.md").read_text()
    for row in results:
        runs = row["run"].split()
        losses = [json.loads((tmp_path / "eval" / run / "metrics.json").read_text())["loss"] for run in runs]
        assert float(row["loss"]) == pytest.approx(statistics.mean(losses))
        assert float(row["loss_std"]) == pytest.approx(statistics.stdev(losses))
        assert float(row["loss_best"]) == pytest.approx(min(losses))
    assert (tmp_path / "eval" / "comparison.png").stat().st_size > 10000


def test_optuna_trials_over_seeds_and_a_rerun_of_the_best(tiny_mnist: Path, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    search = ["hparams_search=optuna", *TINY_JOB, f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=s",
              "hydra.sweeper.replicas=2", "hydra.sweeper.replica_seeds=[5,6]", *tiny_data_overrides(tiny_mnist)]  # fmt: skip
    result = run_inline("train.py", *search, "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={tmp_path / 'search'}")
    assert result.returncode == 0, result.stderr[-3000:]
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for trial in trials:  # each seed's value on the trial, the trial's value their mean, from the job folders
        folders = [tmp_path / "search" / f"{trial.number}_{replica}" for replica in (0, 1)]
        values = [json.loads((folder / "metrics.json").read_text())["val/nelbo"] for folder in folders]
        assert trial.user_attrs["seeds"] == [5, 6]
        assert trial.user_attrs["replica_values"] == pytest.approx({"5": values[0], "6": values[1]})
        assert trial.value == pytest.approx(statistics.mean(values))
        assert trial.user_attrs["value_std"] == pytest.approx(statistics.stdev(values))
        assert [yaml.safe_load((f / ".hydra" / "config.yaml").read_text())["seed"] for f in folders] == [5, 6]
        assert list(trial.intermediate_values) == [0]  # the first seed reported its epoch to the pruner
    summarise(tmp_path / "search", "val/nelbo")  # the replicas of each trial are one setting
    assert [row["n"] for row in csv.DictReader((tmp_path / "search" / "settings.csv").open())] == ["2", "2"]

    # The best trial again over two fresh seeds (after the 5 and 6 the study used), ranked by mean.
    rerun = run_inline("train.py", *(o for o in search if not o.startswith("hydra.sweeper.replica_seeds")),
                       "hydra.sweeper.rerun_top=1", f"hydra.sweep.dir={tmp_path / 'rerun'}")  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    study = optuna.load_study(study_name="s", storage=storage)
    assert len(study.trials) == 2  # a re-run adds no trial
    best = min(trials, key=lambda t: t.value)
    record = study.user_attrs[f"rerun_of_trial_{best.number}"]
    assert record["seeds"] == [7, 8] and record["n"] == 2
    values = [json.loads((tmp_path / "rerun" / f"{best.number}_{r}" / "metrics.json").read_text())["val/nelbo"]
              for r in (0, 1)]  # fmt: skip
    assert record["values"] == pytest.approx(values) and record["mean"] == pytest.approx(statistics.mean(values))
    rows = list(csv.DictReader((tmp_path / "rerun" / "rerun.csv").open()))
    assert [(row["rank"], row["trial"], row["n"]) for row in rows] == [("1", str(best.number), "2")]
    assert float(rows[0]["ci95"]) == pytest.approx(T_975[1] * statistics.stdev(values) / math.sqrt(2))
    # The study's table shows each trial's spread over its seeds and its re-run.
    summarise(tmp_path / "rerun", "val/nelbo")
    study_rows = {row["trial"]: row for row in csv.DictReader((tmp_path / "rerun" / "study.csv").open())}
    assert {row["seeds"] for row in study_rows.values()} == {"2"}
    assert float(study_rows[str(best.number)]["value_std"]) == pytest.approx(best.user_attrs["value_std"])
    assert float(study_rows[str(best.number)]["rerun_mean"]) == pytest.approx(statistics.mean(values))
    assert [row["n"] for row in csv.DictReader((tmp_path / "rerun" / "settings.csv").open())] == ["2"]
