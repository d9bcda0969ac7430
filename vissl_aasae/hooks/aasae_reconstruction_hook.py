"""Draws what the autoencoder reconstructs: original | augmented input | reconstruction.

Every ``AASAE.METRICS.IMAGE_FREQUENCY`` iterations (0: only at the end) the primary rank draws the
first ``AASAE.METRICS.NUM_IMAGES`` images of the step's batch: row 1 the original (target) images,
row 2 the encoder input (the augmented view), row 3 the reconstruction (the decoder's mean for the
first sample of z), de-normalised with the ``Normalize`` of the config's ``AASAEViews`` lists, each
tile enlarged to at least 96 px (nearest neighbour) and the rows labelled "original", "view",
"reconstruction" (:func:`vissl_aasae.images.reconstruction_grid`).  The grid goes to
``<CHECKPOINT.DIR>/reconstructions/iter_<iteration>.png`` and, when VISSL's TensorBoard hook is on,
to the image summary ``AASAE/reconstructions`` of its writer.

At the end of training the final model reconstructs the last training batch once more (a no-grad
forward in training mode, BatchNorm statistics and random generators restored; every rank runs
it, as a synchronised BatchNorm needs) and that grid is written as ``iter_<final iteration>.png``.
"""

import logging
import os

from classy_vision.generic.distributed_util import is_primary
from classy_vision.hooks import ClassyHook

from vissl_aasae.images import reconstruction_grid, save_grid
from vissl_aasae.models.heads.aasae_resnet_decoder import as_output
from vissl_aasae.models.posterior import side_effect_free
from vissl_aasae.settings import MetricsSettings, due

IMAGE_TAG = "AASAE/reconstructions"
FOLDER = "reconstructions"


def grid_path(checkpoint_dir: str, iteration: int) -> str:
    return os.path.join(checkpoint_dir, FOLDER, f"iter_{iteration:06d}.png")


class AASAEReconstructionHook(ClassyHook):
    on_start = ClassyHook._noop
    on_phase_start = ClassyHook._noop
    on_forward = ClassyHook._noop
    on_loss_and_meter = ClassyHook._noop
    on_backward = ClassyHook._noop
    on_phase_end = ClassyHook._noop
    on_step = ClassyHook._noop

    def __init__(self, config, tb_writer=None):
        super().__init__()
        self.config = config
        self.settings = MetricsSettings.from_config(config)
        self.tb_writer = tb_writer
        self.checkpoint_dir = config.CHECKPOINT.DIR
        self.written = []  # paths of the grids written by this rank
        self._last_sample = None

    def _write(self, original, augmented, x_hat, iteration: int) -> None:
        path = grid_path(self.checkpoint_dir, iteration)
        if path in self.written:
            return
        grid = reconstruction_grid(original, augmented, x_hat[0], self.config, self.settings.num_images)
        save_grid(grid, path)
        self.written.append(path)
        logging.info(f"aasae: reconstructions of iteration {iteration} in {path}")
        if self.tb_writer is not None:
            self.tb_writer.add_image(IMAGE_TAG, grid, global_step=iteration)

    def on_update(self, task) -> None:
        if self.settings.num_images <= 0:
            return
        sample = task.last_batch.sample
        self._last_sample = sample  # a reference: the final reconstruction at on_end uses it
        if is_primary() and due(task.iteration, self.settings.image_frequency):
            self._write(
                sample["target"], sample["input"], as_output(task.last_batch.model_output).x_hat, task.iteration
            )

    def on_end(self, task) -> None:
        if self.settings.num_images <= 0 or self._last_sample is None:
            return
        model = task.base_model
        inputs = self._last_sample["input"]
        with side_effect_free(model, inputs.device):
            output = model(inputs)
        if is_primary():
            self._write(
                self._last_sample["target"], self._last_sample["input"], as_output(output).x_hat, task.iteration
            )
            if self.tb_writer is not None:
                self.tb_writer.flush()
        self._last_sample = None
