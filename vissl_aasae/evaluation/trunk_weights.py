"""Loading a pretrained trunk for evaluation, and refusing a checkpoint whose trunk does not fit.

VISSL's ``init_model_from_consolidated_weights`` copies the checkpoint into the model key by key:
a model key that the checkpoint lacks is logged as "Not found" and left at its random init, and a
checkpoint key that the model lacks is logged as "Extra layers"; only a shape difference stops it.
A ResNet-34 checkpoint thus loads "successfully" into a ResNet-18 model.  This module compares the
model's trunk with the checkpoint's trunk first (same key mapping as VISSL: ``WEIGHTS_INIT``'s
``STATE_DICT_KEY_NAME``, ``SKIP_LAYERS``, ``REMOVE_PREFIX``, ``APPEND_PREFIX``) and raises a
:class:`~vissl_aasae.errors.ConfigError` that names the keys that are missing, misshapen or
left over.  The heads are never compared: evaluation heads are meant to start afresh (the AASAE
pretraining heads ``heads.0.*``/``heads.1.*`` are projection and decoder).
"""

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch

from vissl_aasae import checkpoints
from vissl_aasae.checkpoints import FEATURE_BLOCKS
from vissl_aasae.errors import ConfigError

SHOWN_KEYS = 8  # keys listed per category in an error message


@dataclass
class TrunkMismatch:
    """Trunk keys (names relative to the trunk, e.g. ``_feature_blocks.conv1.weight``) that do not fit."""

    missing: List[str] = field(default_factory=list)  # in the model, not in the checkpoint
    misshapen: List[Tuple[str, tuple, tuple]] = field(default_factory=list)  # (key, checkpoint, model)
    unexpected: List[str] = field(default_factory=list)  # in the checkpoint's trunk, not in the model

    def __bool__(self) -> bool:
        return bool(self.missing or self.misshapen or self.unexpected)


def load_checkpoint_file(path: str) -> dict:
    """The checkpoint, memory-mapped when the file format allows it (cheap for big files), read
    without running code from the file (:func:`vissl_aasae.checkpoints.load`)."""
    return checkpoints.load(path, what="MODEL.WEIGHTS_INIT.PARAMS_FILE", mmap=True)


def as_vissl_checkpoint(checkpoint, source: str) -> dict:
    """A VISSL checkpoint as it is; a plain trunk state dict (a ``model_zoo/*.pth``, ``aasae-export``'s
    output; VISSL or torchvision key names) as a VISSL checkpoint that holds only that trunk.  The
    trunk is read by :func:`vissl_aasae.checkpoints.trunk_state_dict`, as ``aasae-features`` reads it."""
    if checkpoints.model_state(checkpoint, source) is not None:
        return checkpoint
    trunk = checkpoints.trunk_state_dict(checkpoint, source=source)
    return {"type": "consolidated", "classy_state_dict": {"base_model": {"model": {"trunk": trunk, "heads": {}}}}}


def _trunk_prefix(model_keys) -> str:
    feature_extractor = any(k.startswith("trunk.base_model.") for k in model_keys)
    return "trunk.base_model." if feature_extractor else "trunk."


def checkpoint_model_state(config, checkpoint: dict) -> Dict[str, torch.Tensor]:
    """The checkpoint's weights under the model's key names, mapped as VISSL maps them."""
    from vissl.utils.checkpoint import append_module_prefix, get_checkpoint_model_state_dict, replace_module_prefix

    params = config.MODEL.WEIGHTS_INIT
    key_name = params.get("STATE_DICT_KEY_NAME") or ""
    file = params.get("PARAMS_FILE")
    state = checkpoint
    if key_name:
        if not isinstance(checkpoint, dict) or key_name not in checkpoint:
            top = sorted(checkpoint)[:10] if isinstance(checkpoint, dict) else type(checkpoint).__name__
            raise ConfigError(
                f"MODEL.WEIGHTS_INIT.STATE_DICT_KEY_NAME={key_name!r} is not a key of "
                f"MODEL.WEIGHTS_INIT.PARAMS_FILE={file!r} (its top-level keys: {top})"
            )
        state = checkpoint[key_name]
    if key_name == "classy_state_dict":
        try:
            return get_checkpoint_model_state_dict(config, state)
        except (KeyError, TypeError):
            raise ConfigError(
                f"MODEL.WEIGHTS_INIT.PARAMS_FILE={file!r} is not a VISSL checkpoint: no "
                "classy_state_dict.base_model.model.{trunk,heads}"
            ) from None
    if params.get("REMOVE_PREFIX"):
        state = replace_module_prefix(state, params["REMOVE_PREFIX"])
    if params.get("APPEND_PREFIX"):
        state = append_module_prefix(state, params["APPEND_PREFIX"])
    return state


def trunk_mismatch(config, model_state: Dict[str, torch.Tensor], ckpt_state: Dict[str, torch.Tensor]) -> TrunkMismatch:
    """Compare the trunk entries of a model state dict with a checkpoint mapped by :func:`checkpoint_model_state`."""
    skip = list(config.MODEL.WEIGHTS_INIT.get("SKIP_LAYERS") or [])
    prefix = _trunk_prefix(model_state)

    def kept(key):
        return key.startswith(prefix) and not any(s in key for s in skip)

    found = TrunkMismatch()
    for key in sorted(k for k in model_state if kept(k)):
        if key not in ckpt_state:
            found.missing.append(key[len(prefix) :])
        elif tuple(ckpt_state[key].shape) != tuple(model_state[key].shape):
            found.misshapen.append((key[len(prefix) :], tuple(ckpt_state[key].shape), tuple(model_state[key].shape)))
    found.unexpected = sorted(k[len(prefix) :] for k in ckpt_state if kept(k) and k not in model_state)
    return found


