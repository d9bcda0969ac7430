"""Logs the parts of the AASAE loss (log p(x|z), KL, ELBO, bits/dim, log-scale) and a summary.

Every ``AASAE.METRICS.LOG_FREQUENCY`` iterations (default: VISSL's ``LOG_FREQUENCY``) the primary
rank logs the loss parts kept by ``aasae_loss``, averaged over ranks, and appends them as one JSON
line to ``<CHECKPOINT.DIR>/aasae_metrics.json``.  At the end of training it prints one summary line.
"""
import json
import logging
import os

import torch
from classy_vision.generic.distributed_util import all_reduce_mean, is_primary
from classy_vision.hooks import ClassyHook


class AASAEMetricsHook(ClassyHook):
    on_start = ClassyHook._noop
    on_phase_start = ClassyHook._noop
    on_forward = ClassyHook._noop
    on_loss_and_meter = ClassyHook._noop
    on_backward = ClassyHook._noop
    on_phase_end = ClassyHook._noop
    on_step = ClassyHook._noop

    def __init__(self, config):
        super().__init__()
        metrics_cfg = config.get("AASAE", {}).get("METRICS", {})
        self.frequency = int(metrics_cfg.get("LOG_FREQUENCY", config.LOG_FREQUENCY))
        self.log_path = os.path.join(config.CHECKPOINT.DIR, "aasae_metrics.json")
        self.first = None  # (iteration, loss) of the first update this run saw
        self.last = None
        self.updates = 0

    def _metrics(self, task):
        parts = getattr(task.loss, "last_metrics", None) or {}
        names = sorted(parts)
        if not names:
            return {}
        values = all_reduce_mean(torch.stack([parts[n].float() for n in names]).to(task.device))
        return dict(zip(names, values.cpu().tolist()))

    def on_update(self, task) -> None:
        iteration = task.iteration
        loss = float(task.last_batch.loss)
        self.first = self.first or (iteration, loss)
        self.last = (iteration, loss)
        self.updates += 1
        if self.frequency <= 0 or (iteration % self.frequency != 0 and iteration != 1):
            return
        metrics = self._metrics(task)  # all ranks take part in the all-reduce
        if not metrics or not is_primary():
            return
        record = {"iteration": iteration, "loss": loss, **metrics}
        logging.info("aasae " + " ".join(f"{k}={v:.5g}" for k, v in record.items()))
        os.makedirs(os.path.dirname(self.log_path) or ".", exist_ok=True)
        with open(self.log_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def on_end(self, task) -> None:
        if not is_primary() or self.first is None:
            return
        print(
            f"AASAE summary: {self.updates} iterations, loss {self.first[1]:.4g} (iteration "
            f"{self.first[0]}) -> {self.last[1]:.4g} (iteration {self.last[0]}), "
            f"checkpoints in {os.path.dirname(os.path.abspath(self.log_path))}",
            flush=True,
        )
