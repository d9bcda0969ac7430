"""Images and transforms for the inspection commands.

``--data`` is one of:
- ``embedded``: the Fashion-MNIST subset shipped with the plugin (``aasae_array`` npz);
- a folder of images, ImageFolder-style (class sub-folders) or flat, read recursively in sorted order
  (a file that cannot be decoded raises :class:`UnreadableImage` naming it; the commands skip it);
- with ``--data-format`` (an ``aasae_array`` format: cifar10, stl10, stl10_unlabeled, fashion_mnist,
  npz), the path that data source reads.

The transforms are the run's own: the ``original`` (evaluation) or ``augmented`` list of the
``AASAEViews`` entry of ``DATA.TRAIN.TRANSFORMS``.
"""

from pathlib import Path
from typing import Callable, Optional

from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS

from vissl_aasae.images import VIEW_LISTS, views_transform


class UnreadableImage(ValueError):
    """An image file that cannot be decoded; the message starts with its path."""


class ArrayImages:
    """uint8 arrays (N x H x W [x 3]) as RGB PIL images."""

    def __init__(self, arrays, name: str):
        self.arrays = arrays
        self.name = name

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, idx: int) -> Image.Image:
        return Image.fromarray(self.arrays[idx]).convert("RGB")


class FolderImages:
    """Every image file under a folder (any depth), sorted by path."""

    def __init__(self, root: Path):
        self.name = str(root)
        self.paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
        if not self.paths:
            raise ValueError(f"--data {str(root)!r}: no image files ({', '.join(IMG_EXTENSIONS)}) under this folder")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, idx: int) -> Image.Image:
        try:
            with Image.open(self.paths[idx]) as image:
                return image.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise UnreadableImage(f"{self.paths[idx]}: {' '.join(str(err).split())}") from None


def open_images(data: str, data_format: Optional[str] = None, split: str = "test"):
    """A sized, indexable collection of RGB PIL images (see the module doc)."""
    from vissl_aasae.data.aasae_array import FORMATS, load_arrays

    if data_format is None and data == "embedded":
        data_format = "npz"
    if data_format is not None:
        if data_format not in FORMATS:
            raise ValueError(f"--data-format {data_format!r} is not an aasae_array format; allowed: {list(FORMATS)}")
        images, _ = load_arrays(data_format, data, split)
        if len(images) == 0:
            raise ValueError(f"--data {data!r} ({data_format}, split {split}) holds no images")
        return ArrayImages(images, f"{data} ({data_format}, {split})")
    root = Path(data).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"--data {data!r} is not a folder (or give --data-format, or 'embedded')")
    return FolderImages(root)


def view_transform(config, view: str) -> Callable:
    """The run's ``original`` or ``augmented`` transform pipeline (PIL image -> normalised tensor)."""
    from classy_vision.dataset.transforms import build_transforms

    import vissl_aasae  # noqa: F401  (registers the plugin's transforms)

    if view not in VIEW_LISTS:
        raise ValueError(f"view={view!r}; allowed: {list(VIEW_LISTS)}")
    entry = views_transform(config)
    if entry is None or not entry.get(view):
        raise ValueError(f"DATA.TRAIN.TRANSFORMS has no AASAEViews entry with a {view!r} list")
    return build_transforms(list(entry[view]))
