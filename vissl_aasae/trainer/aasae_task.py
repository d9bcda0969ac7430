"""``aasae_task`` (``TRAINER.TASK_NAME``): VISSL's ``self_supervision_task`` plus what AASAE adds to a step.

Everything is VISSL's task (data, optimizer, AMP grad scaler, meters, checkpoints, hooks, and the
standard train step that drives it).  Additions:

- the model it builds gets the speed switches of :mod:`vissl_aasae.trainer.aasae_performance`
  (``auto`` decided for the run's device) before it is moved to the device and wrapped by DDP, and
  its Adam the fused kernel where PyTorch has one;
- ``MODEL.AASAE.ORIGINAL_IMAGE_PASS`` (the reference's behaviour): before each training forward,
  one no-grad pass of trunk + projection head on the step's *original* images, in train mode, so
  that the encoder's BatchNorm running statistics (which frozen evaluation uses) see the original
  images as well as the augmented views, exactly as the authors' training step does.  Its
  posterior is kept in :attr:`AASAETask.original_posterior` for the metrics hook, which then
  needs no pass of its own.  The original images reach it through the data iterator VISSL assigns
  (wrapped so that it remembers each batch's ``original``);
- ``AASAE.MAX_ITERATIONS`` (null: off): training stops after exactly that many iterations, inside
  the epoch that reaches it, which then is the last phase (its checkpoint the final one), e.g. the
  paper's 5M ImageNet steps, which are not a whole number of epochs.  ``OPTIMIZER.num_epochs``
  must cover them; epochs beyond the one that reaches the cap are dropped, and the learning-rate
  schedule's lengths are fractions of the epochs that remain (the ImageNet config sets
  ``num_epochs`` to exactly what 5M iterations need).

With every switch off it trains exactly like ``self_supervision_task``.
"""

import math
from typing import Optional, Tuple

import torch
from classy_vision.tasks import register_task
from vissl.trainer.train_task import SelfSupervisionTask

from vissl_aasae.models.heads.aasae_projection import Latent
from vissl_aasae.models.posterior import posterior_of
from vissl_aasae.settings import MethodSettings, PerformanceSettings, RunSettings
from vissl_aasae.trainer.aasae_performance import apply_performance_settings, use_fused_optimizer
from vissl_aasae.trainer.cpu import size_cpu_data_workers


class _TaskDataIterator:
    """VISSL's data iterator, which also hands each batch's original images to the task (for the
    original-image pass) and ends the phase at ``AASAE.MAX_ITERATIONS``."""

    def __init__(self, iterator, task: "AASAETask"):
        self.iterator, self.task = iterator, task

    def __iter__(self):
        return self

    def __next__(self):
        task = self.task
        if task.max_iterations is not None and task.train and task.iteration >= task.max_iterations:
            raise StopIteration
        batch = next(self.iterator)
        if task.original_image_pass:
            original = batch.get("original") if isinstance(batch, dict) else None
            task._pending_originals = original[0] if original else None
        return batch

    def __len__(self):
        return len(self.iterator)


@register_task("aasae_task")
class AASAETask(SelfSupervisionTask):
    def __init__(self, config):
        self.original_image_pass = MethodSettings.from_config(config).original_image_pass
        self.max_iterations = RunSettings.from_config(config).max_iterations
        self._max_iteration = -1
        self._pending_originals = None
        # (iteration, posterior of the original images) of the last training step, when the pass ran
        self.original_posterior: Optional[Tuple[int, Latent]] = None
        size_cpu_data_workers(config)  # before VISSL builds the data loaders from it
        super().__init__(config)
        self.performance = PerformanceSettings.from_config(config)

    @property
    def data_iterator(self):
        return self._data_iterator

    @data_iterator.setter
    def data_iterator(self, iterator):
        if iterator is not None and (self.original_image_pass or self.max_iterations is not None):
            iterator = _TaskDataIterator(iterator, self)
        self._data_iterator = iterator

    @property
    def max_iteration(self):
        """The trainer sets it to phases x iterations per phase (ETA, progress); capped here."""
        return self._max_iteration

    @max_iteration.setter
    def max_iteration(self, value):
        self._max_iteration = value if self.max_iterations is None or value < 0 else min(value, self.max_iterations)

    def prepare_optimizer(self):
        super().prepare_optimizer()
        if self.performance.fused_optimizer is True:
            self.optimizer.optimizer = use_fused_optimizer(self.optimizer.optimizer)

    def prepare(self, *args, **kwargs):
        result = super().prepare(*args, **kwargs)
        if self.max_iterations is not None and not self.config["TEST_ONLY"]:
            self.phases = self._phases_up_to_max_iterations(len(self.dataloaders["train"]))
            self.num_phases = len(self.phases)
            self.num_train_phases = sum(1 for phase in self.phases if phase["train"])
        return result

    def _phases_up_to_max_iterations(self, per_epoch: int):
        """The phases up to (and with the test phase right after) the epoch that reaches the cap."""
        phases = self.phases
        needed = math.ceil(self.max_iterations / max(1, per_epoch))
        train_phases = [i for i, phase in enumerate(phases) if phase["train"]]
        if needed > len(train_phases):
            raise ValueError(
                f"AASAE.MAX_ITERATIONS={self.max_iterations} needs {needed} epochs of {per_epoch} iterations "
                f"but OPTIMIZER.num_epochs={len(train_phases)}; raise num_epochs to {needed}"
            )
        last = train_phases[needed - 1]
        keep = last + 1 + (1 if last + 1 < len(phases) and not phases[last + 1]["train"] else 0)
        return phases[:keep]

    @data_iterator.deleter
    def data_iterator(self):
        del self._data_iterator

    def _build_model(self):
        mixed = bool(self.config["MODEL"]["AMP_PARAMS"]["USE_AMP"])
        self.performance = self.performance.resolved(self.device, mixed_precision=mixed)
        model = apply_performance_settings(super()._build_model(), self.performance, self.device)
        if self.original_image_pass:
            model.register_forward_pre_hook(self._original_image_pass)
        return model

    def _original_image_pass(self, model, args):
        images, self._pending_originals = self._pending_originals, None
        if images is None or not model.training or not torch.is_grad_enabled() or not args:
            return
        inputs = args[0]
        if torch.is_tensor(inputs):
            images = images.to(device=inputs.device, non_blocking=True)
            if inputs.is_contiguous(memory_format=torch.channels_last) and not inputs.is_contiguous():
                images = images.contiguous(memory_format=torch.channels_last)
        self.original_posterior = (self.iteration, posterior_of(model, images))
