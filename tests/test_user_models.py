"""A model class of the user's own, outside vaelab, through every path: train with test, resume, evaluate, a sweep;
its checkpoints read only where it is trusted; the contract a model must meet checked in one line."""

from __future__ import annotations

import json
import math
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
import torch
from omegaconf import OmegaConf

from helpers import NO_FIGURES, PROJECT_ROOT, compose_config, run_inline, tiny_data_overrides
from vaelab.builders import build_model
from vaelab.errors import VaelabError
from vaelab.evaluation import evaluate
from vaelab.run.checkpoints import load_model, read_checkpoint

USER_MODULE = '''
    """A user's models: nothing of vaelab changed."""
    from vaelab.models import VAE


    class WideVAE(VAE):
        """The dense VAE with its hidden layers widened by a factor."""

        model_name = "wide_vae"

        def __init__(self, widen: int = 2, hidden_dims=(64, 32), **settings) -> None:
            super().__init__(hidden_dims=[widen * size for size in hidden_dims], **settings)
'''
TINY = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "data.batch_size=50",
        "logger=[csv,tensorboard]", *NO_FIGURES]  # fmt: skip
WIDE = ["model=vae", "model._target_=mymodels.WideVAE", "+model.widen=3", "model.hidden_dims=[16,8]"]


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``mymodels.py`` in a folder of its own on the path (PYTHONPATH too, for the processes a run starts)."""
    folder = tmp_path / "user_code"
    folder.mkdir()
    (folder / "mymodels.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", str(folder))
    monkeypatch.delitem(sys.modules, "mymodels", raising=False)
    return folder


def one_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("resume=")]
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    return lines[0]


def test_a_user_model_trains_resumes_evaluates_and_sweeps(
    user_module: Path, tiny_mnist: Path, tmp_path: Path, mlflow_store: str
) -> None:
    data, run = tiny_data_overrides(tiny_mnist), tmp_path / "run"
    every_logger = ["logger=many", f"logger.mlflow.tracking_uri={mlflow_store}"]
    trained = run_inline("train.py", *WIDE, *TINY, *every_logger, *data, f"hydra.run.dir={run}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and math.isfinite(metrics["test/loss"])  # its best checkpoint, tested
    resumed = run_inline("train.py", f"resume={run}", "trainer.max_epochs=2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1

    evaluation = [f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "iwae_samples=2", "projector=true",
                  "figures.num_points=50", "figures.grid_size=3", *data]  # fmt: skip
    refused = run_inline("evaluate.py", *evaluation, f"hydra.run.dir={tmp_path / 'refused'}")
    assert "trusted_models" in one_line(refused) and "mymodels.WideVAE" in one_line(refused)
    evaluate(compose_config("eval", [*evaluation, "trusted_models=[mymodels.WideVAE]"], tmp_path / "e"))
    result = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert result["model"] == "wide_vae" and math.isfinite(result["iwae_bce_bound"])
    assert (tmp_path / "e" / "figures" / "latent_scatter.png").is_file()
    assert load_model(run / "checkpoints" / "last.ckpt", trusted=["mymodels.WideVAE"]).hparams.widen == 3

    sweep = run_inline("train.py", "-m", *WIDE, "model.widen=1,2", *TINY, *data, f"hydra.sweep.dir={tmp_path / 's'}")
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    assert [json.loads((tmp_path / "s" / job / "metrics.json").read_text())["status"] for job in "01"] == [
        "completed", "completed"
    ]  # fmt: skip
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    search = run_inline("train.py", "hparams_search=optuna", *WIDE, *TINY, *data, f"hydra.sweeper.storage={storage}",
                        "hydra.sweeper.study_name=wide", "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={tmp_path / 'o'}")  # fmt: skip
    assert search.returncode == 0, search.stderr[-3000:]
    trials = optuna.load_study(study_name="wide", storage=storage).trials
    assert [trial.state.name for trial in trials] == ["COMPLETE", "COMPLETE"]


def test_installed_packages_declare_their_models(user_module: Path, tiny_mnist: Path, tmp_path: Path) -> None:
    """A distribution on the path with a ``vaelab.models`` entry point: its class is trusted without the key."""
    run = tmp_path / "run"
    from vaelab.training import train

    common = [*WIDE, *TINY, "logger=none", *tiny_data_overrides(tiny_mnist)]
    train(compose_config("train", common, run))
    with pytest.raises(VaelabError, match="trusted_models"):
        load_model(run / "checkpoints" / "last.ckpt")
    # train.py ckpt_path=: another run's checkpoint is read only with the class listed, even when this run builds it.
    from_file = [*common, f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "trainer.max_epochs=2"]
    with pytest.raises(VaelabError, match="trusted_models"):
        train(compose_config("train", from_file, tmp_path / "again"))
    assert (
        train(compose_config("train", [*from_file, "trusted_models=[mymodels.WideVAE]"], tmp_path / "again"))["epochs"]
        == 2
    )
    info = user_module / "mymodels-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mymodels\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[vaelab.models]\nwide = mymodels:WideVAE\n")
    assert type(load_model(run / "checkpoints" / "last.ckpt")).__name__ == "WideVAE"


def test_vaelabs_own_models_are_declared_as_a_package_declares_its_own() -> None:
    """One registry of models: each ``model=<name>`` config of vaelab's is the entry point ``<name>`` of the group
    ``vaelab.models``, naming the class the config builds (the name its checkpoints carry)."""
    import hydra.utils
    import yaml

    from vaelab.targets import declared_models

    declared = declared_models()
    configs = sorted((PROJECT_ROOT / "conf" / "model").glob("*.yaml"))
    assert len(configs) == 3
    for config in configs:
        built = hydra.utils.get_class(yaml.safe_load(config.read_text())["_target_"])
        assert declared.get(config.stem) == built.checkpoint_name(), config.name


def test_a_hostile_class_path_is_refused_with_nothing_imported(
    user_module: Path, tiny_mnist: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "imported"
    (user_module / "hostile.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Evil: pass\n")
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "vaelab_model_class": "hostile.Evil", "hyper_parameters": {}}, path)
    with pytest.raises(VaelabError, match=r"names model class 'hostile.Evil'.*trusted_models"):
        evaluate(compose_config("eval", [f"ckpt_path={path}", *tiny_data_overrides(tiny_mnist)], tmp_path / "e"))
    with pytest.raises(VaelabError, match="trusted_models"):
        read_checkpoint(path, trusted=["hostile.Other"])
    assert not marker.exists() and "hostile" not in sys.modules


@pytest.mark.parametrize(
    "body, words",
    [
        ("def decode_logits(self, z, labels=None):\n        return super().decode_logits(z, labels).flatten(1)",
         "Broken.decode_logits must return [batch, 1, 28, 28]; got [2, 784]"),
        ("def encode(self, images, labels=None):\n        return super().encode(images, labels)[0]",
         "Broken.encode must return (z_mean, log_var), each [batch, latent_dim=2]; got [2, 2]"),
        ("num_classes = -1", "Broken.num_classes must be an integer >= 0, got -1"),
        ("def encode(self, images):\n        return super().encode(images)",
         "Broken.encode must take (images, labels=None); it takes (images)"),
    ],
)  # fmt: skip
def test_the_contract_is_checked_in_one_line(body: str, words: str, user_module: Path) -> None:
    (user_module / "broken.py").write_text(f"from vaelab.models import VAE\n\nclass Broken(VAE):\n    {body}\n")
    sys.modules.pop("broken", None)
    with pytest.raises(VaelabError) as error:
        build_model(compose_config("train", ["model=vae", "model._target_=broken.Broken"]).model)
    assert str(error.value).startswith(words) and "\n" not in str(error.value)


def test_a_target_that_is_not_a_vae_is_one_line() -> None:
    with pytest.raises(VaelabError, match="model._target_=torch.nn.Identity is not a subclass of vaelab.models.ELBO"):
        build_model(OmegaConf.create({"_target_": "torch.nn.Identity"}))


def test_the_model_pasted_from_the_docs_trains_and_evaluates(
    tiny_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/own-model.md's complete class and config, as a user pastes them, train and evaluate; its contract error
    for an nn.Sequential is the one line the page describes."""
    page = (PROJECT_ROOT / "docs" / "own-model.md").read_text()
    code = page.split("```python\n", 1)[1].split("```", 1)[0]
    config = page.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "mymodels.py").write_text(code)
    (tmp_path / "conf" / "model" / "tiny_vae.yaml").write_text(config)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mymodels", raising=False)
    run = tmp_path / "run"
    trained = run_inline("train.py", "--config-dir", str(tmp_path / "conf"), "model=tiny_vae", *TINY,
                         *tiny_data_overrides(tiny_mnist), f"hydra.run.dir={run}")  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    evaluation = [f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "iwae_samples=2", "projector=false",
                  "figures.num_points=50", "figures.grid_size=3", "trusted_models=[mymodels.TinyVAE]",
                  *tiny_data_overrides(tiny_mnist)]  # fmt: skip
    assert evaluate(compose_config("eval", evaluation, tmp_path / "e"))[0]["model"] == "tiny_vae"

    import mymodels

    class Sequential(mymodels.TinyVAE):  # vaelab's encode, with a one-input module as the encoder
        encode = mymodels.ELBOModule.encode

        def __init__(self, **settings) -> None:
            super().__init__(**settings)
            self.encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 4))

    with pytest.raises(VaelabError, match=r"Sequential.encoder must take \(images, condition\) .* Sequential takes"):
        Sequential().check_contract()
