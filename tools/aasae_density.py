#!/usr/bin/env python
"""Importance-sampled log p(x) and bits/dim of a checkpoint on a data split.

    python tools/aasae_density.py --checkpoint ./checkpoints/quickstart --data embedded --split test \
        --num-samples 100 [--limit 1000] [config.KEY=value ...]

See vissl_aasae/visualize/density.py.
"""
import sys

from vissl_aasae.visualize.commands import density_main

if __name__ == "__main__":
    sys.exit(density_main())
