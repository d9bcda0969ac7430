"""aasae_loss against closed forms computed independently (torch.distributions, explicit sums)."""

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from vissl_aasae.losses.aasae_loss import AASAELoss, AASAELossCriterion

torch.manual_seed(0)
B, C, H, W, D = 4, 3, 8, 8, 16


def make(k=1, log_scale=0.0, stochastic=True):
    target = torch.randn(B, C, H, W, dtype=torch.float64)
    x_hat = torch.randn(k, B, C, H, W, dtype=torch.float64)
    mu = torch.randn(B, D, dtype=torch.float64)
    log_var = torch.randn(B, D, dtype=torch.float64) if stochastic else mu.new_zeros(0)
    std = torch.exp(log_var / 2) + 1e-6 if stochastic else None
    z = mu + std * torch.randn(k, B, D, dtype=torch.float64) if stochastic else mu.expand(k, B, D)
    return x_hat, mu, log_var, z, torch.tensor([log_scale], dtype=torch.float64), target


def reference(x_hat, mu, log_var, z, log_scale, target, kl_coeff):
    """Per-example loss by the paper's formula, example by example."""
    scale = math.exp(log_scale.item() / 2) + 1e-6
    losses, kls = [], []
    for b in range(target.shape[0]):
        recon = (
            sum(Normal(x_hat[s, b], scale).log_prob(target[b]).sum() for s in range(x_hat.shape[0])) / x_hat.shape[0]
        )
        if log_var.numel():
            q = Normal(mu[b], torch.exp(log_var[b] / 2) + 1e-6)
            kl = kl_divergence(q, Normal(torch.zeros(D, dtype=torch.float64), 1.0)).sum()
        else:
            kl = torch.tensor(0.0, dtype=torch.float64)
        losses.append(-recon + kl_coeff * kl)
        kls.append(kl)
    return torch.stack(losses).mean(), torch.stack(kls).mean()


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("kl_coeff", [0.0, 1.0, 0.1])
@pytest.mark.parametrize("log_scale", [0.0, -2.5, 1.3])
def test_loss_matches_closed_form(k, kl_coeff, log_scale):
    inputs = make(k=k, log_scale=log_scale)
    loss, metrics = AASAELossCriterion(kl_coeff)(*inputs)
    expected, expected_kl = reference(*inputs, kl_coeff)
    assert torch.allclose(loss, expected, rtol=1e-9, atol=1e-6)
    assert torch.allclose(metrics["kl"], expected_kl, rtol=1e-9)
    assert metrics["elbo"].item() == pytest.approx(
        -(loss.item() - kl_coeff * expected_kl.item()) - expected_kl.item(), rel=1e-9
    )


def test_fixed_scale_loss_is_scaled_mse_plus_constant():
    """log_scale 0 -> scale 1 (+1e-6): loss = 0.5 * SSE + 0.5 * N * log(2 pi) per example, nearly."""
    x_hat, mu, log_var, z, log_scale, target = make()
    loss, _ = AASAELossCriterion(0.0)(x_hat, mu, log_var, z, log_scale, target)
    sse = ((x_hat[0] - target) ** 2).flatten(1).sum(1)
    closed = (0.5 * sse + 0.5 * C * H * W * math.log(2 * math.pi)).mean()
    assert loss.item() == pytest.approx(closed.item(), rel=1e-5)


def test_learned_log_scale_gets_the_analytic_gradient():
    x_hat, mu, log_var, z, _, target = make()
    log_scale = torch.tensor([0.7], dtype=torch.float64, requires_grad=True)
    loss, _ = AASAELossCriterion(0.0)(x_hat, mu, log_var, z, log_scale, target)
    loss.backward()
    # d/ds of mean_b sum_pix [0.5 r^2 / sigma^2 + log sigma], sigma = exp(s/2) + eps
    sigma = math.exp(0.35) + 1e-6
    dsigma = 0.5 * math.exp(0.35)
    sse = ((x_hat[0] - target) ** 2).flatten(1).sum(1).mean().item()
    analytic = (-sse / sigma**3 + C * H * W / sigma) * dsigma
    assert log_scale.grad.item() == pytest.approx(analytic, rel=1e-6)


