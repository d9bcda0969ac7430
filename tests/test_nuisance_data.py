"""Study C's data (issue 29): benchmarks/nuisance_data.py and the study harness's ``--dataset nuisance``.

The sources are Fashion-MNIST IDX files (the Debian package's format) holding real images of the
embedded subset (tests/fake_data.py), so nothing here needs the package."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import REPO
from fake_data import write_fashion_mnist_idx

GENERATOR = REPO / "benchmarks" / "nuisance_data.py"
sys.path.insert(0, str(GENERATOR.parent))
import fashion_mnist_study as study  # noqa: E402  (scripts, not package modules)
import nuisance_data  # noqa: E402

sys.path.remove(str(GENERATOR.parent))

MIXIN = yaml.safe_load((REPO / "configs/config/pretrain/aasae/datasets/nuisance_fashion_mnist.yaml").read_text())
NORMALISATION = MIXIN["config"]["AASAE_DATASET"]


def read_idx_labels(root, prefix):
    from vissl_aasae.data.aasae_array import read_fashion_mnist

    return read_fashion_mnist(root, train=prefix == "train")


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """IDX files of 300 train and 100 test images (different images: the embedded train / test subsets)."""
    return write_fashion_mnist_idx(tmp_path_factory.mktemp("fmnist"), n_train=300, n_test=100)


@pytest.fixture(scope="module")
def seed0(sources):
    return nuisance_data.generate(sources, seed=0)


def test_the_same_seed_gives_the_same_arrays_another_seed_others(sources, seed0, monkeypatch):
    monkeypatch.setattr(nuisance_data, "CHUNK", 7)  # composed in other chunks: the same bytes
    again = nuisance_data.generate(sources, seed=0)
    assert sorted(again) == sorted(seed0)
    for key in seed0:
        assert np.array_equal(again[key], seed0[key]), key
    other = nuisance_data.generate(sources, seed=1)
    for split in ("train", "test"):
        assert not np.array_equal(other[f"{split}_garment_index"], seed0[f"{split}_garment_index"])
        differ = (other[f"{split}_images"] != seed0[f"{split}_images"]).mean()
        assert differ > 0.9, (split, differ)
    assert json.loads(str(seed0["parameters"]))["seed"] == 0 and json.loads(str(other["parameters"]))["seed"] == 1


def test_shapes_dtypes_and_what_the_data_source_reads(sources, seed0, tmp_path):
    for split, n in (("train", 300), ("test", 100)):
        assert seed0[f"{split}_images"].shape == (n, 32, 32, 3) and seed0[f"{split}_images"].dtype == np.uint8
        assert seed0[f"{split}_labels"].shape == (n,) and seed0[f"{split}_labels"].dtype == np.int64
    # colour images: the channels differ (gray sources, random colours)
    images = seed0["train_images"].astype(int)
    assert np.abs(images[..., 0] - images[..., 1]).mean() > 20
    # the plugin's aasae_array source reads the archive the command writes, split by split
    assert nuisance_data.main(["--data", str(sources), "--out", str(tmp_path), "--train", "40", "--test", "30"]) == 0
    from vissl_aasae.data.aasae_array import load_arrays

    path = tmp_path / nuisance_data.archive_name(0)
    for split, n in (("train", 40), ("test", 30)):
        images, labels = load_arrays("npz", str(path), split)
        assert images.shape == (n, 32, 32, 3) and labels.shape == (n,)
    # each split is drawn from its own stream: the 30 test images whatever the train count
    assert np.array_equal(
        load_arrays("npz", str(path), "test")[0], nuisance_data.generate_split(sources, "test", 0, 30)["images"]
    )


def test_labels_are_balanced(sources, seed0):
    for split, prefix in (("train", "train"), ("test", "t10k")):
        _, source_labels = read_idx_labels(sources, prefix)
        # every source image once: exactly the split's class counts
        assert np.array_equal(
            np.bincount(seed0[f"{split}_labels"], minlength=10), np.bincount(source_labels, minlength=10)
        )
    _, source_labels = read_idx_labels(sources, "train")
    labels = nuisance_data.generate_split(sources, "train", 0, 150)["labels"]
    expected = np.bincount(source_labels, minlength=10) / len(source_labels) * 150  # ~15 per class
    assert np.abs(np.bincount(labels, minlength=10) - expected).max() <= 8


def test_train_images_come_from_the_training_split_and_test_images_from_the_test_split(sources, seed0, tmp_path):
    for split, prefix, n in (("train", "train", 300), ("test", "t10k", 100)):
        _, source_labels = read_idx_labels(sources, prefix)
        garment, background = seed0[f"{split}_garment_index"], seed0[f"{split}_background_index"]
        assert sorted(garment) == list(range(n))  # rows of that split's files, each once
        assert background.min() >= 0 and background.max() < n and (background != garment).all()
        assert np.array_equal(seed0[f"{split}_labels"], source_labels[garment])
    # the train images depend on the training files only, the test images on the test files only
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    for kind in ("images-idx3", "labels-idx1"):  # the other split's files in each place
        shutil.copy(sources / f"train-{kind}-ubyte.gz", swapped / f"t10k-{kind}-ubyte.gz")
        shutil.copy(sources / f"t10k-{kind}-ubyte.gz", swapped / f"train-{kind}-ubyte.gz")
    mixed = tmp_path / "mixed"  # the training files, the test files of `swapped`
    shutil.copytree(sources, mixed)
    for kind in ("images-idx3", "labels-idx1"):
        shutil.copy(swapped / f"t10k-{kind}-ubyte.gz", mixed / f"t10k-{kind}-ubyte.gz")
    other_test = nuisance_data.generate(mixed, seed=0)
    assert np.array_equal(other_test["train_images"], seed0["train_images"])
    assert (
        other_test["test_images"].shape[0] == 300
        and other_test["test_labels"].tolist() != seed0["test_labels"].tolist()
    )


def test_the_garment_is_a_square_of_half_to_all_of_the_frame_in_its_colour(sources):
    """Opaque garments (all sources 255): each image holds its colour on exactly its square."""
    n = 400
    d = nuisance_data.draw(np.random.default_rng(5), 1000, n)
    images = nuisance_data.compose(np.full((1000, 28, 28), 255, dtype=np.uint8), d)
    assert d["side"].min() == 16 and d["side"].max() == 32  # 50-100 % of 32 px, both ends drawn
    colour = np.rint(d["colour"] * 255).astype(np.uint8)
    exact = 0
    for image, r, c, s, rgb in zip(images, d["row"], d["col"], d["side"], colour):
        assert 0 <= r <= 32 - s and 0 <= c <= 32 - s
        assert (image[r : r + s, c : c + s] == rgb).all()
        exact += (image == rgb).all(axis=2).sum() == s * s  # the colour nowhere else
    assert exact >= 0.95 * n


def test_the_nuisance_factors_are_recovered_from_an_archive_and_describe_its_images(sources, seed0):
    """Study C's diagnostic targets: the generator's own draws, recovered from the archive's seed (no image
    read), checked against its garment rows, and what they say is in the images."""
    for split, n in (("train", 300), ("test", 100)):
        found = nuisance_data.archive_factors(seed0, split)
        assert sorted(found) == sorted(nuisance_data.FACTORS)
        assert {k: v.shape for k, v in found.items()} == {
            "garment_colour": (n, 3),
            "garment_position": (n, 2),
            "garment_size": (n, 1),
            "background_colour": (n, 3),
            "background_tint": (n, 3),
        }
        size, position = found["garment_size"][:, 0], found["garment_position"]
        assert size.min() >= 16 and size.max() <= 32
        assert (position >= size[:, None] / 2).all() and (position <= 32 - size[:, None] / 2).all()
        # the pixel at the garment's centre is nearer its colour than another image's garment colour
        images = seed0[f"{split}_images"].astype(np.float64) / 255.0
        row, col = np.floor(position).astype(int).T
        centre = images[np.arange(n), row, col]
        mine = np.abs(centre - found["garment_colour"]).mean()
        others = np.abs(centre - np.roll(found["garment_colour"], 1, axis=0)).mean()
        assert mine < 0.6 * others, (mine, others)
    tampered = dict(seed0, test_garment_index=seed0["test_garment_index"][::-1])
    assert nuisance_data.archive_factors(tampered, "test") is None  # not the generator's draws: no targets


def test_factor_r2_reads_a_linear_factor_and_not_noise():
    """R^2 on the second half: y = x w + noise of equal variance gives ~0.5; a target unrelated to the
    features ~0; an exact linear target ~1."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 16))
    w = rng.normal(size=(16, 2)) / 4.0  # signal variance 1 per output
    signal = x @ w
    r2 = study.factor_r2(
        x,
        {
            "half": signal + rng.normal(size=signal.shape) * np.sqrt(signal.var(0)),
            "noise": rng.normal(size=(4000, 3)),
            "exact": signal,
        },
    )
    assert r2["half"] == pytest.approx(0.5, abs=0.05)
    assert abs(r2["noise"]) < 0.02
    assert r2["exact"] > 0.999


