"""Loggers: MLflow (read back through a real tracking server), several loggers at once, figures and tags for
every logger, the learning-rate curve, the config tree. (Resuming an MLflow run in place: test_robustness.)"""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import math
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from omegaconf import ListConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from helpers import (
    NO_FIGURES,
    STEP_LR,
    SWEPT_MODELS,
    compose_config,
    free_port,
    get_json,
    tensorboard_run,
    tiny_data_overrides,
    wandb_records,
)
from vaelab.config_tree import run_tags
from vaelab.errors import VaelabError
from vaelab.job import Job
from vaelab.loggers import CometLogger, MLFlowLogger, WandbLogger
from vaelab.loggers.mlflow import check_mlflow
from vaelab.run.folder import RunFolder
from vaelab.training import train

MODEL_CLASSES = {
    "vae": "vaelab.models.VAE",
    "conv_vae": "vaelab.models.ConvVAE",
    "cond_conv_vae": "vaelab.models.CondConvVAE",
}


def test_mlflow_sweep_with_several_loggers_read_back_through_the_tracking_server(trained_sweep: Path) -> None:
    """The shared sweep ran with logger=many (TensorBoard, CSV, MLflow), tags, a schedule and a user callback."""
    sweep, store = trained_sweep, trained_sweep.parent / "mlflow.db"
    # TensorBoard and CSV got the same run: figures, tags, the learning-rate curve, the metrics.
    events = EventAccumulator(str(tensorboard_run(sweep / "0")), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    assert {"figures/latent_scatter", "figures/latent_grid", "figures/centre_decode"} <= set(events.Tags()["images"])
    assert [round(s.value, 6) for s in events.Scalars("train/lr")] == [0.001, 0.0005]
    assert b"ci, smoke" in events.Tensors("tags/text_summary")[0].tensor_proto.string_val[0]
    assert "val/loss" in next(csv.DictReader((sweep / "0" / "csv" / "metrics.csv").open()))
    # HParams: one entry written at the end, with the curated keys and real final metrics (no NaN placeholder).
    session = HParamsPluginData.FromString(events.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    hparams = session.session_start_info.hparams
    assert hparams["model"].string_value == "vae" and hparams["model.latent_dim"].string_value == "2"  # not 2.00
    assert {"data.batch_size", "model.optimizer.lr", "model.scheduler.gamma", "trainer.max_epochs", "tags"} <= set(
        hparams
    )
    assert not [key for key in hparams if key.split(".")[0] in ("callbacks", "paths", "logger", "hydra")]
    for tag in ("hp/val_loss", "hp/val_nelbo", "hp/test_loss"):
        assert [math.isfinite(event.value) for event in events.Scalars(tag)] == [True]
    assert "custom_scalars__config__" in events.Tags()["tensors"]  # train/val curves of a quantity together
    tree = (sweep / "0" / "config_tree.log").read_text()
    assert tree.startswith("config") and "_target_: vaelab.models.VAE" in tree and "\x1b[" not in tree

    # MLflow, through its tracking server's REST API: one parent run for the sweep, one child run per job.
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{store}",
         "--default-artifact-root", str(sweep.parent / "served"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=sweep.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    api = f"http://127.0.0.1:{port}/api/2.0/mlflow"
    try:
        experiment = get_json(f"{api}/experiments/get-by-name?experiment_name=vaelab", timeout=90)["experiment"]
        runs = get_json(f"{api}/runs/search", 10, {"experiment_ids": [experiment["experiment_id"]]})["runs"]
        tags = [{t["key"]: t["value"] for t in run["data"]["tags"]} for run in runs]
        parents = [run for run, tag in zip(runs, tags) if "mlflow.parentRunId" not in tag]
        assert len(runs) == 1 + len(SWEPT_MODELS) and len(parents) == 1
        parent = parents[0]["info"]
        assert parent["run_name"] == f"sweep {sweep.name}" and parent["status"] == "FINISHED"
        jobs = sorted((tag["job"], run, tag) for run, tag in zip(runs, tags) if run["info"] != parent)
        for job, run, tag in jobs:
            run_id = run["info"]["run_id"]
            assert tag["mlflow.parentRunId"] == parent["run_id"] and tag["sweep"] == str(sweep)
            model = SWEPT_MODELS[int(job)]
            assert run["info"]["run_name"] == f"{model} {sweep.name} #{job}" and run["info"]["status"] == "FINISHED"
            assert tag["ci"] == tag["smoke"] == "true" and Path(tag["best_checkpoint"]).is_file()
            params = {p["key"]: p["value"] for p in run["data"]["params"]}
            assert params["model.latent_dim"] == "2" and params["model._target_"] == MODEL_CLASSES[model]
            assert params["trainer.max_epochs"] == "2" and params["tags"] == "['ci', 'smoke']"
            history = get_json(f"{api}/metrics/get-history?run_id={run_id}&metric_key=val/loss", 10)["metrics"]
            assert len(history) == 2
            metrics_file = json.loads((sweep / job / "metrics.json").read_text())
            assert history[-1]["value"] == metrics_file["val/loss"]
            files = get_json(f"{api}/artifacts/list?run_id={run_id}&path=figures", 10)["files"]
            names = {Path(f["path"]).name: int(f.get("file_size", 0)) for f in files}
            expected = {f"latent_scatter{suffix}.png" for suffix in ("_epoch000", "_epoch001", "")}
            assert expected <= set(names) and min(names.values()) > 1000
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.parametrize("tags", [["ok", ""], ["ok", ["nested"]], ["ok", "a:b"], {"a": 1}])
def test_tags_must_be_words(tags: object) -> None:
    with pytest.raises(VaelabError, match=r"^tags: .* is not a word; give a list of words"):
        run_tags(tags)


def test_tags_accept_one_word_or_a_list() -> None:
    assert run_tags("baseline") == ["baseline"] and run_tags(None) == []
    assert run_tags(ListConfig(["lr sweep", "v1.2/a-b"])) == ["lr sweep", "v1.2/a-b"]


def test_mlflow_store_folder_is_made_and_a_missing_mlflow_is_one_line(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    store = tmp_path / "new" / "folder" / "runs.db"
    check_mlflow(f"sqlite:///{store}")
    assert store.parent.is_dir()
    with pytest.raises(
        VaelabError, match=r"^logger.mlflow.tracking_uri=sqlite:////proc/nope/x.db: cannot create /proc/nope"
    ):
        check_mlflow("sqlite:////proc/nope/x.db")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real_find_spec(name, *a)
    )
    with pytest.raises(VaelabError, match=r"logger=mlflow needs MLflow: pip install 'vaelab\[mlflow\]'"):
        check_mlflow(None)


def test_tags_reach_an_mlflow_run_resumed_in_place(
    tmp_path: Path, mlflow_store: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = {"tracking_uri": mlflow_store, "experiment_name": "vaelab"}
    first = MLFlowLogger(run_dir=str(tmp_path), **settings)
    with caplog.at_level(logging.WARNING):
        first.start_run({}, ["baseline"], None)  # the store's first run makes the experiment, without a warning
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING], caplog.text
    resumed = MLFlowLogger(run_dir=str(tmp_path), **settings)  # finds the run id the first one left
    resumed.start_run({}, ["resumed"], None)
    assert resumed.run_id == first.run_id
    tags = resumed.experiment.get_run(resumed.run_id).data.tags
    assert tags["baseline"] == tags["resumed"] == "true"


@pytest.mark.parametrize(("logger", "schedule"), [("none", True), ("csv", False)])
def test_the_learning_rate_curve_needs_a_logger_and_a_schedule(
    logger: str, schedule: bool, tiny_mnist: Path, tmp_path: Path
) -> None:
    """Lightning's LearningRateMonitor refuses a run without a logger and logs a constant without a schedule; the
    configured ``learning_rate`` callback does neither."""
    overrides = ["model=vae", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
                 f"logger={logger}", "test=false", *NO_FIGURES, *tiny_data_overrides(tiny_mnist)]  # fmt: skip
    metrics = train(compose_config("train", [*overrides, *([STEP_LR] if schedule else [])], tmp_path / "run"))
    assert metrics["status"] == "completed"
    if logger == "csv":
        (metrics_file,) = (tmp_path / "run" / "csv").rglob("metrics.csv")
        assert not any("lr" in column for column in next(csv.reader(metrics_file.open())))


def test_an_evaluation_reaches_the_training_runs_mlflow_run(
    tiny_mnist: Path, tmp_path: Path, mlflow_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow.tracking import MlflowClient

    from vaelab.evaluation import evaluate

    run = tmp_path / "run"
    train(compose_config("train", ["model=vae", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                                   "trainer.limit_val_batches=1", "data.batch_size=50", "test=false", "logger=mlflow",
                                   f"logger.mlflow.tracking_uri={mlflow_store}", *NO_FIGURES,
                                   *tiny_data_overrides(tiny_mnist)], run))  # fmt: skip
    (metrics,) = evaluate(compose_config("eval", [f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "iwae_samples=2",
                                                  "projector=false", "figures.num_points=50", "figures.grid_size=3",
                                                  *tiny_data_overrides(tiny_mnist)], tmp_path / "eval"))  # fmt: skip
    run_id = (run / "mlflow_run_id").read_text().strip()
    client = MlflowClient(mlflow_store)
    for name in ("loss", "iwae_bce_bound", "loss_kl_averaged"):
        (logged,) = client.get_metric_history(run_id, f"eval/{name}")
        assert logged.value == pytest.approx(metrics[name]) and logged.step == 2  # at the checkpoint's step

    # A tracking server that is down, or a store that is gone, costs the evaluation nothing but a line.
    for store in (f"http://127.0.0.1:{free_port()}", f"sqlite:///{tmp_path / 'gone.db'}"):
        (run / "mlflow_tracking_uri").write_text(f"{store}\n")
        evaluated = tmp_path / f"eval-{store.split(':')[0]}"
        (again,) = evaluate(compose_config("eval", [f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
                                                    "iwae_samples=null", "projector=false", "figures.num_points=50",
                                                    "figures.grid_size=3", *tiny_data_overrides(tiny_mnist)],
                                           evaluated))  # fmt: skip
        assert json.loads((evaluated / "metrics.json").read_text())["loss"] == pytest.approx(again["loss"])
        assert "not logged to the training run's MLflow run" in capsys.readouterr().err
    assert not (tmp_path / "gone.db").exists()


@pytest.mark.parametrize("schedule", [False, True])
def test_the_learning_rate_chart_is_there_only_with_a_schedule(
    schedule: bool, tiny_mnist: Path, tmp_path: Path
) -> None:
    """TensorBoard's Custom Scalars page: without a schedule no `train/lr` is logged, so no chart waits for one."""
    from tensorboard.plugins.custom_scalar import layout_pb2

    overrides = ["model=vae", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
                 "logger=tensorboard", "test=false", *NO_FIGURES, *tiny_data_overrides(tiny_mnist)]  # fmt: skip
    train(compose_config("train", [*overrides, *([STEP_LR] if schedule else [])], tmp_path / "run"))
    events = EventAccumulator(str(tensorboard_run(tmp_path / "run")), size_guidance={"tensors": 0})
    events.Reload()
    (config,) = events.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(config.tensor_proto.string_val[0])
    charts = [chart.title for category in layout.category for chart in category.chart]
    assert "loss" in charts and ("learning rate" in charts) == schedule


def test_wandb_offline_gets_the_config_metrics_figures_tags_and_group(
    tiny_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """logger=wandb with the real package, offline: the run's name and tags, a sweep job's group (its sweep folder's
    name), the whole config, the epoch means, the figures as images, the outcome in the summary; no warning."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    sweep = Path("/logs/multiruns/2026-12-07_lr")  # the job as a sweep's command would describe it to train()
    job = Job(output_dir=sweep / "3", multirun=True, sweep_dir=sweep, choices={"model": "vae"})
    run = tmp_path / "run"
    overrides = ["model=vae", "trainer.max_epochs=2", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
                 "logger=wandb", "tags=[baseline]", "callbacks.figures.grid_size=3", "callbacks.figures.num_points=50",
                 *tiny_data_overrides(tiny_mnist)]  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = train(compose_config("train", [*overrides, "logger.wandb.run_name=vae wandb"], run), job)
    assert not [w for w in caught if "wandb" in w.filename or "loggers" in w.filename], [str(w) for w in caught]
    assert "WARNING" not in capfd.readouterr().err  # W&B prints its own warnings ("wandb: WARNING ...")
    records = wandb_records(run)
    (*_, latest) = [r.run for r in records if r.WhichOneof("record_type") == "run"]  # tags come in an update
    assert (latest.display_name, latest.run_group, list(latest.tags)) == ("vae wandb", "2026-12-07_lr", ["baseline"])
    config = {
        u.key or "/".join(u.nested_key): u.value_json for r in records if r.HasField("config") for u in r.config.update
    }
    assert json.loads(config["model"])["beta"] == 1.0 and json.loads(config["sweep"])["job"] == "3"
    history = [{i.key or "/".join(i.nested_key): i.value_json for i in r.history.item} for r in records
               if r.HasField("history")]  # fmt: skip
    assert [json.loads(row["val/loss"]) for row in history if "val/loss" in row] == pytest.approx(
        [row["val/loss"] for row in RunFolder(run).read_history()]
    )
    assert {key.split("/")[1] for row in history for key in row if key.startswith("figures/")} == {
        "latent_scatter", "latent_grid", "centre_decode"
    }  # fmt: skip
    assert len(list(run.glob("wandb/offline-run-*/files/media/images/figures/latent_grid_*.png"))) == 2  # per epoch
    summary = {i.key: i.value_json for r in records if r.HasField("summary") for i in r.summary.update if i.key}
    assert json.loads(summary["test/loss"]) == pytest.approx(metrics["test/loss"])
    assert json.loads(summary["best_checkpoint"]).startswith(str(run / "checkpoints"))
    # resume=<run> goes on in the same W&B run: its id is kept in the run folder.
    assert WandbLogger(run_dir=str(run), project="vaelab")._wandb_init["id"] == latest.run_id


def test_comet_offline_archives_the_config_metrics_figures_tags_and_outcome(
    tiny_mnist: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """logger=comet with the real package, offline: the archive `comet upload` takes holds the run's name, its tags
    and its sweep's, the whole config, the epoch means, the figures every epoch and the outcome; no warning."""
    import zipfile

    sweep = Path("/logs/multiruns/2026-12-07_lr")
    job = Job(output_dir=sweep / "3", multirun=True, sweep_dir=sweep, choices={"model": "vae"})
    run = tmp_path / "run"
    overrides = ["model=vae", "trainer.max_epochs=2", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
                 "logger=comet", "logger.comet.offline=true", "tags=[baseline]", "callbacks.figures.grid_size=3",
                 "callbacks.figures.num_points=50", *tiny_data_overrides(tiny_mnist)]  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = train(compose_config("train", overrides, run), job)
    assert not [w for w in caught if "comet" in w.filename or "loggers" in w.filename], [str(w) for w in caught]
    output = capfd.readouterr()
    assert "WARNING" not in output.err + output.out  # Comet logs its own ("COMET WARNING: ...")
    (archive,) = run.glob("comet/*.zip")
    with zipfile.ZipFile(archive) as opened:
        experiment = json.loads(opened.read("experiment.json"))
        messages = [json.loads(line) for line in opened.read("messages.json").splitlines()]
    payloads = lambda kind: [m["payload"] for m in messages if m["type"] == kind]  # noqa: E731
    assert experiment["project_name"] == "vaelab" and sorted(experiment["tags"]) == ["2026-12-07_lr", "baseline"]
    others = {p["key"]: p["value"] for p in payloads("log_other")}
    assert others["Name"] == "vae 2026-12-07_lr #3" and others["best_checkpoint"].startswith(str(run / "checkpoints"))
    assert others["final/test/loss"] == pytest.approx(metrics["test/loss"])
    params = {(p.get("param") or p["params"])["paramName"]: (p.get("param") or p["params"])["paramValue"]
              for p in payloads("parameter_msg")}  # fmt: skip
    assert params["model|beta"] == 1.0 and params["sweep|job"] == "3"
    val = [p["metric"]["metricValue"] for p in payloads("metric_msg") if p["metric"]["metricName"] == "val/loss"]
    assert val == pytest.approx([row["val/loss"] for row in RunFolder(run).read_history()])
    figures = [
        p["additional_params"]["figName"] for p in payloads("file_upload") if p["upload_type"] == "visualization"
    ]
    assert sorted(figures) == sorted(2 * ["figures/latent_scatter", "figures/latent_grid", "figures/centre_decode"])
    # Online without an API key: one line saying what to set, before Comet is asked for an experiment.
    monkeypatch.delenv("COMET_API_KEY", raising=False)
    with pytest.raises(VaelabError, match="needs a Comet API key .* logger.comet.offline=true"):
        CometLogger(run_dir=str(tmp_path / "online"), project="vaelab")
