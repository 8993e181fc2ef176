"""Resume, interruption, reproducibility, KL warm-up, non-finite losses and DDP on CPU."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import (
    NO_FIGURES,
    PROJECT_ROOT,
    compose_config,
    run_inline,
    run_script,
    start_long_run,
    tensorboard_run,
    tiny_data_overrides,
    val_loss_over_ranks,
)
from vaelab.errors import Interrupted, VaelabError
from vaelab.run import guard as run_guard
from vaelab.run.checkpoints import load_model
from vaelab.run.folder import RunFolder
from vaelab.training import train

FAST = ["trainer.limit_val_batches=1", "data.batch_size=50", "callbacks.figures.grid_size=4", "test=false"]


def test_resume_continues_the_run_in_place(tiny_mnist: Path, tmp_path: Path, mlflow_store: str) -> None:
    run_dir = tmp_path / "run"
    common = ["model=vae", *FAST, "trainer.limit_train_batches=4", *tiny_data_overrides(tiny_mnist),
              "logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri={mlflow_store}"]  # fmt: skip
    first = run_inline("train.py", *common, "trainer.max_epochs=1", f"hydra.run.dir={run_dir}")
    assert first.returncode == 0, first.stderr[-2000:]
    run_id = (run_dir / "mlflow_run_id").read_text().strip()
    # MLflow: the same run goes on; a parameter keeps its first value, and the warning says which changed.
    with pytest.warns(UserWarning, match="not updated: resume, trainer.max_epochs"):
        resumed = run_inline("train.py", *common, "trainer.max_epochs=3", f"resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"Run folder:   {run_dir}" in resumed.stdout  # the same folder, not a new one
    client = MlflowClient(mlflow_store)
    assert (run_dir / "mlflow_run_id").read_text().strip() == run_id
    assert len(client.search_runs([client.get_experiment_by_name("vaelab").experiment_id])) == 1
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == f"vae {run_dir.name}"
    assert run.data.params["trainer.max_epochs"] == "1"
    assert [m.step for m in client.get_metric_history(run_id, "val/loss")] == [3, 7, 11]
    assert run.data.tags["best_checkpoint"].startswith(str(run_dir / "checkpoints"))

    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 2 and checkpoint["global_step"] == 12
    adam_steps = {float(state["step"]) for state in checkpoint["optimizer_states"][0]["state"].values()}
    assert adam_steps == {12.0}  # the optimizer state went on from the first run's 4 steps
    assert tensorboard_run(run_dir).name == "vae run"  # one TensorBoard run, named at the start, goes on
    events = EventAccumulator(str(tensorboard_run(run_dir)))
    events.Reload()
    assert {(e.step, int(e.value)) for e in events.Scalars("epoch")} == {(3, 0), (7, 1), (11, 2)}
    assert [e.step for e in events.Scalars("train/loss")] == [3, 7, 11]


def test_last_checkpoint_is_the_last_epoch_and_resume_is_exact(tiny_mnist: Path, tmp_path: Path) -> None:
    """2 epochs + resume to 4 == 4 epochs straight, epoch by epoch; the CSV history survives the resume."""
    common = ["model=vae", *FAST, *NO_FIGURES, "trainer.limit_train_batches=4", "model.optimizer.lr=0.03", "logger=csv",
              *tiny_data_overrides(tiny_mnist)]  # fmt: skip
    straight, interrupted = tmp_path / "straight", tmp_path / "resumed"
    train(compose_config("train", [*common, "trainer.max_epochs=4"], straight))
    train(compose_config("train", [*common, "trainer.max_epochs=2"], interrupted))
    last = torch.load(interrupted / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 1 and last["global_step"] == 8  # the last epoch, whichever epoch was best
    with (interrupted / "history.csv").open("a") as history_file:  # a row written after the checkpoint it resumes
        history_file.write("2,12,1.0,1.0,1.0,1.0,,1.0,1.0,1.0,1.0\n")  # from (the process died in between)
    train(compose_config("train", [*common, "trainer.max_epochs=4", f"resume={interrupted}"], interrupted))
    rows = {run: RunFolder(run).read_history() for run in (straight, interrupted)}
    assert [(r["epoch"], r["step"]) for r in rows[interrupted]] == [(0, 4), (1, 8), (2, 12), (3, 16)]
    for name in ("train/loss", "val/loss", "val/kl"):
        assert [r[name] for r in rows[interrupted]] == pytest.approx([r[name] for r in rows[straight]], abs=1e-4)

    def history(run: Path) -> dict[str, dict[int, float]]:
        rows = list(csv.DictReader((run / "csv" / "metrics.csv").open()))
        return {
            name: {int(r["step"]): float(r[name]) for r in rows if r.get(name)} for name in ("train/loss", "val/loss")
        }

    expected, found = history(straight), history(interrupted)
    for name in ("train/loss", "val/loss"):
        assert list(expected[name]) == list(found[name]) == [3, 7, 11, 15]
        assert list(found[name].values()) == pytest.approx(list(expected[name].values()), abs=1e-4)


def test_resume_stretches_a_cosine_schedule(tiny_mnist: Path, tmp_path: Path) -> None:
    scheduler = "+model.scheduler={_target_:torch.optim.lr_scheduler.CosineAnnealingLR,_partial_:true,T_max:2}"
    common = ["model=vae", *FAST, *NO_FIGURES, "trainer.limit_train_batches=2", "logger=none", "model.optimizer.lr=0.01",
              scheduler, *tiny_data_overrides(tiny_mnist)]  # fmt: skip
    run_dir = tmp_path / "run"
    train(compose_config("train", [*common, "trainer.max_epochs=2"], run_dir))
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0, abs=1e-12)  # annealed to 0
    # Resumed with a schedule that now ends at epoch 4 (what T_max: ${trainer.max_epochs} gives for max_epochs=4).
    train(
        compose_config(
            "train", [*common, "model.scheduler.T_max=4", "trainer.max_epochs=3", f"resume={run_dir}"], run_dir
        )
    )
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 2 and last["lr_schedulers"][0]["T_max"] == 4
    # After 3 of 4 epochs: 0.01 * (1 + cos(3 pi / 4)) / 2 (the old T_max would give 0 and then climb to 0.005).
    expected = 0.01 * (1 + math.cos(3 * math.pi / 4)) / 2
    assert last["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(expected, rel=1e-6)


def test_resume_of_a_folder_without_checkpoint_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(VaelabError) as error:
        train(compose_config("train", [f"resume={tmp_path}"], tmp_path))
    assert str(error.value) == f"resume={tmp_path}: no checkpoints/last.ckpt in that run folder."


@pytest.mark.parametrize(
    ("override", "line", "choice"),
    [
        ("optimized_metric=val/los", "optimized_metric=val/los is not a metric this run logs", "val/loss"),
        ("callbacks.figures.names=[scatter]", "callbacks.figures.names: unknown figures ['scatter']", "samples"),
    ],
)
def test_a_misspelled_metric_or_figure_is_one_line_naming_the_choices(
    override: str, line: str, choice: str, tmp_path: Path
) -> None:
    with pytest.raises(VaelabError) as error:
        train(compose_config("train", [override], tmp_path))
    message = str(error.value)
    assert "\n" not in message and message.startswith(line) and choice in message.split("choose from ")[1]


def stop_run(process: subprocess.Popen, stop: int, name: str, run_dir: Path) -> dict:
    """Send ``stop``; the run must end with one line saying how to resume. Returns the checkpoint it left."""
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    assert stderr.strip().splitlines()[-1] == f"error: stopped by {name}; resume with resume={run_dir}"
    assert "Traceback" not in stderr
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


def test_sigterm_leaves_a_resumable_checkpoint(tiny_mnist: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    checkpoint = stop_run(start_long_run(tiny_mnist, run_dir), signal.SIGTERM, "SIGTERM", run_dir)
    assert checkpoint["global_step"] > 0
    assert load_model(run_dir / "checkpoints" / "last.ckpt").latent_dim == 2
    # Resumed mid-epoch: no finished step is lost or repeated; it ends where an uninterrupted run would.
    steps_per_epoch = 50  # 500 training images in batches of 10
    epochs = checkpoint["epoch"] + 2
    # As the message says: resume= alone (the model, batch size and data come from the run's own overrides).
    resumed = run_inline("train.py", f"trainer.max_epochs={epochs}", f"resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == epochs * steps_per_epoch
    adam_steps = {float(state["step"]) for state in final["optimizer_states"][0]["state"].values()}
    assert adam_steps == {float(epochs * steps_per_epoch)}


def test_ctrl_c_says_how_to_resume(tiny_mnist: Path, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) can land anywhere in an epoch, so this checks the message and that resume= finishes the run;
    the SIGTERM test above checks the exact step count."""
    run_dir = tmp_path / "run"
    checkpoint = stop_run(start_long_run(tiny_mnist, run_dir), signal.SIGINT, "Ctrl-C", run_dir)
    epochs = checkpoint["epoch"] + 2
    resumed = run_inline("train.py", f"trainer.max_epochs={epochs}", f"resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (
        torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] > checkpoint["global_step"]
    )


