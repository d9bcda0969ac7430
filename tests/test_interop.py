"""Checkpoints that travel: torchvision/Detectron2 export, the authors' Lightning import, feature extraction.

The authors' AAVAE code is not installed here. ``AuthorsAAVAE`` below is a stand-in written for these
tests: the parameter names and shapes of their released PyTorch Lightning module (``encoder`` a
torchvision-named ResNet whose removed max-pool is ``MaxPool2d(1, 1)``; ``projection.first_layer``,
``mu``, ``logvar``; ``decoder.linear_projection1/2``, ``conv1``, ``layerN.i.conv1/conv2``,
``layerN.0.upsample`` = (upscale, conv1x1) on the first block of *every* stage, ``conv2``,
``final_conv``; ``log_scale``), with a forward written from the method description
(/work/shared/METHOD.md), independently of this plugin's decoder. Importing its state dict and
getting the same outputs from this plugin's modules shows that every tensor landed where it acts
the same way: a swapped or misplaced tensor changes the outputs or the shapes.
"""

import importlib.util
import json
import math
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
import torchvision.transforms as T
from PIL import Image
from vissl.models import build_model
from vissl.utils.checkpoint import init_model_from_consolidated_weights

from vissl_aasae.data.aasae_array import EMBEDDED
from vissl_aasae.interop import (
    CheckpointKeyError,
    export_checkpoint,
    extract_features,
    import_lightning_checkpoint,
    import_lightning_file,
    infer_spec,
    torchvision_resnet,
)
from vissl_aasae.interop.checkpoint_io import vissl_checkpoint
from vissl_aasae.interop.feature_extraction import build_trunk
from vissl_aasae.interop.lightning_import import compose_for, hparams_overrides, our_key
from vissl_aasae.launcher import compose
from vissl_aasae.models.heads.aasae_projection import Latent
from vissl_aasae.models.resnet_spec import ResNetSpec
from vissl_aasae.models.trunks.aasae_resnet import build_feature_blocks

REPO = Path(__file__).resolve().parents[1]
TOL = dict(atol=1e-5, rtol=1e-5)
LATENT = 16
QUICK = ["config=pretrain/aasae/quickstart", f"config.MODEL.AASAE.LATENT_DIM={LATENT}"]


