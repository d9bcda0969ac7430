"""The plugin, loaded into this process: VISSL patched for today's stack, the defaults of every plugin
key in Hydra's config store, and every component registered with VISSL's and classy_vision's registries:

- trunk ``aasae_resnet``; heads ``aasae_stochastic_projection``, ``aasae_deterministic_projection``,
  ``aasae_resnet_decoder``; loss ``aasae_loss``;
- transform ``AASAEViews`` (+ ``AASAERandomGaussianBlur``); collator ``aasae_collator``;
  data source ``aasae_array``; task ``aasae_task`` (VISSL's task + ``AASAE.PERFORMANCE``).

Importing this module is what loads the plugin (the package's ``__init__`` loads nothing, so that the
command line answers ``--help`` without torch): config composition (:mod:`vissl_aasae.config_compose`)
and the add-ons that build the plugin's components import it; the launcher does, and so every
spawned rank and SLURM job, which unpickle the launcher's hook generator.  The add-ons register their
own components (the evaluation engine ``aasae_feature_eval``: :mod:`vissl_aasae.evaluation`).

The patches go first: a module imported after them that binds a patched VISSL function by name gets
the patched one.
"""

from vissl_aasae import compat, settings

compat.apply()
settings.register_config_defaults()  # the defaults of every plugin key, for Hydra (see settings.py)

from vissl_aasae.data import aasae_array, aasae_collator, aasae_gaussian_blur, aasae_views  # noqa: E402,F401
from vissl_aasae.losses import aasae_loss  # noqa: E402,F401
from vissl_aasae.models.heads import aasae_projection, aasae_resnet_decoder  # noqa: E402,F401
from vissl_aasae.models.trunks import aasae_resnet  # noqa: E402,F401
from vissl_aasae.trainer import aasae_task  # noqa: E402,F401

aasae_array.register()