def write_run_record(run_dir: Path, overrides: object) -> Path:
    """A run folder's record of its command-line overrides, as Hydra writes it."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    return run_dir


def composed(*overrides: str) -> tuple[dict, dict, str]:
    """The job config and Hydra's config ``train.py`` composes for a command line, and its stderr."""
    result = run_inline("train.py", *overrides, "--cfg", "all")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    return config, config.pop("hydra"), result.stderr


def test_resume_goes_on_with_the_runs_own_overrides(tmp_path: Path) -> None:
    """resume=<run> re-applies the run's overrides (a sweep job's too, as a single run); the command line's win."""
    run = write_run_record(tmp_path / "job", ["hparams_search=optuna", "model=vae", "model.beta=0.5",
                                              "~callbacks.figures", "+note=first", "launcher=joblib", "resume=/elsewhere"])  # fmt: skip
    job, hydra, stderr = composed(f"resume={run}")
    assert job["model"]["_target_"] == "vaelab.models.VAE" and job["model"]["beta"] == 0.5
    assert "figures" not in job["callbacks"] and job["note"] == "first" and job["resume"] == str(run)
    assert job["optimized_metric"] == "val/nelbo" and hydra["mode"] == "RUN"  # the search's settings, one run
    assert "Joblib" not in hydra["launcher"]["_target_"]  # a sweep's launcher would split a single run's threads
    assert "going on with the run's overrides hparams_search=optuna model=vae" in stderr
    # Overrides given with resume= replace the run's for the same key, in any form (~key or +key=value twice fail).
    job, _, _ = composed("model.beta=2", "~callbacks.figures", "+note=second", f"resume={run}")
    assert job["model"]["beta"] == 2 and "figures" not in job["callbacks"] and job["note"] == "second"
    job, _, _ = composed("note=changed", f"resume={run}")  # a key the run added (+note) changed: added first
    assert job["note"] == "changed"


