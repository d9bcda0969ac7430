"""``AASAEViews``: one sample -> (model input, target), the pair AASAE trains on.

The encoder sees an augmented view ``x+ ~ A(x)``; the loss scores the *original* image ``x``
under the evaluation transform.  Placed as the only entry of ``DATA.TRAIN.TRANSFORMS``::

    - name: AASAEViews
      original: [...]         # evaluation transform, ends with ToTensor + Normalize
      augmented: [...]        # SimCLR pipeline, ends with ToTensor + Normalize

Each list holds ordinary VISSL/classy/torchvision transform configs.  The ``aasae_collator``
splits the pairs into ``data`` (model input) and ``original`` (target); which view is the model
input (augmented for AASAE/AAAE, original for AE/VAE) is the collator's ``input`` parameter, so
that a variant mix-in changes one scalar instead of the dataset's transform list.
"""

from typing import Any, Dict

from classy_vision.dataset.transforms import build_transforms, register_transform
from classy_vision.dataset.transforms.classy_transform import ClassyTransform


class ViewPair(tuple):
    """(augmented view, original) of one image; a type of its own so the collator can tell it apart."""


@register_transform("AASAEViews")
class AASAEViews(ClassyTransform):
    def __init__(self, original, augmented):
        self.original = original
        self.augmented = augmented

    def __call__(self, image):
        return ViewPair((self.augmented(image), self.original(image)))

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "AASAEViews":
        for key in ("original", "augmented"):
            if not config.get(key):
                raise ValueError(f"AASAEViews needs a non-empty {key!r} transform list")
        return cls(build_transforms(list(config["original"])), build_transforms(list(config["augmented"])))
