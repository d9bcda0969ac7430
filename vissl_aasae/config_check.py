"""Checks a composed VISSL config before any work starts; each error names the offending key.

Used by the launcher: unknown component names (trunk, heads, loss, collator, data sources,
transforms, data set names), data paths that do not exist or are empty, image folders without class
sub-folders, ``DATA_LIMIT`` values the data cannot give, the device, the number of epochs, the
plugin's run switches (``config.AASAE``), and AASAE's own pairings (projection head followed by the
decoder head, matching latent sizes, the view transform and collator).  The checks of the
run's folder (its lock, record and checkpoints) are :mod:`vissl_aasae.run`'s.
"""

import math
import os
import zipfile

import torch
import torchvision.transforms as T
import vissl.losses  # noqa: F401  (registers VISSL's own losses)
from classy_vision.dataset.transforms import TRANSFORM_REGISTRY
from classy_vision.losses import LOSS_REGISTRY
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS
from vissl.data import DATASET_SOURCE_MAP
from vissl.data.collators import COLLATOR_REGISTRY
from vissl.data.dataset_catalog import VisslDatasetCatalog
from vissl.models import build_model
from vissl.models.heads import MODEL_HEADS_REGISTRY
from vissl.models.trunks import MODEL_TRUNKS_REGISTRY

from vissl_aasae.data.aasae_array import FORMATS, load_arrays
from vissl_aasae.data.aasae_collator import INPUT_CHOICES
from vissl_aasae.errors import ConfigError
from vissl_aasae.losses.aasae_loss import AASAELossCriterion
from vissl_aasae.settings import MethodSettings, RunSettings, validate

DEVICES = ("cpu", "gpu")


def _known(name, registry, key):
    if name not in registry:
        raise ConfigError(f"{key}={name!r} is not a registered component; known: {sorted(registry)}")


def _check_transforms(transforms, key):
    for i, transform in enumerate(transforms or []):
        name = transform.get("name")
        if name not in TRANSFORM_REGISTRY and not hasattr(T, str(name)):
            raise ConfigError(f"{key}[{i}].name={name!r} is neither a registered nor a torchvision transform")
        for sub in ("original", "augmented"):
            if name == "AASAEViews" and sub in transform:
                _check_transforms(transform[sub], f"{key}[{i}].{sub}")


def _has_files(folder) -> bool:
    return any(files for _, _, files in os.walk(folder))


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def _count_folder_images(root: str, stop_above: int) -> int:
    """Images in the class sub-folders of ``root`` (as ImageFolder reads them), counting stops above ``stop_above``."""
    count = 0
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if not entry.is_dir():
            continue
        for _, _, files in os.walk(entry.path, followlinks=True):
            count += sum(1 for f in files if _is_image(f))
            if count > stop_above:
                return count
    return count


def _check_image_folder(path: str, key: str) -> None:
    """disk_folder reads <root>/<class>/<image>: images directly in the root and no class folder are refused."""
    subfolders = [e for e in os.scandir(path) if e.is_dir()]
    loose = [e.name for e in os.scandir(path) if e.is_file() and _is_image(e.name)]
    if not any(_has_files(e.path) for e in subfolders):
        if loose:
            raise ConfigError(
                f"{key}={path!r} holds {len(loose)} images but no class sub-folders: disk_folder reads "
                f"<root>/<class>/<image>; move the images into a sub-folder (e.g. {os.path.join(path, 'all')})"
            )
        raise ConfigError(f"{key}={path!r} holds no image files")


def _array_size(name: str, path: str, split: str, hold_out: int):
    """Images an aasae_array source holds for ``split`` (after HOLD_OUT); None when unknown."""
    if name == "stl10_unlabeled":
        folder = os.path.join(os.path.expanduser(path), "stl10_binary")
        folder = folder if os.path.isdir(folder) else os.path.expanduser(path)
        file = os.path.join(folder, "unlabeled_X.bin")
        total = os.path.getsize(file) // (3 * 96 * 96) if os.path.isfile(file) else None
    else:
        try:
            total = len(load_arrays(name, path, split)[0])
        except (ValueError, FileNotFoundError, OSError) as err:
            raise ConfigError(
                f"DATA.{split.upper()}.DATA_PATHS entry {path!r} ({name}): {' '.join(str(err).split())}"
            ) from None
    if total is None:
        return None
    if isinstance(hold_out, bool) or not isinstance(hold_out, int) or not 0 <= hold_out < total:
        raise ConfigError(
            f"DATA.{split.upper()}.HOLD_OUT={hold_out!r} must be an integer from 0 to {total - 1} "
            f"({name} at {path!r} has {total} {split} images)"
        )
    return total - hold_out