def test_resume_goes_on_with_the_runs_own_config_not_todays_files(tiny_mnist: Path, tmp_path: Path) -> None:
    """An experiment file edited after the run started changes nothing on resume=: the run's record (its
    .hydra/config.yaml) plus the overrides given now; the record gains the resume and keeps what it held."""
    user = tmp_path / "conf"
    (user / "experiment").mkdir(parents=True)
    experiment = user / "experiment" / "mine.yaml"
    experiment.write_text("# @package _global_\nmodel:\n  beta: 0.5\n")
    run = tmp_path / "run"
    common = ["--config-dir", str(user), "model=vae", "experiment=mine", "data.batch_size=50", "logger=none",
              "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "test=false", *NO_FIGURES,
              *tiny_data_overrides(tiny_mnist)]  # fmt: skip
    first = run_inline("train.py", *common, "trainer.max_epochs=1", f"hydra.run.dir={run}")
    assert first.returncode == 0, first.stderr[-2000:]
    experiment.write_text("# @package _global_\nmodel:\n  beta: 4.0\n")
    resumed = run_inline("train.py", "--config-dir", str(user), f"resume={run}", "trainer.max_epochs=2")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]["beta"] == 0.5
    config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    assert config["model"]["beta"] == 0.5 and config["trainer"]["max_epochs"] == 2 and config["resume"] == str(run)
    entries = yaml.safe_load((run / ".hydra" / "resumes.yaml").read_text())
    assert [entry["overrides"] for entry in entries] == [[f"resume={run}", "trainer.max_epochs=2"]]
    # A group that sets keys across the config cannot change on resume: one line, and the record is as it was.
    before = {name: (run / ".hydra" / name).read_bytes() for name in ("config.yaml", "resumes.yaml")}
    refused = run_inline("train.py", "--config-dir", str(user), f"resume={run}", "trainer.max_epochs=3", "debug=fast")
    assert refused.returncode == 1 and refused.stderr.strip().splitlines()[-1] == (
        "error: resume: debug=fast cannot change when a run goes on (the group sets keys across the config); "
        "give the keys you want changed instead."
    )
    assert {name: (run / ".hydra" / name).read_bytes() for name in before} == before
    # A group with its own package changes that package: trainer=cpu again, with the recorded keys given now.
    again = run_inline("train.py", "--config-dir", str(user), f"resume={run}", "trainer=cpu", "trainer.max_epochs=3",
                       "trainer.limit_train_batches=2", "trainer.limit_val_batches=1")  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    entries = yaml.safe_load((run / ".hydra" / "resumes.yaml").read_text())
    assert len(entries) == 2 and "trainer=cpu" in entries[1]["overrides"]
    assert [row["epoch"] for row in RunFolder(run).read_history()] == [0, 1, 2]


