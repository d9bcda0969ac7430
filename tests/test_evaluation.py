"""Evaluation protocols: kNN / linear-probe math, trunk loading and its mismatch check, every
benchmark config run for one iteration on CPU on tiny data in its on-disk format, and the
quickstart checkpoint evaluated on real held-out Fashion-MNIST images."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import CPU_OVERRIDES, REPO, run_launcher
from fake_data import write_image_folder

from vissl_aasae.errors import ConfigError
from vissl_aasae.evaluation import filelists
from vissl_aasae.evaluation.eval_config_check import check_evaluation_config
from vissl_aasae.evaluation.frozen_trunk import build_eval_model
from vissl_aasae.evaluation.knn import knn_accuracy, knn_predict_scores
from vissl_aasae.evaluation.linear_probe import linear_probe_accuracy
from vissl_aasae.launcher import compose

EVALUATE = REPO / "benchmarks" / "evaluate.py"


# --------------------------------------------------------------------------- kNN and linear probe


def test_knn_votes_are_weighted_by_cosine_similarity():
    # test point along x; two class-1 neighbours close to it, three class-0 neighbours far from it
    train = torch.tensor([[1.0, 0.1], [1.0, -0.1], [0.0, 1.0], [0.1, 1.0], [-0.1, 1.0]])
    labels = torch.tensor([1, 1, 0, 0, 0])
    test = torch.tensor([[2.0, 0.0]])  # the norm must not matter (cosine)
    scores = knn_predict_scores(train, labels, test, k=5, temperature=0.1, num_classes=2)
    sims = torch.nn.functional.normalize(train, dim=1) @ torch.tensor([1.0, 0.0])
    expected = torch.stack([(sims[2:] / 0.1).exp().sum(), (sims[:2] / 0.1).exp().sum()])
    assert torch.allclose(scores[0], expected, rtol=1e-5)
    assert scores[0].argmax() == 1  # weighted vote wins although class 0 has the majority
    # a huge temperature makes it a plain majority vote
    flat = knn_predict_scores(train, labels, test, k=5, temperature=1e6, num_classes=2)
    assert flat[0].argmax() == 0
    # k=2: only the two class-1 neighbours vote
    assert knn_accuracy(train, labels, test, torch.tensor([1]), k=2)["top1"] == 100.0


def test_knn_and_linear_probe_on_separable_and_on_random_labels():
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(5, 32, generator=gen) * 3
    y_train, y_test = torch.arange(500) % 5, torch.arange(200) % 5
    x_train = centers[y_train] + torch.randn(500, 32, generator=gen)
    x_test = centers[y_test] + torch.randn(200, 32, generator=gen)
    assert knn_accuracy(x_train, y_train, x_test, y_test, k=20)["top1"] > 95
    settings = {"EPOCHS": 20}
    assert linear_probe_accuracy(x_train, y_train, x_test, y_test, settings)["top1"] > 95
    shuffled = y_train[torch.randperm(500, generator=gen)]
    assert linear_probe_accuracy(x_train, shuffled, x_test, y_test, settings)["top1"] < 40
    assert knn_accuracy(x_train, shuffled, x_test, y_test, k=20)["top1"] < 40


# --------------------------------------------------------------------------- checkpoints


def save_vissl_checkpoint(model, path):
    """A checkpoint in the layout VISSL's trainer writes (what the plugin's pretraining produces)."""
    torch.save(
        {
            "type": "consolidated",
            "phase_idx": 0,
            "iteration": 1,
            "iteration_num": 1,
            "train_phase_idx": 0,
            "loss": {},
            "classy_state_dict": {
                "base_model": {
                    "model": {"trunk": model.trunk.state_dict(), "heads": model.heads.state_dict()},
                    "meta": {},
                },
            },
        },
        path,
    )
    return path


def pretrained_model(dataset, depth=18):
    """The plugin's pretraining model (trunk + projection + decoder) of pretrain/aasae/<dataset>."""
    from vissl.models import build_model

    _, config = compose(
        [
            f"config=pretrain/aasae/{dataset}",
            f"config.MODEL.TRUNK.AASAE_RESNET.DEPTH={depth}",
            "config.CHECKPOINT.DIR=/tmp/aasae_eval_unused",
        ]
    )
    torch.manual_seed(1)
    model = build_model(config.MODEL, config.OPTIMIZER)
    with torch.no_grad():  # distinctive BN statistics, to see that buffers are loaded too
        for name, buf in model.trunk.named_buffers():
            if name.endswith("running_mean"):
                buf.uniform_(-1, 1)
    return model


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    return {
        stem: save_vissl_checkpoint(pretrained_model(dataset), root / f"{stem}.torch")
        for stem, dataset in (("cifar", "cifar10"), ("stl10", "stl10"), ("imagenet", "imagenet"))
    }


