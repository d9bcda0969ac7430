"""``aasae_resnet``: ResNet-18/34/50 (and 50w2/50w4) encoders with the paper's three stems.

VISSL's own ``resnet`` trunk has only depths 50-200 and the ImageNet stem. This one keeps
VISSL's layout (``_feature_blocks.{conv1,bn1,conv1_relu,maxpool,layer1..4,avgpool,flatten}``,
torchvision names inside each block), so the weights export to torchvision and Detectron2
by renaming, and VISSL's feature-evaluation machinery (``res2``..``res5``, ``res5avg``) works.

Config: ``MODEL.TRUNK.NAME: aasae_resnet`` with ``MODEL.TRUNK.AASAE_RESNET``:
``DEPTH`` (18|34|50), ``WIDTH_MULTIPLIER`` (0.125|0.25|0.5 for narrow CPU-scale models,
1, 2|4 for depth 50), ``STEM``
(cifar|stl10|imagenet), ``ZERO_INIT_RESIDUAL`` (bool).
"""

from collections import OrderedDict
from typing import List

import torch
import torch.nn as nn
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1
from vissl.models.model_helpers import Flatten, get_trunk_forward_outputs
from vissl.models.trunks import register_model_trunk

from vissl_aasae.models.resnet_spec import STEMS, ResNetSpec
from vissl_aasae.settings import TrunkSettings

FEATURE_NAME_MAP = {
    "conv1": "conv1_relu",
    "res1": "maxpool",
    "res2": "layer1",
    "res3": "layer2",
    "res4": "layer3",
    "res5": "layer4",
    "res5avg": "avgpool",
    "flatten": "flatten",
}


def spec_from_config(model_config) -> ResNetSpec:
    """The encoder of ``MODEL.TRUNK.AASAE_RESNET`` (:class:`vissl_aasae.settings.TrunkSettings`)."""
    trunk = TrunkSettings.from_model_config(model_config)
    try:
        return ResNetSpec(depth=trunk.depth, width_multiplier=trunk.width_multiplier, stem=trunk.stem)
    except ValueError as err:
        raise ValueError(f"MODEL.TRUNK.AASAE_RESNET: {err}") from None


def _make_stage(block, inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            conv1x1(inplanes, planes * block.expansion, stride),
            nn.BatchNorm2d(planes * block.expansion),
        )
    layers = [block(inplanes, planes, stride, downsample)]
    layers += [block(planes * block.expansion, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def build_feature_blocks(spec: ResNetSpec, zero_init_residual: bool = False) -> nn.ModuleDict:
    """The encoder as VISSL feature blocks, torchvision parameter names inside."""
    kernel, stride, maxpool = STEMS[spec.stem]
    width = spec.base_width
    blocks = OrderedDict(
        conv1=nn.Conv2d(3, width, kernel, stride, kernel // 2, bias=False),
        bn1=nn.BatchNorm2d(width),
        conv1_relu=nn.ReLU(inplace=True),
        maxpool=nn.MaxPool2d(3, 2, 1) if maxpool else nn.Identity(),
    )
    inplanes = width
    for i, n_blocks in enumerate(spec.layers):
        planes = width * 2**i
        blocks[f"layer{i + 1}"] = _make_stage(spec.block, inplanes, planes, n_blocks, 1 if i == 0 else 2)
        inplanes = planes * spec.block.expansion
    blocks["avgpool"] = nn.AdaptiveAvgPool2d((1, 1))
    blocks["flatten"] = Flatten(1)
    feature_blocks = nn.ModuleDict(blocks)
    for m in feature_blocks.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        for m in feature_blocks.modules():
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)
            elif isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)
    return feature_blocks


@register_model_trunk("aasae_resnet")
class AASAEResNet(nn.Module):
    def __init__(self, model_config, model_name: str):
        super().__init__()
        self.model_config = model_config
        self.spec = spec_from_config(model_config)
        zero_init = TrunkSettings.from_model_config(model_config).zero_init_residual
        self._feature_blocks = build_feature_blocks(self.spec, zero_init)
        self.feat_eval_mapping = FEATURE_NAME_MAP

    def forward(self, x: torch.Tensor, out_feat_keys: List[str] = None) -> List[torch.Tensor]:
        return get_trunk_forward_outputs(
            feat=x,
            out_feat_keys=out_feat_keys,
            feature_blocks=self._feature_blocks,
            feature_mapping=self.feat_eval_mapping,
        )
