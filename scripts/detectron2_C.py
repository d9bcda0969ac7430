"""detectron2._C for an install without the compiled extension (scripts/install_detectron2.sh).

detectron2 imports ``_C`` at import time (``detectron2.layers``), although the Faster R-CNN C4/FPN
models with Pascal VOC evaluation never call it.  This module takes its place, so that detectron2
imports on its own, as its users run it (``tools/train_net.py``-style scripts); any compiled op
taken from it raises a clear error when called.
"""

_HELP = (
    "detectron2 was installed without its compiled extension (scripts/install_detectron2.sh of "
    "vissl_aasae), so detectron2._C.{name} is not available. Rotated boxes, deformable convolution "
    "and the fast COCO evaluator need a source build of detectron2; Faster R-CNN C4/FPN with "
    "PascalVOC evaluation does not."
)


def get_compiler_version() -> str:  # asked by detectron2's collect_env
    return "none: detectron2._C not built"


def get_cuda_version() -> str:
    return "none: detectron2._C not built"


def has_cuda() -> bool:
    return False


def __getattr__(name):
    if name.startswith("__") and name.endswith("__"):
        raise AttributeError(name)

    def unavailable(*args, **kwargs):
        raise RuntimeError(_HELP.format(name=name))

    unavailable.__name__ = unavailable.__qualname__ = name
    return unavailable
