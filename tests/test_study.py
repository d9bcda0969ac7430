"""benchmarks/fashion_mnist_study.py on a tiny budget: curves, baselines, robustness, report, resume.

The data are Fashion-MNIST IDX files (the Debian package's format) holding real images of the
embedded subset: 300 train images, 100 test images."""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, process_running
from fake_data import write_fashion_mnist_idx

HARNESS = REPO / "benchmarks" / "fashion_mnist_study.py"
sys.path.insert(0, str(HARNESS.parent))
import fashion_mnist_study as study  # noqa: E402  (the harness is a script, not a package module)
import nuisance_data  # noqa: E402

sys.path.remove(str(HARNESS.parent))


def view_figure(tmp_path, name):
    """Where the harness puts a run's view-similarity figure: beside --figure (curves.png here)."""
    return study.view_figure(argparse.Namespace(figure=str(tmp_path / "curves.png")), name)


def harness(tmp_path, *extra):
    return subprocess.run(harness_command(tmp_path, *extra), capture_output=True, text=True, cwd=tmp_path, timeout=1500)


def harness_command(tmp_path, *extra):
    return [
        sys.executable,
        str(HARNESS),
        "--out",
        str(tmp_path / "out"),
        "--data",
        str(tmp_path / "fmnist"),
        "--results",
        str(tmp_path / "study.json"),
        "--figure",
        str(tmp_path / "curves.png"),
        "--epochs",
        "2",
        "--train-images",
        "64",
        "--batch-size",
        "32",
        "--fit",
        "200",
        "--draws",
        "1",
        *extra,  # the harness's own DataLoader workers (1), as the documented commands run
    ]


