"""What the autoencoder learns, made visible: training metrics and images (TensorBoard, PNG), the
posterior-agreement pass, the Fig. 5 command and the density (bits/dim) command."""

import copy
import io
import json
import math
import re
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, run_launcher
from PIL import Image
from torch.distributions import Normal, kl_divergence

from vissl_aasae.hooks.aasae_metrics_hook import AASAEMetricsHook
from vissl_aasae.images import label_width, labelled_grid_size, reconstruction_grid
from vissl_aasae.launcher import compose
from vissl_aasae.losses.aasae_loss import AASAELossCriterion
from vissl_aasae.models.posterior import batch_norm_stats_kept
from vissl_aasae.progress import Progress
from vissl_aasae.settings import MetricsSettings
from vissl_aasae.visualize.view_similarity import block_means, nearest_view_top1

NORM_MEAN, NORM_STD = 0.286, 0.353  # the quickstart's Normalize
BATCH, ITERATIONS, IMAGES = 16, 4, 8
TRAIN_OVERRIDES = [
    "config=pretrain/aasae/quickstart",
    "config.DATA.TRAIN.DATA_LIMIT=64",
    f"config.DATA.TRAIN.BATCHSIZE_PER_REPLICA={BATCH}",
    "config.DATA.NUM_DATALOADER_WORKERS=0",
    "config.OPTIMIZER.num_epochs=1",
    "config.HOOKS.TENSORBOARD_SETUP.USE_TENSORBOARD=True",
    "config.HOOKS.TENSORBOARD_SETUP.LOG_PARAMS=False",
    "config.HOOKS.TENSORBOARD_SETUP.LOG_PARAMS_GRADIENTS=False",
    "config.AASAE.METRICS.LOG_FREQUENCY=1",
    "config.AASAE.METRICS.POSTERIOR_FREQUENCY=2",
    "config.AASAE.METRICS.IMAGE_FREQUENCY=2",
    f"config.AASAE.METRICS.NUM_IMAGES={IMAGES}",
]
LOSS_PARTS = ("log_pxz", "kl", "elbo", "bits_per_dim", "log_scale")
POSTERIOR = ("posterior_cos_sim_z", "posterior_cos_sim_mu", "posterior_kl")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 4-iteration quickstart run (the 'quickstart checkpoint' of the commands below)."""
    ckpt = tmp_path_factory.mktemp("quickstart")
    out = run_launcher([*TRAIN_OVERRIDES, f"config.CHECKPOINT.DIR={ckpt}"], cwd=ckpt)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return SimpleNamespace(dir=ckpt, stdout=out.stdout)


def run_tool(name, args, cwd):
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / name), *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


# ---------------------------------------------------------------- training: TensorBoard, JSON, PNG


@pytest.mark.slow
def test_training_logs_scalars_and_images_to_tensorboard(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    records = [json.loads(line) for line in (run.dir / "aasae_metrics.json").read_text().splitlines()]
    assert [r["iteration"] for r in records] == list(range(ITERATIONS))
    events = EventAccumulator(str(run.dir / "tb_logs"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    for name in LOSS_PARTS:
        scalars = events.Scalars(f"AASAE/{name}")
        assert [s.step for s in scalars] == list(range(ITERATIONS))
        assert [s.value for s in scalars] == pytest.approx([r[name] for r in records], rel=1e-6)
    # the posterior pass ran on iterations 0 and 2 only (POSTERIOR_FREQUENCY=2)
    for name in POSTERIOR:
        assert [s.step for s in events.Scalars(f"AASAE/{name}")] == [0, 2]
        assert [name in r for r in records] == [True, False, True, False]
    for r in records:
        assert r["elbo"] == pytest.approx(r["log_pxz"] - r["kl"], rel=1e-5)
        assert r["loss"] == pytest.approx(-r["log_pxz"], rel=1e-5)  # kl_coeff 0
        assert r["bits_per_dim"] == pytest.approx(-(r["log_pxz"] - r["kl"]) / (3 * 32 * 32 * math.log(2)), rel=0.05)
    for r in records[::2]:
        assert -1 <= r["posterior_cos_sim_mu"] <= 1 and -1 <= r["posterior_cos_sim_z"] <= 1
        assert r["posterior_kl"] >= 0
    assert "Training/Loss" in events.Tags()["scalars"]  # VISSL's own scalars share the writer
    height, width = labelled_grid_size(IMAGES, 32, 32)
    images = events.Images("AASAE/reconstructions")
    assert [(i.step, i.height, i.width) for i in images] == [(0, height, width), (2, height, width), (4, height, width)]
    assert f"AASAE summary: {ITERATIONS} iterations" in run.stdout


@pytest.mark.slow
def test_training_writes_png_grids_beside_the_checkpoints(run):
    from vissl_aasae.data.aasae_array import load_arrays

    train_images, _ = load_arrays("npz", "embedded", "train")
    resized = np.stack(
        [np.asarray(Image.fromarray(a).resize((32, 32), Image.BILINEAR), dtype=np.float32) / 255 for a in train_images]
    )  # DATA_LIMIT draws a random subset
    folder = run.dir / "reconstructions"
    assert sorted(p.name for p in folder.iterdir()) == ["iter_000000.png", "iter_000002.png", "iter_000004.png"]
    left = label_width()
    for path in folder.iterdir():
        grid = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
        assert grid.shape == (3 * 98 + 2, left + IMAGES * 98 + 2, 3)  # 32 px tiles drawn at 96 px
        for column in range(IMAGES):
            # row 1, de-normalised, is a training image as the original transform (Resize 32) shows it
            tile = grid[2:98:3, left + 2 + 98 * column : left + 98 + 98 * column : 3]  # one pixel of each 3x3
            assert np.abs(tile[..., 0] - tile[..., 2]).max() < 1.5 / 255  # gray stays gray
            assert np.abs(resized - tile[None, ..., 0]).max(axis=(1, 2)).min() < 1.5 / 255


def test_reconstruction_grid_denormalises_each_row():
    _, config = compose(["config=pretrain/aasae/quickstart", "config.CHECKPOINT.DIR=/tmp/aasae_test_unused"])
    original = torch.full((3, 3, 4, 4), (0.5 - NORM_MEAN) / NORM_STD)  # shows as 0.5
    augmented = torch.full((3, 3, 4, 4), (1.0 - NORM_MEAN) / NORM_STD)  # shows as 1.0
    reconstruction = torch.full((3, 3, 4, 4), -10.0)  # far below 0: clamped to 0
    grid = reconstruction_grid(original, augmented, reconstruction, config, num_images=2)
    assert tuple(grid.shape) == (3, *labelled_grid_size(2, 4, 4)) == (3, 3 * 98 + 2, label_width() + 2 * 98 + 2)
    left = label_width() + 2  # 4 px tiles are drawn at 96 px (x24), after the label column
    assert grid[:, 2:98, left : left + 96] == pytest.approx(torch.full((3, 96, 96), 0.5), abs=1e-6)
    assert grid[:, 100:196, left + 98 : left + 194] == pytest.approx(torch.ones(3, 96, 96), abs=1e-6)
    assert grid[:, 198:294, left : left + 96].abs().max() == 0


def test_reconstruction_png_is_readable_with_labelled_rows(tmp_path):
    """Issue 28: 32 px tiles without labels could not be read; tiles are now >= 96 px (nearest neighbour) and
    the rows are named: original (the target), view (the encoder's augmented input), reconstruction."""
    from vissl_aasae.hooks.aasae_reconstruction_hook import AASAEReconstructionHook
    from vissl_aasae.images import ROW_LABELS

    _, config = compose(["config=pretrain/aasae/quickstart", f"config.CHECKPOINT.DIR={tmp_path}"])
    config.AASAE.METRICS.NUM_IMAGES = 3
    torch.manual_seed(0)
    rows = [torch.randn(4, 3, 32, 32) for _ in range(3)]  # target, encoder input, decoder mean
    hook = AASAEReconstructionHook(config)
    hook._write(rows[0], rows[1], [rows[2]], iteration=7)  # what on_update passes (x_hat is a list)
    png = np.asarray(Image.open(tmp_path / "reconstructions" / "iter_000007.png").convert("RGB"), dtype=np.float32)
    left = label_width()
    assert png.shape == (3 * 98 + 2, left + 3 * 98 + 2, 3)  # 32 px tiles at 96 px: x3
    assert ROW_LABELS == ("original", "view", "reconstruction")
    for row, images in enumerate(rows):
        shown = ((images * NORM_STD + NORM_MEAN).clamp(0, 1) * 255).numpy()  # de-normalised, as saved
        for column in range(3):
            top, x = 2 + 98 * row, left + 2 + 98 * column
            tile = png[top : top + 96, x : x + 96].transpose(2, 0, 1)
            expected = shown[column].repeat(3, axis=1).repeat(3, axis=2)  # each pixel a 3x3 block
            assert np.abs(tile - expected).max() <= 0.51, (row, column)
    # each row's label: black text in the white column, its width that of its word (reconstruction > original > view)
    ink = [int((png[2 + 98 * r : 98 + 98 * r, :left] < 128).any(axis=(0, 2)).sum()) for r in range(3)]
    assert ink[2] > ink[0] > ink[1] > 10, ink
    assert (png[:, :left] > 127).all(axis=2).mean() > 0.8  # the rest of the column is white


# ---------------------------------------------------------------- the posterior pass


@pytest.fixture(scope="module")
def model_and_config(tmp_path_factory):
    from vissl.models import build_model

    _, config = compose(
        [
            "config=pretrain/aasae/quickstart",
            "config.AASAE.METRICS.POSTERIOR_FREQUENCY=3",
            "config.AASAE.METRICS.LOG_FREQUENCY=0",
            f"config.CHECKPOINT.DIR={tmp_path_factory.mktemp('hook')}",
        ]
    )
    torch.manual_seed(0)
    return build_model(config.MODEL, config.OPTIMIZER).train(), config


def _step(model, inputs, target, seed=1):
    """A training forward + loss as VISSL's standard step does it."""
    torch.manual_seed(seed)
    output = model(inputs)[0]
    loss, metrics = AASAELossCriterion()(*output, target)
    return output, loss, metrics


def test_posterior_pass_runs_only_when_due_and_leaves_training_unchanged(model_and_config):
    model, config = model_and_config
    torch.manual_seed(0)
    target = torch.randn(4, 3, 32, 32)
    inputs = target.flip(-1) + 0.1 * torch.randn_like(target)
    # reference: the same step without the hook
    reference = copy.deepcopy(model)
    _, loss, _ = _step(reference, inputs, target)
    loss.backward()
    ref_grads = [p.grad.clone() for p in reference.parameters()]
    ref_buffers = [b.clone() for b in reference.buffers()]

    trunk_calls = []
    handle = model.trunk.register_forward_hook(lambda *args: trunk_calls.append(1))
    hook = AASAEMetricsHook(config)
    try:
        for iteration in range(4):
            output, loss, metrics = _step(model, inputs, target)
            task = SimpleNamespace(
                train=True,
                iteration=iteration,
                max_iteration=4,
                base_model=model,
                device=torch.device("cpu"),
                loss=SimpleNamespace(last_metrics=metrics),
                last_batch=SimpleNamespace(
                    sample={"input": inputs, "target": target}, model_output=output, loss=loss.detach()
                ),
            )
            before, rng = len(trunk_calls), torch.get_rng_state()
            hook.on_forward(task)
            assert len(trunk_calls) - before == (1 if iteration % 3 == 0 else 0), iteration
            assert torch.equal(torch.get_rng_state(), rng)  # z of the pass drawn from a forked generator
            if iteration == 0:
                loss.backward()  # the extra pass must neither break nor change the training step
                for p, g in zip(model.parameters(), ref_grads):
                    assert torch.equal(p.grad, g)
                for b, r in zip(model.buffers(), ref_buffers):
                    assert torch.equal(b, r)
                # the hook's numbers, recomputed independently (training mode, as the hook runs)
                with torch.no_grad():
                    original = copy.deepcopy(model)(target)[0]
                    output = [t.detach() for t in output]
                mu_a, std_a = output[1], torch.exp(output[2] / 2) + 1e-6
                mu_o, std_o = original[1], torch.exp(original[2] / 2) + 1e-6
                expected_kl = kl_divergence(Normal(mu_a, std_a), Normal(mu_o, std_o)).sum(-1).mean()
                expected_cos = F.cosine_similarity(mu_a, mu_o, dim=-1).mean()
                posterior = hook._posterior[1]
                assert float(posterior["posterior_kl"]) == pytest.approx(float(expected_kl), rel=1e-4)
                assert float(posterior["posterior_cos_sim_mu"]) == pytest.approx(float(expected_cos), abs=1e-5)
            hook.on_update(task)
    finally:
        handle.remove()
    records = [json.loads(line) for line in open(hook.log_path)]
    assert [r["iteration"] for r in records] == [0, 3]  # LOG_FREQUENCY=0: only the posterior iterations
    assert all(set(POSTERIOR) <= set(r) for r in records)


def test_batch_norm_stats_kept_restores_buffers(model_and_config):
    model, _ = model_and_config
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    with batch_norm_stats_kept(model), torch.no_grad():
        model.trunk(torch.randn(4, 3, 32, 32) * 5 + 3, [])
        changed = any(not torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert changed  # the pass did move (copies of) the statistics
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


def test_metrics_settings_reject_bad_values():
    _, config = compose(["config=pretrain/aasae/quickstart", "config.CHECKPOINT.DIR=/tmp/aasae_test_unused"])
    config.LOG_FREQUENCY = 7
    settings = MetricsSettings.from_config(config)
    assert (settings.log_frequency, settings.posterior_frequency) == (7, 7)  # null: config.LOG_FREQUENCY
    config.AASAE.METRICS.POSTERIOR_FREQUENCY = 0
    assert MetricsSettings.from_config(config).posterior_frequency == 0  # 0: never
    config.AASAE.METRICS.IMAGE_FREQUENCY = -2
    with pytest.raises(ValueError, match=r"AASAE.METRICS.IMAGE_FREQUENCY=-2"):
        MetricsSettings.from_config(config)


# ---------------------------------------------------------------- progress


def test_progress_reports_rate_and_eta():
    now = [0.0]
    stream = io.StringIO()
    progress = Progress(10, unit="images", label="density", interval=0, stream=stream, clock=lambda: now[0])
    now[0] = 2.0
    progress.update(5)  # 5 images in 2 s
    now[0] = 4.0
    progress.update(5)
    lines = stream.getvalue().splitlines()
    assert lines == [
        "density: 5/10 images (50%), 2.5 images/s, ETA 0:00:02",
        "density: 10/10 images (100%), 2.5 images/s, ETA 0:00:00",
    ]


# ---------------------------------------------------------------- Fig. 5


def test_block_means_of_an_example_major_matrix():
    # 2 examples x 2 views: same-example off-diagonal entries 0.9 and 0.7, different-example 0.1..0.4
    matrix = np.array([[1.0, 0.9, 0.1, 0.2], [0.9, 1.0, 0.3, 0.4], [0.1, 0.3, 1.0, 0.7], [0.2, 0.4, 0.7, 1.0]])
    assert block_means(matrix, 2) == pytest.approx((0.8, 0.25))
    # every view's nearest other view is its pair: 100 %; lower one pair below a stranger's similarity
    assert nearest_view_top1(matrix, 2) == 100.0
    matrix[2, 3] = matrix[3, 2] = 0.35  # view 2 keeps view 3 (0.35 > 0.3); view 3 now nearest to view 1 (0.4)
    assert nearest_view_top1(matrix, 2) == 75.0


@pytest.mark.slow
def test_view_similarity_command_on_the_quickstart_checkpoint(run, tmp_path):
    out = run_tool(
        "aasae_view_similarity.py",
        [
            "--checkpoint",
            str(run.dir),
            "--data",
            "embedded",
            "--examples",
            "16",
            "--views",
            "4",
            "--output",
            str(tmp_path / "fig5.png"),
        ],
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    same = float(re.search(r"same-example mean cosine similarity: ([-\d.]+)", out.stdout).group(1))
    different = float(re.search(r"different-example mean cosine similarity: ([-\d.]+)", out.stdout).group(1))
    print(f"Fig. 5 on the 4-iteration quickstart checkpoint: same {same}, different {different}")
    assert same > different
    assert -1 <= different < same <= 1
    assert Image.open(tmp_path / "fig5.png").size == (640, 540)
    assert "64/64 views" in out.stderr  # progress


def test_commands_reject_a_missing_checkpoint(tmp_path, capsys):
    from vissl_aasae.cli import density_main, view_similarity_main

    assert view_similarity_main(["--checkpoint", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
    assert density_main(["--checkpoint", str(tmp_path), "--num-samples", "2"]) == 2
    assert "holds no checkpoint.torch" in capsys.readouterr().err


# ---------------------------------------------------------------- density / bits per dim


@pytest.fixture(scope="module")
def trained(run):
    from vissl_aasae.visualize.checkpoint import find_checkpoint, load_model, load_run_config
    from vissl_aasae.visualize.data import open_images, view_transform

    checkpoint = find_checkpoint(run.dir)
    config = load_run_config(checkpoint)
    transform = view_transform(config, "original")
    images = open_images(config, "embedded", split="test")
    batch = torch.stack([transform(images[i]) for i in range(4)])
    return load_model(config, checkpoint), batch


@pytest.mark.slow
def test_bits_per_dim_with_one_sample_is_the_reconstruction_and_kl_terms(trained):
    from vissl_aasae.visualize.density import batch_density

    model, batch = trained
    torch.manual_seed(0)
    bits, (x_hat, mu, log_var, z, log_scale) = batch_density(model, AASAELossCriterion(), batch, k=1)
    assert x_hat.shape[0] == 1
    # derived with torch.distributions: log p(x|z) - [log q(z|x) - log p(z)], the one-sample ELBO
    scale = torch.exp(log_scale / 2) + 1e-6
    recon = Normal(x_hat[0], scale).log_prob(batch).flatten(1).sum(-1)
    std = torch.exp(log_var / 2) + 1e-6
    kl_sample = Normal(mu, std).log_prob(z[0]).sum(-1) - Normal(0.0, 1.0).log_prob(z[0]).sum(-1)
    dims = batch[0].numel()
    expected = (-(recon - kl_sample) / (dims * math.log(2))).mean()
    print(f"bits/dim, k=1: {float(bits):.6f} (derived {float(expected):.6f})")
    assert float(bits) == pytest.approx(float(expected), rel=1e-5)
    # and the analytic-KL ELBO is the same quantity in expectation, close for a near-prior posterior
    kl = kl_divergence(Normal(mu, std), Normal(0.0, 1.0)).sum(-1)
    assert float(bits) == pytest.approx(float((-(recon - kl) / (dims * math.log(2))).mean()), rel=0.02)


@pytest.mark.slow
def test_more_importance_samples_tighten_the_bound(trained):
    from vissl_aasae.visualize.density import batch_density

    model, batch = trained
    torch.manual_seed(0)
    bits, (x_hat, mu, log_var, z, log_scale) = batch_density(model, AASAELossCriterion(), batch, k=6)
    assert x_hat.shape[0] == 6 and z.shape[0] == 6
    scale = torch.exp(log_scale / 2) + 1e-6
    std = torch.exp(log_var / 2) + 1e-6
    weights = (
        Normal(x_hat, scale).log_prob(batch).flatten(2).sum(-1)
        + Normal(0.0, 1.0).log_prob(z).sum(-1)
        - Normal(mu, std).log_prob(z).sum(-1)
    )  # (k, B)
    dims = batch[0].numel()
    iwae = -(torch.logsumexp(weights, 0) - math.log(6)) / (dims * math.log(2))
    single = -weights.mean(0) / (dims * math.log(2))  # the mean of the six one-sample estimates
    assert float(bits) == pytest.approx(float(iwae.mean()), rel=1e-5)
    assert (iwae <= single + 1e-9).all()


@pytest.mark.slow
def test_density_command_matches_the_library(run, trained, tmp_path):
    from vissl_aasae.visualize.checkpoint import find_checkpoint, load_run_config
    from vissl_aasae.visualize.data import open_images, view_transform
    from vissl_aasae.visualize.density import evaluate_density

    out = run_tool(
        "aasae_density.py",
        [
            "--checkpoint",
            str(run.dir),
            "--data",
            "embedded",
            "--split",
            "test",
            "--num-samples",
            "3",
            "--limit",
            "8",
            "--batch-size",
            "4",
            "--output",
            str(tmp_path / "density.json"),
        ],
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "density: 8/8 images (100%)" in out.stderr and "ETA" in out.stderr
    result = json.loads((tmp_path / "density.json").read_text())
    assert (result["images"], result["num_samples"], result["dims"]) == (8, 3, 3072)
    assert result["log_px"] == pytest.approx(-result["bits_per_dim"] * 3072 * math.log(2), rel=1e-9)
    config = load_run_config(find_checkpoint(run.dir))
    again = evaluate_density(
        trained[0],
        open_images(config, "embedded", split="test"),
        view_transform(config, "original"),
        k=3,
        batch_size=4,
        limit=8,
        seed=0,
        progress=False,
    )
    print(f"density command: {out.stdout.strip().splitlines()[-1]}")
    assert result["bits_per_dim"] == pytest.approx(again.bits_per_dim, rel=1e-4)


# ---------------------------------------------------------------- issue 16: bad input to the commands


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A run folder as training leaves it (record + checkpoint), made in-process (no training)."""
    from vissl.models import build_model

    from vissl_aasae.interop.checkpoint_io import vissl_checkpoint
    from vissl_aasae.run import write_config

    folder = tmp_path_factory.mktemp("made")
    _, config = compose(
        ["config=pretrain/aasae/quickstart", "config.MODEL.AASAE.LATENT_DIM=16", f"config.CHECKPOINT.DIR={folder}"]
    )
    write_config(config)
    torch.manual_seed(0)
    torch.save(
        vissl_checkpoint(build_model(config.MODEL, config.OPTIMIZER)), folder / "model_final_checkpoint_phase0.torch"
    )
    return folder


def _images(folder, good=3, layout="class"):
    """ImageFolder layout (``folder/cls/*``, as training reads it) or ``flat``; returns the broken file."""
    inner = folder / "cls" if layout == "class" else folder
    inner.mkdir(parents=True)
    for i in range(good):
        Image.fromarray(np.full((28, 28, 3), 40 * i, np.uint8)).save(inner / f"good{i}.png")
    (inner / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return inner / "broken.png"


def test_commands_read_folders_as_training_does(made, tmp_path, capsys, caplog):
    """The inspection commands read a folder through VISSL's disk_folder source, as pretraining does:
    the same images in the same order, and a layout training would refuse is refused in one line."""
    from vissl.data import build_dataset

    from vissl_aasae.cli import density_main
    from vissl_aasae.visualize.checkpoint import load_run_config
    from vissl_aasae.visualize.data import UnreadableImage, open_images

    broken = _images(tmp_path / "ok", good=3)
    config = load_run_config(made / "model_final_checkpoint_phase0.torch")
    images = open_images(config, str(tmp_path / "ok"))
    assert len(images) == 4 and images[1].size == (28, 28) and images[2].getpixel((0, 0)) == (40, 40, 40)
    with pytest.raises(UnreadableImage, match=re.escape(str(broken))), caplog.at_level("WARNING"):
        images[0]  # sorted: broken.png, good0.png, ...
    assert f"Couldn't load: {broken}." in caplog.text  # VISSL's own warning names the file (compat)
    train = copy.deepcopy(config)
    train.DATA.TRAIN.DATA_SOURCES, train.DATA.TRAIN.DATA_PATHS = ["disk_folder"], [str(tmp_path / "ok")]
    train.DATA.TRAIN.DATASET_NAMES, train.DATA.TRAIN.DATA_LIMIT = ["imagenet1k_folder"], -1
    train.DATA.TRAIN.LABEL_SOURCES = []
    assert len(build_dataset(train, "TRAIN")) == len(images)
    _images(tmp_path / "flat", good=2, layout="flat")
    assert density_main(["--checkpoint", str(made), "--data", str(tmp_path / "flat"), "-k", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--data '{tmp_path / 'flat'}'" in err[0] and "<root>/<class>/<image>" in err[0]


def test_density_rejects_zero_samples_in_one_line(made, capsys):
    from vissl_aasae.cli import density_main

    assert density_main(["--checkpoint", str(made), "-k", "0", "--limit", "2"]) == 2  # was a ZeroDivisionError
    assert capsys.readouterr().err.strip().splitlines() == ["error: --num-samples 0 must be a positive integer"]


def test_commands_skip_unreadable_images_naming_them(made, tmp_path, capsys):
    from vissl_aasae.cli import density_main, view_similarity_main

    broken = _images(tmp_path / "images")
    assert (
        density_main(
            [
                "--checkpoint",
                str(made),
                "--data",
                str(tmp_path / "images"),
                "-k",
                "2",
                "--output",
                str(tmp_path / "d.json"),
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert f"warning: 1 unreadable images skipped: {broken}: " in err
    assert json.loads((tmp_path / "d.json").read_text())["images"] == 3
    assert (
        view_similarity_main(
            [
                "--checkpoint",
                str(made),
                "--data",
                str(tmp_path / "images"),
                "--examples",
                "3",
                "--views",
                "2",
                "--output",
                str(tmp_path / "fig.png"),
            ]
        )
        == 0
    )
    assert f"warning: 1 unreadable images skipped: {broken}: " in capsys.readouterr().err
    assert (
        view_similarity_main(
            [
                "--checkpoint",
                str(made),
                "--data",
                str(tmp_path / "images"),
                "--examples",
                "4",
                "--views",
                "2",
                "--output",
                str(tmp_path / "fig.png"),
            ]
        )
        == 2
    )
    assert "--examples 4: only 3 of the 4 images could be read" in capsys.readouterr().err


def test_commands_never_run_code_from_a_checkpoint(made, tmp_path, capsys):
    from vissl_aasae.cli import density_main

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(tmp_path / 'PWNED')!r}, 'w').write('pwned')",))

    run = tmp_path / "run"
    run.mkdir()
    (run / "train_config.yaml").write_bytes((made / "train_config.yaml").read_bytes())
    evil = run / "model_final_checkpoint_phase0.torch"
    torch.save({"classy_state_dict": {"base_model": {"model": {"trunk": {}, "heads": {}}}}, "meta": Payload()}, evil)
    assert density_main(["--checkpoint", str(run), "-k", "2", "--limit", "2"]) == 2
    assert capsys.readouterr().err.strip().startswith(f"error: checkpoint '{evil}' was not loaded: it holds exec")
    assert not (tmp_path / "PWNED").exists()
    evil.write_bytes((made / "model_final_checkpoint_phase0.torch").read_bytes()[:5000])  # truncated
    assert density_main(["--checkpoint", str(run), "-k", "2", "--limit", "2"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"error: checkpoint '{evil}' is truncated or corrupt (an incomplete zip archive: no end record)"
    )
