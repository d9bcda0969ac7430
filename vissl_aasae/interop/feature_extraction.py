"""Trunk features of a data set split, saved as ``.npy`` in data set order; on CPU or GPU, in process.

VISSL's own ``extract_features`` engine runs on GPU only; this writes the features of the plugin's
one feature pass (:func:`vissl_aasae.evaluation.features.extract_features`: VISSL's data set for the
split, so the config's data source, ``DATA_LIMIT`` and transforms apply, a sequential loader with
watched workers) to disk. The images go through the **evaluation transform**: the ``original`` list of the config's
``AASAEViews`` entry (the pretraining target transform), unless ``transforms`` is given.

Output in ``output_dir`` (``<split>`` is ``train`` or ``test``):

- ``<split>_features.npy``: N x D float32 (``D`` = 512 for ResNet-18/34, 2048 x width for ResNet-50
  with the default feature ``flatten`` = the pooled last stage ``h``; other trunk features such as
  ``res4`` are flattened per example);
- ``<split>_labels.npy``: N int64 (-1 where a split has no labels, e.g. STL-10 unlabeled);
- ``<split>_indices.npy``: N int64, each row's index in the data source split (equal to ``0..N-1``
  unless ``DATA_LIMIT`` picks a subset);
- ``<split>_features.json``: what was extracted, from where, and how.
"""

import copy
import json
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from vissl_aasae.evaluation.features import extract_features as feature_pass
from vissl_aasae.evaluation.features import split_loader
from vissl_aasae.interop.checkpoint_io import load_checkpoint, load_exactly, trunk_state_dict

SPLITS = ("TRAIN", "TEST")
DEVICES = ("cpu", "cuda")
# data source -> the VISSL label source that reads its labels
LABEL_SOURCES = {
    "aasae_array": "torchvision_dataset",
    "torchvision_dataset": "torchvision_dataset",
    "disk_folder": "disk_folder",
    "synthetic": "synthetic",
}


def evaluation_transforms(config, split: str) -> List[Dict[str, Any]]:
    """The transform configs features are computed under: the split's own, or ``AASAEViews.original``."""
    for source in (split, "TRAIN"):
        transforms = list(config.DATA[source].TRANSFORMS or [])
        for transform in transforms:
            if transform.get("name") == "AASAEViews":
                return [dict(t) for t in transform["original"]]
        if source == split and transforms:
            return [dict(t) for t in transforms]
    raise ValueError(
        f"no evaluation transform: DATA.{split}.TRANSFORMS is empty and DATA.TRAIN.TRANSFORMS has no AASAEViews "
        "entry; give the transforms explicitly"
    )


def dataset_config(config, split: str, transforms: Optional[Sequence[Dict[str, Any]]] = None):
    """A copy of ``config`` whose ``DATA.<split>`` yields (evaluation-transformed image, label, index).

    A split without ``DATA_SOURCES`` (the pretraining configs only set ``DATA.TRAIN``) reads the same
    data sources as ``DATA.TRAIN``, with its own split (for ``aasae_array``: the test arrays).
    """
    split = split.upper()
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not supported; allowed: {list(SPLITS)}")
    cfg = copy.deepcopy(config)
    data = cfg.DATA[split]
    if not data.DATA_SOURCES:
        train = cfg.DATA.TRAIN
        for key in ("DATA_SOURCES", "DATASET_NAMES", "DATA_PATHS", "LABEL_SOURCES", "LABEL_PATHS"):
            data[key] = list(train.get(key) or [])
    data["TRANSFORMS"] = list(transforms) if transforms is not None else evaluation_transforms(config, split)
    data["LABEL_TYPE"] = "standard"
    if not data.get("LABEL_SOURCES"):
        unknown = [s for s in data.DATA_SOURCES if s not in LABEL_SOURCES]
        if unknown:
            raise ValueError(
                f"DATA.{split}.LABEL_SOURCES is empty and data sources {unknown} have no default label source; "
                f"set DATA.{split}.LABEL_SOURCES"
            )
        data["LABEL_SOURCES"] = [LABEL_SOURCES[s] for s in data.DATA_SOURCES]
    return cfg


