"""A trained AASAE model back from a VISSL checkpoint, for the inspection commands.

- :func:`find_checkpoint`: a checkpoint file, or a checkpoint folder (its ``checkpoint.torch``,
  else the newest ``model_*phase*.torch``).
- :func:`load_run_config`: the run's config, either ``train_config.yaml`` (written by VISSL into the
  checkpoint folder when training starts) or a config name composed like the launcher does
  (``config=pretrain/aasae/...``), plus ``config.KEY=value`` overrides in both cases.
- :func:`load_model`: ``vissl.models.build_model`` on that config, with the checkpoint's trunk and
  heads weights (``classy_state_dict.base_model.model.{trunk,heads}``), in eval mode.
"""
import re
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn

CONFIG_FILE = "train_config.yaml"


def find_checkpoint(path) -> Path:
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint {str(path)!r} is neither a file nor a folder")
    if (path / "checkpoint.torch").exists():
        return path / "checkpoint.torch"

    def phase(p: Path) -> int:
        match = re.search(r"phase(\d+)", p.name)
        return int(match.group(1)) if match else -1

    candidates = sorted(path.glob("model_*phase*.torch"), key=lambda p: (phase(p), "final" in p.name))
    if not candidates:
        raise FileNotFoundError(f"checkpoint folder {str(path)!r} holds no checkpoint.torch or model_*phase*.torch")
    return candidates[-1]


def load_run_config(checkpoint_file, config_name: str = None, overrides: Sequence[str] = ()):
    """The VISSL config (an AttrDict, the ``config`` node) the checkpoint was trained with."""
    from omegaconf import OmegaConf
    from vissl.config import AttrDict

    overrides = list(overrides)
    for item in overrides:
        if "=" not in item or not item.split("=", 1)[0].startswith(("config.", "+config.")):
            raise ValueError(f"override {item!r} must look like config.KEY=value")
    if config_name:
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException
        from vissl.utils.hydra_config import compose_hydra_configuration, convert_to_attrdict

        try:
            cfg = compose_hydra_configuration([f"config={config_name}", *overrides])
            return convert_to_attrdict(cfg, dump_config=False)[1]
        except (HydraException, OmegaConfBaseException) as err:
            message = " ".join(str(err).split("Config search path")[0].split())
            raise ValueError(f"--config {config_name}: {message}") from None
    path = Path(checkpoint_file).resolve().parent / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: give the training config with --config (e.g. pretrain/aasae/quickstart)"
        )
    cfg = OmegaConf.create({"config": OmegaConf.to_container(OmegaConf.load(path))})
    if overrides:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([o.lstrip("+") for o in overrides]))
    return AttrDict(OmegaConf.to_container(cfg))["config"]


def load_weights(model: nn.Module, checkpoint_file) -> dict:
    """Loads trunk and heads weights into a VISSL base model; returns the checkpoint's metadata."""
    checkpoint = torch.load(str(checkpoint_file), map_location="cpu", weights_only=False)
    if checkpoint.get("type", "consolidated") != "consolidated":
        raise ValueError(f"{checkpoint_file}: {checkpoint['type']!r} (sharded) checkpoints are not supported; consolidate it first")
    try:
        weights = checkpoint["classy_state_dict"]["base_model"]["model"]
        trunk, heads = weights["trunk"], weights["heads"]
    except (KeyError, TypeError):
        raise ValueError(f"{checkpoint_file} is not a VISSL training checkpoint (no classy_state_dict.base_model.model.trunk/heads)") from None
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
    import vissl_aasae  # noqa: F401  (registers the trunk and heads)
    from vissl.models import build_model

    if config.LOSS.name != "aasae_loss":
        raise ValueError(f"LOSS.name={config.LOSS.name!r}: these commands need an AASAE pretraining config (aasae_loss)")
    model = build_model(config.MODEL, config.OPTIMIZER)
    load_weights(model, checkpoint_file)
    return model.to(device).eval()
