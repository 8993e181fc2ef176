"""train.py and evaluate.py run as a user runs them, on tiny MNIST-format data, offline."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import SWEPT_MODELS, compose_config, run_inline, tensorboard_run, tiny_data_overrides
from vaelab.errors import Interrupted, VaelabError
from vaelab.evaluation import evaluate
from vaelab.evaluation.comparison import figure_labels
from vaelab.hydra_compat import version_base
from vaelab.training import train

EXPECTED_FIGURES = {
    "vae": ["latent_scatter", "latent_grid", "centre_decode"],
    "conv_vae": ["latent_scatter", "latent_grid", "centre_decode"],
    "cond_conv_vae": ["latent_scatter", "latent_grid_digit0", "latent_grid_digit9", "centre_decode"],
}


def tensorboard_images(log_dir: Path) -> set[str]:
    events = EventAccumulator(str(log_dir))
    events.Reload()
    return set(events.Tags()["images"])


@pytest.fixture
def trained_runs(trained_sweep: Path) -> dict[str, Path]:
    """The run folder of each model in the shared short sweep."""
    return {model: trained_sweep / str(job) for job, model in enumerate(SWEPT_MODELS)}


@pytest.mark.parametrize("model", list(EXPECTED_FIGURES))
def test_train_writes_checkpoints_logs_figures_and_metrics(trained_runs: dict[str, Path], model: str) -> None:
    run_dir = trained_runs[model]  # a job of a multirun: its own folder, its own overrides
    assert f"model={model}" in (run_dir / ".hydra" / "overrides.yaml").read_text()
    assert (run_dir / "csv" / "metrics.csv").is_file()
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert (
        len(checkpoints) == 2
        and re.fullmatch(r"best-epoch00[01]\.ckpt", checkpoints[0])
        and checkpoints[1] == "last.ckpt"
    )
    for name in EXPECTED_FIGURES[model]:
        assert (run_dir / "figures" / f"{name}.png").stat().st_size > 1000
        assert (run_dir / "figures" / f"{name}_epoch000.png").is_file()
        assert (run_dir / "figures" / f"{name}_epoch001.png").is_file()
    images = tensorboard_images(tensorboard_run(run_dir))
    assert {f"figures/{name}" for name in EXPECTED_FIGURES[model]} <= images
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("val/loss", "test/recon", "test/kl", "test/loss"):
        assert metrics[key] == metrics[key] and metrics[key] > 0  # present, not NaN
    assert abs(metrics["test/loss"] - metrics["test/recon"] - metrics["test/kl"]) < 1e-2


def test_evaluate_rebuilds_the_model_from_its_checkpoint(
    trained_runs: dict[str, Path], tiny_mnist: Path, tmp_path: Path
) -> None:
    checkpoint = trained_runs["cond_conv_vae"] / "checkpoints" / "last.ckpt"
    data = [o for o in tiny_data_overrides(tiny_mnist) if not o.startswith("data.val_size")]
    result = run_inline(
        "evaluate.py",
        f"ckpt_path={checkpoint}",
        *data,
        "iwae_samples=10",
        "figures.num_points=100",
        "figures.grid_size=5",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["model"] == "cond_conv_vae" and metrics["split"] == "test" and metrics["images"] == 200
    assert (metrics["epochs"], metrics["latent_dim"], metrics["iwae_samples"], metrics["seed"]) == (2, 2, 10, 42)
    assert metrics["loss"] == pytest.approx(metrics["recon"] + metrics["kl"], abs=1e-2)
    assert metrics["loss_kl_averaged"] == pytest.approx(metrics["recon"] + metrics["kl"] / 2, abs=1e-2)
    assert 0 < metrics["iwae_bce_bound"] < 1000 and metrics["seconds_per_epoch"] > 0
    for name in (
        "latent_scatter",
        "latent_grid_digit0",
        "centre_decode",
        "reconstructions",
        "interpolation",
        "samples",
    ):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 1000
    # The numbers, figures and test-split codes in TensorBoard too, at the checkpoint's training step (2 epochs of
    # 3 batches), in a run named after the evaluated run.
    log_dir = tensorboard_run(tmp_path)
    assert log_dir.name == f"eval cond_conv_vae-{trained_runs['cond_conv_vae'].name} epoch 2"
    assert (log_dir / "projector_config.pbtxt").is_file()
    events = EventAccumulator(str(log_dir), size_guidance={"images": 0})
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("test/loss")] == [(6, pytest.approx(metrics["loss"]))]
    assert events.Scalars("test/iwae_bce_bound")[0].value == pytest.approx(metrics["iwae_bce_bound"])
    assert {"figures/reconstructions", "figures/interpolation", "figures/latent_grid_digit0", "figures/samples"} <= set(
        events.Tags()["images"]
    )
    assert len((log_dir / "embedding" / "metadata.tsv").read_text().splitlines()) == 1 + 200  # every test image
    assert metrics["evaluation"] == "complete" and metrics["phases"] == ["test", "iwae", "figures", "projector"]
    assert metrics["precision"] == "32-true"  # nothing of an evaluation runs in bf16 (eval.yaml)


def test_an_interrupted_evaluation_keeps_its_test_metrics_marked_interrupted(
    trained_runs: dict[str, Path], tiny_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C during the IWAE estimate: the test's numbers, written before it started, stay, marked interrupted;
    the error is one line naming the phase. (debug=fast: evaluation's quick preset.)"""
    import vaelab.evaluation.scoring

    def interrupted_estimate(*args, progress, **kwargs):
        progress(1)
        raise KeyboardInterrupt  # what Ctrl-C raises

    monkeypatch.setattr(vaelab.evaluation.scoring, "iwae_log_likelihood", interrupted_estimate)
    checkpoint = trained_runs["conv_vae"] / "checkpoints" / "last.ckpt"
    data = [o for o in tiny_data_overrides(tiny_mnist) if not o.startswith("data.val_size")]
    cfg = compose_config("eval", [f"ckpt_path={checkpoint}", *data, "debug=fast"], tmp_path / "eval")
    with pytest.raises(
        Interrupted, match="^stopped by Ctrl-C during the IWAE estimate; .* keeps what was done"
    ) as error:
        evaluate(cfg)
    assert "\n" not in str(error.value)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["evaluation"] == "interrupted" and metrics["phases"] == ["test"]
    assert metrics["iwae_bce_bound"] is None and metrics["loss"] == pytest.approx(
        metrics["recon"] + metrics["kl"], abs=1e-2
    )
    assert metrics["images"] == 200  # debug=fast: 2 test batches of 100


