"""The ``aasae_resnet`` trunk as a torchvision ``ResNet``: a model factory and the weight renaming.

The trunk keeps torchvision's parameter names under ``_feature_blocks.``, so exporting is a prefix
strip. What torchvision's stock constructors cannot express is built by :func:`torchvision_resnet`
on torchvision's own ``ResNet`` class:

- **stems** (the weights show the conv, not the max-pool, so the stem is stated, not guessed):
  ``imagenet`` = torchvision's own (conv 7x7 stride 2 + max-pool 3x3/2);
  ``stl10`` = conv 7x7 stride 2, ``maxpool`` replaced by ``nn.Identity()``;
  ``cifar`` = ``conv1`` replaced by a 3x3 stride-1 conv (padding 1, no bias), ``maxpool`` = Identity.
- **fc** = ``nn.Identity()``: ``model(x)`` is the pooled last stage ``h`` (512 for ResNet-18/34,
  2048 x width for ResNet-50), the representation AASAE evaluates. The exported state dict has no
  ``fc.*`` keys; put a classifier of your own on top.
- **widths**: AASAE's ResNet-50w2/w4 (as in SimCLR/SwAV) multiply *every* width: stem 128/256
  channels, stage outputs 512..4096 (w2). torchvision's ``wide_resnet50_2`` is a different
  network (only the bottleneck's inner 3x3 is widened, stem and stage outputs stay 64..2048), so
  these weights cannot load into it. ``torchvision_resnet(50, width_multiplier=2)`` instead builds a
  torchvision ``ResNet`` whose stem and four stages are rebuilt with torchvision's own
  ``Bottleneck`` at the wider widths (through ``ResNet._make_layer``); its parameter names are
  torchvision's, so the state dict loads with ``strict=True``.
"""

import json
import os
from collections import OrderedDict
from typing import Any, Dict, Mapping, Optional

import torch
import torch.nn as nn
import torchvision

from vissl_aasae.checkpoints import infer_spec, save, stem_from_run_config  # noqa: F401  (infer_spec: the interop API)
from vissl_aasae.interop.checkpoint_io import FEATURE_BLOCKS, load_checkpoint, trunk_state_dict
from vissl_aasae.models.resnet_spec import STEMS, ResNetSpec

ARCHS = {18: "resnet18", 34: "resnet34", 50: "resnet50"}


def torchvision_resnet(depth: int, stem: str = "imagenet", width_multiplier: float = 1) -> torchvision.models.ResNet:
    """A torchvision ResNet with the trunk's architecture whose forward returns the pooled feature."""
    spec = ResNetSpec(int(depth), width_multiplier, str(stem))
    model = getattr(torchvision.models, ARCHS[spec.depth])(weights=None)
    kernel, stride, maxpool = STEMS[spec.stem]
    width = spec.base_width
    if width != 64:
        model.bn1 = nn.BatchNorm2d(width)
        model.inplanes = width
        for i, n_blocks in enumerate(spec.layers):
            stage = model._make_layer(spec.block, width * 2**i, n_blocks, stride=1 if i == 0 else 2)
            setattr(model, f"layer{i + 1}", stage)
    if (kernel, stride) != (7, 2) or width != 64:
        model.conv1 = nn.Conv2d(3, width, kernel, stride, kernel // 2, bias=False)
    if not maxpool:
        model.maxpool = nn.Identity()
    model.fc = nn.Identity()
    return model


def to_torchvision_state_dict(trunk: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """``_feature_blocks.conv1.weight`` -> ``conv1.weight`` (and so on); tensors are cloned to CPU."""
    out = OrderedDict()
    for key, value in trunk.items():
        if not key.startswith(FEATURE_BLOCKS):
            raise ValueError(f"trunk key {key!r} is not under {FEATURE_BLOCKS!r}")
        out[key[len(FEATURE_BLOCKS) :]] = value.detach().cpu().clone()
    return out


def stem_from_train_config(checkpoint_path: str) -> Optional[str]:
    """The stem recorded in the ``train_config.yaml`` VISSL writes beside its checkpoints, if any."""
    return stem_from_run_config(checkpoint_path)


def export_torchvision(input_path: str, output_path: str, stem: Optional[str] = None) -> Dict[str, Any]:
    """Write the trunk of a VISSL checkpoint as a torchvision state dict plus ``<output>.json``.

    The ``.json`` says how to build the matching model. The weights are checked to load with
    ``strict=True`` into :func:`torchvision_resnet` before anything is written.
    """
    trunk = trunk_state_dict(load_checkpoint(input_path), source=input_path)
    spec = infer_spec(trunk, stem or stem_from_train_config(input_path))
    state = to_torchvision_state_dict(trunk)
    torchvision_resnet(spec.depth, spec.stem, spec.width_multiplier).load_state_dict(state, strict=True)
    kernel, stride, maxpool = STEMS[spec.stem]
    arch = ARCHS[spec.depth] + (f"w{spec.width_multiplier}" if spec.width_multiplier != 1 else "")
    info = {
        "format": "torchvision_resnet_state_dict",
        "arch": arch,
        "depth": spec.depth,
        "width_multiplier": spec.width_multiplier,
        "stem": spec.stem,
        "conv1": f"{kernel}x{kernel} stride {stride} padding {kernel // 2}, no bias",
        "maxpool": "MaxPool2d(3, 2, 1)" if maxpool else "none (nn.Identity)",
        "fc": f"none: the model ends at the {spec.feature_dim}-d pooled feature (fc = nn.Identity)",
        "feature_dim": spec.feature_dim,
        "build": (
            "from vissl_aasae.interop import torchvision_resnet; "
            f"model = torchvision_resnet({spec.depth}, stem={spec.stem!r}, width_multiplier={spec.width_multiplier}); "
            f"model.load_state_dict(torch.load({os.path.basename(output_path)!r}))"
        ),
        "source": os.path.abspath(input_path),
        "tensors": len(state),
    }
    save(state, output_path, what="--output")
    with open(output_path + ".json", "w") as f:
        json.dump(info, f, indent=2)
    return info
