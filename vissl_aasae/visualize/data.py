"""Images and transforms for the inspection commands, read by the data sources training reads.

``--data`` is one of:
- ``embedded``: the Fashion-MNIST subset shipped with the plugin (``aasae_array`` npz);
- a folder in ImageFolder layout (``<root>/<class>/<image>``), read by VISSL's ``disk_folder`` source
  exactly as a pretraining run reads it (an image that cannot be decoded raises
  :class:`UnreadableImage` naming it; the commands skip it);
- with a format (an ``aasae_array`` format: cifar10, stl10, stl10_unlabeled, fashion_mnist, npz), the
  path that data source reads (``DATA.<split>.HOLD_OUT`` of the run's config applies, as in training).

The transforms are the run's own: the ``original`` (evaluation) or ``augmented`` list of the
``AASAEViews`` entry of ``DATA.TRAIN.TRANSFORMS``.
"""

from pathlib import Path
from typing import Callable, Optional

from classy_vision.dataset.transforms import build_transforms
from vissl.data import DATASET_SOURCE_MAP

import vissl_aasae.registry  # noqa: F401  (aasae_array, the plugin's transforms, the disk_folder fixes)
from vissl_aasae.data.aasae_array import FORMATS
from vissl_aasae.images import VIEW_LISTS, views_transform


class UnreadableImage(ValueError):
    """An image file that cannot be decoded; the message starts with its path."""


class SourceImages:
    """The RGB PIL images of one VISSL data source (``source[idx] -> (image, is_success)``)."""

    def __init__(self, source, name: str):
        self.source = source
        self.name = name

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, idx: int):
        if not 0 <= idx < len(self):
            raise IndexError(idx)
        image, ok = self.source[idx]
        if not ok:  # disk_folder gave its gray placeholder
            path = self.source.image_dataset.samples[idx][0]
            raise UnreadableImage(f"{path}: cannot be decoded as an image")
        return image


def open_images(config, data: str, data_format: Optional[str] = None, split: str = "test") -> SourceImages:
    """The images of ``data`` (see the module doc) through the data source a pretraining run with
    ``config`` would use: ``aasae_array`` for array formats, VISSL's ``disk_folder`` for a folder."""
    if data_format is None and data == "embedded":
        data_format = "npz"
    if data_format is not None:
        if data_format not in FORMATS:
            raise ValueError(f"--data format {data_format!r} is not an aasae_array format; allowed: {list(FORMATS)}")
        source = DATASET_SOURCE_MAP["aasae_array"](config, "aasae_array", data, split.upper(), data_format)
        return SourceImages(source, f"{data} ({data_format}, {split})")
    root = Path(data).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"--data {data!r} is not a folder (or give <format>:<path>, or 'embedded')")
    try:  # the constructor lists the folder: a wrong layout is one line here, not a worker's traceback
        source = DATASET_SOURCE_MAP["disk_folder"](config, "disk_folder", str(root), split.upper(), "disk_folder")
    except (FileNotFoundError, OSError) as err:
        raise FileNotFoundError(
            f"--data {data!r}: {' '.join(str(err).split())} (expected ImageFolder layout <root>/<class>/<image>)"
        ) from None
    source.enable_queue_dataset = False  # an unreadable image is reported, never replaced by another one
    return SourceImages(source, str(root))


def view_transform(config, view: str) -> Callable:
    """The run's ``original`` or ``augmented`` transform pipeline (PIL image -> normalised tensor)."""
    if view not in VIEW_LISTS:
        raise ValueError(f"view={view!r}; allowed: {list(VIEW_LISTS)}")
    entry = views_transform(config)
    if entry is None or not entry.get(view):
        raise ValueError(f"DATA.TRAIN.TRANSFORMS has no AASAEViews entry with a {view!r} list")
    return build_transforms(list(entry[view]))
