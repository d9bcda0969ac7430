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
    (that the loss falls: tests/test_evaluation.py::test_quickstart_loss_falls_below_constant_prediction)."""
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

