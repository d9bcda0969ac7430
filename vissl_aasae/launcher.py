"""VISSL's ``run_distributed_engines`` command line with the plugin active everywhere.

Same arguments as VISSL's tool (``config=...`` plus Hydra overrides).  Differences: the plugin is
loaded here (:mod:`vissl_aasae.registry`, and the evaluation add-on, whose engine and pre-flight check
a launch uses), in every rank spawned by ``torch.multiprocessing`` and in SLURM jobs (through
:func:`hook_generator`, pickled by reference) and in DataLoader workers (transforms unpickle by
qualified name); CPU ranks share the cores instead of each taking all of them; the usage text is
:mod:`vissl_aasae.usage`'s; and what a run guarantees (README):

- configs are composed by :func:`vissl_aasae.config_compose.compose`, the one way (launcher and every
  tool), without side effects (VISSL's ``convert_to_attrdict`` would dump the config into ``CHECKPOINT.DIR``);
- a bad config (unknown name, unknown component, missing data) stops before any work with one line
  naming the culprit (exit 2);
- ``CHECKPOINT.DIR`` is locked for the run (``aasae_run.lock``: PID and host of the holder); a
  second launch into it refuses, naming them (exit 2); the lock of a process that died is taken over;
- only a training launch that passed validation writes ``train_config.yaml``; one whose config differs
  from the record already there refuses, naming the keys, unless ``config.AASAE.OVERWRITE_CONFIG=True``;
- the run resumes from the newest *complete* checkpoint (a truncated one is passed over, with a warning);
  the lock, the record, the resume and the way a run ends are :mod:`vissl_aasae.run`'s;
- exit codes: 0 done, 2 bad input (config, data, a refused launch), 3 diverged, 130 interrupted (Ctrl-C),
  143 stopped by SIGTERM (the same clean stop).
"""

import logging
import os
import signal
import sys
from typing import List

from vissl.utils import distributed_launcher

import vissl_aasae.registry  # noqa: F401  (the plugin loaded in this process, before what follows binds VISSL names)
from vissl_aasae import compat
from vissl_aasae.config_check import check_config, upscaling_warning
from vissl_aasae.config_compose import compose, config_listing
from vissl_aasae.errors import EXIT_BAD_INPUT, ConfigError
from vissl_aasae.evaluation import aasae_feature_eval  # noqa: F401  (registers the engine aasae_feature_eval)
from vissl_aasae.evaluation.eval_config_check import check_evaluation_config
from vissl_aasae.hooks import aasae_hook_generator
from vissl_aasae.models.trunk_spec import trunk_spec
from vissl_aasae.run import (
    Interrupts,
    RunLock,
    check_recorded_config,
    check_resume,
    failure,
    is_local,
    stop_child_processes,
    write_config,
)
from vissl_aasae.settings import MethodSettings, RunSettings
from vissl_aasae.trainer.cpu import rank_threads
from vissl_aasae.usage import train_usage


def hook_generator(config):
    """The plugin's hooks (:func:`vissl_aasae.hooks.aasae_hook_generator`), handed to VISSL from this
    module: VISSL pickles it by reference into every spawned rank and SLURM job, where unpickling it
    imports the launcher, so the whole plugin (patches, components, the evaluation engine) is loaded there."""
    return aasae_hook_generator(config)


compat.run_slurm_jobs_with(hook_generator)  # the hooks of the SLURM jobs this launcher submits


