#!/usr/bin/env python
"""The paper's Fig. 5 for a checkpoint (``aasae-view-similarity``).

python tools/aasae_view_similarity.py --checkpoint ./checkpoints/quickstart --examples 10 --views 5
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # vissl_aasae from a checkout

from vissl_aasae.cli import view_similarity_main as main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
