"""Export a pretrained trunk from a VISSL checkpoint to another framework's weight format.

- ``torchvision``: a plain torchvision ResNet state dict (``.pth``) and ``<output>.json`` telling
  how to build the matching model (:mod:`vissl_aasae.interop.torchvision_resnet`).
- ``detectron2``: the ``.pkl`` that Detectron2's R50 backbones load; this is the detection
  benchmark's converter (:mod:`vissl_aasae.detection.convert`, ResNet-50 with a 7x7 stem only),
  called as is.
"""

from typing import Any, Dict, Optional

from vissl_aasae.detection.convert import convert_file, width_multiplier_of_weights
from vissl_aasae.interop.torchvision_resnet import export_torchvision

FORMATS = ("torchvision", "detectron2")


def export_checkpoint(
    input_path: str, output_path: str, fmt: str = "torchvision", stem: Optional[str] = None
) -> Dict[str, Any]:
    """Convert the trunk of ``input_path``; returns a summary (also what the ``.json`` holds for torchvision)."""
    if fmt == "torchvision":
        return export_torchvision(input_path, output_path, stem=stem)
    if fmt == "detectron2":
        weights = convert_file(input_path, output_path)
        return {
            "format": "detectron2",
            "arch": "R-50",
            "width_multiplier": width_multiplier_of_weights(weights),
            "tensors": len(weights["model"]),
        }
    raise ValueError(f"export format {fmt!r} is not supported; allowed: {list(FORMATS)}")
