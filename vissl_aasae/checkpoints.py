"""Checkpoint files: safe loading, where the model lives in them, what ResNet they hold, the run's config.

The one module every tool reads checkpoints through (interop, evaluation, visualize and detection
are thin adapters over it; it imports none of them):

- :func:`load`: ``torch.load`` on CPU with ``weights_only=True``: tensors, containers, numbers,
  strings and a short allow-list of plain types (:data:`SAFE_GLOBALS`; PyTorch Lightning's
  ``AttributeDict`` is read as a plain dict without Lightning installed).  Nothing in the file can
  run code.  Every failure is one :class:`CheckpointError` line that names the file: missing,
  truncated or corrupt, not a checkpoint at all (a text file), or holding a type that is not on the
  allow-list (a pickle that would run code is refused, not run);
- :func:`verify`: whether a file is a complete checkpoint (every zip record's CRC, then the pickle);
- :func:`atomic_write`, :func:`save`, :func:`atomic_symlink`: written beside the target and renamed into
  place, so that a kill never leaves a partial file under its name nor a moment without the link;
- :func:`resolve`: a checkpoint file from a file or a run folder (``checkpoint.torch``, else the
  newest ``model_*phase*.torch``); a ``checkpoint.torch`` link that points elsewhere than its own
  folder (older runs with a relative ``CHECKPOINT.DIR``) is followed to the file of that name beside it;
- :func:`model_state`, :func:`trunk_state_dict`, :func:`heads_state_dict`: the model at
  ``classy_state_dict.base_model.model.{trunk,heads}`` (a plain trunk state dict, in VISSL or
  torchvision naming, is accepted as a trunk too); :func:`non_finite_tensors` lists NaN/inf weights;
- :func:`trunk_layout` and :func:`infer_spec`: the ResNet a trunk state dict holds (depth, width
  multiplier incl. 0.125/0.25/0.5, stem) read from its tensors;
- :func:`read_run_config`: the ``train_config.yaml`` VISSL keeps beside a run's checkpoints.
"""

import argparse
import os
import pathlib
import pickle
import re
import warnings
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch

from vissl_aasae.models.resnet_spec import DEPTHS, STEMS, WIDTH_MULTIPLIERS, ResNetSpec, check_choice, normalise_width

FEATURE_BLOCKS = "_feature_blocks."
MODEL_PATH = ("classy_state_dict", "base_model", "model")
CONFIG_FILE = "train_config.yaml"
LINK_NAME = "checkpoint.torch"
# first names of the torchvision ResNet layout (what the torchvision export writes)
TORCHVISION_ROOTS = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")
MAX_LISTED = 25
_STAGE_BLOCK = re.compile(r"^layer([1-4])\.(\d+)\.")
_LEGACY_TORCH_HEAD = b"\x80\x02\x8a\x0a"

# PyTorch Lightning's hyper-parameter container (a dict subclass), wherever Lightning put it: read
# as a plain dict, so the authors' checkpoints load without Lightning and without running its code.
LIGHTNING_ATTRIBUTE_DICTS = (
    "pytorch_lightning.utilities.parsing.AttributeDict",
    "pytorch_lightning.utilities.AttributeDict",
    "lightning.pytorch.utilities.parsing.AttributeDict",
    "lightning.fabric.utilities.data.AttributeDict",
    "lightning_fabric.utilities.data.AttributeDict",
)


def _numpy_globals() -> List[Any]:
    """numpy scalars, dtypes and arrays (Lightning callbacks may store metrics as numpy values)."""
    import numpy as np

    found = [np.dtype, np.ndarray]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        try:
            multiarray = __import__(module, fromlist=["scalar", "_reconstruct"])
        except ImportError:
            continue
        for name in ("scalar", "_reconstruct"):
            found.append((getattr(multiarray, name), f"{module}.{name}"))
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        found += [
            getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType") and isinstance(getattr(dtypes, n), type)
        ]
    return found