def test_resume_with_an_unreadable_record_of_overrides_is_one_line(tmp_path: Path) -> None:
    run = write_run_record(tmp_path / "run", {"model": "vae"})
    result = run_inline("train.py", f"resume={run}")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {run}/.hydra/overrides.yaml: not a list of overrides; repeat the run's own overrides instead"
    ]


def test_resume_with_a_cut_off_record_of_overrides_is_one_line(tmp_path: Path) -> None:
    """Not YAML at all (a file cut off mid-write): refused like a record of another shape, never resumed without
    the run's own overrides."""
    run = write_run_record(tmp_path / "run", ["model=vae"])
    (run / ".hydra" / "overrides.yaml").write_text("- model=vae\n- [trainer.max_")
    result = run_inline("train.py", f"resume={run}")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {run}/.hydra/overrides.yaml: not a list of overrides; repeat the run's own overrides instead"
    ]


def test_same_seed_same_losses(tiny_mnist: Path, tmp_path: Path) -> None:
    overrides = ["model=conv_vae", *FAST, "trainer.max_epochs=2", "trainer.limit_train_batches=3", "logger=none",
                 *tiny_data_overrides(tiny_mnist)]  # fmt: skip
    first = train(compose_config("train", overrides, tmp_path / "a"))
    second = train(compose_config("train", overrides, tmp_path / "b"))
    keys = ["train/loss", "train/recon", "train/kl", "val/loss"]
    assert [first[k] for k in keys] == [second[k] for k in keys]
    other = train(compose_config("train", [*overrides, "seed=7"], tmp_path / "c"))
    assert other["train/loss"] != first["train/loss"]


