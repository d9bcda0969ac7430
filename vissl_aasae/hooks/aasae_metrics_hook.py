"""Logs what the AASAE objective is doing, through VISSL's logging and TensorBoard writer.

- Every ``AASAE.METRICS.LOG_FREQUENCY`` iterations: the loss parts kept by ``aasae_loss``
  (``log_pxz``, ``kl``, ``elbo``, ``bits_per_dim``, ``log_scale``), averaged over ranks.
- Every ``AASAE.METRICS.POSTERIOR_FREQUENCY`` iterations, and only then: the agreement of the
  augmented view's posterior ``q(z|x+)`` with the original image's ``q(z|x)``
  (``posterior_cos_sim_z``, ``posterior_cos_sim_mu``, ``posterior_kl``; see
  :mod:`vissl_aasae.models.posterior`).  ``q(z|x)`` comes from the pass ``aasae_task`` already made
  on the step's original images when ``MODEL.AASAE.ORIGINAL_IMAGE_PASS`` is on (the reference's
  behaviour); otherwise from one extra no-grad pass of trunk + projection head, run right after
  the training forward (same weights), in the model's training mode, with the BatchNorm running
  statistics restored after it.

A slow run is never silent for long: when :data:`PROGRESS_SECONDS` have passed since the last
line, the primary rank logs a progress line (iteration, its loss, iterations done, rate, ETA) on
the next iteration, whatever ``LOG_FREQUENCY`` says (no record is written for it).

The primary rank writes each record as a log line (with progress: iterations done, rate, ETA), as
one JSON line of ``<CHECKPOINT.DIR>/aasae_metrics.json`` (appended in one system call: a killed run
leaves whole lines; a resumed run first drops the lines of the iterations it makes again, and any
line cut short, rewriting the file atomically, so that the file holds each iteration once, with its
newest value) and, when VISSL's TensorBoard hook is on
(``HOOKS.TENSORBOARD_SETUP.USE_TENSORBOARD``), as scalars ``AASAE/<name>`` through its writer.
At the end of training it prints one summary line: the mean loss of the first and of the last
tenth of the iterations this run made (single-batch losses are too noisy to compare).

No host synchronisation outside logging iterations: each step's loss stays a device tensor until
the next logging iteration (or the end) reads them all at once.
"""

import json
import logging
import os
import time
from array import array

import torch
from classy_vision.generic.distributed_util import all_reduce_mean, is_primary
from classy_vision.hooks import ClassyHook

from vissl_aasae.checkpoints import atomic_write
from vissl_aasae.models.heads.aasae_resnet_decoder import as_output
from vissl_aasae.models.posterior import encode, posterior_agreement
from vissl_aasae.progress import Progress
from vissl_aasae.settings import MetricsSettings, due

TAG_PREFIX = "AASAE/"
PROGRESS_SECONDS = 30.0  # longest silence between two progress lines of a run