def test_the_baselines_measured_before_the_diagnostic_get_it_once(tmp_path):
    """A results file whose baselines predate the nuisance R^2: the next launch measures it for both,
    and only for what lacks it."""
    calls = []

    class Stub:
        dataset = "nuisance"

        def nuisance_r2_of(self, checkpoint=None):
            calls.append(("trunk", checkpoint))
            return {"garment_colour": 0.3}

        def pixels(self):
            return "train_x", "train_y", "test_x", "test_y"

        def nuisance_r2(self, test_x, test_y):
            calls.append(("pixels", test_x, test_y))
            return {"garment_colour": 0.9}

    results = study.Results(tmp_path / "c.json", {"dataset": "nuisance"})
    results.data["baselines"] = {
        "random_init": {"linear_top1": 16.2, "view_cos_same": 0.9},
        "raw_pixels": {"linear_top1": 13.5},
    }
    args = study.argparse.Namespace(dataset="nuisance", figure=str(tmp_path / "c_curves.png"))
    study.baselines(args, Stub(), results)
    study.baselines(args, Stub(), results)
    assert calls == [("trunk", None), ("pixels", "test_x", "test_y")]
    saved = json.loads((tmp_path / "c.json").read_text())["baselines"]
    assert saved["random_init"]["nuisance_r2"] == {"garment_colour": 0.3}
    assert saved["raw_pixels"]["nuisance_r2"] == {"garment_colour": 0.9}
    assert saved["random_init"]["linear_top1"] == 16.2  # the rest as it was


