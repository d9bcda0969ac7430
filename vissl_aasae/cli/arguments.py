"""What the commands share and check before any work, without loading torch or VISSL: the flags (the
same names everywhere), ``--data`` values, and the outputs a command may write (:func:`check_output`)."""

import argparse
import os
import tempfile
from typing import Optional

DATA_FORMATS = ("cifar10", "stl10", "stl10_unlabeled", "fashion_mnist", "npz")
DATA_HELP = (
    "embedded (the Fashion-MNIST subset shipped with the plugin) | <format>:<path> with format one of "
    f"{', '.join(DATA_FORMATS)} | an image folder in ImageFolder layout (<root>/<class>/<image>, as training reads it)"
)


def parser_for(prog: str, description: str, epilog: str = None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )


def add_checkpoint(parser, required=True, help="a VISSL checkpoint of this plugin (file, or its run folder)"):
    parser.add_argument("--checkpoint", "--input", dest="checkpoint", required=required, help=help)


def add_output(parser, required=False, help="what to write"):
    parser.add_argument("--output", "--output-dir", dest="output", required=required, help=help)


def add_workers(parser, default=0):
    parser.add_argument(
        "--workers",
        "--num-workers",
        dest="workers",
        type=int,
        default=default,
        help="DataLoader worker processes (0: load in this process)",
    )


def add_device(parser):
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where the model runs")


def add_data(parser, default="embedded"):
    parser.add_argument("--data", default=default, help=DATA_HELP)
    parser.add_argument("--data-format", default=None, help=argparse.SUPPRESS)  # older: --data PATH --data-format F


def add_overrides(parser, nargs="*"):
    parser.add_argument("overrides", nargs=nargs, help="Hydra overrides: config=NAME, config.KEY=VALUE")


def split_data(spec: str, data_format: Optional[str] = None):
    """(format or None, path) of a --data value: ``embedded``, ``<format>:<path>`` or a folder."""
    if data_format:
        return data_format, spec
    if spec == "embedded":
        return "npz", "embedded"
    fmt, sep, path = spec.partition(":")
    if sep and fmt in DATA_FORMATS:
        if not path:
            raise ValueError(f"--data {spec!r}: no path after '{fmt}:'")
        return fmt, path
    return None, spec


# the files a training run keeps in its folder: no tool overwrites them
RUN_RECORD = (
    "train_config.yaml",
    "checkpoint.torch",
    "aasae_run.lock",
    "log.txt",
    "metrics.json",
    "aasae_metrics.json",
)


def _run_folder(folder: str) -> bool:
    """Whether ``folder`` holds a training run: its config record, its lock or its checkpoints."""
    try:
        names = os.listdir(folder)
    except OSError:
        return False
    return any(n in RUN_RECORD[:3] or (n.startswith("model_") and n.endswith(".torch")) for n in names)


def parent_of(path: str) -> str:
    return os.path.dirname(os.path.abspath(path))


def _writable(folder: str) -> bool:
    """Whether a file can be created in ``folder`` (tried: permission bits say nothing to root or on a
    read-only file system); the probe file is removed at once."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        fd, probe = tempfile.mkstemp(prefix=".aasae_write_check", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.remove(probe)
    return True


def check_output(
    path: str, what: str = "--output", folder: bool = False, reads=(), create_parents: bool = False
) -> str:
    """The absolute path of an output, checked before any work, or ValueError naming ``what`` and the path.

    A file output must not be an existing folder, an input of the command (``reads``) or a file of a
    training run's record (its config, checkpoints, lock or logs in a folder that holds a run); its
    folder must exist (unless ``create_parents``: a default path, created later) and be writable.  A
    folder output (``folder``) must not be a file; it is created later, inside a folder that exists
    (every missing level for ``create_parents``) and is writable.  Every tool checks its outputs
    with this, so that a wrong path is one line before the work, not a traceback after it."""
    given = str(path)
    path = os.path.abspath(os.path.expanduser(given))
    label = f"{what} {given!r}"
    if folder:
        if os.path.exists(path) and not os.path.isdir(path):
            raise ValueError(f"{label} is a file; give a folder (it is created if missing)")
        if os.path.isdir(path):
            if not _writable(path):
                raise ValueError(f"{label}: folder {path!r} is not writable")
            return path
    else:
        if os.path.isdir(path):
            raise ValueError(f"{label} is a folder; give a file name (in it or elsewhere)")
        for item in reads:
            if item and os.path.exists(path) and os.path.exists(str(item)) and os.path.samefile(str(item), path):
                raise ValueError(f"{label} is the file this command reads; give another file name")
        name = os.path.basename(path)
        if os.path.exists(path) and (name in RUN_RECORD or name.endswith(".torch")) and _run_folder(parent_of(path)):
            raise ValueError(f"{label} is part of the training run in {parent_of(path)!r}; it is never overwritten")
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        if not create_parents:
            if os.path.exists(parent):
                raise ValueError(f"{label}: {parent!r} is a file, not a folder")
            raise ValueError(f"{label}: folder {parent!r} does not exist (create it first)")
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise ValueError(f"{label}: {parent!r} is a file, not a folder")
    if not _writable(parent):
        raise ValueError(f"{label}: folder {parent!r} is not writable")
    return path
