"""A run's folder is never silently overwritten, shared or damaged: reuse is refused, one process owns a folder,
a failed command leaves the files as they were, a full disk leaves no truncated checkpoint, records are strict
JSON, and settings no run can use are one line before anything is printed."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from helpers import NO_FIGURES, compose_config, run_inline, run_script, start_long_run, tiny_data_overrides
from vaelab.errors import VaelabError
from vaelab.evaluation import evaluate
from vaelab.run.checkpoints import load_model
from vaelab.run.guard import LOCK_FILE
from vaelab.sweep.summary import summarise
from vaelab.training import train

TINY = ["model=vae", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        "data.batch_size=50", "logger=csv", *NO_FIGURES]  # fmt: skip


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (but the lock, the owner's note) with a hash of its bytes."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != LOCK_FILE
    }


def strict_json(path: Path) -> dict:
    def refuse(constant: str) -> None:
        raise ValueError(f"{path} holds {constant}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def one_error_line(result: subprocess.CompletedProcess, *words: str) -> str:
    """The command's one ``error:`` line (a resume may say first which overrides it goes on with)."""
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("resume=")]
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    assert all(word in lines[0] for word in words), lines[0]
    assert "Traceback" not in result.stderr and "CONFIG" not in result.stdout  # no config tree before the line
    return lines[0]