def test_evaluate_compares_runs(trained_runs: dict[str, Path], tiny_mnist: Path, tmp_path: Path) -> None:
    data = [o for o in tiny_data_overrides(tiny_mnist) if not o.startswith("data.val_size")]
    runs = f"runs=[{trained_runs['vae']},{trained_runs['conv_vae']}]"
    overrides = [runs, *data, "iwae_samples=5", "projector=false", "figures.num_points=100", "figures.grid_size=5",
                 f"report_dir={tmp_path / 'report'}"]  # fmt: skip
    evaluate(compose_config("eval", overrides, tmp_path / "eval"))
    for folder in (tmp_path / "eval", tmp_path / "report"):
        rows = list(csv.DictReader((folder / "results.csv").open()))
        assert [row["model"] for row in rows] == ["vae", "conv_vae"]  # the model's name; the run has its own column
        assert all(row["run"].startswith(f"{row['model']}-") for row in rows)
        assert [row["setting"] for row in rows] == ["vae", "conv_vae"]  # what sets each apart: its model here
        # Grey levels under a Bernoulli decoder: the IWAE figure is named a bound on that objective, not -log p(x).
        assert list(rows[0]) == ["setting", "model", "run", "split", "binarize", "likelihood", "latent_dim", "epochs",
                                 "recon", "kl", "loss", "loss_kl_averaged", "iwae_bce_bound", "seeds", "loss_std",
                                 "loss_ci95", "iwae_bce_bound_std", "iwae_bce_bound_ci95", "loss_best",
                                 "seconds_per_epoch", "device"]  # fmt: skip
        assert {(row["binarize"], row["likelihood"]) for row in rows} == {("none", "bernoulli")}
        assert {row["seeds"] for row in rows} == {"1"} and {row["loss_std"] for row in rows} == {""}
        assert all(float(row["loss"]) > 0 and row["split"] == "test" for row in rows)
        assert (folder / "comparison.png").stat().st_size > 10_000
        assert (folder / "results_table.md").read_text().count("\n") == 4
    assert len([p for p in (tmp_path / "eval").iterdir() if (p / "metrics.json").is_file()]) == 2


