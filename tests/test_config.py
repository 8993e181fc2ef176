"""Every config composes, and what it describes can be built."""

from __future__ import annotations

from pathlib import Path

import hydra.utils
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

from helpers import PROJECT_ROOT, compose_config
from vaelab.builders import build_model, build_trainer, instantiate_group
from vaelab.data import IDXDataModule
from vaelab.errors import user_error
from vaelab.hydra_compat import version_base
from vaelab.job import Job
from vaelab.models import ELBOModule

CONFIG_DIR = str(PROJECT_ROOT / "conf")


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (PROJECT_ROOT / "conf" / group).glob("*.yaml"))


@pytest.mark.parametrize("model", options("model"))
def test_each_model_config_builds_the_class_of_its_name(model: str, tmp_path: Path) -> None:
    # evaluate.py's results name the model by the class's model_name: it must be the model= choice that built it
    assert build_model(compose_config("train", [f"model={model}"], tmp_path).model).model_name == model


@pytest.mark.parametrize("model", options("model"))
# Comet starts an experiment when built (~3 s with its end): test_loggers' Comet test builds it from logger=comet.
@pytest.mark.parametrize("logger", [logger for logger in options("logger") if logger != "comet"])
def test_train_config_builds_model_data_callbacks_and_loggers(
    model: str, logger: str, tmp_path: Path, mlflow_store: str
) -> None:
    # Everything the loggers make goes under this test's folder (MLflow: a copy of a migrated store, ~4 s less).
    where = [f"paths.log_dir={tmp_path / 'logs'}"]
    where += [f"logger.mlflow.tracking_uri={mlflow_store}"] if logger in ("mlflow", "many") else []
    cfg = compose_config("train", [f"model={model}", f"logger={logger}", *where], tmp_path)
    built = build_model(cfg.model)
    assert isinstance(built, ELBOModule) and built.latent_dim == 2
    assert isinstance(hydra.utils.instantiate(cfg.data), IDXDataModule)
    assert (
        len(instantiate_group(cfg.callbacks, Job())) == 9
    )  # history, best + last checkpoints, interrupt, figures, learning rate, progress bar, timer, Optuna pruning
    assert len(instantiate_group(cfg.logger, Job())) == {"none": 0, "many": 3}.get(logger, 1)


@pytest.mark.parametrize("trainer", ["cpu", "gpu", "multi_gpu"])
def test_trainer_configs(trainer: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"trainer={trainer}"], tmp_path)
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"
    assert cfg.trainer.accelerator == ("cpu" if trainer == "cpu" else "gpu")
    if trainer == "multi_gpu":
        assert cfg.trainer.strategy == "ddp" and cfg.trainer.devices == -1
    if trainer == "cpu":
        built = build_trainer(cfg.trainer, logger=False, enable_progress_bar=False)
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
    with initialize_config_dir(config_dir=CONFIG_DIR, **version_base()):
        assert compose(config_name="eval").ckpt_path is None


CONV_MODELS = ["conv_vae", "cond_conv_vae"]
# experiment -> (the models it takes, epochs, batch size, lr, cosine schedule, out_features of the encoder's and the
# decoder's Linear layers where it sets them)
EXPERIMENTS = {
    "reference": (options("model"), 30, 128, 1e-3, False, {}),
    "tuned": (options("model"), 10, 128, 3e-3, True, {}),
    "tuned_conv": (CONV_MODELS, 10, 128, 3e-3, True, {"encoder": [256, 2, 2], "decoder": [256, 3136]}),
    "capacity": (CONV_MODELS, 30, 64, 0.0019, True, {"encoder": [256, 2, 2], "decoder": [512, 3136]}),
    "cond_capacity": (["cond_conv_vae"], 30, 64, 0.0019, True, {"encoder": [512, 2, 2], "decoder": [256, 3136]}),
    "capacity_dense": (["vae"], 30, 64, 0.0019, True, {"encoder": [1024, 512, 2, 2], "decoder": [512, 1024, 784]}),
}


def test_every_experiment_is_checked() -> None:
    assert sorted(EXPERIMENTS) == options("experiment")


