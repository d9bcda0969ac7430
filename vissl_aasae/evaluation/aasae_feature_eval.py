"""Engine ``aasae_feature_eval``: kNN (and optionally a linear probe) on frozen trunk features, CPU or GPU.

Selected by ``engine_name: aasae_feature_eval`` in the ``benchmark/aasae/knn/*`` configs, so they run
with the usual command line::

    python tools/run_distributed_engines.py config=benchmark/aasae/knn/cifar10 \\
        config.MODEL.WEIGHTS_INIT.PARAMS_FILE=<checkpoint> config.DATA.TRAIN.DATA_PATHS=[...] ...

VISSL's own kNN (``extract_features`` engine + ``tools/nearest_neighbor_test.py``) needs a GPU and
several processes writing feature shards; this engine extracts in one process on
``MACHINE.DEVICE`` and runs :func:`vissl_aasae.evaluation.frozen_trunk.evaluate_frozen_trunk`.
It prints progress on stderr, one line ``AASAE benchmark: kNN (k=20) top-1 ... (test, N images),
metrics in <file>`` and writes that file, ``CHECKPOINT.DIR/<AASAE_EVAL.RESULTS_FILE>``.
"""

import os
from typing import Any, Callable, List

import torch
from classy_vision.hooks import ClassyHook
from vissl.engines.engine_registry import Engine, register_engine
from vissl.utils import logger
from vissl.utils.env import set_env_vars
from vissl.utils.misc import set_seeds

from vissl_aasae.evaluation.frozen_trunk import evaluate_frozen_trunk, results_path, save_results
from vissl_aasae.hooks.aasae_benchmark_hook import benchmark_line


def results_line(results, path: str) -> str:
    """The benchmark's console line (the same form as the linear and fine-tuning benchmarks')."""
    groups = []
    for key, what in (("knn", f"kNN (k={results.get('knn_k')})"), ("linear", "linear probe")):
        scores = {f"top-{k}": results[f"{key}_top{k}"] for k in (1, 5) if f"{key}_top{k}" in results}
        if scores:
            groups.append((what, scores))
    return benchmark_line(groups, "test", results.get("n_test"), path)


@register_engine("aasae_feature_eval")
class AASAEFeatureEvalEngine(Engine):
    def run_engine(
        self,
        cfg,
        dist_run_id: str,
        checkpoint_path: str,
        checkpoint_folder: str,
        local_rank: int = 0,
        node_id: int = 0,
        hook_generator: Callable[[Any], List[ClassyHook]] = None,
    ):
        world = cfg.DISTRIBUTED.NUM_NODES * cfg.DISTRIBUTED.NUM_PROC_PER_NODE
        if world != 1:
            raise ValueError(
                f"engine aasae_feature_eval runs in one process: set config.DISTRIBUTED.NUM_NODES=1 and "
                f"config.DISTRIBUTED.NUM_PROC_PER_NODE=1 (got {cfg.DISTRIBUTED.NUM_NODES} x "
                f"{cfg.DISTRIBUTED.NUM_PROC_PER_NODE})"
            )
        set_env_vars(local_rank, node_id, cfg)
        logger.setup_logging(__name__, output_dir=checkpoint_folder, rank=0)  # looked up now: compat's console filter
        set_seeds(cfg, 0)
        if cfg.MACHINE.DEVICE == "gpu" and torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        results = evaluate_frozen_trunk(cfg, progress=True)
        path = save_results(results, results_path(cfg))
        print(results_line(results, os.path.abspath(path)), flush=True)
        logger.shutdown_logging()
