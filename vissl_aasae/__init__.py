"""vissl_aasae: AASAE (augmentation-augmented stochastic autoencoder) as a VISSL plugin.

Importing the package loads nothing but Python's ``warnings``: the command line
(:mod:`vissl_aasae.cli`) answers ``--help`` without torch.  The plugin is loaded into a process (VISSL
patched, every component registered) by importing :mod:`vissl_aasae.registry`, which the launcher,
config composition and the add-ons do.  The layers, bottom to top: docs/ARCHITECTURE.md.
"""

import warnings

__version__ = "0.1.0"

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
