"""Stops a run whose loss has left the scale it started on (``AASAE.DIVERGENCE_FACTOR``).

VISSL's own check stops a run on a NaN/inf model output; a run whose loss grows by orders of
magnitude (a learning rate far too high) stays finite for a long time and trains on to a loss of
1e25.  This hook compares each loss with the first one of the launch (a resumed launch starts from
its own first) and raises ``FloatingPointError`` naming the iteration and the loss; the launcher
turns it into one line with the last good checkpoint and exit status 3.  On a GPU the losses are
read every ``AASAE.METRICS.LOG_FREQUENCY`` iterations (no host synchronisation in between), on a
CPU every iteration.
"""

import math

import torch
from classy_vision.hooks import ClassyHook

from vissl_aasae.settings import MetricsSettings, RunSettings


class AASAEDivergenceHook(ClassyHook):
    on_start = ClassyHook._noop
    on_phase_start = ClassyHook._noop
    on_forward = ClassyHook._noop
    on_loss_and_meter = ClassyHook._noop
    on_backward = ClassyHook._noop
    on_step = ClassyHook._noop
    on_phase_end = ClassyHook._noop

    def __init__(self, config):
        super().__init__()
        self.factor = RunSettings.from_config(config).divergence_factor
        self.every = max(1, MetricsSettings.from_config(config).log_frequency)
        self.first = None  # (iteration, loss) of the launch's first update
        self._pending = []

    def on_update(self, task) -> None:
        self._pending.append((task.iteration, task.last_batch.loss))
        if task.device.type == "cpu" or len(self._pending) >= self.every:
            self.check()

    def on_end(self, task) -> None:
        self.check()

    def check(self) -> None:
        if not self._pending:
            return
        values = torch.stack([loss.detach().float().reshape(()) for _, loss in self._pending]).cpu().tolist()
        seen, self._pending = [(it, v) for (it, _), v in zip(self._pending, values)], []
        for iteration, loss in seen:
            if not math.isfinite(loss):
                raise FloatingPointError(f"training diverged: loss {loss} at iteration {iteration}")
            if self.first is None:
                self.first = (iteration, loss)
            if self.factor is not None and abs(loss) > self.factor * max(abs(self.first[1]), 1e-12):
                raise FloatingPointError(
                    f"training diverged: loss {loss:.4g} at iteration {iteration} is more than "
                    f"{self.factor:g}x the first one's ({self.first[1]:.4g} at iteration {self.first[0]}; "
                    "AASAE.DIVERGENCE_FACTOR)"
                )
