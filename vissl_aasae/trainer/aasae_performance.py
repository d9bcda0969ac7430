"""``AASAE.PERFORMANCE``: speed switches that leave the method unchanged.

    AASAE:
      PERFORMANCE:
        BF16_AUTOCAST: False     # model forward under torch.autocast(bfloat16); the loss stays float32
        CHANNELS_LAST: auto      # NHWC parameters and activations; auto: on for CPU (measured faster,
                                 # benchmarks/RESULTS.md), on for CUDA with mixed precision, else off
        FUSED_OPTIMIZER: auto    # Adam/AdamW as one fused kernel (fused=True); auto: on where PyTorch
                                 # has the kernel for the device (CPU and CUDA), else foreach/loop
        COMPILE: False           # torch.compile the trunk and each head (in place: same parameter names);
                                 # off: on CPU it made the plain loop slower (0.82x quickstart, 0.96x
                                 # the study's narrow model) and costs seconds (warm inductor cache) to
                                 # minutes (cold) per process; not measured on a GPU (gpu_check.sh does)

``auto`` is decided at start-up for the run's device (:meth:`PerformanceSettings.resolved`) and the
decision is logged; ``True``/``False`` override it.  The model switches are applied when the task
builds the model (``aasae_task``), before it moves to the device and before DDP wraps it, so the
optimizer, DDP's buckets and checkpoints see the final parameters; the fused optimizer when the
task builds its optimizer.  Autocast covers the model's forward only: VISSL's train step computes
the loss outside it, and ``aasae_loss`` casts ``x_hat`` and the target to float32, so the
likelihood is float32; backward follows the forward's dtypes as usual; no gradient scaler is
needed for bfloat16.  None of them changes what is computed beyond floating-point rounding:
channels-last and fused Adam give the same parameters to ~1e-6 (tests/test_throughput.py).  One
caveat for COMPILE: inductor generates its own random numbers for the latent sample unless
``torch._inductor.config.fallback_random`` is set, so a compiled run draws other (equally
distributed) noise than an eager run with the same seed; with it, 3 compiled training steps agree
with eager ones within float32 rounding (tests/test_throughput.py).
"""

import logging

import torch
import torch.nn as nn

from vissl_aasae.settings import AUTO, PerformanceSettings, fused_adam_supported  # noqa: F401  (gpu_check imports it)

SECTION = PerformanceSettings.PATH


def use_fused_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The same torch Adam/AdamW (param groups, hyper-parameters), rebuilt with ``fused=True``.
    Called before any step (no state to carry); other optimizers are returned unchanged."""
    if type(optimizer) not in (torch.optim.Adam, torch.optim.AdamW) or optimizer.state:
        return optimizer
    groups = [{k: v for k, v in g.items() if k not in ("fused", "foreach")} for g in optimizer.param_groups]
    return type(optimizer)(groups, fused=True)


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
    """Apply the model switches (``settings`` resolved for ``device``) to a freshly built model (in place)."""
    check_device(settings, device)
    if AUTO in (settings.channels_last, settings.fused_optimizer):
        raise ValueError(f"{SECTION}: resolve 'auto' for the device first (PerformanceSettings.resolved)")
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
    if settings.compile:
        for module in _compile_targets(model):
            module.compile()
    if settings.bf16_autocast:
        AutocastForward(device.type).attach(model)
    logging.info(f"vissl_aasae: {SECTION} on {device.type}: {settings}")
    return model
