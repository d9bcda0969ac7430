"""Projection heads from the trunk feature ``h`` to the latent ``z``.

``aasae_stochastic_projection`` (AASAE, VAE): ``Linear(h,h) -> BatchNorm1d -> ReLU``, then two
bias-free ``Linear(h,d)`` giving ``mu`` and ``log_var``; ``z = mu + (exp(log_var/2) + 1e-6) * eps``
with ``num_samples`` draws of ``eps ~ N(0, I)`` (reparameterised).

``aasae_deterministic_projection`` (AE, AAAE): the same MLP with the ``mu`` layer only, so that
every parameter receives a gradient (DDP runs without ``find_unused_parameters``).

``in_dim`` (the only head parameter) defaults to the trunk's feature dimension and must agree with
it; it is needed only with a trunk whose layout the plugin does not know.  ``d`` and ``k`` are
``MODEL.AASAE.LATENT_DIM`` / ``NUM_SAMPLES`` (:class:`vissl_aasae.settings.MethodSettings`).  Both
return a :class:`Latent` for the decoder head that follows them in ``MODEL.HEAD.PARAMS``.
"""

from typing import NamedTuple

import torch
import torch.nn as nn
from vissl.models.heads import register_model_head

from vissl_aasae.models.trunk_spec import trunk_spec
from vissl_aasae.settings import MethodSettings

STD_EPS = 1e-6


class Latent(NamedTuple):
    mu: torch.Tensor  # (B, d)
    log_var: torch.Tensor  # (B, d), or empty for a deterministic head
    z: torch.Tensor  # (k, B, d)


def posterior_std(log_var: torch.Tensor) -> torch.Tensor:
    return torch.exp(log_var / 2) + STD_EPS


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
    def __init__(self, model_config, in_dim=None, **unknown):
        super().__init__()
        if unknown:
            raise ValueError(
                f"projection head parameters {sorted(unknown)} in MODEL.HEAD.PARAMS are not supported: "
                "the method's sizes are MODEL.AASAE.LATENT_DIM / NUM_SAMPLES"
            )
        in_dim = _in_dim(model_config, in_dim)
        if in_dim < 1:
            raise ValueError(f"projection head in_dim={in_dim} must be a positive integer")
        method = MethodSettings.from_model_config(model_config)
        self.num_samples = method.num_samples
        self.mlp = nn.Sequential(nn.Linear(in_dim, in_dim), nn.BatchNorm1d(in_dim), nn.ReLU(inplace=True))
        self.fc_mu = nn.Linear(in_dim, method.latent_dim, bias=False)


@register_model_head("aasae_stochastic_projection")
class StochasticProjectionHead(_ProjectionMLP):
    def __init__(self, model_config, in_dim=None, **unknown):
        super().__init__(model_config, in_dim, **unknown)
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
