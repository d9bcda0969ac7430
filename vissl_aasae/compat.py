"""Everything that makes VISSL 0.1.6 and classy_vision 0.7.0 behave on today's stack.

This is the only place where the plugin patches third-party code.  Each patch is a small
function with a one-line reason and a test in ``tests/test_compat.py`` that fails without it.
``apply()`` is idempotent; importing :mod:`vissl_aasae` calls it, so every process that loads
the plugin (launcher, spawned ranks, DataLoader workers) is patched.  The detectron2 patches
are applied separately, by :func:`apply_detectron2_patches`, before detectron2 is imported
(only the detection benchmark needs them).
"""
import importlib.machinery
import importlib.util
import io
import logging
import os
import sys
import types
from typing import Any

import torch

_APPLIED = set()


def _once(fn):
    def wrapper():
        if fn.__name__ not in _APPLIED:
            fn()
            _APPLIED.add(fn.__name__)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def fast_broadcast_object(obj: Any, src: int = 0, use_disk: bool = True) -> Any:
    """classy's broadcast_object, without the element-by-element ByteTensor copy.

    Returns ``obj`` at once when there is a single process; otherwise serialises it once
    and broadcasts the bytes through ``torch.frombuffer`` (zero-copy).
    """
    import torch.distributed as dist
    from classy_vision.generic import distributed_util as du

    if not (dist.is_available() and dist.is_initialized()) or du.get_world_size() == 1:
        return obj
    if du.get_rank() == src:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        payload = bytearray(buffer.getbuffer())
        length = du.broadcast(torch.tensor([len(payload)], dtype=torch.long), src=src)
        data = torch.frombuffer(payload, dtype=torch.uint8)
        du.broadcast(data, src=src)
        return obj
    length = du.broadcast(torch.tensor([0], dtype=torch.long), src=src)
    data = du.broadcast(torch.empty(int(length.item()), dtype=torch.uint8), src=src)
    return torch.load(io.BytesIO(data.numpy().tobytes()), weights_only=False)


@_once
def patch_broadcast_object():
    """classy's broadcast_object builds torch.ByteTensor(memoryview) byte by byte on torch 2.x: ~80 s for 200 MB."""
    from classy_vision.generic import distributed_util, util

    distributed_util.broadcast_object = fast_broadcast_object
    util.broadcast_object = fast_broadcast_object


def _apex_available() -> bool:
    from vissl.utils.misc import is_apex_available

    return is_apex_available()


def apex_free_config(config) -> None:
    """Rewrite apex-only defaults of a VISSL config to their PyTorch equivalents (in place)."""
    if _apex_available():
        return
    amp = config["MODEL"]["AMP_PARAMS"]
    if amp.get("AMP_TYPE") == "apex":
        amp["AMP_TYPE"] = "pytorch"
        if amp.get("USE_AMP"):
            logging.info("apex is not installed: MODEL.AMP_PARAMS.AMP_TYPE set to 'pytorch'")
    sync_bn = config["MODEL"]["SYNC_BN_CONFIG"]
    if sync_bn.get("SYNC_BN_TYPE") == "apex":
        sync_bn["SYNC_BN_TYPE"] = "pytorch"
        if sync_bn.get("CONVERT_BN_TO_SYNC_BN"):
            logging.info("apex is not installed: MODEL.SYNC_BN_CONFIG.SYNC_BN_TYPE set to 'pytorch'")
    if config["OPTIMIZER"].get("use_larc"):
        raise ValueError(
            "OPTIMIZER.use_larc=True needs NVIDIA apex, which is not installed; "
            "set OPTIMIZER.use_larc=False"
        )


@_once
def patch_apex_defaults():
    """VISSL defaults to apex AMP (AMP_TYPE: apex) and fails deep in training when apex is missing, as it always is on torch 2.x."""
    from vissl.utils import hydra_config

    original = hydra_config.infer_and_assert_hydra_config

    def infer_and_assert_hydra_config(cfg):
        apex_free_config(cfg)
        return original(cfg)

    infer_and_assert_hydra_config.__wrapped__ = original
    hydra_config.infer_and_assert_hydra_config = infer_and_assert_hydra_config