def _listing(items: List[str]) -> str:
    shown = ", ".join(items[:SHOWN_KEYS])
    more = f", ... ({len(items) - SHOWN_KEYS} more)" if len(items) > SHOWN_KEYS else ""
    return f"[{shown}{more}]"


def describe_trunk_weights(state: Dict[str, torch.Tensor], prefix: str) -> Optional[str]:
    """A guess at the ResNet a trunk state dict holds ("ResNet-50 (WIDTH_MULTIPLIER 1), 7x7 stem ..."), or None."""
    trunk = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if FEATURE_BLOCKS + "conv1.weight" not in trunk:
        return None
    return checkpoints.trunk_layout(trunk).describe()


def mismatch_message(config, found: TrunkMismatch, ckpt_state: Dict[str, torch.Tensor], prefix: str) -> str:
    trunk = config.MODEL.TRUNK
    described = trunk.NAME
    if trunk.NAME == "aasae_resnet":
        p = trunk.AASAE_RESNET
        described = f"aasae_resnet DEPTH={p.DEPTH} WIDTH_MULTIPLIER={p.get('WIDTH_MULTIPLIER', 1)} STEM={p.STEM}"
    parts = [
        f"MODEL.WEIGHTS_INIT.PARAMS_FILE={config.MODEL.WEIGHTS_INIT.PARAMS_FILE!r}: its trunk does not match "
        f"MODEL.TRUNK ({described})"
    ]
    if found.missing:
        parts.append(f"{len(found.missing)} trunk keys missing from the checkpoint: {_listing(found.missing)}")
    if found.misshapen:
        shapes = [f"{k} (checkpoint {list(c)} vs model {list(m)})" for k, c, m in found.misshapen]
        parts.append(f"{len(found.misshapen)} trunk keys with another shape: {_listing(shapes)}")
    if found.unexpected:
        parts.append(f"{len(found.unexpected)} checkpoint trunk keys the model lacks: {_listing(found.unexpected)}")
    guess = describe_trunk_weights(ckpt_state, prefix)
    if guess:
        parts.append(f"the checkpoint holds {guess}; set config.MODEL.TRUNK.AASAE_RESNET accordingly")
    return "; ".join(parts)


def check_trunk_weights(config, model_state: Dict[str, torch.Tensor], checkpoint: dict) -> None:
    """Raise ConfigError naming the trunk keys of ``model_state`` that ``checkpoint`` cannot fill exactly."""
    ckpt_state = checkpoint_model_state(config, checkpoint)
    found = trunk_mismatch(config, model_state, ckpt_state)
    if found:
        raise ConfigError(mismatch_message(config, found, ckpt_state, _trunk_prefix(model_state)))


def meta_model_state(config) -> Dict[str, torch.Tensor]:
    """Key -> tensor (shape only) of the model the config describes, built on the meta device (no memory)."""
    from vissl.models import build_model

    try:
        with torch.device("meta"):
            model = build_model(config.MODEL, config.OPTIMIZER)
    except Exception:  # a component that cannot be built without storage: build it for real
        model = build_model(config.MODEL, config.OPTIMIZER)
    return model.state_dict()


def check_weights_init(config) -> None:
    """Pre-flight check for the launcher: a set ``MODEL.WEIGHTS_INIT.PARAMS_FILE`` must exist and fit the trunk.

    Does nothing when no PARAMS_FILE is set, or when the run will resume from its own checkpoint
    (VISSL ignores PARAMS_FILE then).
    """
    import os

    file = config.MODEL.WEIGHTS_INIT.get("PARAMS_FILE") or ""
    if not file:
        return
    if not os.path.isfile(file):
        raise ConfigError(f"MODEL.WEIGHTS_INIT.PARAMS_FILE={file!r} does not exist")
    from vissl.utils.checkpoint import get_checkpoint_folder, get_resume_checkpoint

    if config.CHECKPOINT.AUTO_RESUME and os.path.isdir(config.CHECKPOINT.DIR):
        if get_resume_checkpoint(config, checkpoint_folder=get_checkpoint_folder(config)) is not None:
            logging.info("resuming from CHECKPOINT.DIR: MODEL.WEIGHTS_INIT.PARAMS_FILE is not used")
            return
    check_trunk_weights(config, meta_model_state(config), load_checkpoint_file(file))


def load_trunk_weights(config, model) -> None:
    """Fill ``model`` (a VISSL BaseSSLMultiInputOutputModel) from ``MODEL.WEIGHTS_INIT`` after the check.

    The copy itself is VISSL's ``init_model_from_weights_params_file`` (heads are left alone in
    evaluation mode, and ``SKIP_LAYERS`` apply).
    """
    file = config.MODEL.WEIGHTS_INIT.PARAMS_FILE
    checkpoint = load_checkpoint_file(file)
    if (config.MODEL.WEIGHTS_INIT.get("STATE_DICT_KEY_NAME") or "") == "classy_state_dict":
        checkpoint = as_vissl_checkpoint(checkpoint, file)
    check_trunk_weights(config, model.state_dict(), checkpoint)
    model.init_model_from_weights_params_file(config, checkpoint)
