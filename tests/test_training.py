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


def test_quickstart_runs_end_to_end_and_checkpoints(tmp_path):
    """The README's main job, shortened to 2 epochs of 2 iterations: metrics, summary, checkpoints
    (that the loss falls: test_quickstart_loss_falls_below_constant_prediction)."""
    overrides = ["config=pretrain/aasae/quickstart", "config.DATA.TRAIN.DATA_LIMIT=64", "config.LOG_FREQUENCY=1",
                 "config.AASAE.METRICS.POSTERIOR_FREQUENCY=0", f"config.CHECKPOINT.DIR={tmp_path}"]
    out = run_launcher(overrides, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "aasae_metrics.json").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [0, 1, 2, 3]
    assert all(r["loss"] == pytest.approx(-r["log_pxz"], rel=1e-4) for r in records)
    assert "AASAE summary: 4 iterations, loss " in out.stdout
    assert "(mean of iteration 0) -> " in out.stdout and "(mean of iteration 3), checkpoints in" in out.stdout
    assert (tmp_path / "model_phase0.torch").exists()
    assert (tmp_path / "model_final_checkpoint_phase1.torch").exists()


def constant_prediction_loss() -> float:
    """The loss of the best input-independent flat prediction (the global mean, ~0 after
    normalisation) on the quickstart's targets, in closed form: sum over 3x32x32 pixels of
    0.5 log(2 pi) + 0.5 (x - mean)^2 (log_scale 0, so unit variance)."""
    import math

    import numpy as np
    from PIL import Image
    from torchvision import transforms

    from vissl_aasae.data.aasae_array import EMBEDDED

    images = np.load(EMBEDDED)["train_images"][:960]
    to_target = transforms.Compose([transforms.Resize(32), transforms.ToTensor(),
                                    transforms.Normalize([0.286] * 3, [0.353] * 3)])
    x = torch.stack([to_target(Image.fromarray(im).convert("RGB")) for im in images])
    return 0.5 * math.log(2 * math.pi) * x[0].numel() + 0.5 * ((x - x.mean()) ** 2).sum((1, 2, 3)).mean().item()


@pytest.mark.slow
def test_quickstart_loss_falls_below_constant_prediction(tmp_path):
    """The quickstart recipe, 60 iterations of batch 16 (~1 min on 2 cores): the mean loss of the
    last 10 iterations is at least 8 % below what a constant image would score (~4246 nats), i.e. the
    decoder reconstructs the images, not their average.  Measured: 60 iterations fall from ~7600
    (random decoder) through ~4250 (constant prediction) to ~3750; with PyTorch's default decoder init
    (MODEL.AASAE.DECODER_INIT=pytorch, the authors' code) the loss stays at ~4250 for 80 iterations."""
    overrides = ["config=pretrain/aasae/quickstart", "config.DATA.TRAIN.DATA_LIMIT=960",
                 "config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=16", "config.OPTIMIZER.num_epochs=1",
                 "config.LOG_FREQUENCY=1", "config.AASAE.METRICS.POSTERIOR_FREQUENCY=0",
                 "config.AASAE.METRICS.NUM_IMAGES=0", f"config.CHECKPOINT.DIR={tmp_path}"]
    out = run_launcher(overrides, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    losses = [json.loads(line)["loss"] for line in (tmp_path / "aasae_metrics.json").read_text().splitlines()]
    assert len(losses) == 60
    constant = constant_prediction_loss()
    assert 4200 < constant < 4300
    last = sum(losses[-10:]) / 10
    print(f"constant prediction {constant:.1f}, first 10 {sum(losses[:10]) / 10:.1f}, last 10 {last:.1f}")
    assert last < 0.92 * constant
    assert f"(mean of iterations 54-59)" in out.stdout
