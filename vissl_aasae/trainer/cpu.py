"""How a CPU run shares the machine: torch threads and DataLoader workers per rank."""

import logging
import os

from vissl_aasae.settings import PerformanceSettings


def rank_threads(config) -> int:
    """CPU threads for one rank: the cores this process may run on (its affinity: a SLURM or
    ``taskset`` CPU set, not every core of the host) shared evenly among this node's ranks."""
    ranks = max(1, int(config.DISTRIBUTED.NUM_PROC_PER_NODE))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // ranks)


def cpu_data_workers(config) -> int:
    """DataLoader workers a CPU rank may start without taking the trainer's cores: one fewer than the
    rank's cores, at least one (measured on 2 cores, quickstart step: 0 / 1 / 2 workers 18.3 /
    22.2 / 18.9 img/s; benchmarks/RESULTS.md).  ``DATA.NUM_DATALOADER_WORKERS`` is kept when it is
    already below that, or 0."""
    wanted = int(config.DATA.NUM_DATALOADER_WORKERS)
    return min(wanted, max(1, rank_threads(config) - 1))


def size_cpu_data_workers(config) -> None:
    """On a CPU run (``AASAE.PERFORMANCE.CAP_CPU_WORKERS``, default on) lower the rank's
    ``DATA.NUM_DATALOADER_WORKERS`` to :func:`cpu_data_workers`, in this rank's config only (the
    run's recorded config keeps the value asked for); logged."""
    if config.MACHINE.DEVICE != "cpu" or not PerformanceSettings.from_config(config).cap_cpu_workers:
        return
    wanted, allowed = int(config.DATA.NUM_DATALOADER_WORKERS), cpu_data_workers(config)
    if allowed < wanted:
        config.DATA.NUM_DATALOADER_WORKERS = allowed
        logging.info(
            f"vissl_aasae: DATA.NUM_DATALOADER_WORKERS {wanted} -> {allowed} on cpu ({rank_threads(config)} cores for "
            "this rank; AASAE.PERFORMANCE.CAP_CPU_WORKERS=False keeps the config's value)"
        )