@pytest.mark.slow
def test_study_curves_baselines_report_and_resume(tmp_path):
    write_fashion_mnist_idx(tmp_path / "fmnist", n_train=300, n_test=100)
    proc = harness(tmp_path, "--runs", "aasae:0,ae:0")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((tmp_path / "study.json").read_text())
    assert set(data["runs"]) == {"aasae_s0", "ae_s0"}
    for name, run in data["runs"].items():
        assert sorted(run["epochs"], key=int) == ["1", "2"], name
        for epoch, r in run["epochs"].items():
            assert (r["n_fit"], r["n_test"]) == (200, 100)  # --fit images fit, the whole test split reported
            for key in ("linear_top1", "knn_top1", "linear_top1_10_per_class", "linear_top1_100_per_class"):
                assert 0 <= r[key] <= 100, (name, epoch, key)
        # the training metrics of the epoch's logged iterations (LOG_FREQUENCY 50: iteration 0 here)
        assert run["epochs"]["1"]["train_loss"] > 0 and "train_log_pxz" in run["epochs"]["1"]
        # augmentation robustness at the last epoch only
        assert (
            "linear_top1_augmented_test" in run["epochs"]["2"]
            and "linear_top1_augmented_test" not in run["epochs"]["1"]
        )
        assert "AASAE summary: 4 iterations" in (tmp_path / "out" / name / "pretrain.log").read_text()
    assert "train_posterior_cos_sim_z" in data["runs"]["aasae_s0"]["epochs"]["1"]
    # the paper's Fig. 5 at the last epoch: views of one test image vs of different images (cosine of h)
    for record in (*(run["epochs"]["2"] for run in data["runs"].values()), data["baselines"]["random_init"]):
        assert -1 <= record["view_cos_different"] <= record["view_cos_same"] <= 1
        assert 0 <= record["view_retrieval_top1"] <= 100
    for name in ("aasae_s0", "ae_s0", "random_init"):
        assert view_figure(tmp_path, name).stat().st_size > 5000, name
    base = data["baselines"]
    # real images: raw pixels and a random trunk are well above chance (10 %) with 200 labelled images
    assert base["raw_pixels"]["linear_top1"] > 40 and base["random_init"]["linear_top1"] > 25
    assert "linear_top1_augmented_test" in base["random_init"]
    assert "| AASAE | 1 | 2 |" in proc.stdout and "| random-init trunk |" in proc.stdout
    # wall time of every part: the two epochs' checkpoints give one gap; the pretraining time was recorded
    wall = next(line for line in proc.stdout.splitlines() if line.startswith("| aasae_s0 | 2 |"))
    assert int(wall.split("|")[4]) > 0 and "seconds_per_epoch_median" not in data["runs"]["aasae_s0"]
    assert (tmp_path / "curves.png").stat().st_size > 10000

    # a second call finds everything done: nothing is trained or evaluated again
    log_before = (tmp_path / "out" / "aasae_s0" / "pretrain.log").read_text()
    again = harness(tmp_path, "--runs", "aasae:0,ae:0")
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / "out" / "aasae_s0" / "pretrain.log").read_text() == log_before
    assert json.loads((tmp_path / "study.json").read_text())["runs"] == data["runs"]
    # a run evaluated before the views were measured gets them from its final checkpoint, nothing else
    for key in ("view_cos_same", "view_cos_different", "view_retrieval_top1"):
        del data["runs"]["aasae_s0"]["epochs"]["2"][key]
    (tmp_path / "study.json").write_text(json.dumps(data))
    again = harness(tmp_path, "--runs", "aasae:0,ae:0")
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / "out" / "aasae_s0" / "pretrain.log").read_text() == log_before
    data = json.loads((tmp_path / "study.json").read_text())
    assert "view_retrieval_top1" in data["runs"]["aasae_s0"]["epochs"]["2"]
    # a fresh clone has the JSON but not the run folders: finished runs are not trained again
    shutil.rmtree(tmp_path / "out")
    # best:0 is resolved from the JSON (AE: the only baseline that finished) and is done already
    fresh = harness(tmp_path, "--runs", "aasae:0,ae:0,best:0")
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert "best:0: the best baseline is AE" in fresh.stdout
    assert not (tmp_path / "out" / "aasae_s0").exists() and not (tmp_path / "out" / "ae_s0").exists()
    assert json.loads((tmp_path / "study.json").read_text())["runs"] == data["runs"]
    # another seed only enters the seed table: evaluated at its last epoch only (no view figure: seed 0's)
    seed = harness(tmp_path, "--runs", "aasae:1")
    assert seed.returncode == 0, seed.stdout[-3000:] + seed.stderr[-3000:]
    record = json.loads((tmp_path / "study.json").read_text())["runs"]["aasae_s1"]
    assert list(record["epochs"]) == ["2"] and "linear_top1_augmented_test" in record["epochs"]["2"]
    assert "| AASAE | 2 | 2 |" in seed.stdout
    # its time per epoch comes from both epochs' checkpoints, though only the last was evaluated
    assert sorted(record["checkpoint_times"], key=int) == ["1", "2"]
    wall = next(line for line in seed.stdout.splitlines() if line.startswith("| aasae_s1 | 1 |"))
    assert float(wall.split("|")[3]) > 0
    assert not view_figure(tmp_path, "aasae_s1").exists()


def test_study_b_views_are_the_cifar10_configs_with_the_data_sets_normalisation():
    """--views cifar10: the augmented view pretrain/aasae/cifar10 declares (crops from 8 %), normalised as
    Fashion-MNIST; the original view is the quickstart's."""
    from vissl_aasae.launcher import compose

    (override,) = study.views_overrides("cifar10")
    _, config = compose(["config=pretrain/aasae/quickstart", override])
    (views,) = config.DATA.TRAIN.TRANSFORMS
    _, cifar10 = compose(["config=pretrain/aasae/cifar10"])
    _, quickstart = compose(["config=pretrain/aasae/quickstart"])
    names = [t["name"] for t in views["augmented"]]
    assert names == [t["name"] for t in cifar10.DATA.TRAIN.TRANSFORMS[0]["augmented"]]
    assert views["augmented"][0] == {"name": "RandomResizedCrop", "size": 32}  # torchvision's scale 0.08-1
    assert views["augmented"][-1]["mean"] == [0.286] * 3
    assert views["original"] == quickstart.DATA.TRAIN.TRANSFORMS[0]["original"]
    assert study.views_overrides("quickstart") == []


