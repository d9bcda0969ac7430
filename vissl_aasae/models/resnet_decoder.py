"""The inverted ResNet decoder of AASAE (pure PyTorch; the VISSL head wraps it).

As the authors' decoder (``src/models/decoder.py`` of their AAVAE code): no batch norm, every conv
with bias, ReLU, nearest-neighbour upsampling.  ``Linear(d,h) -> ReLU -> Linear(h,h) -> ReLU`` where
``h`` is the **encoder's** feature dimension whatever the decoder's depth, reshape to
``(h/16, 4, 4)``, ``conv1x1(h/16 -> h)``, ReLU; four stages with the decoder depth's block type and
reversed layer counts, stage widths 256/128/64/32 x block expansion x width multiplier (the
reference starts from 512 x width and halves before each stage); stage 1 resizes to
``input_height / f`` and stages 2-4 upsample x2, inside the first block of each stage (before conv1
in a basic block, after conv1 in a bottleneck), whose shortcut is always resize + conv1x1; then x2
if the encoder had a max-pool, ``conv3x3(-> 64)``, ReLU, x2 if the stem was not 3x3,
``conv3x3(64 -> 3)``.

Initialisation (``init`` / ``MODEL.AASAE.DECODER_INIT``):
- ``pytorch`` (default): PyTorch's default init, as the authors' code (they tried Kaiming init in
  the decoder and removed it); the published numbers come from it.
- ``kaiming``: He-normal weights (fan-in, ReLU gain) and zero biases for every conv and linear
  layer, and the last conv of each residual branch zeroed, so that every block starts as its
  shortcut.  Without batch norm, PyTorch's default init shrinks the signal at every layer, so the
  output starts narrow and nearly independent of ``z`` (measured in tests/test_models.py).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.resnet import BasicBlock

from vissl_aasae.models.resnet_spec import STEMS, ResNetSpec


def _conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, bias=True)


def _conv1x1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, bias=True)


class Resize(nn.Module):
    """Nearest-neighbour resize to a fixed ``size`` or by a ``scale`` factor."""

    def __init__(self, size: int = None, scale: int = None):
        super().__init__()
        self.size, self.scale = size, scale

    def forward(self, x):
        if self.size is not None:
            return F.interpolate(x, size=(self.size, self.size), mode="nearest")
        return F.interpolate(x, scale_factor=self.scale, mode="nearest")

    def extra_repr(self):
        return f"size={self.size}" if self.size is not None else f"scale={self.scale}"


class UpBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, resize: nn.Module = None, shortcut: nn.Module = None):
        super().__init__()
        self.resize = resize
        self.conv1 = _conv3x3(inplanes, planes)
        self.conv2 = _conv3x3(planes, planes)
        self.shortcut = shortcut

    def forward(self, x):
        out = self.resize(x) if self.resize is not None else x
        out = F.relu(self.conv1(out), inplace=True)
        out = self.conv2(out)
        identity = self.shortcut(x) if self.shortcut is not None else x
        return F.relu(out + identity, inplace=True)


class UpBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, resize: nn.Module = None, shortcut: nn.Module = None):
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.resize = resize
        self.conv2 = _conv3x3(planes, planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.shortcut = shortcut

    def forward(self, x):
        out = F.relu(self.conv1(x), inplace=True)
        if self.resize is not None:
            out = self.resize(out)
        out = F.relu(self.conv2(out), inplace=True)
        out = self.conv3(out)
        identity = self.shortcut(x) if self.shortcut is not None else x
        return F.relu(out + identity, inplace=True)


DECODER_INITS = ("pytorch", "kaiming")


def init_decoder(decoder: nn.Module, scheme: str) -> None:
    if scheme not in DECODER_INITS:
        raise ValueError(f"MODEL.AASAE.DECODER_INIT={scheme!r} is not one of {list(DECODER_INITS)}")
    if scheme == "pytorch":
        return
    for module in decoder.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(module.bias)
    for module in decoder.modules():
        if isinstance(module, (UpBasicBlock, UpBottleneck)):
            last = module.conv3 if isinstance(module, UpBottleneck) else module.conv2
            nn.init.zeros_(last.weight)


def decoder_output_factor(stem: str) -> int:
    """``f``: the decoder's first stage works at ``input_height / f``."""
    kernel, stride, maxpool = STEMS[stem]
    return 8 * (2 if kernel != 3 else 1) * (2 if maxpool else 1)


def check_input_height(stem: str, input_height: int) -> None:
    f = decoder_output_factor(stem)
    if input_height < f or input_height % f != 0:
        raise ValueError(
            f"input_height={input_height} cannot be produced by the decoder for stem {stem!r}: "
            f"it must be a positive multiple of {f} (e.g. 32 for cifar, 96 for stl10, 224 for imagenet)"
        )


class ResNetDecoder(nn.Module):
    """``spec``: the decoder's depth, the encoder's width multiplier and stem; ``h_dim``: the
    encoder's feature dimension (default: that of ``spec``, i.e. a decoder mirroring its encoder)."""

    def __init__(self, spec: ResNetSpec, latent_dim: int, input_height: int, h_dim: int = None, init: str = "pytorch"):
        super().__init__()
        check_input_height(spec.stem, input_height)
        kernel, _, maxpool = STEMS[spec.stem]
        self.spec = spec
        self.input_height = input_height
        self.upsample_maxpool = maxpool
        self.upsample_stem = kernel != 3
        block = UpBasicBlock if spec.block is BasicBlock else UpBottleneck
        h = spec.feature_dim if h_dim is None else int(h_dim)
        if h < 16 or h % 16:
            raise ValueError(f"the decoder reshapes h={h} to (h/16, 4, 4): h must be a positive multiple of 16")
        self.h = h
        self.linear = nn.Sequential(
            nn.Linear(latent_dim, h), nn.ReLU(inplace=True), nn.Linear(h, h), nn.ReLU(inplace=True)
        )
        self.conv1 = _conv1x1(h // 16, h)
        size = 4
        inplanes = h
        stages = []
        for i, (n_blocks, planes) in enumerate(zip(reversed(spec.layers), spec.decoder_planes)):
            if i == 0:
                # resize to input_height / f, also when that is the 4x4 we start from (the
                # reference keeps this no-op resize and its shortcut conv in every stage)
                size = input_height // decoder_output_factor(spec.stem)
                resize = Resize(size=size)
            else:
                resize = Resize(scale=2)
                size *= 2
            shortcut = nn.Sequential(resize, _conv1x1(inplanes, planes * block.expansion))
            blocks = [block(inplanes, planes, resize, shortcut)]
            inplanes = planes * block.expansion
            blocks += [block(inplanes, planes) for _ in range(1, n_blocks)]
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.conv2 = _conv3x3(inplanes, 64)
        self.final_conv = _conv3x3(64, 3)
        init_decoder(self, init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.linear(z).view(z.shape[0], self.h // 16, 4, 4)
        x = F.relu(self.conv1(x), inplace=True)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        if self.upsample_maxpool:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = F.relu(self.conv2(x), inplace=True)
        if self.upsample_stem:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.final_conv(x)
