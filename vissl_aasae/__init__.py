"""vissl_aasae: AASAE (augmentation-augmented stochastic autoencoder) as a VISSL plugin.

Importing this package patches VISSL for today's stack (:mod:`vissl_aasae.compat`) and
registers every component with VISSL's and classy_vision's registries:

- trunk ``aasae_resnet``; heads ``aasae_stochastic_projection``, ``aasae_deterministic_projection``,
  ``aasae_resnet_decoder``; loss ``aasae_loss``;
- transform ``AASAEViews`` (+ ``AASAERandomGaussianBlur``); collator ``aasae_collator``;
  data source ``aasae_array``; task ``aasae_task`` (VISSL's task + ``AASAE.PERFORMANCE``); the hook
  generator :func:`vissl_aasae.hooks.aasae_hook_generator`.
"""

import warnings

# VISSL 0.1.6 on today's stack warns on every start: it imports pkg_resources and torchvision's deprecated
# video transforms, its losses use torch.jit.script, it composes without Hydra's version_base.  Silenced
# here, before any module of the package imports VISSL (tests/test_compat.py).
LEGACY_WARNINGS = (
    ("\nThe version_base parameter is not specified", Warning),
    ("pkg_resources is deprecated", UserWarning),
    ("`torch.jit.script` is deprecated", FutureWarning),
    (r"The 'torchvision\.transforms\._(functional|transforms)_video'", Warning),
)
for _message, _category in LEGACY_WARNINGS:
    warnings.filterwarnings("ignore", message=_message, category=_category)
del _message, _category

from vissl_aasae import compat, settings  # noqa: E402

compat.apply()
settings.register_config_defaults()  # the defaults of every plugin key, for Hydra (see settings.py)

from vissl_aasae.data import aasae_array, aasae_collator, aasae_gaussian_blur, aasae_views  # noqa: E402,F401
from vissl_aasae.losses import aasae_loss  # noqa: E402,F401
from vissl_aasae.models.heads import aasae_projection, aasae_resnet_decoder  # noqa: E402,F401
from vissl_aasae.models.trunks import aasae_resnet  # noqa: E402,F401

aasae_array.register()

from vissl_aasae import (
    evaluation,  # noqa: E402,F401  (registers the engine aasae_feature_eval)
    trainer,  # noqa: E402,F401  (registers the task aasae_task)
)

__version__ = "0.1.0"