def check_npz_file(path: str, key: str) -> None:
    """An aasae_array ``npz`` path must be a numpy .npz archive (numpy's own error on a text file talks of pickles)."""
    if str(path) == "embedded":
        return
    file = os.path.expanduser(str(path))
    if not os.path.isfile(file):
        raise ConfigError(f"{key}: {path!r} is not a file (the npz format reads one .npz archive)")
    if not zipfile.is_zipfile(file):
        raise ConfigError(f"{key}: {path!r} is not a numpy .npz archive")


def _check_dataset_names(config, split) -> None:
    data = config.DATA[split]
    key = f"DATA.{split}"
    names, sources = list(data.DATASET_NAMES), list(data.DATA_SOURCES)
    if len(names) != len(sources):
        raise ConfigError(f"{key}.DATASET_NAMES={names} and {key}.DATA_SOURCES={sources} differ in length")
    if data.DATA_PATHS and len(data.DATA_PATHS) != len(sources):
        raise ConfigError(f"{key}.DATA_PATHS={list(data.DATA_PATHS)} and {key}.DATA_SOURCES={sources} differ in length")
    for i, (name, source) in enumerate(zip(names, sources)):
        if source == "synthetic":
            continue
        if source == "aasae_array" and name not in FORMATS:
            raise ConfigError(
                f"{key}.DATASET_NAMES[{i}]={name!r} is not an aasae_array format; allowed: {list(FORMATS)}"
            )
        if source == "aasae_array" and name == "npz" and i < len(data.DATA_PATHS):
            check_npz_file(data.DATA_PATHS[i], f"{key}.DATA_PATHS[{i}]")
        looked_up = not data.DATA_PATHS or not data.LABEL_PATHS
        if looked_up and not VisslDatasetCatalog.has_data(name):
            known = sorted(VisslDatasetCatalog.list())
            raise ConfigError(
                f"{key}.DATASET_NAMES[{i}]={name!r} is not registered in VISSL's dataset catalog "
                f"(known: {known[:20]}{' ...' if len(known) > 20 else ''})"
            )


def _check_data_limit(config, split) -> None:
    data = config.DATA[split]
    key = f"DATA.{split}.DATA_LIMIT"
    limit = data.get("DATA_LIMIT", -1)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit == 0 or limit < -1:
        raise ConfigError(f"{key}={limit!r} must be -1 (all the data) or a positive number of images")
    skip = int((data.get("DATA_LIMIT_SAMPLING") or {}).get("SKIP_NUM_SAMPLES", 0) or 0)
    hold_out = data.get("HOLD_OUT", 0) or 0
    if limit < 0 and not hold_out:
        return
    for i, (source, path) in enumerate(zip(data.DATA_SOURCES, data.DATA_PATHS)):
        name = data.DATASET_NAMES[i] if i < len(data.DATASET_NAMES) else None
        if source == "disk_folder" and limit > 0:
            size = _count_folder_images(os.path.expanduser(str(path)), limit + skip)
        elif source == "aasae_array":
            size = _array_size(name, str(path), split.lower(), hold_out)
        else:
            continue
        if limit > 0 and size is not None and limit + skip > size:
            where = f"{name} at {path!r}" if source == "aasae_array" else repr(path)
            raise ConfigError(
                f"{key}={limit}{f' (+ SKIP_NUM_SAMPLES {skip})' if skip else ''} is more than the {size} images "
                f"of DATA.{split}.DATA_PATHS[{i}] ({where}); lower it, or -1 for all of them"
            )


