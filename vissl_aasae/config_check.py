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
        if source == "disk_folder" and not any(os.scandir(path)):
            raise ConfigError(f"{key}.DATA_PATHS[{i}]={path!r} is an empty folder")
    _check_transforms(data.TRANSFORMS, f"{key}.TRANSFORMS")
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


def check_config(config) -> None:
    """Raise ConfigError naming the first problem found in a composed VISSL config."""
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
