#!/usr/bin/env python
"""VISSL's launcher with the vissl_aasae plugin loaded (see vissl_aasae/launcher.py).

    python tools/run_distributed_engines.py config=pretrain/aasae/quickstart

The plugin is imported at module level on purpose: ranks started by torch.multiprocessing.spawn
re-run this module's top level, so they get the plugin's registrations too.
"""

import sys

from vissl_aasae.launcher import main

if __name__ == "__main__":
    sys.exit(main())
