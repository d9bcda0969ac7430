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
import re
from collections import OrderedDict
from typing import Any, Dict, Mapping, Optional

import torch
import torch.nn as nn
import torchvision
from torchvision.models.resnet import Bottleneck

from vissl_aasae.interop.checkpoint_io import FEATURE_BLOCKS, load_checkpoint, trunk_state_dict
from vissl_aasae.models.resnet_spec import DEPTHS, STEMS, ResNetSpec, check_choice

ARCHS = {18: "resnet18", 34: "resnet34", 50: "resnet50"}
_STAGE_BLOCK = re.compile(r"^layer([1-4])\.(\d+)\.")


def torchvision_resnet(depth: int, stem: str = "imagenet", width_multiplier: int = 1) -> torchvision.models.ResNet:
    """A torchvision ResNet with the trunk's architecture whose forward returns the pooled feature."""
    spec = ResNetSpec(int(depth), int(width_multiplier), str(stem))
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
        out[key[len(FEATURE_BLOCKS):]] = value.detach().cpu().clone()
    return out


def infer_spec(trunk: Mapping[str, torch.Tensor], stem: Optional[str] = None) -> ResNetSpec:
    """Depth, width and stem of a trunk state dict (``_feature_blocks.*`` or torchvision keys).

    The depth and width are read from the tensors; the stem's conv kernel too (3x3 = ``cifar``),
    but a 7x7 conv is ``stl10`` or ``imagenet`` depending on a max-pool that has no weights: pass
    ``stem`` then.
    """
    names = [k[len(FEATURE_BLOCKS):] if k.startswith(FEATURE_BLOCKS) else k for k in trunk]
    tensors = dict(zip(names, trunk.values()))
    blocks = []
    for layer in "1234":
        blocks.append(len({m.group(2) for m in map(_STAGE_BLOCK.match, names) if m and m.group(1) == layer}))
    bottleneck = any(".conv3." in n for n in names)
    found = {(DEPTHS[d][0] is Bottleneck, tuple(DEPTHS[d][1])): d for d in DEPTHS}
    depth = found.get((bottleneck, tuple(blocks)))
    if depth is None or "conv1.weight" not in tensors:
        raise ValueError(
            f"not an AASAE ResNet trunk: {'Bottleneck' if bottleneck else 'BasicBlock'} blocks per stage "
            f"{blocks}, conv1.weight {'present' if 'conv1.weight' in tensors else 'absent'} (known: ResNet-18 "
            "BasicBlock [2,2,2,2], ResNet-34 BasicBlock [3,4,6,3], ResNet-50 Bottleneck [3,4,6,3])"
        )
    conv1 = tensors["conv1.weight"]
    width_multiplier, rest = divmod(int(conv1.shape[0]), 64)
    kernel = int(conv1.shape[-1])
    if rest:
        raise ValueError(f"conv1.weight has {conv1.shape[0]} output channels, not a multiple of 64")
    if stem is None:
        if kernel != 3:
            raise ValueError(
                f"the trunk's first conv is {kernel}x{kernel}: its stem is 'stl10' (no max-pool) or 'imagenet' "
                "(max-pool), which the weights do not tell apart; state it (stem=..., --stem)"
            )
        stem = "cifar"
    check_choice("stem", stem, tuple(STEMS))
    if STEMS[stem][0] != kernel:
        raise ValueError(f"stem {stem!r} has a {STEMS[stem][0]}x{STEMS[stem][0]} conv but the trunk's conv1 is {kernel}x{kernel}")
    return ResNetSpec(depth, width_multiplier, stem)


def stem_from_train_config(checkpoint_path: str) -> Optional[str]:
    """The stem recorded in the ``train_config.yaml`` VISSL writes beside its checkpoints, if any."""
    path = os.path.join(os.path.dirname(os.path.abspath(checkpoint_path)), "train_config.yaml")
    if not os.path.isfile(path):
        return None
    import yaml

    with open(path) as f:
        config = yaml.safe_load(f) or {}
    trunk = (config.get("MODEL") or {}).get("TRUNK") or {}
    if trunk.get("NAME") == "aasae_resnet":
        return (trunk.get("AASAE_RESNET") or {}).get("STEM")
    if trunk.get("NAME") == "resnet":
        return "imagenet"
    return None


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
    torch.save(state, output_path)
    with open(output_path + ".json", "w") as f:
        json.dump(info, f, indent=2)
    return info
