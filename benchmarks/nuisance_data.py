#!/usr/bin/env python
"""Fashion-MNIST with nuisance factors (Study C, issue 29): 32x32 RGB images a pixel loss must spend itself on.

    python benchmarks/nuisance_data.py --out runs/nuisance --seed 0          # all 60k train / 10k test
    python benchmarks/nuisance_data.py --out runs/nuisance --grid docs/figures/nuisance_fashion_mnist_grid.png

Each image: one Fashion-MNIST garment (its gray level is the garment's opacity) resized to a square of
``SIDE`` (16-32 px: 50-100 % of the 32 px frame) at a random position, filled with a random RGB colour,
over a background of smooth coloured noise (a ``NOISE_GRID`` x ``NOISE_GRID`` grid of random RGB values,
bilinearly upsampled) under a translucent layer: a random square crop (``CROP_SIDE`` of the 28 px) of a
*different* image of the same split, upsampled to the frame, blurred (Gaussian, ``BLUR_SIGMA`` px), its
gray level times ``CROP_OPACITY`` the opacity of a random tint.  Label: the garment's class.  Train
images come from the training IDX files only, test images from the test IDX files only, by the same
generator; each split draws from its own stream (``numpy.random.default_rng([seed, split])``), so one
split's images depend neither on the other split's files nor on its count.

Every resampling is a linear map of the 28 px source (``resample_matrix``: triangle filter, widened when
shrinking), so a whole chunk of images is composed with batched matrix products.  Written: one ``.npz``
that the plugin's ``aasae_array`` data source reads as ``npz`` (``train_images``/``train_labels``/
``test_images``/``test_labels``, uint8 N x 32 x 32 x 3 and int64), plus each image's source indices
(``<split>_garment_index``, ``<split>_background_index``: rows of that split's IDX files) and the
generator's parameters (``parameters``, JSON).  The arrays are not committed: the seed makes them.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

FRAME = 32  # output side (px)
SOURCE = 28  # Fashion-MNIST side (px)
SIDE = (16, 32)  # garment side, px, inclusive: 50-100 % of the frame
NOISE_GRID = 4  # control points per side of the background's smooth noise
CROP_SIDE = (10, 28)  # side (px of the 28) of the background image's crop, inclusive
BLUR_SIGMA = 1.5  # Gaussian blur of the upsampled crop, px of the frame
CROP_OPACITY = 0.8  # the crop's gray level (0-1) times this is the opacity of its tint
SPLITS = {"train": 0, "test": 1}  # the second word of each split's seed
FASHION_MNIST_IMAGES = {"train": 60000, "test": 10000}  # the source images of each split
CHUNK = 2048  # images composed at once (memory only: the result does not depend on it)


def parameters() -> dict:
    """The generator's constants, as written into the archive."""
    return {
        "frame": FRAME,
        "garment_side_px": list(SIDE),
        "noise_grid": NOISE_GRID,
        "crop_side_px": list(CROP_SIDE),
        "blur_sigma_px": BLUR_SIGMA,
        "crop_opacity": CROP_OPACITY,
    }


def resample_matrix(n_in: int, n_out: int, src_start, src_len, dst_start, dst_len) -> np.ndarray:
    """(N, n_out, n_in) linear maps: output pixels ``[dst_start, dst_start + dst_len)`` sample the input
    window ``[src_start, src_start + src_len)`` (pixel centres aligned, triangle filter as wide as the
    shrink factor, at least one pixel; each row sums to 1); the other output pixels are 0."""
    src_start, src_len, dst_start, dst_len = (
        np.asarray(v, dtype=np.float64)[:, None, None] for v in (src_start, src_len, dst_start, dst_len)
    )
    out = np.arange(n_out, dtype=np.float64)[None, :, None]
    centre = src_start + (out - dst_start + 0.5) * src_len / dst_len - 0.5
    width = np.maximum(src_len / dst_len, 1.0)
    weights = np.maximum(0.0, 1.0 - np.abs(np.arange(n_in, dtype=np.float64)[None, None, :] - centre) / width)
    weights /= np.maximum(weights.sum(axis=2, keepdims=True), 1e-12)
    inside = (out >= dst_start) & (out < dst_start + dst_len)
    return weights * inside


def blur_matrix(n: int, sigma: float) -> np.ndarray:
    """(n, n) Gaussian blur along one axis, rows renormalised at the borders."""
    x = np.arange(n, dtype=np.float64)
    weights = np.exp(-0.5 * ((x[:, None] - x[None, :]) / sigma) ** 2)
    return weights / weights.sum(axis=1, keepdims=True)


