"""Studies and tracking on a real PostgreSQL server, as nodes of a cluster share them: two sweep processes at once
on one study (a killed one's RUNNING trial marked FAIL by the other's heartbeat), and three jobs at once logging
to one MLflow store. Each test module starts a throw-away server (initdb into a temporary folder, 127.0.0.1 on
a free port) and stops it."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from helpers import NO_FIGURES, PROJECT_ROOT, free_port, tiny_data_overrides


def postgres_bin() -> Path | None:
    """The folder of PostgreSQL's server programs: on the PATH, or where Debian puts them."""
    initdb = shutil.which("initdb")
    if initdb is None:  # Debian's versioned folders, newest first
        installed = Path("/usr/lib/postgresql").glob("*/bin/initdb")
        initdb = max(installed, key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else -1, default=None)
    return Path(initdb).resolve().parent if initdb else None  # resolved: Debian links only some programs onto the PATH


PG_BIN = postgres_bin()
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0
    or PG_BIN is None
    or shutil.which("runuser") is None
    or importlib.util.find_spec("psycopg") is None,
    reason="needs root, PostgreSQL's initdb and pg_ctl, and psycopg (vaelab[postgres])",
)
JOB = ["model=vae", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
       "logger=csv", *NO_FIGURES]  # fmt: skip


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A new server's URL prefix, ``postgresql://postgres@127.0.0.1:<port>/``, with databases optuna and mlflow."""
    folder = Path(tempfile.mkdtemp(prefix="vaelab-pg-"))  # outside pytest's 0700 temp: the postgres user reads it
    shutil.chown(folder, "postgres")
    port = free_port()

    def as_postgres(*command: str) -> None:
        program, *arguments = command
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / program), *arguments],
            check=True,
            capture_output=True,
            timeout=120,
        )

    as_postgres("initdb", "-D", str(folder / "data"), "-A", "trust", "-U", "postgres")
    as_postgres("pg_ctl", "-D", str(folder / "data"), "-l", str(folder / "server.log"), "-w", "start", "-o",
                f"-c listen_addresses=127.0.0.1 -p {port} -k {folder}")  # fmt: skip
    try:
        for database in ("optuna", "mlflow", "guarded"):
            as_postgres("createdb", "-h", "127.0.0.1", "-p", str(port), database)
        # A role that must give its password (scram-sha-256), for the credentials kept outside the URL.
        as_postgres("psql", "-h", "127.0.0.1", "-p", str(port), "-d", "guarded", "-c",
                    f"CREATE ROLE vaelab LOGIN PASSWORD '{PASSWORD}'; GRANT ALL ON SCHEMA public TO vaelab")  # fmt: skip
        hba = folder / "data" / "pg_hba.conf"
        hba.write_text(f"host guarded vaelab 127.0.0.1/32 scram-sha-256\n{hba.read_text()}")
        as_postgres("pg_ctl", "-D", str(folder / "data"), "reload")
        yield f"postgresql://postgres@127.0.0.1:{port}/"
    finally:
        as_postgres("pg_ctl", "-D", str(folder / "data"), "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


PASSWORD = "s3cr3t-pw"


def sweep_process(*overrides: str, env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"} | (env_extra or {})
    return subprocess.Popen([sys.executable, str(PROJECT_ROOT / "train.py"), "-m", *overrides], cwd=PROJECT_ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_two_sweep_processes_share_a_study_on_postgres(postgres: str, tiny_mnist: Path, tmp_path: Path) -> None:
    storage = postgres + "optuna"
    search = ["hparams_search=optuna", f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=shared",
              "hydra.sweeper.heartbeat_interval=1", *JOB, *tiny_data_overrides(tiny_mnist)]  # fmt: skip
    # Two sweeps at once, as two nodes would run them: 2 trials each.
    workers = [sweep_process(*search, "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={tmp_path / name}")
               for name in ("a", "b")]  # fmt: skip
    for worker in workers:
        assert worker.wait(timeout=300) == 0, worker.stderr.read()[-3000:]
    trials = optuna.load_study(study_name="shared", storage=storage).trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3] and {t.state.name for t in trials} == {"COMPLETE"}

    # A third one killed outright in the middle of its trial leaves it RUNNING; the next sweep's start finds its
    # heartbeat gone and marks it FAIL, then runs its own.
    # (A 500-epoch trial is another fixed setting than the study's: allowed here, it only has to run long enough.)
    killed = sweep_process(*search, "trainer.max_epochs=500", "hydra.sweeper.allow_other_setting=true",
                           "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={tmp_path / 'c'}")  # fmt: skip
    deadline = time.time() + 120
    while len(optuna.load_study(study_name="shared", storage=storage).trials) < 5 and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(1)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    time.sleep(3)  # more than two heartbeat intervals
    last = sweep_process(*search, "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={tmp_path / 'd'}")
    assert last.wait(timeout=300) == 0, last.stderr.read()[-3000:]
    states = [t.state.name for t in sorted(optuna.load_study(study_name="shared", storage=storage).trials,
                                           key=lambda t: t.number)]  # fmt: skip
    assert states == ["COMPLETE"] * 4 + ["FAIL", "COMPLETE"]


def test_three_jobs_at_once_log_to_mlflow_on_postgres(postgres: str, tiny_mnist: Path, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    tracking = postgres + "mlflow"
    command = sweep_process("launcher=joblib", "hydra.launcher.n_jobs=3", "model.beta=1,2,3", *JOB,
                            "trainer.max_epochs=2", "logger=mlflow", f"logger.mlflow.tracking_uri={tracking}",
                            f"logger.mlflow.artifact_location={tmp_path / 'artifacts'}",
                            *tiny_data_overrides(tiny_mnist), f"hydra.sweep.dir={tmp_path / 'sweep'}")  # fmt: skip
    assert command.wait(timeout=300) == 0, command.stderr.read()[-3000:]
    client = MlflowClient(tracking)
    runs = client.search_runs([client.get_experiment_by_name("vaelab").experiment_id])
    jobs = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    assert len(runs) == 4 and len(jobs) == 3  # the sweep's parent run and its three jobs
    assert {run.info.status for run in runs} == {"FINISHED"}
    for run in jobs:
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")] == [1, 3]
    assert sorted(run.data.params["model.beta"] for run in jobs) == ["1", "2", "3"]


def test_a_password_stays_outside_urls_and_records(postgres: str, tiny_mnist: Path, tmp_path: Path) -> None:
    """A storage URL with a password is refused in one line that hides it, before anything is written; the same
    URL without it and PGPASSWORD in the environment runs the search, and the password is in no file it wrote."""
    guarded = postgres.replace("postgres@", "vaelab@") + "guarded"
    search = ["hparams_search=optuna", "hydra.sweeper.study_name=guarded", "hydra.sweeper.n_trials=1", *JOB,
              *tiny_data_overrides(tiny_mnist)]  # fmt: skip
    with_password = guarded.replace("vaelab@", f"vaelab:{PASSWORD}@")
    refused = sweep_process(*search, f"hydra.sweeper.storage={with_password}", f"hydra.sweep.dir={tmp_path / 'a'}")
    assert refused.wait(timeout=120) == 1
    assert refused.stderr.read().strip().splitlines() == [
        f"error: hydra.sweeper.storage={guarded.replace('vaelab@', 'vaelab:***@')}: a password in a URL would be "
        "copied into the run's records, logs and logger params; give the URL without it and the password outside "
        "it (PostgreSQL: PGPASSWORD or ~/.pgpass; MLflow: MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)"
    ]
    assert not (tmp_path / "a").exists()
    sweep = sweep_process(*search, f"hydra.sweeper.storage={guarded}", f"hydra.sweep.dir={tmp_path / 'b'}",
                          env_extra={"PGPASSWORD": PASSWORD})  # fmt: skip
    assert sweep.wait(timeout=300) == 0, sweep.stderr.read()[-3000:]
    trials = optuna.load_study(study_name="guarded", storage=guarded.replace("vaelab@", f"vaelab:{PASSWORD}@")).trials
    assert [t.state.name for t in trials] == ["COMPLETE"]
    written = [path for path in (tmp_path / "b").rglob("*") if path.is_file()]
    assert written and not [path for path in written if PASSWORD.encode() in path.read_bytes()]
