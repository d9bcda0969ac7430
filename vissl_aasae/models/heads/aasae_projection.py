"""Projection heads from the trunk feature ``h`` to the latent ``z``.

``aasae_stochastic_projection`` (AASAE, VAE): ``Linear(h,h) -> BatchNorm1d -> ReLU``, then two
bias-free ``Linear(h,d)`` giving ``mu`` and ``log_var``; ``z = mu + (exp(log_var/2) + 1e-6) * eps``
with ``num_samples`` draws of ``eps ~ N(0, I)`` (reparameterised).

``aasae_deterministic_projection`` (AE, AAAE): the same MLP with the ``mu`` layer only, so that
every parameter receives a gradient (DDP runs without ``find_unused_parameters``).

``in_dim`` defaults to the trunk's feature dimension, ``latent_dim`` and ``num_samples`` to
``MODEL.AASAE.LATENT_DIM`` / ``NUM_SAMPLES``.  Both return a :class:`Latent` for the decoder head that follows them in ``MODEL.HEAD.PARAMS``.
"""
from typing import NamedTuple

import torch
import torch.nn as nn
from vissl.models.heads import register_model_head

from vissl_aasae.models.aasae_settings import aasae_setting
from vissl_aasae.models.trunk_spec import trunk_spec

STD_EPS = 1e-6


class Latent(NamedTuple):
    mu: torch.Tensor  # (B, d)
    log_var: torch.Tensor  # (B, d), or empty for a deterministic head
    z: torch.Tensor  # (k, B, d)


def posterior_std(log_var: torch.Tensor) -> torch.Tensor:
    return torch.exp(log_var / 2) + STD_EPS


def _check_dims(in_dim: int, latent_dim: int, num_samples: int) -> None:
    for key, value in (("in_dim", in_dim), ("latent_dim", latent_dim), ("num_samples", num_samples)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(
                f"projection head: {key}={value!r} (MODEL.AASAE.{key.upper()}) must be a positive integer"
            )


def _in_dim(model_config, in_dim) -> int:
    """The trunk's feature dimension; an explicit ``in_dim`` must agree with it."""
    spec = trunk_spec(model_config)
    if spec is None:
        if in_dim is None:
            raise ValueError(f"projection head: in_dim is required with MODEL.TRUNK.NAME={model_config.TRUNK.NAME!r}")
        return int(in_dim)
    if in_dim is not None and int(in_dim) != spec.feature_dim:
        raise ValueError(
            f"projection head in_dim={in_dim} does not match the trunk's feature dimension "
            f"{spec.feature_dim} (MODEL.TRUNK: depth {spec.depth}, width x{spec.width_multiplier})"
        )
    return spec.feature_dim


class _ProjectionMLP(nn.Module):
    def __init__(self, model_config, in_dim=None, latent_dim=None, num_samples=None):
        super().__init__()
        in_dim = _in_dim(model_config, in_dim)
        latent_dim = aasae_setting(model_config, "LATENT_DIM", latent_dim)
        num_samples = aasae_setting(model_config, "NUM_SAMPLES", num_samples)
        _check_dims(in_dim, latent_dim, num_samples)
        self.num_samples = int(num_samples)
        self.mlp = nn.Sequential(nn.Linear(in_dim, in_dim), nn.BatchNorm1d(in_dim), nn.ReLU(inplace=True))
        self.fc_mu = nn.Linear(in_dim, latent_dim, bias=False)


@register_model_head("aasae_stochastic_projection")
class StochasticProjectionHead(_ProjectionMLP):
    def __init__(self, model_config, in_dim=None, latent_dim=None, num_samples=None):
        super().__init__(model_config, in_dim, latent_dim, num_samples)
        self.fc_log_var = nn.Linear(self.fc_mu.in_features, self.fc_mu.out_features, bias=False)

    def forward(self, h: torch.Tensor) -> Latent:
        h = self.mlp(h)
        mu, log_var = self.fc_mu(h), self.fc_log_var(h)
        eps = torch.randn((self.num_samples,) + mu.shape, dtype=mu.dtype, device=mu.device)
        return Latent(mu, log_var, mu + posterior_std(log_var) * eps)


@register_model_head("aasae_deterministic_projection")
class DeterministicProjectionHead(_ProjectionMLP):
    def forward(self, h: torch.Tensor) -> Latent:
        mu = self.fc_mu(self.mlp(h))
        return Latent(mu, mu.new_zeros(0), mu.unsqueeze(0).expand(self.num_samples, -1, -1))
