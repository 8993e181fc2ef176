"""Shared fixtures: tiny MNIST-format data sets written as real IDX files, the real data when present, a trained
sweep and an MLflow store shared by the session. Helper functions live in helpers.py."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from filelock import FileLock

# The suite runs as two pytest-xdist workers on a 2-core machine, and many tests start training processes:
# one intra-op thread each, so no two multi-threaded PyTorch processes spin against each other (~5x slower).
# Set for the whole session before torch is imported, and inherited by every process a test starts.
os.environ["OMP_NUM_THREADS"] = "1"

from helpers import REAL_DATA_DIR, STEP_LR, SWEPT_MODELS, run_script, tiny_data_overrides, write_mnist  # noqa: E402

# The modules whose tests wait longest on other processes (a scheduler, a database, pip), first: the other worker
# trains meanwhile, and no worker is left alone with one of them at the end.
FIRST_MODULES = ("test_slurm", "test_postgres", "test_packaging")
# Tests that share what one fixture makes or guards run on one xdist worker (``--dist loadgroup``), one after the
# other: no worker waits on another's lock (the shared sweep takes ~20 s to train; DDP runs go one at a time).
GROUPED_FIXTURES = ("trained_sweep", "ddp_alone")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow modules first, then the tests of the shared sweep (each group stays together, and a module's tests
    with a module fixture stay together); each fixture of ``GROUPED_FIXTURES`` makes one xdist group."""
    for item in items:
        for name in GROUPED_FIXTURES:
            if name in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(name))
    items.sort(key=lambda item: (item.module.__name__ not in FIRST_MODULES,
                                 "trained_sweep" not in getattr(item, "fixturenames", ())))  # fmt: skip


@pytest.fixture(scope="session", autouse=True)
def project_root_elsewhere(tmp_path_factory: pytest.TempPathFactory) -> None:
    """What a run writes by default (``paths.root_dir``: ``logs/``, MLflow's store and artifacts) goes to a folder of
    this session, not into the checkout, in this process and every process a test starts."""
    os.environ["VAELAB_ROOT"] = str(tmp_path_factory.mktemp("project_root"))


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mnist(tmp_path_factory.mktemp("tiny_mnist"))


@pytest.fixture(scope="session")
def real_mnist() -> Path:
    if not (REAL_DATA_DIR / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"real MNIST not present in {REAL_DATA_DIR}")
    return REAL_DATA_DIR


def shared_temp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The temp folder all xdist workers of this session share (their own ones sit inside it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def trained_sweep(tiny_mnist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short multirun over the three models (jobs 0, 1, 2: 2 epochs each, figures, a schedule, tags) logged
    to TensorBoard, CSV and MLflow (``mlflow.db`` and ``art/`` beside the sweep folder); returns the sweep
    folder. Run once per test session: the xdist workers share it through a file lock in their common temp."""
    shared = shared_temp(tmp_path_factory)
    root, sweep = shared / "trained_sweep", shared / "trained_sweep" / "sweep"
    with FileLock(str(shared / "trained_sweep.lock")):
        if (root / "done").is_file():
            return sweep
        shutil.rmtree(root, ignore_errors=True)
        result = run_script(
            "train.py", "-m", f"model={','.join(SWEPT_MODELS)}", "logger=many", "tags=[ci,smoke]", STEP_LR,
            "trainer.max_epochs=2", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1", "data.batch_size=50",
            "callbacks.figures.grid_size=5", "callbacks.figures.digits=[0,9]",  # small figures draw faster
            # A callback written against the unified `lightning` package, as Lightning's docs write them.
            "+callbacks.stop._target_=lightning.pytorch.callbacks.EarlyStopping", "+callbacks.stop.monitor=val/loss",
            f"logger.mlflow.tracking_uri=sqlite:///{root}/mlflow.db", f"logger.mlflow.artifact_location={root}/art",
            *tiny_data_overrides(tiny_mnist), f"hydra.sweep.dir={sweep}",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        for job in range(len(SWEPT_MODELS)):
            assert f"Run folder:   {sweep / str(job)}" in result.stdout
        (root / "done").write_text("")
    return sweep


@pytest.fixture
def ddp_alone(tmp_path_factory: pytest.TempPathFactory):
    """One DDP test at a time across the xdist workers: two 2-process gloo groups side by side on 2 cores have
    reset each other's connections (two of three parallel runs here)."""
    with FileLock(str(shared_temp(tmp_path_factory) / "ddp.lock")):
        yield


@pytest.fixture(scope="session")
def empty_mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its tables made (MLflow's migrations take ~4 s per new store); made once per
    session, shared by the xdist workers like ``trained_sweep``. The shared sweep still makes its own store."""
    shared = shared_temp(tmp_path_factory)
    store = shared / "empty_mlflow" / "mlflow.db"
    with FileLock(str(shared / "empty_mlflow.lock")):
        if not store.is_file():
            from mlflow.tracking import MlflowClient

            store.parent.mkdir(exist_ok=True)
            MlflowClient(f"sqlite:///{store.parent / 'new.db'}").search_experiments()
            (store.parent / "new.db").rename(store)
    return store


@pytest.fixture
def mlflow_store(empty_mlflow_store: Path, tmp_path: Path) -> str:
    """The tracking URI of a new, empty MLflow store of this test's own (a copy of ``empty_mlflow_store``)."""
    store = tmp_path / "mlflow.db"
    shutil.copyfile(empty_mlflow_store, store)
    return f"sqlite:///{store}"