def draw(rng: np.random.Generator, n_split: int, count: int) -> dict:
    """Every random choice of ``count`` images of a split of ``n_split`` source images, in a fixed order."""
    garment = rng.permutation(n_split)[:count]
    background = (garment + rng.integers(1, n_split, size=count)) % n_split  # never the garment's own image
    side = rng.integers(SIDE[0], SIDE[1] + 1, size=count)
    return {
        "garment": garment,
        "background": background,
        "side": side,
        "row": rng.integers(0, FRAME - side + 1),
        "col": rng.integers(0, FRAME - side + 1),
        "colour": rng.random((count, 3)),
        "noise": rng.random((count, 3, NOISE_GRID, NOISE_GRID)),
        "crop_side": (crop := rng.integers(CROP_SIDE[0], CROP_SIDE[1] + 1, size=count)),
        "crop_row": rng.integers(0, SOURCE - crop + 1),
        "crop_col": rng.integers(0, SOURCE - crop + 1),
        "tint": rng.random((count, 3)),
    }


FACTORS = ("garment_colour", "garment_position", "garment_size", "background_colour", "background_tint")


def factors(seed: int, split: str, count: int, n_split: int) -> dict:
    """Each image's nuisance factors as the generator drew them for ``count`` images of a split of
    ``n_split`` source images (the split's own random stream, so no image is read): ``FACTORS`` -> (count,
    k) float arrays (the garment's RGB, its centre (row, col) and side in px, the mean RGB of the
    background's noise grid, the RGB of the crop's tint), and ``garment_index``, to check the draws
    against an archive's ``<split>_garment_index``."""
    d = draw(np.random.default_rng([seed, SPLITS[split]]), n_split, count)
    half = d["side"] / 2.0
    return {
        "garment_index": d["garment"],
        "garment_colour": d["colour"],
        "garment_position": np.stack([d["row"] + half, d["col"] + half], axis=1),
        "garment_size": d["side"][:, None].astype(np.float64),
        "background_colour": d["noise"].mean(axis=(2, 3)),
        "background_tint": d["tint"],
    }


def archive_factors(archive, split: str):
    """``factors`` of an archive's split, recovered from its seed and checked against its garment rows
    (None where they do not match: an archive this generator did not make). The split's source count is
    not stored: a whole split (the default) has max(garment row) + 1; else Fashion-MNIST's 60k / 10k."""
    seed = json.loads(str(archive["parameters"]))["seed"]
    garments = archive[f"{split}_garment_index"]
    for n_split in dict.fromkeys((int(garments.max()) + 1, FASHION_MNIST_IMAGES[split])):
        found = factors(seed, split, len(garments), n_split)
        if np.array_equal(found.pop("garment_index"), garments):
            return found
    return None


def compose(sources: np.ndarray, d: dict) -> np.ndarray:
    """The images (uint8 N x FRAME x FRAME x 3) of the draws ``d`` over the split's 28x28 ``sources``."""
    n = len(d["garment"])
    images = np.empty((n, FRAME, FRAME, 3), dtype=np.uint8)
    zeros, full = np.zeros(n), np.full(n, FRAME)
    blur = blur_matrix(FRAME, BLUR_SIGMA)
    up = resample_matrix(NOISE_GRID, FRAME, [0], [NOISE_GRID], [0], [FRAME])[0]
    for lo in range(0, n, CHUNK):
        s = slice(lo, min(lo + CHUNK, n))
        garment = sources[d["garment"][s]].astype(np.float64) / 255.0
        rows = resample_matrix(SOURCE, FRAME, zeros[s], np.full(len(garment), SOURCE), d["row"][s], d["side"][s])
        cols = resample_matrix(SOURCE, FRAME, zeros[s], np.full(len(garment), SOURCE), d["col"][s], d["side"][s])
        alpha = (rows @ garment @ cols.transpose(0, 2, 1))[..., None]  # N x 32 x 32 x 1
        crop = sources[d["background"][s]].astype(np.float64) / 255.0
        crop_rows = blur @ resample_matrix(SOURCE, FRAME, d["crop_row"][s], d["crop_side"][s], zeros[s], full[s])
        crop_cols = blur @ resample_matrix(SOURCE, FRAME, d["crop_col"][s], d["crop_side"][s], zeros[s], full[s])
        layer = CROP_OPACITY * (crop_rows @ crop @ crop_cols.transpose(0, 2, 1))[..., None]
        noise = (up @ d["noise"][s] @ up.T).transpose(0, 2, 3, 1)  # N x 32 x 32 x 3
        background = noise * (1.0 - layer) + d["tint"][s][:, None, None, :] * layer
        image = background * (1.0 - alpha) + d["colour"][s][:, None, None, :] * alpha
        images[s] = np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    return images


