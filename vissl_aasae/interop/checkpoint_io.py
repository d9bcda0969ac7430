"""Reading and writing model weights in VISSL's checkpoint layout, with errors that list the keys.

A VISSL checkpoint holds the model at ``ckpt["classy_state_dict"]["base_model"]["model"]``:
``trunk`` (keys ``_feature_blocks.*``) and ``heads`` (keys ``0.*`` projection, ``1.*`` decoder).
:func:`trunk_state_dict` also accepts a plain trunk state dict (``_feature_blocks.*``) or one in
torchvision layout (``conv1.weight``, ``layer1.0.bn1.weight``...), as written by the torchvision
export. Only load checkpoints you trust: full unpickling is used.
"""
import os
from collections import OrderedDict
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple

import torch

FEATURE_BLOCKS = "_feature_blocks."
MODEL_PATH = ("classy_state_dict", "base_model", "model")
# first names of the torchvision ResNet layout (what the torchvision export writes)
_TORCHVISION_ROOTS = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")
MAX_LISTED = 25


class CheckpointKeyError(ValueError):
    """A checkpoint's tensors do not fit a model; ``unexpected``, ``missing`` and ``mismatched`` list them."""

    def __init__(
        self,
        what: str,
        unexpected: Sequence[str] = (),
        missing: Sequence[str] = (),
        mismatched: Sequence[str] = (),
        hint: str = "",
    ):
        self.what = what
        self.unexpected = list(unexpected)
        self.missing = list(missing)
        self.mismatched = list(mismatched)
        parts = []
        for label, keys in (
            ("unexpected keys (in the checkpoint, not in the model)", self.unexpected),
            ("missing keys (in the model, not in the checkpoint)", self.missing),
            ("keys with the wrong shape", self.mismatched),
        ):
            if keys:
                parts.append(f"{len(keys)} {label}: {_listing(keys)}")
        message = f"{what}: " + "; ".join(parts or ["no usable tensors"])
        if hint:
            message += f". {hint}"
        super().__init__(message)


def _listing(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED])
    return shown + (f", ... and {len(keys) - MAX_LISTED} more" if len(keys) > MAX_LISTED else "")


def load_checkpoint(path: str, pickle_module=None) -> Any:
    """``torch.load`` on CPU with full unpickling; a missing file gives a FileNotFoundError naming it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist or is not a file")
    kwargs = {"pickle_module": pickle_module} if pickle_module is not None else {}
    return torch.load(path, map_location="cpu", weights_only=False, **kwargs)


def tensors_only(state: Mapping[str, Any]) -> "OrderedDict[str, torch.Tensor]":
    return OrderedDict((k, v) for k, v in state.items() if isinstance(v, torch.Tensor))


def vissl_model_state(checkpoint: Any, source: str = "checkpoint") -> Optional[Mapping[str, Any]]:
    """``{"trunk": ..., "heads": ...}`` of a VISSL checkpoint; None if ``checkpoint`` is not one."""
    if not isinstance(checkpoint, Mapping) or "classy_state_dict" not in checkpoint:
        return None
    state = checkpoint
    for depth, key in enumerate(MODEL_PATH):
        if not isinstance(state, Mapping) or key not in state:
            found = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(
                f"{source}: VISSL checkpoint without {'.'.join(MODEL_PATH[: depth + 1])} (found {found})"
            )
        state = state[key]
    return state


def trunk_state_dict(checkpoint: Any, source: str = "checkpoint") -> "OrderedDict[str, torch.Tensor]":
    """The trunk's tensors with VISSL keys (``_feature_blocks.*``)."""
    model = vissl_model_state(checkpoint, source)
    if model is not None:
        if "trunk" not in model:
            raise ValueError(f"{source}: VISSL checkpoint has no trunk (model keys: {sorted(model)})")
        return tensors_only(model["trunk"])
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{source}: expected a VISSL checkpoint or a state dict, got {type(checkpoint).__name__}")
    state = tensors_only(checkpoint)
    if state and all(k.startswith(FEATURE_BLOCKS) for k in state):
        return state
    if state and all(k.startswith(_TORCHVISION_ROOTS) for k in state):
        return OrderedDict((FEATURE_BLOCKS + k, v) for k, v in state.items())
    sample = list(state) or [k for k in checkpoint]
    raise ValueError(
        f"{source}: not a VISSL checkpoint (no 'classy_state_dict') nor a trunk state dict with "
        f"'{FEATURE_BLOCKS}*' or torchvision ResNet keys; its keys: {_listing(sample)}"
    )


def heads_state_dict(checkpoint: Any, source: str = "checkpoint") -> "OrderedDict[str, torch.Tensor]":
    model = vissl_model_state(checkpoint, source)
    if model is None or "heads" not in model:
        raise ValueError(f"{source}: not a VISSL checkpoint with heads (classy_state_dict.base_model.model.heads)")
    return tensors_only(model["heads"])


def compare(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> Tuple[list, list, list]:
    """(unexpected, missing, mismatched) keys of ``given`` against ``expected``."""
    unexpected = [k for k in given if k not in expected]
    missing = [k for k in expected if k not in given]
    mismatched = [
        f"{k} (checkpoint {tuple(given[k].shape)}, model {tuple(expected[k].shape)})"
        for k in given
        if k in expected and tuple(given[k].shape) != tuple(expected[k].shape)
    ]
    return unexpected, missing, mismatched


def load_exactly(module: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str, hint: str = "") -> None:
    """Load ``state`` into ``module``; every key must match in name and shape, else CheckpointKeyError."""
    unexpected, missing, mismatched = compare(module.state_dict(), state)
    if unexpected or missing or mismatched:
        raise CheckpointKeyError(what, unexpected, missing, mismatched, hint)
    module.load_state_dict(state, strict=True)


def vissl_checkpoint(model, **extra: Any) -> Dict[str, Any]:
    """A model-only VISSL checkpoint of a built VISSL model (loadable by MODEL.WEIGHTS_INIT)."""
    checkpoint = {"type": "consolidated", "classy_state_dict": {"base_model": model.get_classy_state()}}
    checkpoint.update(extra)
    return checkpoint


def first_keys(keys: Iterable[str], n: int = 5) -> str:
    keys = list(keys)
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")