# linear/cifar10 evaluates pretrain/aasae/cifar10's ResNet-50; these tests' checkpoints are ResNet-18
R18_CIFAR = ["config.MODEL.TRUNK.AASAE_RESNET.DEPTH=18", "config.MODEL.HEAD.PARAMS=[[mlp,{dims:[512,10]}]]"]


def eval_config(name, ckpt, *extra, ckpt_dir="/tmp/aasae_eval_unused"):
    return compose(
        [
            f"config=benchmark/aasae/{name}",
            f"config.MODEL.WEIGHTS_INIT.PARAMS_FILE={ckpt}",
            f"config.CHECKPOINT.DIR={ckpt_dir}",
            *extra,
        ]
    )[1]


def test_trunk_is_loaded_exactly_and_pretraining_heads_are_not(checkpoints):
    saved = torch.load(checkpoints["cifar"], weights_only=False)["classy_state_dict"]["base_model"]["model"]
    config = eval_config("linear/cifar10", checkpoints["cifar"], *R18_CIFAR)
    model = build_eval_model(config)
    trunk = model.trunk.base_model.state_dict()  # frozen feature-extractor trunk
    assert set(trunk) == set(saved["trunk"])
    for key, value in saved["trunk"].items():
        assert torch.equal(trunk[key], value), key
    assert not any(p.requires_grad for p in model.trunk.parameters())
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["heads.0.clf.0.weight", "heads.0.clf.0.bias"]
    assert model.heads[0].clf[0].weight.shape == (10, 512)


def test_pretraining_head_with_the_evaluation_head_name_is_not_copied(tmp_path, checkpoints):
    """Fine-tuning (no eval mode) would copy any head key VISSL finds: SKIP_LAYERS [heads] prevents it."""
    ckpt = torch.load(checkpoints["imagenet"], weights_only=False)
    heads = ckpt["classy_state_dict"]["base_model"]["model"]["heads"]
    heads["0.clf.0.weight"] = torch.full((1000, 512), 7.0)
    heads["0.clf.0.bias"] = torch.full((1000,), 7.0)
    torch.save(ckpt, tmp_path / "colliding.torch")
    extra = ["config.MODEL.TRUNK.AASAE_RESNET.DEPTH=18", "config.MODEL.HEAD.PARAMS=[[mlp,{dims:[512,1000]}]]"]
    model = build_eval_model(eval_config("semi_supervised/imagenet1k_1percent", tmp_path / "colliding.torch", *extra))
    assert not torch.any(model.heads[0].clf[0].weight == 7.0)
    assert torch.equal(
        model.trunk._feature_blocks.conv1.weight,
        ckpt["classy_state_dict"]["base_model"]["model"]["trunk"]["_feature_blocks.conv1.weight"],
    )


ZOO_TRUNK = REPO / "model_zoo" / "fashion_mnist" / "aasae_rn18w025_s0.pth"


def test_a_model_zoo_trunk_is_evaluated_as_aasae_features_reads_it(tmp_path):
    """Issue 28: aasae-eval takes the .pth of model_zoo/ (torchvision names, no VISSL layout): read weights-only
    by the loader of aasae-features (checkpoints.load + trunk_state_dict), then checked and copied as usual."""
    from vissl_aasae.interop.feature_extraction import build_trunk

    quarter = "config.MODEL.TRUNK.AASAE_RESNET.WIDTH_MULTIPLIER=0.25"
    model = build_eval_model(eval_config("knn/quickstart", ZOO_TRUNK, quarter))
    published = torch.load(ZOO_TRUNK, weights_only=True)
    trunk = model.trunk.base_model.state_dict()
    assert len(trunk) == len(published) == 120
    for key, value in published.items():
        assert torch.equal(trunk["_feature_blocks." + key], value), key
    features_trunk = build_trunk(compose(["config=pretrain/aasae/quickstart", quarter])[1], str(ZOO_TRUNK))
    assert all(torch.equal(v, trunk[k]) for k, v in features_trunk.state_dict().items())  # the same weights
    # the quickstart's full-width trunk: refused, naming what the file holds
    with pytest.raises(ConfigError, match=r"ResNet-18 \(WIDTH_MULTIPLIER 0.25\), 3x3 stem"):
        build_eval_model(eval_config("knn/quickstart", ZOO_TRUNK))


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {_RunsCode.marker}",))


