"""Convert a ResNet-50 trunk from a VISSL checkpoint to a Detectron2 weights file (.pkl).

Input: a VISSL checkpoint (``ckpt["classy_state_dict"]["base_model"]["model"]["trunk"]``), or a plain
state dict of the trunk, with keys under ``_feature_blocks.`` or in torchvision layout. Output: a
pickle ``{"model": {detectron2 name: numpy array}, "__author__": "vissl_aasae",
"matching_heuristics": True}``, which ``DetectionCheckpointer`` loads into both the backbone
(``stem``, ``res2``-``res4``) and the C4 ROI head (``res5``) by suffix matching.

Usage: ``python -m vissl_aasae.detection.convert --input CKPT --output out.pkl``
"""

import argparse
import os
import pickle
import re
from collections import OrderedDict
from typing import Any, Dict, Mapping, Optional

import numpy as np
import torch

from vissl_aasae import checkpoints
from vissl_aasae.models.resnet_spec import WIDTH_MULTIPLIERS, normalise_width

RESNET50_BLOCKS = (3, 4, 6, 3)
AUTHOR = "vissl_aasae"

# Prefixes that wrap the torchvision-layout trunk names, outermost first.
_PREFIXES = ("module.", "base_model.", "model.", "trunk.", "_feature_blocks.")
_STAGE = re.compile(r"^layer([1-4])\.(\d+)\.(.+)$")
_BN = re.compile(r"^bn(\d)\.(weight|bias|running_mean|running_var)$")
_CONV = re.compile(r"^conv(\d)\.weight$")
_SHORTCUT = re.compile(r"^downsample\.([01])\.(weight|bias|running_mean|running_var)$")


class NotAResNet50Error(ValueError):
    """The checkpoint holds no ResNet-50 trunk that Detectron2's R50 backbone can load."""


def load_checkpoint(path: str) -> Any:
    """A checkpoint read without running code from the file (:func:`vissl_aasae.checkpoints.load`)."""
    return checkpoints.load(path)


def extract_trunk_state_dict(checkpoint: Mapping[str, Any]) -> "OrderedDict[str, Any]":
    """The trunk's tensors in torchvision layout (``conv1.weight``, ``layer1.0.bn1.weight``, ...)."""
    state = checkpoint
    model = checkpoints.model_state(checkpoint)
    if model is not None:
        if not isinstance(model.get("trunk"), Mapping):
            raise ValueError(
                f"VISSL checkpoint has no classy_state_dict.base_model.model.trunk; model keys: {sorted(model)}"
            )
        state = model["trunk"]
    elif isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(f"expected a checkpoint dict or a state dict, got {type(state).__name__}")
    return checkpoints.torchvision_names({k: v for k, v in state.items() if hasattr(v, "shape")}, _PREFIXES)


def detectron2_name(name: str) -> Optional[str]:
    """Detectron2 ResNet name of a torchvision-layout trunk key; None for keys Detectron2 has no use for."""
    if name.endswith("num_batches_tracked"):
        return None
    if name == "conv1.weight":
        return "stem.conv1.weight"
    bn = _BN.match(name)
    if bn and bn.group(1) == "1":
        return f"stem.conv1.norm.{bn.group(2)}"
    stage = _STAGE.match(name)
    if not stage:
        return None  # heads (fc), pooling, anything outside the trunk
    layer, block, rest = stage.groups()
    prefix = f"res{int(layer) + 1}.{block}"
    if _CONV.match(rest):
        return f"{prefix}.{rest}"
    bn = _BN.match(rest)
    if bn:
        return f"{prefix}.conv{bn.group(1)}.norm.{bn.group(2)}"
    shortcut = _SHORTCUT.match(rest)
    if shortcut:
        index, param = shortcut.groups()
        return f"{prefix}.shortcut.{param}" if index == "0" else f"{prefix}.shortcut.norm.{param}"
    return None


def describe_trunk(trunk: Mapping[str, Any]) -> Dict[str, Any]:
    """What kind of ResNet the trunk keys describe: blocks per stage, block type, widths, stem kernel."""
    layout = checkpoints.trunk_layout(trunk)
    kernel = layout.stem_kernel
    return {
        "blocks_per_stage": list(layout.blocks_per_stage),
        "block": layout.block,
        "stem_channels": layout.stem_channels,
        "stem_kernel": (kernel, kernel) if kernel is not None else None,
        "out_channels": layout.out_channels,
    }


