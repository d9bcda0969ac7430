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
- exit codes: 0 done, 2 bad input (config, data, a refused launch), 3 diverged, 130 interrupted (Ctrl-C),
  143 stopped by SIGTERM (the same clean stop).
"""

import datetime
import errno
import logging
import os
import re
import signal
import socket
import sys
from typing import Dict, List, Optional, Tuple

import vissl_aasae  # noqa: F401  (registers the plugin's components in this process)
from vissl_aasae.config_check import check_config, check_resume, upscaling_warning
from vissl_aasae.errors import EXIT_BAD_INPUT, EXIT_DIVERGED, ConfigError, RunLocked
from vissl_aasae.evaluation.eval_config_check import check_evaluation_config

LOCK_FILE = "aasae_run.lock"
CONFIG_FILE = "train_config.yaml"
# keys whose value may change between launches of one run: where the run is (the folder is the run,
# however it is spelled) and the switches of the launch itself
NOT_COMPARED = ("CHECKPOINT.DIR", "AASAE.OVERWRITE_CONFIG", "AASAE.LOG_ENVIRONMENT")


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


# --------------------------------------------------------------------------- the run's record
def _flatten(value, prefix: str = "") -> Dict[str, object]:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out or {prefix: {}}
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        out = {}
        for i, item in enumerate(value):
            out.update(_flatten(item, f"{prefix}[{i}]"))
        return out or {prefix: []}
    return {prefix: value}


def _plain(value):
    """VISSL's typed values back to what its yaml holds (``convert_fsdp_dtypes`` made a string a torch.dtype)."""
    import torch

    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.dtype):
        return str(value).replace("torch.", "")
    return value


def config_record(config) -> dict:
    """The config as ``train_config.yaml`` holds it (VISSL's dump, read back)."""
    import yaml

    return yaml.safe_load(yaml.dump(_plain(config.to_dict())))


def config_differences(recorded: dict, config) -> List[str]:
    """``KEY: recorded -> new`` for every compared key whose value differs. Keys the record lacks
    (added by a newer plugin version) are not compared."""
    old, new = _flatten(recorded), _flatten(config_record(config))
    ignored = lambda key: any(key == k or key.startswith(k + ".") for k in NOT_COMPARED)  # noqa: E731
    changes = []
    for key in old:
        if ignored(key):
            continue
        if key not in new:
            changes.append(f"{key}: {old[key]!r} -> (absent)")
        elif old[key] != new[key]:
            changes.append(f"{key}: {old[key]!r} -> {new[key]!r}")
    return changes


def overwrite_config(config) -> bool:
    from vissl_aasae.settings import RunSettings

    return RunSettings.from_config(config).overwrite_config


def check_recorded_config(config, folder: str) -> bool:
    """Raise ConfigError when ``folder`` holds a run recorded with another config (and no overwrite was
    asked for); True when the record must be (re)written."""
    import yaml

    path = os.path.join(folder, CONFIG_FILE)
    if not os.path.isfile(path):
        return True
    try:
        with open(path) as f:
            recorded = yaml.safe_load(f)
    except yaml.YAMLError:
        recorded = None
    if not isinstance(recorded, dict):
        if overwrite_config(config):
            return True
        raise ConfigError(
            f"{path} is not a config this launcher wrote; remove it, or set config.AASAE.OVERWRITE_CONFIG=True"
        )
    changes = config_differences(recorded, config)
    if not changes:
        return False
    from vissl_aasae.compat import behaviour

    if not behaviour.resume_candidates(folder, skip_final=False):
        # a launch refused (or stopped) before its first checkpoint: its record describes nothing
        logging.info(f"{path} has no checkpoint beside it: replaced by this launch's config")
        return True
    finals = sorted(n for n in os.listdir(folder) if n.startswith("model_final") and n.endswith(".torch"))
    if finals and not config.CHECKPOINT.OVERWRITE_EXISTING:
        shown = "; ".join(changes[:4]) + (f"; ... and {len(changes) - 4} more" if len(changes) > 4 else "")
        raise ConfigError(
            f"CHECKPOINT.DIR={folder!r} holds a finished run ({finals[-1]}) whose record ({CONFIG_FILE}) is kept: "
            f"{len(changes)} keys differ ({shown}). To train longer, start a new run from its weights: "
            "config.CHECKPOINT.DIR=<new folder> "
            f"config.MODEL.WEIGHTS_INIT.PARAMS_FILE={os.path.join(folder, finals[-1])}"
        )
    if overwrite_config(config):
        logging.warning(f"config.AASAE.OVERWRITE_CONFIG=True: {path} is rewritten ({len(changes)} keys differ)")
        return True
    shown = "; ".join(changes[:8]) + (f"; ... and {len(changes) - 8} more" if len(changes) > 8 else "")
    raise ConfigError(
        f"CHECKPOINT.DIR={folder!r} holds a run with another config ({CONFIG_FILE}), {len(changes)} keys differ: "
        f"{shown}. Use another CHECKPOINT.DIR, the run's own settings, or config.AASAE.OVERWRITE_CONFIG=True "
        "to replace its record"
    )