@_once
def quiet_legacy_warnings():
    """VISSL imports pkg_resources and torchvision's deprecated video transforms, uses torch.jit.script (VISSL's losses), and composes without Hydra's version_base: warnings on every start."""
    import warnings

    warnings.filterwarnings("ignore", message="\nThe version_base parameter is not specified")
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"The 'torchvision\.transforms\._(functional|transforms)_video'")


def _is_local(path: str) -> bool:
    return "://" not in str(path) or str(path).startswith("file://")


def check_finite_model(state, checkpoint_folder) -> None:
    """Raise FloatingPointError instead of writing a checkpoint whose weights hold NaN/inf."""
    from vissl_aasae.checkpoints import non_finite_tensors

    bad = non_finite_tensors(state)
    if bad:
        last = latest_checkpoint_file(checkpoint_folder, None) if os.path.isdir(checkpoint_folder) else None
        raise FloatingPointError(
            f"training diverged: non-finite weights at iteration {state.get('iteration')} ({bad[:3]}...); "
            f"checkpoint not written; last good checkpoint: "
            f"{os.path.join(checkpoint_folder, last) if last else 'none'}"
        )


def atomic_save_checkpoint(checkpoint_folder, state, checkpoint_file="checkpoint.torch"):
    """Write to a temporary file beside the target, flush it to disk, then rename it into place."""
    check_finite_model(state, checkpoint_folder)
    if not _is_local(checkpoint_folder):
        return atomic_save_checkpoint.__wrapped__(checkpoint_folder, state, checkpoint_file)
    os.makedirs(checkpoint_folder, exist_ok=True)
    full_filename = os.path.join(checkpoint_folder, checkpoint_file)
    tmp = f"{full_filename}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, full_filename)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return full_filename


def link_target(source, link) -> str:
    """What ``link`` should hold to reach ``source`` from anywhere: the bare file name when both are in
    one folder (VISSL's case), else the path relative to the link's folder."""
    source_dir = os.path.dirname(os.path.abspath(source))
    link_dir = os.path.dirname(os.path.abspath(link))
    if source_dir == link_dir:
        return os.path.basename(source)
    return os.path.relpath(os.path.abspath(source), link_dir)


def atomic_file_symlink(source, link):
    """Point ``link`` at ``source`` by renaming a fresh link over it: never a moment without one.
    The link holds a target relative to its own folder (:func:`link_target`)."""
    if not (_is_local(source) and _is_local(link)):
        return atomic_file_symlink.__wrapped__(source, link)
    tmp = f"{link}.tmp{os.getpid()}"
    if os.path.lexists(tmp):
        os.remove(tmp)
    os.symlink(link_target(source, link), tmp)
    os.replace(tmp, link)


@_once
def patch_atomic_checkpoints():
    """VISSL writes checkpoints in place and replaces checkpoint.torch by rm + symlink: a kill mid-write leaves a truncated file or no link."""
    from vissl.utils import checkpoint, io as vissl_io

    atomic_save_checkpoint.__wrapped__ = checkpoint.save_checkpoint
    atomic_file_symlink.__wrapped__ = vissl_io.create_file_symlink
    checkpoint.save_checkpoint = atomic_save_checkpoint
    checkpoint.create_file_symlink = atomic_file_symlink
    vissl_io.create_file_symlink = atomic_file_symlink


_VERIFIED = {}  # (path, size, mtime) -> None or why the file is not a complete checkpoint
_WARNED = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        logging.warning(message)
        print(f"warning: {message}", file=sys.stderr, flush=True)


def incomplete_reason(path: str):
    """None when ``path`` is a complete checkpoint, else why not (cached per file version)."""
    from vissl_aasae.checkpoints import verify

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
    link = os.path.join(checkpoint_folder, "checkpoint.torch")
    if os.path.islink(link):
        target = os.path.basename(os.readlink(link))  # older runs hold a target relative to the launch folder
        if target in names and not (skip_final and target.startswith("model_final")):
            order.append(target)
    others = [n for n in names if not n.startswith("model_final")]
    order += sorted(others, key=lambda n: os.path.getmtime(os.path.join(checkpoint_folder, n)), reverse=True)
    return list(dict.fromkeys(order))


