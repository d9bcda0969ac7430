"""benchmarks/table1_fashion_mnist.py on a tiny budget: every row of the table, one command, resumable.

The data are Fashion-MNIST IDX files (the Debian package's format) holding real images of the
embedded subset: 64 train images, 100 test images (the harness reports on the whole test split)."""
import json
import subprocess
import sys

import pytest
from conftest import REPO
from fake_data import write_fashion_mnist_idx

HARNESS = REPO / "benchmarks" / "table1_fashion_mnist.py"


def harness(tmp_path, *extra):
    cmd = [sys.executable, str(HARNESS), "--out", str(tmp_path / "out"), "--data", str(tmp_path / "fmnist"),
           "--images", "32", "--batch-size", "16", "--fit", "64", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=1200)


@pytest.mark.slow
def test_table1_harness_runs_every_row_and_resumes(tmp_path):
    write_fashion_mnist_idx(tmp_path / "fmnist", n_train=64, n_test=100)
    proc = harness(tmp_path, "--variants", "aasae,vae")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    for name in ("aasae", "vae", "random_init", "raw_pixels"):
        r = results[name]
        assert (r["n_train"], r["n_test"]) == (64, 100), name  # --fit images fit, the whole test split reported
        assert 0 <= r["linear_top1"] <= 100 and 0 <= r["knn_top1"] <= 100
    assert results["raw_pixels"]["feature_dim"] == 3 * 32 * 32
    assert results["aasae"]["feature_dim"] == 512
    # real images: pixels and a random ResNet-18 are above chance (10 %) even with 64 fit images
    # (measured kNN top-1: pixels 63 %, random trunk 35 %)
    assert results["raw_pixels"]["knn_top1"] > 45 and results["random_init"]["knn_top1"] > 20
    # both pretrainings saw the same budget: 32 images, batch 16 -> 2 iterations
    for variant in ("aasae", "vae"):
        assert "AASAE summary: 2 iterations, " in (out / variant / "run.log").read_text()
    assert "| AASAE |" in proc.stdout and "| raw pixels (3072-d) |" in proc.stdout
    for variant in ("aasae", "vae"):
        assert (out / f"fig5_{variant}.png").stat().st_size > 1000
        assert "same" in results[f"fig5_{variant}"]["summary"]
    # a second call finds every result and pretrains nothing again
    log_before = (out / "aasae" / "run.log").read_text()
    again = harness(tmp_path, "--variants", "aasae,vae")
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / "aasae" / "run.log").read_text() == log_before
    assert json.loads((out / "results.json").read_text())["aasae"] == results["aasae"]
    # a sweep trains only its other points: decoder 18 is the AASAE row, decoder 34 is new
    sweep = harness(tmp_path, "--sweep", "decoder")
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
    assert (out / "aasae" / "run.log").read_text() == log_before
    assert not (out / "sweep_decoder18").exists()
    assert "DECODER_DEPTH=34" in (out / "sweep_decoder34" / "run.log").read_text()
    assert "| decoder18 (the AASAE row) |" in sweep.stdout and "| decoder34 |" in sweep.stdout
    assert json.loads((out / "results.json").read_text())["sweep_decoder34"]["n_test"] == 100


def test_sweep_base_points_are_the_quickstart_values():
    """The sweep point reused from the table's AASAE run must be the quickstart's own setting."""
    import importlib.util

    from vissl_aasae.launcher import compose

    spec = importlib.util.spec_from_file_location("table1", HARNESS)
    table1 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table1)
    _, config = compose(["config=pretrain/aasae/quickstart", "+config/pretrain/aasae/variant=aasae"])
    aasae = config.MODEL.AASAE
    depth = aasae.DECODER_DEPTH or config.MODEL.TRUNK.AASAE_RESNET.DEPTH
    expected = {"latent": f"latent{aasae.LATENT_DIM}", "decoder": f"decoder{depth}",
                "kl_coeff": f"kl_coeff{config.LOSS.aasae_loss.kl_coeff:g}", "log_scale": f"log_scale{aasae.LOG_SCALE:g}"}
    assert table1.QUICKSTART_VALUES == expected
    batch = config.DATA.TRAIN.BATCHSIZE_PER_REPLICA
    assert batch == table1.BASE_BATCH and config.OPTIMIZER.param_schedulers.lr.schedulers[1]["value"] == table1.BASE_LR
    for sweep, points in table1.SWEEPS.items():
        base = [name for name in points if table1.is_base_point(sweep, name, batch)]
        assert len(base) == 1, sweep


def test_points_are_checked_before_any_run(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").touch()
    for extra, needle in ((["--sweep", "kl_coeff", "--points", "kl_coeff1,kl_coeff7"], "unknown points ['kl_coeff7']"),
                          (["--points", "kl_coeff1"], "--points kl_coeff1: goes with --sweep")):
        proc = subprocess.run([sys.executable, str(HARNESS), "--out", str(tmp_path / "out"), "--data", str(tmp_path), *extra],
                              capture_output=True, text=True)
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()