def test_kl_warmup_ramps_the_weight(tiny_mnist: Path, tmp_path: Path) -> None:
    overrides = ["model=vae", "model.kl_warmup_epochs=4", *FAST, "trainer.max_epochs=2", "trainer.limit_train_batches=3",
                 "logger=csv", *tiny_data_overrides(tiny_mnist)]  # fmt: skip
    metrics = train(compose_config("train", overrides, tmp_path))
    assert metrics["train/kl_weight"] == pytest.approx(0.5)  # 2 of 4 warm-up epochs done
    # The logged loss keeps the full beta (comparable across epochs); only the optimised objective ramps.
    assert metrics["train/loss"] == pytest.approx(metrics["train/recon"] + metrics["train/kl"], rel=1e-5)


def test_latent_dim_above_two_everywhere(tiny_mnist: Path, tmp_path: Path) -> None:
    train(compose_config("train", ["model=cond_conv_vae", "model.latent_dim=5", *FAST, "trainer.max_epochs=1",
                                   "trainer.limit_train_batches=2", *tiny_data_overrides(tiny_mnist)], tmp_path))  # fmt: skip
    assert (tmp_path / "figures" / "latent_grid_digit7.png").is_file()
    assert load_model(tmp_path / "checkpoints" / "last.ckpt").latent_dim == 5


def test_non_finite_loss_stops_with_one_line(tiny_mnist: Path, tmp_path: Path) -> None:
    overrides = [
        "model=vae",
        "model.optimizer.lr=1e12",
        *FAST,
        "trainer.max_epochs=5",
        *tiny_data_overrides(tiny_mnist),
    ]
    with pytest.raises(VaelabError) as error:
        train(compose_config("train", overrides, tmp_path))
    message = str(error.value)
    assert "\n" not in message and message.startswith("the training loss became") and "last good checkpoint" in message


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_ddp_on_cpu_with_two_processes(tiny_mnist: Path, tmp_path: Path, ddp_alone: None) -> None:
    result = run_script("train.py", "model=vae", *FAST, "trainer.max_epochs=1", "trainer.strategy=ddp",
                        "trainer.devices=2", "trainer.accelerator=cpu", *tiny_data_overrides(tiny_mnist),
                        "data.val_size=5", f"hydra.run.dir={tmp_path}", timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("Run folder:") == 1  # rank 0 reports, rank 1 does not
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best-epoch000.ckpt", "last.ckpt"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["val/loss"] > 0
    # Each process trained on half of the 595 training images: 6 batches of at most 50 each.
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6
    # val/loss is the mean over the 5 validation images, each counted once (process 0 takes 3, process 1 takes 2;
    # a padding sampler would count one twice). Recomputed here with each process's evaluation noise.
    expected = val_loss_over_ranks(tmp_path / "checkpoints" / "last.ckpt", tiny_mnist, val_size=5, world_size=2)
    assert metrics["val/loss"] == pytest.approx(expected, rel=1e-5)
    assert not any(p.name.startswith("train_ddp_process") for p in PROJECT_ROOT.iterdir())


@pytest.mark.parametrize(
    "hook, batch",
    [
        ("on_validation_batch_start", 0),  # in validation, between fetching a batch and its step
        ("on_validation_batch_end", 0),  # a validation batch done, its end hooks not
    ],
)
def test_ctrl_c_during_validation_resumes_to_the_uninterrupted_history(
    hook: str, batch: int, tiny_mnist: Path, tmp_path: Path
) -> None:
    """One history row per epoch, none missing, none repeated, each equal to the uninterrupted run's, wherever in
    the epoch's validation the Ctrl-C landed: the validation runs again on resume, and the epoch's training means
    come from the checkpoint."""
    common = ["model=vae", "data.batch_size=50", "trainer.limit_train_batches=4", "trainer.limit_val_batches=2",
              "test=false", "logger=none", *NO_FIGURES, *tiny_data_overrides(tiny_mnist)]  # fmt: skip
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(compose_config("train", [*common, "trainer.max_epochs=3"], straight))
    stop = f"+callbacks.stop={{_target_:helpers.StopAt,hook:{hook},epoch:1,batch:{batch}}}"
    handler = signal.getsignal(signal.SIGINT)  # Lightning ignores SIGINT after a Ctrl-C: put back pytest's
    with pytest.raises(Interrupted):
        train(compose_config("train", [*common, "trainer.max_epochs=3", stop], resumed))
    signal.signal(signal.SIGINT, handler)
    assert [row["epoch"] for row in RunFolder(resumed).read_history()] == [0]
    train(compose_config("train", [*common, "trainer.max_epochs=3", f"resume={resumed}"], resumed))
    rows = {run: RunFolder(run).read_history() for run in (straight, resumed)}
    assert [(r["epoch"], r["step"]) for r in rows[resumed]] == [(0, 4), (1, 8), (2, 12)]
    for name in ("train/loss", "train/kl", "val/loss", "val/recon", "val/kl", "val/nelbo"):
        assert [r.get(name) for r in rows[resumed]] == pytest.approx([r[name] for r in rows[straight]], abs=1e-4), name


@pytest.fixture(scope="module")
def uninterrupted(tiny_mnist: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], Path]:
    """The settings of a 3-epoch run and its folder, trained once without interruption."""
    common = ["model=vae", "data.batch_size=50", "trainer.limit_train_batches=4", "trainer.limit_val_batches=1",
              "test=false", "logger=none", *NO_FIGURES, *tiny_data_overrides(tiny_mnist), "trainer.max_epochs=3"]  # fmt: skip
    straight = tmp_path_factory.mktemp("uninterrupted") / "run"
    train(compose_config("train", common, straight))
    return common, straight