def _train_images(config, stop_above: int):
    """Images of DATA.TRAIN after DATA_LIMIT (disk folders counted up to ``stop_above``); None when
    a source's size is not known here (aasae_task checks at start-up)."""
    data = config.DATA.TRAIN
    size = 0
    for i, (source, path) in enumerate(zip(data.DATA_SOURCES, data.DATA_PATHS)):
        name = data.DATASET_NAMES[i] if i < len(data.DATASET_NAMES) else None
        if source == "disk_folder":
            size += _count_folder_images(os.path.expanduser(str(path)), stop_above)
        elif source == "aasae_array":
            size += _array_size(name, str(path), "train", data.get("HOLD_OUT", 0) or 0) or 0
        else:
            return None
    limit = int(data.get("DATA_LIMIT", -1))
    return min(size, limit) if limit > 0 else size


def _global_batch(config) -> int:
    ranks = int(config.DISTRIBUTED.NUM_NODES) * int(config.DISTRIBUTED.NUM_PROC_PER_NODE)
    return int(config.DATA.TRAIN.BATCHSIZE_PER_REPLICA) * ranks


def _check_epoch_length(config) -> None:
    """One epoch must be at least one iteration (VISSL would report "One epoch = 0 iterations" and
    train nothing, or divide by zero), and ``AASAE.MAX_ITERATIONS`` reachable within
    ``OPTIMIZER.num_epochs`` epochs of the data."""
    data = config.DATA.TRAIN
    if config.TEST_ONLY or not data.DATA_SOURCES:
        return
    cap = RunSettings.from_config(config).max_iterations
    epochs = int(config.OPTIMIZER.num_epochs)
    batch = _global_batch(config)
    needed = math.ceil(cap / epochs) * batch if cap else batch  # with DROP_LAST; without it a little less
    size = _train_images(config, needed)
    if size is None:
        return
    drop_last = data.get("DROP_LAST", False)
    per_epoch = size // batch if drop_last else math.ceil(size / batch)
    ranks = batch // int(data.BATCHSIZE_PER_REPLICA)
    if per_epoch == 0:
        raise ConfigError(
            f"DATA.TRAIN holds {size} images, fewer than one global batch of {batch} (DATA.TRAIN.BATCHSIZE_PER_REPLICA="
            f"{data.BATCHSIZE_PER_REPLICA} x {ranks} process(es)){' with DROP_LAST' if drop_last else ''}: an epoch "
            "would be 0 iterations; lower the batch size or give more images"
        )
    if cap and per_epoch * epochs < cap:
        need = math.ceil(cap / per_epoch)
        raise ConfigError(
            f"AASAE.MAX_ITERATIONS={cap} needs {need} epochs of {per_epoch} iterations ({size} images, global batch "
            f"{batch}) but OPTIMIZER.num_epochs={epochs}; raise num_epochs or set AASAE.MAX_ITERATIONS=null"
        )


def _check_batch(config, split):
    data = config.DATA[split]
    key = f"DATA.{split}"
    batch = data.BATCHSIZE_PER_REPLICA
    if not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"{key}.BATCHSIZE_PER_REPLICA={batch!r} must be a positive integer")
    ranks = int(config.DISTRIBUTED.NUM_NODES) * int(config.DISTRIBUTED.NUM_PROC_PER_NODE)
    limit = int(data.get("DATA_LIMIT", -1))
    if data.get("DROP_LAST", False) and 0 < limit < batch * ranks:
        raise ConfigError(
            f"{key}.DATA_LIMIT={limit} is smaller than one global batch ({key}.BATCHSIZE_PER_REPLICA={batch} "
            f"x {ranks} ranks) with DROP_LAST: not a single iteration would run"
        )


LIST_KEYS = ("DATA_SOURCES", "DATASET_NAMES", "DATA_PATHS", "LABEL_SOURCES", "LABEL_PATHS")