def test_a_downloaded_trunk_is_never_unpickled_with_code(tmp_path):
    _RunsCode.marker = tmp_path / "ran"
    state = dict(torch.load(ZOO_TRUNK, weights_only=True))
    state["conv1.weight"] = _RunsCode()
    torch.save(state, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match=r"evil.pth.*not on the allow-list"):
        build_eval_model(eval_config("knn/quickstart", tmp_path / "evil.pth"))
    assert not _RunsCode.marker.exists()


@pytest.mark.parametrize(
    "name, extra, expected",
    [
        # ResNet-18 CIFAR checkpoint into a ResNet-34 trunk: VISSL alone would leave layer1.2... random
        (
            "linear/cifar10",
            [*R18_CIFAR, "config.MODEL.TRUNK.AASAE_RESNET.DEPTH=34"],
            ["96 trunk keys missing from the checkpoint: [_feature_blocks.layer1.2.bn1.bias,", "... (88 more)"],
        ),
        # same depth, other stem: the first conv differs
        (
            "linear/cifar10",
            [*R18_CIFAR, "config.MODEL.TRUNK.AASAE_RESNET.STEM=stl10"],
            [
                "1 trunk keys with another shape",
                "_feature_blocks.conv1.weight (checkpoint [64, 3, 3, 3] vs model [64, 3, 7, 7])",
            ],
        ),
        # the STL-10 default trunk is a ResNet-50
        ("linear/stl10", [], ["_feature_blocks.layer1.0.conv3.weight", "ResNet-18 (WIDTH_MULTIPLIER 1), 3x3 stem"]),
    ],
)
def test_mismatched_trunk_is_refused_naming_the_keys(checkpoints, name, extra, expected):
    config = eval_config(name, checkpoints["cifar"], *extra)
    with pytest.raises(ConfigError) as err:
        check_evaluation_config(config)
    message = str(err.value)
    assert message.startswith(f"MODEL.WEIGHTS_INIT.PARAMS_FILE='{checkpoints['cifar']}': its trunk does not match")
    for part in expected:
        assert part in message


def test_checkpoint_of_a_deeper_trunk_is_refused_naming_the_extra_keys(tmp_path):
    ckpt = save_vissl_checkpoint(pretrained_model("cifar10", depth=34), tmp_path / "rn34.torch")
    extra_keys = r"checkpoint trunk keys the model lacks: \[_feature_blocks\.layer1\.2\.bn1\.bias"
    with pytest.raises(ConfigError, match=extra_keys):
        check_evaluation_config(eval_config("linear/cifar10", ckpt, *R18_CIFAR))


@pytest.mark.parametrize(
    "name, pretrain, size, extra",
    [
        ("linear/cifar10", "cifar10", 32, []),
        ("linear/stl10", "stl10", 96, []),
        ("linear/imagenet1k", "imagenet", 224, []),
        ("semi_supervised/imagenet1k_10percent", "imagenet", 224, []),
    ],
)
def test_resnet50_trunks_of_each_stem_load_and_classify(tmp_path, name, pretrain, size, extra):
    """The paper's ResNet-50 trunks (CIFAR, STL-10, ImageNet stems) from a pretraining checkpoint of this plugin."""
    from vissl.models.trunks import MODEL_TRUNKS_REGISTRY

    _, pre = compose(
        [
            f"config=pretrain/aasae/{pretrain}",
            "config.MODEL.TRUNK.AASAE_RESNET.DEPTH=50",
            "config.CHECKPOINT.DIR=/tmp/aasae_eval_unused",
        ]
    )
    trunk = MODEL_TRUNKS_REGISTRY["aasae_resnet"](pre.MODEL, "aasae_resnet")
    model = type("Pretrained", (), {"trunk": trunk, "heads": torch.nn.ModuleList()})
    ckpt = save_vissl_checkpoint(model, tmp_path / "rn50.torch")
    extra = extra + (["config.DATA.TRAIN.LABEL_PATHS=[]"] if name.startswith("semi") else [])
    config = eval_config(name, ckpt, *extra)
    check_evaluation_config(config)  # the launcher's pre-flight check accepts it
    evaluation = build_eval_model(config).eval()
    loaded = evaluation.trunk.base_model if config.MODEL.FEATURE_EVAL_SETTINGS.EVAL_MODE_ON else evaluation.trunk
    assert torch.equal(loaded._feature_blocks.layer4[2].conv3.weight, trunk._feature_blocks.layer4[2].conv3.weight)
    with torch.no_grad():
        logits = evaluation(torch.randn(2, 3, size, size))[0]
    assert logits.shape == (2, config.MODEL.HEAD.PARAMS[0][1]["dims"][1])


