"""Multirun sweeps: contained failures, the vaelab Optuna sweeper (persistent, shared, pruned, failed trials),
the dashboard, the launchers (joblib thread split, submitit), DDP inside -m, unique run folders."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import (
    NO_FIGURES,
    PROJECT_ROOT,
    free_port,
    get_json,
    run_inline,
    run_script,
    tensorboard_run,
    tiny_data_overrides,
)
from vaelab.errors import VaelabError
from vaelab.figures import plots
from vaelab.process import job_threads
from vaelab.run.folder import RunFolder
from vaelab.sweep.study import open_storage, open_study, storage_file
from vaelab.sweep.summary import short_overrides, summarise

TINY_JOB = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "data.batch_size=50",
            *NO_FIGURES, "test=false"]  # fmt: skip
# An Optuna sweep of the dense model on the tiny data (the search space includes the batch size).
OPTUNA_JOB = ["hparams_search=optuna", "model=vae", *(o for o in TINY_JOB if not o.startswith("data.batch_size"))]


def optuna_overrides(storage: Path, study: str = "s", trials: int = 2) -> list[str]:
    return [f"hydra.sweeper.storage=sqlite:///{storage}", f"hydra.sweeper.study_name={study}",
            f"hydra.sweeper.n_trials={trials}"]  # fmt: skip


def load_trials(storage: Path, study: str = "s") -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=f"sqlite:///{storage}").trials


def test_grid_sweep_summary_and_hparams(tiny_mnist: Path, tmp_path: Path) -> None:
    result = run_inline(
        "train.py", "-m", "model=vae", "model.latent_dim=2,3", "model.beta=0.5,1", *TINY_JOB,
        *tiny_data_overrides(tiny_mnist), f"hydra.sweep.dir={tmp_path}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith(".")) == [
        "0",
        "1",
        "2",
        "3",
    ]

    jobs = summarise(tmp_path, "val/nelbo")
    assert len(jobs) == 4 and {row["job"] for row in jobs} == {"0", "1", "2", "3"}
    assert {row["status"] for row in jobs} == {"completed"}
    values = [row["val/nelbo"] for row in jobs]
    assert values == sorted(values)
    assert {row["best_epoch"] for row in jobs} == {0}  # from each job's history.csv (one epoch each)
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert {row["overrides"] for row in rows} == {
        f"model.latent_dim={d} model.beta={b}" for d in (2, 3) for b in (0.5, 1)
    }
    assert "Overrides of every job: `model=vae trainer.max_epochs=1" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "summary.png").stat().st_size > 5000 and "| job |" in (tmp_path / "summary.md").read_text()
    summarise(tmp_path, "test/nelbo")  # a metric no job has: sorted last, no KeyError

    # TensorBoard's HParams tab: the hyperparameters and the final metrics of each job.
    events = EventAccumulator(str(tensorboard_run(tmp_path / "0")))
    events.Reload()
    assert "_hparams_/experiment" in events.PluginTagToContent("hparams")
    job0 = next(row for row in jobs if row["job"] == "0")
    assert events.Scalars("hp/val_loss")[-1].value == pytest.approx(job0["val/loss"])


def test_the_summary_chart_labels_jobs_by_short_overrides() -> None:
    overrides = "model.optimizer.lr=0.001872400004563013 data.batch_size=64 a.beta=1e-3 b.beta=2 ~model.x y=1e400"
    assert short_overrides(overrides) == "lr=0.00187 batch_size=64 a.beta=1e-3 b.beta=2 ~model.x y=1e400"
    labels = ["0: lr=0.00187", "1: " + "a" * 120]
    short, long = (plots.ranked_bars(ls, [1.0] * len(ls), "val/loss") for ls in (labels[:1], labels))
    assert long.get_figwidth() > short.get_figwidth() + 7  # room for the long label beside the bars


def test_a_failing_job_does_not_end_the_sweep(tiny_mnist: Path, tmp_path: Path, mlflow_store: str) -> None:
    # Two jobs at once (joblib, 2 processes): each gets one of the two cores, and one fails in its worker.
    # Both log to one MLflow SQLite store, as parallel jobs on one machine would.
    sweep = tmp_path / "sweep"
    result = run_inline(
        "train.py", "-m", "launcher=joblib", "model=vae", "model.optimizer.lr=1e12,1e-3", *TINY_JOB,
        "logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri={mlflow_store}",
        *tiny_data_overrides(tiny_mnist), f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert result.returncode == 1  # at the end, because a job failed
    assert "Traceback" not in result.stderr
    assert "error: 1 of 2 jobs failed" in result.stderr and f"{sweep / '0'}: the training loss became" in result.stderr
    failed, completed = sweep / "0", sweep / "1"
    assert (failed / "FAILED").read_text().startswith("the training loss became")
    assert json.loads((failed / "metrics.json").read_text())["status"] == "failed"
    assert "error: the training loss became" in (failed / "train.log").read_text()
    assert json.loads((completed / "metrics.json").read_text())["status"] == "completed"  # job 1 ran
    assert json.loads((completed / "metrics.json").read_text())["threads"] == 1  # 2 cores / 2 jobs at once

    jobs = summarise(sweep, "val/loss")
    assert [(row["job"], row["status"]) for row in jobs] == [("1", "completed"), ("0", "failed")]
    assert "- job 0: the training loss became" in (sweep / "summary.md").read_text()

    # MLflow: the failed job's run and the sweep's parent run say FAILED, the other job's run FINISHED.
    client = MlflowClient(mlflow_store)
    runs = client.search_runs([client.get_experiment_by_name("vaelab").experiment_id])
    status = {run.data.tags.get("job", "parent"): run.info.status for run in runs}
    assert status == {"parent": "FAILED", "0": "FAILED", "1": "FINISHED"}


def test_an_interrupted_sweep_is_finished_by_resume_or_its_own_command(tiny_mnist: Path, tmp_path: Path) -> None:
    """Ctrl-C in job 1 of 3: the line says how to finish; the summary names the job that never ran; resume=<sweep>
    keeps job 0 as it was, goes on with job 1 from its checkpoint and runs job 2; the same command again then keeps
    all three, and a sweep of other settings into the folder is one line."""
    sweep, marker = tmp_path / "sweep", tmp_path / "stopped-once"
    stop = ("+callbacks.stop={_target_:helpers.StopAt,hook:on_train_batch_end,epoch:1,batch:0,only_in:'1',"
            f"once:'{marker}'}}")  # fmt: skip
    command = ["-m", "model=vae", "seed=1,2,3", *TINY_JOB, "trainer.max_epochs=2", "logger=none", stop,
               *tiny_data_overrides(tiny_mnist), f"hydra.sweep.dir={sweep}"]  # fmt: skip
    handler = signal.getsignal(signal.SIGINT)
    stopped = run_inline("train.py", *command)
    signal.signal(signal.SIGINT, handler)
    assert stopped.returncode == 1 and "Traceback" not in stopped.stderr
    assert f"resume={sweep} finishes it" in stopped.stdout  # the job log (stdout and train.log)
    assert [RunFolder(sweep / job).status()[0] for job in ("0", "1")] == ["completed", "interrupted"]
    assert not (sweep / "2").exists()
    summarise(sweep, "val/loss")
    assert "- job 2 (seed=3): never ran" in (sweep / "summary.md").read_text()

    first_job = (sweep / "0" / "metrics.json").read_bytes()
    finished = run_inline("train.py", f"resume={sweep}")
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert f"ranked: vaelab-sweeps {sweep}" in finished.stdout  # a grid's end says where its ranking is
    assert [RunFolder(sweep / job).status()[0] for job in ("0", "1", "2")] == ["completed"] * 3
    assert (sweep / "0" / "metrics.json").read_bytes() == first_job  # kept, not trained again
    assert [(row["epoch"], row["step"]) for row in RunFolder(sweep / "1").read_history()] == [(0, 2), (1, 4)]
    summarise(sweep, "val/loss")
    assert "never ran" not in (sweep / "summary.md").read_text()

    records = {job: (sweep / job / "metrics.json").read_bytes() for job in ("0", "1", "2")}
    again = run_inline("train.py", *command)  # the same command: nothing left to do
    assert again.returncode == 0, again.stderr[-3000:]
    assert {job: (sweep / job / "metrics.json").read_bytes() for job in records} == records
    other = run_inline("train.py", *[o.replace("seed=1,2,3", "seed=1,2") for o in command])
    assert other.returncode == 1 and other.stderr.strip().splitlines()[-1].startswith(
        f"error: {sweep} already holds a sweep (3 job folders) of other settings: model=vae seed=1,2,3"
    )
    assert run_inline("train.py", f"resume={sweep}", "model.beta=2").stderr.strip().splitlines()[-1] == (
        f"error: resume={sweep} finishes the sweep with its own settings; drop model.beta=2 (a sweep with other "
        "settings goes in a new folder)."
    )
    assert "is a sweep folder" in run_inline("train.py", "model=vae", f"hydra.run.dir={sweep}").stderr
    repeated = run_inline("train.py", "-m", "model=vae", "seed=1,1", f"hydra.sweep.dir={tmp_path / 'twice'}")
    assert repeated.stderr.strip().splitlines()[-1].startswith("error: seed=1,1 lists 1 more than once")
    assert not (tmp_path / "twice").exists()


def test_ctrl_c_while_a_sweep_job_is_set_up_is_one_line_and_resumable(tiny_mnist: Path, tmp_path: Path) -> None:
    """Ctrl-C before fit handles it (the job's callbacks being built): no traceback, the job says interrupted, and
    resume=<sweep> runs it and the job after it."""
    sweep = tmp_path / "sweep"
    stop = f"+callbacks.stop={{_target_:helpers.InterruptWhenBuilt,once:'{tmp_path / 'once'}'}}"
    stopped = run_inline("train.py", "-m", "model=vae", "seed=1,2", *TINY_JOB, "logger=none", stop,
                         *tiny_data_overrides(tiny_mnist), f"hydra.sweep.dir={sweep}")  # fmt: skip
    assert stopped.returncode == 1 and "Traceback" not in stopped.stderr + stopped.stdout
    record = RunFolder(sweep / "0").read_metrics()
    assert record == {"status": "interrupted", "error": "stopped by Ctrl-C while the job was set up, before it trained"}
    finished = run_inline("train.py", f"resume={sweep}")
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert [RunFolder(sweep / job).status()[0] for job in ("0", "1")] == ["completed", "completed"]


def test_optuna_study_persists_continues_and_is_served_by_the_dashboard(tiny_mnist: Path, tmp_path: Path) -> None:
    storage = tmp_path / "optuna" / "study.db"
    for run in ("a", "b"):  # the same command twice: the second continues the study
        if run == "b":  # ... after a sweep that died (kill -9) running trial 2: RUNNING, its heartbeat long gone
            opened = open_storage(f"sqlite:///{storage}", heartbeat_interval=1)
            opened.record_heartbeat(open_study(opened, "s").ask()._trial_id)
            time.sleep(2.5)  # more than two heartbeat intervals
        run_sweep = run_inline if run == "a" else run_script  # the second as users run it, in its own process
        result = run_sweep("train.py", *OPTUNA_JOB, *optuna_overrides(storage), *tiny_data_overrides(tiny_mnist),
                           "hydra.sweeper.heartbeat_interval=1", f"hydra.sweep.dir={tmp_path / run}")  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
    trials = load_trials(storage)
    assert [(t.number, t.state.name) for t in trials] == [
        (0, "COMPLETE"), (1, "COMPLETE"), (2, "FAIL"), (3, "COMPLETE"), (4, "COMPLETE")
    ]  # fmt: skip
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len({tuple(sorted(t.params.items())) for t in complete}) == 4  # the second run did not repeat the first
    assert all(t.intermediate_values for t in complete)  # each job reported its epochs to the study
    # Job folders carry the trial numbers, and each folder's metric is the trial's value.
    assert sorted(p.name for p in (tmp_path / "b").iterdir() if p.is_dir() and not p.name.startswith(".")) == ["3", "4"]
    metrics = json.loads((tmp_path / "b" / "4" / "metrics.json").read_text())
    assert metrics["val/nelbo"] == pytest.approx(trials[4].value)
    results = yaml.safe_load((tmp_path / "b" / "optimization_results.yaml").read_text())
    assert results["trials"] == 5 and set(results["best_params"]) == {
        "model.optimizer.lr",
        "model.beta",
        "data.batch_size",
    }

    summarise(tmp_path / "b", "val/nelbo")
    study_rows = list(csv.DictReader((tmp_path / "b" / "study.csv").open()))
    assert [row["state"] for row in study_rows] == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert (tmp_path / "b" / "optuna_history.png").stat().st_size > 5000

    # optuna-dashboard on 127.0.0.1 reads the study and its trials through its HTTP API.
    port = free_port()
    dashboard = subprocess.Popen(
        [str(Path(sys.executable).parent / "optuna-dashboard"), f"sqlite:///{storage}", "--host", "127.0.0.1",
         "--port", str(port), "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        studies = get_json(f"http://127.0.0.1:{port}/api/studies", timeout=60)["study_summaries"]
        assert [s["study_name"] for s in studies] == ["s"]
        detail = get_json(f"http://127.0.0.1:{port}/api/studies/{studies[0]['study_id']}", timeout=10)
        assert len(detail["trials"]) == 5
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=30)


def test_two_sweep_processes_share_one_study(tiny_mnist: Path, tmp_path: Path) -> None:
    storage = tmp_path / "shared.db"
    env = dict(os.environ)  # OMP_NUM_THREADS=1 (conftest): two processes on two cores
    env.pop("HYDRA_FULL_ERROR", None)
    processes = [
        subprocess.Popen([sys.executable, str(PROJECT_ROOT / "train.py"), *OPTUNA_JOB, *optuna_overrides(storage),
                          *tiny_data_overrides(tiny_mnist), f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                         cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    for process in processes:
        assert process.wait(timeout=300) == 0, process.stderr.read()[-3000:]
    trials = load_trials(storage)
    assert sorted(t.number for t in trials) == [0, 1, 2, 3] and {t.state.name for t in trials} == {"COMPLETE"}
    # One folder per trial, even though both processes wrote into the same sweep folder.
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir() and not p.name.startswith(".")) == [
        "0",
        "1",
        "2",
        "3",
    ]


def test_optuna_failed_and_pruned_trials_and_a_search_that_runs_out(tiny_mnist: Path, tmp_path: Path) -> None:
    storage = tmp_path / "study.db"
    # Sweep overrides on the command line join the search space (here pinning two of its keys).
    common = [*OPTUNA_JOB, "data.batch_size=choice(50)", "model.beta=interval(1.0,1.0)", "trainer.max_epochs=3",
              "trainer.limit_train_batches=4", *tiny_data_overrides(tiny_mnist)]  # fmt: skip
    # A good trial first (3 epochs) ...
    first = run_inline("train.py", *common, *optuna_overrides(storage, trials=1),
                       "model.optimizer.lr=interval(3e-3,3.1e-3)", f"hydra.sweep.dir={tmp_path / 'good'}")  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    # ... then one far worse after its first epoch: the median pruner stops it there.
    pruner = "hydra.sweeper.pruner={_target_:optuna.pruners.MedianPruner,n_startup_trials:1,n_warmup_steps:0}"
    second = run_inline(
        "train.py",
        *common,
        *optuna_overrides(storage, trials=1),
        "model.optimizer.lr=interval(1e-9,1.1e-9)",
        pruner,
        f"hydra.sweep.dir={tmp_path / 'bad'}",
    )
    assert second.returncode == 0, second.stderr[-3000:]
    # The launch line names the trial by its number, not an internal blob (the study is in the sweep's record).
    assert "VAELAB_OPTUNA_TRIAL=1" in second.stdout and "VAELAB_OPTUNA_TRIAL='{" not in second.stdout
    trials = load_trials(storage)
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED"]
    assert list(trials[1].intermediate_values) == [0]
    pruned_dir = tmp_path / "bad" / "1"
    assert json.loads((pruned_dir / "metrics.json").read_text())["status"] == "pruned"
    assert (pruned_dir / "checkpoints" / "last.ckpt").is_file()  # a pruned trial keeps its folder and checkpoints

    # A brute-force search of two points asked for 5 trials: it stops after its 2 (Optuna's grid and brute-force
    # samplers end the study themselves). The point whose loss diverges is a FAIL trial; the command exits 1.
    grid = ["hydra.sweeper.sampler._target_=optuna.samplers.BruteForceSampler", "~hydra.sweeper.sampler.n_startup_trials",
            "model.optimizer.lr=choice(1e-3,1e12)", "model.beta=choice(1.0)", "trainer.max_epochs=1"]  # fmt: skip
    third = run_inline("train.py", *common, *optuna_overrides(storage, "grid", trials=5), *grid,
                       f"hydra.sweep.dir={tmp_path / 'grid'}")  # fmt: skip
    assert third.returncode == 1 and "error: 1 of 2 jobs failed" in third.stderr, third.stderr[-3000:]
    states = {t.params["model.optimizer.lr"]: t.state.name for t in load_trials(storage, "grid")}
    assert states == {1e-3: "COMPLETE", 1e12: "FAIL"}
    assert len(list((tmp_path / "grid").glob("*/FAILED"))) == 1


@pytest.mark.parametrize(
    "setting, message",
    [
        ("model.hidden_dim=choice(16,64)", "hidden_dim"),  # a key of the conv models, not of model=vae
        ("model.beta=interval(2,1)", "error: model.beta=interval(2,1): `low <= high` must hold"),
        ("hydra.sweeper.sampler._target_=optuna.samplers.Nope", "error: hydra.sweeper.sampler: cannot build"),
        ("hydra.sweeper.n_trials=0", "error: hydra.sweeper.n_trials must be an integer >= 1"),
        (
            "hydra.sweeper.storage=sqlite:////proc/nope/s.db",
            "error: hydra.sweeper.storage=sqlite:////proc/nope/s.db: cannot create /proc/nope",
        ),  # fmt: skip
        ("hydra.sweeper.storage=journal:", "error: hydra.sweeper.storage=journal: names no file"),
    ],
)
def test_bad_search_settings_are_one_error_and_leave_no_trial(tmp_path: Path, setting: str, message: str) -> None:
    result = run_inline(
        "train.py", *OPTUNA_JOB, *optuna_overrides(tmp_path / "s.db"), setting, f"hydra.sweep.dir={tmp_path}"
    )
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "s.db").exists() or load_trials(tmp_path / "s.db") == []
    assert (
        not (tmp_path / ".configs").exists() and not (tmp_path / "multirun.yaml").exists()
    )  # a refusal writes nothing


def test_job_threads_split_the_cores() -> None:
    assert job_threads(None, cores=8) is None
    assert job_threads({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, cores=8) is None
    joblib = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    assert job_threads({"_target_": joblib, "n_jobs": 2}, cores=2) == 1
    assert job_threads({"_target_": joblib, "n_jobs": 3}, cores=16) == 5
    assert job_threads({"_target_": joblib, "n_jobs": -1}, cores=4) == 1
    submitit = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert job_threads({"_target_": submitit, "cpus_per_task": 8}, cores=64) == 8


def test_parallel_optuna_trials_through_submitit(tiny_mnist: Path, tmp_path: Path) -> None:
    """The SLURM code path (launcher=submitit_local) with the Optuna sweeper: 2 trials at once, each on 1 core."""
    storage = tmp_path / "study.db"
    result = run_inline("train.py", *OPTUNA_JOB, "launcher=submitit_local", *optuna_overrides(storage, trials=2),
                        "hydra.sweeper.n_jobs=2", "hydra.launcher.cpus_per_task=1", *tiny_data_overrides(tiny_mnist),
                        f"hydra.sweep.dir={tmp_path / 'sweep'}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for job in ("0", "1"):
        assert json.loads((tmp_path / "sweep" / job / "metrics.json").read_text())["threads"] == 1
    trials = load_trials(storage)
    # The jobs reached their trials through the storage: each reported its epoch for the pruner.
    assert len(trials) == 2 and all(t.state.name == "COMPLETE" and t.intermediate_values for t in trials)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_ddp_inside_a_multirun(tiny_mnist: Path, tmp_path: Path, ddp_alone: None) -> None:
    result = run_script("train.py", "-m", "model=vae", "model.latent_dim=2,3", *TINY_JOB, "trainer.strategy=ddp",
                        "trainer.devices=2", "trainer.accelerator=cpu", *tiny_data_overrides(tiny_mnist),
                        f"hydra.sweep.dir={tmp_path}", timeout=400)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    # Two jobs, each with its two processes; the second process re-ran its job, not the sweep.
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith(".")) == ["0", "1"]
    for job, latent_dim in (("0", 2), ("1", 3)):
        assert json.loads((tmp_path / job / "metrics.json").read_text())["status"] == "completed"
        checkpoint = torch.load(tmp_path / job / "checkpoints" / "last.ckpt", weights_only=True)
        assert checkpoint["hyper_parameters"]["latent_dim"] == latent_dim
        assert checkpoint["global_step"] == 2
    assert not any(p.name.startswith("train_ddp_process") for p in PROJECT_ROOT.iterdir())


def test_runs_started_in_the_same_second_get_their_own_folders(tiny_mnist: Path, tmp_path: Path) -> None:
    # Lightning's fast_dev_run: one batch of each stage, and the run's folder is kept.
    command = [sys.executable, str(PROJECT_ROOT / "train.py"), f"paths.log_dir={tmp_path}", "debug=fdr", "model=vae",
               "logger=none", *NO_FIGURES, *tiny_data_overrides(tiny_mnist)]  # fmt: skip
    processes = [subprocess.Popen(command, cwd=PROJECT_ROOT, stderr=subprocess.PIPE, text=True,
                                  stdout=subprocess.DEVNULL) for _ in range(2)]  # fmt: skip
    for process in processes:  # neither found the other's folder in use
        assert process.wait(timeout=300) == 0, process.stderr.read()[-3000:]
    assert len(list((tmp_path / "train" / "runs").iterdir())) == 2


def test_a_study_keeps_its_direction(tmp_path: Path) -> None:
    """Optuna would load a study made to minimize for a sweep that asks to maximize, and rank its trials upside down."""
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    open_study(storage, "s", "minimize")
    with pytest.raises(
        VaelabError, match="study 's' is to minimize, not maximize: pass another hydra.sweeper.study_name"
    ):
        open_study(storage, "s", "maximize")
    assert open_study(storage, "s", "minimize").direction == optuna.study.StudyDirection.MINIMIZE


def test_journal_storage_for_network_file_systems(tmp_path: Path) -> None:
    url = f"journal:{tmp_path / 'nfs' / 'study.journal'}"
    study = open_study(open_storage(url), "s")
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 0.5)
    reopened = open_study(open_storage(url), "s")  # another process on another node opens the same file
    assert [t.value for t in reopened.trials] == [0.5]
    assert storage_file(url) == tmp_path / "nfs" / "study.journal" and storage_file("postgresql://db/x") is None
