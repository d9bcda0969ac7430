"""VISSL's ``run_distributed_engines`` command line with the plugin active everywhere.

Same arguments as VISSL's tool (``config=...`` plus Hydra overrides).  Differences: the plugin is
imported here, in every rank spawned by ``torch.multiprocessing`` (through the hook generator,
pickled by reference) and in DataLoader workers (transforms unpickle by qualified name);
CPU ranks share the cores instead of each taking all of them; and a bad config (unknown name,
unknown component, missing data) stops before any work with one line naming the culprit.
"""
import logging
import os
import sys
from typing import List

import vissl_aasae  # noqa: F401  (registers the plugin's components in this process)
from vissl_aasae.config_check import ConfigError, check_config
from vissl_aasae.evaluation.eval_config_check import check_evaluation_config


def compose(overrides: List[str]):
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException
    from vissl.utils.hydra_config import compose_hydra_configuration, convert_to_attrdict

    try:
        cfg = compose_hydra_configuration(overrides)
        return convert_to_attrdict(cfg)
    except (HydraException, OmegaConfBaseException) as err:
        # Hydra's message spans lines (e.g. the available options): keep it, on one line
        message = " ".join(str(err).split("Config search path")[0].split())
        raise ConfigError(message or type(err).__name__) from None


def main(argv: List[str] = None) -> int:
    overrides = list(sys.argv[1:] if argv is None else argv)
    try:
        args, config = compose(overrides)
        check_config(config)
        check_evaluation_config(config, args.engine_name)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from vissl.utils.distributed_launcher import launch_distributed, launch_distributed_on_slurm

    from vissl_aasae.hooks import aasae_hook_generator, rank_threads

    if config.MACHINE.DEVICE == "cpu":
        # the threads each spawned rank starts with; the hook generator sets torch's count again
        os.environ.setdefault("OMP_NUM_THREADS", str(rank_threads(config)))
    if config.SLURM.USE_SLURM:
        launch_distributed_on_slurm(engine_name=args.engine_name, cfg=config)
        return 0
    try:
        launch_distributed(
            cfg=config,
            node_id=args.node_id,
            engine_name=args.engine_name,
            hook_generator=aasae_hook_generator,
        )
    except Exception as err:  # spawned ranks re-raise as ProcessRaisedException with the text
        message = divergence_message(err, config.CHECKPOINT.DIR)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 3
    logging.shutdown()
    return 0


def divergence_message(err: Exception, checkpoint_dir: str):
    """One line for a run stopped by a NaN/inf loss or weights (VISSL's check or ours), else None."""
    text = str(err)
    if not isinstance(err, FloatingPointError) and "FloatingPointError" not in text:
        return None
    lines = [line.split("FloatingPointError:", 1)[-1].strip() for line in text.splitlines() if line.strip()]
    found = [line for line in lines if "FloatingPointError" in text and ("NaN" in line or "diverged" in line)]
    message = found[-1] if found else lines[-1]
    if "last good checkpoint" not in message:
        from vissl_aasae.compat import latest_checkpoint_file

        last = latest_checkpoint_file(checkpoint_dir, None) if os.path.isdir(checkpoint_dir) else None
        where = os.path.join(checkpoint_dir, last) if last else "none"
        message = f"training diverged: {message}; last good checkpoint: {where}"
    return message


if __name__ == "__main__":
    sys.exit(main())
