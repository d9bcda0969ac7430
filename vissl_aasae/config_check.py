"""Checks a composed VISSL config before any work starts; each error names the offending key.

Used by the launcher: unknown component names (trunk, heads, loss, collator, data sources,
transforms), data paths that do not exist or are empty, and AASAE's own pairings (projection
head followed by the decoder head, matching latent sizes, the view transform and collator).
"""
import os

import torchvision.transforms as T


class ConfigError(ValueError):
    """A config problem found before training; its message names the key and the value."""


def _known(name, registry, key):
    if name not in registry:
        raise ConfigError(f"{key}={name!r} is not a registered component; known: {sorted(registry)}")


def _check_transforms(transforms, key):
    from classy_vision.dataset.transforms import TRANSFORM_REGISTRY

    for i, transform in enumerate(transforms or []):
        name = transform.get("name")
        if name not in TRANSFORM_REGISTRY and not hasattr(T, str(name)):
            raise ConfigError(f"{key}[{i}].name={name!r} is neither a registered nor a torchvision transform")
        for sub in ("original", "augmented"):
            if name == "AASAEViews" and sub in transform:
                _check_transforms(transform[sub], f"{key}[{i}].{sub}")


def _has_files(folder) -> bool:
    return any(files for _, _, files in os.walk(folder))


def _check_batch(config, split):
    data = config.DATA[split]
    key = f"DATA.{split}"
    batch = data.BATCHSIZE_PER_REPLICA
    if not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"{key}.BATCHSIZE_PER_REPLICA={batch!r} must be a positive integer")
    ranks = int(config.DISTRIBUTED.NUM_NODES) * int(config.DISTRIBUTED.NUM_PROC_PER_NODE)
    limit = int(data.get("DATA_LIMIT", -1))
    if data.get("DROP_LAST", False) and 0 < limit < batch * ranks:
        raise ConfigError(
            f"{key}.DATA_LIMIT={limit} is smaller than one global batch ({key}.BATCHSIZE_PER_REPLICA={batch} "
            f"x {ranks} ranks) with DROP_LAST: not a single iteration would run"
        )


def _check_data(config, split):
    from vissl.data import DATASET_SOURCE_MAP

    data = config.DATA[split]
    key = f"DATA.{split}"
    for i, source in enumerate(data.DATA_SOURCES):
        _known(source, DATASET_SOURCE_MAP, f"{key}.DATA_SOURCES[{i}]")
    for i, path in enumerate(data.DATA_PATHS):
        source = data.DATA_SOURCES[i] if i < len(data.DATA_SOURCES) else None
        if source == "synthetic" or (source == "aasae_array" and path == "embedded"):
            continue
        if not os.path.exists(os.path.expanduser(str(path))):
            raise ConfigError(f"{key}.DATA_PATHS[{i}]={path!r} does not exist")
        if source == "disk_folder" and not _has_files(path):
            raise ConfigError(f"{key}.DATA_PATHS[{i}]={path!r} holds no image files")
    _check_transforms(data.TRANSFORMS, f"{key}.TRANSFORMS")
    _check_batch(config, split)
    from vissl.data.collators import COLLATOR_REGISTRY

    collator = data.COLLATE_FUNCTION
    if collator != "default_collate":
        _known(collator, COLLATOR_REGISTRY, f"{key}.COLLATE_FUNCTION")


def _check_aasae(config):
    heads = config.MODEL.HEAD.PARAMS
    names = [h[0] for h in heads]
    projections = ("aasae_stochastic_projection", "aasae_deterministic_projection")
    if len(heads) != 2 or names[0] not in projections or names[1] != "aasae_resnet_decoder":
        raise ConfigError(
            f"MODEL.HEAD.PARAMS={names} : LOSS.name=aasae_loss needs a projection head "
            f"({' or '.join(projections)}) followed by aasae_resnet_decoder"
        )
    default = (config.MODEL.get("AASAE") or {}).get("LATENT_DIM")
    d_proj = heads[0][1].get("latent_dim", default)
    d_dec = heads[1][1].get("latent_dim", default)
    if d_proj != d_dec:
        raise ConfigError(
            f"MODEL.HEAD.PARAMS latent_dim differs: {names[0]} has {d_proj}, aasae_resnet_decoder has {d_dec}"
        )
    kl = config.LOSS.aasae_loss.get("kl_coeff", 0.0)
    if names[0] == "aasae_deterministic_projection" and float(kl) > 0:
        raise ConfigError(
            f"LOSS.aasae_loss.kl_coeff={kl} needs aasae_stochastic_projection (a posterior to take the KL of)"
        )
    train = config.DATA.TRAIN
    if train.COLLATE_FUNCTION != "aasae_collator" or list(train.TARGET_KEY_NAMES) != ["original"]:
        raise ConfigError(
            "DATA.TRAIN.COLLATE_FUNCTION must be aasae_collator and DATA.TRAIN.TARGET_KEY_NAMES [original] "
            f"for aasae_loss (got {train.COLLATE_FUNCTION!r}, {list(train.TARGET_KEY_NAMES)})"
        )
    if [t.get("name") for t in train.TRANSFORMS] != ["AASAEViews"]:
        raise ConfigError("DATA.TRAIN.TRANSFORMS must be a single AASAEViews entry for aasae_loss")
    from vissl_aasae.data.aasae_collator import INPUT_CHOICES
    from vissl_aasae.losses.aasae_loss import AASAELossCriterion

    view = (train.COLLATE_FUNCTION_PARAMS or {}).get("input", "augmented")
    if view not in INPUT_CHOICES:
        raise ConfigError(
            f"DATA.TRAIN.COLLATE_FUNCTION_PARAMS.input={view!r} is not supported; allowed: {list(INPUT_CHOICES)}"
        )
    AASAELossCriterion(kl)  # validates LOSS.aasae_loss.kl_coeff


def _check_model_builds(config):
    """Build the model on the meta device: every constructor check runs, no memory is allocated."""
    import torch
    from vissl.models import build_model

    with torch.device("meta"):
        build_model(config.MODEL, config.OPTIMIZER)


def check_config(config) -> None:
    """Raise ConfigError naming the first problem found in a composed VISSL config."""
    import vissl.losses  # noqa: F401  (registers VISSL's own losses)
    from classy_vision.losses import LOSS_REGISTRY
    from vissl.models.heads import MODEL_HEADS_REGISTRY
    from vissl.models.trunks import MODEL_TRUNKS_REGISTRY

    _known(config.MODEL.TRUNK.NAME, MODEL_TRUNKS_REGISTRY, "MODEL.TRUNK.NAME")
    for i, head in enumerate(config.MODEL.HEAD.PARAMS):
        _known(head[0], MODEL_HEADS_REGISTRY, f"MODEL.HEAD.PARAMS[{i}][0]")
    if config.LOSS.name:
        _known(config.LOSS.name, LOSS_REGISTRY, "LOSS.name")
    for split in ("TRAIN", "TEST"):
        if config.TEST_ONLY and split == "TRAIN" or config.TEST_MODEL is False and split == "TEST":
            continue
        if config.DATA[split].DATA_SOURCES:
            _check_data(config, split)
    if config.LOSS.name == "aasae_loss":
        _check_aasae(config)
    _check_model_builds(config)
