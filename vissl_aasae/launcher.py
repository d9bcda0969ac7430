"""VISSL's ``run_distributed_engines`` command line with the plugin active everywhere.

Same arguments as VISSL's tool (``config=...`` plus Hydra overrides).  Differences: the plugin is
imported here, in every rank spawned by ``torch.multiprocessing`` (through the hook generator,
pickled by reference) and in DataLoader workers (transforms unpickle by qualified name);
CPU ranks share the cores instead of each taking all of them; and what a run guarantees (README):

- :func:`compose` is the one way configs are composed (launcher and every tool): it has no side
  effects (VISSL's ``convert_to_attrdict`` would dump the config into ``CHECKPOINT.DIR``);
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
import re
import signal
import sys
from typing import Dict, List

import vissl_aasae  # noqa: F401  (registers the plugin's components in this process)
from vissl_aasae import compat
from vissl_aasae.config_check import check_config, upscaling_warning
from vissl_aasae.errors import EXIT_BAD_INPUT, ConfigError
from vissl_aasae.evaluation.eval_config_check import check_evaluation_config
from vissl_aasae.hooks import aasae_hook_generator
from vissl_aasae.run import (
    Interrupts,
    RunLock,
    check_recorded_config,
    check_resume,
    failure,
    is_local,
    stop_spawned_ranks,
    write_config,
)
from vissl_aasae.trainer.cpu import rank_threads

compat.run_slurm_jobs_with(aasae_hook_generator)  # the hooks of the SLURM jobs this launcher submits


# --------------------------------------------------------------------------- composing
def available_configs() -> Dict[str, List[str]]:
    """The plugin's configs by folder (``pretrain/aasae``, ``benchmark/aasae/knn``, ...), mix-ins apart."""
    from hydra_plugins.vissl_aasae_searchpath.vissl_aasae_searchpath import aasae_config_root

    root = aasae_config_root()
    if root.startswith("file://"):
        base = root[len("file://") :]
    else:
        base = os.path.join(os.path.dirname(os.path.abspath(vissl_aasae.__file__)), "configs")
    base = os.path.join(base, "config")
    found: Dict[str, List[str]] = {}
    for top in ("pretrain/aasae", "benchmark/aasae"):
        for folder, _, files in sorted(os.walk(os.path.join(base, top))):
            names = sorted(f[:-5] for f in files if f.endswith(".yaml") and f != "common.yaml")
            if names:
                found[os.path.relpath(folder, base)] = names
    return found


def _config_listing() -> str:
    groups = available_configs()
    mixins = ("pretrain/aasae/datasets", "pretrain/aasae/models", "pretrain/aasae/variant")
    configs = [f"{k}/{{{','.join(v)}}}" for k, v in groups.items() if k not in mixins]
    extra = [f"+config/{k}={{{','.join(v)}}}" for k, v in groups.items() if k in mixins]
    return "AASAE configs: " + ", ".join(configs) + ("; mix-ins: " + ", ".join(extra) if extra else "")


def compose(overrides: List[str]):
    """(args, config) of Hydra ``overrides`` as VISSL composes them (apex defaults rewritten, values
    inferred), without side effects: nothing is written (VISSL would dump the config into CHECKPOINT.DIR)."""
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException
    from vissl.utils.hydra_config import compose_hydra_configuration, convert_to_attrdict

    overrides = [_quote_home(o) for o in overrides]
    try:
        cfg = compose_hydra_configuration(overrides)
        added = [o for o in overrides if o.lstrip("+").startswith("config.") and o.startswith("+")]
        if added:
            _check_added_keys(added, compose_hydra_configuration([o for o in overrides if o not in added]))
        # interpolations resolved now (VISSL would keep them as strings): each data set's stem, size and
        # normalisation are declared once (configs/config/pretrain/aasae/datasets) and read by the configs
        OmegaConf.resolve(cfg)
        args, config = convert_to_attrdict(cfg, dump_config=False)
        _expand_user_paths(config)
        return args, config
    except (HydraException, OmegaConfBaseException) as err:
        # Hydra's message spans lines (e.g. the available options): keep it, on one line
        message = " ".join(str(err).split("Config search path")[0].split())
        if "Available options in 'config':" in message:  # a config name: Hydra lists VISSL's only one
            message = message.split(" Available options in 'config':")[0] + ". " + _config_listing()
        raise ConfigError(message or type(err).__name__) from None


