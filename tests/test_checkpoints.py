"""Hostile and broken checkpoints: each is one error line from train.py (ckpt_path=, resume=) and evaluate.py,
and none runs code (a pickle payload would create a marker file)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from helpers import NO_FIGURES, compose_config, run_inline, tiny_data_overrides
from vaelab.errors import VaelabError
from vaelab.evaluation import evaluate
from vaelab.run.checkpoints import read_checkpoint
from vaelab.training import train

TINY = ["model=vae", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        "data.batch_size=50", "logger=none", *NO_FIGURES]  # fmt: skip


class Payload:
    """Unpickling this creates ``marker``: proof that a checkpoint ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def good_checkpoint(tiny_mnist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("good")
    train(
        compose_config("train", [*TINY, f"paths.output_dir={run_dir}", "test=false", *tiny_data_overrides(tiny_mnist)])
    )
    return run_dir / "checkpoints" / "last.ckpt"


def hostile(good: Path, folder: Path, case: str, marker: Path) -> Path:
    """A copy of ``good`` made hostile or broken as ``case`` says, at ``folder/checkpoints/last.ckpt``."""
    target = folder / "checkpoints" / "last.ckpt"
    target.parent.mkdir(parents=True, exist_ok=True)
    if case == "truncated":
        target.write_bytes(good.read_bytes()[:2000])
        return target
    checkpoint = torch.load(good, weights_only=True)
    if case == "pickle in the model state":
        checkpoint["state_dict"]["extra"] = Payload(marker)
    elif case == "pickle in the callback state":
        checkpoint["callbacks"]["evil"] = Payload(marker)
    elif case == "pickle in the hyperparameters":
        checkpoint["hyper_parameters"]["latent_dim"] = Payload(marker)
    elif case == "foreign class":
        checkpoint["vaelab_model_class"] = "os.system"
    elif case == "wrong shapes":
        name = next(iter(checkpoint["state_dict"]))
        checkpoint["state_dict"][name] = torch.zeros(3, 3)
    elif case == "best path names a pickle":  # ModelCheckpoint's state: test() would load this "best" file
        payload = folder / "checkpoints" / "best-epoch000.ckpt"
        payload.write_bytes(pickle.dumps(Payload(marker)))
        for key, state in checkpoint["callbacks"].items():
            if "val/loss" in key:
                state.update(best_model_path=str(payload), dirpath=str(folder / "checkpoints"))
                state["best_k_models"] = {str(payload): torch.tensor(-1e9)}
                state.update(
                    best_model_score=torch.tensor(-1e9), kth_best_model_path=str(payload), kth_value=torch.tensor(-1e9)
                )
    torch.save(checkpoint, target)
    return target


CASES = ["truncated", "pickle in the model state", "pickle in the callback state", "pickle in the hyperparameters",
         "foreign class", "wrong shapes"]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_hostile_checkpoints_are_refused_everywhere(
    good_checkpoint: Path, tiny_mnist: Path, tmp_path: Path, case: str
) -> None:
    marker = tmp_path / "code-ran"
    path = hostile(good_checkpoint, tmp_path / "run", case, marker)
    data = tiny_data_overrides(tiny_mnist)
    for name, overrides in (
        ("train", [*TINY, f"ckpt_path={path}", f"paths.output_dir={tmp_path / 'a'}", *data]),
        ("train", [*TINY, f"resume={tmp_path / 'run'}", f"paths.output_dir={tmp_path / 'b'}", *data]),
        ("eval", [f"ckpt_path={path}", f"paths.output_dir={tmp_path / 'c'}", "iwae_samples=null", *data]),
    ):
        with pytest.raises(VaelabError) as error:
            (train if name == "train" else evaluate)(compose_config(name, overrides))
        assert "\n" not in str(error.value) and "weights_only=False" not in str(error.value)
        assert not marker.exists(), f"{case}: {name} ran the checkpoint's code"


def test_a_best_path_naming_a_pickle_runs_no_code(good_checkpoint: Path, tiny_mnist: Path, tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    run_dir = tmp_path / "run"
    hostile(good_checkpoint, run_dir, "best path names a pickle", marker)
    overrides = [*TINY, "trainer.max_epochs=2", f"resume={run_dir}", f"paths.output_dir={run_dir}", "test=true",
                 *tiny_data_overrides(tiny_mnist)]  # fmt: skip
    with pytest.raises(VaelabError, match="could not read checkpoint"):
        train(compose_config("train", overrides))
    assert not marker.exists()


def test_bad_checkpoints_from_the_command_line_are_one_line(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    result = run_inline("train.py", f"ckpt_path={truncated}", f"hydra.run.dir={tmp_path / 'out'}")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith(f"error: could not read checkpoint {truncated}") and "weights_only=False" not in lines[0]
    with pytest.raises(VaelabError, match="checkpoint not found"):
        train(
            compose_config("train", [*TINY, f"ckpt_path={tmp_path / 'missing.ckpt'}", f"paths.output_dir={tmp_path}"])
        )


def test_a_checkpoint_without_a_vaelab_class_is_refused(tmp_path: Path) -> None:
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, plain)
    with pytest.raises(VaelabError, match="not a vaelab model"):
        read_checkpoint(plain)


def test_a_pickle_payload_through_the_scripts(good_checkpoint: Path, tiny_mnist: Path, tmp_path: Path) -> None:
    """The same refusal as users meet it: train.py ckpt_path=, train.py resume=, evaluate.py ckpt_path=."""
    marker = tmp_path / "code-ran"
    path = hostile(good_checkpoint, tmp_path / "run", "pickle in the model state", marker)
    data = tiny_data_overrides(tiny_mnist)
    for task, overrides, folder in (
        (train, [*TINY, f"ckpt_path={path}", *data], tmp_path / "a"),
        (train, [*TINY, f"resume={tmp_path / 'run'}", *data], tmp_path / "run"),
        (evaluate, [f"ckpt_path={path}", *data], tmp_path / "c"),
    ):
        with pytest.raises(VaelabError) as error:
            task(compose_config("train" if task is train else "eval", overrides, folder))
        assert str(error.value).startswith(f"could not read checkpoint {path}") and "\n" not in str(error.value)
        assert not marker.exists()