# --------------------------------------------------------------------------- main
def header(overrides: List[str], config) -> str:
    """The console's first lines: what runs, on what, where its full log goes (the config, system and
    model dumps are in log.txt only; config.VERBOSE=True shows them on the console too)."""
    name = next((o.split("=", 1)[1] for o in overrides if o.startswith("config=")), "?")
    lines = [f"vissl_aasae: config={name}"]
    if config.LOSS.name == "aasae_loss":
        spec, method = trunk_spec(config.MODEL), MethodSettings.from_config(config)
        train = config.DATA.TRAIN
        limit = int(train.get("DATA_LIMIT", -1))
        cap = RunSettings.from_config(config).max_iterations
        width = f" x{spec.width_multiplier}" if spec.width_multiplier != 1 else ""
        lines.append(
            f"  model: ResNet-{spec.depth}{width} ({spec.stem} stem, {method.input_height} px), d={method.latent_dim}, "
            f"decoder depth {method.decoder_depth or spec.depth}, "
            f"kl_coeff {config.LOSS.aasae_loss.get('kl_coeff', 0.0)}"
        )
        lines.append(
            f"  data: {', '.join(map(str, train.DATASET_NAMES))} at {', '.join(map(str, train.DATA_PATHS))}"
            f"{f' ({limit} images)' if limit > 0 else ''}, batch {train.BATCHSIZE_PER_REPLICA} x "
            f"{int(config.DISTRIBUTED.NUM_NODES) * int(config.DISTRIBUTED.NUM_PROC_PER_NODE)} process(es), "
            f"{config.OPTIMIZER.num_epochs} epochs{f' (stops at iteration {cap})' if cap else ''}, "
            f"{config.MACHINE.DEVICE}"
        )
    lines.append(f"  checkpoints, metrics and the full log: {os.path.abspath(config.CHECKPOINT.DIR)}")
    return "\n".join(lines)


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def main(argv: List[str] = None, prog: str = None) -> int:
    """Compose, check, lock and launch; the exit code.  ``prog``: the name of the command of the command
    line this runs as (``aasae-train``): a usage mistake then shows the usage line above the error, as
    the other aasae-* commands (argparse) do; without it (VISSL's tool), only the error line."""
    overrides = list(sys.argv[1:] if argv is None else argv)
    if any(o in ("-h", "--help") for o in overrides):
        print(train_usage(prog or "run_distributed_engines.py") + "\n" + config_listing())
        return 0
    if not any(o.startswith("config=") for o in overrides):  # Hydra would list VISSL's one test config
        if prog:
            print(train_usage(prog).splitlines()[0], file=sys.stderr)
        return _fail(f"no config given: add config=NAME, e.g. config=pretrain/aasae/quickstart. {config_listing()}")
    try:
        args, config = compose(overrides)
        check_config(config)
        check_evaluation_config(config, args.engine_name)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        return _fail(str(err))
    warning = upscaling_warning(config) if args.engine_name == "train" else None
    if warning:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    if config.MACHINE.DEVICE == "cpu":
        # the threads each spawned rank starts with; the hook generator sets torch's count again
        os.environ.setdefault("OMP_NUM_THREADS", str(rank_threads(config)))
    folder = config.CHECKPOINT.DIR
    training = args.engine_name == "train"
    first_node = int(args.node_id or 0) == 0
    # the lock is held by the process that runs the job: not by a launcher that only submits it to SLURM
    lock = RunLock(folder) if first_node and is_local(folder) and not config.SLURM.USE_SLURM else None
    try:
        if lock is not None:
            lock.acquire()
            if lock.stale_note():
                print(lock.stale_note(), file=sys.stderr, flush=True)
        if training and first_node:
            write = check_recorded_config(config, folder) if is_local(folder) else True
            check_resume(config)
            if write:
                write_config(config)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        if lock is not None:
            lock.release()
        return _fail(str(err))
    if first_node:
        print(header(overrides, config), flush=True)
    try:
        if config.SLURM.USE_SLURM:
            distributed_launcher.launch_distributed_on_slurm(engine_name=args.engine_name, cfg=config)
            return 0
        spawned = int(config.DISTRIBUTED.NUM_NODES) * int(config.DISTRIBUTED.NUM_PROC_PER_NODE) > 1
        with Interrupts(spawned) as interrupts:
            try:
                distributed_launcher.launch_distributed(
                    cfg=config,
                    node_id=args.node_id,
                    engine_name=args.engine_name,
                    hook_generator=hook_generator,
                )
            except BaseException as err:  # spawned ranks re-raise as ProcessRaisedException with the text
                explained = failure(err, folder, interrupts.signum or signal.SIGINT)
                if explained is None:
                    raise
                code, message = explained
                stop_child_processes()
                return _fail(message, code)
        if interrupts.seen:  # swallowed on the way (VISSL catches KeyboardInterrupt)
            stop_child_processes()
            return _fail(*reversed(failure(KeyboardInterrupt(), folder, interrupts.signum)))
    finally:
        if lock is not None:
            lock.release()
        logging.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
