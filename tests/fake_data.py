"""Tiny data sets written in the real on-disk formats (CIFAR-10 python, STL-10 binary, image folders)."""

import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def images(n, size, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def write_cifar10(root: Path, n_per_batch=4, seed=0):
    """cifar-10-batches-py/{data_batch_1..5,test_batch}: rows of 3072 bytes, channel-major."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        imgs = images(n_per_batch, 32, seed + i)
        labels = [(j + i) % 10 for j in range(n_per_batch)]
        data = imgs.transpose(0, 3, 1, 2).reshape(n_per_batch, -1)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)
        written[name] = (imgs, labels)
    return written


def write_stl10(root: Path, n=4, seed=0, unlabeled=None):
    """stl10_binary/{train,test,unlabeled}_X.bin (N x 3 x 96 x 96, column-major) and *_y.bin (1..10);
    ``unlabeled`` images in the unlabeled split (default ``n``)."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for i, split in enumerate(("train", "test", "unlabeled")):
        count = unlabeled if split == "unlabeled" and unlabeled is not None else n
        imgs = images(count, 96, seed + i)
        imgs.transpose(0, 3, 2, 1).tofile(folder / f"{split}_X.bin")
        labels = np.arange(count, dtype=np.uint8) % 10 + 1
        if split != "unlabeled":
            labels.tofile(folder / f"{split}_y.bin")
        written[split] = (imgs, labels)
    return written


def write_image_folder(root: Path, classes=("a", "b"), per_class=2, size=64, seed=0):
    """ImageNet-style class sub-folders of JPEGs."""
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for j, img in enumerate(images(per_class, size, seed + c)):
            Image.fromarray(img).save(root / name / f"{name}_{j}.jpg", quality=95)
    return root


def write_fashion_mnist_idx(root: Path, n_train=64, n_test=100):
    """Fashion-MNIST IDX .gz files (as the Debian package ships them) holding the first images of
    the embedded real subset."""
    import gzip

    from vissl_aasae.data.aasae_array import EMBEDDED

    root.mkdir(parents=True, exist_ok=True)
    arrays = np.load(EMBEDDED)
    for prefix, split, n in (("train", "train", n_train), ("t10k", "test", n_test)):
        images, labels = arrays[f"{split}_images"][:n], arrays[f"{split}_labels"][:n]
        with gzip.open(root / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(np.array([0x803, n, 28, 28], dtype=">u4").tobytes() + images.astype(np.uint8).tobytes())
        with gzip.open(root / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(np.array([0x801, n], dtype=">u4").tobytes() + labels.astype(np.uint8).tobytes())
    return root
