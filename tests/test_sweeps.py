"""Multirun sweeps: the basic sweeper with a summary, Optuna, the submitit launcher, unique run folders."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import PROJECT_ROOT, run_script, tiny_data_overrides
from vaelab.sweeps import summarise

TINY_JOB = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "data.batch_size=50",
            "callbacks.latent_grid.grid_size=4", "test=false"]  # fmt: skip


def test_grid_sweep_summary_and_hparams(tiny_mnist: Path, tmp_path: Path) -> None:
    result = run_script(
        "train.py", "-m", "model=vae", "model.latent_dim=2,3", "model.beta=0.5,1", *TINY_JOB,
        *tiny_data_overrides(tiny_mnist), f"hydra.sweep.dir={tmp_path}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]

    jobs = summarise(tmp_path, "val/nelbo")
    assert len(jobs) == 4 and {row["job"] for row in jobs} == {"0", "1", "2", "3"}
    values = [row["val/nelbo"] for row in jobs]
    assert values == sorted(values)
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert {row["overrides"] for row in rows} == {
        f"model.latent_dim={d} model.beta={b}" for d in (2, 3) for b in (0.5, 1)
    }
    assert "Overrides of every job: `model=vae trainer.max_epochs=1" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "summary.png").stat().st_size > 5000 and "| job |" in (tmp_path / "summary.md").read_text()

    # TensorBoard's HParams tab: the hyperparameters and the final metrics of each job.
    events = EventAccumulator(str(tmp_path / "0" / "tensorboard"))
    events.Reload()
    assert "_hparams_/experiment" in events.PluginTagToContent("hparams")
    job0 = next(row for row in jobs if row["job"] == "0")
    assert events.Scalars("hp/val_loss")[-1].value == pytest.approx(job0["val/loss"])


def test_optuna_search(tiny_mnist: Path, tmp_path: Path) -> None:
    result = run_script(
        "train.py", "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.sampler.n_startup_trials=2",
        *(o for o in TINY_JOB if not o.startswith("data.batch_size")),  # batch size is a searched parameter
        *tiny_data_overrides(tiny_mnist), f"hydra.sweep.dir={tmp_path}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    best = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {"model.optimizer.lr", "model.beta", "data.batch_size", "model.hidden_dim"}
    assert 0 < best["best_value"] < 1000
    assert len([p for p in tmp_path.iterdir() if (p / "metrics.json").is_file()]) == 3


def test_submitit_local_launcher(tiny_mnist: Path, tmp_path: Path) -> None:
    result = run_script(
        "train.py", "-m", "launcher=submitit_local", "model=vae,conv_vae", *TINY_JOB, "logger=csv",
        *tiny_data_overrides(tiny_mnist), f"hydra.sweep.dir={tmp_path}", timeout=400,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for job in ("0", "1"):
        assert (tmp_path / job / "checkpoints" / "last.ckpt").is_file()
        assert (tmp_path / job / "metrics.json").is_file()


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path: Path) -> None:
    # Runs that stop at once (no data) still get their run folder from Hydra first.
    command = [sys.executable, str(PROJECT_ROOT / "train.py"), f"paths.log_dir={tmp_path}", "data.data_dir=/nonexistent",
               "data.fallback_data_dirs=[]", "data.download=false"]  # fmt: skip
    processes = [subprocess.Popen(command, cwd=PROJECT_ROOT, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for process in processes:
        assert "MNIST not found" in process.communicate(timeout=120)[1]
    assert len(list((tmp_path / "train" / "runs").iterdir())) == 3
