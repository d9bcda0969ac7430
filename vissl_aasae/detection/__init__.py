"""Object-detection transfer: VISSL trunk -> Detectron2 weights (see benchmarks/detection/)."""

from vissl_aasae.detection.convert import (
    NotAResNet50Error,
    convert_checkpoint,
    convert_file,
    convert_state_dict,
    detectron2_name,
    extract_trunk_state_dict,
)

__all__ = [
    "NotAResNet50Error",
    "convert_checkpoint",
    "convert_file",
    "convert_state_dict",
    "detectron2_name",
    "extract_trunk_state_dict",
]
