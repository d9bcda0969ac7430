"""``AASAE.PERFORMANCE``: speed switches that leave the method unchanged; every one is off by default.

    AASAE:
      PERFORMANCE:
        BF16_AUTOCAST: False   # model forward under torch.autocast(bfloat16); the loss stays float32
        CHANNELS_LAST: False   # parameters, buffers and activations in channels_last memory format
        COMPILE: False         # torch.compile the trunk and each head (in place: same parameter names)

They are applied to the model when the task builds it (``aasae_task``), before it moves to the
device and before DDP wraps it, so the optimizer, DDP's buckets and checkpoints see the final
parameters.  Autocast covers the model's forward only: VISSL's train step computes the loss
outside it, and ``aasae_loss`` casts ``x_hat`` and the target to float32, so the likelihood is
float32; backward follows the forward's dtypes as usual; no gradient scaler is needed for bfloat16.
"""
import logging
from dataclasses import dataclass, fields

import torch
import torch.nn as nn

SECTION = "AASAE.PERFORMANCE"


@dataclass(frozen=True)
class PerformanceSettings:
    bf16_autocast: bool = False
    channels_last: bool = False
    compile: bool = False

    @classmethod
    def from_config(cls, config) -> "PerformanceSettings":
        """Read ``config.AASAE.PERFORMANCE`` (absent = all off); unknown keys and non-booleans raise."""
        section = (config.get("AASAE") or {}).get("PERFORMANCE") or {}
        known = {f.name.upper(): f.name for f in fields(cls)}
        values = {}
        for key, value in dict(section).items():
            if key not in known:
                raise ValueError(f"{SECTION}.{key} is not a known switch; known: {sorted(known)}")
            if not isinstance(value, bool):
                raise ValueError(f"{SECTION}.{key}={value!r} must be True or False")
            values[known[key]] = value
        return cls(**values)

    @property
    def any(self) -> bool:
        return self.bf16_autocast or self.channels_last or self.compile


class AutocastForward:
    """Forward pre-hook / forward hook pair that runs a module's forward under ``torch.autocast``."""

    def __init__(self, device_type: str, dtype: torch.dtype = torch.bfloat16):
        self.device_type = device_type
        self.dtype = dtype
        self._open = []

    def enter(self, module, args):
        context = torch.autocast(device_type=self.device_type, dtype=self.dtype)
        context.__enter__()
        self._open.append(context)

    def exit(self, module, args, output):
        self._open.pop().__exit__(None, None, None)

    def attach(self, module: nn.Module) -> nn.Module:
        module.register_forward_pre_hook(self.enter)
        # always_call: the autocast region closes even when the forward raises
        module.register_forward_hook(self.exit, always_call=True)
        return module


def check_device(settings: PerformanceSettings, device: torch.device) -> None:
    if settings.bf16_autocast and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            f"{SECTION}.BF16_AUTOCAST=True but this GPU ({torch.cuda.get_device_name()}) has no bfloat16 "
            "support; set it to False (or use MODEL.AMP_PARAMS.USE_AMP for float16)"
        )


def _compile_targets(model: nn.Module):
    """The trunk and heads of a VISSL model (the wrapper's own forward is plain Python routing)."""
    trunk, heads = getattr(model, "trunk", None), getattr(model, "heads", None)
    if trunk is None or heads is None:
        return [model]
    return [trunk, *heads]


def apply_performance_settings(model: nn.Module, settings: PerformanceSettings, device: torch.device) -> nn.Module:
    """Apply the switches to a freshly built model (in place) and return it."""
    check_device(settings, device)
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
    if settings.compile:
        for module in _compile_targets(model):
            module.compile()
    if settings.bf16_autocast:
        AutocastForward(device.type).attach(model)
    if settings.any:
        logging.info(f"vissl_aasae: {SECTION} {settings} applied on {device.type}")
    return model
