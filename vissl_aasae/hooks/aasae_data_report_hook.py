"""Counts the images that could not be read (left out of their batch by ``aasae_collator``) and
reports the total at the end of training, so that bad data never passes silently."""
import logging

import torch
from classy_vision.generic.distributed_util import all_reduce_sum, is_primary
from classy_vision.hooks import ClassyHook


class AASAEDataReportHook(ClassyHook):
    on_start = ClassyHook._noop
    on_phase_start = ClassyHook._noop
    on_loss_and_meter = ClassyHook._noop
    on_backward = ClassyHook._noop
    on_update = ClassyHook._noop
    on_step = ClassyHook._noop
    on_phase_end = ClassyHook._noop

    def __init__(self):
        super().__init__()
        self.invalid = 0
        self.seen = 0

    def on_forward(self, task) -> None:
        sample = task.last_batch.sample
        invalid = sample.get("aasae_invalid")
        if invalid is not None:
            self.invalid += int(invalid.sum())
        self.seen += int(sample["input"].shape[0]) + (int(invalid.sum()) if invalid is not None else 0)

    def on_end(self, task) -> None:
        counts = all_reduce_sum(torch.tensor([self.invalid, self.seen], device=task.device)).tolist()
        if is_primary():
            message = f"AASAE data: {counts[0]} of {counts[1]} images could not be read and were left out"
            (logging.warning if counts[0] else logging.info)(message)
            if counts[0]:
                print(message + " (see the 'Couldn't load' warnings above)", flush=True)
