"""``AASAERandomGaussianBlur``: SimCLR's blur, ``RandomApply(GaussianBlur(k, sigma in [0.1, 2]), p)``.

The kernel size is ``int(0.1 * size)`` made odd (``kernel_size`` may instead be given directly).
VISSL's ``ImgPilGaussianBlur`` blurs with PIL's untruncated kernel; this one keeps the paper's.
"""

from typing import Any, Dict

import torchvision.transforms as T
from classy_vision.dataset.transforms import register_transform
from classy_vision.dataset.transforms.classy_transform import ClassyTransform


def simclr_blur_kernel(size: int) -> int:
    k = int(0.1 * size)
    return k if k % 2 == 1 else k + 1


@register_transform("AASAERandomGaussianBlur")
class AASAERandomGaussianBlur(ClassyTransform):
    def __init__(self, p: float = 0.5, size: int = 224, kernel_size: int = None, sigma_min=0.1, sigma_max=2.0):
        kernel = int(kernel_size) if kernel_size else simclr_blur_kernel(int(size))
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"AASAERandomGaussianBlur kernel_size={kernel} must be odd and positive")
        self.kernel_size = kernel
        self.transform = T.RandomApply([T.GaussianBlur(kernel, (float(sigma_min), float(sigma_max)))], p=float(p))

    def __call__(self, image):
        return self.transform(image)

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "AASAERandomGaussianBlur":
        return cls(**{k: v for k, v in config.items() if k != "name"})
