"""A training run's lifecycle in its folder (``CHECKPOINT.DIR``), from the launch to its last line.

- the lock: :class:`RunLock` (``aasae_run.lock``: PID and host of the holder), held for as long as
  the run trains; a second launch into the folder refuses, naming them; the lock of a process that
  died is taken over (and said so: :meth:`RunLock.stale_note`);
- the recorded config (``train_config.yaml``): :func:`write_config` writes it (renamed into place),
  :func:`check_recorded_config` compares a launch's config with it (a differing config refuses,
  naming the keys, unless ``config.AASAE.OVERWRITE_CONFIG=True``);
- the checkpoints to resume from: :func:`incomplete_reason` (verified, cached per file version),
  :func:`resume_candidates` (a final one, ``checkpoint.torch``'s target, then newest first),
  :func:`newest_complete_checkpoint` (a truncated one is passed over, with a warning naming it),
  :func:`check_resume` (a folder whose checkpoints are all incomplete refuses);
- the finished check: :func:`final_checkpoint_complete` (a truncated final checkpoint does not finish
  the run);
- weights that are never written: :func:`refuse_non_finite`;
- interruptions: :class:`Interrupts` (SIGINT and SIGTERM, the same clean stop),
  :func:`stop_child_processes`;
- how it ended: :func:`failure`, the exit code and the one line the launcher prints.

The launcher, the config checks and the compat patches (VISSL's checkpoint writer, resume choice,
finished check and SLURM job) call into this module; it imports nothing above the checkpoints.
"""

import datetime
import errno
import fcntl
import logging
import multiprocessing
import os
import signal
import socket
import sys
from typing import Dict, List, Optional, Tuple

import torch
import yaml
from iopath.common.file_io import g_pathmgr

from vissl_aasae.checkpoints import CONFIG_FILE, LINK_NAME, atomic_write, non_finite_tensors, read_run_config, verify
from vissl_aasae.errors import (
    EXIT_BAD_INPUT,
    EXIT_DIVERGED,
    ConfigError,
    RunLocked,
    TrainingInterrupted,
    UnreadableDataError,
)
from vissl_aasae.settings import RunSettings

LOCK_FILE = "aasae_run.lock"
# keys whose value may change between launches of one run: where the run is (the folder is the run,
# however it is spelled) and the switches of the launch itself
NOT_COMPARED = ("CHECKPOINT.DIR", "AASAE.OVERWRITE_CONFIG", "AASAE.LOG_ENVIRONMENT")


def is_local(path) -> bool:
    """Whether ``path`` is on this machine's file system (not an iopath URL such as ``manifold://``)."""
    return "://" not in str(path) or str(path).startswith("file://")


_WARNED = set()


def warn_once(message: str) -> None:
    """A warning on the console and in the log, once per process."""
    if message not in _WARNED:
        _WARNED.add(message)
        logging.warning(message)
        print(f"warning: {message}", file=sys.stderr, flush=True)


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
    """``CHECKPOINT.DIR/aasae_run.lock``, held (``flock``) for as long as the run trains; it holds
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

    def stale_note(self) -> Optional[str]:
        """The line that says a dead holder's lock was taken over; None when there was none."""
        if not self.stale:
            return None
        return f"note: {self.path} was left by {self.stale}, which is no longer running; taken over"

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


# --------------------------------------------------------------------------- the recorded config
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
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.dtype):
        return str(value).replace("torch.", "")
    return value


def config_record(config) -> dict:
    """The config as ``train_config.yaml`` holds it (VISSL's dump, read back)."""
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
    return RunSettings.from_config(config).overwrite_config


def _final_checkpoints(folder: str) -> List[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith("model_final") and n.endswith(".torch"))


def check_recorded_config(config, folder: str) -> bool:
    """Raise ConfigError when ``folder`` holds a run recorded with another config (and no overwrite was
    asked for); True when the record must be (re)written."""
    path = os.path.join(folder, CONFIG_FILE)
    if not os.path.isfile(path):
        return True
    try:
        recorded = read_run_config(folder)
    except ValueError:  # not YAML, or not a mapping
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
    if not resume_candidates(folder, skip_final=False):
        # a launch refused (or stopped) before its first checkpoint: its record describes nothing
        logging.info(f"{path} has no checkpoint beside it: replaced by this launch's config")
        return True
    finals = _final_checkpoints(folder)
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
    folder = str(config.CHECKPOINT.DIR)
    g_pathmgr.mkdirs(folder)
    path = os.path.join(folder, CONFIG_FILE)
    text = yaml.dump(_plain(config.to_dict()))
    if not is_local(folder):
        with g_pathmgr.open(path, "w") as f:
            f.write(text)
        return path
    return atomic_write(path, lambda f: f.write(text), mode="w")


# --------------------------------------------------------------------------- checkpoints to resume from
_VERIFIED = {}  # (path, size, mtime) -> None or why the file is not a complete checkpoint


def incomplete_reason(path: str):
    """None when ``path`` is a complete checkpoint, else why not (cached per file version)."""
    try:
        stat = os.stat(path)
    except OSError as err:
        return str(err)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = verify(path)
    return _VERIFIED[key]


