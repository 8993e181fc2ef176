"""TensorBoard's dashboards, read through TensorBoard's own HTTP data API, as its pages read them: run names, the
HParams table of a sweep, test metrics at the best epoch, the Custom Scalars layout, and an evaluation's scalars,
figures and Projector embedding. (``make browser-check`` looks at the same views in Chromium.)"""

from __future__ import annotations

import json
import math
import shutil
import struct
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import SWEPT_MODELS, compose_config, free_port, get_json, tiny_data_overrides
from vaelab.evaluation import evaluate
from vaelab.figures.projector import BOOKMARK, CONFIG_FILE, write_projector
from vaelab.loggers.tensorboard import TensorBoardLogger


@pytest.mark.parametrize("latent_dim", [1, 2, 5])
def test_projector_files_draw_every_latent_dim(tmp_path: Path, latent_dim: int) -> None:
    codes, labels, images = torch.randn(30, latent_dim), torch.arange(30) % 10, torch.rand(30, 1, 28, 28)
    write_projector(tmp_path, codes, labels, images)
    rows = [line.split("\t") for line in (tmp_path / "embedding" / "tensors.tsv").read_text().splitlines()]
    assert len(rows) == 30 and {len(row) for row in rows} == {max(3, latent_dim)}  # 3-D PCA needs 3 columns
    assert [float(row[0]) for row in rows] == pytest.approx(codes[:, 0].tolist(), rel=1e-5)
    metadata = (tmp_path / "embedding" / "metadata.tsv").read_text().splitlines()
    assert metadata[0] == "digit\tindex" and metadata[1:4] == ["0\t0", "1\t1", "2\t2"]
    (state,) = json.loads((tmp_path / "embedding" / "bookmarks.txt").read_text())
    assert state["label"] == BOOKMARK and state["pcaComponentDimensions"] == [0, 1]
    assert [p["pca-0"] for p in state["projections"]] == pytest.approx(codes[:, 0].tolist())
    second = codes[:, 1].tolist() if latent_dim > 1 else [0.0] * 30
    assert [p["pca-1"] for p in state["projections"]] == pytest.approx(second)
    assert 'bookmarks_path: "embedding/bookmarks.txt"' in (tmp_path / CONFIG_FILE).read_text()
    assert (tmp_path / "embedding" / "sprite.png").stat().st_size > 1000