def source_indices(dataset, positions: np.ndarray) -> np.ndarray:
    """Indices in the data source of the data set's positions (they differ when DATA_LIMIT subsamples)."""
    if dataset.data_limit >= 0 and dataset._can_random_subset_data_sources():
        if not dataset._subset_initialized:
            if dataset.data_limit_sampling.IS_BALANCED and not dataset.labels_init:
                dataset.load_labels()
            dataset._init_image_and_label_subset()
        return np.asarray(dataset.image_and_label_subset, dtype=np.int64)[positions]
    return positions.astype(np.int64)


def resolve_device(device: str) -> torch.device:
    if device not in DEVICES:
        raise ValueError(f"device={device!r} is not supported; allowed: {list(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch.cuda.is_available() is False on this machine; use device='cpu'")
    return torch.device(device)


def build_trunk(config, checkpoint_path: Optional[str]):
    """The config's VISSL model trunk, with the checkpoint's trunk weights (all of them, exactly)."""
    from vissl.models import build_model

    model = build_model(config.MODEL, config.OPTIMIZER)
    if checkpoint_path:
        trunk = trunk_state_dict(load_checkpoint(checkpoint_path), source=checkpoint_path)
        load_exactly(
            model.trunk,
            trunk,
            f"{checkpoint_path}: trunk weights do not fit MODEL.TRUNK",
            "Check MODEL.TRUNK.AASAE_RESNET (DEPTH, WIDTH_MULTIPLIER, STEM) against the checkpoint",
        )
    return model.trunk


@torch.no_grad()
def extract_features(
    config,
    checkpoint_path: Optional[str],
    output_dir: str,
    split: str = "TEST",
    device: str = "cpu",
    batch_size: int = 256,
    num_workers: int = 0,
    feature: str = "flatten",
    transforms: Optional[Sequence[Dict[str, Any]]] = None,
    progress: bool = False,
) -> Dict[str, Any]:
    """Write ``<split>_{features,labels,indices}.npy`` for ``split`` of the config's data; returns the summary.

    ``checkpoint_path`` None keeps the model's random initialisation (a baseline).  ``progress``: a
    line ``features (<split>): n/N images ...`` on stderr at most every few seconds.
    """
    torch_device = resolve_device(device)
    split = split.upper()
    cfg = dataset_config(config, split, transforms)
    trunk = build_trunk(config, checkpoint_path)
    names = getattr(trunk, "feat_eval_mapping", None) or {}
    if feature not in names:
        raise ValueError(f"feature={feature!r} is not a feature of the trunk; allowed: {sorted(names)}")
    loader = split_loader(cfg, split, batch_size=batch_size, num_workers=num_workers)
    try:
        features, labels, positions = feature_pass(
            trunk,
            loader,
            feature,
            torch_device,
            with_positions=True,
            progress=f"features ({split.lower()})" if progress else None,
        )
    except ValueError:
        raise ValueError(f"DATA.{split} holds no examples") from None
    dataset = loader.dataset
    features, labels, positions = features.numpy().astype(np.float32, copy=False), labels.numpy(), positions.numpy()
    indices = source_indices(dataset, positions)

    os.makedirs(output_dir, exist_ok=True)
    prefix = os.path.join(output_dir, split.lower())
    paths = {name: f"{prefix}_{name}.npy" for name in ("features", "labels", "indices")}
    np.save(paths["features"], features)
    np.save(paths["labels"], labels)
    np.save(paths["indices"], indices)
    summary = {
        "checkpoint": os.path.abspath(checkpoint_path) if checkpoint_path else None,
        "split": split,
        "feature": feature,
        "shape": list(features.shape),
        "device": str(torch_device),
        "data_sources": list(cfg.DATA[split].DATA_SOURCES),
        "dataset_names": list(cfg.DATA[split].DATASET_NAMES),
        "data_paths": [str(p) for p in cfg.DATA[split].DATA_PATHS],
        "data_limit": int(cfg.DATA[split].DATA_LIMIT),
        "transforms": [dict(t) for t in cfg.DATA[split].TRANSFORMS],
        "files": paths,
    }
    with open(f"{prefix}_features.json", "w") as f:
        json.dump(summary, f, indent=2, default=str)
    return summary
