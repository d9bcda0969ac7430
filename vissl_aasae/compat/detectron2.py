"""detectron2 v0.5 on today's stack, installed by scripts/install_detectron2.sh without its compiled
extension: the placeholder for ``detectron2._C`` (the install also writes it into the package, so
that detectron2 imports on its own) and aliases that Pillow >= 10 and numpy >= 1.24 removed.
:func:`apply_detectron2_patches` runs before detectron2 is imported (the detection benchmark)."""

import importlib.machinery
import importlib.util
import os
import sys
import types

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
    """Whether the installed detectron2 ships a ``_C`` (the compiled one, or the Python stand-in that
    scripts/install_detectron2.sh puts in its place), looked up on disk without importing detectron2."""
    spec = importlib.util.find_spec("detectron2")
    if spec is None or not spec.submodule_search_locations:
        return False
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES) + (".py",)
    for folder in spec.submodule_search_locations:
        if any(f.startswith("_C.") and f.endswith(suffixes) for f in os.listdir(folder)):
            return True
    return False


def install_missing_extension_placeholder() -> None:
    """detectron2.layers imports the compiled detectron2._C at import time, and our install has none."""
    if _EXTENSION in sys.modules or _has_compiled_extension():
        return
    if "detectron2.layers" in sys.modules:
        raise RuntimeError("apply_detectron2_patches() must run before detectron2.layers is imported")
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