def resume_candidates(checkpoint_folder: str, skip_final: bool):
    """Checkpoint names to resume from, best first: a final one, checkpoint.torch's target (the last
    complete save), then the others newest first."""
    names = [n for n in os.listdir(checkpoint_folder) if n.startswith("model_") and n.endswith(".torch")]
    names = [n for n in names if "_shard" not in n]
    order = []
    if not skip_final:
        order += sorted((n for n in names if n.startswith("model_final")), reverse=True)
    link = os.path.join(checkpoint_folder, LINK_NAME)
    if os.path.islink(link):
        target = os.path.basename(os.readlink(link))  # older runs hold a target relative to the launch folder
        if target in names and not (skip_final and target.startswith("model_final")):
            order.append(target)
    others = [n for n in names if not n.startswith("model_final")]
    order += sorted(others, key=lambda n: os.path.getmtime(os.path.join(checkpoint_folder, n)), reverse=True)
    return list(dict.fromkeys(order))


def newest_complete_checkpoint(checkpoint_folder: str, skip_final: bool = False) -> Optional[str]:
    """The name of the checkpoint to resume from: the first of :func:`resume_candidates` that is complete;
    a file that is not (truncated, corrupt) is passed over, with a warning naming it.  None when none is."""
    skipped = []
    for name in resume_candidates(checkpoint_folder, skip_final):
        why = incomplete_reason(os.path.join(checkpoint_folder, name))
        if why is None:
            if skipped:
                warn_once(
                    f"resuming from {os.path.join(checkpoint_folder, name)}, the newest complete checkpoint; "
                    f"passed over: {'; '.join(skipped)}"
                )
            return name
        skipped.append(why)
    return None


def check_resume(config) -> None:
    """Before a training launch that resumes (AUTO_RESUME): refuse a folder whose checkpoints are all
    incomplete (truncated, corrupt) instead of crashing on one or silently starting afresh over them."""
    folder = str(config.CHECKPOINT.DIR)
    if not config.CHECKPOINT.AUTO_RESUME or not is_local(folder) or not os.path.isdir(folder):
        return
    skip_final = bool(config.CHECKPOINT.OVERWRITE_EXISTING)
    names = resume_candidates(folder, skip_final)
    if names and newest_complete_checkpoint(folder, skip_final) is None:
        reasons = [incomplete_reason(os.path.join(folder, n)) for n in names]
        raise ConfigError(
            f"CHECKPOINT.DIR={folder!r} holds no complete checkpoint to resume from ({'; '.join(reasons[:3])}); "
            "move the broken files away, or set config.CHECKPOINT.AUTO_RESUME=False to start afresh"
        )


def last_good_checkpoint(checkpoint_folder: str) -> str:
    """The path of the newest complete checkpoint of a run folder, or ``none``."""
    last = newest_complete_checkpoint(checkpoint_folder) if os.path.isdir(checkpoint_folder) else None
    return os.path.join(checkpoint_folder, last) if last else "none"


# --------------------------------------------------------------------------- finished, and what is written
def final_checkpoint_complete(checkpoint_folder: str) -> bool:
    """Whether every final checkpoint of the folder is complete (a truncated or corrupt one does not
    finish the run: it resumes from the newest complete checkpoint and writes the final one again)."""
    finals = _final_checkpoints(checkpoint_folder)
    broken = [why for why in (incomplete_reason(os.path.join(checkpoint_folder, n)) for n in finals) if why]
    if broken:
        warn_once(f"the final checkpoint is not complete, so training is not finished: {'; '.join(broken)}")
    return not broken


def refuse_non_finite(state, checkpoint_folder) -> None:
    """Raise FloatingPointError instead of writing a checkpoint whose weights hold NaN/inf."""
    bad = non_finite_tensors(state)
    if bad:
        raise FloatingPointError(
            f"training diverged: non-finite weights at iteration {state.get('iteration')} ({bad[:3]}...); "
            f"checkpoint not written; last good checkpoint: {last_good_checkpoint(checkpoint_folder)}"
        )


# --------------------------------------------------------------------------- interruptions
class Interrupts:
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


def stop_child_processes() -> None:
    """Stops this process's children (spawned ranks, the in-process rank's DataLoader workers) and waits
    for them: nothing they print may follow the run's error line."""
    for child in multiprocessing.active_children():
        child.terminate()
    for child in multiprocessing.active_children():
        child.join(10)


# --------------------------------------------------------------------------- how it ended
def divergence_message(err: BaseException, checkpoint_dir: str):
    """One line for a run stopped by a NaN/inf loss or weights (VISSL's check or ours), else None."""
    text = str(err)
    if not isinstance(err, FloatingPointError) and "FloatingPointError" not in text:
        return None
    lines = [line.split("FloatingPointError:", 1)[-1].strip() for line in text.splitlines() if line.strip()]
    found = [line for line in lines if "FloatingPointError" in text and ("NaN" in line or "diverged" in line)]
    message = found[-1] if found else lines[-1]
    if "last good checkpoint" not in message:
        message = f"training diverged: {message}; last good checkpoint: {last_good_checkpoint(checkpoint_dir)}"
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
    if isinstance(err, KeyboardInterrupt) or _named_error_line(err, TrainingInterrupted.__name__) is not None:
        return 128 + int(signum), (
            f"interrupted ({signal.Signals(signum).name}): nothing was saved on the way out; the same command "
            "resumes from the last complete checkpoint"
        )
    message = divergence_message(err, checkpoint_dir)
    if message is not None:
        return EXIT_DIVERGED, message
    message = _named_error_line(err, UnreadableDataError.__name__)
    if message is not None:
        return EXIT_BAD_INPUT, message
    return None
