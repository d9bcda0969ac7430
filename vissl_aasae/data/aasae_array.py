"""``aasae_array``: VISSL data source for the array-file data sets of the paper and the embedded default.

``DATA.<SPLIT>.DATA_SOURCES: [aasae_array]`` with ``DATASET_NAMES`` one of

- ``cifar10``: the CIFAR-10 python version (folder with ``data_batch_1..5`` and ``test_batch``);
- ``stl10`` / ``stl10_unlabeled``: STL-10 binary version (folder with ``train_X.bin``,
  ``train_y.bin``, ``test_X.bin``, ``test_y.bin``, ``unlabeled_X.bin``); ``stl10_unlabeled`` reads
  the 100k unlabeled images whatever the split;
- ``fashion_mnist``: IDX gzip files (``train-images-idx3-ubyte.gz``... as in the Debian package
  dataset-fashion-mnist, ``/usr/share/datasets/fashion-mnist``);
- ``npz``: an ``.npz`` file with ``train_images``/``train_labels``/``test_images``/``test_labels``
  (uint8, N x H x W or N x H x W x 3); ``DATA_PATHS: [embedded]`` is the Fashion-MNIST subset
  shipped with the plugin.

``DATA.<SPLIT>.HOLD_OUT: N`` (default 0: use every image) leaves out the reference's validation
images: its data modules split the training set with ``torch.utils.data.random_split`` (lengths
``[n - N, N]``, generator seeded 42) and train on the first part (CIFAR-10: 45k of 50k, STL-10
unlabeled: 95k of 100k, both N = 5000); :func:`hold_out_indices` draws the same permutation.

Images come out as RGB PIL images (gray ones are replicated to 3 channels).  Labels, for the
evaluations, are read with ``LABEL_SOURCES: [torchvision_dataset]`` (VISSL's name for "ask the
data source's ``get_labels()``").
"""

import gzip
import os
from pathlib import Path
from typing import List, Tuple

import numpy as np
import torch
from PIL import Image
from vissl.data import DATA_SOURCES_WITH_SUBSET_SUPPORT, DATASET_SOURCE_MAP
from vissl.data.dataset_catalog import VisslDatasetCatalog

from vissl_aasae.checkpoints import load_pickle

EMBEDDED = Path(__file__).parent / "embedded" / "fashion_mnist_subset.npz"
FORMATS = ("cifar10", "stl10", "stl10_unlabeled", "fashion_mnist", "npz")


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{what}: {path} does not exist")
    return path


def read_cifar10(root: Path, train: bool) -> Tuple[np.ndarray, np.ndarray]:
    folder = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    images, labels = [], []
    for name in names:
        # a numpy-only unpickler: a downloaded "CIFAR-10" folder cannot run code when read
        batch = load_pickle(_require(folder / name, "CIFAR-10 batch file"), what="CIFAR-10 batch file")
        images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(batch["labels"], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def _read_stl10_images(path: Path) -> np.ndarray:
    raw = np.fromfile(_require(path, "STL-10 image file"), dtype=np.uint8)
    if raw.size % (3 * 96 * 96):
        raise ValueError(f"STL-10 image file {path} has {raw.size} bytes, not a multiple of 3*96*96")
    # stored column-major per channel: N x C x W x H
    return raw.reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1)