def latest_checkpoint_file(checkpoint_folder: str, config, skip_final: bool = False, latest_checkpoint_resume_num: int = 1):
    """The checkpoint to resume from: checkpoint.torch's target (the last complete save), else the newest file;
    a file that is not a complete checkpoint (truncated, corrupt) is passed over, with a warning naming it.

    VISSL's own choice looks only at ``model_iteration*`` files when CHECKPOINT_ITER_FREQUENCY > 0
    (so an end-of-epoch ``model_phase*`` checkpoint written later is ignored) and ignores the link.
    """
    if not _is_local(checkpoint_folder) or latest_checkpoint_resume_num != 1:
        return latest_checkpoint_file.__wrapped__(checkpoint_folder, config, skip_final, latest_checkpoint_resume_num)
    skipped = []
    for name in resume_candidates(checkpoint_folder, skip_final):
        why = incomplete_reason(os.path.join(checkpoint_folder, name))
        if why is None:
            if skipped:
                _warn_once(f"resuming from {os.path.join(checkpoint_folder, name)}, the newest complete checkpoint; "
                           f"passed over: {'; '.join(skipped)}")
            return name
        skipped.append(why)
    return None


@_once
def patch_resume_choice():
    """With CHECKPOINT_ITER_FREQUENCY > 0 VISSL resumes from the newest model_iteration file even when a later model_phase checkpoint exists."""
    from vissl.utils import checkpoint

    latest_checkpoint_file.__wrapped__ = checkpoint.get_checkpoint_resume_files
    checkpoint.get_checkpoint_resume_files = latest_checkpoint_file


class _LazySample:
    """(image, target) of an ImageFolder whose image is decoded only when item 0 is read."""

    def __init__(self, folder, index):
        self.folder, self.index = folder, index

    def __getitem__(self, i):
        path, target = self.folder.samples[self.index]
        if i in (1, -1):
            return target
        if i in (0, -2):
            return self.folder.decode(path)
        raise IndexError(i)

    def __len__(self):
        return 2


def _image_folder_allowing_empty_classes():
    from torchvision.datasets import ImageFolder

    class ImageFolderAllowingEmptyClasses(ImageFolder):
        """Also: items decode lazily, because VISSL's disk_folder reads ``dataset[idx]`` once outside its
        try/except (an unreadable file then kills the run instead of being skipped) and once inside
        (every image decoded twice)."""

        def decode(self, path):
            image = self.loader(path)
            return self.transform(image) if self.transform is not None else image

        def __getitem__(self, index):
            return _LazySample(self, index)

        def __init__(self, root, *args, **kwargs):
            kwargs.setdefault("allow_empty", True)
            super().__init__(root, *args, **kwargs)
            empty = sorted(set(self.classes) - {self.classes[t] for t in self.targets})
            if empty:
                logging.warning(f"{root}: {len(empty)} empty class folder(s) skipped: {empty[:10]}")
            if not self.samples:
                raise FileNotFoundError(f"{root} holds no image files")

    return ImageFolderAllowingEmptyClasses


@_once
def patch_empty_class_folders():
    """VISSL's disk_folder: torchvision's ImageFolder refuses one empty class folder, and a corrupt image is read outside VISSL's try/except."""
    from vissl.data import disk_dataset

    disk_dataset.ImageFolder = _image_folder_allowing_empty_classes()


def watch_main_process(_worker_id: int = 0) -> None:
    """DataLoader ``worker_init_fn``: exit this worker as soon as the process that started it
    dies.  Under forkserver, torch's own watchdog watches the worker's OS parent, the forkserver,
    which outlives a killed trainer (every worker holds the forkserver's "alive" pipe open), so the
    workers would run on as orphans.  The multiprocessing parent's sentinel is a pipe the trainer
    holds: it reads EOF when the trainer dies, however it died."""
    import multiprocessing
    import multiprocessing.connection
    import threading

    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return

    def exit_when_parent_dies():
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=exit_when_parent_dies, name="aasae-exit-with-trainer", daemon=True).start()


