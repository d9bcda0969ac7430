"""Each compat patch: a test that fails without it."""

import multiprocessing.forkserver
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import process_running

from vissl_aasae import compat, console
from vissl_aasae.compat import behaviour, stack
from vissl_aasae.launcher import compose


def test_broadcast_object_single_process_makes_no_byte_copy(monkeypatch):
    from classy_vision.generic import distributed_util, util

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.ByteTensor(memoryview) copy used")

    monkeypatch.setattr(torch, "ByteTensor", forbidden)
    payload = {"w": torch.randn(1000, 1000)}
    for module in (distributed_util, util):
        assert module.broadcast_object(payload) is payload


def _broadcast_worker(rank, port, queue):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    from classy_vision.generic.distributed_util import broadcast_object

    import vissl_aasae.registry  # noqa: F401

    obj = {"w": torch.arange(3_000_000, dtype=torch.float32), "meta": "x"} if rank == 0 else None
    out = broadcast_object(obj)
    queue.put((rank, out["meta"], float(out["w"].sum()), out["w"].shape[0]))
    dist.destroy_process_group()


def test_broadcast_object_two_ranks_delivers_the_object():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_broadcast_worker, args=(r, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(30)
    expected = float(torch.arange(3_000_000, dtype=torch.float32).sum())
    assert results == [(0, "x", expected, 3_000_000), (1, "x", expected, 3_000_000)]


def test_apex_amp_default_becomes_pytorch():
    _, config = compose(
        [
            "config=pretrain/aasae/quickstart",
            "config.MODEL.AMP_PARAMS.USE_AMP=True",
            "config.MODEL.AMP_PARAMS.AMP_TYPE=apex",
            "config.MODEL.SYNC_BN_CONFIG.SYNC_BN_TYPE=apex",
        ]
    )
    assert config.MODEL.AMP_PARAMS.AMP_TYPE == "pytorch"
    assert config.MODEL.SYNC_BN_CONFIG.SYNC_BN_TYPE == "pytorch"


def test_larc_without_apex_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="OPTIMIZER.use_larc"):
        compose(["config=pretrain/aasae/quickstart", "config.OPTIMIZER.use_larc=True"])


def test_patches_are_idempotent():
    from vissl.utils import hydra_config

    before = hydra_config.infer_and_assert_hydra_config
    compat.apply()
    compat.apply()
    assert hydra_config.infer_and_assert_hydra_config is before


def test_legacy_import_warnings_are_silenced():
    code = "import vissl_aasae, vissl.data, vissl.hooks"
    out = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pkg_resources is deprecated" not in out.stderr
    assert "_functional_video" not in out.stderr


KILLED_LOADER = """
import os, signal, sys, torch
from torch.utils.data import DataLoader, TensorDataset
from vissl_aasae.data.workers import watch_main_process
init = watch_main_process if sys.argv[1] == "watched" else None
loader = DataLoader(TensorDataset(torch.zeros(100000, 1)), batch_size=1, num_workers=2,
                    multiprocessing_context="forkserver", worker_init_fn=init)
it = iter(loader)
next(it)
print(" ".join(str(w.pid) for w in it._workers), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _workers_of_a_killed_trainer(mode: str, wait_s: float):
    # output to files: orphaned workers would hold a pipe open and keep subprocess.run waiting;
    # stderr apart, where the orphaned forkserver's resource_tracker may warn after the kill
    with tempfile.TemporaryFile("w+") as log, tempfile.TemporaryFile("w+") as err:
        out = subprocess.run([sys.executable, "-c", KILLED_LOADER, mode], stdout=log, stderr=err, timeout=120)
        log.seek(0)
        err.seek(0)
        text, errors = log.read(), err.read()
    assert out.returncode == -9, text[-2000:] + errors[-2000:]
    pids = [int(p) for p in text.strip().splitlines()[-1].split()]
    assert len(pids) == 2
    deadline = time.time() + wait_s
    while time.time() < deadline and any(map(process_running, pids)):
        time.sleep(0.2)
    return pids


FORKSERVER_CHILD = """
import multiprocessing, sys, time
import torch  # in __main__: what Python's forkserver was meant to preload and does not
if sys.argv[1] == "plugin":
    import vissl_aasae.registry  # noqa: F401  (compat.apply)
child = multiprocessing.get_context("forkserver").Process(target=time.sleep, args=(60,))
child.start()
with open(f"/proc/{child.pid}/maps") as maps:
    print("torch loaded" if "libtorch_cpu" in maps.read() else "bare", flush=True)
