"""Unreadable images: skipped, counted, bounded and reported, so that bad data never passes silently.

``aasae_collator`` leaves the images VISSL could not read out of their batch and marks a batch
without a single readable image (``aasae_skip``).  At the start of every training phase this hook
wraps the task's data iterator (:class:`SkipUnreadable`), which

- counts the images seen and those that could not be read (over all ranks: one all-reduce of three
  numbers per batch when there are several, on CPU through gloo, so no device synchronisation, and
  every rank takes the same decisions);
- passes over a batch without a readable image (every rank passes over that step when one rank's
  batch has none, so that the ranks stay in step);
- stops the run with :class:`UnreadableDataError` naming some of the files when more than
  ``config.AASAE.MAX_UNREADABLE_FRACTION`` (default 0.25) of the images seen could not be read:
  judged from :data:`MIN_UNREADABLE` unreadable images on, and at the end of every epoch whatever
  their number; an epoch in which no image at all could be read always stops it.  It stops before
  the epoch's checkpoint, so no model trained on placeholders is written.

At the end of training the hook reports ``AASAE data: N of M images could not be read``.
"""

import logging

import torch
from classy_vision.generic.distributed_util import get_world_size, is_primary
from classy_vision.hooks import ClassyHook

from vissl_aasae.errors import UnreadableDataError
from vissl_aasae.settings import RunSettings

MIN_UNREADABLE = 16  # unreadable images before the share is judged in the middle of an epoch
NAMED = 5  # files named in the error


class SkipUnreadable:
    """The task's data iterator without the batches that hold no readable image; counts as it goes."""

    def __init__(self, iterator, hook: "AASAEDataReportHook", task):
        self.iterator, self.hook, self.task = iterator, hook, task

    def __iter__(self):
        return self

    def __len__(self):
        return len(self.iterator)

    def _counts(self, batch, device):
        """(skip, unreadable, seen) of this step, summed over the ranks."""
        skip = bool(isinstance(batch, dict) and batch.get("aasae_skip"))
        invalid = batch.get("aasae_invalid") if isinstance(batch, dict) else None
        invalid = int(invalid.sum()) if invalid is not None else 0
        data = batch.get("data") if isinstance(batch, dict) and not skip else None
        seen = invalid + (int(data[0].shape[0]) if data else 0)
        if isinstance(batch, dict) and batch.get("aasae_invalid_idx") is not None:
            self.hook.remember(batch["aasae_invalid_idx"].tolist())
        if get_world_size() == 1:
            return skip, invalid, seen
        total = torch.tensor([int(skip), invalid, seen], dtype=torch.int64)
        torch.distributed.all_reduce(total, group=self.hook.group)  # on CPU (gloo): no device sync
        return total[0].item() > 0, int(total[1]), int(total[2])

    def __next__(self):
        hook, task = self.hook, self.task
        while True:
            try:
                batch = next(self.iterator)
            except StopIteration:
                hook.judge(task, end_of_epoch=True)
                raise
            skip, invalid, seen = self._counts(batch, task.device)
            hook.count(invalid, seen, skipped=skip)
            hook.judge(task, end_of_epoch=False)
            if not skip:
                return batch
            logging.warning(f"AASAE data: a batch without any readable image was passed over ({invalid} images)")


class AASAEDataReportHook(ClassyHook):
    on_start = ClassyHook._noop
    on_loss_and_meter = ClassyHook._noop
    on_forward = ClassyHook._noop
    on_backward = ClassyHook._noop
    on_update = ClassyHook._noop
    on_step = ClassyHook._noop
    on_phase_end = ClassyHook._noop

    def __init__(self, max_fraction: float = RunSettings.max_unreadable_fraction):
        super().__init__()
        self.max_fraction = float(max_fraction)
        self.invalid = 0
        self.seen = 0
        self.skipped_batches = 0
        self.epoch_valid = 0
        self.bad_indices = []
        self.group = None  # a gloo process group for the counts (CPU tensors) when there are several ranks

    def on_phase_start(self, task) -> None:
        config = getattr(task, "config", None)
        if config is not None:
            self.max_fraction = RunSettings.from_config(config).max_unreadable_fraction
        if get_world_size() > 1 and self.group is None:  # collective: every rank gets here in step
            gloo = torch.distributed.get_backend() == "gloo"
            self.group = torch.distributed.group.WORLD if gloo else torch.distributed.new_group(backend="gloo")
        if task.train and getattr(task, "data_iterator", None) is not None:
            self.epoch_valid = 0
            task.data_iterator = SkipUnreadable(task.data_iterator, self, task)

    def remember(self, indices) -> None:
        room = NAMED - len(self.bad_indices)
        if room > 0:
            self.bad_indices += indices[:room]

    def count(self, invalid: int, seen: int, skipped: bool) -> None:
        self.invalid += invalid
        self.seen += seen
        self.epoch_valid += seen - invalid
        self.skipped_batches += int(skipped)

    def judge(self, task, end_of_epoch: bool) -> None:
        too_many = self.seen and self.invalid > self.max_fraction * self.seen
        if too_many and (end_of_epoch or self.invalid >= MIN_UNREADABLE):
            raise UnreadableDataError(
                f"{self.invalid} of the {self.seen} images seen so far could not be read (more than "
                f"AASAE.MAX_UNREADABLE_FRACTION={self.max_fraction:g}), e.g. {self.image_names(task)}; "
                f"stopped at iteration {task.iteration}, before this epoch's checkpoint"
            )
        if end_of_epoch and self.seen and self.epoch_valid == 0:
            raise UnreadableDataError(
                f"no image of this epoch could be read ({self.invalid} of {self.seen} images seen so far are "
                f"unreadable), e.g. {self.image_names(task)}; stopped before this epoch's checkpoint"
            )

    def image_names(self, task) -> str:
        """Up to NAMED unreadable files (paths for image folders and file lists, else data set indices)."""
        names = []
        dataset = (getattr(task, "datasets", None) or {}).get("train")
        paths = None
        try:
            paths = dataset.get_image_paths()[0]
        except Exception:  # sources without paths (arrays): name the index
            paths = None
        for idx in self.bad_indices[:NAMED]:
            sub = idx
            subset = getattr(dataset, "image_and_label_subset", None)
            if subset is not None and getattr(dataset, "data_limit", -1) >= 0:
                sub = int(subset[idx])
            names.append(str(paths[sub]) if paths is not None and sub < len(paths) else f"image {sub} of the data")
        return ", ".join(names) if names else "(on another rank)"

    def on_end(self, task) -> None:
        counts = [self.invalid, self.seen]  # the iterator's counts are over all ranks already
        if is_primary():
            message = f"AASAE data: {counts[0]} of {counts[1]} images could not be read and were left out"
            (logging.warning if counts[0] else logging.info)(message)
            if counts[0]:
                print(message + " (see the 'Couldn't load' warnings above)", flush=True)