def _check_added_keys(added: List[str], base) -> None:
    """``+config.KEY=VALUE`` (Hydra's hint for a key it does not know) adds a key nothing reads: refuse
    it, naming the closest known key.  The plugin's own sections name their unknown keys themselves
    (:func:`vissl_aasae.settings.validate`)."""
    import difflib

    from vissl_aasae.settings import SECTIONS

    plugin = tuple(section.PATH for section in SECTIONS)
    for override in added:
        path = override.lstrip("+").split("=", 1)[0].split(".")[1:]
        if ".".join(path).startswith(plugin):
            continue
        node, known = base.config, []
        for depth, part in enumerate(path):
            if not hasattr(node, "keys") or part not in node:
                keys = [str(k) for k in node.keys()] if hasattr(node, "keys") else []
                close = difflib.get_close_matches(part, keys, n=1)
                where = ".".join(known) or "config"
                hint = f"; did you mean config.{'.'.join(known + close)}?" if close else ""
                raise ConfigError(
                    f"{override.split('=', 1)[0]}: {where} has no key {part!r}, so nothing would read it{hint}"
                )
            known.append(part)
            node = node[part]


def _quote_home(override: str) -> str:
    """``KEY=~/x`` (or ``KEY=[~/x,...]``) as Hydra's grammar accepts it: ``~`` must be quoted there."""
    key, sep, value = override.partition("=")
    if not sep or "~" not in value:
        return override
    if value.startswith("~"):
        return f"{key}={value!r}" if "'" not in value else override
    return re.sub(r"(?<=[\[,])\s*(~[^,\]'\"]*)", lambda m: repr(m.group(1)), override)


def _expand_user_paths(node) -> None:
    """A value starting with ``~/`` is a path in the user's home (VISSL would make a ``./~`` folder)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in list(items):
        if isinstance(value, str) and (value == "~" or value.startswith("~/")):
            node[key] = os.path.expanduser(value)
        else:
            _expand_user_paths(value)


# --------------------------------------------------------------------------- main
def header(overrides: List[str], config) -> str:
    """The console's first lines: what runs, on what, where its full log goes (the config, system and
    model dumps are in log.txt only; config.VERBOSE=True shows them on the console too)."""
    name = next((o.split("=", 1)[1] for o in overrides if o.startswith("config=")), "?")
    lines = [f"vissl_aasae: config={name}"]
    if config.LOSS.name == "aasae_loss":
        from vissl_aasae.models.trunk_spec import trunk_spec
        from vissl_aasae.settings import MethodSettings, RunSettings

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


USAGE = """usage: run_distributed_engines.py config=<config> [config.KEY=VALUE ...] [+config/<group>=<mix-in> ...]

VISSL's launcher with the vissl_aasae plugin.  Examples:
  python tools/run_distributed_engines.py config=pretrain/aasae/quickstart
  python tools/run_distributed_engines.py config=pretrain/aasae/imagenet config.DATA.TRAIN.DATA_PATHS=[/data/train]
  python tools/run_distributed_engines.py config=benchmark/aasae/linear/cifar10 \\
      config.MODEL.WEIGHTS_INIT.PARAMS_FILE=<checkpoint> config.DATA.TRAIN.DATA_PATHS=[/data/cifar10] \\
      config.DATA.TEST.DATA_PATHS=[/data/cifar10]
Overrides use Hydra's grammar: lists in brackets, ~ and other special characters quoted.
Exit status: 0 done, 2 bad input, 3 diverged, 130 Ctrl-C, 143 SIGTERM.  See README.md "Usage"."""


def main(argv: List[str] = None) -> int:
    overrides = list(sys.argv[1:] if argv is None else argv)
    if any(o in ("-h", "--help") for o in overrides):
        print(USAGE + "\n" + _config_listing())
        return 0
    if not any(o.startswith("config=") for o in overrides):  # Hydra would list VISSL's one test config
        return _fail(f"no config given: add config=NAME, e.g. config=pretrain/aasae/quickstart. {_config_listing()}")
    try:
        args, config = compose(overrides)
        check_config(config)
        check_evaluation_config(config, args.engine_name)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        return _fail(str(err))
    warning = upscaling_warning(config) if args.engine_name == "train" else None
    if warning:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    from vissl.utils.distributed_launcher import launch_distributed, launch_distributed_on_slurm

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
            launch_distributed_on_slurm(engine_name=args.engine_name, cfg=config)
            return 0
        spawned = int(config.DISTRIBUTED.NUM_NODES) * int(config.DISTRIBUTED.NUM_PROC_PER_NODE) > 1
        with Interrupts(spawned) as interrupts:
            try:
                launch_distributed(
                    cfg=config,
                    node_id=args.node_id,
                    engine_name=args.engine_name,
                    hook_generator=aasae_hook_generator,
                )
            except BaseException as err:  # spawned ranks re-raise as ProcessRaisedException with the text
                explained = failure(err, folder, interrupts.signum or signal.SIGINT)
                if explained is None:
                    raise
                code, message = explained
                if code > 128:
                    stop_spawned_ranks()
                return _fail(message, code)
        if interrupts.seen:  # swallowed on the way (VISSL catches KeyboardInterrupt)
            stop_spawned_ranks()
            return _fail(*reversed(failure(KeyboardInterrupt(), folder, interrupts.signum)))
    finally:
        if lock is not None:
            lock.release()
        logging.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