@pytest.mark.parametrize(
    "hook, batch, sigterm",
    [
        ("on_train_batch_end", 1, False),  # Ctrl-C: raised at the end of the batch it landed in
        ("on_train_batch_start", 2, False),  # a batch fetched, its step not taken
        ("on_train_batch_end", 0, True),  # SIGTERM (a pre-emption), after the epoch's first batch
    ],
)
def test_an_interrupt_inside_an_epoch_resumes_to_the_uninterrupted_history(
    hook: str, batch: int, sigterm: bool, uninterrupted: tuple[list[str], Path], tmp_path: Path
) -> None:
    """The resumed epoch goes on with the batches the interrupted one had not trained (the loader's state is in the
    checkpoint), so every row equals the uninterrupted run's."""
    common, straight = uninterrupted
    resumed = tmp_path / "resumed"
    stop = f"+callbacks.stop={{_target_:helpers.StopAt,hook:{hook},epoch:1,batch:{batch},sigterm:{sigterm}}}"
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted):
        train(compose_config("train", [*common, stop], resumed))
    signal.signal(signal.SIGINT, handler)
    train(compose_config("train", [*common, f"resume={resumed}"], resumed))
    rows = {run: RunFolder(run).read_history() for run in (straight, resumed)}
    assert [(r["epoch"], r["step"]) for r in rows[resumed]] == [(0, 4), (1, 8), (2, 12)]
    for name in ("train/loss", "train/recon", "train/kl", "val/loss"):
        assert [r[name] for r in rows[resumed]] == pytest.approx([r[name] for r in rows[straight]], abs=1e-4), name


