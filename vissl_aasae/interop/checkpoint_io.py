"""Reading and writing model weights in VISSL's checkpoint layout, with errors that list the keys.

A VISSL checkpoint holds the model at ``ckpt["classy_state_dict"]["base_model"]["model"]``:
``trunk`` (keys ``_feature_blocks.*``) and ``heads`` (keys ``0.*`` projection, ``1.*`` decoder).
:func:`trunk_state_dict` also accepts a plain trunk state dict (``_feature_blocks.*``) or one in
torchvision layout (``conv1.weight``, ``layer1.0.bn1.weight``...), as written by the torchvision
export. Reading goes through :mod:`vissl_aasae.checkpoints` (weights only: nothing in a file runs
code); this module adds the key-by-key comparison with a model.
"""

from typing import Any, Dict, Mapping, Sequence, Tuple

import torch

from vissl_aasae import checkpoints
from vissl_aasae.checkpoints import (  # noqa: F401  (the interop API)
    FEATURE_BLOCKS,
    MAX_LISTED,
    MODEL_PATH,
    CheckpointError,
    _listing,  # noqa: F401
    first_keys,
    heads_state_dict,
    tensors_only,
    trunk_state_dict,
)
from vissl_aasae.checkpoints import model_state as vissl_model_state  # noqa: F401


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


def load_checkpoint(path: str) -> Any:
    """A checkpoint a user may have downloaded, read without running code (:func:`vissl_aasae.checkpoints.load`)."""
    return checkpoints.load(path)


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
