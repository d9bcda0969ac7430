"""The plugin's hooks and the hook generator the launcher hands to VISSL.

The generator is passed by reference to ``launch_distributed``; unpickling it in each spawned
rank imports :mod:`vissl_aasae`, which registers the plugin's components there.
"""
import os
from typing import List

import torch
from classy_vision.hooks import ClassyHook

from vissl_aasae.hooks.aasae_metrics_hook import AASAEMetricsHook


def rank_threads(config) -> int:
    """CPU threads for one rank: the cores shared evenly among this node's ranks."""
    ranks = max(1, int(config.DISTRIBUTED.NUM_PROC_PER_NODE))
    return max(1, (os.cpu_count() or 1) // ranks)


def aasae_hook_generator(config) -> List[ClassyHook]:
    from vissl.hooks import default_hook_generator

    if config.MACHINE.DEVICE == "cpu":
        torch.set_num_threads(rank_threads(config))
    hooks = default_hook_generator(config)
    if config.LOSS.name == "aasae_loss":
        hooks.append(AASAEMetricsHook(config))
    return hooks
