"""Checkpoints that travel: export to torchvision / Detectron2, import of the authors' Lightning
checkpoints, and feature extraction to ``.npy`` (CLIs: ``tools/aasae_export.py``,
``tools/aasae_import_lightning.py``, ``tools/aasae_extract_features.py``; see MODEL_ZOO.md).
"""

from vissl_aasae.interop.checkpoint_io import CheckpointKeyError, load_checkpoint, trunk_state_dict
from vissl_aasae.interop.export import export_checkpoint
from vissl_aasae.interop.feature_extraction import extract_features
from vissl_aasae.interop.lightning_import import import_lightning_checkpoint, import_lightning_file
from vissl_aasae.interop.torchvision_resnet import export_torchvision, infer_spec, torchvision_resnet

__all__ = [
    "CheckpointKeyError",
    "export_checkpoint",
    "export_torchvision",
    "extract_features",
    "import_lightning_checkpoint",
    "import_lightning_file",
    "infer_spec",
    "load_checkpoint",
    "torchvision_resnet",
    "trunk_state_dict",
]
