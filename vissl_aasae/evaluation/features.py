"""Frozen-trunk features of a VISSL data split, in-process, on CPU or GPU.

VISSL's ``extract_features`` engine asserts a GPU; this is the same idea for one process: the data
set is VISSL's (``build_dataset(config, "TRAIN"/"TEST")``: data sources, label sources, transforms,
``DATA_LIMIT``), the model is VISSL's (``build_model``) with its trunk in eval mode, and the feature
is the one ``MODEL.FEATURE_EVAL_SETTINGS.LINEAR_EVAL_FEAT_POOL_OPS_MAP`` names (``res5avg``: the
pooled last stage ``h`` that the paper evaluates).
"""

import logging

import torch
from torch.utils.data import DataLoader

from vissl_aasae.data.workers import watch_main_process
from vissl_aasae.progress import Progress

PROGRESS_INTERVAL = 5.0  # seconds between progress lines of the long passes of the commands


def _collate(items):
    """GenericSSLDataset items (one data source) -> (images, labels, positions in the data set)."""
    images = torch.stack([item["data"][0] for item in items])
    labels = torch.as_tensor([int(item["label"][0]) for item in items], dtype=torch.long)
    positions = torch.as_tensor([int(item["data_idx"][0]) for item in items], dtype=torch.long)
    return images, labels, positions


def split_loader(config, split: str, batch_size: int = None, num_workers: int = None) -> DataLoader:
    """A sequential DataLoader over VISSL's data set for ``split`` ("TRAIN" or "TEST"): batches of
    (images, labels, positions), its workers watched (they exit with a killed process)."""
    from vissl.data import build_dataset

    data = config.DATA[split]
    if len(data.DATA_SOURCES) != 1:
        raise ValueError(
            f"DATA.{split}.DATA_SOURCES={list(data.DATA_SOURCES)}: feature evaluation reads one data source"
        )
    if not data.LABEL_SOURCES:
        raise ValueError(f"DATA.{split}.LABEL_SOURCES is empty: feature evaluation needs labels")
    dataset = build_dataset(config, split)
    return DataLoader(
        dataset,
        batch_size=int(batch_size or data.BATCHSIZE_PER_REPLICA),
        shuffle=False,
        num_workers=int(config.DATA.NUM_DATALOADER_WORKERS if num_workers is None else num_workers),
        collate_fn=_collate,
        worker_init_fn=watch_main_process,  # workers exit with a killed evaluation
    )


def trunk_feature_name(config) -> str:
    from vissl.models.model_helpers import get_trunk_output_feature_names

    names = get_trunk_output_feature_names(config.MODEL)
    if len(names) != 1:
        raise ValueError(
            "MODEL.FEATURE_EVAL_SETTINGS.LINEAR_EVAL_FEAT_POOL_OPS_MAP must name exactly one trunk feature "
            f"(with EVAL_MODE_ON and FREEZE_TRUNK_ONLY True) for feature evaluation, got {names}"
        )
    return names[0]


@torch.no_grad()
def extract_features(
    trunk, loader: DataLoader, feature_name: str, device: torch.device, with_positions=False, progress: str = None
):
    """(features N x D float32 on CPU, labels N[, positions N]) of every image the loader yields, in
    data set order, the trunk in eval mode.  The one feature pass of the plugin: the CPU evaluation,
    the study and the ``.npy`` feature export all run it.  ``progress``: a label; a line
    ``<label>: n/N images (..%), rate, ETA`` goes to stderr at most every
    :data:`PROGRESS_INTERVAL` seconds and at the end (without it, a log line every 50 batches)."""
    trunk = trunk.to(device)
    trunk.eval()
    features, labels, positions = [], [], []
    if progress:
        meter = Progress(_image_count(loader), unit="images", label=progress, interval=PROGRESS_INTERVAL)
    else:
        meter = Progress(len(loader), unit="batches", label="features") if len(loader) > 20 else None
    for step, (images, targets, where) in enumerate(loader):
        out = trunk(images.to(device, non_blocking=True), [feature_name])[0]
        features.append(torch.flatten(out, start_dim=1).float().cpu())
        labels.append(targets)
        positions.append(where)
        if progress:
            meter.update(len(images))
        elif meter is not None:
            meter.advance(1)
            if step % 50 == 0:
                logging.info(meter.line())
    if not features:
        raise ValueError("the data set holds no examples")
    positions = torch.cat(positions)
    if not torch.equal(positions, torch.arange(len(positions))):
        raise RuntimeError("the data loader did not return the examples in data set order")
    out = (torch.cat(features), torch.cat(labels))
    return out + (positions,) if with_positions else out


def _image_count(loader: DataLoader) -> int:
    try:
        return len(loader.dataset)
    except TypeError:  # a data set without a length: count batches' worth
        return len(loader) * int(loader.batch_size or 1)
