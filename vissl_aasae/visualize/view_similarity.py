"""The paper's Fig. 5: cosine similarity of the representations of ``V`` augmented views of ``E``
examples.

Each example is drawn ``V`` times through the run's augmentation pipeline (the ``augmented`` list
of ``AASAEViews``); the representation is the trunk's pooled feature ``h`` (what every downstream
evaluation uses; ``mu`` of the projection head on request), computed in eval mode.  Rows/columns
are ordered example-major (example 0 views 0..V-1, example 1 ...), so each example is a ``V x V``
block on the diagonal.

- same-example mean: the off-diagonal entries of the diagonal blocks (two different views of one image);
- different-example mean: the entries outside the diagonal blocks.
"""

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from vissl_aasae.models.posterior import projection_head
from vissl_aasae.progress import Progress
from vissl_aasae.visualize.data import UnreadableImage

REPRESENTATIONS = ("h", "mu")


@dataclass
class ViewSimilarity:
    matrix: np.ndarray  # (E*V, E*V) cosine similarities
    examples: int
    views: int
    indices: list  # the data set indices of the examples
    same_mean: float
    different_mean: float
    skipped: list = field(default_factory=list)  # unreadable images passed over ("path: why")


def block_means(matrix: np.ndarray, views: int):
    """(same-example mean, different-example mean) of an example-major similarity matrix."""
    n = matrix.shape[0]
    if matrix.shape != (n, n) or views < 2 or n % views or n // views < 2:
        raise ValueError(f"need a square matrix of at least 2 examples x {views} (>= 2) views, got {matrix.shape}")
    example = np.arange(n) // views
    same = example[:, None] == example[None, :]
    off_diagonal = ~np.eye(n, dtype=bool)
    return float(matrix[same & off_diagonal].mean()), float(matrix[~same].mean())


def nearest_view_top1(matrix: np.ndarray, views: int) -> float:
    """Percent of views whose most similar *other* view is a view of the same example (scale-free,
    unlike the means; chance is (V - 1) / (E*V - 1))."""
    block_means(matrix, views)  # the same shape checks
    example = np.arange(matrix.shape[0]) // views
    nearest = (matrix - 2 * np.eye(matrix.shape[0])).argmax(1)  # cosines are >= -1: the diagonal never wins
    return float(np.mean(example[nearest] == example) * 100)


def first_examples(result: "ViewSimilarity", examples: int) -> "ViewSimilarity":
    """The first ``examples`` examples of ``result``: the figure of a smaller draw with the same seed."""
    n = examples * result.views
    matrix = result.matrix[:n, :n]
    return ViewSimilarity(matrix, examples, result.views, result.indices[:examples], *block_means(matrix, result.views))


def representations(model: nn.Module, batch: torch.Tensor, representation: str = "h") -> torch.Tensor:
    if representation not in REPRESENTATIONS:
        raise ValueError(f"representation={representation!r}; allowed: {list(REPRESENTATIONS)}")
    feats = model.trunk(batch, [])  # [] = the last feature: h (flatten of res5avg)
    h = feats[0] if isinstance(feats, (list, tuple)) else feats
    h = h.flatten(1)
    return h if representation == "h" else projection_head(model)(h).mu


def view_similarity(
    model: nn.Module,
    images: Sequence,
    augment: Callable,
    examples: int = 10,
    views: int = 5,
    seed: int = 0,
    representation: str = "h",
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = True,
) -> ViewSimilarity:
    """Draws ``examples`` images (seeded, without replacement) and ``views`` augmentations of each."""
    if examples < 2 or views < 2:
        raise ValueError(f"--examples {examples} and --views {views} must both be >= 2")
    if examples > len(images):
        raise ValueError(f"--examples {examples} is more than the {len(images)} images of the data")
    generator = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(len(images), generator=generator).tolist()
    # the augmentations draw from torch's and python's global generators: seed them for a repeatable figure
    torch.manual_seed(int(seed))
    random.seed(int(seed))
    np.random.seed(int(seed))
    indices, tensors, skipped = [], [], []
    for i in order:  # the first `examples` readable images of a seeded permutation
        if len(indices) == examples:
            break
        try:
            image = images[i]
        except UnreadableImage as err:
            skipped.append(str(err))
            continue
        indices.append(i)
        tensors += [augment(image) for _ in range(views)]
    if len(indices) < examples:
        raise ValueError(
            f"--examples {examples}: only {len(indices)} of the {len(images)} images could be read (e.g. {skipped[0]})"
        )
    model = model.eval().to(device)
    meter = Progress(len(tensors), unit="views", label="view similarity") if progress else None
    feats = []
    with torch.no_grad():
        for start in range(0, len(tensors), batch_size):
            batch = torch.stack(tensors[start : start + batch_size]).to(device)
            feats.append(representations(model, batch, representation).float().cpu())
            if meter:
                meter.update(len(batch))
    feats = F.normalize(torch.cat(feats), dim=1)
    matrix = (feats @ feats.T).numpy()
    same, different = block_means(matrix, views)
    return ViewSimilarity(matrix, examples, views, indices, same, different, skipped)


def plot(result: ViewSimilarity, path, title: str = "") -> Path:
    """The matrix as a PNG with a colour bar and example-block boundaries."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n, v = result.matrix.shape[0], result.views
    fig, ax = plt.subplots(figsize=(6.4, 5.4), dpi=100)
    low = min(0.9, np.floor(float(result.matrix.min()) * 10) / 10)  # contrast: from the smallest value
    image = ax.imshow(result.matrix, cmap="viridis", vmin=low, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="cosine similarity")
    for edge in range(v, n, v):
        ax.axhline(edge - 0.5, color="white", linewidth=0.6)
        ax.axvline(edge - 0.5, color="white", linewidth=0.6)
    centres = [e * v + (v - 1) / 2 for e in range(result.examples)]
    ax.set_xticks(centres)
    ax.set_yticks(centres)
    ax.set_xticklabels([str(i) for i in result.indices], rotation=90, fontsize=7)
    ax.set_yticklabels([str(i) for i in result.indices], fontsize=7)
    ax.set_xlabel(f"example (data index), {v} views each")
    ax.set_title(
        (title + "\n" if title else "")
        + f"same example {result.same_mean:.3f} | different examples {result.different_mean:.3f}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