def test_comparison_labels_say_what_sets_runs_of_one_setting_apart(tmp_path: Path) -> None:
    def run(name: str, setting: str, *overrides: str) -> tuple[dict[str, str], Path]:
        (tmp_path / name / ".hydra").mkdir(parents=True)
        (tmp_path / name / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
        return {"setting": setting, "run": f"{setting}-{name}"}, tmp_path / name / "checkpoints" / "best.ckpt"

    runs = [
        run("a", "capacity conv_vae", "experiment=capacity", "model=conv_vae"),
        run("b", "capacity conv_vae", "experiment=capacity", "model=conv_vae", "trainer.max_epochs=10"),
        run("c", "reference vae", "experiment=reference", "model=vae"),
        run("d", "vae", "seed=1"),
        run("e", "vae", "seed=1"),
    ]
    assert figure_labels([r for r, _ in runs], [s for _, s in runs]) == [
        "capacity conv_vae",
        "capacity conv_vae trainer.max_epochs=10",
        "reference vae",
        "vae-d",
        "vae-e",
    ]


def test_evaluate_on_a_corrupt_checkpoint_is_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"\x80\x02garbage")
    result = run_inline("evaluate.py", f"ckpt_path={broken}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: could not read checkpoint")


def test_wrong_group_choice_lists_the_valid_options() -> None:
    result = run_inline("train.py", "model=convvae")
    assert result.returncode != 0
    assert "Could not find 'model/convvae'" in result.stderr
    for option in ("vae", "conv_vae", "cond_conv_vae"):
        assert f"\t{option}\n" in result.stderr


def test_missing_data_is_one_line(tmp_path: Path) -> None:
    overrides = [f"data.data_dir={tmp_path}", "data.download=false"]
    with pytest.raises(VaelabError) as error:
        train(compose_config("train", overrides, tmp_path / "run"))
    message = str(error.value)
    assert "\n" not in message and message.startswith("MNIST not found") and str(tmp_path) in message


