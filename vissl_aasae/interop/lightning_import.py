"""Import the AAVAE authors' PyTorch Lightning checkpoints into this plugin's VISSL checkpoint format.

Their checkpoint (``torch.save`` by PyTorch Lightning) holds ``state_dict`` with the LightningModule's
children and ``hyper_parameters`` (``encoder_name``, ``h_dim``, ``latent_dim``, ``first_conv3x3``,
``remove_first_maxpool``, ``input_height``, ``log_scale``, ``learn_scale``, ``kl_coeff``, ``dataset``).
Their parameter names, and where they go here (trunk ``_feature_blocks.*``, heads ``0.*``/``1.*``):

=====================================================  ==============================================
authors (``state_dict``)                               this plugin
=====================================================  ==============================================
``encoder.<torchvision ResNet name>``                  trunk ``_feature_blocks.<same name>``
``projection.first_layer.{0,1}.*`` (Linear, BN1d)      heads ``0.mlp.{0,1}.*``
``projection.mu.weight`` / ``projection.logvar.weight``  heads ``0.fc_mu.weight`` / ``0.fc_log_var.weight``
``decoder.linear_projection1.*`` / ``...2.*``          heads ``1.decoder.linear.0.*`` / ``1.decoder.linear.2.*``
``decoder.{conv1,conv2,final_conv}.*``                 heads ``1.decoder.{conv1,conv2,final_conv}.*``
``decoder.layerN.i.convK.*``                           heads ``1.decoder.layerN.i.convK.*``
``decoder.layerN.0.upsample.J.*`` (block shortcut)     heads ``1.decoder.layerN.0.shortcut.J.*``
``log_scale``                                          heads ``1.log_scale``
=====================================================  ==============================================

The encoder and projection map exactly or the import fails, listing the keys. The decoder maps
exactly: this plugin's decoder has the reference's modules and shapes (stage widths 256/128/64/32
x expansion x width, the first layers sized by the encoder's ``h_dim``, a resize + ``conv1x1``
shortcut on the first block of every stage, stage 1 included, also where its resize is a no-op).
Should a decoder still not fit (another latent size, a decoder of other widths), the ``decoder``
policy says what happens: ``require`` (default) fails naming the keys, ``if_compatible`` imports
the encoder and projection and keeps this model's freshly initialised decoder (a warning names the
keys), ``skip`` never imports the decoder. Either way ``log_scale`` is imported. Checkpoints of
their earlier decoder with batch norm (``bn_linear``, ``bn1``...) or other heads
(``projection.mu_bn``) are refused with the unexpected keys listed.
"""

import argparse
import os
import warnings
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from vissl_aasae.checkpoints import save
from vissl_aasae.config_compose import compose
from vissl_aasae.interop.checkpoint_io import (
    FEATURE_BLOCKS,
    CheckpointKeyError,
    compare,
    first_keys,
    load_checkpoint,
    vissl_checkpoint,
)

DECODER_POLICIES = ("require", "if_compatible", "skip")
SOURCE_FORMAT = "aavae_pytorch_lightning"

# (authors' prefix, part, our prefix); the first matching rule wins, so specific ones come first
RULES = (
    ("encoder.", "trunk", FEATURE_BLOCKS),
    ("projection.first_layer.", "heads", "0.mlp."),
    ("projection.mu.", "heads", "0.fc_mu."),
    ("projection.logvar.", "heads", "0.fc_log_var."),
    ("decoder.linear_projection1.", "heads", "1.decoder.linear.0."),
    ("decoder.linear_projection2.", "heads", "1.decoder.linear.2."),
    ("decoder.", "heads", "1.decoder."),
    ("log_scale", "heads", "1.log_scale"),
)
LOG_SCALE = "1.log_scale"

# the authors' encoder names -> (DEPTH, WIDTH_MULTIPLIER)
AUTHOR_ENCODERS = {
    "resnet18": (18, 1),
    "resnet34": (34, 1),
    "resnet50": (50, 1),
    "resnet50w2": (50, 2),
    "resnet50w4": (50, 4),
}
# (first_conv3x3, remove_first_maxpool) -> our STEM
AUTHOR_STEMS = {(True, True): "cifar", (False, True): "stl10", (False, False): "imagenet"}
BASE_CONFIGS = {
    "cifar10": "pretrain/aasae/cifar10",
    "stl10": "pretrain/aasae/stl10",
    "imagenet": "pretrain/aasae/imagenet",
}