def test_head_size_must_match_the_trunk(checkpoints):
    config = eval_config("linear/cifar10", checkpoints["cifar"], "config.MODEL.TRUNK.AASAE_RESNET.DEPTH=18")
    with pytest.raises(ConfigError, match=r"MODEL.HEAD.PARAMS\[0\] \(mlp\) dims\[0\]=2048 but the trunk \(ResNet-18"):
        check_evaluation_config(config)


@pytest.mark.slow
def test_cpu_runner_refuses_a_mismatched_checkpoint(tmp_path, checkpoints):
    out = subprocess.run(
        [sys.executable, str(EVALUATE), "--checkpoint", str(checkpoints["stl10"]), f"config.CHECKPOINT.DIR={tmp_path}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "_feature_blocks.conv1.weight (checkpoint [64, 3, 7, 7] vs model [64, 3, 3, 3])" in out.stderr


@pytest.mark.slow
def test_launcher_refuses_a_mismatched_checkpoint(tmp_path, checkpoints):
    out = run_launcher(
        [
            "config=benchmark/aasae/linear/cifar10",
            f"config.MODEL.WEIGHTS_INIT.PARAMS_FILE={checkpoints['stl10']}",
            *R18_CIFAR,
            *CPU_OVERRIDES,
            f"config.CHECKPOINT.DIR={tmp_path / 'ckpt'}",
            "config.DATA.TRAIN.DATA_PATHS=[embedded]",
            "config.DATA.TRAIN.DATASET_NAMES=[npz]",
            "config.DATA.TEST.DATA_PATHS=[embedded]",
            "config.DATA.TEST.DATASET_NAMES=[npz]",
        ],
        cwd=tmp_path,
    )
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    assert "error: MODEL.WEIGHTS_INIT.PARAMS_FILE=" in out.stderr
    assert "_feature_blocks.conv1.weight (checkpoint [64, 3, 7, 7] vs model [64, 3, 3, 3])" in out.stderr


# every benchmark config and the pretraining config whose checkpoint it evaluates (its header says so)
BENCHMARK_OF = {
    "linear/cifar10": "cifar10",
    "knn/cifar10": "cifar10",
    "linear/stl10": "stl10",
    "knn/stl10": "stl10",
    "linear/imagenet1k": "imagenet",
    "knn/imagenet1k": "imagenet",
    "linear/places205": "imagenet",
    "semi_supervised/imagenet1k_1percent": "imagenet",
    "semi_supervised/imagenet1k_10percent": "imagenet",
    "knn/quickstart": "quickstart",
}


@pytest.fixture(scope="module")
def default_checkpoints(tmp_path_factory):
    """A checkpoint of each pretraining config exactly as it is (no override)."""
    from vissl.models import build_model

    root = tmp_path_factory.mktemp("default_ckpt")
    made = {}
    for pretrain in sorted(set(BENCHMARK_OF.values())):
        _, config = compose([f"config=pretrain/aasae/{pretrain}", "config.CHECKPOINT.DIR=/tmp/aasae_eval_unused"])
        torch.manual_seed(2)
        made[pretrain] = save_vissl_checkpoint(build_model(config.MODEL, config.OPTIMIZER), root / f"{pretrain}.torch")
    return made


def test_every_benchmark_config_is_listed():
    listed = {
        p.relative_to(REPO / "configs/config/benchmark/aasae").with_suffix("").as_posix()
        for p in (REPO / "configs/config/benchmark/aasae").glob("*/*.yaml")
        if p.name != "common.yaml"
    }
    assert listed == set(BENCHMARK_OF)


@pytest.mark.parametrize("name", sorted(BENCHMARK_OF))
def test_benchmark_config_accepts_the_checkpoint_of_its_pretraining_config(default_checkpoints, name):
    """As documented, without overrides: config=benchmark/aasae/<name> with the checkpoint that
    config=pretrain/aasae/<its pretraining config> writes passes the launcher's check and loads."""
    ckpt = default_checkpoints[BENCHMARK_OF[name]]
    extra = ["config.DATA.TRAIN.LABEL_PATHS=[]"] if name.startswith("semi") else []
    config = eval_config(name, ckpt, *extra)
    check_evaluation_config(config)
    model = build_eval_model(config)
    saved = torch.load(ckpt, weights_only=False)["classy_state_dict"]["base_model"]["model"]["trunk"]
    trunk = model.trunk.base_model if config.MODEL.FEATURE_EVAL_SETTINGS.EVAL_MODE_ON else model.trunk
    assert torch.equal(trunk._feature_blocks.conv1.weight, saved["_feature_blocks.conv1.weight"])


# --------------------------------------------------------------------------- protocol settings


def _lr(config, key="lr"):
    return config.OPTIMIZER.param_schedulers[key]


@pytest.mark.parametrize(
    "name, classes, feature_dim", [("cifar10", 10, 2048), ("stl10", 10, 2048), ("imagenet1k", 1000, 2048)]
)
def test_linear_protocol_settings(name, classes, feature_dim):
    config = compose([f"config=benchmark/aasae/linear/{name}", "config.CHECKPOINT.DIR=/tmp/aasae_eval_unused"])[1]
    opt = config.OPTIMIZER
    assert (opt.name, opt.momentum, opt.nesterov, opt.weight_decay, opt.num_epochs) == ("sgd", 0.9, True, 0.0, 90)
    batch = config.DATA.TRAIN.BATCHSIZE_PER_REPLICA * config.DISTRIBUTED.NUM_PROC_PER_NODE
    assert batch == 256 and _lr(config).name == "cosine"
    assert _lr(config).start_value == pytest.approx(0.1 * batch / 256) and _lr(config).end_value == 0.0
    fe = config.MODEL.FEATURE_EVAL_SETTINGS
    assert fe.EVAL_MODE_ON and fe.FREEZE_TRUNK_ONLY and [f[0] for f in fe.LINEAR_EVAL_FEAT_POOL_OPS_MAP] == ["res5avg"]
    assert config.MODEL.HEAD.PARAMS == [["mlp", {"dims": [feature_dim, classes]}]]  # one linear layer on h
    assert config.METERS.accuracy_list_meter.topk_values == [1, 5]


def test_linear_lr_scales_with_the_global_batch():
    config = compose(
        [
            "config=benchmark/aasae/linear/cifar10",
            "config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=512",
            "config.CHECKPOINT.DIR=/tmp/aasae_eval_unused",
        ]
    )[1]
    assert _lr(config).start_value == pytest.approx(0.2)


def test_places205_protocol_settings():
    config = compose(["config=benchmark/aasae/linear/places205", "config.CHECKPOINT.DIR=/tmp/aasae_eval_unused"])[1]
    opt = config.OPTIMIZER
    assert (opt.num_epochs, opt.momentum, opt.weight_decay) == (14, 0.9, 0.0005)
    assert _lr(config)["values"] == [0.01, 0.001, 0.0001, 0.00001] and _lr(config).milestones == [4, 8, 12]
    assert config.MODEL.HEAD.PARAMS == [["mlp", {"dims": [2048, 205]}]]


@pytest.mark.parametrize("percent, trunk_lr, head_lr", [(1, 0.02, 0.5), (10, 0.01, 0.2)])
def test_semi_supervised_protocol_settings(percent, trunk_lr, head_lr):
    config = compose(
        [
            f"config=benchmark/aasae/semi_supervised/imagenet1k_{percent}percent",
            "config.CHECKPOINT.DIR=/tmp/aasae_eval_unused",
        ]
    )[1]
    opt = config.OPTIMIZER
    assert (opt.num_epochs, opt.momentum, opt.weight_decay) == (20, 0.9, 0.0)
    assert config.DATA.TRAIN.BATCHSIZE_PER_REPLICA * config.DISTRIBUTED.NUM_PROC_PER_NODE == 256
    assert not config.MODEL.FEATURE_EVAL_SETTINGS.EVAL_MODE_ON  # the whole network is fine-tuned
    assert opt.head_optimizer_params.use_different_lr
    assert _lr(config)["values"][0] == pytest.approx(trunk_lr)
    assert _lr(config, "lr_head")["values"][0] == pytest.approx(head_lr)
    assert config.DATA.TRAIN.DATA_SOURCES == ["disk_filelist"]
    assert config.DATA.TRAIN.DATA_PATHS[0].endswith(f"imagenet1k_{percent}percent_images.npy")
    assert config.DATA.TRAIN.LABEL_PATHS[0].endswith(f"imagenet1k_{percent}percent_labels.npy")


def test_subset_filelist_uses_the_image_folder_class_numbering(tmp_path):
    write_image_folder(tmp_path / "train", classes=("n02", "n01", "n03"), per_class=2, size=8)
    (tmp_path / "1percent.txt").write_text("n03_1.jpg\nn01_0.jpg\n")
    assert (
        filelists.main(
            [
                "--subset",
                str(tmp_path / "1percent.txt"),
                "--train-dir",
                str(tmp_path / "train"),
                "--out-dir",
                str(tmp_path / "out"),
                "--name",
                "sub",
            ]
        )
        == 0
    )
    paths = np.load(tmp_path / "out" / "sub_images.npy")
    assert [p.split("/")[-2:] for p in paths] == [["n03", "n03_1.jpg"], ["n01", "n01_0.jpg"]]
    assert np.load(tmp_path / "out" / "sub_labels.npy").tolist() == [2, 0]  # sorted folders: n01 n02 n03
    (tmp_path / "bad.txt").write_text("n01_9.jpg\n")
    with pytest.raises(FileNotFoundError, match="1 listed images are not in"):
        filelists.subset_filelist(filelists.read_subset(tmp_path / "bad.txt"), str(tmp_path / "train"))


# --------------------------------------------------------------------------- every config, one iteration
# Each benchmark config runs one epoch as its header comment writes it (ResNet-50 trunks of the
# pretraining configs' smoke runs, the configs' own DataLoader workers): tests/test_documented_commands.py
# (the accuracy line, frozen / fine-tuned trunk, the head's input size, kNN's counts).

RN18 = "config.MODEL.TRUNK.AASAE_RESNET.DEPTH=18"


def head(dim, classes):
    return f"config.MODEL.HEAD.PARAMS=[[mlp,{{dims:[{dim},{classes}]}}]]"


# --------------------------------------------------------------------------- the quickstart on real data


QUICKSTART_IMAGES = 2560  # the README quickstart's 80 iterations of batch 32, in one pass (~80 s on 2 idle cores)


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    """The quickstart recipe through the launcher for the README's 80 iterations (one pass over 2560 of
    the embedded train images)."""
    ckpt_dir = tmp_path_factory.mktemp("quickstart")
    out = run_launcher(
        [
            "config=pretrain/aasae/quickstart",
            f"config.DATA.TRAIN.DATA_LIMIT={QUICKSTART_IMAGES}",
            "config.OPTIMIZER.num_epochs=1",
            "config.LOG_FREQUENCY=1",
            "config.AASAE.METRICS.POSTERIOR_FREQUENCY=0",
            "config.AASAE.METRICS.NUM_IMAGES=0",
            f"config.CHECKPOINT.DIR={ckpt_dir}",
        ],
        cwd=ckpt_dir,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return ckpt_dir, out.stdout


@pytest.fixture(scope="module")
def quickstart_checkpoint(quickstart_run):
    return quickstart_run[0] / "model_final_checkpoint_phase0.torch"


def constant_prediction_loss() -> float:
    """The loss of the best input-independent flat prediction (the global mean, ~0 after
    normalisation) on the quickstart's targets, in closed form: the sum over 3x32x32 pixels of
    0.5 log(2 pi) + 0.5 (x - mean)^2 (log_scale 0: unit variance), averaged over the images."""
    import math

    from PIL import Image
    from torchvision import transforms

    from vissl_aasae.data.aasae_array import EMBEDDED

    images = np.load(EMBEDDED)["train_images"][:QUICKSTART_IMAGES]
    to_target = transforms.Compose(
        [transforms.Resize(32), transforms.ToTensor(), transforms.Normalize([0.286] * 3, [0.353] * 3)]
    )
    x = torch.stack([to_target(Image.fromarray(im).convert("RGB")) for im in images])
    return 0.5 * math.log(2 * math.pi) * x[0].numel() + 0.5 * ((x - x.mean()) ** 2).sum((1, 2, 3)).mean().item()


@pytest.mark.slow
def test_quickstart_loss_falls_below_constant_prediction(quickstart_run):
    """The mean loss of the last tenth of the iterations (the summary's window) is >= 12 % below what a
    constant image scores (~4250 nats), i.e. the decoder reconstructs the images, not their average.
    Measured 2026-12-04 (the reference's decoder and init) over 156 iterations: 4215 (iterations 0-14)
    -> 3438 (iterations 141-155); 2026-12-07 over this fixture's 80: 3465 (iterations 72-79), constant 4238."""
    ckpt_dir, stdout = quickstart_run
    losses = [json.loads(line)["loss"] for line in (ckpt_dir / "aasae_metrics.json").read_text().splitlines()]
    n = QUICKSTART_IMAGES // 32
    assert len(losses) == n
    constant = constant_prediction_loss()
    assert 4200 < constant < 4300
    k = n // 10  # the summary's first and last tenth
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    print(f"constant prediction {constant:.1f}, first {k} {first:.1f}, last {k} {last:.1f}")
    assert last < 0.88 * constant
    summary = (
        f"AASAE summary: {n} iterations, loss {first:.4g} (mean of iterations 0-{k - 1}) -> "
        f"{last:.4g} (mean of iterations {n - k}-{n - 1})"
    )
    assert summary in stdout


# Measured 2026-12-04 (2 cores, AVX-512): this fixture's run with SEED_VALUE 0 / 1 / 2 against the
# random trunk of the same seed, linear / kNN top-1 %.
#   embedded (5000 fit, 1000 test)   checkpoint 79.8 / 79.7 / 80.0, kNN 71.9 / 72.5 / 71.7
#                                    random     79.9 / 80.5 / 77.3, kNN 77.5 / 77.5 / 75.7
#   full Fashion-MNIST (10k, 10k)    checkpoint 81.76 / 80.01 / 81.71, kNN 73.9 / 73.2 / 73.6
#                                    random     80.75 / 82.02 / 81.30, kNN 78.1 / 78.1 / 77.6
# 156 iterations move the linear probe by less than random inits differ from each other (checkpoint
# minus random: +1.0 / -2.0 / +0.4 on 10k test images) and cost ~4 points of kNN.  (The 82.2 measured
# 2026-11-22 was before the reference's decoder and init; earlier CI machines passed a 0.5-point margin
# with today's code, this CPU gives -0.1.)  So this test asserts the pipeline and that the trunk is
# not broken, not a margin; the margin over random is asserted on the study's 30-epoch trunk
# (tests/test_study.py: +7.6 linear on 10k test images).  The fixture now runs the README's 80
# iterations (MODEL_ZOO.md, the README's own run evaluated: 80.40 against 80.00 for the random trunk).
NOT_BROKEN = 3.0  # points of linear top-1 the checkpoint may fall below the random trunk (measured -0.1)
RANDOM_TRUNK_LINEAR = 79.9  # docs/RESULTS.md, the quickstart: the lowest measured of the seed-0 random trunk


@pytest.mark.slow
def test_quickstart_checkpoint_evaluates_on_held_out_fashion_mnist(tmp_path, quickstart_checkpoint):
    """Quickstart checkpoint -> linear probe and kNN on real held-out images (embedded Fashion-MNIST test split).

    The 5000 embedded train images fit, the 1000 test images reported.  Asserted: the command's line
    and JSON agree, the trunk is far above chance (10 %), and its linear top-1 is within NOT_BROKEN
    points of the random trunk's or above it (a diverged trunk falls towards chance).  The random
    trunk's figure is RESULTS.md's (RANDOM_TRUNK_LINEAR), not re-measured here: the documented
    ``aasae-eval --random-init`` command runs in tests/test_documented_commands.py.
    """
    out = subprocess.run(
        [
            sys.executable,
            str(EVALUATE),
            "--checkpoint",
            str(quickstart_checkpoint),
            "--output",
            str(tmp_path / "q.json"),
            f"config.CHECKPOINT.DIR={tmp_path}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    pretrained = json.loads((tmp_path / "q.json").read_text())
    line = out.stdout.strip().splitlines()[-1]
    expected = f"linear top-1 = {pretrained['linear_top1']:.2f}%  knn(k=20) top-1 = {pretrained['knn_top1']:.2f}%"
    assert line.startswith(expected)
    assert f"(n_train=5000, n_test=1000, checkpoint={quickstart_checkpoint})" in line
    print(f"quickstart: {pretrained}")
    assert (pretrained["n_train"], pretrained["n_test"]) == (5000, 1000)
    assert pretrained["linear_top1"] > 60.0 and pretrained["knn_top1"] > 50.0  # chance: 10 %
    assert pretrained["linear_top1"] > RANDOM_TRUNK_LINEAR - NOT_BROKEN


# --------------------------------------------------------------------------- progress (issue 28)
def test_feature_pass_reports_progress_at_most_every_few_seconds(capsys):
    from torch.utils.data import DataLoader, TensorDataset

    from vissl_aasae.evaluation.features import PROGRESS_INTERVAL, extract_features

    n = 1000
    data = TensorDataset(torch.randn(n, 3, 2, 2), torch.zeros(n, dtype=torch.long), torch.arange(n))
    loader = DataLoader(data, batch_size=10)  # 100 batches, a fraction of a second

    def trunk(images, names):
        return [images.flatten(1)]

    trunk.to = lambda device: trunk
    trunk.eval = lambda: trunk
    features, _ = extract_features(trunk, loader, "flatten", torch.device("cpu"), progress="features (test)")
    lines = capsys.readouterr().err.splitlines()
    assert features.shape == (n, 12)
    assert PROGRESS_INTERVAL >= 2  # not a flood: the first batch, then every few seconds, then the end
    assert len(lines) == 2, lines
    assert lines[0].startswith("features (test): 10/1000 images (1%), ")
    assert lines[1].startswith("features (test): 1000/1000 images (100%), ") and lines[1].endswith("ETA 0:00:00")


@pytest.mark.slow  # 11 s: features of 400 images, a linear probe and kNN
def test_eval_reports_each_stage_on_stderr(tmp_path, capsys):
    from vissl_aasae.cli import eval_main

    small = [
        "config.DATA.TRAIN.DATA_LIMIT=300",
        "config.DATA.TEST.DATA_LIMIT=100",
        "config.AASAE_EVAL.LINEAR_PROBE.EPOCHS=2",
    ]
    assert eval_main(["--random-init", "--output", str(tmp_path / "r.json"), *small]) == 0
    out = capsys.readouterr()
    lines = out.err.splitlines()
    assert lines[0].startswith("features (train): 250/300 images (83%)")
    assert lines[1].startswith("features (train): 300/300 images (100%)")
    assert lines[2].startswith("features (test): 100/100 images (100%)")
    assert lines[3] == "linear probe: fitting on 300 x 512 features (SGD, 2 epochs) ..."
    assert re.fullmatch(r"linear probe: done in 0:00:\d\d", lines[4])
    assert lines[5] == "kNN (k=20): 100 test images against 300 ..."
    assert re.fullmatch(r"kNN: done in 0:00:\d\d", lines[6]) and len(lines) == 7
    assert "linear top-1 = " in out.out and json.loads((tmp_path / "r.json").read_text())["n_train"] == 300


# --------------------------------------------------------------------------- the benchmark's console line (issue 28)
def test_benchmark_accuracy_is_one_console_line(tmp_path, capsys):
    """Linear / fine-tuning launches wrote their accuracy to metrics.json only (VISSL's 'Rank: 0, name: ...' log
    line stays in log.txt): a hook after VISSL's prints it from the same synced meter."""
    from types import SimpleNamespace

    from vissl.meters.accuracy_list_meter import AccuracyListMeter

    from vissl_aasae.hooks import aasae_hook_generator
    from vissl_aasae.hooks.aasae_benchmark_hook import AASAEBenchmarkReportHook

    config = eval_config("linear/cifar10", "/unused.torch", *R18_CIFAR, ckpt_dir=str(tmp_path))
    hooks = aasae_hook_generator(config)
    assert isinstance(hooks[-1], AASAEBenchmarkReportHook)  # after VISSL's, which writes metrics.json
    torch.manual_seed(0)
    scores, labels = torch.randn(40, 10), torch.randint(0, 10, (40,))
    meter = AccuracyListMeter(num_meters=1, topk_values=[1, 5], meter_names=[])
    meter.update(scores, labels)
    meter.sync_state()
    ranked = scores.argsort(dim=1, descending=True)
    top1 = 100 * (ranked[:, 0] == labels).float().mean().item()
    top5 = 100 * (ranked[:, :5] == labels[:, None]).any(1).float().mean().item()
    task = SimpleNamespace(
        train=True, meters=[meter], checkpoint_folder=str(tmp_path), train_phase_idx=2, num_train_phases=90
    )
    hooks[-1].on_phase_end(task)
    assert capsys.readouterr().out == ""  # a training phase: nothing
    task.train = False
    hooks[-1].on_phase_end(task)
    assert capsys.readouterr().out == (
        f"AASAE benchmark: linear top-1 {top1:.2f} %, top-5 {top5:.2f} % (test after epoch 3 of 90, 40 images), "
        f"metrics in {tmp_path / 'metrics.json'}\n"
    )
    # the semi-supervised configs fine-tune the whole network
    extra = [RN18, head(512, 1000)]
    semi = eval_config("semi_supervised/imagenet1k_1percent", "/unused.torch", *extra, ckpt_dir=str(tmp_path))
    assert AASAEBenchmarkReportHook(semi).kind == "fine-tuned"
    # pretraining runs get no such hook
    _, pretrain = compose(["config=pretrain/aasae/quickstart", f"config.CHECKPOINT.DIR={tmp_path}"])
    assert not any(isinstance(h, AASAEBenchmarkReportHook) for h in aasae_hook_generator(pretrain))
