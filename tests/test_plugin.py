"""The installable plugin: config resolution, the launcher in 1 and 2 processes, bad input."""

import glob
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch
from conftest import CPU_OVERRIDES, REPO, run_launcher
from fake_data import write_image_folder

COMPOSE = (
    "from vissl_aasae.launcher import compose; "
    "args, c = compose(['config=pretrain/aasae/{name}']); "
    "print('TRUNK', c.MODEL.TRUNK.NAME, c.MODEL.TRUNK.AASAE_RESNET.STEM, c.LOSS.name)"
)


def test_configs_resolve_from_any_directory(tmp_path):
    script = "; ".join(COMPOSE.format(name=name) for name in ("imagenet", "cifar10", "stl10"))
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    for stem in ("imagenet", "cifar", "stl10"):
        assert f"TRUNK aasae_resnet {stem} aasae_loss" in out.stdout


@pytest.mark.slow
def test_wheel_ships_configs_and_search_path_plugin(tmp_path):
    """A plain `pip install .` (here: build the wheel, install it to a folder) resolves configs from /tmp."""
    wheel_dir, site, source = tmp_path / "wheel", tmp_path / "site", tmp_path / "source"
    # built from a copy of the checkout: setuptools leaves build/ and *.egg-info in the tree it builds
    skipped = (".git", ".venv", "build", "runs", "checkpoints", "*.egg-info", ".pytest_cache", ".ruff_cache")
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*skipped), symlinks=True)
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheel_dir),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(wheel_dir.glob("vissl_aasae-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for expected in (
        "vissl_aasae/configs/config/pretrain/aasae/imagenet.yaml",
        "vissl_aasae/configs/config/pretrain/aasae/variant/vae.yaml",
        "vissl_aasae/configs/config/pretrain/aasae/models/resnet50w2.yaml",
        "hydra_plugins/vissl_aasae_searchpath/vissl_aasae_searchpath.py",
        "vissl_aasae/data/embedded/fashion_mnist_subset.npz",
    ):
        assert expected in names
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    code = (
        "import vissl_aasae, hydra_plugins.vissl_aasae_searchpath.vissl_aasae_searchpath as p; "
        "print('ROOT', p.aasae_config_root(), vissl_aasae.__file__); " + COMPOSE.format(name="imagenet")
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ROOT pkg://vissl_aasae.configs " + str(site) in out.stdout
    assert "TRUNK aasae_resnet imagenet aasae_loss" in out.stdout


# a one-process and a two-process run with the plugin's components: the README's quickstart and its
# two-process CPU launch, in tests/test_documented_commands.py (the loss built in both ranks checked there)


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["config=pretrain/aasae/nonexistent"], "pretrain/aasae/nonexistent"),
        (["config=pretrain/aasae/quickstart", "+config/pretrain/aasae/variant=vqvae"], "variant/vqvae"),
        (
            ["config=pretrain/aasae/cifar10", "config.DATA.TRAIN.DATA_PATHS=[/no/such/cifar]"],
            "DATA.TRAIN.DATA_PATHS[0]='/no/such/cifar' does not exist",
        ),
        (
            ["config=pretrain/aasae/quickstart", "config.LOSS.name=aasae_los"],
            "LOSS.name='aasae_los' is not a registered component",
        ),
        (
            ["config=pretrain/aasae/quickstart", "config.MODEL.TRUNK.NAME=aasae_resnett"],
            "MODEL.TRUNK.NAME='aasae_resnett'",
        ),
        (
            ["config=pretrain/aasae/quickstart", "config.DATA.TRAIN.COLLATE_FUNCTION=aasae_colator"],
            "COLLATE_FUNCTION='aasae_colator'",
        ),
        # issue 16, item 7: tracebacks (or silence) where a line belongs
        (["config=pretrain/aasae/nonexistent"], "AASAE configs: pretrain/aasae/{cifar10,imagenet,quickstart,stl10}"),
        (
            ["config=pretrain/aasae/quickstart", "config.DATA.TRAIN.DATA_LIMIT=0"],
            "DATA.TRAIN.DATA_LIMIT=0 must be -1 (all the data) or a positive number of images",
        ),
        (
            ["config=pretrain/aasae/quickstart", "config.DATA.TRAIN.DATA_LIMIT=6000"],
            "DATA.TRAIN.DATA_LIMIT=6000 is more than the 5000 images of DATA.TRAIN.DATA_PATHS[0] (npz at 'embedded')",
        ),
        (
            ["config=pretrain/aasae/quickstart", "config.DATA.TRAIN.DATASET_NAMES=[mnist]"],
            "DATA.TRAIN.DATASET_NAMES[0]='mnist' is not an aasae_array format",
        ),
        (
            ["config=pretrain/aasae/quickstart", "config.MACHINE.DEVICE=cpuu"],
            "MACHINE.DEVICE='cpuu' is not supported; allowed: ['cpu', 'gpu']",
        ),
        (
            ["config=pretrain/aasae/quickstart", "config.OPTIMIZER.num_epochs=0"],
            "OPTIMIZER.num_epochs=0 must be a positive integer",
        ),
        # issue 28: silent wrong results and misleading errors, refused before any work
        (
            ["config=pretrain/aasae/quickstart", "+config.OPTIMIZER.num_epoch=1"],
            "+config.OPTIMIZER.num_epoch: OPTIMIZER has no key 'num_epoch', so nothing would read it; did you mean "
            "config.OPTIMIZER.num_epochs?",
        ),
        (
            ["config=pretrain/aasae/quickstart", "+config.OPTIMISER.lr=1"],
            "config has no key 'OPTIMISER', so nothing would read it; did you mean config.OPTIMIZER?",
        ),
        (
            ["config=pretrain/aasae/quickstart", "config.OPTIMIZER.param_schedulers.lr.lengths=[0.1,0.8]"],
            "OPTIMIZER.param_schedulers.lr.lengths=[0.1, 0.8] must be fractions of the training that sum to 1 "
            "(sum 0.9)",
        ),
        (
            [
                "config=pretrain/aasae/quickstart",
                "config.OPTIMIZER.param_schedulers.lr.schedulers=[{name:linear,start_value:0.0,end_value:-1.0e-3},"
                "{name:constant,value:-1.0e-3}]",
            ],
            "OPTIMIZER.param_schedulers.lr.schedulers[0].end_value=-0.001: a learning rate must not be negative",
        ),
        (
            ["config=pretrain/aasae/quickstart", "config.OPTIMIZER.param_schedulers.lr.schedulers.1.value=nan"],
            "OPTIMIZER.param_schedulers.lr.schedulers[1].value=nan must be a finite number",
        ),
        (
            ["config=pretrain/aasae/quickstart", "config.DATA.NUM_DATALOADER_WORKERS=-1"],
            "DATA.NUM_DATALOADER_WORKERS=-1 must be 0 (load in the trainer) or more",
        ),
        (
            ["config=pretrain/aasae/quickstart", "config.MODEL.AASAE.INPUT_HEIGHT=64"],
            "DATA.TRAIN.TRANSFORMS[0].original makes 32 px images (Resize size=32) but MODEL.AASAE.INPUT_HEIGHT=64",
        ),
        (
            ["config=pretrain/aasae/cifar10", "config.DATA.TRAIN.DATA_PATHS=/no/such/cifar"],
            "DATA.TRAIN.DATA_PATHS='/no/such/cifar' must be a list: write "
            "config.DATA.TRAIN.DATA_PATHS=[/no/such/cifar]",
        ),
        (
            ["config=benchmark/aasae/knn/quickstart", *CPU_OVERRIDES],
            "MODEL.WEIGHTS_INIT.PARAMS_FILE is empty: this benchmark would evaluate a randomly initialised trunk",
        ),
        (
            [
                "config=benchmark/aasae/linear/stl10",
                "config.DATA.TRAIN.DATA_PATHS=[.]",
                "config.DATA.TEST.DATA_PATHS=[.]",
                *CPU_OVERRIDES,
            ],
            "or config.AASAE_EVAL.RANDOM_INIT=True for a random-init baseline",
        ),
        (["config.OPTIMIZER.num_epochs=2"], "error: no config given: add config=NAME"),
        pytest.param(
            ["config=pretrain/aasae/quickstart", "config.MACHINE.DEVICE=gpu"],
            "error: MACHINE.DEVICE=gpu but this machine has no CUDA GPU; on CPU set config.MACHINE.DEVICE=cpu",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU"),
        ),
    ],
)
def test_bad_input_gives_one_clear_line(tmp_path, overrides, needle, launch_here):
    out = launch_here(overrides, cwd=tmp_path)
    assert out.returncode == 2
    lines = [line for line in out.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr[-2000:]
    assert needle in lines[0]
    assert not glob.glob(str(tmp_path / "*.torch"))


def test_a_folder_smaller_than_one_global_batch_is_named_with_its_size(tmp_path, launch_here):
    """config=pretrain/aasae/imagenet on 40 images said "needs 5000000 epochs of 0 iterations"."""
    write_image_folder(tmp_path / "train", per_class=20, size=8)
    out = launch_here(
        ["config=pretrain/aasae/imagenet", f"config.DATA.TRAIN.DATA_PATHS=[{tmp_path / 'train'}]", *CPU_OVERRIDES],
        cwd=tmp_path,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "error: DATA.TRAIN holds 40 images, fewer than one global batch of 128 (DATA.TRAIN.BATCHSIZE_PER_REPLICA=128 "
        "x 1 process(es)) with DROP_LAST: an epoch would be 0 iterations; lower the batch size or give more images"
    )


def test_a_checkpoint_dir_that_is_a_file_is_refused(tmp_path, launch_here):
    (tmp_path / "run").write_text("not a folder")
    out = launch_here(["config=pretrain/aasae/quickstart", f"config.CHECKPOINT.DIR={tmp_path / 'run'}"], cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == f"error: CHECKPOINT.DIR='{tmp_path / 'run'}' is a file, not a folder"


def test_home_in_paths_is_expanded_quoted_or_not(tmp_path, monkeypatch):
    """CHECKPOINT.DIR=~/x made a literal ./~/x folder (quoted) or a Hydra lexer error (unquoted)."""
    from vissl_aasae.launcher import compose

    monkeypatch.setenv("HOME", str(tmp_path))
    for value in ("~/runs/a", "'~/runs/a'"):
        _, config = compose(
            [
                "config=pretrain/aasae/quickstart",
                f"config.CHECKPOINT.DIR={value}",
                "config.DATA.TRAIN.DATA_PATHS=[~/data,/abs]",
                "config.MODEL.WEIGHTS_INIT.PARAMS_FILE=~/w.torch",
            ]
        )
        assert config.CHECKPOINT.DIR == str(tmp_path / "runs" / "a")
        assert list(config.DATA.TRAIN.DATA_PATHS) == [str(tmp_path / "data"), "/abs"]
        assert config.MODEL.WEIGHTS_INIT.PARAMS_FILE == str(tmp_path / "w.torch")


def test_help_prints_the_usage_and_the_configs():
    out = run_launcher(["--help"], cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("usage: run_distributed_engines.py config=NAME")
    assert "pretrain/aasae/{cifar10,imagenet,quickstart,stl10}" in out.stdout
    assert "+config/pretrain/aasae/variant={aaae,aasae,ae,vae}" in out.stdout


def test_upscaled_images_are_reported_once_and_the_quickstart_is_not():
    from vissl_aasae.config_check import upscaling_warning
    from vissl_aasae.launcher import compose

    _, quickstart = compose(["config=pretrain/aasae/quickstart"])  # 28 px images at 32 px: as designed
    assert upscaling_warning(quickstart) is None
    _, stl10 = compose(
        [
            "config=pretrain/aasae/stl10",
            "config.DATA.TRAIN.DATASET_NAMES=[npz]",
            "config.DATA.TRAIN.DATA_PATHS=[embedded]",
        ]
    )
    line = upscaling_warning(stl10)
    assert line.startswith("the training images are 28x28 px (DATA.TRAIN.DATA_PATHS[0]='embedded') and ")
    assert "MODEL.AASAE.INPUT_HEIGHT=96: they are upscaled 3.4x" in line


def test_refusal_from_the_command_line(tmp_path):
    """The cases above run the launcher in-process; the command itself exits 2 with that one line."""
    out = run_launcher(["config=pretrain/aasae/quickstart", "config.DATA.TRAIN.DATA_LIMIT=6000"], cwd=tmp_path)
    assert out.returncode == 2
    lines = [line for line in out.stderr.strip().splitlines() if line.strip()]
    assert lines == [
        "error: DATA.TRAIN.DATA_LIMIT=6000 is more than the 5000 images of DATA.TRAIN.DATA_PATHS[0] (npz at "
        "'embedded'); lower it, or -1 for all of them"
    ], out.stderr[-2000:]
    assert out.stdout == "" and os.listdir(tmp_path) == []


def test_rank_threads_share_the_cores_this_process_may_use(monkeypatch):
    """A job confined to 4 of a host's cores (SLURM, taskset) runs 2 threads in each of its 2 ranks,
    not host_cores / 2."""
    from omegaconf import OmegaConf

    from vissl_aasae.trainer.cpu import rank_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3, 4, 5, 6})
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    for ranks, threads in ((1, 4), (2, 2), (8, 1)):
        assert rank_threads(OmegaConf.create({"DISTRIBUTED": {"NUM_PROC_PER_NODE": ranks}})) == threads


def test_cpu_ranks_keep_a_core_from_their_data_workers(monkeypatch):
    """On 2 cores the quickstart step was fastest with 1 DataLoader worker (0/1/2: 18.3/22.2/18.9 img/s):
    a CPU rank starts at most cores - 1 workers (at least 1) unless AASAE.PERFORMANCE.CAP_CPU_WORKERS is off;
    GPU runs keep theirs; the value asked for stays in the config the launcher records."""
    from vissl_aasae.launcher import compose
    from vissl_aasae.trainer.cpu import size_cpu_data_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})

    def config(*overrides):
        return compose(["config=pretrain/aasae/cifar10", "config.MACHINE.DEVICE=cpu", *overrides])[1]

    cpu = config()
    assert cpu.DATA.NUM_DATALOADER_WORKERS == 4
    size_cpu_data_workers(cpu)
    assert cpu.DATA.NUM_DATALOADER_WORKERS == 1
    kept = config("config.AASAE.PERFORMANCE.CAP_CPU_WORKERS=False")
    size_cpu_data_workers(kept)
    assert kept.DATA.NUM_DATALOADER_WORKERS == 4
    zero = config("config.DATA.NUM_DATALOADER_WORKERS=0")
    size_cpu_data_workers(zero)
    assert zero.DATA.NUM_DATALOADER_WORKERS == 0
    gpu = compose(["config=pretrain/aasae/cifar10"])[1]
    size_cpu_data_workers(gpu)
    assert gpu.DATA.NUM_DATALOADER_WORKERS == 4