child.kill()
"""


def test_forkserver_workers_start_with_vissl_and_the_plugin_imported():
    def child_of(mode):
        out = subprocess.run(
            [sys.executable, "-c", FORKSERVER_CHILD, mode], capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout.strip().splitlines()[-1]

    # the bug: a worker forked by the forkserver imports everything afresh (~5 s of CPU each, each phase)
    assert child_of("bare") == "bare"
    assert child_of("plugin") == "torch loaded"
    assert multiprocessing.forkserver._forkserver._preload_modules == stack.FORKSERVER_PRELOAD


@pytest.mark.slow  # two killed processes and up to 18 s of waiting for their workers
def test_dataloader_workers_exit_with_a_killed_trainer():
    orphans = _workers_of_a_killed_trainer("plain", wait_s=3)
    try:  # the bug: torch's watchdog watches the forkserver, which the workers keep alive
        assert all(map(process_running, orphans))
    finally:
        for pid in orphans:
            if process_running(pid):
                os.kill(pid, signal.SIGKILL)
    watched = _workers_of_a_killed_trainer("watched", wait_s=15)
    assert not any(map(process_running, watched))


def test_vissl_dataloaders_get_the_watching_worker_init(monkeypatch):
    import vissl.data
    from vissl.trainer import train_task

    seen = []
    from vissl_aasae.compat import _patching

    monkeypatch.setattr(_patching, "_APPLIED", _patching._APPLIED - {"patch_orphaned_workers"})
    monkeypatch.setattr(vissl.data, "build_dataloader", lambda *a, **kw: seen.append(kw["worker_init_fn"]))
    monkeypatch.setattr(train_task, "build_dataloader", None)
    behaviour.patch_orphaned_workers()
    train_task.build_dataloader(dataset=None)
    vissl.data.build_dataloader(dataset=None)
    assert seen == [compat.vissl_worker_init] * 2


# --------------------------------------------------------------------------- issue 16: links, resume, env, Ctrl-C
def test_checkpoint_link_holds_the_file_name_and_resolves_from_anywhere(tmp_path, monkeypatch):
    """VISSL links checkpoint.torch to f"{CHECKPOINT.DIR}/{name}": with a relative DIR (the quickstart's
    ./checkpoints/quickstart) the link dangled, resolved from the launch folder instead of its own."""
    launch, elsewhere = tmp_path / "launch", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (launch / "checkpoints" / "quickstart").mkdir(parents=True)
    monkeypatch.chdir(launch)
    folder = "./checkpoints/quickstart"
    compat.atomic_save_checkpoint(folder, {"iteration": 1}, "model_final_checkpoint_phase1.torch")
    compat.atomic_file_symlink(f"{folder}/model_final_checkpoint_phase1.torch", f"{folder}/checkpoint.torch")
    link = launch / "checkpoints" / "quickstart" / "checkpoint.torch"
    assert os.readlink(link) == "model_final_checkpoint_phase1.torch"
    monkeypatch.chdir(elsewhere)
    assert link.resolve() == launch / "checkpoints" / "quickstart" / "model_final_checkpoint_phase1.torch"
    assert torch.load(link, weights_only=True)["iteration"] == 1


def test_dangling_links_of_older_runs_are_followed_within_their_folder(tmp_path, monkeypatch):
    from vissl_aasae import checkpoints

    folder = tmp_path / "checkpoints" / "quickstart"
    folder.mkdir(parents=True)
    torch.save({"iteration": 1}, folder / "model_final_checkpoint_phase1.torch")
    os.symlink("./checkpoints/quickstart/model_final_checkpoint_phase1.torch", folder / "checkpoint.torch")
    monkeypatch.chdir(folder)  # the link's target does not exist from here
    assert not os.path.exists(folder / "checkpoint.torch")
    assert checkpoints.resolve(folder) == str(folder / "model_final_checkpoint_phase1.torch")
    assert checkpoints.load(folder / "checkpoint.torch")["iteration"] == 1
    assert compat.latest_checkpoint_file(str(folder), None) == "model_final_checkpoint_phase1.torch"


def _vissl_state(iteration):
    return {"iteration": iteration, "classy_state_dict": {"base_model": {"model": {"trunk": {"w": torch.ones(4096)}}}}}


def test_resume_passes_over_a_truncated_checkpoint_and_says_so(tmp_path, capsys):
    for i, name in enumerate(("model_iteration3.torch", "model_iteration6.torch")):
        compat.atomic_save_checkpoint(str(tmp_path), _vissl_state(3 * (i + 1)), name)
        time.sleep(0.02)
    compat.atomic_file_symlink(str(tmp_path / "model_iteration6.torch"), str(tmp_path / "checkpoint.torch"))
    newest = tmp_path / "model_iteration6.torch"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a disk that filled up, a copy cut short
    assert compat.latest_checkpoint_file(str(tmp_path), None) == "model_iteration3.torch"
    err = capsys.readouterr().err
    assert f"resuming from {tmp_path / 'model_iteration3.torch'}, the newest complete checkpoint" in err
    assert f"'{newest}' is truncated or corrupt" in err
    newest.write_bytes(b"")  # nothing complete left at all
    (tmp_path / "model_iteration3.torch").write_bytes(b"PK\x03\x04")
    assert compat.latest_checkpoint_file(str(tmp_path), None) is None


def test_a_truncated_final_checkpoint_does_not_finish_the_run(tmp_path, capsys):
    """VISSL bails out ("Training already succeeded") when any model_final file exists; a cut one must not count."""
    from vissl.utils import distributed_launcher

    cfg = {"CHECKPOINT": {"OVERWRITE_EXISTING": False}}
    compat.atomic_save_checkpoint(str(tmp_path), _vissl_state(3), "model_phase0.torch")
    time.sleep(0.02)
    compat.atomic_save_checkpoint(str(tmp_path), _vissl_state(6), "model_final_checkpoint_phase1.torch")
    final = tmp_path / "model_final_checkpoint_phase1.torch"
    compat.atomic_file_symlink(str(final), str(tmp_path / "checkpoint.torch"))
    assert distributed_launcher.is_training_finished(cfg, str(tmp_path)) is True
    final.write_bytes(final.read_bytes()[: final.stat().st_size // 2])
    assert distributed_launcher.is_training_finished(cfg, str(tmp_path)) is False
    err = capsys.readouterr().err
    assert "the final checkpoint is not complete, so training is not finished" in err and f"'{final}'" in err
    assert compat.latest_checkpoint_file(str(tmp_path), None) == "model_phase0.torch"  # where it resumes


def test_environment_dump_leaves_secrets_out_unless_asked(caplog, monkeypatch):
    """VISSL's train engine logs every environment variable at start-up (console and log.txt)."""
    import logging

    import vissl.engines.train

    env = {"AWS_SECRET_ACCESS_KEY": "s3cr3t-value", "HF_TOKEN": "hf_abcdef", "OMP_NUM_THREADS": "2", "RANK": "0"}
    with caplog.at_level(logging.INFO):
        vissl.engines.train.print_system_env_info(env)
    assert "s3cr3t-value" not in caplog.text and "hf_abcdef" not in caplog.text
    assert "OMP_NUM_THREADS:\t2" in caplog.text
    assert "2 other environment variables not logged" in caplog.text
    caplog.clear()
    monkeypatch.setitem(console._ENVIRONMENT_LOGGING, "all", True)  # config.AASAE.LOG_ENVIRONMENT=True
    with caplog.at_level(logging.INFO):
        vissl.engines.train.print_system_env_info(env)
    assert "HF_TOKEN:\thf_abcdef" in caplog.text


