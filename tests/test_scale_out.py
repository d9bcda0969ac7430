"""Scale-out without a cluster: two "nodes" on this machine train one run (TCP rendezvous, gloo)."""

import json
import os
import socket
import subprocess
import sys

import pytest
from conftest import LAUNCHER, run_launcher

# one global batch of 2 x 8 images per iteration, 3 iterations, no DataLoader workers (their seeds
# are per rank anyway), no checkpoints in between
TINY = [
    "config=pretrain/aasae/quickstart",
    "config.DATA.TRAIN.DATA_LIMIT=48",
    "config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=8",
    "config.OPTIMIZER.num_epochs=1",
    "config.LOG_FREQUENCY=1",
    "config.DATA.NUM_DATALOADER_WORKERS=0",
    "config.AASAE.METRICS.NUM_IMAGES=0",
    "config.DISTRIBUTED.INIT_METHOD=tcp",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def losses(folder):
    return [json.loads(line)["loss"] for line in (folder / "aasae_metrics.json").read_text().splitlines()]


@pytest.mark.slow
def test_two_nodes_train_the_same_run_as_one_node_with_two_processes(tmp_path):
    """NUM_NODES=2 with node_id 0 and 1 (one process each, two launcher processes meeting over TCP)
    against NUM_NODES=1 with two processes: same ranks, same global batch, same seed, so the same
    losses, iteration by iteration."""
    port = free_port()
    nodes = [
        "config.DISTRIBUTED.NUM_NODES=2",
        "config.DISTRIBUTED.NUM_PROC_PER_NODE=1",
        f"config.DISTRIBUTED.RUN_ID=127.0.0.1:{port}",
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    procs = []
    for node in (0, 1):
        folder = tmp_path / f"node{node}"
        folder.mkdir()
        cmd = [sys.executable, str(LAUNCHER), *TINY, *nodes, f"node_id={node}", f"config.CHECKPOINT.DIR={folder}"]
        procs.append(
            subprocess.Popen(cmd, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        )
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    for node, (proc, out) in enumerate(zip(procs, outputs)):
        assert proc.returncode == 0, f"node {node}:\n{out[-3000:]}"
    assert "AASAE summary: 3 iterations" in outputs[0]  # the primary rank lives on node 0
    two_nodes = losses(tmp_path / "node0")

    one = tmp_path / "one_node"
    out = run_launcher(
        [
            *TINY,
            "config.DISTRIBUTED.NUM_NODES=1",
            "config.DISTRIBUTED.NUM_PROC_PER_NODE=2",
            f"config.DISTRIBUTED.RUN_ID=127.0.0.1:{free_port()}",
            f"config.CHECKPOINT.DIR={one}",
        ],
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    one_node = losses(one)
    assert len(two_nodes) == len(one_node) == 3
    assert two_nodes == pytest.approx(one_node, rel=1e-6)
    # node 1 held rank 1 (not the primary): it wrote no metrics of its own
    assert not (tmp_path / "node1" / "aasae_metrics.json").exists()


@pytest.mark.slow
def test_slurm_route_runs_the_plugin_through_submitit(tmp_path):
    """config.SLURM.USE_SLURM: VISSL's submitit route, here through submitit's local executor (no
    sbatch on this machine). The job is unpickled in a fresh process, which must load the plugin
    (its trunk, heads, loss, data source) and run its hooks (aasae_metrics.json, the summary)."""
    import submitit
    from vissl.utils.distributed_launcher import launch_distributed_on_slurm

    from vissl_aasae.compat import behaviour
    from vissl_aasae.launcher import compose

    folder = tmp_path / "run"
    _, config = compose(
        [
            *TINY,
            "config.DISTRIBUTED.NUM_NODES=1",
            "config.DISTRIBUTED.NUM_PROC_PER_NODE=1",
            "config.SLURM.USE_SLURM=True",
            "config.SLURM.PARTITION=local",
            f"config.SLURM.LOG_FOLDER={tmp_path / 'submitit'}",
            f"config.SLURM.PORT_ID={free_port()}",
            f"config.CHECKPOINT.DIR={folder}",
        ]
    )
    job = launch_distributed_on_slurm(cfg=config, engine_name="train")
    assert isinstance(job, submitit.local.local.LocalJob)
    job.result()  # raises if the job failed
    assert type(job.submission().function) is behaviour.AASAESlurmJob
    records = [json.loads(line) for line in (folder / "aasae_metrics.json").read_text().splitlines()]
    assert [r["iteration"] for r in records] == list(range(6))  # 48 images, batch 8, one process
    assert "AASAE summary: 6 iterations" in job.stdout()


def test_a_slurm_job_holds_the_run_lock_while_it_trains(tmp_path, monkeypatch):
    """The launcher that submits to SLURM exits at once; the job on the first node holds
    CHECKPOINT.DIR's lock while it trains and refuses a folder another run holds."""
    import fcntl
    from types import SimpleNamespace

    import submitit

    from vissl_aasae.compat import behaviour
    from vissl_aasae.errors import RunLocked
    from vissl_aasae.run import RunLock

    folder = tmp_path / "run"
    config = SimpleNamespace(CHECKPOINT=SimpleNamespace(DIR=str(folder)))
    seen = []

    def trains(job):  # VISSL's job body: is the lock held meanwhile?
        fd = os.open(folder / "aasae_run.lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            seen.append("free")
        except BlockingIOError:
            seen.append("held")
        finally:
            os.close(fd)

    monkeypatch.setattr(behaviour.AASAESlurmJob.__mro__[1], "__call__", trains)
    monkeypatch.setattr(submitit, "JobEnvironment", lambda: SimpleNamespace(global_rank=0))
    behaviour.AASAESlurmJob(engine_name="train", config=config)()
    assert seen == ["held"] and not (folder / "aasae_run.lock").exists()  # released after the job
    other = RunLock(str(folder)).acquire()
    try:
        with pytest.raises(RunLocked, match=f"PID {os.getpid()} on host"):
            behaviour.AASAESlurmJob(engine_name="train", config=config)()
    finally:
        other.release()
    assert seen == ["held"]
    monkeypatch.setattr(submitit, "JobEnvironment", lambda: SimpleNamespace(global_rank=1))
    other = RunLock(str(folder)).acquire()  # other nodes of the job take no lock
    try:
        behaviour.AASAESlurmJob(engine_name="train", config=config)()
    finally:
        other.release()
    assert seen == ["held", "held"]