def _check_data(config, split):
    data = config.DATA[split]
    key = f"DATA.{split}"
    for name in LIST_KEYS:
        value = data.get(name)
        if isinstance(value, str):  # VISSL would read each character as an entry: DATA_PATHS[1]='t'
            raise ConfigError(
                f"{key}.{name}={value!r} must be a list: write config.{key}.{name}=[{value}] (with the brackets)"
            )
    for i, source in enumerate(data.DATA_SOURCES):
        _known(source, DATASET_SOURCE_MAP, f"{key}.DATA_SOURCES[{i}]")
    for i, path in enumerate(data.DATA_PATHS):
        source = data.DATA_SOURCES[i] if i < len(data.DATA_SOURCES) else None
        if source == "synthetic" or (source == "aasae_array" and path == "embedded"):
            continue
        if not os.path.exists(os.path.expanduser(str(path))):
            raise ConfigError(f"{key}.DATA_PATHS[{i}]={path!r} does not exist")
        if source == "disk_folder":
            if not os.path.isdir(os.path.expanduser(str(path))) or not _has_files(path):
                raise ConfigError(f"{key}.DATA_PATHS[{i}]={path!r} holds no image files")
            _check_image_folder(os.path.expanduser(str(path)), f"{key}.DATA_PATHS[{i}]")
    _check_dataset_names(config, split)
    _check_data_limit(config, split)
    _check_transforms(data.TRANSFORMS, f"{key}.TRANSFORMS")
    _check_batch(config, split)
    collator = data.COLLATE_FUNCTION
    if collator != "default_collate":
        _known(collator, COLLATOR_REGISTRY, f"{key}.COLLATE_FUNCTION")


# transforms whose ``size`` sets the image's side (a Resize with one number sets the shorter side)
SIZING_TRANSFORMS = ("RandomResizedCrop", "CenterCrop", "RandomCrop", "Resize")


def view_size(transforms):
    """(side, transform name) of the last sizing transform of a pipeline; None when it keeps the data's size."""
    for transform in reversed(list(transforms or [])):
        if transform.get("name") in SIZING_TRANSFORMS and "size" in transform:
            size = transform["size"]
            sides = set(size) if isinstance(size, (list, tuple)) else {size}
            return (sides.pop() if len(sides) == 1 else tuple(size)), transform["name"]
    return None


def _check_view_sizes(config) -> None:
    """Both views must come out at MODEL.AASAE.INPUT_HEIGHT, the side of the images the decoder makes
    (otherwise the likelihood fails at iteration 0)."""
    height = MethodSettings.from_config(config).input_height
    (views,) = config.DATA.TRAIN.TRANSFORMS
    for part in ("original", "augmented"):
        found = view_size(views.get(part))
        if found is not None and found[0] != height:
            raise ConfigError(
                f"DATA.TRAIN.TRANSFORMS[0].{part} makes {found[0]} px images ({found[1]} size={found[0]}) but "
                f"MODEL.AASAE.INPUT_HEIGHT={height} (the side of the decoder's images): set them alike"
            )


# images smaller than this share of INPUT_HEIGHT are reported as upscaled (the quickstart's 28 -> 32 px is not)
UPSCALE_WARNING_FACTOR = 4 / 3


def first_image_size(config):
    """(width, height) of the first training image, read cheaply (a PIL header or the array's shape);
    None when the source is not one of the plugin's or the folder's."""
    data = config.DATA.TRAIN
    if not data.DATA_SOURCES or not data.DATA_PATHS:
        return None
    source, path = data.DATA_SOURCES[0], os.path.expanduser(str(data.DATA_PATHS[0]))
    if source == "aasae_array":
        try:
            images = load_arrays(data.DATASET_NAMES[0], str(data.DATA_PATHS[0]), "train")[0]
        except (ValueError, FileNotFoundError, OSError):
            return None
        return (images.shape[2], images.shape[1]) if len(images) and images.ndim >= 3 else None
    if source == "disk_folder" and os.path.isdir(path):
        for folder, _, files in sorted(os.walk(path, followlinks=True)):
            for name in sorted(f for f in files if _is_image(f)):
                try:
                    with Image.open(os.path.join(folder, name)) as image:
                        return image.size
                except OSError:
                    continue
    return None