def vissl_worker_init(worker_id: int) -> None:
    """VISSL's own worker seeding, plus :func:`watch_main_process`."""
    from vissl.utils.misc import set_dataloader_seeds

    watch_main_process(worker_id)
    set_dataloader_seeds(worker_id)


@_once
def patch_orphaned_workers():
    """A trainer killed under forkserver (VISSL's default method) leaves its DataLoader workers running as orphans."""
    import vissl.data
    from vissl.trainer import train_task

    build_dataloader = vissl.data.build_dataloader

    def build_dataloader_with_watched_workers(*args, **kwargs):
        kwargs.setdefault("worker_init_fn", vissl_worker_init)
        return build_dataloader(*args, **kwargs)

    # the trainer imported the function by name; benchmarks/throughput.py calls vissl.data's
    vissl.data.build_dataloader = train_task.build_dataloader = build_dataloader_with_watched_workers


# environment variables that carry no secrets: logged at start-up (all others only on request)
HARMLESS_ENVIRONMENT = (
    "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "WORLD_SIZE", "RANK", "LOCAL_RANK",
    "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "NCCL_DEBUG", "NCCL_SOCKET_NTHREADS",
    "NCCL_NSOCKS_PERTHREAD", "PYTHONHASHSEED", "SLURM_JOB_ID", "SLURM_PROCID", "SLURM_NODEID",
    "SLURM_NTASKS", "HOSTNAME", "VIRTUAL_ENV", "CONDA_DEFAULT_ENV",
)
_ENVIRONMENT_LOGGING = {"all": False}


def log_environment_setting(cfg) -> bool:
    """``config.AASAE.LOG_ENVIRONMENT`` (default False)."""
    from vissl_aasae.settings import RunSettings

    return RunSettings.from_config(cfg).log_environment


def print_environment(current_env) -> None:
    """VISSL's start-up dump of the environment, limited to :data:`HARMLESS_ENVIRONMENT` unless
    ``config.AASAE.LOG_ENVIRONMENT`` is on."""
    if _ENVIRONMENT_LOGGING["all"]:
        return print_environment.__wrapped__(current_env)
    shown = sorted(k for k in current_env if k in HARMLESS_ENVIRONMENT)
    for key in shown:
        logging.info(f"{key}:\t{current_env[key]}")
    logging.info(
        f"{len(current_env) - len(shown)} other environment variables not logged (they may hold secrets); "
        "config.AASAE.LOG_ENVIRONMENT=True logs them all"
    )


class TrainingInterrupted(Exception):
    """Ctrl-C (SIGINT) during a run; an Exception, not a KeyboardInterrupt, because VISSL's launcher
    swallows KeyboardInterrupt and reports success."""


def distributed_worker(*args, **kwargs):
    """VISSL's per-rank entry point with the plugin's run settings applied, and Ctrl-C turned into
    :class:`TrainingInterrupted` (VISSL's launch_distributed would swallow the KeyboardInterrupt)."""
    cfg = kwargs.get("cfg", args[1] if len(args) > 1 else None)
    _ENVIRONMENT_LOGGING["all"] = log_environment_setting(cfg) if cfg is not None else False
    try:
        return distributed_worker.__wrapped__(*args, **kwargs)
    except KeyboardInterrupt:
        raise TrainingInterrupted("interrupted (SIGINT)") from None


@_once
def patch_environment_dump():
    """VISSL logs every environment variable (tokens, keys, passwords) to the console and log.txt at start-up."""
    import vissl.engines.extract_cluster
    import vissl.engines.extract_features
    import vissl.engines.train
    from vissl.utils import env

    print_environment.__wrapped__ = env.print_system_env_info
    for module in (env, vissl.engines.train, vissl.engines.extract_features, vissl.engines.extract_cluster):
        module.print_system_env_info = print_environment