def our_key(key: str) -> Optional[Tuple[str, str]]:
    """(part, key) in this plugin of an authors' ``state_dict`` key; None if no rule covers it."""
    for theirs, part, ours in RULES:
        if key == theirs or (theirs.endswith(".") and key.startswith(theirs)):
            new = ours + key[len(theirs) :]
            if part == "heads" and new.startswith("1.decoder.layer"):
                new = new.replace(".upsample.", ".shortcut.")
            return part, new
    return None


def authors_key(part: str, key: str) -> str:
    """Inverse of :func:`our_key` (names missing tensors the way the authors' checkpoint would)."""
    candidates = [
        (ours, theirs)
        for theirs, p, ours in RULES
        if p == part and (key == ours or (ours.endswith(".") and key.startswith(ours)))
    ]
    if not candidates:
        return f"{part}:{key}"
    ours, theirs = max(candidates, key=lambda c: len(c[0]))
    name = theirs + key[len(ours) :]
    if name.startswith("decoder.layer"):
        name = name.replace(".shortcut.", ".upsample.")
    return name


# --- reading their checkpoint without pytorch_lightning installed ---------------------------------------------
def load_lightning_checkpoint(path: str) -> Dict[str, Any]:
    """A Lightning checkpoint, read without Lightning and without running code from the file: its
    ``AttributeDict`` hyper-parameters come back as a plain dict, an ``argparse.Namespace`` as itself
    (:func:`vissl_aasae.checkpoints.load`)."""
    return load_checkpoint(path)


# --- hyper-parameters -> config ----------------------------------------------------------------------------------
def hparams_overrides(hparams: Mapping[str, Any]) -> List[str]:
    """Hydra overrides that give this plugin's model the architecture recorded in ``hyper_parameters``."""
    overrides = []
    encoder = hparams.get("encoder_name", hparams.get("encoder"))
    if encoder is not None:
        if encoder not in AUTHOR_ENCODERS:
            raise ValueError(
                f"hyper_parameters.encoder_name={encoder!r} is not supported; known: {sorted(AUTHOR_ENCODERS)}"
            )
        depth, width = AUTHOR_ENCODERS[encoder]
        overrides += [
            f"config.MODEL.TRUNK.AASAE_RESNET.DEPTH={depth}",
            f"config.MODEL.TRUNK.AASAE_RESNET.WIDTH_MULTIPLIER={width}",
        ]
    if "first_conv3x3" in hparams and "remove_first_maxpool" in hparams:
        key = (bool(hparams["first_conv3x3"]), bool(hparams["remove_first_maxpool"]))
        if key not in AUTHOR_STEMS:
            raise ValueError(
                "hyper_parameters first_conv3x3=True with remove_first_maxpool=False (3x3 conv + max-pool) "
                f"has no stem here; known stems: {sorted(AUTHOR_STEMS.values())}"
            )
        overrides.append(f"config.MODEL.TRUNK.AASAE_RESNET.STEM={AUTHOR_STEMS[key]}")
    for theirs, ours in (("latent_dim", "LATENT_DIM"), ("input_height", "INPUT_HEIGHT")):
        if hparams.get(theirs) is not None:
            overrides.append(f"config.MODEL.AASAE.{ours}={int(hparams[theirs])}")
    if hparams.get("log_scale") is not None:
        overrides.append(f"config.MODEL.AASAE.LOG_SCALE={float(hparams['log_scale'])}")
    if hparams.get("learn_scale") is not None:
        overrides.append(f"config.MODEL.AASAE.LEARN_LOG_SCALE={bool(hparams['learn_scale'])}")
    if hparams.get("kl_coeff") is not None:
        overrides.append(f"config.LOSS.aasae_loss.kl_coeff={float(hparams['kl_coeff'])}")
    return overrides


def base_config(hparams: Mapping[str, Any]) -> Optional[str]:
    return BASE_CONFIGS.get(str(hparams.get("dataset", "")))


