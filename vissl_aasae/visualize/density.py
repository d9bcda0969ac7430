"""Density-estimation quality of a trained AASAE: importance-sampled ``log p(x)`` and bits/dim.

For each image ``x`` (the run's ``original``, i.e. evaluation, transform) the encoder gives
``q(z|x)``, ``k`` samples ``z_s ~ q(z|x)`` are decoded, and

    log p(x) ~= logsumexp_s [log p(x|z_s) + log p(z_s) - log q(z_s|x)] - log k
    bits/dim  = -log p(x) / (C * H * W * ln 2)

which is the ``bits_per_dim`` metric of :class:`~vissl_aasae.losses.aasae_loss.AASAELossCriterion`
computed with the projection head drawing ``k`` samples (its ``num_samples``): the math is the
loss criterion's, not re-derived here.  ``k = 1`` gives the single-sample ELBO estimate; the bound
tightens as ``k`` grows.  The likelihood is the model's continuous Gaussian density over the
*normalised* pixels (no dequantisation), so values are comparable between runs with the same
``Normalize``, not with discrete-data bits/dim of the literature.  Needs a stochastic projection
head (AASAE, VAE): a deterministic one (AE, AAAE) defines no density.
"""

import contextlib
import math
from dataclasses import dataclass, field
from typing import List, Sequence

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from vissl_aasae.losses.aasae_loss import AASAELossCriterion
from vissl_aasae.models.posterior import projection_head
from vissl_aasae.progress import Progress
from vissl_aasae.visualize.data import UnreadableImage


@dataclass
class DensityResult:
    images: int
    num_samples: int
    dims: int  # C * H * W
    bits_per_dim: float
    log_px: float  # mean over images, nats per image
    skipped: List[str] = field(default_factory=list)  # unreadable images left out ("path: why")

    def line(self) -> str:
        skipped = f", {len(self.skipped)} unreadable skipped" if self.skipped else ""
        return (
            f"log p(x) = {self.log_px:.6g} nats/image, bits/dim = {self.bits_per_dim:.6g} "
            f"(k={self.num_samples} importance samples, {self.images} images{skipped}, {self.dims} dims)"
        )


def _check_stochastic(model: nn.Module) -> nn.Module:
    head = projection_head(model)
    if not hasattr(head, "fc_log_var"):
        raise ValueError(
            "density estimation needs a stochastic posterior: the checkpoint's first head is "
            f"{type(head).__name__} (variants ae/aaae); use an aasae or vae checkpoint"
        )
    return head


@contextlib.contextmanager
def num_samples(model: nn.Module, k: int):
    """The projection head draws ``k`` samples of z inside the block."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"--num-samples {k!r} must be a positive integer")
    head = _check_stochastic(model)
    saved = head.num_samples
    head.num_samples = k
    try:
        yield
    finally:
        head.num_samples = saved


def batch_density(model: nn.Module, criterion: AASAELossCriterion, images: torch.Tensor, k: int):
    """(mean bits/dim over the batch, the model output [x_hat, mu, log_var, z, log_scale])."""
    with torch.no_grad(), num_samples(model, k):
        output = model(images)
    output = output[0] if len(output) == 1 else output
    _, metrics = criterion(*output, images)
    return metrics["bits_per_dim"], output


class _Transformed(Dataset):
    """Transformed images; an image that cannot be read comes out as the error text instead."""

    def __init__(self, images: Sequence, transform):
        self.images, self.transform = images, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, idx):
        try:
            return self.transform(self.images[idx])
        except UnreadableImage as err:
            return str(err)


class _First:
    """The first ``n`` images, read when asked for (an unreadable one is skipped by the loader)."""

    def __init__(self, images: Sequence, n: int):
        self.images, self.n = images, n

    def __len__(self):
        return self.n

    def __getitem__(self, idx):
        if not 0 <= idx < self.n:
            raise IndexError(idx)
        return self.images[idx]


def _readable(items):
    """(batch of the readable images or None, texts of the unreadable ones)."""
    good = [item for item in items if torch.is_tensor(item)]
    return (torch.stack(good) if good else None), [item for item in items if not torch.is_tensor(item)]


def default_batch_size(k: int) -> int:
    """Images per forward pass: about 512 decoded samples, at most 64 images."""
    return max(1, min(64, 512 // k))


def evaluate_density(
    model: nn.Module,
    images: Sequence,
    transform,
    k: int = 100,
    batch_size: int = None,
    limit: int = None,
    seed: int = 0,
    device: str = "cpu",
    workers: int = 0,
    progress: bool = True,
) -> DensityResult:
    """Mean importance-sampled log p(x) and bits/dim over the first ``limit`` images (all by default)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"--num-samples {k!r} must be a positive integer")
    _check_stochastic(model)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"--limit {limit} must be >= 1")
        images = _First(images, min(limit, len(images)))
    batch_size = batch_size or default_batch_size(k)
    if batch_size < 1:
        raise ValueError(f"--batch-size {batch_size} must be >= 1")
    torch.manual_seed(int(seed))
    model = model.eval().to(device)
    criterion = AASAELossCriterion()
    loader = DataLoader(
        _Transformed(images, transform), batch_size=batch_size, num_workers=workers, collate_fn=_readable
    )
    meter = Progress(len(images), unit="images", label="density") if progress else None
    total_bits, count, dims, skipped = 0.0, 0, None, []
    for batch, unreadable in loader:
        skipped += unreadable
        if batch is None:
            if meter:
                meter.update(len(unreadable))
            continue
        batch = batch.to(device)
        bits, _ = batch_density(model, criterion, batch, k)
        total_bits += float(bits) * len(batch)
        count += len(batch)
        dims = batch[0].numel()
        if meter:
            meter.update(len(batch) + len(unreadable))
    if meter:
        meter.close()
    if count == 0:
        raise ValueError("no images to evaluate" + (f": none could be read (e.g. {skipped[0]})" if skipped else ""))
    bits_per_dim = total_bits / count
    return DensityResult(count, k, dims, bits_per_dim, -bits_per_dim * dims * math.log(2), skipped)