@_once
def patch_interrupts():
    """VISSL's launch_distributed catches KeyboardInterrupt, logs "All Done!" and returns: an interrupted run exits 0."""
    from vissl.utils import distributed_launcher

    distributed_worker.__wrapped__ = distributed_launcher._distributed_worker
    distributed_launcher._distributed_worker = distributed_worker


def apply() -> None:
    """Apply every patch (idempotent)."""
    quiet_legacy_warnings()
    patch_broadcast_object()
    patch_apex_defaults()
    patch_atomic_checkpoints()
    patch_resume_choice()
    patch_empty_class_folders()
    patch_orphaned_workers()
    patch_environment_dump()
    patch_interrupts()


# --------------------------------------------------------------------------- detectron2 v0.5
# installed by scripts/install_detectron2.sh without its compiled extension

_EXTENSION = "detectron2._C"
_MISSING_EXTENSION_HELP = (
    "detectron2 was installed without its compiled extension (scripts/install_detectron2.sh), "
    "so {name} is not available. Rotated boxes, deformable convolution and the fast COCO "
    "evaluator need a source build of detectron2; Faster R-CNN C4/FPN with PascalVOC "
    "evaluation does not."
)


class MissingExtensionModule(types.ModuleType):
    """Stands in for ``detectron2._C``: any function taken from it raises a clear error when called."""

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _unavailable(f"{self.__name__}.{name}")

    # collect_env (called by detectron2's default_setup) asks the extension how it was built.
    @staticmethod
    def get_compiler_version() -> str:
        return "none: detectron2._C not built"

    @staticmethod
    def get_cuda_version() -> str:
        return "none: detectron2._C not built"

    @staticmethod
    def has_cuda() -> bool:
        return False


def _unavailable(qualified_name: str):
    def unavailable(*args, **kwargs):
        raise RuntimeError(_MISSING_EXTENSION_HELP.format(name=qualified_name))

    unavailable.__name__ = unavailable.__qualname__ = qualified_name.rsplit(".", 1)[-1]
    return unavailable


def _has_compiled_extension() -> bool:
    """Whether the installed detectron2 ships ``_C`` (looked up on disk, without importing detectron2)."""
    spec = importlib.util.find_spec("detectron2")
    if spec is None or not spec.submodule_search_locations:
        return False
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for folder in spec.submodule_search_locations:
        if any(f.startswith("_C.") and f.endswith(suffixes) for f in os.listdir(folder)):
            return True
    return False


def install_missing_extension_placeholder() -> None:
    """detectron2.layers imports the compiled detectron2._C at import time, and our install has none."""
    if _EXTENSION in sys.modules or _has_compiled_extension():
        return
    if "detectron2.layers" in sys.modules:
        raise RuntimeError(
            "apply_detectron2_patches() must run before detectron2.layers is imported"
        )
    module = MissingExtensionModule(_EXTENSION, "placeholder for detectron2's compiled extension")
    module.__spec__ = importlib.machinery.ModuleSpec(_EXTENSION, loader=None)
    sys.modules[_EXTENSION] = module


def patch_pillow_linear() -> None:
    """detectron2's ExtentTransform uses PIL.Image.LINEAR as a default argument; Pillow 10 removed it."""
    from PIL import Image

    if not hasattr(Image, "LINEAR"):
        Image.LINEAR = Image.BILINEAR


def patch_numpy_aliases() -> None:
    """detectron2 v0.5 uses np.str (VOC loader), np.int (data/build.py), np.float; numpy >= 1.24 removed them."""
    import numpy as np

    for name, builtin in (("str", str), ("int", int), ("float", float)):
        if name not in np.__dict__:
            setattr(np, name, builtin)


def apply_detectron2_patches() -> None:
    """Apply every detectron2 patch (idempotent; call before importing detectron2)."""
    install_missing_extension_placeholder()
    patch_pillow_linear()
    patch_numpy_aliases()