def lightning_parts(
    checkpoint: Any, source: str = "checkpoint"
) -> Tuple["OrderedDict[str, torch.Tensor]", Dict[str, Any]]:
    """(``state_dict`` tensors, ``hyper_parameters``) of a Lightning checkpoint, or a clear ValueError."""
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get("state_dict"), Mapping):
        keys = sorted(checkpoint) if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise ValueError(
            f"{source}: not a PyTorch Lightning checkpoint (no 'state_dict' mapping; top-level keys: {keys})"
        )
    state = OrderedDict((k, v) for k, v in checkpoint["state_dict"].items() if isinstance(v, torch.Tensor))
    hparams = checkpoint.get("hyper_parameters") or {}
    if isinstance(hparams, argparse.Namespace):  # older Lightning saved an argparse.Namespace
        hparams = vars(hparams)
    if not isinstance(hparams, Mapping):
        raise ValueError(f"{source}: hyper_parameters is a {type(hparams).__name__}, not a mapping")
    return state, dict(hparams)


# --- the import ----------------------------------------------------------------------------------------------------
def import_state_dict(
    state: Mapping[str, torch.Tensor],
    model,
    decoder: str = "require",
    source: str = "checkpoint",
) -> Dict[str, Any]:
    """Load an authors'-layout ``state_dict`` into a built VISSL model; returns what was (not) imported."""
    if decoder not in DECODER_POLICIES:
        raise ValueError(f"decoder={decoder!r} is not a decoder policy; allowed: {list(DECODER_POLICIES)}")
    if not any(k.startswith(("encoder.", "projection.", "decoder.")) for k in state):
        raise ValueError(
            f"{source}: no encoder.*, projection.* or decoder.* tensors, so not an AAVAE checkpoint; "
            f"its state_dict keys: {first_keys(state, 8) or 'none'}"
        )
    expected = {"trunk": model.trunk.state_dict(), "heads": model.heads.state_dict()}
    renamed = {"trunk": OrderedDict(), "heads": OrderedDict()}
    origin = {}
    unmapped = []
    for key, value in state.items():
        target = our_key(key)
        if target is None:
            unmapped.append(key)
            continue
        part, new = target
        renamed[part][new] = value
        origin[(part, new)] = key

    def is_decoder(part, key):
        return part == "heads" and key.startswith("1.") and key != LOG_SCALE

    def check(select):
        unexpected, missing, mismatched = [], [], []
        for part in ("trunk", "heads"):
            given = {k: v for k, v in renamed[part].items() if select(part, k)}
            wanted = {k: v for k, v in expected[part].items() if select(part, k)}
            u, m, _ = compare(wanted, given)
            unexpected += [origin[(part, k)] for k in u]
            missing += [authors_key(part, k) for k in m]
            mismatched += [
                f"{origin[(part, k)]} (checkpoint {tuple(given[k].shape)}, model {tuple(wanted[k].shape)})"
                for k in given
                if k in wanted and tuple(given[k].shape) != tuple(wanted[k].shape)
            ]
        return unexpected, missing, mismatched

    unexpected, missing, mismatched = check(lambda part, key: not is_decoder(part, key))
    if unmapped or unexpected or missing or mismatched:
        raise CheckpointKeyError(
            f"{source}: the encoder/projection/log_scale do not fit this model (keys named as in the checkpoint)",
            unmapped + unexpected,
            missing,
            mismatched,
            "Check the config's MODEL.TRUNK.AASAE_RESNET (DEPTH, WIDTH_MULTIPLIER, STEM), MODEL.AASAE.LATENT_DIM "
            "and the projection head (aasae_stochastic_projection)",
        )
    dec_unexpected, dec_missing, dec_mismatched = check(is_decoder)
    decoder_fits = not (dec_unexpected or dec_missing or dec_mismatched)
    problem = CheckpointKeyError(
        f"{source}: the decoder does not map onto this plugin's decoder (keys named as in the checkpoint)",
        dec_unexpected,
        dec_missing,
        dec_mismatched,
        "The encoder and projection do fit: import them with decoder policy 'if_compatible' or 'skip' "
        "(--decoder), which keeps this model's freshly initialised decoder",
    )
    if decoder == "require" and not decoder_fits:
        raise problem
    import_decoder = decoder != "skip" and decoder_fits
    if decoder == "if_compatible" and not decoder_fits:
        warnings.warn(f"decoder not imported, left freshly initialised. {problem}", stacklevel=2)

    trunk = dict(expected["trunk"])
    trunk.update(renamed["trunk"])
    heads = dict(expected["heads"])
    heads.update({k: v for k, v in renamed["heads"].items() if import_decoder or not is_decoder("heads", k)})
    model.trunk.load_state_dict(trunk, strict=True)
    model.heads.load_state_dict(heads, strict=True)
    decoder_keys = [origin[("heads", k)] for k in renamed["heads"] if is_decoder("heads", k)]
    return {
        "trunk_tensors": len(renamed["trunk"]),
        "projection_tensors": sum(1 for k in renamed["heads"] if k.startswith("0.")),
        "log_scale": float(renamed["heads"][LOG_SCALE].reshape(-1)[0]),
        "decoder": "imported" if import_decoder else "not imported (freshly initialised)",
        "decoder_tensors": len(decoder_keys) if import_decoder else 0,
        "not_imported": [] if import_decoder else decoder_keys,
    }


