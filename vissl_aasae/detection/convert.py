"""Convert a ResNet-50 trunk from a VISSL checkpoint to a Detectron2 weights file (.pkl).

Input: a VISSL checkpoint (``ckpt["classy_state_dict"]["base_model"]["model"]["trunk"]``), or a plain
state dict of the trunk, with keys under ``_feature_blocks.`` or in torchvision layout. Output: a
pickle ``{"model": {detectron2 name: numpy array}, "__author__": "vissl_aasae",
"matching_heuristics": True}``, which ``DetectionCheckpointer`` loads into both the backbone
(``stem``, ``res2``-``res4``) and the C4 ROI head (``res5``) by suffix matching.

Usage: ``python -m vissl_aasae.detection.convert --input CKPT --output out.pkl``
"""
import argparse
import pickle
import re
from collections import OrderedDict
from typing import Any, Dict, Mapping, Optional

import numpy as np
import torch

RESNET50_BLOCKS = (3, 4, 6, 3)
WIDTH_MULTIPLIERS = (1, 2, 4)
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
    """torch.load a checkpoint on CPU (full unpickling: only load checkpoints you trust)."""
    return torch.load(path, map_location="cpu", weights_only=False)


def extract_trunk_state_dict(checkpoint: Mapping[str, Any]) -> "OrderedDict[str, Any]":
    """The trunk's tensors in torchvision layout (``conv1.weight``, ``layer1.0.bn1.weight``, ...)."""
    state = checkpoint
    classy = state.get("classy_state_dict") if isinstance(state, Mapping) else None
    if classy is not None:
        try:
            state = classy["base_model"]["model"]["trunk"]
        except (KeyError, TypeError):
            raise ValueError(
                "VISSL checkpoint has no classy_state_dict.base_model.model.trunk; "
                f"classy_state_dict keys: {sorted(classy)}"
            ) from None
    elif isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(f"expected a checkpoint dict or a state dict, got {type(state).__name__}")
    trunk = OrderedDict()
    for key, value in state.items():
        if not hasattr(value, "shape"):
            continue
        name = key
        for prefix in _PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix):]
        trunk[name] = value
    return trunk


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
    blocks = []
    for layer in range(1, 5):
        indices = {int(m.group(2)) for m in map(_STAGE.match, trunk) if m and m.group(1) == str(layer)}
        blocks.append(len(indices))
    has_conv3 = any(k.startswith("layer") and ".conv3." in k for k in trunk)
    block_type = "Bottleneck" if has_conv3 else ("BasicBlock" if any(blocks) else "none")
    last_conv = f"layer4.{max(blocks[3] - 1, 0)}.conv{3 if has_conv3 else 2}.weight"
    conv1 = trunk.get("conv1.weight")
    return {
        "blocks_per_stage": blocks,
        "block": block_type,
        "stem_channels": int(conv1.shape[0]) if conv1 is not None else None,
        "stem_kernel": tuple(conv1.shape[2:]) if conv1 is not None else None,
        "out_channels": int(trunk[last_conv].shape[0]) if last_conv in trunk else None,
    }


def width_multiplier(trunk: Mapping[str, Any]) -> int:
    """ResNet-50 width multiplier (1, 2 or 4) of the trunk; raises NotAResNet50Error otherwise."""
    found = describe_trunk(trunk)
    problems = []
    if tuple(found["blocks_per_stage"]) != RESNET50_BLOCKS:
        problems.append(f"blocks per stage {found['blocks_per_stage']} (ResNet-50: {list(RESNET50_BLOCKS)})")
    if found["block"] != "Bottleneck":
        problems.append(f"{found['block']} blocks (ResNet-50: Bottleneck, with conv3)")
    out = found["out_channels"]
    widths = {2048 * w: w for w in WIDTH_MULTIPLIERS}
    if out not in widths:
        problems.append(f"layer4 output channels {out} (ResNet-50: 2048, or 4096/8192 when 2x/4x wide)")
    elif found["stem_channels"] != 64 * widths[out]:
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
    """Convert the checkpoint at ``input_path`` and pickle the result to ``output_path``."""
    weights = convert_checkpoint(load_checkpoint(input_path))
    with open(output_path, "wb") as f:
        pickle.dump(weights, f)
    return weights


def width_multiplier_of_weights(weights: Mapping[str, Any]) -> int:
    """Width multiplier of converted Detectron2 weights (from the stem's output channels)."""
    return int(weights["model"]["stem.conv1.weight"].shape[0]) // 64


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", required=True, help="VISSL checkpoint or trunk state dict (torch.save'd)")
    parser.add_argument("--output", required=True, help="Detectron2 weights file to write (.pkl)")
    args = parser.parse_args(argv)
    try:
        weights = convert_file(args.input, args.output)
    except ValueError as err:  # NotAResNet50Error included
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    width = width_multiplier_of_weights(weights)
    print(f"wrote {len(weights['model'])} tensors (ResNet-50, width x{width}) to {args.output}")


if __name__ == "__main__":
    main()