def read_stl10(root: Path, split: str) -> Tuple[np.ndarray, np.ndarray]:
    folder = root / "stl10_binary" if (root / "stl10_binary").is_dir() else root
    images = _read_stl10_images(folder / f"{split}_X.bin")
    if split == "unlabeled":
        return images, np.full(len(images), -1, dtype=np.int64)
    labels = np.fromfile(_require(folder / f"{split}_y.bin", "STL-10 label file"), dtype=np.uint8)
    return images, labels.astype(np.int64) - 1  # stored 1..10


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(_require(path, "IDX file"), "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (magic {magic:#x})")
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def read_fashion_mnist(root: Path, train: bool) -> Tuple[np.ndarray, np.ndarray]:
    prefix = "train" if train else "t10k"
    images = _read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
    labels = _read_idx(root / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    return images, labels


def read_npz(path: Path, train: bool) -> Tuple[np.ndarray, np.ndarray]:
    prefix = "train" if train else "test"
    with np.load(_require(path, "npz data file")) as arrays:
        return arrays[f"{prefix}_images"], arrays[f"{prefix}_labels"].astype(np.int64)


def load_arrays(fmt: str, path: str, split: str) -> Tuple[np.ndarray, np.ndarray]:
    """(images uint8 N x H x W [x 3], labels int64 N) of ``split`` ("train" or anything else = test)."""
    if fmt not in FORMATS:
        raise ValueError(f"DATASET_NAMES entry {fmt!r} is not an aasae_array format; allowed: {list(FORMATS)}")
    train = split.lower() == "train"
    location = EMBEDDED if fmt == "npz" and path == "embedded" else Path(os.path.expanduser(path))
    if not location.exists():
        raise FileNotFoundError(f"DATA_PATHS entry {path!r} for {fmt} does not exist")
    if fmt == "cifar10":
        return read_cifar10(location, train)
    if fmt == "stl10":
        return read_stl10(location, "train" if train else "test")
    if fmt == "stl10_unlabeled":
        return read_stl10(location, "unlabeled")
    if fmt == "fashion_mnist":
        return read_fashion_mnist(location, train)
    return read_npz(location, train)


HOLD_OUT_SEED = 42  # the seed of the reference's random_split


def hold_out_indices(n: int, hold_out: int) -> np.ndarray:
    """Indices of the images kept for training when ``hold_out`` of ``n`` are left out, as the
    reference's ``random_split(dataset, [n - hold_out, hold_out], generator seeded 42)`` keeps them
    (in its order)."""
    if hold_out == 0:
        return np.arange(n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(HOLD_OUT_SEED)).numpy()
    return order[: n - hold_out]


class AASAEArrayDataset:
    """A VISSL data source over in-memory uint8 image arrays."""

    def __init__(self, cfg, data_source: str, path: str, split: str, dataset_name: str):
        self.cfg = cfg
        self.split = split
        self.dataset_name = dataset_name
        self.images, self.labels = load_arrays(dataset_name, path, split)
        if len(self.images) == 0:
            raise ValueError(f"DATA_PATHS entry {path!r} ({dataset_name}, split {split}) holds no images")
        key = f"DATA.{split.upper()}.HOLD_OUT"
        hold_out = ((cfg or {}).get("DATA") or {}).get(split.upper(), {}).get("HOLD_OUT", 0) or 0
        if isinstance(hold_out, bool) or not isinstance(hold_out, int) or not 0 <= hold_out < len(self.images):
            raise ValueError(
                f"{key}={hold_out!r} must be an integer from 0 to {len(self.images) - 1} "
                f"({dataset_name} at {path!r} has {len(self.images)} {split} images)"
            )
        if hold_out:
            keep = hold_out_indices(len(self.images), hold_out)
            self.images, self.labels = self.images[keep], self.labels[keep]

    def num_samples(self) -> int:
        return len(self.images)

    def __len__(self) -> int:
        return self.num_samples()

    def __getitem__(self, idx: int) -> Tuple[Image.Image, bool]:
        return Image.fromarray(self.images[idx]).convert("RGB"), True

    def get_labels(self) -> List[int]:
        return self.labels.tolist()


# dataset names our configs use with explicit DATA_PATHS; VISSL looks every name up in its
# catalog for optional label files, so they must be known there even without a catalog json
CATALOG_NAMES = FORMATS + ("imagenet1k_folder", "places205_folder")


def register() -> None:
    DATASET_SOURCE_MAP["aasae_array"] = AASAEArrayDataset
    DATA_SOURCES_WITH_SUBSET_SUPPORT.add("aasae_array")
    for name in CATALOG_NAMES:
        if not VisslDatasetCatalog.has_data(name):
            VisslDatasetCatalog.register_data(name, {"train": ["", ""], "val": ["", ""]})
