"""A run's record says exactly what happened: the last epoch is saved whatever the validation cadence, a resume
that trains nothing changes nothing, evaluation counts each completed run once and names what it left out, and a
folder holds one kind of thing (a run or a sweep, never one inside the other)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from helpers import NO_FIGURES, PROJECT_ROOT, compose_config, free_port, run_inline, tiny_data_overrides, write_mnist
from test_run_safety import one_error_line, snapshot
from vaelab.errors import VaelabError
from vaelab.evaluation import evaluate
from vaelab.sweep.summary import summarise
from vaelab.training import train

TINY = ["model=vae", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "data.batch_size=50",
        "logger=csv", *NO_FIGURES]  # fmt: skip


def history(run: Path) -> list[dict[str, str]]:
    with (run / "history.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("every, epochs", [(2, 3), (5, 2)])
def test_last_checkpoint_is_the_last_epoch_whatever_the_validation_cadence(
    every: int, epochs: int, tiny_mnist: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    cadence = [f"trainer.check_val_every_n_epoch={every}", f"trainer.max_epochs={epochs}"]
    train(compose_config("train", [*TINY, *cadence, *tiny_data_overrides(tiny_mnist)], run))
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (epochs - 1, 2 * epochs)
    # val/* only in the rows of epochs that validated (not the last validation's values carried forward).
    validated = [row["epoch"] for row in history(run) if row["val/loss"]]
    assert validated == [str(epoch) for epoch in range(epochs) if (epoch + 1) % every == 0]


def test_a_resume_that_trains_nothing_changes_nothing(tiny_mnist: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = run_inline("train.py", *TINY, "trainer.max_epochs=2", *tiny_data_overrides(tiny_mnist),
                        f"hydra.run.dir={run}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    before = snapshot(run)
    metrics = json.loads((run / "metrics.json").read_text())
    assert "train/loss" in metrics and metrics["fit_seconds"] > 0
    one_error_line(run_inline("train.py", f"resume={run}"), "already trained 2 epochs", "trainer.max_epochs=3")
    assert snapshot(run) == before
    with pytest.raises(VaelabError, match="already trained 2 epochs"):
        train(compose_config("train", [*TINY, f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "trainer.max_epochs=2",
                                       *tiny_data_overrides(tiny_mnist)], tmp_path / "other"))  # fmt: skip


EVAL = ["iwae_samples=null", "projector=false", "figures.num_points=50", "figures.grid_size=3",
        "data.eval_batch_size=50", "trainer.limit_test_batches=1"]  # fmt: skip


@pytest.fixture(scope="module")
def trained_pair(tiny_mnist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-seed sweep, trained once per test worker; tests change copies of it."""
    sweep = tmp_path_factory.mktemp("records") / "sweep"
    result = run_inline("train.py", "-m", *TINY, "trainer.max_epochs=1", "seed=1,2", *tiny_data_overrides(tiny_mnist),
                        f"hydra.sweep.dir={sweep}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep


@pytest.fixture
def two_sweeps(trained_pair: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Two copies of that sweep in folders of their own (job folders of the same names)."""
    copies = tmp_path / "sweep1", tmp_path / "sweep2"
    for copy in copies:
        shutil.copytree(trained_pair, copy)
    return copies


def evaluate_runs(runs: list[Path], tiny_mnist: Path, output: Path, capsys: pytest.CaptureFixture) -> list[dict]:
    evaluate(compose_config("eval", [f"runs=[{','.join(map(str, runs))}]", *EVAL, *tiny_data_overrides(tiny_mnist)],
                            output))  # fmt: skip
    capsys.readouterr()
    return list(csv.DictReader((output / "results.csv").open()))


def test_evaluation_counts_each_completed_run_once_and_names_what_it_left_out(
    two_sweeps: tuple[Path, Path], tiny_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    first, second = two_sweeps
    # Job folders that share a name: each its own output folder and its own name in the row.
    rows = evaluate_runs([first / "0", second / "0"], tiny_mnist, tmp_path / "e1", capsys)
    assert len(rows) == 1 and rows[0]["seeds"] == "2"
    names = rows[0]["run"].split()
    assert len(set(names)) == 2 and all((tmp_path / "e1" / name / "metrics.json").is_file() for name in names)
    # The same run named three ways is one run.
    rows = evaluate_runs([first / "0", first / "0", Path(f"{first / '0'}/")], tiny_mnist, tmp_path / "e2", capsys)
    assert rows[0]["seeds"] == "1" and rows[0]["loss_std"] == ""
    # An interrupted job and a failed one are left out, and the report says so.
    metrics = json.loads((second / "0" / "metrics.json").read_text())
    (second / "0" / "metrics.json").write_text(json.dumps({**metrics, "status": "interrupted"}))
    (second / "1" / "FAILED").write_text("RuntimeError: boom\n")
    rows = evaluate_runs([first, second], tiny_mnist, tmp_path / "e3", capsys)
    assert rows[0]["seeds"] == "2"  # sweep1's two jobs
    report = (tmp_path / "e3" / "results_table.md").read_text()
    assert f"{second / '0'}: interrupted" in report and f"{second / '1'}: failed (RuntimeError: boom)" in report
    with pytest.raises(VaelabError, match="no completed run to evaluate"):
        evaluate_runs([second], tiny_mnist, tmp_path / "e4", capsys)


def test_folders_do_not_nest_and_a_resume_needs_the_runs_record(
    two_sweeps: tuple[Path, Path], tiny_mnist: Path, tmp_path: Path
) -> None:
    sweep, _ = two_sweeps
    run = sweep / "0"
    data = tiny_data_overrides(tiny_mnist)
    inside_sweep = run_inline("train.py", *TINY, "trainer.max_epochs=1", *data, f"hydra.run.dir={sweep / 'extra'}")
    one_error_line(inside_sweep, "is inside the sweep folder", str(sweep.resolve()))
    assert not (sweep / "extra").exists()
    inside_run = run_inline("train.py", "-m", *TINY, "seed=3,4", *data, f"hydra.sweep.dir={run / 'sub'}")
    one_error_line(inside_run, "is inside the run folder", str(run.resolve()))
    assert not (run / "sub").exists()
    # A run folder as the sweep folder.
    single = tmp_path / "single"
    single.mkdir()
    (single / "metrics.json").write_text("{}")
    one_error_line(run_inline("train.py", "-m", *TINY, "seed=3,4", *data, f"hydra.sweep.dir={single}"), "holds a run")
    # resume= in a multirun would go on in a new sweep folder: refused.
    one_error_line(run_inline("train.py", "-m", f"resume={run}", "trainer.max_epochs=2"), "drop -m")
    # Without its record of overrides, a resume would train the defaults over the run's record.
    before = snapshot(run)
    (run / ".hydra" / "overrides.yaml").unlink()
    before.pop(".hydra/overrides.yaml")
    one_error_line(run_inline("train.py", f"resume={run}", "trainer.max_epochs=2"), "overrides.yaml", "ckpt_path=")
    assert snapshot(run) == before


def test_a_sweep_summary_refuses_a_metric_no_job_recorded(two_sweeps: tuple[Path, Path]) -> None:
    sweep, _ = two_sweeps
    summarise(sweep)
    before = snapshot(sweep)
    command = [sys.executable, "-m", "vaelab.sweep.summary", str(sweep), "--metric", "val/nope"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    one_error_line(result, "--metric val/nope", "val/loss")
    assert snapshot(sweep) == before  # settings.csv and the summary as they were
    # A history.csv that is not text: the job is named unreadable, not a traceback.
    (sweep / "1" / "history.csv").write_bytes(b"epoch,step\xff\xfe\n0,\xff\n")
    rows = {row["job"]: row for row in summarise(sweep)}
    assert rows["1"]["status"] == "unreadable" and "history.csv" in rows["1"]["error"]
    assert rows["0"]["status"] == "completed"


def test_a_damaged_data_file_or_an_unreachable_tracker_is_one_line_before_the_tree(tmp_path: Path) -> None:
    data = write_mnist(tmp_path / "data")
    test_images = data / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    test_images.write_bytes(test_images.read_bytes()[:5000])  # the test split: read only after training, before
    command = [*TINY, "trainer.max_epochs=1", *tiny_data_overrides(data)]
    one_error_line(run_inline("train.py", *command, f"hydra.run.dir={tmp_path / 'r1'}"), "truncated or corrupt")
    assert not (tmp_path / "r1" / "checkpoints").exists()
    write_mnist(tmp_path / "data")
    started = time.monotonic()
    unreachable = ["logger=mlflow", f"logger.mlflow.tracking_uri=http://127.0.0.1:{free_port()}"]
    command = [o for o in command if o != "logger=csv"]
    result = run_inline("train.py", *command, *unreachable, f"hydra.run.dir={tmp_path / 'r2'}")
    one_error_line(result, "cannot reach the tracking server")
    assert time.monotonic() - started < 60  # MLflow's own client retries for minutes


def test_a_misspelled_key_added_on_the_command_line_is_one_line(tiny_mnist: Path, tmp_path: Path) -> None:
    result = run_inline("train.py", *TINY, "+seeed=3", *tiny_data_overrides(tiny_mnist), f"hydra.run.dir={tmp_path}")
    one_error_line(result, "+seeed is not a setting", "did you mean seed?")
    result = run_inline("evaluate.py", "ckpt_path=x.ckpt", "+iwae_sample=3", f"hydra.run.dir={tmp_path / 'e'}")
    one_error_line(result, "+iwae_sample is not a setting", "did you mean iwae_samples?")


@pytest.mark.parametrize("script, setting", [("train.py", "resume"), ("train.py", "ckpt_path"), ("train.py", "hydra.run.dir"),
                                             ("train.py", "hydra.sweep.dir"), ("evaluate.py", "ckpt_path")])  # fmt: skip
def test_a_path_longer_than_the_system_allows_is_one_line(script: str, setting: str, tmp_path: Path) -> None:
    long_path = tmp_path.joinpath(*["a" * 200] * 25)  # > PATH_MAX (4096)
    multirun = ["-m"] if setting == "hydra.sweep.dir" else []
    result = run_inline(script, *multirun, f"{setting}={long_path}", f"hydra.run.dir={tmp_path / 'r'}"
                        if setting != "hydra.run.dir" else "print_config=false")  # fmt: skip
    one_error_line(result, "a path is longer than this system allows")


def test_a_sweep_keeps_the_configuration_it_started_with(tiny_mnist: Path, tmp_path: Path) -> None:
    experiment = tmp_path / "conf" / "experiment" / "small.yaml"
    experiment.parent.mkdir(parents=True)
    experiment.write_text("# @package _global_\nmodel:\n  latent_dim: 3\n")
    rewrite = (
        f"+callbacks.rewrite={{_target_:helpers.Rewrite,path:'{experiment}',old:'latent_dim: 3',new:'latent_dim: ['}}"
    )
    sweep = tmp_path / "sweep"
    result = run_inline("train.py", "-m", "--config-dir", str(tmp_path / "conf"), "+experiment=small", "seed=1,2",
                        *TINY, "trainer.max_epochs=1", rewrite, *tiny_data_overrides(tiny_mnist),
                        f"hydra.sweep.dir={sweep}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "latent_dim: [" in experiment.read_text()  # job 0 broke the file before job 1 was composed
    for job in ("0", "1"):
        assert yaml.safe_load((sweep / job / ".hydra" / "config.yaml").read_text())["model"]["latent_dim"] == 3
    assert (sweep / ".configs").is_dir()
