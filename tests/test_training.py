"""Each variant composes and trains one step through VISSL's trainer; the original-image pass; progress."""

import json
import logging
from types import SimpleNamespace

import pytest
import torch
from conftest import CPU_OVERRIDES, run_launcher
from fake_data import write_cifar10

VARIANTS = ["aasae", "ae", "aaae", "vae"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_cifar10(root / "cifar10")
    return root


# each data set's config as the README writes it, with the same assertions (the loss's closed form,
# the heads): tests/test_documented_commands.py (AASAE on all three, the VAE on CIFAR-10, the
# quickstart end to end); here the variants no document shows, on CIFAR-10
@pytest.mark.slow
@pytest.mark.parametrize("variant", [v for v in VARIANTS if v not in ("aasae", "vae")])
def test_variant_runs_one_step_on_cifar10(tmp_path, data_root, variant):
    ckpt_dir = tmp_path / "ckpt"
    overrides = [
        "config=pretrain/aasae/cifar10",
        f"+config/pretrain/aasae/variant={variant}",
        *CPU_OVERRIDES,
        f"config.DATA.TRAIN.DATA_PATHS=[{data_root / 'cifar10'}]",
        "config.DATA.TRAIN.HOLD_OUT=5",  # of the 20 fake images
        "config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=2",
        "config.DATA.TRAIN.DATA_LIMIT=2",
        "config.OPTIMIZER.num_epochs=1",
        "config.LOG_FREQUENCY=1",
        f"config.CHECKPOINT.DIR={ckpt_dir}",
    ]
    out = run_launcher(overrides, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    record = json.loads((ckpt_dir / "aasae_metrics.json").read_text().splitlines()[0])
    kl_coeff = 1.0 if variant == "vae" else 0.0
    assert record["loss"] == pytest.approx(-record["log_pxz"] + kl_coeff * record["kl"], rel=1e-4)
    assert ("bits_per_dim" in record) == (variant in ("aasae", "vae"))
    heads = torch.load(ckpt_dir / "checkpoint.torch", map_location="cpu", weights_only=False)["classy_state_dict"][
        "base_model"
    ]["model"]["heads"]
    assert ("0.fc_log_var.weight" in heads) == (variant in ("aasae", "vae"))


def trunk_and_projection_bn(checkpoint_path):
    model = torch.load(checkpoint_path, map_location="cpu", weights_only=False)["classy_state_dict"]["base_model"][
        "model"
    ]
    return model["trunk"]["_feature_blocks.bn1.num_batches_tracked"].item(), model["heads"][
        "0.mlp.1.num_batches_tracked"
    ].item()


@pytest.mark.slow
def test_original_image_pass_and_max_iterations(tmp_path):
    """MODEL.AASAE.ORIGINAL_IMAGE_PASS (the reference): every step, one more train-mode pass of trunk
    and projection on the original images, so every BatchNorm counts two batches per iteration;
    the posterior metrics reuse it (no third pass).  AASAE.MAX_ITERATIONS=3 with 2 iterations per
    epoch stops inside the second epoch, whose checkpoint is the final one."""
    common = [
        "config=pretrain/aasae/quickstart",
        "config.DATA.TRAIN.DATA_LIMIT=64",
        "config.LOG_FREQUENCY=1",
        "config.AASAE.METRICS.POSTERIOR_FREQUENCY=1",
        "config.AASAE.METRICS.NUM_IMAGES=0",
        "config.DATA.NUM_DATALOADER_WORKERS=0",
    ]
    on = tmp_path / "on"
    out = run_launcher(
        [*common, "config.OPTIMIZER.num_epochs=3", "config.AASAE.MAX_ITERATIONS=3", f"config.CHECKPOINT.DIR={on}"],
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    records = [json.loads(line) for line in (on / "aasae_metrics.json").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [0, 1, 2]
    assert all("posterior_cos_sim_z" in r for r in records)
    assert (on / "model_final_checkpoint_phase1.torch").exists() and not (on / "model_phase2.torch").exists()
    assert trunk_and_projection_bn(on / "model_final_checkpoint_phase1.torch") == (6, 6)

    off = tmp_path / "off"
    out = run_launcher(
        [
            *common,
            "config.OPTIMIZER.num_epochs=1",
            "config.MODEL.AASAE.ORIGINAL_IMAGE_PASS=False",
            f"config.CHECKPOINT.DIR={off}",
        ],
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    records = [json.loads(line) for line in (off / "aasae_metrics.json").read_text().splitlines()]
    assert len(records) == 2 and all("posterior_cos_sim_z" in r for r in records)
    # the metrics' own pass leaves the statistics as they were
    assert trunk_and_projection_bn(off / "model_final_checkpoint_phase0.torch") == (2, 2)


def test_max_iterations_beyond_num_epochs_is_refused(tmp_path, launch_here):
    out = launch_here(
        [
            "config=pretrain/aasae/quickstart",
            "config.DATA.TRAIN.DATA_LIMIT=64",
            *CPU_OVERRIDES,
            "config.OPTIMIZER.num_epochs=1",
            "config.AASAE.MAX_ITERATIONS=5",
            f"config.CHECKPOINT.DIR={tmp_path}",
        ],
        cwd=tmp_path,
    )
    assert out.returncode == 2  # refused by the launcher's check, before any work
    assert (
        "error: AASAE.MAX_ITERATIONS=5 needs 3 epochs of 2 iterations (64 images, global batch 32) but "
        "OPTIMIZER.num_epochs=1" in out.stderr
    )


# ---------------------------------------------------------------- issue 28: the training progress line
def metrics_hook(tmp_path, clock, log_frequency):
    from vissl_aasae.hooks.aasae_metrics_hook import AASAEMetricsHook
    from vissl_aasae.launcher import compose

    overrides = [f"config.AASAE.METRICS.LOG_FREQUENCY={log_frequency}", "config.AASAE.METRICS.POSTERIOR_FREQUENCY=0"]
    _, config = compose(["config=pretrain/aasae/quickstart", f"config.CHECKPOINT.DIR={tmp_path}", *overrides])
    return AASAEMetricsHook(config, clock=clock)


def progress_lines(tmp_path, caplog, log_frequency, seconds_per_iteration, iterations=100):
    """The hook's console lines of a run of ``iterations`` taking ``seconds_per_iteration`` each (a fake clock)."""
    now = [0.0]
    hook = metrics_hook(tmp_path, lambda: now[0], log_frequency)
    task = SimpleNamespace(
        train=True,
        iteration=0,
        max_iteration=iterations,
        device=torch.device("cpu"),
        loss=SimpleNamespace(last_metrics={"log_pxz": torch.tensor(-1.0)}),
        last_batch=SimpleNamespace(loss=None),
    )
    hook.on_start(task)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        for iteration in range(1, iterations):
            now[0] = iteration * seconds_per_iteration
            task.iteration, task.last_batch.loss = iteration, torch.tensor(float(iteration))
            hook.on_update(task)
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("aasae ")]


def test_training_progress_line_at_least_every_30_seconds(tmp_path, caplog):
    from vissl_aasae.hooks.aasae_metrics_hook import PROGRESS_SECONDS

    assert PROGRESS_SECONDS == 30
    # 7 s per iteration, LOG_FREQUENCY 1000: a line on the first iteration 30 s after the last one
    lines = progress_lines(tmp_path, caplog, log_frequency=1000, seconds_per_iteration=7.0)
    assert [int(line.split()[1].split("=")[1]) for line in lines] == list(range(5, 100, 5))
    assert lines[0] == "aasae iteration=5 loss=5 [training: 5/100 iterations (5%), 0.143 iterations/s, ETA 0:11:05]"
    assert not (tmp_path / "aasae_metrics.json").exists()  # progress only: no metrics record
    # a fast run logs at LOG_FREQUENCY only (each record line restarts the 30 s)
    lines = progress_lines(tmp_path, caplog, log_frequency=10, seconds_per_iteration=1.0)
    assert [line.split()[1] for line in lines] == [f"iteration={i}" for i in range(10, 100, 10)]
    assert all("log_pxz=-1" in line for line in lines)
    # LOG_FREQUENCY 0 (never) and a slow run: still a line every 30 s
    lines = progress_lines(tmp_path, caplog, log_frequency=0, seconds_per_iteration=11.0, iterations=10)
    assert [line.split()[1] for line in lines] == ["iteration=3", "iteration=6", "iteration=9"]


# ---------------------------------------------------------------- issue 28: aasae_metrics.json after a resume
def test_a_resumed_run_replaces_the_records_of_the_iterations_it_makes_again(tmp_path, monkeypatch):
    path = tmp_path / "aasae_metrics.json"
    first = [{"iteration": i, "loss": 100.0 + i, "log_pxz": -1.0} for i in range(10)]
    # the first launch logged iterations 0-9 and was killed while writing the line of iteration 10
    path.write_text("".join(json.dumps(r) + "\n" for r in first) + '{"iteration": 10, "lo')
    hook = metrics_hook(tmp_path, lambda: 0.0, log_frequency=1)
    task = SimpleNamespace(
        train=True,
        iteration=6,  # resumed from the checkpoint of iteration 6
        max_iteration=12,
        device=torch.device("cpu"),
        loss=SimpleNamespace(last_metrics={"log_pxz": torch.tensor(-2.0)}),
        last_batch=SimpleNamespace(loss=None),
    )
    hook.on_start(task)
    assert [json.loads(line) for line in path.read_text().splitlines()] == first[:6]
    for iteration in range(6, 12):
        task.iteration, task.last_batch.loss = iteration, torch.tensor(200.0 + iteration)
        hook.on_update(task)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["iteration"] for r in records] == list(range(12))  # each iteration once
    assert [r["loss"] for r in records] == [100.0 + i for i in range(6)] + [200.0 + i for i in range(6, 12)]
    assert [r["log_pxz"] for r in records] == [-1.0] * 6 + [-2.0] * 6  # the newest values

    # killed while the next resume (at iteration 9) rewrites the file: the file stays whole, no temporary left
    def killed(fd):
        raise KeyboardInterrupt

    before = path.read_text()
    monkeypatch.setattr("vissl_aasae.checkpoints.os.fsync", killed)
    task.iteration = 9
    with pytest.raises(KeyboardInterrupt):
        metrics_hook(tmp_path, lambda: 0.0, log_frequency=1).on_start(task)
    assert path.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["aasae_metrics.json"]
    monkeypatch.undo()
    metrics_hook(tmp_path, lambda: 0.0, log_frequency=1).on_start(task)
    assert [json.loads(line)["iteration"] for line in path.read_text().splitlines()] == list(range(9))