def test_log_environment_switch_is_read_from_the_config():
    _, config = compose(["config=pretrain/aasae/quickstart"])
    assert compat.log_environment_setting(config) is False
    _, config = compose(["config=pretrain/aasae/quickstart", "config.AASAE.LOG_ENVIRONMENT=True"])
    assert compat.log_environment_setting(config) is True


def test_ctrl_c_in_a_rank_is_not_swallowed_by_vissl(monkeypatch):
    """VISSL's launch_distributed catches KeyboardInterrupt and reports success ("All Done!")."""
    from vissl.utils import distributed_launcher

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(behaviour.distributed_worker, "__wrapped__", interrupted)
    with pytest.raises(compat.TrainingInterrupted):
        distributed_launcher._distributed_worker(0, {"MACHINE": {}}, 0, "id", "train", None, "/tmp", None)
    try:  # the exception VISSL's `except (KeyboardInterrupt, RuntimeError)` lets through
        raise compat.TrainingInterrupted("x")
    except (KeyboardInterrupt, RuntimeError):
        pytest.fail("TrainingInterrupted must not be caught as a KeyboardInterrupt or RuntimeError")
    except compat.TrainingInterrupted:
        pass


def _red_and_label(sample):
    return sample[0].getpixel((0, 0))[0], sample[1]


def test_image_folders_reach_spawned_dataloader_workers(tmp_path):
    """The patched ImageFolder (empty class folders, lazy decoding) is pickled into DataLoader workers
    started by spawn or forkserver (VISSL's default): as a local class it could not be (issue 28)."""
    import pickle

    from PIL import Image
    from vissl.data import disk_dataset

    for name in ("a", "b", "empty"):
        (tmp_path / name).mkdir()
    for i, name in enumerate(("a", "a", "b")):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / name / f"{i}.png")
    dataset = disk_dataset.ImageFolder(str(tmp_path))
    assert type(dataset) is behaviour.ImageFolderAllowingEmptyClasses
    copy = pickle.loads(pickle.dumps(dataset))
    assert [t for _, t in copy.samples] == [0, 0, 1] and copy[2][1] == 1
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        num_workers=1,
        multiprocessing_context="spawn",
        collate_fn=_red_and_label,
    )
    assert sorted(loader) == [(0, 0), (40, 0), (80, 1)]