def test_unknown_config_lists_the_aasae_configs_not_vissls():
    from vissl_aasae.errors import ConfigError
    from vissl_aasae.launcher import compose

    with pytest.raises(ConfigError) as err:
        compose(["config=pretrain/aasae/imagenett"])
    message = str(err.value)
    assert "resnet50_synthetic" not in message
    assert "Could not find 'config/pretrain/aasae/imagenett'" in message
    for name in (
        "benchmark/aasae/knn/{cifar10,imagenet1k,quickstart,stl10}",
        "+config/pretrain/aasae/variant={aaae,aasae,ae,vae}",
    ):
        assert name in message


@pytest.mark.parametrize(
    "layout,needle",
    [
        ("flat", "holds 3 images but no class sub-folders: disk_folder reads <root>/<class>/<image>"),
        ("unregistered", "DATA.TRAIN.DATASET_NAMES[0]='my_pictures' is not registered in VISSL's dataset catalog"),
    ],
)
def test_image_folder_mistakes_give_one_line(tmp_path, layout, needle, launch_here):
    from PIL import Image

    root = tmp_path / "pictures"
    folder = root if layout == "flat" else root / "cls"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (8, 8)).save(folder / f"{i}.png")
    extra = ["config.DATA.TRAIN.DATASET_NAMES=[my_pictures]"] if layout == "unregistered" else []
    out = launch_here(
        [
            "config=pretrain/aasae/imagenet",
            *CPU_OVERRIDES,
            "config.AASAE.MAX_ITERATIONS=null",
            f"config.DATA.TRAIN.DATA_PATHS=[{root}]",
            *extra,
            f"config.CHECKPOINT.DIR={tmp_path / 'ck'}",
        ],
        cwd=tmp_path,
    )
    assert out.returncode == 2
    lines = [line for line in out.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], out.stderr[-2000:]
    assert not (tmp_path / "ck").exists()
