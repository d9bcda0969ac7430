"""Kill and resume, checkpoint integrity, divergence, bad data, bad configs; what a run guarantees (issue 16)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import CPU_OVERRIDES, LAUNCHER, REPO, run_launcher
from fake_data import write_image_folder
from PIL import Image

from vissl_aasae import compat
from vissl_aasae.errors import ConfigError, RunLocked
from vissl_aasae.launcher import compose
from vissl_aasae.run import LOCK_FILE, RunLock, write_config

TINY = [
    "config=pretrain/aasae/quickstart",
    "config.DATA.TRAIN.DATA_LIMIT=64",
    "config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=16",
    "config.LOG_FREQUENCY=1",
]  # the quickstart's one DataLoader worker (forkserver), as users run it


def metrics(folder):
    path = folder / "aasae_metrics.json"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    """SIGKILL in the middle of epoch 2, same command again: it resumes and finishes, iterations continue."""
    command = [
        sys.executable,
        str(LAUNCHER),
        *TINY,
        "config.OPTIMIZER.num_epochs=3",
        "config.CHECKPOINT.CHECKPOINT_ITER_FREQUENCY=3",
        f"config.CHECKPOINT.DIR={tmp_path}",
    ]
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if any(r["iteration"] >= 7 for r in metrics(tmp_path)):  # epoch 2 is iterations 4..7
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = metrics(tmp_path)
    assert first and first[-1]["iteration"] < 11, "the run finished before it could be killed"
    resume_at = torch.load(tmp_path / "checkpoint.torch", map_location="cpu", weights_only=False)["iteration"]
    assert 0 < resume_at <= first[-1]["iteration"] + 1

    out = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    records = metrics(tmp_path)
    # each iteration once (issue 28): the resumed run replaced the lines of the iterations it made again
    assert [r["iteration"] for r in records] == list(range(12))
    assert records[:resume_at] == first[:resume_at]
    assert "AASAE summary" in out.stdout
    assert (tmp_path / "model_final_checkpoint_phase2.torch").exists()
    # the curve continues: the resumed loss at the first iteration is close to the interrupted run's
    before = {r["iteration"]: r["loss"] for r in first}
    if resume_at in before:
        assert records[resume_at]["loss"] == pytest.approx(before[resume_at], rel=0.1)


def _interrupting_save(state, f):
    f.write(b"partial checkpoint bytes")
    raise KeyboardInterrupt("killed while writing")


def test_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    good = {"iteration": 3, "classy_state_dict": {"base_model": {"model": {"trunk": {"w": torch.ones(2)}}}}}
    compat.atomic_save_checkpoint(str(tmp_path), good, "model_iteration3.torch")
    compat.atomic_file_symlink(str(tmp_path / "model_iteration3.torch"), str(tmp_path / "checkpoint.torch"))
    monkeypatch.setattr(torch, "save", _interrupting_save)
    with pytest.raises(KeyboardInterrupt):
        compat.atomic_save_checkpoint(str(tmp_path), good, "model_iteration3.torch")
    with pytest.raises(KeyboardInterrupt):
        compat.atomic_save_checkpoint(str(tmp_path), good, "model_iteration6.torch")
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.torch", "model_iteration3.torch"]
    loaded = torch.load(tmp_path / "checkpoint.torch", weights_only=False)
    assert loaded["iteration"] == 3
    assert compat.latest_checkpoint_file(str(tmp_path), None) == "model_iteration3.torch"


def test_vissl_in_place_write_would_leave_a_truncated_file(tmp_path, monkeypatch):
    """Why the patch exists: the original writer leaves the partial bytes under the final name."""
    monkeypatch.setattr(torch, "save", _interrupting_save)
    with pytest.raises(KeyboardInterrupt):
        compat.atomic_save_checkpoint.__wrapped__(str(tmp_path), {}, "model_iteration6.torch")
    assert (tmp_path / "model_iteration6.torch").read_bytes() == b"partial checkpoint bytes"


def test_resume_prefers_the_last_complete_save_over_names(tmp_path):
    for name in ("model_iteration6.torch", "model_phase2.torch"):
        compat.atomic_save_checkpoint(str(tmp_path), {"x": 1}, name)
        time.sleep(0.01)
    # VISSL would pick model_iteration6 (it only looks at model_iteration* when iteration checkpoints are on)
    assert compat.latest_checkpoint_file(str(tmp_path), None) == "model_phase2.torch"
    compat.atomic_file_symlink(str(tmp_path / "model_iteration6.torch"), str(tmp_path / "checkpoint.torch"))
    assert compat.latest_checkpoint_file(str(tmp_path), None) == "model_iteration6.torch"


def test_non_finite_weights_are_never_written(tmp_path):
    bad = {
        "iteration": 7,
        "classy_state_dict": {"base_model": {"model": {"trunk": {"w": torch.tensor([1.0, float("nan")])}}}},
    }
    with pytest.raises(FloatingPointError, match="iteration 7.*trunk.w.*last good checkpoint: none"):
        compat.atomic_save_checkpoint(str(tmp_path), bad, "model_iteration7.torch")
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_divergence_stops_with_one_line_naming_iteration_and_checkpoint(tmp_path):
    overrides = TINY + [
        "config.OPTIMIZER.num_epochs=3",
        "config.CHECKPOINT.CHECKPOINT_ITER_FREQUENCY=1",
        "config.OPTIMIZER.param_schedulers.lr.schedulers=[{name:constant,value:1.0e+8}]",
        "config.OPTIMIZER.param_schedulers.lr.lengths=[1.0]",
        "config.OPTIMIZER.param_schedulers.lr.interval_scaling=[rescaled]",
        f"config.CHECKPOINT.DIR={tmp_path}",
    ]
    out = run_launcher(overrides, cwd=tmp_path)
    assert out.returncode == 3, out.stdout[-2000:] + out.stderr[-3000:]
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "iteration" in line and "last good checkpoint: " in line, line
    last = line.rsplit("last good checkpoint: ", 1)[1].strip()
    for name in os.listdir(tmp_path):
        if name.endswith(".torch"):
            model = torch.load(tmp_path / name, map_location="cpu", weights_only=False)["classy_state_dict"][
                "base_model"
            ]["model"]
            assert all(
                torch.isfinite(t).all() for part in model.values() for t in part.values() if t.is_floating_point()
            )
    if last != "none":
        assert os.path.exists(last)


def _divergence_hook(*overrides):
    from vissl_aasae.hooks.aasae_divergence_hook import AASAEDivergenceHook

    _, config = compose(["config=pretrain/aasae/quickstart", "config.LOG_FREQUENCY=3", *overrides])
    return AASAEDivergenceHook(config)


def _updates(hook, losses, start=0, device="cpu"):
    task = SimpleNamespace(device=torch.device(device), iteration=start, last_batch=None)
    for i, loss in enumerate(losses):
        task.iteration, task.last_batch = start + i, SimpleNamespace(loss=torch.tensor(loss))
        hook.on_update(task)
    hook.on_end(task)


def test_a_loss_grown_by_orders_of_magnitude_stops_the_run_naming_iteration_and_loss():
    """A finite but exploding loss (a learning rate far too high) trained on to 1.6e25 (issue 28)."""
    _updates(_divergence_hook(), [4200.0, 3900.0, 9000.0, 4.1e6])  # < 1000x the first: trains on
    with pytest.raises(FloatingPointError) as err:
        _updates(_divergence_hook(), [4200.0, 3900.0, 9000.0, 4.3e6, 1.6e25], start=50)
    assert str(err.value) == (
        "training diverged: loss 4.3e+06 at iteration 53 is more than 1000x the first one's (4200 at iteration 50; "
        "AASAE.DIVERGENCE_FACTOR)"
    )
    with pytest.raises(FloatingPointError, match="loss nan at iteration 1"):
        _updates(_divergence_hook("config.AASAE.DIVERGENCE_FACTOR=null"), [4200.0, float("nan")])
    _updates(_divergence_hook("config.AASAE.DIVERGENCE_FACTOR=null"), [4200.0, 1e30])  # switched off
    # on a GPU the losses are read every LOG_FREQUENCY (3) updates: the check comes at the next read
    hook = _divergence_hook()
    task = SimpleNamespace(device=torch.device("meta"), iteration=0, last_batch=SimpleNamespace(loss=torch.tensor(1.0)))
    hook.on_update(task)
    task.iteration, task.last_batch = 1, SimpleNamespace(loss=torch.tensor(1e9))
    hook.on_update(task)
    with pytest.raises(FloatingPointError, match="at iteration 1 "):
        task.iteration = 2
        hook.on_update(task)


@pytest.mark.slow
def test_bad_images_are_skipped_counted_and_reported(tmp_path):
    root = write_image_folder(tmp_path / "train", classes=("a", "b", "c"), per_class=2, size=240)
    for f in (root / "c").iterdir():
        f.unlink()  # an empty class folder
    (root / "a" / "truncated.jpg").write_bytes((root / "a" / "a_0.jpg").read_bytes()[:200])
    Image.fromarray(np.full((240, 240), 128, np.uint8)).save(root / "b" / "gray.png")
    Image.fromarray(np.full((240, 240, 4), 200, np.uint8), "RGBA").save(root / "b" / "rgba.png")
    overrides = [
        "config=pretrain/aasae/imagenet",
        "+config/pretrain/aasae/models=resnet18",
        *CPU_OVERRIDES,
        f"config.DATA.TRAIN.DATA_PATHS=[{root}]",
        "config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=7",
        "config.OPTIMIZER.num_epochs=1",
        "config.AASAE.MAX_ITERATIONS=null",
        f"config.CHECKPOINT.DIR={tmp_path / 'ckpt'}",
    ]
    out = run_launcher(overrides, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "AASAE data: 1 of 7 images could not be read and were left out" in out.stdout
    assert "empty class folder(s) skipped: ['c']" in out.stdout + out.stderr


def test_empty_data_folder_fails_at_start_with_its_path(tmp_path, launch_here):
    (tmp_path / "train" / "only_a_class").mkdir(parents=True)
    out = launch_here(
        ["config=pretrain/aasae/imagenet", *CPU_OVERRIDES, f"config.DATA.TRAIN.DATA_PATHS=[{tmp_path / 'train'}]"],
        cwd=tmp_path,
    )
    assert out.returncode == 2
    assert f"DATA.TRAIN.DATA_PATHS[0]='{tmp_path / 'train'}' holds no image files" in out.stderr


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=0"], "BATCHSIZE_PER_REPLICA=0 must be a positive integer"),
        (
            [
                "config.DATA.TRAIN.DATA_LIMIT=40",
                "config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=32",
                "config.DISTRIBUTED.NUM_PROC_PER_NODE=2",
            ],
            "DATA_LIMIT=40 is smaller than one global batch",
        ),
        (["config.LOSS.aasae_loss.kl_coeff=-1"], "kl_coeff=-1"),
        (["config.MODEL.AASAE.NUM_SAMPLES=0"], "MODEL.AASAE.NUM_SAMPLES=0 must be >= 1"),
        (["config.MODEL.AASAE.LOG_SCALE=nan"], "LOG_SCALE=nan"),
        (["+config.MODEL.AASAE.LATENT=64"], "MODEL.AASAE has unknown keys ['LATENT']"),
        (["config.DATA.TRAIN.COLLATE_FUNCTION_PARAMS.input=noisy"], "input='noisy'"),
    ],
)
def test_bad_knobs_are_named_before_training(tmp_path, overrides, needle, launch_here):
    overrides = ["config=pretrain/aasae/quickstart", *overrides, f"config.CHECKPOINT.DIR={tmp_path}"]
    out = launch_here(overrides, cwd=tmp_path)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    assert needle in out.stderr
    assert not any(name.endswith(".torch") for name in os.listdir(tmp_path))


# --------------------------------------------------------------------------- issue 16: nothing lost, nothing leaked
SECRET = "tok_4f3c2b1a-do-not-log"
IMAGENET_CPU = [
    "config=pretrain/aasae/imagenet",
    "+config/pretrain/aasae/models=resnet18",
    *CPU_OVERRIDES,
    "config.AASAE.MAX_ITERATIONS=null",
    "config.OPTIMIZER.num_epochs=1",
]


def tool(name, args, cwd, env=None):
    folder = "benchmarks" if name == "evaluate.py" else "tools"
    return subprocess.run(
        [sys.executable, str(REPO / folder / name), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, **(env or {})),
    )


def error_line(out):
    lines = [line for line in out.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


@pytest.fixture(scope="module")
def relative_run(tmp_path_factory):
    """The quickstart's way: a relative CHECKPOINT.DIR (./checkpoints/run), with a secret in the environment."""
    launch = tmp_path_factory.mktemp("launch")
    out = run_launcher(
        [*TINY, "config.OPTIMIZER.num_epochs=1", "config.CHECKPOINT.DIR=./checkpoints/run"],
        cwd=launch,
        env={"AASAE_TEST_API_TOKEN": SECRET},
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    folder = launch / "checkpoints" / "run"
    return SimpleNamespace(launch=launch, folder=folder, out=out, config=(folder / "train_config.yaml").read_bytes())


@pytest.mark.slow
def test_checkpoint_link_of_a_relative_checkpoint_dir_resolves_from_anywhere(relative_run, tmp_path):
    link = relative_run.folder / "checkpoint.torch"
    assert os.readlink(link) == "model_final_checkpoint_phase0.torch"
    out = tool("aasae_export.py", ["--input", str(link), "--output", str(tmp_path / "rn18.pth")], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads((tmp_path / "rn18.pth.json").read_text())["arch"] == "resnet18"


@pytest.mark.slow
def test_environment_secrets_stay_out_of_the_console_and_log(relative_run):
    log = (relative_run.folder / "log.txt").read_text()
    for text in (relative_run.out.stdout, relative_run.out.stderr, log):
        assert SECRET not in text and "AASAE_TEST_API_TOKEN" not in text
    assert "environment variables not logged (they may hold secrets)" in log


@pytest.mark.slow
def test_a_finished_run_keeps_its_record(relative_run):
    """Same command again: "already succeeded", record untouched; other values: refused, naming the keys;
    a rejected launch (a bad value) leaves it as it was, byte for byte."""
    record = relative_run.folder / "train_config.yaml"
    base = [*TINY, "config.OPTIMIZER.num_epochs=1", "config.CHECKPOINT.DIR=./checkpoints/run"]
    again = run_launcher(base, cwd=relative_run.launch, timeout=300)
    assert again.returncode == 0 and "Training already succeeded" in again.stdout
    other = run_launcher(
        [*base, "config.OPTIMIZER.num_epochs=2", "config.DATA.TRAIN.DATA_LIMIT=32"],
        cwd=relative_run.launch,
        timeout=300,
    )
    assert other.returncode == 2
    line = error_line(other)
    assert line.startswith("error: CHECKPOINT.DIR='./checkpoints/run' holds a finished run"), line
    assert "OPTIMIZER.num_epochs: 1 -> 2" in line and "DATA.TRAIN.DATA_LIMIT: 64 -> 32" in line
    assert "To train longer, start a new run from its weights" in line  # not OVERWRITE_CONFIG: refused too
    rejected = run_launcher([*base, "config.MODEL.AASAE.LATENT_DIM=0"], cwd=relative_run.launch, timeout=300)
    assert rejected.returncode == 2 and "MODEL.AASAE.LATENT_DIM=0 must be >= 1" in error_line(rejected)
    # issue 28: OVERWRITE_CONFIG on a finished run rewrote the record and trained nothing ("already succeeded")
    extended = run_launcher(
        [*base, "config.OPTIMIZER.num_epochs=2", "config.AASAE.OVERWRITE_CONFIG=True"], cwd=relative_run.launch
    )
    assert extended.returncode == 2
    assert error_line(extended) == (
        "error: CHECKPOINT.DIR='./checkpoints/run' holds a finished run (model_final_checkpoint_phase0.torch) whose "
        "record (train_config.yaml) is kept: 1 keys differ (OPTIMIZER.num_epochs: 1 -> 2). To train longer, start a "
        "new run from its weights: config.CHECKPOINT.DIR=<new folder> "
        "config.MODEL.WEIGHTS_INIT.PARAMS_FILE=./checkpoints/run/model_final_checkpoint_phase0.torch"
    )
    assert record.read_bytes() == relative_run.config
    assert not (relative_run.folder / LOCK_FILE).exists()


def _record(folder, overrides=()):
    """A run folder as a training launch leaves it: the composed config written as its record."""
    _, config = compose(["config=pretrain/aasae/quickstart", f"config.CHECKPOINT.DIR={folder}", *overrides])
    write_config(config)
    return (folder / "train_config.yaml").read_bytes()


def test_composing_writes_nothing(tmp_path, monkeypatch):
    """VISSL's convert_to_attrdict dumped the config into CHECKPOINT.DIR on every compose."""
    run = tmp_path / "run"
    run.mkdir()
    before = _record(run)
    monkeypatch.chdir(tmp_path)
    compose(["config=pretrain/aasae/quickstart"])  # CHECKPOINT.DIR ./checkpoints/quickstart
    compose(["config=pretrain/aasae/quickstart", f"config.CHECKPOINT.DIR={run}", "config.OPTIMIZER.num_epochs=7"])
    assert sorted(os.listdir(tmp_path)) == ["run"]
    assert (run / "train_config.yaml").read_bytes() == before


def test_tools_leave_a_runs_record_alone(tmp_path):
    """tools/aasae_extract_features.py config=... rewrote the run's train_config.yaml (num_epochs, DATA_LIMIT)."""
    run = tmp_path / "run"
    run.mkdir()
    before = _record(run, ["config.OPTIMIZER.num_epochs=1", "config.DATA.TRAIN.DATA_LIMIT=256"])
    out = tool(
        "aasae_extract_features.py",
        [
            "--checkpoint",
            str(run / "missing.torch"),
            "--output-dir",
            str(tmp_path / "features"),
            "config=pretrain/aasae/quickstart",
            f"config.CHECKPOINT.DIR={run}",
        ],
        cwd=tmp_path,
    )
    assert out.returncode == 2 and "missing.torch" in error_line(out)
    assert (run / "train_config.yaml").read_bytes() == before


def test_a_record_without_checkpoints_does_not_block_the_corrected_launch(tmp_path):
    """A launch refused or stopped before its first checkpoint leaves a record that describes nothing:
    the corrected launch replaces it instead of being refused (issue 28)."""
    from vissl_aasae.run import check_recorded_config

    run = tmp_path / "run"
    run.mkdir()
    _record(run, ["config.MODEL.AASAE.INPUT_HEIGHT=64"])
    _, corrected = compose(["config=pretrain/aasae/quickstart", f"config.CHECKPOINT.DIR={run}"])
    assert check_recorded_config(corrected, str(run)) is True
    (run / "model_phase0.torch").write_bytes(b"")  # with a checkpoint beside it, the record is the run's
    with pytest.raises(ConfigError, match="holds a run with another config"):
        check_recorded_config(corrected, str(run))


@pytest.mark.slow
def test_a_launch_with_another_config_refuses_unless_told_to_overwrite(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    before = _record(run, ["config.OPTIMIZER.num_epochs=1"])
    (run / "model_phase0.torch").write_bytes(b"")  # a run with a checkpoint: its record counts
    base = ["config=pretrain/aasae/quickstart", f"config.CHECKPOINT.DIR={run}", "config.DATA.TRAIN.DATA_LIMIT=64"]
    out = run_launcher([*base, "config.MODEL.AASAE.LATENT_DIM=64"], cwd=tmp_path, timeout=300)
    assert out.returncode == 2
    line = error_line(out)
    assert "3 keys differ" in line and "MODEL.AASAE.LATENT_DIM: 128 -> 64" in line
    assert "OPTIMIZER.num_epochs: 1 -> 2" in line and "DATA.TRAIN.DATA_LIMIT: 1280 -> 64" in line
    assert (run / "train_config.yaml").read_bytes() == before
    assert sorted(os.listdir(run)) == ["model_phase0.torch", "train_config.yaml"]
    from vissl_aasae.run import check_recorded_config

    _, config = compose([*base, "config.MODEL.AASAE.LATENT_DIM=64", "config.AASAE.OVERWRITE_CONFIG=True"])
    assert check_recorded_config(config, str(run)) is True
    _, same = compose(
        [
            "config=pretrain/aasae/quickstart",
            f"config.CHECKPOINT.DIR={run}",
            "config.OPTIMIZER.num_epochs=1",
            "config.AASAE.LOG_ENVIRONMENT=True",
        ]
    )
    assert check_recorded_config(same, str(run)) is False  # the switches are not part of the run


LOCK_HOLDER = """
import sys, time
from vissl_aasae.run import RunLock
RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_a_second_launch_into_a_running_folder_refuses_naming_pid_and_host(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        out = run_launcher(
            [*TINY, "config.OPTIMIZER.num_epochs=1", f"config.CHECKPOINT.DIR={tmp_path}"], cwd=tmp_path, timeout=300
        )
        assert out.returncode == 2
        line = error_line(out)
        assert line.startswith(
            f"error: CHECKPOINT.DIR='{tmp_path}' is in use by another run: PID {holder.pid} "
            f"on host {socket.gethostname()}"
        ), line
        assert sorted(os.listdir(tmp_path)) == [LOCK_FILE]  # no record, no log, no checkpoint of the second launch
        with pytest.raises(RunLocked, match=f"PID {holder.pid}"):
            RunLock(str(tmp_path)).acquire()
    finally:
        holder.kill()  # dies holding the lock: the OS releases it, the file stays
        holder.wait()
    assert (tmp_path / LOCK_FILE).exists()
    lock = RunLock(str(tmp_path)).acquire()
    assert lock.stale == f"PID {holder.pid} on host {socket.gethostname()}"
    assert (tmp_path / LOCK_FILE).read_text().startswith(f"pid={os.getpid()} ")
    lock.release()
    assert not (tmp_path / LOCK_FILE).exists()


@pytest.mark.slow
def test_a_folder_without_a_complete_checkpoint_is_not_resumed_from(tmp_path):
    broken = tmp_path / "model_phase0.torch"
    compat.atomic_save_checkpoint(str(tmp_path), {"iteration": 1}, broken.name)
    broken.write_bytes(broken.read_bytes()[:100])
    out = run_launcher(
        [*TINY, "config.OPTIMIZER.num_epochs=1", f"config.CHECKPOINT.DIR={tmp_path}"], cwd=tmp_path, timeout=300
    )
    assert out.returncode == 2
    line = error_line(out)
    assert "holds no complete checkpoint to resume from" in line and f"'{broken}' is truncated" in line, line
    assert sorted(os.listdir(tmp_path)) == [broken.name]


@pytest.mark.slow
def test_resume_falls_back_to_the_newest_complete_checkpoint(tmp_path):
    command = [
        *TINY,
        "config.OPTIMIZER.num_epochs=2",
        "config.CHECKPOINT.CHECKPOINT_ITER_FREQUENCY=2",
        "config.CHECKPOINT.CHECKPOINT_FREQUENCY=1",
        f"config.CHECKPOINT.DIR={tmp_path}",
    ]
    proc = subprocess.Popen(
        [sys.executable, str(LAUNCHER), *command], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and not (tmp_path / "model_phase0.torch").exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    newest = tmp_path / os.readlink(tmp_path / "checkpoint.torch")
    assert newest.name == "model_phase0.torch", sorted(os.listdir(tmp_path))
    newest.write_bytes(newest.read_bytes()[:4096])  # cut short
    out = run_launcher(command, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    # model_iteration4 is the same step as the end-of-epoch save (4 iterations per epoch), written just before it
    assert (
        f"resuming from {tmp_path}/model_iteration4.torch, the newest complete checkpoint; passed over: "
        f"checkpoint '{newest}' is truncated" in out.stderr
    )
    assert [r["iteration"] for r in metrics(tmp_path)][-4:] == [4, 5, 6, 7]
    assert torch.load(tmp_path / "checkpoint.torch", weights_only=True)["iteration"] == 8
    # a final checkpoint cut short does not count as a finished run (VISSL: "Training already succeeded")
    final = tmp_path / "model_final_checkpoint_phase1.torch"
    final.write_bytes(final.read_bytes()[:4096])
    out = run_launcher(command, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"the final checkpoint is not complete, so training is not finished: checkpoint '{final}'" in out.stderr
    assert torch.load(final, weights_only=True)["iteration"] == 8


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_stop_cleanly_without_saving_anything_partial(tmp_path, signum):
    """Ctrl-C exits 130; SIGTERM (what schedulers send) the same clean stop with 143 (issue 28)."""
    command = [
        sys.executable,
        str(LAUNCHER),
        *TINY,
        "config.DATA.TRAIN.DATA_LIMIT=512",
        "config.OPTIMIZER.num_epochs=1",
        f"config.CHECKPOINT.DIR={tmp_path}",
    ]
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and len(metrics(tmp_path)) < 2:
        time.sleep(0.2)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signum, stderr[-3000:]
    assert stderr.strip().splitlines()[-1].startswith(f"error: interrupted ({signal.Signals(signum).name})")
    assert "All Done!" not in stdout + stderr
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".torch") or ".tmp" in n or n == LOCK_FILE]
    assert len(metrics(tmp_path)) < 32  # it stopped in the middle of the epoch


@pytest.mark.slow
def test_a_folder_of_unreadable_images_stops_naming_them(tmp_path):
    root = tmp_path / "train"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(24):
            (root / cls / f"{cls}{i}.jpg").write_bytes(b"not an image at all")
    out = run_launcher(
        [
            *IMAGENET_CPU,
            f"config.DATA.TRAIN.DATA_PATHS=[{root}]",
            "config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=8",
            f"config.CHECKPOINT.DIR={tmp_path / 'ckpt'}",
        ],
        cwd=tmp_path,
    )
    assert out.returncode == 2, out.stdout[-3000:] + out.stderr[-3000:]
    line = error_line(out)
    assert line.startswith(
        "error: 16 of the 16 images seen so far could not be read (more than "
        "AASAE.MAX_UNREADABLE_FRACTION=0.25), e.g. " + str(root)
    ), line
    assert not [n for n in os.listdir(tmp_path / "ckpt") if n.endswith(".torch")]


def _batch(valid, invalid, first_index=0):
    from vissl_aasae.data.aasae_collator import aasae_collator
    from vissl_aasae.data.aasae_views import ViewPair

    pair = ViewPair((torch.zeros(3, 8, 8), torch.zeros(3, 8, 8)))
    samples = [
        {"data": [pair], "label": [0], "data_valid": [1 if i < valid else -1], "data_idx": [first_index + i]}
        for i in range(valid + invalid)
    ]
    return aasae_collator(samples)


def test_unreadable_images_are_counted_once_and_empty_batches_skipped():
    """All-bad batches were kept (gray placeholders trained on) and counted twice ("48 of 96" for 48 images)."""
    from vissl_aasae.hooks.aasae_data_report_hook import AASAEDataReportHook, UnreadableDataError

    batches = [_batch(6, 1), _batch(0, 8, 100), _batch(8, 0), _batch(0, 8, 200)]
    hook = AASAEDataReportHook()
    task = SimpleNamespace(
        train=True,
        data_iterator=iter(batches),
        iteration=0,
        device=torch.device("cpu"),
        config={"AASAE": {"MAX_UNREADABLE_FRACTION": 1.0}},
        datasets={},
    )
    hook.on_phase_start(task)
    served = list(task.data_iterator)
    assert [b["data"][0].shape[0] for b in served] == [
        6,
        8,
    ]  # the batches without a readable image never reach the model
    assert (hook.invalid, hook.seen, hook.skipped_batches) == (17, 31, 2)
    # a phase in which nothing at all can be read stops at its end, naming the images, whatever the fraction
    task.data_iterator = iter([_batch(0, 8, 300), _batch(0, 8, 400)])
    hook.on_phase_start(task)
    with pytest.raises(
        UnreadableDataError,
        match=r"no image of this epoch could be read \(33 of 47 .* e.g. image 6 of the data, image 100",
    ):
        list(task.data_iterator)
    assert (hook.invalid, hook.seen) == (33, 47)


def test_too_many_unreadable_images_stop_once_judged():
    from vissl_aasae.hooks.aasae_data_report_hook import AASAEDataReportHook, UnreadableDataError

    hook = AASAEDataReportHook()
    task = SimpleNamespace(
        train=True,
        data_iterator=iter([_batch(4, 4, 8 * i) for i in range(6)]),
        iteration=3,
        device=torch.device("cpu"),
        config={"AASAE": {"MAX_UNREADABLE_FRACTION": 0.25}},
        datasets={},
    )
    hook.on_phase_start(task)
    with pytest.raises(
        UnreadableDataError,
        match=r"^16 of the 32 images seen so far could not be read \(more than "
        r"AASAE.MAX_UNREADABLE_FRACTION=0.25\), e.g. image 4 of the data",
    ):
        list(task.data_iterator)


def test_evaluation_writes_only_its_output(tmp_path):
    """benchmarks/evaluate.py created ./checkpoints/... (the eval config dumped by VISSL) besides --output."""
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "results").mkdir()  # an output's folder must exist (issue 28: refused, not created)
    out = tool(
        "evaluate.py",
        [
            "--random-init",
            "--output",
            str(tmp_path / "results" / "r.json"),
            "config.DATA.TRAIN.DATA_LIMIT=32",
            "config.DATA.TEST.DATA_LIMIT=16",
            "config.AASAE_EVAL.METHODS=[knn]",
        ],
        cwd=work,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert os.listdir(work) == [] and os.listdir(tmp_path / "results") == ["r.json"]


def test_evaluation_refuses_a_text_file_as_data_or_checkpoint_and_a_truncated_checkpoint(tmp_path, monkeypatch, capsys):
    """In-process (aasae_cli.eval_main, what benchmarks/evaluate.py runs); the next test runs the script."""
    from types import SimpleNamespace

    from vissl_aasae.cli import eval_main

    def evaluate(args):
        capsys.readouterr()
        code = eval_main(args)
        return SimpleNamespace(returncode=code, stderr=capsys.readouterr().err)

    monkeypatch.chdir(tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_text("not data\n")
    out = evaluate(["--random-init", "--data", f"npz:{notes}"])
    assert (
        out.returncode == 2 and error_line(out) == f"error: --data 'npz:{notes}': '{notes}' is not a numpy .npz archive"
    )
    out = evaluate(["--checkpoint", str(notes), "--output", str(tmp_path / "r.json")])
    assert out.returncode == 2
    assert error_line(out) == (
        f"error: MODEL.WEIGHTS_INIT.PARAMS_FILE '{notes}' is not a PyTorch checkpoint "
        "(neither a torch zip archive nor a pickle)"
    )
    cut = tmp_path / "model_phase9.torch"  # a copy cut short
    torch.save({"classy_state_dict": {"base_model": {"model": {"trunk": {"w": torch.ones(50000)}}}}}, cut)
    cut.write_bytes(cut.read_bytes()[:10000])
    out = evaluate(["--checkpoint", str(cut), "--output", str(tmp_path / "r.json")])
    assert out.returncode == 2
    assert error_line(out) == (
        f"error: MODEL.WEIGHTS_INIT.PARAMS_FILE '{cut}' is truncated or corrupt "
        "(an incomplete zip archive: no end record)"
    )
    assert sorted(os.listdir(tmp_path)) == [cut.name, "notes.txt"]


class _Payload:
    """Unpickling it runs code that writes a file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_evaluation_loads_a_checkpoint_without_running_its_code(tmp_path):
    marker, evil = tmp_path / "PWNED", tmp_path / "authors_checkpoint.torch"
    torch.save(
        {"classy_state_dict": {"base_model": {"model": {"trunk": {}, "heads": {}}}}, "x": _Payload(marker)}, evil
    )
    out = tool("evaluate.py", ["--checkpoint", str(evil), "--output", str(tmp_path / "r.json")], cwd=tmp_path)
    assert out.returncode == 2
    assert error_line(out).startswith(f"error: MODEL.WEIGHTS_INIT.PARAMS_FILE '{evil}' was not loaded: it holds exec")
    assert not marker.exists()
