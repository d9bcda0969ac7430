"""How the posterior of an augmented view relates to that of its original image.

For ``q(z|x+) = N(mu+, std+^2)`` (the encoder on the augmented view, as trained) and
``q(z|x) = N(mu, std^2)`` (the encoder on the original image):

- ``posterior_cos_sim_z``: cosine similarity of samples ``z+ ~ q(z|x+)`` and ``z ~ q(z|x)``
  (the authors' metric), averaged over the batch and the samples;
- ``posterior_cos_sim_mu``: cosine similarity of the means;
- ``posterior_kl``: ``KL(q(z|x+) || q(z|x))``, analytic, summed over latent dims, batch mean
  (stochastic heads only).

The original image's posterior needs one extra encoder pass (trunk + projection head, no decoder):
:func:`posterior_of` runs it.  Two uses:

- the reference's behaviour (``MODEL.AASAE.ORIGINAL_IMAGE_PASS``, run by ``aasae_task`` before each
  training forward): no gradients, in train mode, so the BatchNorm running statistics see the
  original images as well as the views, as in the authors' code;
- inspection only (the metrics hook when that switch is off, tools): :func:`encode`, run
  without gradients, without moving the BatchNorm running statistics and without consuming random
  numbers (:func:`side_effect_free`), so that training is unchanged by it.
"""

import contextlib
from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F

from vissl_aasae.models.heads.aasae_projection import Latent, posterior_std


@contextlib.contextmanager
def side_effect_free(module: nn.Module, device: torch.device):
    """No gradients, BatchNorm statistics kept (:func:`batch_norm_stats_kept`) and the random number
    generators of the CPU and of ``device`` restored on exit (the pass samples z): a run with the
    extra pass follows the same random sequence, hence the same trajectory, as one without."""
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.no_grad(), torch.random.fork_rng(devices=cuda), batch_norm_stats_kept(module):
        yield


@contextlib.contextmanager
def batch_norm_stats_kept(module: nn.Module):
    """Inside the block every BatchNorm of ``module`` updates throw-away copies of its running
    statistics (mean, var, batch count); the original buffers are put back untouched on exit.

    The originals are swapped out rather than saved and copied back, so they are never modified in
    place: a training step whose backward pass is still to come (autograd keeps references to
    them) is not disturbed.
    """
    saved = []
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._NormBase):
            for name, buf in list(m._buffers.items()):
                if buf is not None:
                    saved.append((m, name, buf))
                    m._buffers[name] = buf.clone()
    try:
        yield
    finally:
        for m, name, buf in saved:
            m._buffers[name] = buf


def projection_head(base_model: nn.Module) -> nn.Module:
    heads = getattr(base_model, "heads", None)
    if heads is None or len(heads) == 0:
        raise ValueError("the model has no heads: MODEL.HEAD.PARAMS must start with an AASAE projection head")
    return heads[0]


def posterior_of(base_model: nn.Module, images: torch.Tensor) -> Latent:
    """The posterior of ``images``: trunk + projection head of a VISSL model, in its current
    train/eval mode (in train mode the BatchNorm running statistics move), without gradients."""
    with torch.no_grad():
        feats = base_model.trunk(images, [])  # [] = the last feature (flatten)
        h = feats[0] if isinstance(feats, (list, tuple)) else feats
        latent = projection_head(base_model)(h)
    if not isinstance(latent, Latent):
        raise TypeError(
            "the first head of MODEL.HEAD.PARAMS must be aasae_stochastic_projection or "
            f"aasae_deterministic_projection (got a {type(latent).__name__} output)"
        )
    return latent


def encode(base_model: nn.Module, images: torch.Tensor) -> Latent:
    """:func:`posterior_of` run :func:`side_effect_free`: training is unchanged by it."""
    with side_effect_free(base_model, images.device):
        return posterior_of(base_model, images)


def gaussian_kl(mu_p: torch.Tensor, std_p: torch.Tensor, mu_q: torch.Tensor, std_q: torch.Tensor) -> torch.Tensor:
    """KL(N(mu_p, std_p^2) || N(mu_q, std_q^2)) summed over the last dim."""
    return (torch.log(std_q / std_p) + (std_p**2 + (mu_p - mu_q) ** 2) / (2 * std_q**2) - 0.5).sum(-1)


def posterior_agreement(augmented: Latent, original: Latent) -> Dict[str, torch.Tensor]:
    """Batch-mean agreement metrics (see the module doc); ``z`` tensors are (k, B, d)."""
    mu_a, mu_o = augmented.mu.detach().float(), original.mu.detach().float()
    z_a, z_o = augmented.z.detach().float(), original.z.detach().float()
    k = min(z_a.shape[0], z_o.shape[0])
    metrics = {
        "posterior_cos_sim_z": F.cosine_similarity(z_a[:k], z_o[:k], dim=-1).mean(),
        "posterior_cos_sim_mu": F.cosine_similarity(mu_a, mu_o, dim=-1).mean(),
    }
    if augmented.log_var.numel() and original.log_var.numel():
        std_a = posterior_std(augmented.log_var.detach().float())
        std_o = posterior_std(original.log_var.detach().float())
        metrics["posterior_kl"] = gaussian_kl(mu_a, std_a, mu_o, std_o).mean()
    return metrics
