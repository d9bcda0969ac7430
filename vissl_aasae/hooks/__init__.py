"""The plugin's hooks and their generator, :func:`aasae_hook_generator`.

The launcher hands VISSL :func:`vissl_aasae.launcher.hook_generator`, which calls this one: VISSL
pickles it by reference into each spawned rank and SLURM job, where unpickling it imports the
launcher, which loads the plugin there.

With ``LOSS.name: aasae_loss`` it adds, after VISSL's default hooks:
- :class:`AASAEMetricsHook`: loss parts, posterior agreement, progress, end-of-training summary;
- :class:`AASAEReconstructionHook`: original | augmented | reconstruction grids (PNG + TensorBoard);
- :class:`AASAEDataReportHook`: counts the unreadable images left out of batches, reports them;
- :class:`AASAEDivergenceHook`: stops a run whose loss grows by orders of magnitude.
Other runs that test a model (the linear and semi-supervised benchmarks) get
:class:`AASAEBenchmarkReportHook`: their accuracy as one console line per test phase.
The first two write to TensorBoard through the ``SummaryWriter`` of VISSL's own TensorBoard hook
(``HOOKS.TENSORBOARD_SETUP.USE_TENSORBOARD``), not a second writer.  Their frequencies are the
``AASAE.METRICS`` block (:class:`vissl_aasae.settings.MetricsSettings`).
"""

from typing import List

import torch
from classy_vision.hooks import ClassyHook

from vissl_aasae.hooks.aasae_benchmark_hook import AASAEBenchmarkReportHook
from vissl_aasae.hooks.aasae_data_report_hook import AASAEDataReportHook
from vissl_aasae.hooks.aasae_divergence_hook import AASAEDivergenceHook
from vissl_aasae.hooks.aasae_metrics_hook import AASAEMetricsHook
from vissl_aasae.hooks.aasae_reconstruction_hook import AASAEReconstructionHook
from vissl_aasae.trainer.cpu import rank_threads


def tensorboard_writer(hooks: List[ClassyHook]):
    """The SummaryWriter of VISSL's TensorBoard hook among ``hooks`` (None when it is off)."""
    from vissl.hooks import SSLTensorboardHook

    for hook in hooks:
        if isinstance(hook, SSLTensorboardHook):
            return hook.tb_writer
    return None


def aasae_hook_generator(config) -> List[ClassyHook]:
    from vissl.hooks import default_hook_generator

    if config.MACHINE.DEVICE == "cpu":
        torch.set_num_threads(rank_threads(config))
    hooks = default_hook_generator(config)
    if config.LOSS.name == "aasae_loss":
        writer = tensorboard_writer(hooks)
        hooks.append(AASAEDivergenceHook(config))
        hooks.append(AASAEReconstructionHook(config, writer))
        hooks.append(AASAEDataReportHook())
        # last: its end-of-training summary is the run's last console line
        hooks.append(AASAEMetricsHook(config, writer))
    elif config.TEST_MODEL:  # a benchmark: after VISSL's hooks, which sync the meters and write metrics.json
        hooks.append(AASAEBenchmarkReportHook(config))
    return hooks