def generate_split(data: Path, split: str, seed: int, count=None) -> dict:
    """``{"images", "labels", "garment_index", "background_index"}`` of one split (all of its source
    images by default)."""
    from vissl_aasae.data.aasae_array import read_fashion_mnist

    sources, labels = read_fashion_mnist(data, train=split == "train")
    count = len(sources) if count is None else count
    if not 1 <= count <= len(sources):
        raise ValueError(f"--{split} {count}: must be from 1 to {len(sources)} (the {split} split's images)")
    d = draw(np.random.default_rng([seed, SPLITS[split]]), len(sources), count)
    return {
        "images": compose(sources, d),
        "labels": labels[d["garment"]],
        "garment_index": d["garment"],
        "background_index": d["background"],
    }


def generate(data: Path, seed: int, train=None, test=None) -> dict:
    """The archive's arrays: both splits and the parameters."""
    arrays = {}
    for split, count in (("train", train), ("test", test)):
        for key, value in generate_split(data, split, seed, count).items():
            arrays[f"{split}_{key}"] = value
    arrays["parameters"] = np.array(json.dumps({**parameters(), "seed": seed}, sort_keys=True))
    return arrays


def archive_name(seed: int) -> str:
    return f"nuisance_fashion_mnist_s{seed}.npz"


def grid(images: np.ndarray, labels: np.ndarray, path: Path) -> None:
    """The first 64 images, 8 x 8, each titled with its class (names from the Debian package's README)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = class_names()
    fig, axes = plt.subplots(8, 8, figsize=(8, 8.8))
    for ax, image, label in zip(axes.flat, images[:64], labels[:64]):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(names[label] if names else str(label), fontsize=7, pad=2)
        ax.axis("off")
    fig.suptitle(
        "Fashion-MNIST with nuisance factors (train images 0-63, seed 0); title: the garment's class", fontsize=9
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def class_names():
    """The ten class names of the Debian package's README table (None where it is not installed)."""
    import gzip

    readme = Path("/usr/share/doc/dataset-fashion-mnist/README.md.gz")
    if not readme.exists():
        return None
    rows = [line.split("|") for line in gzip.open(readme, "rt", encoding="utf-8")]
    names = {int(r[1]): r[2].strip() for r in rows if len(r) == 4 and r[1].strip().isdigit()}
    return [names[i] for i in range(10)] if sorted(names) == list(range(10)) else None


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data",
        default="/usr/share/datasets/fashion-mnist",
        help="folder with the Fashion-MNIST IDX .gz files (default %(default)s)",
    )
    p.add_argument("--out", required=True, help=f"folder for the archive ({archive_name(0)} for seed 0)")
    p.add_argument("--seed", type=int, default=0, help="the seed: the same seed gives the same arrays (default 0)")
    p.add_argument("--train", type=int, default=None, help="train images (default: all of the training split)")
    p.add_argument("--test", type=int, default=None, help="test images (default: all of the test split)")
    p.add_argument("--grid", default=None, help="also write the first 64 train images, 8 x 8, to this PNG")
    args = p.parse_args(argv)
    args.data = Path(args.data)
    for prefix in ("train", "t10k"):
        for kind in ("images-idx3", "labels-idx1"):
            if not (args.data / f"{prefix}-{kind}-ubyte.gz").exists():
                p.error(f"--data {args.data}: no {prefix}-{kind}-ubyte.gz there (apt install dataset-fashion-mnist)")
    for name in ("train", "test"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name} {getattr(args, name)}: must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.time()
    try:
        arrays = generate(args.data, args.seed, args.train, args.test)
    except ValueError as err:
        raise SystemExit(f"nuisance_data.py: {err}") from None
    seconds = time.time() - started
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / archive_name(args.seed)
    np.savez(path, **arrays)
    train = arrays["train_images"].reshape(-1, 3) / 255.0
    print(
        f"{path}: {len(arrays['train_images'])} train / {len(arrays['test_images'])} test images "
        f"(seed {args.seed}) in {seconds:.1f} s; train mean {np.round(train.mean(0), 4).tolist()} "
        f"std {np.round(train.std(0), 4).tolist()}"
    )
    if args.grid:
        grid(arrays["train_images"], arrays["train_labels"], Path(args.grid))
        print(f"{args.grid}: the first 64 train images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
