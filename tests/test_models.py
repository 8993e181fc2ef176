from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from helpers import PROJECT_ROOT, small_batch, train_steps
from vaelab.data import IDXDataModule
from vaelab.errors import VaelabError
from vaelab.models import VAE, CondConvVAE, ConvVAE, ELBOModule
from vaelab.models.networks import PixelLogits
from vaelab.models.probability import bernoulli_nll, gaussian_kl
from vaelab.run.checkpoints import load_model

MODEL_CLASSES = [VAE, ConvVAE, CondConvVAE]


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
@pytest.mark.parametrize("latent_dim", [2, 5])
def test_shapes(model_class: type[ELBOModule], latent_dim: int) -> None:
    model = model_class(latent_dim=latent_dim)
    images, labels = small_batch(8)
    z_mean, log_var = model.encode(images, labels)
    assert z_mean.shape == log_var.shape == (8, latent_dim)
    decoded = model.decode(z_mean, labels)
    assert decoded.shape == (8, 1, 28, 28)
    assert 0 < decoded.min() and decoded.max() < 1
    assert model.sample(6).shape == (6, 1, 28, 28)
    terms = model.loss_terms(images, labels)
    assert all(value.shape == (8,) for value in terms.values())


def test_kl_is_zero_at_the_prior_and_positive_elsewhere() -> None:
    assert torch.allclose(gaussian_kl(torch.zeros(4, 3), torch.zeros(4, 3)), torch.zeros(4))
    generator = torch.Generator().manual_seed(0)
    z_mean, log_var = torch.randn(1000, 2, generator=generator), torch.randn(1000, 2, generator=generator) * 2
    assert (gaussian_kl(z_mean, log_var) > 0).all()
    # Closed form for one dimension: KL(N(1, 1) || N(0, 1)) = 0.5 nats, summed (not averaged) over dims.
    assert torch.allclose(gaussian_kl(torch.ones(1, 2), torch.zeros(1, 2)), torch.tensor([1.0]))


def test_reconstruction_loss_is_summed_bce_per_image() -> None:
    logits = torch.randn(3, 1, 28, 28)
    images = torch.rand(3, 1, 28, 28)
    probabilities = torch.sigmoid(logits)
    expected = -(images * probabilities.log() + (1 - images) * (1 - probabilities).log()).flatten(1).sum(1)
    assert torch.allclose(bernoulli_nll(logits, images), expected, rtol=1e-4)
    # Stable where probabilities saturate: no inf for very confident logits.
    assert torch.isfinite(bernoulli_nll(torch.full((1, 1, 28, 28), 200.0), torch.zeros(1, 1, 28, 28))).all()


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_loss_is_finite_and_decreases(model_class: type[ELBOModule]) -> None:
    torch.manual_seed(0)
    model = model_class()
    images, labels = small_batch()
    losses, kls = [], []
    for terms in train_steps(model, images, labels, steps=40):
        losses.append(terms["loss"].mean().item())
        kls.append(terms["kl"].min().item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert min(kls) >= 0
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5


def test_conditional_model_uses_the_label_and_plain_models_ignore_it() -> None:
    torch.manual_seed(0)
    z = torch.randn(4, 2)
    conditional = CondConvVAE()
    assert not torch.allclose(
        conditional.decode(z, torch.zeros(4, dtype=torch.long)), conditional.decode(z, torch.ones(4, dtype=torch.long))
    )
    with pytest.raises(ValueError, match="conditional"):
        conditional.decode(z)
    plain = ConvVAE()
    assert torch.equal(plain.decode(z, torch.zeros(4, dtype=torch.long)), plain.decode(z))


def test_channels_last_gives_the_same_outputs() -> None:
    torch.manual_seed(0)
    fast = ConvVAE(channels_last=True)
    plain = ConvVAE(channels_last=False)
    plain.load_state_dict(fast.state_dict())
    images, _ = small_batch(8)
    for fast_out, plain_out in zip(fast.encode(images), plain.encode(images)):
        assert torch.allclose(fast_out, plain_out, atol=1e-5)
    z = torch.randn(8, 2)
    assert torch.allclose(fast.decode(z), plain.decode(z), atol=1e-5)


@pytest.mark.parametrize("channels_last", [True, False])
def test_the_pixel_layer_without_autograd_is_the_transposed_convolution(channels_last: bool) -> None:
    torch.manual_seed(0)
    layer = PixelLogits(32)
    features = torch.randn(5, 32, 28, 28) * 3
    features = features.contiguous(memory_format=torch.channels_last) if channels_last else features
    convolution = nn.ConvTranspose2d.forward(layer, features)  # the training path
    with torch.no_grad():
        fast = layer(features)
    assert fast.shape == convolution.shape == (5, 1, 28, 28)
    assert torch.allclose(fast, convolution, atol=1e-4, rtol=1e-5)  # corner and edge pixels included
    with torch.enable_grad():
        assert layer(features).requires_grad  # with autograd: the convolution, which has a backward


@pytest.mark.parametrize(
    "settings",
    [{"latent_dim": 0}, {"beta": -1.0}, {"optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": -1}}],
)
def test_bad_hyperparameters_are_rejected(settings: dict) -> None:
    with pytest.raises(VaelabError):
        ConvVAE(**settings)


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_checkpoint_round_trip(model_class: type[ELBOModule], tiny_mnist: Path, tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = model_class(latent_dim=3, beta=0.5)
    datamodule = IDXDataModule(data_dir=str(tiny_mnist), download=False, val_size=100, batch_size=50)
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=datamodule)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)

    restored = load_model(path)
    assert type(restored) is model_class
    assert restored.hparams == model.hparams
    model.eval()
    images, labels = small_batch(8)
    with torch.no_grad():
        for original, loaded in zip(model.encode(images, labels), restored.encode(images, labels)):
            assert torch.equal(original, loaded)
        z = torch.randn(8, 3)
        assert torch.equal(model.decode(z, labels), restored.decode(z, labels))