@pytest.mark.parametrize("sigterm", [False, True])
def test_an_interrupted_test_keeps_the_fit_and_resume_runs_the_test(
    sigterm: bool, tiny_mnist: Path, tmp_path: Path
) -> None:
    """Ctrl-C (or SIGTERM) in the test after fit: last.ckpt stays the end of the fit (the test holds the best
    epoch's weights), metrics.json says the test was interrupted, ``resume=`` runs the test alone and gives the
    uninterrupted run's numbers, and a longer resume trains on from the last epoch as if nothing happened."""
    common = ["model=vae", "data.batch_size=50", "trainer.limit_train_batches=4", "trainer.limit_val_batches=1",
              "trainer.check_val_every_n_epoch=2", "test=true", "logger=none", *NO_FIGURES,
              *tiny_data_overrides(tiny_mnist)]  # fmt: skip
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    expected = train(compose_config("train", [*common, "trainer.max_epochs=3"], straight))
    stop = f"+callbacks.stop={{_target_:helpers.StopAt,hook:on_test_batch_end,epoch:null,batch:0,sigterm:{sigterm}}}"
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted, match="during the test; the fit is complete and kept: resume="):
        train(compose_config("train", [*common, "trainer.max_epochs=3", stop], stopped))
    signal.signal(signal.SIGINT, handler)
    last = {run: torch.load(run / "checkpoints" / "last.ckpt", weights_only=True) for run in (straight, stopped)}
    assert last[stopped]["global_step"] == 12
    for name, weight in last[straight]["state_dict"].items():
        assert torch.equal(last[stopped]["state_dict"][name], weight), name
    record = RunFolder(stopped).read_metrics()
    assert record["status"] == "interrupted" and record["phase"] == "test" and record["epochs"] == 3
    assert record["val/loss"] == pytest.approx(expected["val/loss"]) and "test/loss" not in record

    metrics = train(compose_config("train", [*common, "trainer.max_epochs=3", f"resume={stopped}"], stopped))
    assert metrics["status"] == "completed" and metrics["epochs"] == 3
    for name in ("test/loss", "test/recon", "test/kl", "val/loss"):
        assert metrics[name] == pytest.approx(expected[name], abs=1e-5), name
    assert RunFolder(stopped).read_metrics()["test/loss"] == pytest.approx(expected["test/loss"], abs=1e-5)
    assert len(RunFolder(stopped).read_history()) == len(RunFolder(straight).read_history())
    with pytest.raises(VaelabError, match="already trained 3 epochs"):  # tested now: nothing left to do
        train(compose_config("train", [*common, "trainer.max_epochs=3", f"resume={stopped}"], stopped))

    if not sigterm:  # (once: the same checkpoint either way) a longer resume trains on from the fit's last epoch
        longer = [*common, "trainer.max_epochs=4"]
        assert train(compose_config("train", [*longer, f"resume={straight}"], straight))["train/loss"] == (
            pytest.approx(train(compose_config("train", [*longer, f"resume={stopped}"], stopped))["train/loss"])
        )


def test_a_run_stopped_in_its_sanity_check_starts_again_in_its_folder(tiny_mnist: Path, tmp_path: Path) -> None:
    """Ctrl-C before the first checkpoint: the line says nothing was saved, metrics.json says interrupted, and both
    ``resume=`` and a new run into the folder train it from the beginning, as if it had never started."""
    common = ["model=vae", "data.batch_size=50", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
              "test=false", "logger=none", *NO_FIGURES, "trainer.max_epochs=2", *tiny_data_overrides(tiny_mnist)]  # fmt: skip
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    expected = train(compose_config("train", common, straight))
    stop = "+callbacks.stop={_target_:helpers.StopAt,hook:on_validation_batch_end,epoch:0,batch:0,sanity:true}"
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted, match=f"nothing was saved yet: start it again with resume={stopped}$"):
        train(compose_config("train", [*common, stop], stopped))
    signal.signal(signal.SIGINT, handler)
    assert RunFolder(stopped).read_metrics()["status"] == "interrupted"
    assert not list(stopped.glob("checkpoints/*.ckpt"))
    run_guard.release(run_guard.claim(stopped, resuming=False).folder)  # a new run may have the folder too
    metrics = train(compose_config("train", [*common, f"resume={stopped}"], stopped))
    assert metrics["status"] == "completed" and metrics["train/loss"] == pytest.approx(expected["train/loss"])
    assert [row["epoch"] for row in RunFolder(stopped).read_history()] == [0, 1]


