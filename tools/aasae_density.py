#!/usr/bin/env python
"""Importance-sampled log p(x) and bits/dim of a checkpoint on a data split (``aasae-density``).

    python tools/aasae_density.py --checkpoint ./checkpoints/quickstart --data embedded --split test \
        --num-samples 100 [--limit 1000] [config.KEY=value ...]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # vissl_aasae from a checkout

from vissl_aasae.cli import density_main as main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