def test_test_metrics_are_drawn_at_the_best_checkpoint(tmp_path: Path) -> None:
    logger = TensorBoardLogger(str(tmp_path), run="r")
    logger.log_metrics({"val/loss": 5.0, "epoch": 0}, step=3)
    logger.before_test(step=3, epoch=0)  # the best checkpoint: epoch 0, step 3; training went on to step 9
    logger.log_metrics({"test/loss": 4.0, "epoch": 2}, step=9)
    logger.finalize("success")
    events = EventAccumulator(str(tmp_path / "r"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("test/loss")] == [(3, 4.0)]
    assert [(e.step, e.value) for e in events.Scalars("epoch")] == [(3, 0.0), (3, 0.0)]


def hparams_request(port: int, kind: str, body: dict) -> dict:
    return get_json(f"http://127.0.0.1:{port}/data/plugin/hparams/{kind}", timeout=30, body=body)


def test_tensorboard_serves_a_sweep_and_an_evaluation(trained_sweep: Path, tiny_mnist: Path, tmp_path: Path) -> None:
    # A copy of logs/ as a user has it: the shared 3-job sweep (one job per model) and an evaluation of job 0.
    logs = tmp_path / "logs"
    shutil.copytree(trained_sweep, logs / "sweep", ignore=shutil.ignore_patterns("*.ckpt"))
    data = [o for o in tiny_data_overrides(tiny_mnist) if not o.startswith("data.val_size")]
    evaluate(compose_config("eval", [f"ckpt_path={trained_sweep / '0' / 'checkpoints' / 'last.ckpt'}", *data,
                                     "iwae_samples=null", "figures.grid_size=5"], logs / "eval"))  # fmt: skip

    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "tensorboard"), "--logdir", str(logs), "--host", "127.0.0.1",
         "--port", str(port), "--reload_interval", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    api = f"http://127.0.0.1:{port}/data"
    try:
        # Run names: the model, the sweep's date-time folder, the job's number and what it varied.
        runs = get_json(f"{api}/runs", timeout=60)
        job_runs = {
            f"sweep/{job}/tensorboard/{model} sweep #{job} model={model}" for job, model in enumerate(SWEPT_MODELS)
        }
        eval_run = "eval/tensorboard/eval vae-0 epoch 2"
        assert set(runs) == job_runs | {eval_run}

        # HParams: three rows, each with the model (the swept key) and three real final metrics; integers as text.
        experiment = hparams_request(port, "experiment", {"experimentName": ""})
        columns = {info["name"] for info in experiment["hparamInfos"]}
        assert {"model", "model.latent_dim", "data.batch_size", "model.optimizer.lr"} <= columns
        assert not [name for name in columns if name.split(".")[0] in ("callbacks", "paths", "logger", "hydra")]
        groups = hparams_request(port, "session_groups", {
            "experimentName": "", "startIndex": 0, "sliceSize": 100,
            "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
            "colParams": [{"metric": {"tag": tag}} for tag in ("hp/val_loss", "hp/val_nelbo", "hp/test_loss")],
        })["sessionGroups"]  # fmt: skip
        assert sorted(group["hparams"]["model"] for group in groups) == sorted(SWEPT_MODELS)
        for group in groups:
            values = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
            assert set(values) == {"hp/val_loss", "hp/val_nelbo", "hp/test_loss"} and all(
                map(math.isfinite, values.values())
            )
            assert group["hparams"]["data.batch_size"] == "50"

        # Test metrics sit at the step of the best checkpoint they were computed from (not the last step).
        for job in range(len(SWEPT_MODELS)):
            (best,) = (trained_sweep / str(job) / "checkpoints").glob("best-epoch*.ckpt")
            best_step = torch.load(best, weights_only=True)["global_step"]
            run = urllib.parse.quote(sorted(r for r in job_runs if r.startswith(f"sweep/{job}/"))[0])
            points = get_json(f"{api}/plugin/scalars/scalars?run={run}&tag=test%2Floss", timeout=10)
            assert [step for _, step, _ in points] == [best_step]
        layout = get_json(f"{api}/plugin/custom_scalars/layout", timeout=10)
        assert layout["category"][0]["chart"][0]["multiline"]["tag"] == ["^train/loss$", "^val/loss$"]

        # The evaluation: its numbers and figures, and the whole test split's codes in the Projector (padded to
        # 3 dims, so its 3-D PCA draws them) with the bookmark that lays them out by the real z axes.
        quoted = urllib.parse.quote(eval_run)
        assert get_json(f"{api}/plugin/scalars/tags", timeout=10)[eval_run].keys() >= {"test/loss", "test/kl"}
        images = get_json(f"{api}/plugin/images/tags", timeout=10)[eval_run]
        assert {"figures/samples", "figures/latent_scatter", "figures/interpolation"} <= images.keys()
        (embedding,) = get_json(f"{api}/plugin/projector/info?run={quoted}", timeout=10)["embeddings"]
        assert embedding["tensorShape"] == [200, 3] and embedding["bookmarksPath"]
        name = urllib.parse.quote(embedding["tensorName"])
        with urllib.request.urlopen(f"{api}/plugin/projector/tensor?run={quoted}&name={name}", timeout=10) as reply:
            values = struct.unpack(f"<{200 * 3}f", reply.read())
        assert all(math.isfinite(v) for v in values) and values[2::3] == (0.0,) * 200
        (state,) = get_json(f"{api}/plugin/projector/bookmarks?run={quoted}&name={name}", timeout=10)
        assert [p["pca-0"] for p in state["projections"]] == pytest.approx(values[0::3], rel=1e-4, abs=1e-5)
    finally:
        server.terminate()
        server.wait(timeout=30)