def test_fit_time_is_the_fit_alone_with_the_best_checkpoint_tested(tiny_mnist: Path, tmp_path: Path) -> None:
    """Testing restores the best checkpoint, Timer state included: fit_seconds must not count its time twice."""
    marks = tmp_path / "marks"
    clock = "+callbacks.clock={_target_:helpers.Clock,path:" + str(marks) + "}"
    overrides = ["model=vae", *FAST, "test=true", "trainer.max_epochs=2", "trainer.limit_train_batches=20",
                 "data.batch_size=10", "logger=none", *NO_FIGURES, clock, *tiny_data_overrides(tiny_mnist)]  # fmt: skip
    metrics = train(compose_config("train", overrides, tmp_path / "run"))
    started, tested = (float(line) for line in marks.read_text().split())
    assert 0 < metrics["fit_seconds"] <= round(tested - started, 1) + 0.1


def test_ddp_resumes_exactly_from_an_epoch_end_and_inside_one(
    tiny_mnist: Path, tmp_path: Path, ddp_alone: None
) -> None:
    """Two processes stopped inside an epoch: the checkpoint holds the epoch's training sums of both, each one's
    noise, and the batches of the epoch trained; resumed, the history equals an uninterrupted DDP run's (the
    epoch-end case: the epoch after the resumed one draws on from the restored noise too). (Every process but the first used to resume other noise, or crash: torch's
    Generator.set_state read the row of a stacked state from its storage's start.)"""
    common = ["model=vae", "data.batch_size=50", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
              "test=false", "logger=none", *NO_FIGURES, "trainer.max_epochs=2", "trainer.strategy=ddp",
              "trainer.devices=2", "trainer.accelerator=cpu", *tiny_data_overrides(tiny_mnist)]  # fmt: skip
    # A clean environment (nothing an in-process test of this worker left behind), with helpers.StopAt importable.
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "TMPDIR", "OMP_NUM_THREADS") if key in os.environ}
    env["PYTHONPATH"] = str(PROJECT_ROOT / "tests")

    def run(*overrides: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(PROJECT_ROOT / "train.py"), *overrides], cwd=PROJECT_ROOT, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip

    stop = "+callbacks.stop={_target_:helpers.StopAt,hook:on_train_batch_end,epoch:1,batch:0}"
    folder = tmp_path / "run"
    stopped = run(*common, stop, f"hydra.run.dir={folder}")
    assert stopped.returncode == 1 and "stopped by Ctrl-C" in stopped.stderr, stopped.stderr[-3000:]
    saved = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 1, "batches": 1}]
    assert {float(state["weight"]) for state in saved["vaelab_train_means"].values()} == {100.0}  # 2 x 50 images
    noise = saved["vaelab_train_noise_state"]
    assert noise.shape[0] == 2 and not torch.equal(noise[0], noise[1])
    resumed = run(f"resume={folder}", "trainer.max_epochs=3")  # the rest of epoch 1, then epoch 2 after its end
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight = run(*[o.replace("max_epochs=2", "max_epochs=3") for o in common], f"hydra.run.dir={tmp_path / 's'}")
    assert straight.returncode == 0, straight.stderr[-3000:]
    rows = {run: RunFolder(run).read_history() for run in (folder, tmp_path / "s")}
    assert [(r["epoch"], r["step"]) for r in rows[folder]] == [(0, 3), (1, 6), (2, 9)]
    for name in ("train/loss", "train/kl", "val/loss"):
        assert [r[name] for r in rows[folder]] == pytest.approx([r[name] for r in rows[tmp_path / "s"]], abs=1e-4)