def test_checkpoint_of_another_model_or_garbage_is_one_clear_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(VaelabError, match="could not read checkpoint"):
        load_model(garbage)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}, "epoch": 1}, foreign)
    with pytest.raises(VaelabError, match="not a vaelab model"):
        load_model(foreign)
    with pytest.raises(VaelabError, match="not found"):
        load_model(tmp_path / "missing.ckpt")
    mismatched = tmp_path / "mismatched.ckpt"
    torch.save(
        {
            "state_dict": VAE().state_dict(),
            "hyper_parameters": {},
            "vaelab_model_class": "vaelab.models.conv_vae.ConvVAE",
        },
        mismatched,
    )
    with pytest.raises(VaelabError, match="do not fit ConvVAE"):
        load_model(mismatched)


def test_the_maths_and_the_models_package_import_no_plotting() -> None:
    code = ("import sys, vaelab.models, vaelab.models.probability, vaelab.models.networks, vaelab.models.inference;"
            "print(sorted(name for name in ('matplotlib', 'lightning') if name in sys.modules))")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_no_import_runs_from_the_models_up_to_figures_loggers_or_entry_points() -> None:
    for source in (PROJECT_ROOT / "src" / "vaelab" / "models").glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            for name in (n for n in names if n.startswith("vaelab")):
                assert name.startswith(("vaelab.models", "vaelab.errors", "vaelab.validators")), (
                    f"{source.name} imports {name}"
                )


def test_residual_blocks_add_depth_and_leave_the_reference_architecture_alone() -> None:
    images, labels = small_batch(8)
    plain, deep = CondConvVAE(), CondConvVAE(residual_blocks=2)
    assert deep.loss_terms(images, labels)["loss"].shape == (8,)
    extra = sum(p.numel() for p in deep.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == 2 * 2 * sum(2 * (c * c * 9 + c) for c in (32, 64))  # 2 blocks x 2 scales x 2 sides x 2 convs
    assert not any("blocks" in key for key in plain.state_dict())  # checkpoints of the default model load as before
    with pytest.raises(VaelabError, match="residual_blocks"):
        ConvVAE(residual_blocks=-1)


def test_validation_and_test_run_in_float32_under_bf16_autocast() -> None:
    """bf16-mixed (trainer.precision=auto on a bf16 CPU) trains under autocast; the numbers a run reports are float32."""
    model = ConvVAE().eval()
    images, labels = small_batch(16)
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16)
    for stage in ("val", "test"):
        model._reset_epoch(stage)
        plain = model.step((images, labels), stage)
        model._reset_epoch(stage)
        with bf16:
            under_autocast = model.step((images, labels), stage)
        assert under_autocast.dtype == torch.float32 and torch.equal(under_autocast, plain)
    noise = torch.Generator().manual_seed(0)
    with bf16:  # training does run in bf16: the same call differs
        trained = model.loss_terms(images, labels, noise)["loss"]
    assert not torch.equal(trained, model.loss_terms(images, labels, torch.Generator().manual_seed(0))["loss"])


@pytest.mark.parametrize("model_class", [VAE, ConvVAE, CondConvVAE])
def test_the_model_summary_counts_each_layers_flops(model_class: type[ELBOModule]) -> None:
    """Lightning's summary (printed at the start of a run) shows real FLOPs and sizes, not a column of zeros: the
    models have an example input and a forward (the mean code's reconstruction logits)."""
    from lightning.pytorch.utilities.model_summary import ModelSummary

    summary = ModelSummary(model_class(latent_dim=2), max_depth=2)
    assert summary.total_flops > 0
    assert [size for name, size in zip(summary.layer_names, summary.out_sizes) if name == "encoder"] != ["?"]
    images, labels = small_batch(3)
    assert model_class(latent_dim=2)(images, labels).shape == images.shape