def width_multiplier(trunk: Mapping[str, Any]):
    """ResNet-50 width multiplier (one of resnet_spec.WIDTH_MULTIPLIERS) of the trunk; raises
    NotAResNet50Error otherwise."""
    found = describe_trunk(trunk)
    problems = []
    if tuple(found["blocks_per_stage"]) != RESNET50_BLOCKS:
        problems.append(f"blocks per stage {found['blocks_per_stage']} (ResNet-50: {list(RESNET50_BLOCKS)})")
    if found["block"] != "Bottleneck":
        problems.append(f"{found['block']} blocks (ResNet-50: Bottleneck, with conv3)")
    out = found["out_channels"]
    widths = {int(2048 * w): w for w in WIDTH_MULTIPLIERS}
    if out not in widths:
        problems.append(
            f"layer4 output channels {out} (ResNet-50: 2048 x a width multiplier {list(WIDTH_MULTIPLIERS)})"
        )
    elif found["stem_channels"] != int(64 * widths[out]):
        problems.append(f"stem channels {found['stem_channels']} for layer4 output {out}")
    if found["stem_kernel"] not in (None, (7, 7)):
        problems.append(
            f"a {found['stem_kernel'][0]}x{found['stem_kernel'][1]} stem conv (Detectron2's stem is 7x7 "
            "stride 2: pretrain with the 'imagenet' or 'stl10' stem)"
        )
    if found["stem_kernel"] is None:
        problems.append("no stem conv1.weight")
    if problems:
        sample = ", ".join(list(trunk)[:5]) or "no tensors"
        raise NotAResNet50Error(
            "checkpoint has no ResNet-50 trunk that Detectron2's R50 backbone can load: found "
            + "; ".join(problems)
            + f" ({len(trunk)} trunk tensors, e.g. {sample})"
        )
    return widths[out]


def convert_state_dict(trunk: Mapping[str, Any]) -> "OrderedDict[str, np.ndarray]":
    """Rename a torchvision-layout ResNet-50 trunk to Detectron2 names, as numpy arrays."""
    width_multiplier(trunk)
    converted = OrderedDict()
    for name, value in trunk.items():
        new_name = detectron2_name(name)
        if new_name is None:
            continue
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        converted[new_name] = np.asarray(value)
    return converted


def convert_checkpoint(checkpoint: Mapping[str, Any]) -> Dict[str, Any]:
    """The Detectron2 weights dict (``model``, ``__author__``, ``matching_heuristics``) of a checkpoint."""
    model = convert_state_dict(extract_trunk_state_dict(checkpoint))
    return {"model": model, "__author__": AUTHOR, "matching_heuristics": True}


def convert_file(input_path: str, output_path: str) -> Dict[str, Any]:
    """Convert the checkpoint at ``input_path`` and pickle the result to ``output_path`` (written
    to a temporary file and renamed: never a partial file under that name)."""
    weights = convert_checkpoint(load_checkpoint(input_path))
    folder = os.path.dirname(os.path.abspath(output_path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"output folder {folder!r} does not exist")
    checkpoints.atomic_write(output_path, lambda f: pickle.dump(weights, f))
    return weights


def width_multiplier_of_weights(weights: Mapping[str, Any]):
    """Width multiplier of converted Detectron2 weights (from the stem's output channels)."""
    return normalise_width(int(weights["model"]["stem.conv1.weight"].shape[0]) / 64)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", required=True, help="VISSL checkpoint or trunk state dict (torch.save'd)")
    parser.add_argument("--output", required=True, help="Detectron2 weights file to write (.pkl)")
    args = parser.parse_args(argv)
    try:
        weights = convert_file(args.input, args.output)
    except (ValueError, FileNotFoundError) as err:  # NotAResNet50Error and CheckpointError included
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    width = width_multiplier_of_weights(weights)
    print(f"wrote {len(weights['model'])} tensors (ResNet-50, width x{width}) to {args.output}")


if __name__ == "__main__":
    main()
