"""Kill and resume, checkpoint integrity, divergence, bad data, bad configs."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import CPU_OVERRIDES, LAUNCHER, run_launcher
from fake_data import write_image_folder
from vissl_aasae import compat

TINY = ["config=pretrain/aasae/quickstart", "config.DATA.TRAIN.DATA_LIMIT=64",
        "config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=16", "config.LOG_FREQUENCY=1",
        "config.DATA.NUM_DATALOADER_WORKERS=0"]


def metrics(folder):
    path = folder / "aasae_metrics.json"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    """SIGKILL in the middle of epoch 2, same command again: it resumes and finishes, iterations continue."""
    command = [sys.executable, str(LAUNCHER), *TINY, "config.OPTIMIZER.num_epochs=3",
               "config.CHECKPOINT.CHECKPOINT_ITER_FREQUENCY=3", f"config.CHECKPOINT.DIR={tmp_path}"]
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
    second = metrics(tmp_path)[len(first):]
    assert [r["iteration"] for r in second] == list(range(resume_at, 12))
    assert "AASAE summary" in out.stdout
    assert (tmp_path / "model_final_checkpoint_phase2.torch").exists()
    # the curve continues: the resumed loss at the first iteration is close to the interrupted run's
    before = {r["iteration"]: r["loss"] for r in first}
    if resume_at in before:
        assert second[0]["loss"] == pytest.approx(before[resume_at], rel=0.1)


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
    bad = {"iteration": 7, "classy_state_dict": {"base_model": {"model": {"trunk": {"w": torch.tensor([1.0, float("nan")])}}}}}
    with pytest.raises(FloatingPointError, match="iteration 7.*trunk.w.*last good checkpoint: none"):
        compat.atomic_save_checkpoint(str(tmp_path), bad, "model_iteration7.torch")
    assert os.listdir(tmp_path) == []


def test_divergence_stops_with_one_line_naming_iteration_and_checkpoint(tmp_path):
    overrides = TINY + ["config.OPTIMIZER.num_epochs=3", "config.CHECKPOINT.CHECKPOINT_ITER_FREQUENCY=1",
                        "config.OPTIMIZER.param_schedulers.lr.schedulers=[{name:constant,value:1.0e+8}]",
                        "config.OPTIMIZER.param_schedulers.lr.lengths=[1.0]",
                        "config.OPTIMIZER.param_schedulers.lr.interval_scaling=[rescaled]",
                        f"config.CHECKPOINT.DIR={tmp_path}"]
    out = run_launcher(overrides, cwd=tmp_path)
    assert out.returncode == 3, out.stdout[-2000:] + out.stderr[-3000:]
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "iteration" in line and "last good checkpoint: " in line, line
    last = line.rsplit("last good checkpoint: ", 1)[1].strip()
    for name in os.listdir(tmp_path):
        if name.endswith(".torch"):
            model = torch.load(tmp_path / name, map_location="cpu", weights_only=False)["classy_state_dict"]["base_model"]["model"]
            assert all(torch.isfinite(t).all() for part in model.values() for t in part.values() if t.is_floating_point())
    if last != "none":
        assert os.path.exists(last)


def test_bad_images_are_skipped_counted_and_reported(tmp_path):
    root = write_image_folder(tmp_path / "train", classes=("a", "b", "c"), per_class=2, size=240)
    for f in (root / "c").iterdir():
        f.unlink()  # an empty class folder
    (root / "a" / "truncated.jpg").write_bytes((root / "a" / "a_0.jpg").read_bytes()[:200])
    Image.fromarray(np.full((240, 240), 128, np.uint8)).save(root / "b" / "gray.png")
    Image.fromarray(np.full((240, 240, 4), 200, np.uint8), "RGBA").save(root / "b" / "rgba.png")
    overrides = ["config=pretrain/aasae/imagenet", "+config/pretrain/aasae/models=resnet18", *CPU_OVERRIDES,
                 f"config.DATA.TRAIN.DATA_PATHS=[{root}]", "config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=7",
                 "config.OPTIMIZER.num_epochs=1", f"config.CHECKPOINT.DIR={tmp_path / 'ckpt'}"]
    out = run_launcher(overrides, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "AASAE data: 1 of 7 images could not be read and were left out" in out.stdout
    assert "empty class folder(s) skipped: ['c']" in out.stdout + out.stderr


def test_empty_data_folder_fails_at_start_with_its_path(tmp_path):
    (tmp_path / "train" / "only_a_class").mkdir(parents=True)
    out = run_launcher(["config=pretrain/aasae/imagenet", *CPU_OVERRIDES,
                        f"config.DATA.TRAIN.DATA_PATHS=[{tmp_path / 'train'}]"], cwd=tmp_path, timeout=120)
    assert out.returncode == 2
    assert f"DATA.TRAIN.DATA_PATHS[0]='{tmp_path / 'train'}' holds no image files" in out.stderr


@pytest.mark.parametrize("overrides,needle", [
    (["config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=0"], "BATCHSIZE_PER_REPLICA=0 must be a positive integer"),
    (["config.DATA.TRAIN.DATA_LIMIT=40", "config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=32",
      "config.DISTRIBUTED.NUM_PROC_PER_NODE=2"], "DATA_LIMIT=40 is smaller than one global batch"),
    (["config.LOSS.aasae_loss.kl_coeff=-1"], "kl_coeff=-1"),
    (["config.MODEL.AASAE.NUM_SAMPLES=0"], "num_samples=0"),
    (["config.MODEL.AASAE.LOG_SCALE=nan"], "LOG_SCALE=nan"),
    (["+config.MODEL.AASAE.LATENT=64"], "MODEL.AASAE has unknown keys ['LATENT']"),
    (["config.DATA.TRAIN.COLLATE_FUNCTION_PARAMS.input=noisy"], "input='noisy'"),
])
def test_bad_knobs_are_named_before_training(tmp_path, overrides, needle):
    out = run_launcher(["config=pretrain/aasae/quickstart", *overrides, f"config.CHECKPOINT.DIR={tmp_path}"],
                       cwd=tmp_path, timeout=300)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    assert needle in out.stderr
    assert not any(name.endswith(".torch") for name in os.listdir(tmp_path))
