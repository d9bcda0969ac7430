"""A trained AASAE model back from a VISSL checkpoint, for the inspection commands.

- :func:`find_checkpoint`: a checkpoint file, or a checkpoint folder (its ``checkpoint.torch``,
  else the newest ``model_*phase*.torch``): :func:`vissl_aasae.checkpoints.resolve`.
- :func:`load_run_config`: the run's config, either ``train_config.yaml`` (written by the launcher
  into the checkpoint folder when training starts) or a config name composed by the launcher's
  side-effect-free :func:`vissl_aasae.config_compose.compose`, plus ``config.KEY=value`` overrides in both cases.
- :func:`load_model`: ``vissl.models.build_model`` on that config, with the checkpoint's trunk and
  heads weights (``classy_state_dict.base_model.model.{trunk,heads}``), in eval mode.
"""

from pathlib import Path
from typing import Sequence

import torch.nn as nn
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from vissl.config import AttrDict
from vissl.models import build_model

import vissl_aasae.registry  # noqa: F401  (the trunk and heads load_model builds)
from vissl_aasae import checkpoints
from vissl_aasae.config_compose import compose

CONFIG_FILE = checkpoints.CONFIG_FILE


def find_checkpoint(path) -> Path:
    return Path(checkpoints.resolve(path))


def load_run_config(checkpoint_file, config_name: str = None, overrides: Sequence[str] = ()):
    """The VISSL config (an AttrDict, the ``config`` node) the checkpoint was trained with."""
    overrides = list(overrides)
    for item in overrides:
        if "=" not in item or not item.split("=", 1)[0].startswith(("config.", "+config.")):
            raise ValueError(f"override {item!r} must look like config.KEY=value")
    if config_name:
        try:
            return compose([f"config={config_name}", *overrides])[1]
        except ValueError as err:
            raise ValueError(f"--config {config_name}: {err}") from None
    config = checkpoints.read_run_config(checkpoint_file)
    if config is None:
        raise FileNotFoundError(
            f"{checkpoints.run_config_file(checkpoint_file)} does not exist: give the training config with --config "
            "(e.g. pretrain/aasae/quickstart)"
        )
    cfg = OmegaConf.create({"config": config})
    if overrides:
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([o.lstrip("+") for o in overrides]))
        except OmegaConfBaseException as err:
            raise ValueError(f"overrides {overrides}: {' '.join(str(err).split())}") from None
    return AttrDict(OmegaConf.to_container(cfg))["config"]


def load_weights(model: nn.Module, checkpoint_file) -> dict:
    """Loads trunk and heads weights into a VISSL base model; returns the checkpoint's metadata."""
    checkpoint = checkpoints.load(checkpoint_file)
    trunk, heads = checkpoints.training_parts(checkpoint, str(checkpoint_file))
    for name, module, state in (("trunk", model.trunk, trunk), ("heads", model.heads, heads)):
        try:
            module.load_state_dict(state)
        except RuntimeError as err:
            first = str(err).split("\n\t")[1:3]
            raise ValueError(
                f"{checkpoint_file}: the {name} weights do not fit the model built from the config "
                f"(MODEL.TRUNK / MODEL.HEAD / MODEL.AASAE): {' '.join(first) or err}"
            ) from None
    return {k: checkpoint.get(k) for k in ("phase_idx", "iteration", "train_phase_idx")}


def load_model(config, checkpoint_file, device: str = "cpu") -> nn.Module:
    """The model the checkpoint holds (trunk + AASAE heads), in eval mode on ``device``."""
    if config.LOSS.name != "aasae_loss":
        raise ValueError(
            f"LOSS.name={config.LOSS.name!r}: these commands need an AASAE pretraining config (aasae_loss)"
        )
    model = build_model(config.MODEL, config.OPTIMIZER)
    load_weights(model, checkpoint_file)
    return model.to(device).eval()
