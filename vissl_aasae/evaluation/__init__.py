"""Evaluation of AASAE trunks: the paper's protocols on VISSL's benchmark machinery, and a CPU path.

- ``configs/config/benchmark/aasae/{linear,semi_supervised}/*``: VISSL's trainer (frozen-trunk linear
  classifier; full fine-tuning with separate trunk/head learning rates).
- ``configs/config/benchmark/aasae/knn/*``: engine ``aasae_feature_eval``
  (:mod:`~vissl_aasae.evaluation.aasae_feature_eval`), kNN on frozen features, CPU or GPU.
- Reusable parts: :mod:`~.trunk_weights` (load a checkpoint's trunk, refuse one that does not fit),
  :mod:`~.features` (frozen features of a VISSL data split), :mod:`~.knn`, :mod:`~.linear_probe`,
  :mod:`~.frozen_trunk` (the two together, as ``benchmarks/evaluate.py`` runs them),
  :mod:`~.eval_config_check` (the launcher's pre-flight check), :mod:`~.filelists` (ImageNet 1%/10%
  subsets as VISSL ``disk_filelist`` files).

Importing this package registers the engine.
"""

from vissl_aasae.evaluation import aasae_feature_eval  # noqa: F401  (registers engine aasae_feature_eval)