def test_bits_per_dim_k1_equals_single_sample_elbo():
    """With k=1 the importance-sampled log p(x) is log p(x|z) + log p(z) - log q(z|x)."""
    x_hat, mu, log_var, z, log_scale, target = make(k=1)
    _, metrics = AASAELossCriterion(0.0)(x_hat, mu, log_var, z, log_scale, target)
    std = torch.exp(log_var / 2) + 1e-6
    log_pxz = Normal(x_hat[0], math.exp(0.0) + 1e-6).log_prob(target).flatten(1).sum(1)
    log_pz = Normal(0.0, 1.0).log_prob(z[0]).sum(1)
    log_qz = Normal(mu, std).log_prob(z[0]).sum(1)
    bpd = (-(log_pxz + log_pz - log_qz) / (C * H * W * math.log(2))).mean()
    assert metrics["bits_per_dim"].item() == pytest.approx(bpd.item(), rel=1e-9)


def test_bits_per_dim_uses_logsumexp_over_samples():
    x_hat, mu, log_var, z, log_scale, target = make(k=4)
    _, metrics = AASAELossCriterion(0.0)(x_hat, mu, log_var, z, log_scale, target)
    std = torch.exp(log_var / 2) + 1e-6
    terms = torch.stack(
        [
            Normal(x_hat[s], 1.0 + 1e-6).log_prob(target).flatten(1).sum(1)
            + Normal(0.0, 1.0).log_prob(z[s]).sum(1)
            - Normal(mu, std).log_prob(z[s]).sum(1)
            for s in range(4)
        ]
    )
    log_px = torch.logsumexp(terms, 0) - math.log(4)
    assert metrics["bits_per_dim"].item() == pytest.approx(
        (-log_px / (C * H * W * math.log(2))).mean().item(), rel=1e-9
    )


def test_deterministic_head_has_no_kl_and_refuses_kl_coeff():
    inputs = make(stochastic=False)
    loss, metrics = AASAELossCriterion(0.0)(*inputs)
    assert metrics["kl"].item() == 0.0 and "bits_per_dim" not in metrics
    with pytest.raises(ValueError, match="kl_coeff"):
        AASAELossCriterion(1.0)(*inputs)


def test_loss_decomposes_over_examples():
    inputs = make(k=2)
    full, _ = AASAELossCriterion(0.5)(*inputs)
    x_hat, mu, log_var, z, log_scale, target = inputs
    halves = [
        AASAELossCriterion(0.5)(x_hat[:, s], mu[s], log_var[s], z[:, s], log_scale, target[s])[0]
        for s in (slice(0, 2), slice(2, 4))
    ]
    assert full.item() == pytest.approx(sum(h.item() for h in halves) / 2, rel=1e-9)


def test_classy_wrapper_and_bad_input():
    loss = AASAELoss.from_config({"kl_coeff": 0.0})
    x_hat, mu, log_var, z, log_scale, target = make()
    value = loss([x_hat, mu, log_var, z, log_scale], target)
    assert value.item() == pytest.approx(AASAELossCriterion(0.0)(x_hat, mu, log_var, z, log_scale, target)[0].item())
    assert set(loss.last_metrics) == {"log_pxz", "kl", "elbo", "log_scale", "bits_per_dim"}
    with pytest.raises(ValueError, match="aasae_resnet_decoder"):
        loss(x_hat, target)
    with pytest.raises(ValueError, match="reconstruction shape"):
        loss([x_hat[..., :4, :4], mu, log_var, z, log_scale], target)
    with pytest.raises(ValueError, match="kl_coeff"):
        AASAELoss.from_config({"kl_coeff": -1.0})