def safe_globals() -> List[Any]:
    """What :func:`load` allows beyond torch's own weights-only set: plain value types only."""
    allowed: List[Any] = [
        argparse.Namespace,
        pathlib.PosixPath,
        pathlib.PurePosixPath,
        pathlib.WindowsPath,
        pathlib.PureWindowsPath,
    ]
    allowed += [(dict, name) for name in LIGHTNING_ATTRIBUTE_DICTS]
    allowed += _numpy_globals()
    return allowed


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message is one line naming the file."""


def _listing(keys) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:MAX_LISTED])
    return shown + (f", ... and {len(keys) - MAX_LISTED} more" if len(keys) > MAX_LISTED else "")


def first_keys(keys, n: int = 5) -> str:
    keys = list(keys)
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")


# --------------------------------------------------------------------------- files
def _beside_link(path: str) -> Optional[str]:
    """For a link whose target is missing: the file of the target's name in the link's own folder."""
    if not os.path.islink(path):
        return None
    candidate = os.path.join(os.path.dirname(os.path.abspath(path)), os.path.basename(os.readlink(path)))
    return candidate if os.path.isfile(candidate) else None


def existing_file(path, what: str = "checkpoint") -> str:
    """``path`` as a readable file (a dangling ``checkpoint.torch`` link is followed within its folder)."""
    path = os.path.expanduser(str(path))
    if os.path.isfile(path):
        return path
    beside = _beside_link(path)
    if beside:
        return beside
    if os.path.islink(path):
        raise FileNotFoundError(f"{what} {path!r} is a link to {os.readlink(path)!r}, which does not exist")
    if os.path.isdir(path):
        raise FileNotFoundError(f"{what} {path!r} is a folder, not a file")
    raise FileNotFoundError(f"{what} {path!r} does not exist")


def _phase(name: str) -> int:
    match = re.search(r"phase(\d+)", name)
    return int(match.group(1)) if match else -1


def resolve(path) -> str:
    """A checkpoint file: ``path`` itself, or in a run folder its ``checkpoint.torch`` (the last
    complete save), else its newest ``model_*phase*.torch``."""
    path = os.path.expanduser(str(path))
    if os.path.isdir(path):
        link = os.path.join(path, LINK_NAME)
        if os.path.lexists(link):
            try:
                return existing_file(link)
            except FileNotFoundError:
                pass
        names = [n for n in os.listdir(path) if n.startswith("model_") and "phase" in n and n.endswith(".torch")]
        if not names:
            raise FileNotFoundError(f"checkpoint folder {path!r} holds no {LINK_NAME} or model_*phase*.torch")
        return os.path.join(path, max(names, key=lambda n: (_phase(n), "final" in n)))
    if not os.path.lexists(path):
        raise FileNotFoundError(f"checkpoint {path!r} is neither a file nor a folder")
    return existing_file(path)


def _file_kind(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK\x03\x04"):
        return "zip" if zipfile.is_zipfile(path) else "truncated zip"
    if head == _LEGACY_TORCH_HEAD:  # torch.save's legacy format starts with a pickled magic number
        return "legacy"
    return "pickle" if head[:1] == b"\x80" else "other"


def _refusal(path: str, what: str, err: Exception) -> CheckpointError:
    text = str(err)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return CheckpointError(
            f"{what} {path!r} was not loaded: it holds {found.group(1)}, which is not on the allow-list of safe "
            "types (unpickling it could run code); only tensors, containers, numbers and strings are read"
        )
    detail = next(
        (
            line.strip()
            for line in text.splitlines()
            if line.strip()
            and "Weights only load failed" not in line
            and "weights_only" not in line
            and "In PyTorch 2.6" not in line
        ),
        type(err).__name__,
    )
    if any(
        word in text
        for word in (
            "Can only build",
            "Can only create",
            "reduce for unrecognized",
            "Can only SETITEM",
            "Can only append",
            "persistent_load",
            "Unsupported operand",
        )
    ):
        return CheckpointError(
            f"{what} {path!r} was not loaded: its pickle uses operations outside the safe set ({detail[:200]})"
        )
    return CheckpointError(f"{what} {path!r} is corrupt or truncated: {detail[:200]}")


def load(path, what: str = "checkpoint", mmap: bool = False, check_crc: bool = True) -> Any:
    """``torch.load`` of ``path`` on CPU without running code from the file (see the module doc).

    ``mmap``: memory-map the tensors (cheap for large files; zip format only). ``check_crc``: first
    check every record of the zip archive against its CRC (torch does not: a damaged tensor would
    load as wrong numbers); about 0.4 s per 200 MB.
    """
    path = existing_file(path, what)
    kind = _file_kind(path)
    if kind == "truncated zip":
        raise CheckpointError(f"{what} {path!r} is truncated or corrupt (an incomplete zip archive: no end record)")
    if kind == "pickle":
        raise CheckpointError(
            f"{what} {path!r} is not a PyTorch checkpoint (a plain pickle file, not written by torch.save)"
        )
    if kind == "other":
        raise CheckpointError(f"{what} {path!r} is not a PyTorch checkpoint (neither a torch zip archive nor a pickle)")
    if kind == "zip" and check_crc:
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise CheckpointError(
                f"{what} {path!r} is corrupt or truncated: {' '.join(str(err).split())[:200]}"
            ) from None
        if bad is not None:
            raise CheckpointError(f"{what} {path!r} is corrupt: its record {bad} fails its CRC check")
    try:
        with torch.serialization.safe_globals(safe_globals()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and kind == "zip")
    except pickle.UnpicklingError as err:
        raise _refusal(path, what, err) from None
    except (RuntimeError, EOFError, ValueError, KeyError, OSError, TypeError, AttributeError, IndexError) as err:
        detail = " ".join(str(err).split())[:200] or type(err).__name__
        raise CheckpointError(f"{what} {path!r} is corrupt or truncated: {detail}") from None


class _WeightsUnpickler(pickle.Unpickler):
    """pickle with only numpy arrays/scalars/dtypes and OrderedDict as globals (Detectron2 weight files)."""

    ALLOWED = {
        ("collections", "OrderedDict"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED or (module == "numpy.dtypes" and name.endswith("DType")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"GLOBAL {module}.{name}")


def load_pickle(path, what: str = "weights file") -> Any:
    """A plain pickle file (Detectron2's ``.pkl`` weights: dicts of numpy arrays) read with an
    unpickler that only knows numpy's array, scalar and dtype types: nothing in the file runs code."""
    path = existing_file(path, what)
    try:
        with open(path, "rb") as f:
            return _WeightsUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as err:
        if str(err).startswith("GLOBAL "):
            raise CheckpointError(
                f"{what} {path!r} was not loaded: it holds {str(err)[7:]}, which is not on the allow-list of safe "
                "types (unpickling it could run code); only dicts of numpy arrays are read"
            ) from None
        raise CheckpointError(f"{what} {path!r} is not a readable pickle: {' '.join(str(err).split())[:200]}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, ImportError, OSError) as err:
        raise CheckpointError(
            f"{what} {path!r} is corrupt or truncated: {' '.join(str(err).split())[:200] or type(err).__name__}"
        ) from None


def verify(path) -> Optional[str]:
    """None when ``path`` is a complete checkpoint (every record's CRC checked, then loaded
    memory-mapped); else why not, in a few words."""
    try:
        load(path, mmap=True)
    except (CheckpointError, FileNotFoundError, OSError) as err:
        return str(err)
    return None


def atomic_write(path: str, write: Callable[[Any], None], mode: str = "wb") -> str:
    """``write(f)`` into a temporary file beside ``path``, flushed to disk, then renamed into place:
    never a partial file under that name (a disk that fills up, a killed process)."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def link_target(source, link) -> str:
    """What ``link`` should hold to reach ``source`` from anywhere: the bare file name when both are in
    one folder (VISSL's case), else the path relative to the link's folder."""
    source_dir = os.path.dirname(os.path.abspath(source))
    link_dir = os.path.dirname(os.path.abspath(link))
    if source_dir == link_dir:
        return os.path.basename(source)
    return os.path.relpath(os.path.abspath(source), link_dir)


def atomic_symlink(source, link) -> None:
    """Point ``link`` at ``source`` by renaming a fresh link over it: never a moment without one.
    The link holds a target relative to its own folder (:func:`link_target`)."""
    tmp = f"{link}.tmp{os.getpid()}"
    if os.path.lexists(tmp):
        os.remove(tmp)
    os.symlink(link_target(source, link), tmp)
    os.replace(tmp, link)


def save(obj: Any, path, what: str = "output") -> str:
    """``torch.save`` to a temporary file beside ``path``, renamed into place: never a partial file
    under that name; a folder that does not exist is named, not created."""
    path = os.path.expanduser(str(path))
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{what} {path!r}: folder {folder!r} does not exist")
    return atomic_write(path, lambda f: torch.save(obj, f))


# --------------------------------------------------------------------------- the model inside
def tensors_only(state: Mapping[str, Any]) -> "OrderedDict[str, torch.Tensor]":
    return OrderedDict((k, v) for k, v in state.items() if isinstance(v, torch.Tensor))


def model_state(checkpoint: Any, source: str = "checkpoint") -> Optional[Mapping[str, Any]]:
    """``{"trunk": ..., "heads": ...}`` of a VISSL checkpoint; None if ``checkpoint`` is not one."""
    if not isinstance(checkpoint, Mapping) or "classy_state_dict" not in checkpoint:
        return None
    state = checkpoint
    for depth, key in enumerate(MODEL_PATH):
        if not isinstance(state, Mapping) or key not in state:
            found = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise CheckpointError(
                f"{source}: VISSL checkpoint without {'.'.join(MODEL_PATH[: depth + 1])} (found {found})"
            )
        state = state[key]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{source}: {'.'.join(MODEL_PATH)} is a {type(state).__name__}, not a mapping")
    return state


def trunk_state_dict(checkpoint: Any, source: str = "checkpoint") -> "OrderedDict[str, torch.Tensor]":
    """The trunk's tensors with VISSL keys (``_feature_blocks.*``), from a VISSL checkpoint or a
    plain trunk state dict (VISSL or torchvision naming)."""
    model = model_state(checkpoint, source)
    if model is not None:
        if "trunk" not in model:
            raise CheckpointError(f"{source}: VISSL checkpoint has no trunk (model keys: {sorted(model)})")
        return tensors_only(model["trunk"])
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"{source}: expected a VISSL checkpoint or a state dict, got {type(checkpoint).__name__}")
    state = tensors_only(checkpoint)
    if state and all(k.startswith(FEATURE_BLOCKS) for k in state):
        return state
    if state and all(k.startswith(TORCHVISION_ROOTS) for k in state):
        return OrderedDict((FEATURE_BLOCKS + k, v) for k, v in state.items())
    sample = list(state) or [k for k in checkpoint]
    raise CheckpointError(
        f"{source}: not a VISSL checkpoint (no 'classy_state_dict') nor a trunk state dict with "
        f"'{FEATURE_BLOCKS}*' or torchvision ResNet keys; its keys: {_listing(sample)}"
    )


def heads_state_dict(checkpoint: Any, source: str = "checkpoint") -> "OrderedDict[str, torch.Tensor]":
    model = model_state(checkpoint, source)
    if model is None or "heads" not in model:
        raise CheckpointError(f"{source}: not a VISSL checkpoint with heads (classy_state_dict.base_model.model.heads)")
    return tensors_only(model["heads"])


def training_parts(checkpoint: Any, source: str = "checkpoint") -> Tuple[Mapping, Mapping]:
    """(trunk, heads) state dicts of a consolidated VISSL *training* checkpoint (both required)."""
    if isinstance(checkpoint, Mapping) and checkpoint.get("type", "consolidated") != "consolidated":
        raise CheckpointError(
            f"{source}: {checkpoint['type']!r} (sharded) checkpoints are not supported; consolidate it first"
        )
    model = model_state(checkpoint, source)
    if model is None or "trunk" not in model or "heads" not in model:
        raise CheckpointError(
            f"{source} is not a VISSL training checkpoint (no classy_state_dict.base_model.model.trunk/heads)"
        )
    return model["trunk"], model["heads"]


def non_finite_tensors(checkpoint: Any) -> List[str]:
    """``part.name`` of every floating-point model tensor holding NaN/inf (empty when not a VISSL checkpoint)."""
    classy = checkpoint.get("classy_state_dict") if isinstance(checkpoint, Mapping) else None
    model = ((classy or {}).get("base_model") or {}).get("model") or {}
    return [
        f"{part}.{name}"
        for part, tensors in model.items()
        if isinstance(tensors, Mapping)
        for name, value in tensors.items()
        if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all()
    ]


# --------------------------------------------------------------------------- what ResNet
@dataclass(frozen=True)
class TrunkLayout:
    """What a ResNet trunk state dict shows (names without ``_feature_blocks.``)."""

    blocks_per_stage: Tuple[int, int, int, int]
    bottleneck: bool
    stem_channels: Optional[int]
    stem_kernel: Optional[int]
    out_channels: Optional[int]  # of the last stage

    @property
    def block(self) -> str:
        return "Bottleneck" if self.bottleneck else ("BasicBlock" if any(self.blocks_per_stage) else "none")

    @property
    def depth(self) -> Optional[int]:
        found = {(block.expansion == 4, tuple(layers)): d for d, (block, layers) in DEPTHS.items()}
        return found.get((self.bottleneck, tuple(self.blocks_per_stage)))

    @property
    def width_multiplier(self):
        """The width multiplier the stem shows (64 x m channels) if it is one of WIDTH_MULTIPLIERS, else None."""
        if self.stem_channels is None:
            return None
        width = normalise_width(self.stem_channels / 64)
        return width if width in WIDTH_MULTIPLIERS else None

    def describe(self) -> str:
        """E.g. ``ResNet-50 (WIDTH_MULTIPLIER 1), 7x7 stem (STEM stl10 or imagenet)``."""
        depth = self.depth
        name = f"ResNet-{depth}" if depth else f"a ResNet with blocks {list(self.blocks_per_stage)}"
        width = self.width_multiplier
        width = width if width is not None else f"? ({self.stem_channels} stem channels)"
        kernel = self.stem_kernel
        stem = {3: "3x3 stem (STEM cifar)", 7: "7x7 stem (STEM stl10 or imagenet)"}.get(
            kernel, f"{kernel}x{kernel} stem"
        )
        return f"{name} (WIDTH_MULTIPLIER {width}), {stem}"


def torchvision_names(trunk: Mapping[str, Any], prefixes=(FEATURE_BLOCKS,)) -> "OrderedDict[str, Any]":
    """``trunk`` with the given wrapping prefixes (outermost first) taken off each key."""
    out = OrderedDict()
    for key, value in trunk.items():
        name = key
        for prefix in prefixes:
            if name.startswith(prefix):
                name = name[len(prefix) :]
        out[name] = value
    return out


def trunk_layout(trunk: Mapping[str, Any]) -> TrunkLayout:
    """The layout of a trunk state dict (keys ``_feature_blocks.*`` or torchvision names)."""
    tensors = torchvision_names(trunk)
    blocks = []
    for layer in "1234":
        blocks.append(len({m.group(2) for m in map(_STAGE_BLOCK.match, tensors) if m and m.group(1) == layer}))
    bottleneck = any(k.startswith("layer") and ".conv3." in k for k in tensors)
    last = f"layer4.{max(blocks[3] - 1, 0)}.conv{3 if bottleneck else 2}.weight"
    conv1 = tensors.get("conv1.weight")
    return TrunkLayout(
        blocks_per_stage=tuple(blocks),
        bottleneck=bottleneck,
        stem_channels=int(conv1.shape[0]) if conv1 is not None else None,
        stem_kernel=int(conv1.shape[-1]) if conv1 is not None else None,
        out_channels=int(tensors[last].shape[0]) if last in tensors else None,
    )


def infer_spec(trunk: Mapping[str, Any], stem: Optional[str] = None) -> ResNetSpec:
    """Depth, width and stem of a trunk state dict (``_feature_blocks.*`` or torchvision keys).

    The depth and width are read from the tensors; the stem's conv kernel too (3x3 = ``cifar``),
    but a 7x7 conv is ``stl10`` or ``imagenet`` depending on a max-pool that has no weights: pass
    ``stem`` then.
    """
    layout = trunk_layout(trunk)
    depth = layout.depth
    if depth is None or layout.stem_channels is None:
        raise ValueError(
            f"not an AASAE ResNet trunk: {'Bottleneck' if layout.bottleneck else 'BasicBlock'} blocks per stage "
            f"{list(layout.blocks_per_stage)}, conv1.weight {'present' if layout.stem_channels else 'absent'} "
            "(known: ResNet-18 BasicBlock [2,2,2,2], ResNet-34 BasicBlock [3,4,6,3], ResNet-50 Bottleneck [3,4,6,3])"
        )
    width = layout.width_multiplier
    if width is None:
        raise ValueError(
            f"conv1.weight has {layout.stem_channels} output channels: not 64 x a width multiplier "
            f"{list(WIDTH_MULTIPLIERS)}"
        )
    kernel = layout.stem_kernel
    if stem is None:
        if kernel != 3:
            raise ValueError(
                f"the trunk's first conv is {kernel}x{kernel}: its stem is 'stl10' (no max-pool) or 'imagenet' "
                "(max-pool), which the weights do not tell apart; state it (stem=..., --stem)"
            )
        stem = "cifar"
    check_choice("stem", stem, tuple(STEMS))
    if STEMS[stem][0] != kernel:
        raise ValueError(
            f"stem {stem!r} has a {STEMS[stem][0]}x{STEMS[stem][0]} conv but the trunk's conv1 is {kernel}x{kernel}"
        )
    return ResNetSpec(depth, width, stem)


# --------------------------------------------------------------------------- the run's config
def read_run_config(checkpoint_path) -> Optional[Dict[str, Any]]:
    """The ``train_config.yaml`` beside ``checkpoint_path`` (a checkpoint file or a run folder) as a
    plain dict (the ``config`` node), or None when there is none."""
    path = os.path.expanduser(str(checkpoint_path))
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    file = os.path.join(folder, CONFIG_FILE)
    if not os.path.isfile(file):
        return None
    import yaml

    try:
        with open(file) as f:
            config = yaml.safe_load(f)
    except yaml.YAMLError as err:
        raise ValueError(f"{file} is not valid YAML: {' '.join(str(err).split())[:200]}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{file} does not hold a config mapping")
    return config


def run_config_file(checkpoint_path) -> str:
    path = os.path.expanduser(str(checkpoint_path))
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    return os.path.join(folder, CONFIG_FILE)


def stem_from_run_config(checkpoint_path) -> Optional[str]:
    """The stem recorded in the run's ``train_config.yaml``, if any."""
    config = read_run_config(checkpoint_path) or {}
    trunk = (config.get("MODEL") or {}).get("TRUNK") or {}
    if trunk.get("NAME") == "aasae_resnet":
        return (trunk.get("AASAE_RESNET") or {}).get("STEM")
    if trunk.get("NAME") == "resnet":
        return "imagenet"
    return None