def test_resampling_maps_are_normalised_and_exact_at_scale_one():
    maps = nuisance_data.resample_matrix(28, 32, [0, 0], [28, 28], [2, 0], [28, 16])
    assert np.allclose(maps[0][2:30], np.eye(28)) and not maps[0][:2].any() and not maps[0][30:].any()
    assert np.allclose(maps[1][:16].sum(axis=1), 1) and not maps[1][16:].any()
    assert np.allclose(nuisance_data.blur_matrix(32, 1.5).sum(axis=1), 1)


def test_the_generator_refuses_a_folder_without_the_idx_files(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(GENERATOR), "--data", str(tmp_path), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and f"--data {tmp_path}: no train-images-idx3-ubyte.gz there" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_the_command_line_writes_an_archive_and_a_grid(sources, seed0, tmp_path):
    """The documented command (docs/RESULTS.md) on the tiny sources: the archive of all their images,
    the same arrays as the function gives, and the 8 x 8 grid."""
    from PIL import Image

    proc = subprocess.run(
        [sys.executable, str(GENERATOR), "--data", str(sources), "--out", "runs/nuisance", "--seed", "0"]
        + ["--grid", "grid.png"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    with np.load(tmp_path / "runs" / "nuisance" / nuisance_data.archive_name(0)) as written:
        assert written["train_images"].shape == (300, 32, 32, 3) and written["test_images"].shape == (100, 32, 32, 3)
        assert np.array_equal(written["train_images"], seed0["train_images"])
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.size[0] >= 8 * 32 and grid.size[1] >= 8 * 32


# --------------------------------------------------------------------------- the study harness
@pytest.fixture(scope="module")
def archive(sources, tmp_path_factory):
    out = tmp_path_factory.mktemp("nuisance")
    assert nuisance_data.main(["--data", str(sources), "--out", str(out)]) == 0
    return out / nuisance_data.archive_name(0)


def test_the_harness_pretrains_on_the_archive_with_its_normalisation_and_the_paper_views(archive, tmp_path):
    from vissl_aasae.launcher import compose

    args = study.parse_args(["--out", str(tmp_path), "--dataset", "nuisance", "--data", str(archive)])
    assert args.views == "cifar10" and args.runs == [
        (v, int(s)) for v, s in (r.split(":") for r in study.DEFAULT_RUNS.split(","))
    ]
    assert args.results.endswith("docs/results/nuisance_fashion_mnist_study.json")
    assert args.figure.endswith("docs/figures/nuisance_fashion_mnist_curves.png")
    assert args.data_generator == {**nuisance_data.parameters(), "seed": 0}
    _, config = compose(study.pretrain_command(args, "aasae", 0, tmp_path / "aasae_s0")[2:])
    assert dict(config.AASAE_DATASET) == NORMALISATION
    assert list(config.DATA.TRAIN.DATASET_NAMES) == ["npz"] and list(config.DATA.TRAIN.DATA_PATHS) == [str(archive)]
    (views,) = config.DATA.TRAIN.TRANSFORMS
    for view in ("original", "augmented"):
        (normalize,) = [t for t in views[view] if t["name"] == "Normalize"]
        assert (list(normalize["mean"]), list(normalize["std"])) == (NORMALISATION["MEAN"], NORMALISATION["STD"])
    # the reference's CIFAR-10 crops (default scale 0.08-1) and colour distortion, not the quickstart's
    assert "scale" not in views["augmented"][0] and views["augmented"][2]["name"] == "ImgPilColorDistortion"


def test_the_published_study_keeps_its_command(sources, tmp_path):
    """Fashion-MNIST (the default): no mix-in, the IDX folder, the published names (its runs resume)."""
    args = study.parse_args(["--out", str(tmp_path), "--data", str(sources)])
    assert (args.dataset, args.views, args.data_generator) == ("fashion_mnist", "quickstart", None)
    assert args.results.endswith("docs/results/fashion_mnist_study.json")
    command = study.pretrain_command(args, "aasae", 0, tmp_path / "aasae_s0")
    assert not [c for c in command if "datasets=" in c or "TRANSFORMS" in c]
    assert "config.DATA.TRAIN.DATASET_NAMES=[fashion_mnist]" in command
    assert f"config.DATA.TRAIN.DATA_PATHS=[{sources}]" in command


def test_the_harness_evaluates_and_measures_views_on_the_archive(archive, tmp_path):
    import torch

    from vissl_aasae.evaluation.features import split_loader
    from vissl_aasae.visualize.data import open_images

    args = study.parse_args(["--out", str(tmp_path), "--dataset", "nuisance", "--data", str(archive), "--fit", "64"])
    evaluator = study.Evaluator(args)
    test = evaluator.config.DATA.TEST
    assert list(test.DATASET_NAMES) == ["npz"] and list(test.DATA_PATHS) == [str(archive)]
    images, labels, _ = next(iter(split_loader(evaluator.config, "TEST", batch_size=8, num_workers=0)))
    with np.load(archive) as arrays:
        raw, expected_labels = arrays["test_images"][:8], arrays["test_labels"][:8]
    mean, std = (torch.tensor(NORMALISATION[k]).view(1, 3, 1, 1) for k in ("MEAN", "STD"))
    expected = (torch.from_numpy(raw).permute(0, 3, 1, 2).float() / 255 - mean) / std
    assert torch.allclose(images, expected, atol=1e-5) and labels.tolist() == expected_labels.tolist()
    assert evaluator.augmented[0]["name"] == "RandomResizedCrop" and "scale" not in evaluator.augmented[0]
    shown = open_images(evaluator.pretrain, args.data, evaluator.format, "test")
    assert len(shown) == 100 and np.array_equal(np.asarray(shown[0]), raw[0])
    # the view similarity of a (random) trunk over the archive's test images, as the baselines measure it
    similarity = evaluator.views(evaluator.model(None))
    assert -1 <= similarity["view_cos_different"] <= similarity["view_cos_same"] <= 1
    assert 0 <= similarity["view_retrieval_top1"] <= 100


def test_a_results_file_of_another_data_set_is_refused(archive, tmp_path):
    args = study.parse_args(["--out", str(tmp_path), "--dataset", "nuisance", "--data", str(archive)])
    settings = {"epochs": 30, "train_images": 20000, "batch_size": 128, "lr": 1e-3, "views": "cifar10"}
    path = tmp_path / "study.json"
    path.write_text(json.dumps({"settings": settings, "runs": {}}))  # made before --dataset: Fashion-MNIST
    with pytest.raises(SystemExit, match="made with dataset=fashion_mnist, not dataset=nuisance"):
        study.Results(path, {**settings, "dataset": "nuisance", "data_generator": args.data_generator})
    path.write_text(
        json.dumps({"settings": {**settings, "dataset": "nuisance", "data_generator": args.data_generator}})
    )
    study.Results(
        path, {**settings, "dataset": "nuisance", "data_generator": args.data_generator}
    )  # the same: accepted
    with pytest.raises(SystemExit, match="data_generator="):
        study.Results(path, {**settings, "dataset": "nuisance", "data_generator": {**args.data_generator, "seed": 1}})


def test_the_harness_refuses_a_missing_or_foreign_archive(tmp_path):
    harness = REPO / "benchmarks" / "fashion_mnist_study.py"
    missing = tmp_path / "none.npz"
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, train_images=np.zeros((1, 32, 32, 3), np.uint8))
    for data, message in (
        (missing, "no such file (make it: python benchmarks/nuisance_data.py"),
        (foreign, "not an archive of benchmarks/nuisance_data.py"),
    ):
        proc = subprocess.run(
            [
                sys.executable,
                str(harness),
                "--out",
                str(tmp_path / "out"),
                "--dataset",
                "nuisance",
                "--data",
                str(data),
            ],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 2 and f"--data {data}: {message}" in proc.stderr, proc.stderr
        # after argparse's usage, one line
        assert proc.stderr.strip().splitlines()[-1].startswith(f"fashion_mnist_study.py: error: --data {data}: ")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_study_c_end_to_end_on_a_tiny_archive(archive, tmp_path):
    """One AASAE epoch on the archive through the harness: the launcher accepts the composed command,
    the run reads the archive with its normalisation, and the probes and baselines land in the JSON."""
    harness = REPO / "benchmarks" / "fashion_mnist_study.py"
    command = [sys.executable, str(harness), "--out", str(tmp_path / "out"), "--dataset", "nuisance"]
    command += ["--data", str(archive), "--results", str(tmp_path / "c.json"), "--figure", str(tmp_path / "c.png")]
    command += ["--runs", "aasae:0", "--epochs", "1", "--train-images", "64", "--batch-size", "32"]
    command += ["--fit", "200", "--draws", "1", "--workers", "0"]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["settings"]["dataset"] == "nuisance" and data["settings"]["views"] == "cifar10"
    final = data["runs"]["aasae_s0"]["epochs"]["1"]
    assert (final["n_fit"], final["n_test"]) == (200, 100) and "linear_top1_augmented_test" in final
    assert set(data["baselines"]) == {"random_init", "raw_pixels"}
    recorded = yaml.safe_load((tmp_path / "out" / "aasae_s0" / "train_config.yaml").read_text())
    assert recorded["AASAE_DATASET"] == NORMALISATION
    assert (recorded["DATA"]["TRAIN"]["DATASET_NAMES"], recorded["DATA"]["TRAIN"]["DATA_PATHS"]) == (
        ["npz"],
        [str(archive)],
    )
    (normalize,) = [t for t in recorded["DATA"]["TRAIN"]["TRANSFORMS"][0]["augmented"] if t["name"] == "Normalize"]
    assert normalize["mean"] == NORMALISATION["MEAN"]
    assert "AASAE summary: 2 iterations" in (tmp_path / "out" / "aasae_s0" / "pretrain.log").read_text()
    # the diagnostic: what the final features, the random trunk's and the pixels hold of each nuisance factor
    for measured in (final, data["baselines"]["random_init"], data["baselines"]["raw_pixels"]):
        r2 = measured["nuisance_r2"]
        assert sorted(r2) == sorted(nuisance_data.FACTORS) and all(np.isfinite(v) and v <= 1 for v in r2.values())
    assert "| nuisance factor R^2 (test images, ridge) | garment colour |" in proc.stdout
    assert (tmp_path / "c_view_similarity_aasae_s0.png").exists()
