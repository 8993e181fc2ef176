"""Every config composes, and what it describes can be built."""

from __future__ import annotations

from pathlib import Path

import hydra.utils
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from helpers import PROJECT_ROOT, compose_config
from vaelab.data import MNISTDataModule
from vaelab.errors import user_error
from vaelab.models import ELBOModule
from vaelab.training import build_model, instantiate_group

CONFIG_DIR = str(PROJECT_ROOT / "conf")


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (PROJECT_ROOT / "conf" / group).glob("*.yaml"))


@pytest.mark.parametrize("model", options("model"))
def test_each_model_config_builds_the_class_of_its_name(model: str, tmp_path: Path) -> None:
    # evaluate.py's results name the model by the class's model_name: it must be the model= choice that built it
    assert build_model(compose_config("train", [f"model={model}"], tmp_path).model).model_name == model


@pytest.mark.parametrize("model", options("model"))
@pytest.mark.parametrize("logger", options("logger"))
def test_train_config_builds_model_data_callbacks_and_loggers(model: str, logger: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"model={model}", f"logger={logger}"], tmp_path)
    built = build_model(cfg.model)
    assert isinstance(built, ELBOModule) and built.latent_dim == 2
    assert isinstance(hydra.utils.instantiate(cfg.data), MNISTDataModule)
    assert len(instantiate_group(cfg.callbacks)) == 5  # best + last checkpoints, interrupt, figures, progress bar
    assert len(instantiate_group(cfg.logger)) == {"none": 0, "many": 3}.get(logger, 1)


@pytest.mark.parametrize("trainer", ["cpu", "gpu", "multi_gpu"])
def test_trainer_configs(trainer: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"trainer={trainer}"], tmp_path)
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"
    assert cfg.trainer.accelerator == ("cpu" if trainer == "cpu" else "gpu")
    if trainer == "multi_gpu":
        assert cfg.trainer.strategy == "ddp" and cfg.trainer.devices == -1
    if trainer == "cpu":
        built = hydra.utils.instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
        assert built.max_epochs == 10


def test_keys_people_type(tmp_path: Path) -> None:
    cfg = compose_config(
        "train",
        [
            "model.latent_dim=8",
            "model.beta=0.5",
            "model.optimizer.lr=3e-4",
            "data.batch_size=64",
            "data.val_size=1000",
            "trainer.max_epochs=3",
            "seed=7",
            "model=cond_conv_vae",
        ],
        tmp_path,
    )
    built = build_model(cfg.model)
    assert (built.latent_dim, built.beta, built.num_classes) == (8, 0.5, 10)
    optimizer = built.configure_optimizers()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(3e-4)
    assert (cfg.data.batch_size, cfg.data.val_size, cfg.trainer.max_epochs, cfg.seed) == (64, 1000, 3, 7)


def test_eval_config_needs_a_checkpoint(tmp_path: Path) -> None:
    cfg = compose_config("eval", ["ckpt_path=some.ckpt"], tmp_path)
    assert cfg.ckpt_path == "some.ckpt" and "model" not in cfg
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        assert compose(config_name="eval").ckpt_path is None


EXPERIMENT_MODELS = [(experiment, model) for experiment in options("experiment") for model in options("model")
                     if not (experiment == "tuned_conv" and model == "vae")]  # fmt: skip


@pytest.mark.parametrize(("experiment", "model"), EXPERIMENT_MODELS)
def test_experiments_take_any_model_and_keep_a_2d_latent(experiment: str, model: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"+experiment={experiment}", f"model={model}"], tmp_path)
    built = build_model(cfg.model)
    assert built.latent_dim == 2 and cfg.data.batch_size == 128 and built.model_name == model
    optimizer = built.configure_optimizers()
    if experiment.startswith("tuned"):
        assert cfg.trainer.max_epochs == 10
        assert type(optimizer["lr_scheduler"]["scheduler"]).__name__ == "CosineAnnealingLR"
    else:
        assert cfg.trainer.max_epochs == 30 and optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    if experiment == "tuned_conv":
        assert built.encoder.dense[0].out_features == 256 and built.decoder.dense[0].out_features == 256


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("model.latent_dim=0", "model.latent_dim"),
        ("model.latent_dim=abc", "model.latent_dim"),
        ("model.beta=-1", "model.beta"),
        ("model.optimizer.lr=-1", "model.optimizer.lr"),
        ("model.optimizer.lr=0", "model.optimizer.lr"),
        ("data.batch_size=0", "data.batch_size"),
        ("data.batch_size=1.5", "data.batch_size"),
        ("data.val_size=-5", "data.val_size"),
    ],
)
def test_bad_values_are_caught_before_training_and_name_the_key(override: str, key: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [override], tmp_path)
    with pytest.raises(Exception) as raised:
        build_model(cfg.model)
        hydra.utils.instantiate(cfg.data)
    error = user_error(raised.value)
    assert error is not None and str(error).startswith(key)


@pytest.mark.parametrize("search", options("hparams_search"))
@pytest.mark.parametrize("model", ["conv_vae", "cond_conv_vae"])
def test_every_searched_key_exists_in_the_conv_models(search: str, model: str) -> None:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"hparams_search={search}", f"model={model}"],
                      return_hydra_config=True)  # fmt: skip
    absent = object()
    for key in cfg.hydra.sweeper.params:  # null counts as present: model.decoder_hidden_dim is null by default
        assert OmegaConf.select(cfg, key, default=absent) is not absent, key