class AASAEMetricsHook(ClassyHook):
    on_phase_start = ClassyHook._noop
    on_loss_and_meter = ClassyHook._noop
    on_backward = ClassyHook._noop
    on_phase_end = ClassyHook._noop
    on_step = ClassyHook._noop

    def __init__(self, config, tb_writer=None, clock=time.monotonic):
        super().__init__()
        self.clock = clock
        self._last_line = None  # clock() of the last progress line (set at the start)
        self.settings = MetricsSettings.from_config(config)
        self.tb_writer = tb_writer
        self.log_path = os.path.join(config.CHECKPOINT.DIR, "aasae_metrics.json")
        self.iterations = array("q")  # iteration and loss of every update this run made
        self.losses = array("d")
        self._pending = []  # (iteration, loss tensor) not yet read to the host
        self.updates = 0
        self.progress = None
        self._posterior = None  # (iteration, metrics) computed in on_forward

    def on_start(self, task) -> None:
        self.progress = self._new_progress(task)
        self._last_line = self.clock()
        if is_primary():
            self._keep_records_before(int(task.iteration))

    def _keep_records_before(self, start: int) -> None:
        """The records of a resumed run's earlier launches, without those of iterations >= ``start``
        (made again now) and lines cut short; one line per iteration (the last one written)."""
        if not os.path.isfile(self.log_path):
            return
        with open(self.log_path) as f:
            lines = f.read().splitlines()
        kept = {}
        for line in lines:
            try:
                iteration = int(json.loads(line)["iteration"])
            except (ValueError, KeyError, TypeError):
                continue
            if iteration < start:
                kept[iteration] = line
        if len(kept) == len(lines):
            return
        text = "".join(kept[i] + "\n" for i in sorted(kept))
        atomic_write(self.log_path, lambda f: f.write(text), mode="w")
        logging.info(
            f"aasae: {len(lines) - len(kept)} lines of {self.log_path} dropped (iterations >= {start}, made again "
            "by this resumed run, duplicates or lines cut short)"
        )

    def _append(self, record: dict) -> None:
        """One JSON line, appended in one system call (a killed process leaves the whole line or none)."""
        data = (json.dumps(record) + "\n").encode()
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            while data:
                data = data[os.write(fd, data) :]
        finally:
            os.close(fd)

    def _new_progress(self, task) -> Progress:
        total = int(getattr(task, "max_iteration", 0) or 0) - int(task.iteration)
        return Progress(max(1, total), unit="iterations", label="training", clock=self.clock)

    def on_forward(self, task) -> None:
        """The extra encoder pass, on posterior iterations only, before the weights change."""
        self._posterior = None
        if not task.train or not due(task.iteration, self.settings.posterior_frequency):
            return
        try:
            output = as_output(task.last_batch.model_output)
        except ValueError:
            return
        made = getattr(task, "original_posterior", None)
        if made is not None and made[0] == task.iteration:
            original = made[1]
        else:
            original = encode(task.base_model, task.last_batch.sample["target"])
        self._posterior = (task.iteration, posterior_agreement(output.latent, original))

    def _reduced(self, task, parts) -> dict:
        names = sorted(parts)
        if not names:
            return {}
        values = torch.stack([parts[n].detach().float().reshape(()) for n in names]).to(task.device)
        return dict(zip(names, all_reduce_mean(values).cpu().tolist()))

    def _read_pending(self) -> None:
        if self._pending:
            values = torch.stack([loss.detach().float().reshape(()) for _, loss in self._pending]).cpu().tolist()
            for (iteration, _), value in zip(self._pending, values):
                self.iterations.append(iteration)
                self.losses.append(value)
            self._pending = []

    def on_update(self, task) -> None:
        iteration = task.iteration
        self._pending.append((iteration, task.last_batch.loss))
        self.updates += 1
        if self.progress is None:
            self.progress = self._new_progress(task)
        self.progress.advance(1)
        posterior = self._posterior[1] if self._posterior and self._posterior[0] == iteration else None
        self._posterior = None
        if self._last_line is None:
            self._last_line = self.clock()
        if not due(iteration, self.settings.log_frequency) and posterior is None:
            if is_primary() and self.clock() - self._last_line >= PROGRESS_SECONDS:
                self._read_pending()  # this rank's loss: no collective outside the logging iterations
                self._last_line = self.clock()
                logging.info(f"aasae iteration={iteration} loss={self.losses[-1]:.5g} [{self.progress.line()}]")
            return
        self._read_pending()
        loss = self.losses[-1]
        parts = dict(getattr(task.loss, "last_metrics", None) or {})
        parts.update(posterior or {})
        metrics = self._reduced(task, parts)  # all ranks take part in the all-reduce
        if not metrics or not is_primary():
            return
        record = {"iteration": iteration, "loss": loss, **metrics}
        self._last_line = self.clock()
        logging.info("aasae " + " ".join(f"{k}={v:.5g}" for k, v in record.items()) + f" [{self.progress.line()}]")
        os.makedirs(os.path.dirname(self.log_path) or ".", exist_ok=True)
        self._append(record)
        if self.tb_writer is not None:
            for name, value in metrics.items():
                self.tb_writer.add_scalar(TAG_PREFIX + name, value, global_step=iteration)

    def on_end(self, task) -> None:
        self._read_pending()
        if not is_primary():
            return
        if self.tb_writer is not None:
            self.tb_writer.flush()
        if not self.updates:
            return
        print(
            f"AASAE summary: {self.updates} iterations, {loss_trend(self.iterations, self.losses)}, "
            f"checkpoints in {os.path.dirname(os.path.abspath(self.log_path))}",
            flush=True,
        )


def loss_trend(iterations, losses) -> str:
    """'loss A (mean of iterations i-j) -> B (mean of iterations k-l)' over the first and last tenth."""
    n = max(1, len(losses) // 10)

    def part(lo, hi):
        span = f"{iterations[lo]}" if hi - lo == 1 else f"{iterations[lo]}-{iterations[hi - 1]}"
        return f"{sum(losses[lo:hi]) / (hi - lo):.4g} (mean of iteration{'s' if hi - lo > 1 else ''} {span})"

    return f"loss {part(0, n)} -> {part(len(losses) - n, len(losses))}"