def upscaling_warning(config):
    """A line when the training images are much smaller than MODEL.AASAE.INPUT_HEIGHT (a 96 px config
    fed 28 px images trains on upscaled images); None otherwise."""
    if (config.LOSS.get("name") != "aasae_loss") or config.TEST_ONLY:
        return None
    size = first_image_size(config)
    height = MethodSettings.from_config(config).input_height
    if size is None or min(size) * UPSCALE_WARNING_FACTOR >= height:
        return None
    return (
        f"the training images are {size[0]}x{size[1]} px "
        f"(DATA.TRAIN.DATA_PATHS[0]={config.DATA.TRAIN.DATA_PATHS[0]!r}) "
        f"and MODEL.AASAE.INPUT_HEIGHT={height}: they are upscaled {height / min(size):.1f}x; a config made for "
        "images of this size (e.g. pretrain/aasae/quickstart or cifar10 for 28-32 px) fits them better"
    )


def _check_aasae(config):
    heads = config.MODEL.HEAD.PARAMS
    names = [h[0] for h in heads]
    projections = ("aasae_stochastic_projection", "aasae_deterministic_projection")
    if len(heads) != 2 or names[0] not in projections or names[1] != "aasae_resnet_decoder":
        raise ConfigError(
            f"MODEL.HEAD.PARAMS={names} : LOSS.name=aasae_loss needs a projection head "
            f"({' or '.join(projections)}) followed by aasae_resnet_decoder"
        )
    default = (config.MODEL.get("AASAE") or {}).get("LATENT_DIM")
    d_proj = heads[0][1].get("latent_dim", default)
    d_dec = heads[1][1].get("latent_dim", default)
    if d_proj != d_dec:
        raise ConfigError(
            f"MODEL.HEAD.PARAMS latent_dim differs: {names[0]} has {d_proj}, aasae_resnet_decoder has {d_dec}"
        )
    kl = config.LOSS.aasae_loss.get("kl_coeff", 0.0)
    if names[0] == "aasae_deterministic_projection" and float(kl) > 0:
        raise ConfigError(
            f"LOSS.aasae_loss.kl_coeff={kl} needs aasae_stochastic_projection (a posterior to take the KL of)"
        )
    train = config.DATA.TRAIN
    if train.COLLATE_FUNCTION != "aasae_collator" or list(train.TARGET_KEY_NAMES) != ["original"]:
        raise ConfigError(
            "DATA.TRAIN.COLLATE_FUNCTION must be aasae_collator and DATA.TRAIN.TARGET_KEY_NAMES [original] "
            f"for aasae_loss (got {train.COLLATE_FUNCTION!r}, {list(train.TARGET_KEY_NAMES)})"
        )
    if [t.get("name") for t in train.TRANSFORMS] != ["AASAEViews"]:
        raise ConfigError("DATA.TRAIN.TRANSFORMS must be a single AASAEViews entry for aasae_loss")

    view = (train.COLLATE_FUNCTION_PARAMS or {}).get("input", "augmented")
    if view not in INPUT_CHOICES:
        raise ConfigError(
            f"DATA.TRAIN.COLLATE_FUNCTION_PARAMS.input={view!r} is not supported; allowed: {list(INPUT_CHOICES)}"
        )
    AASAELossCriterion(kl)  # validates LOSS.aasae_loss.kl_coeff


def _check_run_settings(config) -> None:
    """``MACHINE.DEVICE``, ``OPTIMIZER.num_epochs`` and the plugin's run switches in ``config.AASAE``."""
    device = config.MACHINE.DEVICE
    if device not in DEVICES:
        raise ConfigError(f"MACHINE.DEVICE={device!r} is not supported; allowed: {list(DEVICES)}")
    epochs = config.OPTIMIZER.get("num_epochs")
    if not config.TEST_ONLY and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ConfigError(f"OPTIMIZER.num_epochs={epochs!r} must be a positive integer")
    workers = config.DATA.get("NUM_DATALOADER_WORKERS", 0)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"DATA.NUM_DATALOADER_WORKERS={workers!r} must be 0 (load in the trainer) or more")
    if not config.TEST_ONLY:
        for name, scheduler in (config.OPTIMIZER.get("param_schedulers") or {}).items():
            _check_scheduler(scheduler, f"OPTIMIZER.param_schedulers.{name}", learning_rate=name.startswith("lr"))

    try:  # every plugin section (MODEL.AASAE, AASAE, AASAE_EVAL...): unknown keys, types, allowed values
        validate(config, fill=False)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    fraction = RunSettings.from_config(config).max_unreadable_fraction
    if not 0 <= fraction <= 1:
        raise ConfigError(f"AASAE.MAX_UNREADABLE_FRACTION={fraction!r} must be between 0 and 1")


