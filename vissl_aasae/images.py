"""Viewable images from normalised tensors: the ``Normalize`` of a transform list, undone, and the
reconstruction grid (row 1 original | row 2 augmented encoder input | row 3 reconstruction).

The grid is made to be read: each tile is enlarged by an integer factor (nearest neighbour, so pixels
stay pixels) to at least :data:`MIN_TILE` px, and a column on the left names each row
(:data:`ROW_LABELS`).

The mean/std come from the config's ``AASAEViews`` transform (``DATA.TRAIN.TRANSFORMS``): the
``original`` list for targets and reconstructions (the decoder outputs the likelihood mean in the
target's normalised space), the ``augmented`` list for the encoder input.
"""

import math
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from torchvision.utils import make_grid, save_image

GRID_PADDING = 2
VIEW_LISTS = ("original", "augmented")
ROW_LABELS = ("original", "view", "reconstruction")  # the grid's rows, top to bottom
MIN_TILE = 96  # px: tiles are enlarged (nearest neighbour, integer factor) to at least this
LABEL_FONT_SIZE = 16
LABEL_MARGIN = 6


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


def upscale_factor(height: int, width: int, min_side: int = MIN_TILE) -> int:
    """The integer factor that makes the shorter side of a ``height x width`` tile at least ``min_side``."""
    return max(1, math.ceil(min_side / max(1, min(height, width))))


def upscale(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Each pixel repeated ``factor`` times in both directions (nearest neighbour)."""
    return images.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


@lru_cache(maxsize=1)
def _label_font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=LABEL_FONT_SIZE)
    except (TypeError, ValueError, OSError, ImportError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def label_width(labels: Sequence[str] = ROW_LABELS) -> int:
    """Pixels of the label column: the widest label and a margin on each side."""
    font = _label_font()
    return max(int(font.getbbox(text)[2]) for text in labels) + 2 * LABEL_MARGIN


def labelled_grid_size(
    columns: int, height: int, width: int, rows: int = len(ROW_LABELS), padding: int = GRID_PADDING
) -> Tuple[int, int]:
    """(height, width) in pixels of :func:`reconstruction_grid` for ``columns`` images of ``height x width``."""
    factor = upscale_factor(height, width)
    grid_h, grid_w = grid_size(rows, columns, height * factor, width * factor, padding)
    return grid_h, label_width() + grid_w


def with_row_labels(grid: torch.Tensor, labels: Sequence[str], tile_height: int, padding: int = GRID_PADDING):
    """``grid`` (3, H, W) with a white column on its left naming each row (black text, centred on the row)."""
    from PIL import Image, ImageDraw

    font = _label_font()
    strip = Image.new("RGB", (label_width(labels), grid.shape[1]), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for row, text in enumerate(labels):
        top, bottom = font.getbbox(text)[1::2]
        centre = padding + row * (tile_height + padding) + tile_height / 2
        draw.text((LABEL_MARGIN, round(centre - (top + bottom) / 2)), text, fill=(0, 0, 0), font=font)
    column = torch.from_numpy(np.asarray(strip, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return torch.cat([column, grid], dim=2)


def reconstruction_grid(
    original: torch.Tensor, augmented: torch.Tensor, reconstruction: torch.Tensor, config, num_images: int = 8
) -> torch.Tensor:
    """(3, H', W') image in [0, 1]: rows original | view (the augmented encoder input) | reconstruction,
    ``num_images`` columns, each tile enlarged to at least :data:`MIN_TILE` px, the rows named on the left."""
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
    factor = upscale_factor(*original.shape[-2:])
    tiles = upscale(torch.cat(rows), factor)
    grid = make_grid(tiles, nrow=n, padding=GRID_PADDING, pad_value=1.0)
    return with_row_labels(grid, ROW_LABELS, tiles.shape[-2])


def save_grid(grid: torch.Tensor, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, str(path))
    return path
