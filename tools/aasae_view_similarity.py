#!/usr/bin/env python
"""The paper's Fig. 5 for a checkpoint: cosine similarities of V augmented views of E examples.

    python tools/aasae_view_similarity.py --checkpoint ./checkpoints/quickstart --data embedded \
        --examples 10 --views 5 [--output fig5.png] [config.KEY=value ...]

Prints the same-example and different-example means; see vissl_aasae/visualize/view_similarity.py.
"""
import sys

from vissl_aasae.visualize.commands import view_similarity_main

if __name__ == "__main__":
    sys.exit(view_similarity_main())
