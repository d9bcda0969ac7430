"""Data readers (real on-disk formats), the view pair transform and the collator."""

import numpy as np
import pytest
import torch
from fake_data import write_cifar10, write_stl10
from PIL import Image

from vissl_aasae.data.aasae_array import AASAEArrayDataset, load_arrays
from vissl_aasae.data.aasae_collator import aasae_collator
from vissl_aasae.data.aasae_gaussian_blur import simclr_blur_kernel
from vissl_aasae.data.aasae_views import AASAEViews


def test_cifar10_python_format_round_trip(tmp_path):
    written = write_cifar10(tmp_path)
    train, labels = load_arrays("cifar10", str(tmp_path), "train")
    assert train.shape == (20, 32, 32, 3)
    assert np.array_equal(train[:4], written["data_batch_1"][0])
    assert labels[:4].tolist() == written["data_batch_1"][1]
    test, _ = load_arrays("cifar10", str(tmp_path / "cifar-10-batches-py"), "test")
    assert np.array_equal(test, written["test_batch"][0])


def test_stl10_binary_format_round_trip(tmp_path):
    written = write_stl10(tmp_path)
    unl, unl_labels = load_arrays("stl10_unlabeled", str(tmp_path), "train")
    assert np.array_equal(unl, written["unlabeled"][0]) and (unl_labels == -1).all()
    test, labels = load_arrays("stl10", str(tmp_path), "test")
    assert np.array_equal(test, written["test"][0])
    assert labels.tolist() == (written["test"][1].astype(int) - 1).tolist()


def test_hold_out_keeps_the_reference_random_split(tmp_path):
    """DATA.TRAIN.HOLD_OUT: the images torch's random_split(ds, [n - N, N], generator seeded 42)
    puts in the training part (the reference's data modules), in its order; 0 keeps all."""
    from torch.utils.data import random_split

    write_cifar10(tmp_path)
    all_images, all_labels = load_arrays("cifar10", str(tmp_path), "train")
    cfg = {"DATA": {"TRAIN": {"HOLD_OUT": 5}}}
    ds = AASAEArrayDataset(cfg, "aasae_array", str(tmp_path), "train", "cifar10")
    train_part, _ = random_split(range(20), [15, 5], generator=torch.Generator().manual_seed(42))
    assert len(ds) == 15 and ds.get_labels() == all_labels[list(train_part)].tolist()
    assert np.array_equal(np.asarray(ds[0][0]), all_images[train_part[0]])
    assert (
        len(AASAEArrayDataset({"DATA": {"TRAIN": {"HOLD_OUT": 0}}}, "aasae_array", str(tmp_path), "train", "cifar10"))
        == 20
    )
    for bad in (20, -1, 2.5, True):
        with pytest.raises(ValueError, match=r"DATA.TRAIN.HOLD_OUT=.*must be an integer from 0 to 19"):
            AASAEArrayDataset({"DATA": {"TRAIN": {"HOLD_OUT": bad}}}, "aasae_array", str(tmp_path), "train", "cifar10")


def test_paper_configs_hold_out_as_the_reference():
    from vissl_aasae.launcher import compose

    for name, expected in (("cifar10", 5000), ("stl10", 5000), ("quickstart", None)):
        _, config = compose([f"config=pretrain/aasae/{name}"])
        assert config.DATA.TRAIN.get("HOLD_OUT") == expected, name


def test_embedded_fashion_mnist_subset():
    ds = AASAEArrayDataset(None, "aasae_array", "embedded", "train", "npz")
    assert len(ds) == 5000
    image, ok = ds[0]
    assert ok and image.mode == "RGB" and image.size == (28, 28)
    assert np.bincount(ds.get_labels()).tolist() == [500] * 10
    test = AASAEArrayDataset(None, "aasae_array", "embedded", "test", "npz")
    assert len(test) == 1000


def test_fashion_mnist_idx_reader_matches_embedded_subset():
    import os

    if not os.path.exists("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"):
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    images, labels = load_arrays("fashion_mnist", "/usr/share/datasets/fashion-mnist", "test")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    subset, sub_labels = load_arrays("npz", "embedded", "test")
    # every embedded test image is a real Fashion-MNIST test image with the same label
    index = {img.tobytes(): lab for img, lab in zip(images, labels)}
    assert all(index[img.tobytes()] == lab for img, lab in zip(subset[:50], sub_labels[:50]))


def test_bad_paths_and_names_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="/no/where"):
        load_arrays("cifar10", "/no/where", "train")
    with pytest.raises(ValueError, match="'cifar11'"):
        load_arrays("cifar11", str(tmp_path), "train")
    (tmp_path / "stl10_binary").mkdir()
    (tmp_path / "stl10_binary" / "unlabeled_X.bin").write_bytes(b"123")
    with pytest.raises(ValueError, match="not a multiple"):
        load_arrays("stl10_unlabeled", str(tmp_path), "train")


def test_views_and_collator():
    views = AASAEViews.from_config(
        {
            "name": "AASAEViews",
            "original": [{"name": "ToTensor"}],
            "augmented": [{"name": "RandomHorizontalFlip", "p": 1.0}, {"name": "ToTensor"}],
        }
    )
    img = Image.fromarray(np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3))
    batch = [{"data": [views(img)], "label": [i], "data_valid": [1], "data_idx": [i]} for i in range(3)]
    out = aasae_collator(batch)
    assert out["data"][0].shape == out["original"][0].shape == (3, 3, 32, 32)
    assert torch.equal(out["data"][0], out["original"][0].flip(-1))  # input is the augmented view
    same = aasae_collator(batch, input="original")
    assert torch.equal(same["data"][0], same["original"][0])  # AE / VAE: deterministic input
    assert out["data_idx"][0].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="input='noisy'"):
        aasae_collator(batch, input="noisy")
    with pytest.raises(ValueError, match="'augmented'"):
        AASAEViews.from_config({"name": "AASAEViews", "original": [{"name": "ToTensor"}]})


def test_simclr_blur_kernel_is_odd_tenth_of_size():
    assert [simclr_blur_kernel(s) for s in (96, 224, 32)] == [9, 23, 3]


def test_cifar10_batches_are_read_without_running_code(tmp_path):
    """A CIFAR-10 batch file is a pickle: one whose __reduce__ would write a file is refused, naming it."""
    import pickle

    write_cifar10(tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    batch = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(pickle.dumps({"data": Evil(), "labels": [0]}))
    with pytest.raises(
        ValueError,
        match=r"CIFAR-10 batch file .*data_batch_1.* was not loaded: it holds .*open, which is not on the allow-list",
    ):
        load_arrays("cifar10", str(tmp_path), "train")
    assert not marker.exists()
