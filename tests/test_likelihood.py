"""The IWAE estimate: a valid bound that tightens with K."""

from __future__ import annotations

import math

import pytest
import torch

from helpers import small_batch, train_steps
from vaelab.models import VAE, CondConvVAE
from vaelab.models.probability import (
    continuous_bernoulli_log_normalizer,
    continuous_bernoulli_mean,
    gaussian_log_density,
    iwae_log_likelihood,
)


@pytest.fixture(scope="module")
def trained_vae() -> tuple[VAE, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = VAE(latent_dim=2, hidden_dims=(64,))
    images, labels = small_batch(128)
    for _ in train_steps(model, images, labels, steps=100):
        pass
    return model.eval(), images, labels


def test_gaussian_log_density_matches_torch() -> None:
    z, mean, log_var = torch.randn(5, 3), torch.randn(5, 3), torch.randn(5, 3)
    expected = torch.distributions.Normal(mean, (0.5 * log_var).exp()).log_prob(z).sum(-1)
    assert torch.allclose(gaussian_log_density(z, mean, log_var), expected, atol=1e-5)


def test_one_sample_is_the_elbo(trained_vae) -> None:
    model, images, labels = trained_vae
    torch.manual_seed(1)
    with torch.no_grad():
        elbo_loss = torch.stack([model.loss_terms(images, labels)["loss"] for _ in range(20)]).mean().item()
    iwae_one = -torch.stack([iwae_log_likelihood(model, images, None, num_samples=1) for _ in range(20)]).mean().item()
    assert iwae_one == pytest.approx(elbo_loss, abs=1.0)


def test_bound_tightens_and_converges_as_k_grows(trained_vae) -> None:
    model, images, _ = trained_vae
    torch.manual_seed(2)
    nll = {k: -iwae_log_likelihood(model, images, None, num_samples=k).mean().item() for k in (1, 10, 100, 500)}
    assert all(math.isfinite(value) for value in nll.values())
    # The IWAE NLL is below the ELBO (K = 1) and keeps falling, by less and less.
    assert nll[1] > nll[10] > nll[100] >= nll[500] - 0.05
    assert nll[1] - nll[10] > nll[100] - nll[500]
    assert nll[100] - nll[500] < 0.5


def test_chunking_and_conditional_models() -> None:
    torch.manual_seed(3)
    model = CondConvVAE().eval()
    images, labels = small_batch(7)
    estimates = iwae_log_likelihood(model, images, labels, num_samples=4, max_decodes=8)  # 2 images a chunk
    assert estimates.shape == (7,) and torch.isfinite(estimates).all()


def test_the_continuous_bernoulli_is_a_normalised_density_with_its_mean() -> None:
    """C(lam)^-1 and E[x] are integrals over [0, 1]: the closed forms against the trapezoid rule, l = 0 included."""
    x = torch.linspace(0, 1, 200_001, dtype=torch.float64)
    for logit in (-6.0, -0.5, -1e-4, 0.0, 2e-4, 3.0):
        lam = torch.sigmoid(torch.tensor(logit, dtype=torch.float64))
        density = lam**x * (1 - lam) ** (1 - x)
        norm = torch.trapezoid(density, x)
        assert continuous_bernoulli_log_normalizer(torch.tensor(logit)).item() == pytest.approx(
            -math.log(norm), abs=1e-5
        )
        expected_mean = (torch.trapezoid(x * density, x) / norm).item()
        assert continuous_bernoulli_mean(torch.tensor(logit)).item() == pytest.approx(expected_mean, abs=1e-5)