@pytest.mark.parametrize(("experiment", "model"), [(e, m) for e, spec in EXPERIMENTS.items() for m in spec[0]])
def test_experiments_build_their_setting_with_a_2d_latent(experiment: str, model: str, tmp_path: Path) -> None:
    _, epochs, batch_size, lr, cosine, widths = EXPERIMENTS[experiment]
    cfg = compose_config("train", [f"experiment={experiment}", f"model={model}"], tmp_path)
    built = build_model(cfg.model)
    assert built.latent_dim == 2 and built.model_name == model
    assert (cfg.trainer.max_epochs, cfg.data.batch_size) == (epochs, batch_size)
    optimizer = built.configure_optimizers()
    if cosine:
        assert type(optimizer["lr_scheduler"]["scheduler"]).__name__ == "CosineAnnealingLR"
        optimizer = optimizer["optimizer"]
    else:
        assert isinstance(optimizer, torch.optim.Optimizer)  # no schedule
    assert optimizer.param_groups[0]["lr"] == pytest.approx(lr)  # a cosine schedule starts at the full lr
    for side, layer_widths in widths.items():
        assert [m.out_features for m in getattr(built, side).modules() if isinstance(m, nn.Linear)] == layer_widths


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
        ("model=vae model.hidden_dims=abc", "model.hidden_dims"),
        ("model=vae model.hidden_dims=[512,0]", "model.hidden_dims[1]"),
        ("model.hidden_dim=-3", "model.hidden_dim"),
        ("model.decoder_hidden_dim=1.5", "model.decoder_hidden_dim"),
        ("model.encoder_channels=[32]", "model.encoder_channels"),
        ("model=cond_conv_vae model.decoder_channels=[64,x]", "model.decoder_channels[1]"),
        ("experiment=capacity model=vae", "model.hidden_dim is not a setting of VAE (model=vae)"),
    ],
)
def test_bad_values_are_caught_before_training_and_name_the_key(override: str, key: str, tmp_path: Path) -> None:
    cfg = compose_config("train", override.split(), tmp_path)
    with pytest.raises(Exception) as raised:
        build_model(cfg.model)
        hydra.utils.instantiate(cfg.data)
    error = user_error(raised.value)
    assert error is not None and str(error).startswith(key)


# search -> the models it is meant for
SEARCHES = {
    "optuna": options("model"),
    "conv_capacity": CONV_MODELS,
    "conv_depth": CONV_MODELS,
    "dense_capacity": ["vae"],
}


def test_every_search_is_checked() -> None:
    assert sorted(SEARCHES) == options("hparams_search")


@pytest.mark.parametrize(("search", "model"), [(s, m) for s, models in SEARCHES.items() for m in models])
def test_every_searched_key_exists_in_the_models_searched(search: str, model: str) -> None:
    with initialize_config_dir(config_dir=CONFIG_DIR, **version_base()):
        cfg = compose(config_name="train", overrides=[f"hparams_search={search}", f"model={model}"],
                      return_hydra_config=True)  # fmt: skip
    absent = object()
    for key in cfg.hydra.sweeper.params:  # null counts as present: model.decoder_hidden_dim is null by default
        assert OmegaConf.select(cfg, key, default=absent) is not absent, key


def test_the_seed_is_passed_to_the_data_order_and_the_training_noise(tmp_path: Path) -> None:
    """No global state between the seed and what it seeds: the data order takes it from the config, the training
    noise from ``build``."""
    cfg = compose_config("train", ["seed=7"], tmp_path)
    assert hydra.utils.instantiate(cfg.data).shuffle_seed == 7
    assert (
        hydra.utils.instantiate(compose_config("train", ["seed=7", "data.shuffle_seed=3"], tmp_path).data).shuffle_seed
        == 3
    )
    assert hydra.utils.instantiate(compose_config("train", ["seed=null"], tmp_path).data).shuffle_seed == 0


def test_the_checkpoint_callbacks_take_their_file_names_from_the_run_folder(tmp_path: Path) -> None:
    """The callback configs name no file: ``RunFolder`` (what resume=, runs= and summaries read) does. Their state
    keeps Lightning's ModelCheckpoint key, so checkpoints saved before these classes resume with their best path."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from vaelab.callbacks import BestCheckpoint, InterruptCheckpoint, LastCheckpoint
    from vaelab.run.folder import RunFolder

    callbacks = instantiate_group(compose_config("train", [], tmp_path).callbacks, Job())
    best, last = (next(c for c in callbacks if type(c) is kind) for kind in (BestCheckpoint, LastCheckpoint))
    interrupt = next(c for c in callbacks if isinstance(c, InterruptCheckpoint))
    folder = RunFolder(tmp_path)
    assert Path(best.dirpath) == Path(last.dirpath) == folder.checkpoints
    assert Path(last.format_checkpoint_name({})) == interrupt.path == folder.last_checkpoint
    assert Path(best.format_checkpoint_name({"epoch": 3})).match(folder.checkpoints.name + "/best-epoch003.ckpt")
    lightning_best = ModelCheckpoint(dirpath=tmp_path, monitor="val/loss", mode="min")
    assert best.state_key == lightning_best.state_key and last.state_key.startswith("ModelCheckpoint{")


def test_precision_auto_is_bf16_only_where_the_hardware_runs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from vaelab import machine

    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    for features, expected in (
        (["avx2", "avx512f"], "32-true"),  # bf16 would be emulated: slower than float32
        (["avx2", "avx512f", "avx512_bf16"], "bf16-mixed"),
        (["avx2", "avx512f", "avx512_bf16", "amx_bf16"], "bf16-mixed"),
    ):
        monkeypatch.setattr(machine, "cpu_features", lambda features=features: features)
        assert machine.resolve_precision("auto", "cpu")[0] == expected
        assert machine.resolve_precision("32-true", "cpu") == ("32-true", "as set")  # a set precision is kept
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # oneDNN capped below its bf16 kernels
    assert machine.resolve_precision("auto", "cpu")[0] == "32-true"
    if not torch.cuda.is_available():
        assert machine.resolve_precision("auto", "gpu")[0] == "32-true"