# the values each of classy_vision's schedulers reads
SCHEDULER_VALUES = {
    "constant": ("value",),
    "linear": ("start_value", "end_value"),
    "cosine": ("start_value", "end_value"),
    "polynomial": ("base_value",),
    "step_with_fixed_gamma": ("base_value",),
    "multistep": ("values",),
    "step": ("values",),
}


def _check_scheduler(scheduler, key: str, learning_rate: bool) -> None:
    """Finite values (non-negative for a learning rate: a negative one ascends the loss to 1e25) and a
    composite's ``lengths`` summing to 1, one per scheduler."""
    name = scheduler.get("name")
    if name == "composite":
        parts, lengths = list(scheduler.get("schedulers") or []), list(scheduler.get("lengths") or [])
        if len(parts) != len(lengths):
            raise ConfigError(f"{key}.lengths={lengths} must give one length per scheduler ({len(parts)})")
        if any(
            isinstance(x, bool) or not isinstance(x, (int, float)) or not x >= 0 for x in lengths
        ) or not math.isclose(sum(lengths), 1.0, abs_tol=1e-3):
            raise ConfigError(
                f"{key}.lengths={lengths} must be fractions of the training that sum to 1 (sum {sum(lengths):g})"
            )
        for i, part in enumerate(parts):
            _check_scheduler(part, f"{key}.schedulers[{i}]", learning_rate)
        return
    for field in SCHEDULER_VALUES.get(name, ()):
        value = scheduler.get(field)
        for x in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
                raise ConfigError(f"{key}.{field}={value!r} must be a finite number")
            if learning_rate and x < 0:
                raise ConfigError(f"{key}.{field}={value!r}: a learning rate must not be negative")


def _check_device_available(config) -> None:
    """MACHINE.DEVICE=gpu needs NUM_PROC_PER_NODE GPUs here (VISSL's assertion blames NUM_PROC_PER_NODE)."""
    if config.MACHINE.DEVICE != "gpu":
        return

    wanted = int(config.DISTRIBUTED.NUM_PROC_PER_NODE)
    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if found == 0:
        raise ConfigError(
            "MACHINE.DEVICE=gpu but this machine has no CUDA GPU; on CPU set config.MACHINE.DEVICE=cpu "
            "config.DISTRIBUTED.BACKEND=gloo"
        )
    if wanted > found:
        raise ConfigError(f"DISTRIBUTED.NUM_PROC_PER_NODE={wanted} but this machine has {found} CUDA GPUs")


def _check_model_builds(config):
    """Build the model on the meta device: every constructor check runs, no memory is allocated."""
    with torch.device("meta"):
        build_model(config.MODEL, config.OPTIMIZER)


def check_config(config) -> None:
    """Raise ConfigError naming the first problem found in a composed VISSL config."""
    _check_run_settings(config)
    folder = os.path.expanduser(str(config.CHECKPOINT.DIR))
    if "://" not in folder and os.path.exists(folder) and not os.path.isdir(folder):
        raise ConfigError(f"CHECKPOINT.DIR={config.CHECKPOINT.DIR!r} is a file, not a folder")
    _known(config.MODEL.TRUNK.NAME, MODEL_TRUNKS_REGISTRY, "MODEL.TRUNK.NAME")
    for i, head in enumerate(config.MODEL.HEAD.PARAMS):
        _known(head[0], MODEL_HEADS_REGISTRY, f"MODEL.HEAD.PARAMS[{i}][0]")
    if config.LOSS.name:
        _known(config.LOSS.name, LOSS_REGISTRY, "LOSS.name")
    for split in ("TRAIN", "TEST"):
        if config.TEST_ONLY and split == "TRAIN" or config.TEST_MODEL is False and split == "TEST":
            continue
        if config.DATA[split].DATA_SOURCES:
            _check_data(config, split)
    if config.LOSS.name == "aasae_loss":
        _check_aasae(config)
        _check_view_sizes(config)
        _check_epoch_length(config)
    _check_model_builds(config)
    _check_device_available(config)
