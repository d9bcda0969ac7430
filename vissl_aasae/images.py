"""Viewable images from normalised tensors: the ``Normalize`` of a transform list, undone, and the
reconstruction grid (row 1 original | row 2 augmented encoder input | row 3 reconstruction).

The mean/std come from the config's ``AASAEViews`` transform (``DATA.TRAIN.TRANSFORMS``): the
``original`` list for targets and reconstructions (the decoder outputs the likelihood mean in the
target's normalised space), the ``augmented`` list for the encoder input.
"""

from pathlib import Path
from typing import Optional, Sequence, Tuple

import torch
from torchvision.utils import make_grid, save_image

GRID_PADDING = 2
VIEW_LISTS = ("original", "augmented")


def views_transform(config, split: str = "TRAIN") -> Optional[dict]:
    """The ``AASAEViews`` entry of ``DATA.<split>.TRANSFORMS`` (None if there is none)."""
    for entry in config.DATA[split].TRANSFORMS or []:
        if entry.get("name") == "AASAEViews":
            return entry
    return None


def normalization(transforms: Sequence[dict], key: str = "transforms") -> Tuple[Optional[list], Optional[list]]:
    """(mean, std) of the last ``Normalize`` in a transform config list; (None, None) without one."""
    mean = std = None
    for i, entry in enumerate(transforms or []):
        if entry.get("name") == "Normalize":
            mean, std = entry.get("mean"), entry.get("std")
            if mean is None or std is None or len(mean) != len(std) or any(float(s) <= 0 for s in std):
                raise ValueError(
                    f"{key}[{i}] (Normalize) needs equal-length mean and positive std, got mean={mean} std={std}"
                )
            mean, std = [float(m) for m in mean], [float(s) for s in std]
    return mean, std


def view_normalization(config, view: str) -> Tuple[Optional[list], Optional[list]]:
    """(mean, std) of the ``original`` or ``augmented`` list of the training ``AASAEViews``."""
    if view not in VIEW_LISTS:
        raise ValueError(f"view={view!r}; allowed: {list(VIEW_LISTS)}")
    entry = views_transform(config)
    if entry is None:
        return None, None
    return normalization(entry.get(view), f"DATA.TRAIN.TRANSFORMS.AASAEViews.{view}")


def denormalize(images: torch.Tensor, mean: Optional[list], std: Optional[list]) -> torch.Tensor:
    """``images * std + mean`` per channel, clamped to [0, 1]; (B,C,H,W) or (C,H,W), float32 on CPU."""
    images = images.detach().float().cpu()
    if mean is not None:
        shape = (-1, 1, 1)
        if images.shape[-3] != len(mean):
            raise ValueError(f"Normalize has {len(mean)} channels, images have {images.shape[-3]}")
        images = images * torch.tensor(std).view(shape) + torch.tensor(mean).view(shape)
    return images.clamp(0.0, 1.0)


def grid_size(rows: int, columns: int, height: int, width: int, padding: int = GRID_PADDING) -> Tuple[int, int]:
    """(height, width) in pixels of a ``make_grid`` of ``rows x columns`` images."""
    return rows * (height + padding) + padding, columns * (width + padding) + padding


def reconstruction_grid(
    original: torch.Tensor, augmented: torch.Tensor, reconstruction: torch.Tensor, config, num_images: int = 8
) -> torch.Tensor:
    """(3, H', W') image in [0, 1]: rows original | augmented input | reconstruction, ``num_images`` columns."""
    n = min(int(num_images), len(original), len(augmented), len(reconstruction))
    if n < 1:
        raise ValueError("reconstruction_grid needs at least one image")
    target_norm = view_normalization(config, "original")
    input_norm = view_normalization(config, "augmented")
    if input_norm[0] is None:
        input_norm = target_norm
    rows = [
        denormalize(original[:n], *target_norm),
        denormalize(augmented[:n], *input_norm),
        denormalize(reconstruction[:n], *target_norm),
    ]
    return make_grid(torch.cat(rows), nrow=n, padding=GRID_PADDING, pad_value=1.0)


def save_grid(grid: torch.Tensor, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, str(path))
    return path