@pytest.mark.parametrize(
    "script, overrides, line",
    [
        ("train.py", ["model.latent_dim=-3"], "error: model.latent_dim must be >= 1, got -3."),
        ("evaluate.py", ["ckpt_path=none.ckpt", "iwae_samples=0"], "error: iwae_samples must be >= 1, got 0."),
        # Figure settings, before anything is tested (a bad one used to end the evaluation in a traceback).
        (
            "evaluate.py",
            ["ckpt_path=none.ckpt", "figures.grid_size=-3"],
            "error: figures.grid_size must be >= 1, got -3.",
        ),
        (
            "evaluate.py",
            ["ckpt_path=none.ckpt", "+figures.nope=1"],
            "error: figures.nope is not a figure setting; the settings: num_points, grid_size, digits, interpolation_steps",
        ),
        ("train.py", ["callbacks.figures.num_points=0"], "error: callbacks.figures.num_points must be >= 1, got 0."),
        (
            "train.py",
            ["trainer.precision=fp8"],
            "error: trainer.precision=fp8 is not a precision; choose from auto, 32-true, bf16-mixed, 16-mixed, "
            "bf16-true, 16-true, 64-true (auto: bf16-mixed where the hardware runs bf16 natively, else 32-true)",
        ),
        (
            "train.py",
            ["resume=some/run", "ckpt_path=other.ckpt"],
            "error: resume=some/run and ckpt_path=other.ckpt both say where to go on from; pass one: "
            "resume=<run folder> goes on in that folder, ckpt_path=<file> in a new one",
        ),
        (
            "train.py",
            ["model=cond_conv_vae", "callbacks.figures.digits=[12]"],
            "error: callbacks.figures.digits must be <= 9, got 12.",
        ),
    ],
)
def test_a_bad_value_is_one_line_and_exit_status_1(
    script: str, overrides: list[str], line: str, tmp_path: Path
) -> None:
    """The scripts turn the library's errors (tested there, every value) into one line and exit status 1."""
    result = run_inline(script, *overrides, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [line], result.stderr[-2000:]
    assert result.stdout.strip() == ""  # no config tree first
    assert not (tmp_path / "run").exists()  # a mistake leaves no empty run folder behind


@pytest.mark.parametrize(
    "command, argv",
    [
        ("train_command", ["vaelab-train", "seed=abc"]),
        ("train_command", ["vaelab-train", "trainer.precision=fp8"]),
        ("evaluate_command", ["vaelab-eval", "ckpt_path=x.ckpt", "iwae_samples=0"]),
        ("export_command", ["vaelab-export", "--help"]),
        ("sweeps_command", ["vaelab-sweeps", "--help"]),
    ],
)
def test_refusals_and_help_answer_before_torch_loads(command: str, argv: list[str], tmp_path: Path) -> None:
    """Importing torch and Lightning takes ~7 s: a command that only refuses a setting or prints its help must not."""
    hydra_command = command in ("train_command", "evaluate_command")
    module = "cli" if hydra_command else "cli_tools"
    argv = [*argv, f"hydra.run.dir={tmp_path / 'run'}"] if hydra_command else argv
    script = (
        f"import sys\nfrom vaelab.{module} import {command}\nsys.argv = {argv!r}\n"
        f"try:\n    {command}()\nexcept SystemExit as end:\n    print('exit', end.code, 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    status = "0" if "--help" in argv else "1"
    assert result.stdout.strip().splitlines()[-1] == f"exit {status} False", result.stdout + result.stderr[-2000:]
    assert "--help" in argv or result.stderr.startswith("error: ")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible here")
def test_a_gpu_trainer_without_a_gpu_is_one_line(trained_runs: dict[str, Path], tmp_path: Path) -> None:
    checkpoint = trained_runs["vae"] / "checkpoints" / "last.ckpt"
    for script, overrides in (
        ("train.py", ["trainer=gpu"]),
        ("evaluate.py", [f"ckpt_path={checkpoint}", "trainer=gpu"]),
    ):
        result = run_inline(script, *overrides, f"hydra.run.dir={tmp_path / script}")
        assert result.returncode == 1 and result.stderr.strip().splitlines() == [
            "error: trainer.accelerator=gpu: torch sees no GPU on this machine; use trainer=cpu, or run where a GPU is "
            "visible (CUDA_VISIBLE_DEVICES, a CUDA build of torch)"
        ], result.stderr[-2000:]
        assert not (tmp_path / script).exists()


def test_help_lists_the_groups() -> None:
    result = run_inline("train.py", "--help")
    assert result.returncode == 0
    for group in ("model:", "trainer:", "logger:", "data:", "callbacks:"):
        assert group in result.stdout
    assert "cond_conv_vae" in result.stdout and "multi_gpu" in result.stdout


@pytest.mark.parametrize("sweep", [[], ["-m", "seed=1,2"]], ids=["run", "multirun"])
def test_unwritable_log_folder_is_one_line(sweep: list[str]) -> None:
    result = run_inline("train.py", *sweep, "paths.log_dir=/proc/vaelab-cannot-write-here")
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    setting = "hydra.sweep.dir" if sweep else "hydra.run.dir"
    assert len(lines) == 1 and lines[0].startswith(f"error: {setting}: cannot create /proc/vaelab-cannot-write-here")


@pytest.mark.parametrize("form", ["experiment=capacity", "+experiment=capacity"])
def test_an_experiment_is_chosen_with_or_without_plus(form: str) -> None:
    """experiment is an optional group of train.yaml's defaults (the lightning-hydra-template habit); the appending
    form, which older runs recorded, still works."""
    result = run_inline("train.py", form, "model=conv_vae", "--cfg", "job")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "hidden_dim: 256" in result.stdout and "decoder_hidden_dim: 512" in result.stdout


def test_eval_help_lists_the_groups_evaluation_composes() -> None:
    """vaelab-eval --help names evaluation's own groups, each option of which composes; not training's (model,
    logger, experiment, ...), which evaluation rejects."""
    from hydra import compose, initialize_config_dir

    from helpers import PROJECT_ROOT

    help_text = run_inline("evaluate.py", "--help").stdout
    listed = help_text.split("== Configuration groups ==")[1].split("== Config ==")[0].strip().splitlines()[1:]
    groups = dict(line.split(": ", 1) for line in listed if line.strip())
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), **version_base()):
        choices = compose(config_name="eval", return_hydra_config=True).hydra.runtime.choices
        assert sorted(groups) == sorted(group for group in choices if not group.startswith("hydra"))
        for group, options in groups.items():
            for option in options.split(", "):
                compose(config_name="eval", overrides=[f"{group}={option}"])  # each one composes
