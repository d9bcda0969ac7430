#!/usr/bin/env python
"""Trunk features of a data set split as .npy, on CPU or GPU (``aasae-features``).

    python tools/aasae_extract_features.py --checkpoint checkpoints/quickstart/checkpoint.torch \
        --output features/ --split test config=pretrain/aasae/quickstart
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # vissl_aasae from a checkout

from vissl_aasae.cli import features_main as main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
