#!/usr/bin/env python
"""Import an AAVAE authors' PyTorch Lightning checkpoint into a VISSL checkpoint (``aasae-import``).

    python tools/aasae_import_lightning.py --checkpoint epoch=3199.ckpt --output aavae_cifar10.torch
    python tools/aasae_import_lightning.py --checkpoint X.ckpt --output Y.torch --decoder if_compatible \
        config=pretrain/aasae/cifar10 config.MODEL.AASAE.LATENT_DIM=128
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # vissl_aasae from a checkout

from vissl_aasae.cli import import_main as main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
