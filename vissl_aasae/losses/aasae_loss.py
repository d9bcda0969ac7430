"""``aasae_loss``: the AASAE objective (paper Eq. 3, with Eq. 1's optional KL).

    loss(x) = -sum_pixels log N(x | decoder(z), scale^2) + kl_coeff * KL(q(z|x+) || N(0, I))

with ``z ~ q(z|x+)`` (``k`` samples averaged), ``scale = exp(log_scale / 2) + 1e-6`` (``log_scale``
is a log-variance, as in the authors' code), the sum over C x H x W and the mean over the batch.
The KL is the analytic Gaussian KL of ``q = N(mu, std^2)``, ``std = exp(log_var / 2) + 1e-6`` (the
distribution actually sampled), summed over latent dimensions.  ``kl_coeff`` = 0 for AASAE/AE/AAAE.

:class:`AASAELossCriterion` holds the math and is called directly by tests; :class:`AASAELoss`
is the thin ``ClassyLoss`` VISSL builds from ``LOSS.aasae_loss``.
"""

import logging
import math
from typing import Dict, List

import torch
import torch.nn as nn
from classy_vision.losses import ClassyLoss, register_loss

from vissl_aasae.models.heads.aasae_projection import posterior_std
from vissl_aasae.models.heads.aasae_resnet_decoder import as_output

SCALE_EPS = 1e-6
LOG_2PI = math.log(2 * math.pi)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(x | mean, std^2)."""
    return -0.5 * ((x - mean) / std) ** 2 - torch.log(std) - 0.5 * LOG_2PI


def at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """Half/bfloat16 tensors (autocast) up to float32; float64 stays float64."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * z**2 - 0.5 * LOG_2PI


class AASAELossCriterion(nn.Module):
    def __init__(self, kl_coeff: float = 0.0):
        super().__init__()
        if not (math.isfinite(float(kl_coeff)) and float(kl_coeff) >= 0):
            raise ValueError(f"LOSS.aasae_loss.kl_coeff={kl_coeff!r} must be a finite number >= 0")
        self.kl_coeff = float(kl_coeff)

    def forward(self, x_hat, mu, log_var, z, log_scale, target):
        """Returns (loss, metrics). Shapes: x_hat (k,B,C,H,W), mu/log_var (B,d), z (k,B,d), target (B,C,H,W)."""
        if x_hat.shape[1:] != target.shape:
            raise ValueError(
                f"aasae_loss: reconstruction shape {tuple(x_hat.shape[1:])} differs from the target "
                f"image shape {tuple(target.shape)}; check the decoder head's input_height and the data transforms"
            )
        # the likelihood in float32 even under mixed precision
        x_hat, target, log_scale = map(at_least_float32, (x_hat, target, log_scale))
        scale = torch.exp(log_scale / 2) + SCALE_EPS
        num_dims = target[0].numel()
        log_pxz = gaussian_log_prob(target.unsqueeze(0), x_hat, scale).flatten(2).sum(-1)  # (k, B)
        recon = log_pxz.mean(0)  # (B,)
        stochastic = log_var.numel() > 0
        if stochastic:
            mu, log_var, z = map(at_least_float32, (mu, log_var, z))
            std = posterior_std(log_var)
            kl = (-torch.log(std) + 0.5 * (std**2 + mu**2) - 0.5).sum(-1)  # (B,)
        elif self.kl_coeff > 0:
            raise ValueError(
                "LOSS.aasae_loss.kl_coeff > 0 needs a stochastic posterior: use the head "
                "aasae_stochastic_projection (variants vae/aasae), not aasae_deterministic_projection"
            )
        else:
            kl = torch.zeros_like(recon)
        loss = (-recon + self.kl_coeff * kl).mean()
        metrics = {
            "log_pxz": recon.mean(),
            "kl": kl.mean(),
            "elbo": (recon - kl).mean(),
            "log_scale": log_scale.reshape(-1)[0],
        }
        if stochastic:
            # importance-sampled log p(x) over the k samples: logsumexp(log p(x|z) + log p(z) - log q(z|x)) - log k
            log_pz = standard_normal_log_prob(z).sum(-1)
            log_qz = gaussian_log_prob(z, mu.unsqueeze(0), std.unsqueeze(0)).sum(-1)
            k = z.shape[0]
            log_px = torch.logsumexp(log_pxz + log_pz - log_qz, dim=0) - math.log(k)
            metrics["bits_per_dim"] = (-log_px / (num_dims * math.log(2))).mean()
        return loss, {key: value.detach() for key, value in metrics.items()}


@register_loss("aasae_loss")
class AASAELoss(ClassyLoss):
    """VISSL loss: model output :class:`~vissl_aasae.models.heads.aasae_resnet_decoder.AASAEOutput`,
    target = original images."""

    def __init__(self, loss_config):
        super().__init__()
        self.loss_config = loss_config
        self.criterion = AASAELossCriterion(kl_coeff=loss_config.get("kl_coeff", 0.0))
        self.last_metrics: Dict[str, torch.Tensor] = {}

    @classmethod
    def from_config(cls, loss_config):
        from classy_vision.generic.distributed_util import get_rank, get_world_size

        loss = cls(loss_config)
        logging.info(f"vissl_aasae: {loss!r} built in rank {get_rank()} of {get_world_size()}")
        return loss

    def forward(self, output: List[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        try:
            out = as_output(output)
        except ValueError as err:
            raise ValueError(f"aasae_loss: {err}") from None
        loss, self.last_metrics = self.criterion(out.x_hat, out.mu, out.log_var, out.z, out.log_scale, target)
        return loss

    def __repr__(self):
        return f"AASAELoss(kl_coeff={self.criterion.kl_coeff})"