@pytest.mark.slow
def test_study_b_pretrains_with_the_views_of_the_cifar10_config(tmp_path):
    """docs/RESULTS.md's Study B command on 300 real images, one epoch: the run's record holds the
    cifar10 config's view, the JSON says views cifar10, and the default views on its file are refused."""
    write_fashion_mnist_idx(tmp_path / "fmnist", n_train=300, n_test=100)
    proc = harness(tmp_path, "--views", "cifar10", "--runs", "aasae:0", "--epochs", "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((tmp_path / "study.json").read_text())
    assert data["settings"]["views"] == "cifar10"  # the results file's settings, checked on every restart
    assert 0 <= data["runs"]["aasae_s0"]["epochs"]["1"]["linear_top1_augmented_test"] <= 100
    record = yaml.safe_load((tmp_path / "out" / "aasae_s0" / "train_config.yaml").read_text())
    assert record["DATA"]["TRAIN"]["TRANSFORMS"][0]["augmented"][0] == {"name": "RandomResizedCrop", "size": 32}
    again = harness(tmp_path, "--runs", "aasae:0", "--epochs", "1")
    assert again.returncode != 0 and "its runs were made with views=cifar10, not views=quickstart" in again.stderr


def test_bad_runs_are_refused_before_any_work(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").touch()
    proc = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            "--out",
            str(tmp_path / "out"),
            "--data",
            str(tmp_path),
            "--runs",
            "aasae:0,simclr:1",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "--runs 'simclr:1': expected variant:seed" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


def test_the_best_baseline_is_the_finished_seed_0_with_the_highest_final_linear_top1():
    best_baseline = study.best_baseline

    def run(linear, last=30, robust=True):
        final = {"linear_top1": linear, **({"linear_top1_augmented_test": 1.0} if robust else {})}
        return {"epochs": {"6": {"linear_top1": 99.0}, str(last): final}}

    runs = {"aasae_s0": run(90.0), "ae_s0": run(85.1), "vae_s0": run(84.0), "aaae_s0": run(85.3), "ae_s1": run(89.0)}
    assert best_baseline(runs, 30) == "aaae"  # AASAE and other seeds do not count
    runs["aaae_s0"] = run(85.3, robust=False)  # its last epoch not fully evaluated yet: not finished
    assert best_baseline(runs, 30) == "ae"
    runs["ae_s0"] = run(86.0, last=20)  # finished a different number of epochs than the study's
    assert best_baseline(runs, 30) == "vae"
    assert best_baseline({"aasae_s0": run(90.0)}, 30) is None


def test_seconds_per_epoch_divides_each_gap_by_the_epochs_it_spans():
    seconds_per_epoch = study.seconds_per_epoch
    # epochs 1-3 evaluated one by one (100 s each), then every 3rd (300 s per gap: still 100 s per epoch)
    epochs = {str(e): {"checkpoint_time": 1000.0 + 100 * e} for e in (1, 2, 3, 6, 9, 12)}
    assert seconds_per_epoch({"epochs": epochs}) == pytest.approx(100.0)
    assert seconds_per_epoch({"epochs": {"4": {"checkpoint_time": 5.0}}}) is None
    # a seed evaluated at its last epoch only: the times of the epochs it did not evaluate count
    last_only = {"epochs": {"30": {"checkpoint_time": 3000.0}}, "checkpoint_times": {"28": 2800.0, "29": 2900.0}}
    assert seconds_per_epoch(last_only) == pytest.approx(100.0)


def test_a_difference_smaller_than_the_seed_spread_is_reported_as_none():
    comparison, verdict = study.comparison, study.verdict
    assert verdict([85.0, 86.0, 85.5], [84.0, 84.2, 84.1]) == "**+1.40** (AASAE ahead: spread 1.00)"
    assert verdict([85.0, 86.0], [85.2, 85.4]) == "+0.20 (no difference: spread 1.00)"
    assert verdict([83.0, 83.2], [86.0, 86.1]) == "**-2.95** (AASAE behind: spread 0.20)"
    assert verdict([85.0], [84.0]) == "+1.00 (one seed each: spread unknown)"

    def run(variant, seed, linear, cos):
        epochs = {
            str(e): {"linear_top1": linear - 30 + e, "knn_top1": 80.0, "linear_top1_100_per_class": 79.0}
            for e in (24, 27)
        }
        epochs["30"] = {
            "linear_top1": linear,
            "knn_top1": 80.0,
            "linear_top1_100_per_class": 79.0,
            "linear_top1_10_per_class": 70.0,
            "linear_top1_augmented_test": linear - 10,
            "train_posterior_cos_sim_z": cos,
        }
        return {"variant": variant, "seed": seed, "epochs": epochs}

    by_variant = {"aasae": [run("aasae", 0, 86.0, 0.9), run("aasae", 1, 86.4, 0.8)], "ae": [run("ae", 0, 84.0, 1.0)]}
    base = {"random_init": {"linear_top1": 78.0, "knn_top1": 76.0}}
    text = "\n".join(comparison(by_variant, base))
    assert "| AE (1 seed) | **+2.20** (AASAE ahead: spread 0.40) |" in text
    assert "| random-init trunk | +8.20 | +4.00 |" in text
    # the curve's slope over the last three evaluations (24 -> 30: +6 points in 6 epochs)
    assert "AASAE seed 1: linear top-1 80.40 at epoch 24 -> 86.40 at epoch 30 (+1.000 per epoch" in text
    assert "| AASAE | - | - | 0.850 |" in text and "| AE | - | - | 1.000 |" in text

    # Study B's second reading: each variant with these views minus its runs with the weak views
    weak = {
        "aasae_s0": run("aasae", 0, 87.0, 0.9),
        "aasae_s1": run("aasae", 1, 87.2, 0.9),
        "ae_s0": run("ae", 0, 84.0, 1),
    }
    text = "\n".join(study.against_weak_views(by_variant, weak, "weak.json"))
    assert "| these views minus the weak views (weak.json) | linear top-1 (10k labels) |" in text
    assert "| AASAE (2 / 2 seeds) | **-0.90** (lower: spread 0.40) | +0.00 (no difference: spread 0.00) |" in text
    assert "| AE (1 / 1 seeds) | +0.00 (one seed each: spread unknown) |" in text


ZOO = REPO / "model_zoo"
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


PUBLISHED = json.loads((REPO / "docs" / "results" / "fashion_mnist_study.json").read_text())
# The model zoo's rows of the CPU studies: (the study's results file, the exported trunk under model_zoo/,
# variant, seed).  Study B (issue 29) pretrained with the paper's CIFAR-10 views; its probes are the
# published study's.  Study C's are on its generated nuisance images.
ZOO_ROWS = [
    ("fashion_mnist_study.json", "fashion_mnist/aasae_rn18w025_s0.pth", "aasae", 0),
    ("fashion_mnist_study.json", "fashion_mnist/ae_rn18w025_s0.pth", "ae", 0),
    ("fashion_mnist_study.json", "fashion_mnist/aaae_rn18w025_s1.pth", "aaae", 1),
    ("fashion_mnist_paper_views_study.json", "fashion_mnist/aasae_rn18w025_paper_views_s2.pth", "aasae", 2),
    ("nuisance_fashion_mnist_study.json", "nuisance_fashion_mnist/aasae_rn18w025_s2.pth", "aasae", 2),
]


def study_results(name: str) -> dict:
    return json.loads((REPO / "docs" / "results" / name).read_text())


@pytest.fixture(scope="module")
def zoo_probe(tmp_path_factory):
    """``probe(results, file)``: the study's probes (the first of the published draws) on the features
    of the model zoo's exported trunk (torchvision format, loaded weights-only); ``probe(results)``: on
    the study's random-init trunk, through the study's own feature path.  Each study's data (the
    nuisance archive made again from its recorded seed) and fit/test splits; each trunk measured once
    per module."""
    import types

    import torch

    from vissl_aasae.evaluation.features import split_loader
    from vissl_aasae.interop import torchvision_resnet

    if not Path(FASHION_MNIST, "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("needs the Debian package dataset-fashion-mnist (setup.sh installs it)")
    torch.set_num_threads(2)
    evaluators, measured = {}, {}

    def evaluator_of(results):
        settings = study_results(results)["settings"]
        dataset = settings.get("dataset", "fashion_mnist")
        if dataset not in evaluators:
            data, out = FASHION_MNIST, tmp_path_factory.mktemp("zoo")
            if dataset == "nuisance":  # the generated archive, as the study's seed makes it
                seed = settings["data_generator"]["seed"]
                assert nuisance_data.main(["--out", str(out), "--seed", str(seed)]) == 0
                data = out / nuisance_data.archive_name(seed)
                with np.load(data) as archive:
                    assert json.loads(str(archive["parameters"])) == settings["data_generator"]
            views = settings.get("views", "quickstart")  # recorded since Study B
            args = types.SimpleNamespace(
                data=str(data), fit=settings["fit"], out=str(out), draws=3, dataset=dataset, views=views
            )
            evaluators[dataset] = study.Evaluator(args)
        return evaluators[dataset]

    def zoo_features(evaluator, net, split):
        with torch.no_grad():
            xs, ys = zip(*[(net(x), y) for x, y, _ in split_loader(evaluator.config, split, num_workers=0)])
        return torch.cat(xs), torch.cat(ys)

    def probe(results, file=None):
        if (results, file) not in measured:
            evaluator = evaluator_of(results)
            if file is None:
                model = evaluator.model(None)
                (train_x, train_y), (test_x, test_y) = (evaluator._features(model, s) for s in ("TRAIN", "TEST"))
            else:
                net = torchvision_resnet(18, stem="cifar", width_multiplier=0.25)
                net.load_state_dict(torch.load(ZOO / file, weights_only=True))
                net.eval()
                (train_x, train_y), (test_x, test_y) = (zoo_features(evaluator, net, s) for s in ("TRAIN", "TEST"))
            measured[results, file] = study.probes(train_x, train_y, test_x, test_y, draws=1)
        return measured[results, file]

    return probe


@pytest.mark.slow
@pytest.mark.parametrize(("results", "file", "variant", "seed"), ZOO_ROWS)
def test_the_published_miniature_reproduces_its_numbers(results, file, variant, seed, zoo_probe):
    """The model zoo's exported trunk gives its study's final-epoch numbers through the study's own
    data and probes: the file is the encoder the table describes."""
    record = study_results(results)["runs"][f"{variant}_s{seed}"]
    published = record["epochs"][str(record["target_epochs"])]
    measured = zoo_probe(results, file)
    assert (measured["n_fit"], measured["n_test"]) == (10000, 10000)
    for key in ("linear_top1", "knn_top1"):
        assert measured[key] == pytest.approx(published[key], abs=0.15), key
    for key in ("linear_top1_100_per_class", "linear_top1_10_per_class"):
        assert measured[key] == pytest.approx(published[f"{key}_draws"][0], abs=0.15), key


@pytest.mark.slow
def test_the_published_aasae_trunk_beats_the_random_trunk(zoo_probe):
    """The issue's bar "at least 5 points above the random-init trunk" on 10k held-out images: the
    study's random trunk re-measured (its published numbers reproduce) against the published AASAE
    trunk (seed 0, 30 epochs).  Published, first draws: linear 85.65 vs 78.09, kNN 82.88 vs 76.19,
    10 labels per class 74.54 vs 60.79.  (The quickstart's 156 iterations are too few for any margin:
    tests/test_evaluation.py.)"""
    random, aasae = zoo_probe("fashion_mnist_study.json"), zoo_probe(*ZOO_ROWS[0][:2])
    published = PUBLISHED["baselines"]["random_init"]
    assert random["linear_top1"] == pytest.approx(published["linear_top1"], abs=0.15)
    assert random["knn_top1"] == pytest.approx(published["knn_top1"], abs=0.15)
    print(f"random trunk {random}\nAASAE s0 {aasae}")
    assert aasae["linear_top1"] > random["linear_top1"] + 5
    assert aasae["knn_top1"] > random["knn_top1"] + 3
    assert aasae["linear_top1_10_per_class"] > random["linear_top1_10_per_class"] + 5


def _live_processes_mentioning(text: str) -> list:
    """PIDs of live processes whose command line contains ``text``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and process_running(int(pid)):
            found.append(int(pid))
    return found


@pytest.mark.slow
def test_a_terminated_study_stops_its_pretraining_and_resumes(tmp_path):
    """`kill` of the harness stops the pretraining it started (no orphan keeps training and holding
    the run's lock); the same command then continues the run."""
    write_fashion_mnist_idx(tmp_path / "fmnist", n_train=300, n_test=100)
    extra = ("--runs", "aasae:0", "--epochs", "6", "--train-images", "300")
    proc = subprocess.Popen(
        harness_command(tmp_path, *extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path
    )
    run_folder = str(tmp_path / "out" / "aasae_s0")
    try:
        for line in proc.stdout:
            if "aasae_s0: pretraining" in line:
                break
        deadline = time.time() + 300
        while not (Path(run_folder) / "model_phase0.torch").exists():  # it has trained an epoch
            assert time.time() < deadline and proc.poll() is None, "the pretraining did not start"
            time.sleep(0.5)
        assert _live_processes_mentioning(f"config.CHECKPOINT.DIR={run_folder}")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=180) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.time() + 30
    while _live_processes_mentioning(f"config.CHECKPOINT.DIR={run_folder}") and time.time() < deadline:
        time.sleep(1)
    assert not _live_processes_mentioning(f"config.CHECKPOINT.DIR={run_folder}")
    assert not (Path(run_folder) / "model_final_checkpoint_phase5.torch").exists()  # it was stopped mid-run
    # the same command continues the run from its last saved epoch (the stopped one left nothing in the way)
    again = harness(tmp_path, *extra)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    log = (Path(run_folder) / "pretrain.log").read_text()
    assert log.count("\n$ ") + log.startswith("$ ") == 2 and "Resume from file" in log
    epochs = json.loads((tmp_path / "study.json").read_text())["runs"]["aasae_s0"]["epochs"]
    assert sorted(epochs, key=int) == ["1", "2", "3", "4", "5", "6"]


def test_report_only_needs_only_the_results_file_and_prints_the_published_tables(tmp_path):
    """docs/RESULTS.md's `--report-only` command for Study C, on a machine without the generated images:
    the harness's tables from the committed results file are the ones RESULTS.md shows, line for line,
    and the results file is left as it was."""
    results = REPO / "docs" / "results" / "nuisance_fashion_mnist_study.json"
    before = results.read_bytes()
    command = [sys.executable, str(HARNESS), "--out", "runs/study_c", "--dataset", "nuisance", "--report-only"]
    command += ["--data", str(tmp_path / "not_made.npz"), "--figure", str(tmp_path / "curves.png")]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert results.read_bytes() == before
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    seed_means, minus = done.stdout.split("\n\n")[:2]
    assert "| AASAE | 3 | 30 | 14.49 [13.86-15.27] |" in seed_means and "| AAAE (3 seeds) | -0.45" in minus
    published = (REPO / "docs" / "RESULTS.md").read_text()
    missing = [line for line in (seed_means + "\n" + minus).splitlines() if line.strip() and line not in published]
    assert not missing, missing


def test_study_b_report_weighs_each_variant_against_its_published_weak_view_runs(tmp_path):
    """Study B's `--report-only` reads the published study's results beside its own: the second predeclared
    reading is in the report, AASAE's three seeds against the published three."""
    command = [sys.executable, str(HARNESS), "--out", "runs/study_b", "--views", "cifar10", "--report-only"]
    command += ["--data", str(tmp_path / "no_fashion_mnist"), "--figure", str(tmp_path / "curves.png")]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| these views minus the weak views (fashion_mnist_study.json) | linear top-1 (10k labels) |" in done.stdout
    assert "| AASAE (3 / 3 seeds) | -0.41 (no difference: spread 1.31) |" in done.stdout