def import_lightning_checkpoint(
    checkpoint: Any,
    config,
    decoder: str = "require",
    source: str = "checkpoint",
) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(VISSL checkpoint, report) of an authors' Lightning checkpoint, for the model ``config`` describes."""
    from vissl.models import build_model

    state, hparams = lightning_parts(checkpoint, source)
    model = build_model(config.MODEL, config.OPTIMIZER)
    _check_hidden_dim(hparams, model, source)
    report = import_state_dict(state, model, decoder=decoder, source=source)
    report["hyper_parameters"] = {
        k: v for k, v in hparams.items() if isinstance(v, (bool, int, float, str, type(None)))
    }
    report["source_format"] = SOURCE_FORMAT
    report["source"] = source
    return vissl_checkpoint(model, aasae_import=report), report


def _check_hidden_dim(hparams: Mapping[str, Any], model, source: str) -> None:
    h_dim = hparams.get("h_dim")
    spec = getattr(model.trunk, "spec", None)
    if h_dim is not None and spec is not None and int(h_dim) != spec.feature_dim:
        raise ValueError(
            f"{source}: hyper_parameters.h_dim={h_dim} but the configured trunk (ResNet-{spec.depth}, "
            f"width x{spec.width_multiplier}) has {spec.feature_dim} features; check MODEL.TRUNK.AASAE_RESNET"
        )


def compose_for(hparams: Mapping[str, Any], overrides: Sequence[str] = ()):
    """The config of the model to import into: ``config=`` from the overrides or from the data set the
    checkpoint was trained on, then the architecture in ``hyper_parameters``, then ``overrides``."""
    user = list(overrides)
    if not any(o.startswith("config=") for o in user):
        base = base_config(hparams)
        if base is None:
            raise ValueError(
                f"hyper_parameters.dataset={hparams.get('dataset')!r} has no default config here "
                f"(known: {sorted(BASE_CONFIGS)}); pass one, e.g. config=pretrain/aasae/cifar10"
            )
        user.insert(0, f"config={base}")
    first = [o for o in user if o.startswith("config=")]
    rest = [o for o in user if not o.startswith("config=")]
    _, config = compose(first + hparams_overrides(hparams) + rest)
    return config


def import_lightning_file(
    input_path: str,
    output_path: str,
    overrides: Sequence[str] = (),
    decoder: str = "require",
) -> Dict[str, Any]:
    """Read the authors' checkpoint at ``input_path``, write the VISSL checkpoint to ``output_path``."""
    folder = os.path.dirname(os.path.abspath(output_path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--output {output_path!r}: folder {folder!r} does not exist")
    checkpoint = load_lightning_checkpoint(input_path)
    _, hparams = lightning_parts(checkpoint, input_path)
    config = compose_for(hparams, overrides)
    converted, report = import_lightning_checkpoint(checkpoint, config, decoder=decoder, source=input_path)
    save(converted, output_path, what="--output")
    return report
