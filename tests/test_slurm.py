"""Sweeps through a real SLURM scheduler: a one-node cluster on this machine (tools/slurm_local.sh), a grid sweep
with a failing job, a job sbatch refuses, a 2-task DDP job, and an Optuna trial whose job is requeued while it
trains and resumes to the uninterrupted step count (the study reads back as with any launcher). Runs as root where
slurm-wlm and munge are installed (.ci/run installs them)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from helpers import NO_FIGURES, PROJECT_ROOT, tiny_data_overrides, val_loss_over_ranks
from vaelab.run.folder import RunFolder

DAEMONS = ("slurmctld", "slurmd", "munged", "sbatch")
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(d) for d in DAEMONS), reason="needs root and slurm-wlm + munge"
)
# One CPU, no GPU, 1 GB per job on this 2-core node (conf/launcher/slurm.yaml asks a cluster's GPU node's share).
ON_THIS_NODE = ["launcher=slurm", "hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1",
                "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10"]  # fmt: skip
JOB = ["model=vae", "trainer.limit_train_batches=4", "trainer.limit_val_batches=1", "data.batch_size=10",
       "logger=csv", *NO_FIGURES]  # fmt: skip


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The cluster, started for this module and stopped after it; the environment its clients need."""
    state = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SLURM_LOCAL_DIR": str(state)}
    started = subprocess.run([PROJECT_ROOT / "tools" / "slurm_local.sh", "start"], env=env, capture_output=True,
                             text=True, timeout=120)  # fmt: skip
    assert started.returncode == 0, started.stderr + started.stdout
    env["SLURM_CONF"] = str(state / "slurm.conf")
    yield env
    subprocess.run([PROJECT_ROOT / "tools" / "slurm_local.sh", "stop"], env=env, capture_output=True, timeout=90)
    left = [subprocess.run(["pgrep", "-a", "-x", name], capture_output=True, text=True).stdout
            for name in ("slurmstepd", "srun", "slurmd", "slurmctld")]  # fmt: skip
    assert not "".join(left), f"still running after the cluster stopped: {left}"  # nothing outlives the tests


def sweep(env: dict[str, str], *overrides: str, background: bool = False):
    command = [sys.executable, str(PROJECT_ROOT / "train.py"), "-m", *ON_THIS_NODE, *overrides]
    if background:
        return subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)  # fmt: skip
    return subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)


def scheduler(env: dict[str, str], *command: str) -> str:
    return subprocess.run(command, env=env, capture_output=True, text=True, check=True, timeout=30).stdout


def test_sweeps_ddp_and_a_requeued_job_through_slurm(slurm: dict[str, str], tiny_mnist: Path, tmp_path: Path) -> None:
    data = tiny_data_overrides(tiny_mnist)
    # A requeued trial first (it waits on the scheduler): an Optuna study of one trial whose job SLURM requeues
    # while it trains. It resumes from its own last.ckpt and ends at the uninterrupted step count, counted once.
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    requeued = tmp_path / "requeued"
    search = ["hparams_search=optuna", f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=requeue",
              "hydra.sweeper.n_trials=1", "hydra.sweeper.pruner=null"]  # fmt: skip
    process = sweep(slurm, *search, *JOB, "trainer.max_epochs=30", *data, f"hydra.sweep.dir={requeued}",
                    background=True)  # fmt: skip
    last = requeued / "0" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while not last.is_file() and time.time() < deadline and process.poll() is None:
        time.sleep(0.5)
    (job_id,) = scheduler(slurm, "squeue", "-h", "-o", "%i").split()
    scheduler(slurm, "scontrol", "requeue", job_id)
    deadline = time.time() + 60
    while (
        "Restarts=1" not in (job := scheduler(slurm, "scontrol", "show", "job", job_id))
        or "JobState=RUNNING" not in job
    ):
        if "JobState=PENDING" in job:  # SLURM holds a requeued job back 2 minutes: start it now
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], env=slurm, capture_output=True)
        assert time.time() < deadline, job
        time.sleep(0.5)

    # Meanwhile: a 3-job grid sweep, one job diverging, contained as with the basic launcher.
    grid = sweep(slurm, *JOB, "trainer.max_epochs=1", "model.optimizer.lr=1e12,1e-3,3e-3", *data,
                 f"hydra.sweep.dir={tmp_path / 'grid'}")  # fmt: skip
    assert grid.returncode == 1, grid.stderr[-3000:]
    assert (
        "error: 1 of 3 jobs failed" in grid.stderr
        and f"{tmp_path / 'grid' / '0'}: the training loss became" in grid.stderr
    )
    statuses = [RunFolder(tmp_path / "grid" / job).read_metrics() for job in "012"]
    assert [m["status"] for m in statuses] == ["failed", "completed", "completed"]
    assert [m["threads"] for m in statuses[1:]] == [1, 1]  # each job's threads follow its cpus_per_task
    assert len(list((tmp_path / "grid" / ".submitit").glob("*/*_submission.sh"))) == 1  # one sbatch array

    # A job sbatch refuses (a GPU of this CPU-only node): sbatch's reason in one error line, no traceback.
    refused = sweep(slurm, *JOB, "trainer.max_epochs=1", "hydra.launcher.gpus_per_node=1", *data,
                    f"hydra.sweep.dir={tmp_path / 'refused'}")  # fmt: skip
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error: ")]
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    assert len(errors) == 1 and "the cluster refused the jobs" in errors[0] and "gres" in errors[0], errors

    # A 2-task DDP job: Lightning takes its ranks from SLURM; val/loss is the mean over every image once.
    ddp = sweep(slurm, *JOB, "trainer.max_epochs=1", "hydra.launcher.tasks_per_node=2", "trainer.devices=2",
                "trainer.strategy=ddp", *data, "data.val_size=5", f"hydra.sweep.dir={tmp_path / 'ddp'}")  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    metrics = RunFolder(tmp_path / "ddp" / "0").read_metrics()
    expected = val_loss_over_ranks(tmp_path / "ddp" / "0" / "checkpoints" / "last.ckpt", tiny_mnist, 5, world_size=2)
    assert metrics["status"] == "completed" and metrics["val/loss"] == pytest.approx(expected, rel=1e-5)

    out, err = process.communicate(timeout=240)
    assert process.returncode == 0, err[-3000:]
    run = RunFolder(requeued / "0")
    assert "SLURM runs this job again (restart 1): resuming from" in (requeued / "0" / "train.log").read_text()
    rows = run.read_history()
    assert [(int(r["epoch"]), int(r["step"])) for r in rows] == [(epoch, 4 * (epoch + 1)) for epoch in range(30)]
    assert json.loads(run.metrics_file.read_text())["status"] == "completed"
    (trial,) = optuna.load_study(study_name="requeue", storage=storage).trials
    assert trial.state.name == "COMPLETE" and trial.value == pytest.approx(run.read_metrics()["val/nelbo"])
