"""ImageNet 1% / 10% labelled subsets as VISSL ``disk_filelist`` files (images .npy + labels .npy).

The standard subsets (SimCLR's ``imagenet_subsets/1percent.txt`` and ``10percent.txt``, 12,811 and
128,116 images) list one training file name per line, e.g. ``n01440764_10026.JPEG``; the class is the
WordNet id before the underscore.  This writes

- ``<OUT>/<NAME>_images.npy``: absolute image paths (fixed-width unicode, so VISSL's ``MMAP_MODE`` works),
- ``<OUT>/<NAME>_labels.npy``: int64 labels, the index of the class folder among the sorted class
  folders of the ImageNet train folder: the numbering ``disk_folder`` (torchvision ImageFolder) gives
  the validation folder, so train and test labels agree.

    python -m vissl_aasae.evaluation.filelists --subset 1percent.txt \\
        --train-dir /data/imagenet/train --out-dir ./data/imagenet1k_subsets --name imagenet1k_1percent

then ``config=benchmark/aasae/semi_supervised/imagenet1k_1percent
config.DATA.TRAIN.DATA_PATHS=[./data/imagenet1k_subsets/imagenet1k_1percent_images.npy]
config.DATA.TRAIN.LABEL_PATHS=[./data/imagenet1k_subsets/imagenet1k_1percent_labels.npy]``.
"""

import argparse
import os
import sys
from typing import List, Tuple

import numpy as np


def read_subset(path: str) -> List[str]:
    with open(path) as f:
        names = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    if not names:
        raise ValueError(f"subset list {path} is empty")
    return names


def class_folders(train_dir: str) -> List[str]:
    if not os.path.isdir(train_dir):
        raise FileNotFoundError(f"ImageNet train folder {train_dir} does not exist")
    classes = sorted(e.name for e in os.scandir(train_dir) if e.is_dir())
    if not classes:
        raise ValueError(f"ImageNet train folder {train_dir} has no class sub-folders")
    return classes


def subset_filelist(names: List[str], train_dir: str) -> Tuple[np.ndarray, np.ndarray]:
    """(image paths, labels) of the listed training images; raises naming the files that are missing."""
    classes = class_folders(train_dir)
    index = {c: i for i, c in enumerate(classes)}
    paths, labels, missing, unknown = [], [], [], []
    for name in names:
        base = os.path.basename(name)
        wnid = name.split("/")[0] if "/" in name else base.split("_")[0]
        if wnid not in index:
            unknown.append(name)
            continue
        path = os.path.abspath(os.path.join(train_dir, wnid, base))
        if not os.path.isfile(path):
            missing.append(path)
        paths.append(path)
        labels.append(index[wnid])
    if unknown:
        raise ValueError(f"{len(unknown)} listed images name a class with no folder in {train_dir}: {unknown[:5]}")
    if missing:
        raise FileNotFoundError(f"{len(missing)} listed images are not in {train_dir}: {missing[:5]}")
    return np.array(paths), np.array(labels, dtype=np.int64)


def write_filelist(names: List[str], train_dir: str, out_dir: str, name: str) -> Tuple[str, str]:
    paths, labels = subset_filelist(names, train_dir)
    os.makedirs(out_dir, exist_ok=True)
    images_file = os.path.join(out_dir, f"{name}_images.npy")
    labels_file = os.path.join(out_dir, f"{name}_labels.npy")
    np.save(images_file, paths)
    np.save(labels_file, labels)
    return images_file, labels_file


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subset", required=True, help="1percent.txt / 10percent.txt (one file name per line)")
    parser.add_argument("--train-dir", required=True, help="ImageNet train folder with one sub-folder per class")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--name", required=True, help="file name prefix, e.g. imagenet1k_1percent")
    args = parser.parse_args(argv)
    try:
        names = read_subset(args.subset)
        images_file, labels_file = write_filelist(names, args.train_dir, args.out_dir, args.name)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{len(names)} images: {images_file} {labels_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
