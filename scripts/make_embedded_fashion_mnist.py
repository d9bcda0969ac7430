"""Rebuild vissl_aasae/data/embedded/fashion_mnist_subset.npz from the Debian package dataset-fashion-mnist.

    apt-get install dataset-fashion-mnist
    python scripts/make_embedded_fashion_mnist.py [--train 5000 --test 1000]

A class-balanced, seeded subset of the train and test splits (Fashion-MNIST, MIT licence,
Zalando Research; see vissl_aasae/data/embedded/README.md).
"""

import argparse
from pathlib import Path

import numpy as np

from vissl_aasae.data.aasae_array import EMBEDDED, read_fashion_mnist


def balanced_subset(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    classes = np.unique(labels)
    per_class = n // len(classes)
    picked = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in classes]
    return np.sort(np.concatenate(picked))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--train", type=int, default=5000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    arrays = {}
    for split, n, train in (("train", args.train, True), ("test", args.test, False)):
        images, labels = read_fashion_mnist(Path(args.source), train)
        idx = balanced_subset(labels, n, rng)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images[idx], labels[idx].astype(np.uint8)
    EMBEDDED.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(EMBEDDED, **arrays)
    print(f"wrote {EMBEDDED} ({EMBEDDED.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