@pytest.fixture
def finished_run(tiny_mnist: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    result = run_inline("train.py", *TINY, *tiny_data_overrides(tiny_mnist), f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run


def test_a_finished_runs_folder_is_not_reused(finished_run: Path, tiny_mnist: Path) -> None:
    before = snapshot(finished_run)
    again = run_inline("train.py", *TINY, "model.beta=2", *tiny_data_overrides(tiny_mnist),
                       f"hydra.run.dir={finished_run}")  # fmt: skip
    one_error_line(again, str(finished_run.resolve()), "already holds a run", f"resume={finished_run.resolve()}")
    assert snapshot(finished_run) == before
    # resume= lets a run write into its own folder only: going on into another folder that holds a run is refused.
    other = finished_run.parent / "other"
    other.mkdir()
    (other / "metrics.json").write_text('{"status": "completed"}')
    forked = run_inline("train.py", f"resume={finished_run}", "trainer.max_epochs=2", f"hydra.run.dir={other}")
    one_error_line(forked, str(other.resolve()), "already holds a run")
    assert snapshot(finished_run) == before and list(snapshot(other)) == ["metrics.json"]
    # evaluate.py into a folder that holds an evaluation: refused the same way.
    evaluation = [f"ckpt_path={finished_run / 'checkpoints' / 'last.ckpt'}", "iwae_samples=2", "projector=false",
                  "figures.num_points=50", "figures.grid_size=3", *tiny_data_overrides(tiny_mnist)]  # fmt: skip
    eval_dir = finished_run.parent / "eval"
    assert run_inline("evaluate.py", *evaluation, f"hydra.run.dir={eval_dir}").returncode == 0
    assert strict_json(eval_dir / "metrics.json")["images"] == 200
    one_error_line(run_inline("evaluate.py", *evaluation, f"hydra.run.dir={eval_dir}"), "already holds a run")


def test_a_sweep_folder_is_not_reused(tiny_mnist: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    command = ["-m", *TINY, "model.beta=1,2", *tiny_data_overrides(tiny_mnist), f"hydra.sweep.dir={sweep}"]
    assert run_inline("train.py", *command).returncode == 0
    before = snapshot(sweep)
    other = [o.replace("model.beta=1,2", "model.beta=1,3") for o in command]
    one_error_line(run_inline("train.py", *other), str(sweep), "already holds a sweep (2 job folders) of other")
    assert snapshot(sweep) == before
    # The same command again finishes the sweep, which is finished: every job kept as it was.
    assert run_inline("train.py", *command).returncode == 0
    results = ("metrics.json", "history.csv", "checkpoints")
    kept = {name: digest for name, digest in before.items() if name.split("/")[1:2] in ([r] for r in results)}
    assert kept and all(snapshot(sweep)[name] == digest for name, digest in kept.items())


def test_a_failed_resume_leaves_the_folder_as_it_was(finished_run: Path) -> None:
    before = snapshot(finished_run)
    untouched = {path: (path.read_bytes(), path.stat().st_mtime_ns)
                 for path in [finished_run / LOCK_FILE, *(finished_run / ".hydra").iterdir()]}  # fmt: skip
    failed = run_inline("train.py", f"resume={finished_run}", "model=conv_vae")
    one_error_line(failed, "holds a VAE, this run builds a ConvVAE")
    assert snapshot(finished_run) == before  # .hydra/, config_tree.log and train.log included
    # A refusal writes nothing: Hydra's record is not even rewritten, and the lock keeps its owner's note.
    assert {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in untouched if path.name != LOCK_FILE} == {
        path: value for path, value in untouched.items() if path.name != LOCK_FILE
    }
    assert (finished_run / LOCK_FILE).read_bytes() == untouched[finished_run / LOCK_FILE][0]
    resumed = run_inline("train.py", f"resume={finished_run}", "trainer.max_epochs=2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [row.split(",")[0] for row in (finished_run / "history.csv").read_text().splitlines()[1:]] == ["0", "1"]


def test_two_processes_are_never_in_one_folder(tiny_mnist: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    training = start_long_run(tiny_mnist, run)
    try:
        before = (run / "history.csv").read_text()
        second = run_inline("train.py", f"resume={run}")
        one_error_line(second, f"{run.resolve()} is in use by process {training.pid}", "wait for it")
        plain = run_inline("train.py", "model=vae", *tiny_data_overrides(tiny_mnist), f"hydra.run.dir={run}")
        one_error_line(plain, "is in use by process")
        assert (run / "history.csv").read_text().startswith(before)  # the first run's rows, no one else's
        assert training.poll() is None  # still training
    finally:
        training.send_signal(signal.SIGTERM)
        training.communicate(timeout=120)
    assert sorted(path.name for path in (run / "checkpoints").glob("*.ckpt"))[-1] == "last.ckpt"
    assert len(list((run / "checkpoints").glob("best*.ckpt"))) == 1


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 4 MB file system (tmpfs; needs root, as CI runs), unmounted after the test."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_leaves_no_truncated_checkpoint(small_disk: Path, tiny_mnist: Path) -> None:
    run = small_disk / "run"
    # The dense VAE's checkpoint (weights and Adam state, ~13 MB) cannot fit in 4 MB.
    overrides = ["model=vae", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
                 "data.batch_size=50", "logger=none", *NO_FIGURES, *tiny_data_overrides(tiny_mnist)]  # fmt: skip
    with pytest.raises(VaelabError, match="No space left on device") as error:
        train(compose_config("train", overrides, run))
    line = str(error.value)
    # No last.ckpt was ever saved: resume= would be a dead end, so the advice is to run again.
    assert "\n" not in line and "ckpt" in line and "resume=" not in line and "run the command again" in line
    leftovers = [path.name for path in (run / "checkpoints").iterdir()] if (run / "checkpoints").is_dir() else []
    assert leftovers == []  # neither a truncated checkpoint nor a temporary file


def test_records_are_strict_json_and_say_what_they_cover(finished_run: Path, tiny_mnist: Path) -> None:
    assert strict_json(finished_run / "metrics.json")["status"] == "completed"
    eval_dir = finished_run.parent / "eval"
    evaluate(compose_config("eval", [f"ckpt_path={finished_run / 'checkpoints' / 'last.ckpt'}", "iwae_samples=null",
                                     "projector=false", "figures.num_points=50", "figures.grid_size=3",
                                     "data.eval_batch_size=50", "trainer.limit_test_batches=1",
                                     *tiny_data_overrides(tiny_mnist)], eval_dir))  # fmt: skip
    metrics = strict_json(eval_dir / "metrics.json")
    assert metrics["iwae_bce_bound"] is None  # skipped: null, not NaN
    assert metrics["images"] == 50 and metrics["split"] == "test"  # the one test batch the ELBO saw


@pytest.mark.parametrize(
    "task, setting, words",
    [
        ("train", "model.latent_dim=-3", "model.latent_dim must be >= 1"),
        ("train", "trainer.max_epochs=0", "trainer.max_epochs must be >= 1"),
        ("train", "model.beta=nan", "model.beta must be a finite number"),
        ("train", "model.optimizer.lr=inf", "model.optimizer.lr must be a finite number"),
        ("eval", "iwae_samples=-5", "iwae_samples must be >= 1"),
        ("eval", "iwae_samples=0", "iwae_samples must be >= 1"),
        ("eval", "iwae_samples=nan", "iwae_samples must be a finite number"),
        ("eval", "iwae_samples=1.5", "iwae_samples must be an integer"),
        ("train", "seed=1.5", "seed must be an integer"),
        ("train", "seed=-1", "seed must be >= 0"),
        ("train", "seed=4294967296", "seed must be <= 4294967295"),
        ("train", "seed=abc", "seed must be an integer"),
        ("eval", "seed=2.5", "seed must be an integer"),
        ("eval", "trainer.limit_test_batches=0", "trainer.limit_test_batches must be > 0"),
    ],
)
def test_bad_settings_are_one_line_before_anything_else(
    task: str, setting: str, words: str, tiny_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The library's checks, before the config tree; ``test_cli`` checks the command line prints just the line."""
    extra = ["ckpt_path=none.ckpt"] if task == "eval" else TINY
    cfg = compose_config(task, [*extra, setting, *tiny_data_overrides(tiny_mnist)], tmp_path / "r")
    with pytest.raises(VaelabError, match=words) as error:
        (evaluate if task == "eval" else train)(cfg)
    assert "\n" not in str(error.value)
    assert "CONFIG" not in capsys.readouterr().out and not (tmp_path / "r" / "config_tree.log").exists()


def test_a_study_of_another_model_is_refused(tiny_mnist: Path, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    search = ["hparams_search=optuna", *TINY[1:], f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=vae",
              "hydra.sweeper.n_trials=1", *tiny_data_overrides(tiny_mnist)]  # fmt: skip
    first = run_inline("train.py", *search, "model=vae", f"hydra.sweep.dir={tmp_path / 'a'}")
    assert first.returncode == 0, first.stderr[-3000:]
    # In a process of its own: Optuna's log handler writes to the stderr it found when first imported.
    other = run_script("train.py", *search, "model=conv_vae", f"hydra.sweep.dir={tmp_path / 'b'}")
    one_error_line(other, "study 'vae'", "belongs to model=vae", "model=conv_vae", "allow_other_setting=true")
    assert "Using an existing study" not in other.stderr  # the refusal is the first word on it
    assert not (tmp_path / "b").exists()  # and it leaves no sweep folder
    assert len(optuna.load_study(study_name="vae", storage=storage).trials) == 1  # no conv trial joined it
    # Another fixed setting (the latent size, the batches per epoch) would rank trials that are not comparable.
    for index, (setting, words) in enumerate((("model.latent_dim=3", "model.latent_dim=2"),
                                               ("trainer.limit_train_batches=3", "=2"))):  # fmt: skip
        other = run_inline("train.py", *search, "model=vae", setting, f"hydra.sweep.dir={tmp_path / str(index)}")
        one_error_line(other, "study 'vae'", "was searched with", words, setting, "allow_other_setting=true")
    assert len(optuna.load_study(study_name="vae", storage=storage).trials) == 1
    # A seed is no setting: the same study takes the trial.
    same = run_inline("train.py", *search, "model=vae", "seed=7", f"hydra.sweep.dir={tmp_path / 'c'}")
    assert same.returncode == 0, same.stderr[-3000:]
    assert yaml.safe_load((tmp_path / "c" / "optimization_results.yaml").read_text())["fixed_overrides"]


def test_a_sweep_summary_names_the_files_it_cannot_read(tiny_mnist: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    command = ["-m", *TINY, "model.beta=1,2", *tiny_data_overrides(tiny_mnist), f"hydra.sweep.dir={sweep}"]
    assert run_inline("train.py", *command).returncode == 0
    (sweep / "1" / "metrics.json").write_text('{"val/loss": 12')  # cut off
    rows = {row["job"]: row for row in summarise(sweep)}
    assert rows["1"]["status"] == "unreadable" and str(sweep / "1" / "metrics.json") in rows["1"]["error"]
    assert rows["0"]["status"] == "completed" and not math.isnan(rows["0"]["val/loss"])
    assert str(sweep / "1" / "metrics.json") in (sweep / "summary.md").read_text()
    assert load_model(sweep / "0" / "checkpoints" / "last.ckpt") is not None


def test_a_run_that_trains_no_batch_is_untrained_and_not_tested(
    tiny_mnist: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "run"
    train(compose_config("train", [*TINY, "trainer.limit_train_batches=0", *tiny_data_overrides(tiny_mnist)], run))
    metrics = strict_json(run / "metrics.json")
    assert metrics["status"] == "untrained" and metrics["epochs"] == 0
    assert not any(name.startswith("test/") for name in metrics)  # untrained weights are not reported as a result
    assert "no batch was trained" in caplog.text


def test_train_called_from_python_claims_its_folder(finished_run: Path, tiny_mnist: Path, tmp_path: Path) -> None:
    """``train(cfg)`` without the command (a notebook) has the command's guard: a used folder is refused, a folder
    another process holds is refused, and a failure before training leaves no folder of its own."""
    before = snapshot(finished_run)
    with pytest.raises(VaelabError, match="already holds a run"):
        train(compose_config("train", [*TINY, *tiny_data_overrides(tiny_mnist)], finished_run))
    assert snapshot(finished_run) == before
    new = tmp_path / "new"
    with pytest.raises(VaelabError, match="model.latent_dim must be >= 1"):
        train(compose_config("train", [*TINY, "model.latent_dim=-1", *tiny_data_overrides(tiny_mnist)], new))
    assert not new.exists()
    busy = tmp_path / "busy"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(busy)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(VaelabError, match=f"is in use by process {holder.pid}"):
            train(compose_config("train", [*TINY, *tiny_data_overrides(tiny_mnist)], busy))
    finally:
        holder.kill()
        holder.wait()
    metrics = train(compose_config("train", [*TINY, *tiny_data_overrides(tiny_mnist)], busy))  # free again
    assert metrics["status"] == "completed" and (busy / "metrics.json").is_file()


# A process that holds a folder the way a running command does, until it is killed.
HOLD_LOCK = """
import sys, time
from pathlib import Path
from vaelab.run.guard import claim
claim(Path(sys.argv[1]), resuming=False)
print("held", flush=True)
time.sleep(300)
"""


def test_a_password_in_a_url_is_refused_from_files_and_the_environment_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wherever a URL with a password comes from (a config file, an environment variable it interpolates), the run
    stops in one line that hides it, before its folder exists."""
    user = tmp_path / "conf" / "logger"
    user.mkdir(parents=True)
    (user / "remote.yaml").write_text("mlflow:\n  _target_: vaelab.loggers.MLFlowLogger\n"
                                      "  tracking_uri: https://me:hunter2@mlflow.example.org\n")  # fmt: skip
    run = tmp_path / "run"
    from_file = run_inline("train.py", "--config-dir", str(tmp_path / "conf"), "logger=remote", f"hydra.run.dir={run}")
    one_error_line(from_file, "logger.mlflow.tracking_uri=https://me:***@mlflow.example.org: a password in a URL")
    monkeypatch.setenv("STUDY_DB", "postgresql://me:hunter2@db.example.org/optuna")
    from_env = run_inline("train.py", "-m", "hparams_search=optuna", "hydra.sweeper.storage=${oc.env:STUDY_DB}",
                          f"hydra.sweep.dir={run}")  # fmt: skip
    one_error_line(from_env, "hydra.sweeper.storage=postgresql://me:***@db.example.org/optuna: a password")
    assert "hunter2" not in from_file.stderr + from_file.stdout + from_env.stderr + from_env.stdout
    assert not run.exists()