def randomize_batch_norm(module: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so eval-mode BN is not the identity."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return module


def run_blocks(blocks, x):
    for block in blocks.values():
        x = block(x)
    return x


def trunk_checkpoint(blocks) -> dict:
    state = OrderedDict(("_feature_blocks." + k, v) for k, v in blocks.state_dict().items())
    return {"classy_state_dict": {"base_model": {"model": {"trunk": state, "heads": {}}}}}


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """A quickstart model (ResNet-18, CIFAR stem) with non-trivial BN, saved as a VISSL checkpoint."""
    torch.manual_seed(0)
    _, config = compose(QUICK)
    model = randomize_batch_norm(build_model(config.MODEL, config.OPTIMIZER)).eval()
    folder = tmp_path_factory.mktemp("quick")
    path = folder / "model_final_checkpoint_phase1.torch"
    torch.save(vissl_checkpoint(model), path)
    return types.SimpleNamespace(config=config, model=model, path=path, folder=folder)


# --- torchvision / Detectron2 export ----------------------------------------------------------------------------
def test_torchvision_export_of_cifar_trunk_gives_the_same_features(quick, tmp_path):
    out = tmp_path / "rn18.pth"
    info = export_checkpoint(str(quick.path), str(out), fmt="torchvision")
    assert (info["arch"], info["stem"], info["feature_dim"]) == ("resnet18", "cifar", 512)
    assert json.loads(Path(str(out) + ".json").read_text())["stem"] == "cifar"
    state = torch.load(out)  # a plain state dict: loads with weights_only
    assert all(isinstance(v, torch.Tensor) for v in state.values()) and "conv1.weight" in state
    tv = torchvision_resnet(18, stem="cifar").eval()
    tv.load_state_dict(state, strict=True)
    assert tv.conv1.kernel_size == (3, 3) and tv.conv1.stride == (1, 1) and isinstance(tv.maxpool, nn.Identity)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = quick.model.trunk(x, ["flatten"])[0], tv(x)
    assert ours.shape == (3, 512)
    torch.testing.assert_close(theirs, ours, **TOL)
    # stock torchvision resnet18 (7x7 conv + max-pool) cannot hold these weights: the stem is part of the contract
    with pytest.raises(RuntimeError, match="conv1.weight"):
        torchvision.models.resnet18(weights=None).load_state_dict(state, strict=False)


@pytest.mark.parametrize("depth,stem,size", [(18, "stl10", 64), (34, "imagenet", 64)])
def test_torchvision_export_of_7x7_stems(tmp_path, depth, stem, size):
    torch.manual_seed(depth)
    blocks = randomize_batch_norm(build_feature_blocks(ResNetSpec(depth, 1, stem)), seed=depth).eval()
    path = tmp_path / "ckpt.torch"
    torch.save(trunk_checkpoint(blocks), path)
    # the max-pool has no weights: without the train_config.yaml VISSL writes, the stem must be stated
    with pytest.raises(ValueError, match="'stl10' \\(no max-pool\\) or 'imagenet'"):
        export_checkpoint(str(path), str(tmp_path / "x.pth"))
    (tmp_path / "train_config.yaml").write_text(
        f"MODEL:\n  TRUNK:\n    NAME: aasae_resnet\n    AASAE_RESNET: {{DEPTH: {depth}, STEM: {stem}}}\n"
    )
    info = export_checkpoint(str(path), str(tmp_path / "tv.pth"))
    assert (info["stem"], info["depth"]) == (stem, depth)
    tv = torchvision_resnet(depth, stem=stem).eval()
    tv.load_state_dict(torch.load(tmp_path / "tv.pth"), strict=True)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(tv(x), run_blocks(blocks, x), **TOL)
    if stem == "imagenet":  # the ImageNet stem is torchvision's own model; only fc is not exported
        stock = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        missing, unexpected = stock.load_state_dict(torch.load(tmp_path / "tv.pth"), strict=False)
        assert sorted(missing) == ["fc.bias", "fc.weight"] and unexpected == []


def test_wide_resnet50_exports_to_a_torchvision_resnet_not_to_wide_resnet50_2():
    torch.manual_seed(0)
    blocks = randomize_batch_norm(build_feature_blocks(ResNetSpec(50, 2, "cifar"))).eval()
    state = {k: v for k, v in blocks.state_dict().items()}
    assert infer_spec(state) == ResNetSpec(50, 2, "cifar")
    tv = torchvision_resnet(50, stem="cifar", width_multiplier=2).eval()
    assert isinstance(tv, torchvision.models.ResNet) and isinstance(tv.layer1[0], torchvision.models.resnet.Bottleneck)
    tv.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = tv(x)
        assert out.shape == (2, 4096)
        torch.testing.assert_close(out, run_blocks(blocks, x), **TOL)
    with pytest.raises(RuntimeError, match="size mismatch"):
        torchvision.models.wide_resnet50_2(weights=None).load_state_dict(state, strict=False)


def test_detectron2_export_reuses_the_detection_converter(tmp_path):
    from vissl_aasae.detection.convert import NotAResNet50Error

    blocks = build_feature_blocks(ResNetSpec(50, 1, "imagenet"))
    path = tmp_path / "r50.torch"
    torch.save(trunk_checkpoint(blocks), path)
    info = export_checkpoint(str(path), str(tmp_path / "r50.pkl"), fmt="detectron2")
    assert info["width_multiplier"] == 1
    with open(tmp_path / "r50.pkl", "rb") as f:
        weights = pickle.load(f)
    np.testing.assert_array_equal(
        weights["model"]["res5.2.conv3.weight"], blocks.layer4[2].conv3.weight.detach().numpy()
    )
    np.testing.assert_array_equal(
        weights["model"]["res2.0.shortcut.norm.running_var"], blocks.layer1[0].downsample[1].running_var.numpy()
    )
    with pytest.raises(NotAResNet50Error, match="blocks per stage"):
        export_checkpoint(str(_rn18_checkpoint(tmp_path)), str(tmp_path / "x.pkl"), fmt="detectron2")


def _rn18_checkpoint(tmp_path):
    path = tmp_path / "rn18.torch"
    torch.save(trunk_checkpoint(build_feature_blocks(ResNetSpec(18, 1, "imagenet"))), path)
    return path


def test_export_refuses_a_foreign_checkpoint_naming_its_keys(tmp_path, capsys):
    path = tmp_path / "vgg.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3), "classifier.6.bias": torch.zeros(10)}, path)
    with pytest.raises(ValueError, match="features.0.weight, classifier.6.bias"):
        export_checkpoint(str(path), str(tmp_path / "out.pth"))
    tool = load_tool("aasae_export")
    assert tool.main(["--input", str(path), "--output", str(tmp_path / "out.pth")]) == 2
    assert "features.0.weight" in capsys.readouterr().err
    assert not (tmp_path / "out.pth").exists()


# --- the authors' Lightning checkpoints ----------------------------------------------------------------------------
class Upscale(nn.Module):
    """Nearest-neighbour resize to ``size`` or x2; no parameters (their ``Interpolate``)."""

    def __init__(self, size=None):
        super().__init__()
        self.size = size

    def forward(self, x):
        if self.size is not None:
            return F.interpolate(x, size=(self.size, self.size), mode="nearest")
        return F.interpolate(x, scale_factor=2, mode="nearest")


class AuthorsBasicBlock(nn.Module):
    def __init__(self, cin, cout, upscale=None, upsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.upscale, self.upsample = upscale, upsample

    def forward(self, x):
        out = self.upscale(x) if self.upscale is not None else x
        out = self.conv2(F.relu(self.conv1(out)))
        return F.relu(out + (self.upsample(x) if self.upsample is not None else x))


class AuthorsDecoder18(nn.Module):
    def __init__(self, latent_dim, input_height, stem):
        super().__init__()
        self.upsample_stem = stem != "cifar"
        factor = 8 if stem == "cifar" else 16
        self.linear_projection1 = nn.Linear(latent_dim, 512)
        self.linear_projection2 = nn.Linear(512, 512)
        self.conv1 = nn.Conv2d(32, 512, 1)
        inplanes = 512
        for i, planes in enumerate((256, 128, 64, 32)):  # the reference's stage widths
            up = Upscale(input_height // factor) if i == 0 else Upscale()
            first = AuthorsBasicBlock(inplanes, planes, up, nn.Sequential(up, nn.Conv2d(inplanes, planes, 1)))
            setattr(self, f"layer{i + 1}", nn.Sequential(first, AuthorsBasicBlock(planes, planes)))
            inplanes = planes
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.final_conv = nn.Conv2d(64, 3, 3, padding=1)

    def forward(self, z):
        x = F.relu(self.linear_projection2(F.relu(self.linear_projection1(z))))
        x = F.relu(self.conv1(x.view(len(z), 32, 4, 4)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = F.relu(self.conv2(x))
        if self.upsample_stem:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.final_conv(x)


class AuthorsProjection(nn.Module):
    def __init__(self, h, d):
        super().__init__()
        self.first_layer = nn.Sequential(nn.Linear(h, h), nn.BatchNorm1d(h), nn.ReLU())
        self.mu = nn.Linear(h, d, bias=False)
        self.logvar = nn.Linear(h, d, bias=False)

    def forward(self, h):
        h = self.first_layer(h)
        return self.mu(h), self.logvar(h)


class AuthorsAAVAE(nn.Module):
    def __init__(self, stem, input_height, latent_dim=LATENT, log_scale=-0.7):
        super().__init__()
        self.encoder = torchvision.models.resnet18(weights=None)
        if stem == "cifar":
            self.encoder.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.encoder.maxpool = nn.MaxPool2d(kernel_size=1, stride=1)
        self.encoder.fc = nn.Identity()
        self.projection = AuthorsProjection(512, latent_dim)
        self.decoder = AuthorsDecoder18(latent_dim, input_height, stem)
        self.log_scale = nn.Parameter(torch.tensor([log_scale]))


def authors_hparams(stem, input_height):
    return {
        "encoder_name": "resnet18",
        "h_dim": 512,
        "latent_dim": LATENT,
        "input_height": input_height,
        "first_conv3x3": stem == "cifar",
        "remove_first_maxpool": True,
        "dataset": "cifar10" if stem == "cifar" else "stl10",
        "log_scale": -1.25,
        "learn_scale": 1,
        "kl_coeff": 0.0,
        "learning_rate": 5e-4,
        "max_epochs": 3200,
    }


def authors_model(stem, input_height):
    torch.manual_seed(7)
    return randomize_batch_norm(AuthorsAAVAE(stem, input_height), seed=7).eval()


def save_like_lightning(path, state_dict, hparams, monkeypatch):
    """torch.save a Lightning-style checkpoint whose hyper_parameters is Lightning's AttributeDict class."""
    parsing = types.ModuleType("pytorch_lightning.utilities.parsing")
    AttributeDict = type("AttributeDict", (dict,), {"__module__": parsing.__name__})
    parsing.AttributeDict = AttributeDict
    with monkeypatch.context() as patch:
        for name in ("pytorch_lightning", "pytorch_lightning.utilities"):
            patch.setitem(sys.modules, name, types.ModuleType(name))
        patch.setitem(sys.modules, parsing.__name__, parsing)
        torch.save(
            {
                "epoch": 3199,
                "global_step": 560000,
                "pytorch-lightning_version": "1.3.8",
                "state_dict": state_dict,
                "hyper_parameters": AttributeDict(hparams),
                "optimizer_states": [{}],
            },
            path,
        )


def test_authors_stl10_checkpoint_imports_exactly(tmp_path, monkeypatch):
    source = authors_model("stl10", 96)
    ckpt = tmp_path / "epoch=3199.ckpt"
    save_like_lightning(ckpt, source.state_dict(), authors_hparams("stl10", 96), monkeypatch)
    assert "pytorch_lightning.utilities.parsing" not in sys.modules  # read without Lightning installed

    out = tmp_path / "imported.torch"
    report = import_lightning_file(str(ckpt), str(out))
    assert report["decoder"] == "imported" and report["not_imported"] == []
    n_encoder = sum(1 for k in source.state_dict() if k.startswith("encoder."))
    assert report["trunk_tensors"] == n_encoder and report["hyper_parameters"]["encoder_name"] == "resnet18"

    # a fresh model of the same config, initialised from the file by VISSL's own WEIGHTS_INIT loader
    _, config = compose(["config=pretrain/aasae/stl10", *hparams_overrides(authors_hparams("stl10", 96))])
    model = build_model(config.MODEL, config.OPTIMIZER)
    init_model_from_consolidated_weights(
        config, model, torch.load(out, weights_only=False), state_dict_key_name="classy_state_dict", skip_layers=[]
    )
    model.eval()
    g = torch.Generator().manual_seed(5)
    x, z = torch.randn(2, 3, 96, 96, generator=g), torch.randn(3, LATENT, generator=g)
    with torch.no_grad():
        h = model.trunk(x, ["flatten"])[0]
        torch.testing.assert_close(h, source.encoder(x), **TOL)
        head = model.heads[0]
        hidden = head.mlp(h)
        mu, log_var = source.projection(h)
        torch.testing.assert_close(head.fc_mu(hidden), mu, **TOL)
        torch.testing.assert_close(head.fc_log_var(hidden), log_var, **TOL)
        expected = source.decoder(z)
        assert expected.shape == (3, 3, 96, 96)
        torch.testing.assert_close(model.heads[1].decoder(z), expected, **TOL)
        # and through the VISSL head's own forward (k=1 sample)
        x_hat = model.heads[1](Latent(z, torch.zeros_like(z), z.unsqueeze(0)))[0]
        torch.testing.assert_close(x_hat[0], expected, **TOL)
    assert model.heads[1].log_scale.item() == pytest.approx(-0.7)  # the trained value, not the initial -1.25
    assert isinstance(model.heads[1].log_scale, nn.Parameter)  # learn_scale=1


def test_authors_cifar_checkpoint_imports_with_its_decoder(quick):
    source = authors_model("cifar", 32)
    checkpoint = {"state_dict": source.state_dict(), "hyper_parameters": authors_hparams("cifar", 32)}
    # their stage-1 block always has an (upsample + conv1x1) shortcut, also at 32 px where the
    # resize is a no-op; ours keeps it too, so the whole decoder maps
    converted, report = import_lightning_checkpoint(checkpoint, quick.config)
    assert report["decoder"] == "imported" and report["not_imported"] == []
    model = build_model(quick.config.MODEL, quick.config.OPTIMIZER)
    init_model_from_consolidated_weights(quick.config, model, converted, "classy_state_dict", skip_layers=[])
    model.eval()
    g = torch.Generator().manual_seed(9)
    x, z = torch.randn(2, 3, 32, 32, generator=g), torch.randn(3, LATENT, generator=g)
    with torch.no_grad():
        h = model.trunk(x, ["flatten"])[0]
        torch.testing.assert_close(h, source.encoder(x), **TOL)
        torch.testing.assert_close(model.heads[0].fc_mu(model.heads[0].mlp(h)), source.projection(h)[0], **TOL)
        torch.testing.assert_close(model.heads[1].decoder(z), source.decoder(z), **TOL)
    assert model.heads[1].log_scale.item() == pytest.approx(-0.7)


def reference_key_shapes(encoder: str, stem: str, latent_dim: int = 128) -> dict:
    """Key -> shape of the authors' LightningModule ``state_dict``, written from METHOD.md's facts
    (torchvision encoder with their stem, ``projection.first_layer``/``mu``/``logvar``, their
    decoder's ``linear_projection1/2``, ``conv1``, ``layerN.i.convK``, ``layerN.0.upsample.1``,
    ``conv2``, ``final_conv``, and ``log_scale``), not from this plugin's modules."""
    depth, widen = {"resnet18": (18, 1), "resnet50": (50, 1), "resnet50w2": (50, 2)}[encoder]
    factory = torchvision.models.resnet18 if depth == 18 else torchvision.models.resnet50
    tv = factory(weights=None, width_per_group=64 * widen) if depth == 50 else factory(weights=None)
    shapes = {f"encoder.{k}": tuple(v.shape) for k, v in tv.state_dict().items() if not k.startswith("fc.")}
    if stem == "cifar":
        shapes["encoder.conv1.weight"] = (64 * widen, 3, 3, 3)
    expansion, layers = (1, [2, 2, 2, 2]) if depth == 18 else (4, [3, 6, 4, 3])
    h = 512 * expansion * widen
    shapes.update(
        {
            "projection.first_layer.0.weight": (h, h),
            "projection.first_layer.0.bias": (h,),
            "projection.first_layer.1.weight": (h,),
            "projection.first_layer.1.bias": (h,),
            "projection.first_layer.1.running_mean": (h,),
            "projection.first_layer.1.running_var": (h,),
            "projection.first_layer.1.num_batches_tracked": (),
            "projection.mu.weight": (latent_dim, h),
            "projection.logvar.weight": (latent_dim, h),
            "decoder.linear_projection1.weight": (h, latent_dim),
            "decoder.linear_projection1.bias": (h,),
            "decoder.linear_projection2.weight": (h, h),
            "decoder.linear_projection2.bias": (h,),
            "decoder.conv1.weight": (h, h // 16, 1, 1),
            "decoder.conv1.bias": (h,),
            "log_scale": (1,),
        }
    )

    def conv(name, cout, cin, k):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (cout, cin, k, k), (cout,)

    inplanes, filters = h, 512 * widen
    for stage, blocks in enumerate(layers, start=1):
        filters //= 2  # halved before each stage: 256, 128, 64, 32 (x widen)
        for i in range(blocks):
            name, cin = f"decoder.layer{stage}.{i}", inplanes if i == 0 else filters * expansion
            if expansion == 1:
                conv(f"{name}.conv1", filters, cin, 3)
                conv(f"{name}.conv2", filters, filters, 3)
            else:
                conv(f"{name}.conv1", filters, cin, 1)
                conv(f"{name}.conv2", filters, filters, 3)
                conv(f"{name}.conv3", filters * expansion, filters, 1)
            if i == 0:
                conv(f"{name}.upsample.1", filters * expansion, cin, 1)
        inplanes = filters * expansion
    conv("decoder.conv2", 64, filters * expansion, 3)
    conv("decoder.final_conv", 3, 64, 3)
    return shapes


@pytest.mark.parametrize(
    "encoder,stem,dataset,height,decoder_parameters",
    [
        ("resnet18", "cifar", "cifar10", 32, 4_459_107),
        ("resnet50", "stl10", "stl10", 96, 13_291_203),
        ("resnet50", "imagenet", "imagenet", 224, 13_291_203),
    ],
)
def test_reference_layout_checkpoints_import_with_their_decoder(encoder, stem, dataset, height, decoder_parameters):
    shapes = reference_key_shapes(encoder, stem)
    assert sum(math.prod(s) for k, s in shapes.items() if k.startswith("decoder.")) == decoder_parameters
    g = torch.Generator().manual_seed(3)
    state = {k: (torch.tensor(7) if not s else torch.randn(s, generator=g)) for k, s in shapes.items()}
    state = {k: (v.abs() + 0.5 if k.endswith("running_var") else v) for k, v in state.items()}
    hparams = {
        "encoder_name": encoder,
        "h_dim": 512 if encoder == "resnet18" else 2048,
        "latent_dim": 128,
        "input_height": height,
        "first_conv3x3": stem == "cifar",
        "remove_first_maxpool": stem != "imagenet",
        "dataset": dataset,
        "log_scale": 0.0,
        "learn_scale": 0,
        "kl_coeff": 0.0,
    }
    config = compose_for(hparams)
    converted, report = import_lightning_checkpoint(
        {"state_dict": state, "hyper_parameters": hparams}, config, decoder="require"
    )
    assert report["decoder"] == "imported" and report["not_imported"] == []
    assert report["decoder_tensors"] == sum(1 for k in shapes if k.startswith("decoder."))
    heads = converted["classy_state_dict"]["base_model"]["model"]["heads"]
    torch.testing.assert_close(
        heads["1.decoder.layer1.0.shortcut.1.weight"], state["decoder.layer1.0.upsample.1.weight"]
    )
    torch.testing.assert_close(heads["1.decoder.final_conv.bias"], state["decoder.final_conv.bias"])


def test_import_tool_writes_a_vissl_checkpoint(tmp_path, capsys):
    source = authors_model("cifar", 32)
    ckpt, out = tmp_path / "last.ckpt", tmp_path / "aavae.torch"
    torch.save({"state_dict": source.state_dict(), "hyper_parameters": authors_hparams("cifar", 32)}, ckpt)
    tool = load_tool("aasae_import_lightning")
    assert tool.main(["--input", str(ckpt), "--output", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["trunk_tensors"] == 120
    trunk = torch.load(out, weights_only=False)["classy_state_dict"]["base_model"]["model"]["trunk"]
    torch.testing.assert_close(
        trunk["_feature_blocks.layer4.1.bn2.running_var"], source.encoder.layer4[1].bn2.running_var
    )


def test_foreign_and_malformed_lightning_checkpoints_list_their_keys(quick):
    state = authors_model("cifar", 32).state_dict()
    # a SimCLR-style checkpoint: same encoder, another projection head
    foreign = OrderedDict((k, v) for k, v in state.items() if not k.startswith("projection."))
    foreign["projection.model.0.weight"] = torch.zeros(2048, 512)
    foreign["projection.model.2.weight"] = torch.zeros(128, 2048)
    with pytest.raises(CheckpointKeyError) as err:
        import_lightning_checkpoint({"state_dict": foreign}, quick.config, decoder="skip")
    assert err.value.unexpected == ["projection.model.0.weight", "projection.model.2.weight"]
    assert {"projection.first_layer.0.weight", "projection.mu.weight", "projection.logvar.weight"} <= set(
        err.value.missing
    )
    assert "projection.model.0.weight" in str(err.value) and "projection.mu.weight" in str(err.value)

    # a checkpoint for another latent size: the shapes are named
    wrong = OrderedDict(state)
    wrong["projection.mu.weight"] = torch.zeros(LATENT * 2, 512)
    with pytest.raises(CheckpointKeyError, match=r"projection.mu.weight \(checkpoint \(32, 512\), model \(16, 512\)\)"):
        import_lightning_checkpoint({"state_dict": wrong}, quick.config, decoder="skip")

    # their earlier decoder with batch norm: refused under "require", its keys named
    old = OrderedDict(state)
    old["decoder.bn_linear.weight"] = torch.ones(512)
    with pytest.raises(CheckpointKeyError, match="decoder.bn_linear.weight"):
        import_lightning_checkpoint({"state_dict": old}, quick.config)

    with pytest.raises(ValueError, match="not a PyTorch Lightning checkpoint .*classy_state_dict"):
        import_lightning_checkpoint(vissl_checkpoint(quick.model), quick.config)
    with pytest.raises(ValueError, match="not an AAVAE checkpoint; its state_dict keys: backbone.weight"):
        import_lightning_checkpoint({"state_dict": {"backbone.weight": torch.zeros(1)}}, quick.config)


def test_key_renaming_rules():
    assert our_key("encoder.layer3.1.bn2.running_var") == ("trunk", "_feature_blocks.layer3.1.bn2.running_var")
    assert our_key("projection.first_layer.1.num_batches_tracked") == ("heads", "0.mlp.1.num_batches_tracked")
    assert our_key("decoder.linear_projection2.bias") == ("heads", "1.decoder.linear.2.bias")
    assert our_key("decoder.layer2.0.upsample.1.weight") == ("heads", "1.decoder.layer2.0.shortcut.1.weight")
    assert our_key("log_scale") == ("heads", "1.log_scale")
    assert our_key("log_scale_extra") is None and our_key("anchors") is None
    assert hparams_overrides({"encoder_name": "resnet50w2", "first_conv3x3": False, "remove_first_maxpool": False})[
        :3
    ] == [
        "config.MODEL.TRUNK.AASAE_RESNET.DEPTH=50",
        "config.MODEL.TRUNK.AASAE_RESNET.WIDTH_MULTIPLIER=2",
        "config.MODEL.TRUNK.AASAE_RESNET.STEM=imagenet",
    ]
    with pytest.raises(ValueError, match="3x3 conv \\+ max-pool"):
        hparams_overrides({"first_conv3x3": True, "remove_first_maxpool": False})


# --- feature extraction ---------------------------------------------------------------------------------------------
def test_feature_extraction_writes_features_labels_indices_in_order(quick, tmp_path):
    config = compose(QUICK + ["config.DATA.TEST.DATA_LIMIT=12"])[1]
    summary = extract_features(config, str(quick.path), str(tmp_path), split="test", batch_size=5)
    features = np.load(tmp_path / "test_features.npy")
    labels = np.load(tmp_path / "test_labels.npy")
    indices = np.load(tmp_path / "test_indices.npy")
    assert features.shape == (12, 512) and features.dtype == np.float32 and summary["shape"] == [12, 512]
    assert labels.shape == indices.shape == (12,) and labels.dtype == indices.dtype == np.int64
    # DATA_LIMIT draws a subset of the 1000 test images: indices point into the source split
    assert len(set(indices.tolist())) == 12 and indices.min() >= 0 and indices.max() < 1000
    with np.load(EMBEDDED) as arrays:
        images, all_labels = arrays["test_images"], arrays["test_labels"]
    np.testing.assert_array_equal(labels, all_labels[indices])
    # row i is the trunk's feature of image indices[i] under the evaluation (original) transform
    transform = T.Compose([T.Resize(32), T.ToTensor(), T.Normalize([0.286] * 3, [0.353] * 3)])
    batch = torch.stack([transform(Image.fromarray(images[i]).convert("RGB")) for i in indices])
    with torch.no_grad():
        expected = quick.model.trunk(batch, ["flatten"])[0].numpy()
    np.testing.assert_allclose(features, expected, atol=1e-5, rtol=1e-5)
    assert json.loads((tmp_path / "test_features.json").read_text())["transforms"][0] == {"name": "Resize", "size": 32}


def test_feature_extraction_from_a_torchvision_export_and_another_layer(quick, tmp_path):
    export_checkpoint(str(quick.path), str(tmp_path / "rn18.pth"))
    config = compose(QUICK + ["config.DATA.TRAIN.DATA_LIMIT=4"])[1]
    extract_features(config, str(tmp_path / "rn18.pth"), str(tmp_path / "a"), split="train", batch_size=3)
    extract_features(config, str(quick.path), str(tmp_path / "b"), split="train", batch_size=4, feature="res4")
    a = np.load(tmp_path / "a" / "train_features.npy")
    b = np.load(tmp_path / "b" / "train_features.npy")
    assert a.shape == (4, 512) and b.shape == (4, 256 * 8 * 8)  # res4: 256 channels at 8x8, flattened
    np.testing.assert_array_equal(
        np.load(tmp_path / "a" / "train_indices.npy"), np.load(tmp_path / "b" / "train_indices.npy")
    )
    with pytest.raises(ValueError, match="feature='fc7' is not a feature of the trunk; allowed: .*res5avg"):
        extract_features(config, str(quick.path), str(tmp_path / "c"), feature="fc7")


def test_extraction_tool(quick, tmp_path, capsys):
    tool = load_tool("aasae_extract_features")
    args = ["--checkpoint", str(quick.path), "--output-dir", str(tmp_path), "--batch-size", "2"]
    assert tool.main(args + [*QUICK, "config.DATA.TEST.DATA_LIMIT=3"]) == 0
    assert json.loads(capsys.readouterr().out)["shape"] == [3, 512]
    assert np.load(tmp_path / "test_features.npy").shape == (3, 512)
    # a checkpoint of another architecture: exit code 2 and the keys named
    assert tool.main(args + [*QUICK, "config.MODEL.TRUNK.AASAE_RESNET.DEPTH=34"]) == 2
    assert (
        "missing keys (in the model, not in the checkpoint): _feature_blocks.layer1.2.conv1.weight"
        in capsys.readouterr().err
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_feature_extraction_on_gpu_matches_cpu(quick, tmp_path):
    config = compose(QUICK + ["config.DATA.TEST.DATA_LIMIT=8"])[1]
    extract_features(config, str(quick.path), str(tmp_path / "cpu"), device="cpu")
    extract_features(config, str(quick.path), str(tmp_path / "gpu"), device="cuda")
    np.testing.assert_allclose(
        np.load(tmp_path / "gpu" / "test_features.npy"),
        np.load(tmp_path / "cpu" / "test_features.npy"),
        atol=1e-3,
        rtol=1e-3,
    )


def test_trunk_weights_that_do_not_fit_are_listed(quick, tmp_path):
    state = OrderedDict(quick.model.trunk.state_dict())
    del state["_feature_blocks.layer4.1.bn2.running_mean"]
    state["_feature_blocks.layer5.0.conv1.weight"] = torch.zeros(1)
    state["_feature_blocks.conv1.weight"] = torch.zeros(64, 3, 7, 7)
    path = tmp_path / "bad.torch"
    torch.save({"classy_state_dict": {"base_model": {"model": {"trunk": state, "heads": {}}}}}, path)
    with pytest.raises(CheckpointKeyError) as err:
        build_trunk(quick.config, str(path))
    assert err.value.unexpected == ["_feature_blocks.layer5.0.conv1.weight"]
    assert err.value.missing == ["_feature_blocks.layer4.1.bn2.running_mean"]
    assert err.value.mismatched == ["_feature_blocks.conv1.weight (checkpoint (64, 3, 7, 7), model (64, 3, 3, 3))"]
    assert "MODEL.TRUNK.AASAE_RESNET" in str(err.value)
    with pytest.raises(ValueError, match="split='VAL' is not supported; allowed: \\['TRAIN', 'TEST'\\]"):
        extract_features(quick.config, str(quick.path), str(tmp_path), split="val")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda' but torch.cuda.is_available\\(\\) is False"):
            extract_features(quick.config, str(quick.path), str(tmp_path), device="cuda")


# --- issue 16 / 19: one checkpoint module, safe loading, one line per broken file, no stray folders ----------------
import argparse  # noqa: E402
import ast  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402

from vissl_aasae import checkpoints  # noqa: E402
from vissl_aasae.checkpoints import CheckpointError  # noqa: E402


class Payload:
    """Unpickling it runs code that writes a file (what a malicious "authors' checkpoint" would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def evil_files(tmp_path):
    """The same payload as torch zip, torch legacy and plain pickle files; and the marker it would write."""
    marker = tmp_path / "PWNED"
    content = {
        "classy_state_dict": {"base_model": {"model": {"trunk": {}, "heads": {}}}},
        "state_dict": {},
        "hyper_parameters": {"x": Payload(marker)},
    }
    files = [tmp_path / "evil_zip.torch", tmp_path / "evil_legacy.torch", tmp_path / "evil.pkl"]
    torch.save(content, files[0])
    torch.save(content, files[1], _use_new_zipfile_serialization=False)
    with open(files[2], "wb") as f:
        pickle.dump(content, f)
    return marker, files


def _loaders(quick, out):
    from vissl_aasae.detection.convert import convert_file
    from vissl_aasae.evaluation.trunk_weights import load_checkpoint_file
    from vissl_aasae.interop.feature_extraction import extract_features

    return {
        "export torchvision": lambda f: export_checkpoint(str(f), str(out / "x.pth")),
        "export detectron2": lambda f: export_checkpoint(str(f), str(out / "x.pkl"), fmt="detectron2"),
        "import": lambda f: import_lightning_file(str(f), str(out / "x.torch"), ["config=pretrain/aasae/quickstart"]),
        "features": lambda f: extract_features(quick.config, str(f), str(out / "features")),
        "detection converter": lambda f: convert_file(str(f), str(out / "y.pkl")),
        "evaluation": lambda f: load_checkpoint_file(str(f)),
    }


@pytest.mark.parametrize(
    "loader", ["export torchvision", "export detectron2", "import", "features", "detection converter", "evaluation"]
)
def test_loaders_never_run_code_from_a_checkpoint(quick, tmp_path, loader):
    marker, files = evil_files(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    load = _loaders(quick, out)[loader]
    for path in files:
        with pytest.raises(CheckpointError, match=re.escape(f"'{path}'")) as err:
            load(path)
        assert "\n" not in str(err.value)
        assert not marker.exists(), f"{loader} ran the code in {path.name}"
    assert os.listdir(out) == []
    assert "it holds exec, which is not on the allow-list" in str(_raised(load, files[0]))


def _raised(fn, *args):
    try:
        fn(*args)
    except Exception as err:  # noqa: BLE001
        return err
    return None


def _truncated(quick, tmp_path):
    path = tmp_path / "model_phase3.torch"
    data = quick.path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    "name,args",
    [
        ("aasae_export", ["--output", "{out}/x.pth"]),
        ("aasae_export", ["--format", "detectron2", "--output", "{out}/x.pkl"]),
        ("aasae_import_lightning", ["--output", "{out}/x.torch"]),
        ("aasae_extract_features", ["--output-dir", "{out}/features", "config=pretrain/aasae/quickstart"]),
    ],
)
def test_tools_name_a_truncated_or_foreign_file_in_one_line(quick, tmp_path, capsys, name, args):
    out = tmp_path / "out"
    out.mkdir()
    notes = tmp_path / "notes.txt"
    notes.write_text("these are not weights\n")
    option = "--checkpoint" if name == "aasae_extract_features" else "--input"
    for path, why in (
        (_truncated(quick, tmp_path), "is truncated or corrupt (an incomplete zip archive: no end record)"),
        (notes, "is not a PyTorch checkpoint (neither a torch zip archive nor a pickle)"),
    ):
        code = load_tool(name).main([option, str(path), *[a.format(out=out) for a in args]])
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1, lines
        assert lines[0] == f"error: checkpoint '{path}' {why}"
    assert os.listdir(out) == []


def test_import_tool_writes_only_its_output(tmp_path, monkeypatch):
    """The import composed the config the way VISSL does, which dumped ./checkpoints/aasae_stl10/train_config.yaml."""
    source = authors_model("stl10", 96)
    ckpt = tmp_path / "epoch=3199.ckpt"
    save_like_lightning(ckpt, source.state_dict(), authors_hparams("stl10", 96), monkeypatch)
    work, results = tmp_path / "work", tmp_path / "results"
    work.mkdir()
    results.mkdir()
    monkeypatch.chdir(work)
    assert load_tool("aasae_import_lightning").main(["--input", str(ckpt), "--output", str(results / "x.torch")]) == 0
    assert os.listdir(work) == [] and os.listdir(results) == ["x.torch"]
    assert (
        load_tool("aasae_import_lightning").main(["--input", str(ckpt), "--output", str(work / "no" / "x.torch")]) == 2
    )
    assert os.listdir(work) == []


def test_lightning_hyper_parameters_read_without_running_code(tmp_path):
    """Older Lightning saved hyper_parameters as an argparse.Namespace: read as is, no code allowed."""
    source = authors_model("cifar", 32)
    hparams = argparse.Namespace(**authors_hparams("cifar", 32))
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": source.state_dict(), "hyper_parameters": hparams, "epoch": 3}, path)
    from vissl_aasae.interop.lightning_import import lightning_parts, load_lightning_checkpoint

    state, found = lightning_parts(load_lightning_checkpoint(str(path)), str(path))
    assert found["encoder_name"] == "resnet18" and len(state) == len(source.state_dict())


def test_checkpoints_module_is_the_one_loader_and_imports_no_add_on():
    """19.2: the core module imports no add-on; nothing else in the plugin calls torch.load on a user's file."""
    package = REPO / "vissl_aasae"
    tree = ast.parse((package / "checkpoints.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    add_ons = ("interop", "evaluation", "visualize", "detection", "hooks", "launcher", "trainer")
    assert not [m for m in imported if m.startswith("vissl_aasae.") and m.split(".")[1] in add_ons]

    def calls_torch_load(path):
        return any(
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and n.func.attr == "load"
            and isinstance(n.func.value, ast.Name)
            and n.func.value.id in ("torch", "pickle")
            for n in ast.walk(ast.parse(path.read_text()))
        )

    loads = [str(p.relative_to(REPO)) for p in package.rglob("*.py") if calls_torch_load(p)]
    # compat.stack: bytes one rank serialised for the others (not a file)
    assert sorted(loads) == ["vissl_aasae/checkpoints.py", "vissl_aasae/compat/stack.py"]
    for adapter in (
        "interop/checkpoint_io.py",
        "detection/convert.py",
        "evaluation/trunk_weights.py",
        "visualize/checkpoint.py",
    ):
        assert "from vissl_aasae import checkpoints" in (package / adapter).read_text()
    assert [p.name for p in package.rglob("*.py") if "WIDTH_MULTIPLIERS = " in p.read_text()] == ["resnet_spec.py"]


@pytest.mark.parametrize("depth,width,stem", [(18, 0.25, "cifar"), (50, 0.5, "stl10"), (34, 0.125, "cifar")])
def test_narrow_trunks_are_recognised_and_exported(tmp_path, depth, width, stem):
    from vissl_aasae.evaluation.trunk_weights import describe_trunk_weights

    torch.manual_seed(0)
    blocks = randomize_batch_norm(build_feature_blocks(ResNetSpec(depth, width, stem))).eval()
    state = OrderedDict(("_feature_blocks." + k, v) for k, v in blocks.state_dict().items())
    assert checkpoints.infer_spec(state, stem) == ResNetSpec(depth, width, stem)
    assert describe_trunk_weights(state, "").startswith(f"ResNet-{depth} (WIDTH_MULTIPLIER {width})")
    path = tmp_path / "narrow.torch"
    torch.save(trunk_checkpoint(blocks), path)
    info = export_checkpoint(str(path), str(tmp_path / "tv.pth"), stem=stem)
    assert info["width_multiplier"] == width and info["arch"] == f"resnet{depth}w{width}"
    tv = torchvision_resnet(depth, stem=stem, width_multiplier=width).eval()
    tv.load_state_dict(torch.load(tmp_path / "tv.pth"), strict=True)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(tv(x), run_blocks(blocks, x), **TOL)
    if depth == 50:
        from vissl_aasae.detection.convert import width_multiplier

        assert width_multiplier(checkpoints.torchvision_names(state)) == width


def test_extraction_and_export_read_the_run_config_without_rewriting_it(quick, tmp_path):
    """The stem comes from the run's train_config.yaml; reading it leaves it as it was."""
    run = tmp_path / "run"
    run.mkdir()
    path = run / "model_final_checkpoint_phase1.torch"
    path.write_bytes(quick.path.read_bytes())
    record = "MODEL:\n  TRUNK:\n    NAME: aasae_resnet\n    AASAE_RESNET: {DEPTH: 18, STEM: cifar}\n"
    (run / "train_config.yaml").write_text(record)
    assert checkpoints.stem_from_run_config(path) == "cifar"
    export_checkpoint(str(path), str(tmp_path / "x.pth"))
    assert (run / "train_config.yaml").read_text() == record and sorted(os.listdir(run)) == [
        path.name,
        "train_config.yaml",
    ]
