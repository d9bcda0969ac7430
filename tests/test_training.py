"""Each variant x data set composes and trains one step through VISSL's trainer; the quickstart learns."""
import json

import pytest
import torch

from conftest import CPU_OVERRIDES, run_launcher
from fake_data import write_cifar10, write_image_folder, write_stl10

VARIANTS = ["aasae", "ae", "aaae", "vae"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_cifar10(root / "cifar10")
    write_stl10(root / "stl10")
    write_image_folder(root / "imagenet" / "train", size=256)
    return root


DATASETS = {
    # the dataset's own model except ResNet-18 for the 96/224 px ones, to keep CPU time down
    "cifar10": ("cifar10", []),
    "stl10": ("stl10", ["+config/pretrain/aasae/models=resnet18"]),
    "imagenet": ("imagenet/train", ["+config/pretrain/aasae/models=resnet18"]),
}


@pytest.mark.parametrize("dataset", sorted(DATASETS))
@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_on_dataset_runs_one_step(tmp_path, data_root, dataset, variant):
    path, extra = DATASETS[dataset]
    ckpt_dir = tmp_path / "ckpt"
    overrides = [
        f"config=pretrain/aasae/{dataset}",
        f"+config/pretrain/aasae/variant={variant}",
        *extra,
        *CPU_OVERRIDES,
        f"config.DATA.TRAIN.DATA_PATHS=[{data_root / path}]",
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
    heads = torch.load(ckpt_dir / "checkpoint.torch", map_location="cpu", weights_only=False)[
        "classy_state_dict"]["base_model"]["model"]["heads"]
    assert ("0.fc_log_var.weight" in heads) == (variant in ("aasae", "vae"))


def heldout_loss(config, trunk_and_heads, n=64):
    """AASAE loss of a model on the first n embedded test images (original view in, eval mode, fixed seed)."""
    import numpy as np

    from vissl.models import build_model

    from vissl_aasae.losses.aasae_loss import AASAELoss

    torch.manual_seed(1)
    model = build_model(config.MODEL, config.OPTIMIZER)
    if trunk_and_heads is not None:
        model.trunk.load_state_dict(trunk_and_heads["trunk"])
        model.heads.load_state_dict(trunk_and_heads["heads"])
    model.eval()
    images = np.load(vissl_aasae_embedded())["test_images"][:n]
    x = torch.tensor(images).float().div(255)[:, None]
    x = torch.nn.functional.interpolate(x, size=32, mode="bilinear").repeat(1, 3, 1, 1).sub(0.286).div(0.353)
    with torch.no_grad():
        torch.manual_seed(2)
        return AASAELoss.from_config(config.LOSS.aasae_loss)(model(x)[0], x).item()


def vissl_aasae_embedded():
    from vissl_aasae.data.aasae_array import EMBEDDED

    return EMBEDDED


def test_quickstart_loss_falls_and_checkpoints(tmp_path):
    """The README's main job, shortened (24 iterations): checkpoints per epoch, and the trained model
    reconstructs held-out images better than a randomly initialised one."""
    from vissl_aasae.launcher import compose

    overrides = ["config=pretrain/aasae/quickstart", "config.DATA.TRAIN.DATA_LIMIT=256",
                 "config.OPTIMIZER.num_epochs=3", "config.LOG_FREQUENCY=1", f"config.CHECKPOINT.DIR={tmp_path}"]
    out = run_launcher(overrides, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "aasae_metrics.json").read_text().splitlines()]
    assert [r["iteration"] for r in records] == list(range(24))
    assert "AASAE summary: 24 iterations" in out.stdout
    assert (tmp_path / "model_phase0.torch").exists() and (tmp_path / "model_phase1.torch").exists()
    final = torch.load(tmp_path / "model_final_checkpoint_phase2.torch", map_location="cpu", weights_only=False)
    _, config = compose(overrides)
    trained = heldout_loss(config, final["classy_state_dict"]["base_model"]["model"])
    untrained = heldout_loss(config, None)
    assert trained < 0.99 * untrained, (trained, untrained)