def write_config(config) -> str:
    """The config as VISSL dumps it (``yaml.dump`` of the config node) into ``CHECKPOINT.DIR/train_config.yaml``,
    written to a temporary file and renamed (never a partial record)."""
    import yaml
    from iopath.common.file_io import g_pathmgr

    folder = str(config.CHECKPOINT.DIR)
    g_pathmgr.mkdirs(folder)
    path = os.path.join(folder, CONFIG_FILE)
    text = yaml.dump(_plain(config.to_dict()))
    if not _local(folder):
        with g_pathmgr.open(path, "w") as f:
            f.write(text)
        return path
    from vissl_aasae.checkpoints import atomic_write

    return atomic_write(path, lambda f: f.write(text), mode="w")


# --------------------------------------------------------------------------- the lock
def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(text: str) -> Dict[str, str]:
    return dict(part.split("=", 1) for part in text.split() if "=" in part)


class RunLock:
    """``CHECKPOINT.DIR/aasae_run.lock``, held (``flock``) for as long as this launcher runs; it holds
    ``pid=... host=... started=...``.  The OS drops the lock when its holder dies, however it died,
    so a lock file left by a dead process is taken over (and said so)."""

    def __init__(self, folder: str):
        self.folder = folder
        self.path = os.path.join(folder, LOCK_FILE)
        self.fd: Optional[int] = None
        self.stale: Optional[str] = None

    def _refuse(self, text: str):
        holder = _holder(text)
        raise RunLocked(
            f"CHECKPOINT.DIR={self.folder!r} is in use by another run: PID {holder.get('pid', '?')} on host "
            f"{holder.get('host', '?')} (since {holder.get('started', '?')}; lock file {self.path}). Wait for it "
            "to finish or use another CHECKPOINT.DIR"
        )

    def acquire(self) -> "RunLock":
        import fcntl

        os.makedirs(self.folder, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.pread(fd, 4096, 0).decode(errors="replace")
                os.close(fd)
                self._refuse(text)
            except OSError as err:  # a file system without flock: judge by the PID on this host
                if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    os.close(fd)
                    raise
                holder = _holder(os.pread(fd, 4096, 0).decode(errors="replace"))
                same_host = holder.get("host") == socket.gethostname()
                if holder.get("pid") and (not same_host or _process_alive(int(holder["pid"]))):
                    os.close(fd)
                    self._refuse(" ".join(f"{k}={v}" for k, v in holder.items()))
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the file was removed or replaced while we locked it: lock the current one
        previous = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        if previous:
            holder = _holder(previous)
            self.stale = f"PID {holder.get('pid', '?')} on host {holder.get('host', '?')}"
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid={os.getpid()} host={socket.gethostname()} started={started}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                os.remove(self.path)
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None


def _local(path: str) -> bool:
    return "://" not in str(path) or str(path).startswith("file://")


# --------------------------------------------------------------------------- failures -> exit codes
def divergence_message(err: BaseException, checkpoint_dir: str):
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


def _named_error_line(err: BaseException, name: str) -> Optional[str]:
    """The message of an exception of class ``name``: ``err`` itself, or the last ``name: ...`` line of
    a spawned rank's traceback (torch's ProcessRaisedException carries it as text)."""
    if type(err).__name__ == name:
        return str(err)
    lines = [line.split(f"{name}:", 1)[1].strip() for line in str(err).splitlines() if f"{name}:" in line]
    return lines[-1] if lines else None


def failure(err: BaseException, checkpoint_dir: str, signum: int = signal.SIGINT) -> Optional[Tuple[int, str]]:
    """(exit code, one line) for the failures the launcher explains; None for the others.  An
    interruption exits 128 + the signal's number: 130 for Ctrl-C (SIGINT), 143 for SIGTERM."""
    if isinstance(err, KeyboardInterrupt) or _named_error_line(err, "TrainingInterrupted") is not None:
        return 128 + int(signum), (
            f"interrupted ({signal.Signals(signum).name}): nothing was saved on the way out; the same command "
            "resumes from the last complete checkpoint"
        )
    message = divergence_message(err, checkpoint_dir)
    if message is not None:
        return EXIT_DIVERGED, message
    message = _named_error_line(err, "UnreadableDataError")
    if message is not None:
        return EXIT_BAD_INPUT, message
    return None


class _Interrupts:
    """SIGINT (Ctrl-C) or SIGTERM (what schedulers and ``kill`` send) while the run is launched: the
    same clean stop for both.  Remembered (``signum``), and raised as TrainingInterrupted where VISSL
    would swallow a KeyboardInterrupt (the parent of spawned ranks only waits for them)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, spawned: bool):
        self.spawned, self.signum, self.previous = spawned, None, {}

    @property
    def seen(self) -> bool:
        return self.signum is not None

    def __enter__(self):
        self.previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum, frame):
        from vissl_aasae.compat import TrainingInterrupted

        first = self.signum is None
        self.signum = self.signum or signum
        if not first:  # a second signal while the first unwinds: let that finish
            return
        if self.spawned:
            raise TrainingInterrupted(f"interrupted ({signal.Signals(signum).name})")
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        return False


def _stop_spawned_ranks() -> None:
    import multiprocessing

    for child in multiprocessing.active_children():
        child.terminate()
    for child in multiprocessing.active_children():
        child.join(10)


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

    from vissl_aasae.hooks import aasae_hook_generator
    from vissl_aasae.trainer.cpu import rank_threads

    if config.MACHINE.DEVICE == "cpu":
        # the threads each spawned rank starts with; the hook generator sets torch's count again
        os.environ.setdefault("OMP_NUM_THREADS", str(rank_threads(config)))
    folder = config.CHECKPOINT.DIR
    training = args.engine_name == "train"
    first_node = int(args.node_id or 0) == 0
    # the lock is held by the process that runs the job: not by a launcher that only submits it to SLURM
    lock = RunLock(folder) if first_node and _local(folder) and not config.SLURM.USE_SLURM else None
    try:
        if lock is not None:
            lock.acquire()
            if lock.stale:
                print(
                    f"note: {lock.path} was left by {lock.stale}, which is no longer running; taken over",
                    file=sys.stderr,
                    flush=True,
                )
        if training and first_node:
            write = check_recorded_config(config, folder) if _local(folder) else True
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
        with _Interrupts(spawned) as interrupts:
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
                    _stop_spawned_ranks()
                return _fail(message, code)
        if interrupts.seen:  # swallowed on the way (VISSL catches KeyboardInterrupt)
            _stop_spawned_ranks()
            return _fail(*reversed(failure(KeyboardInterrupt(), folder, interrupts.signum)))
    finally:
        if lock is not None:
            lock.release()
        logging.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
