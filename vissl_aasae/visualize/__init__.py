"""Looking at what an AASAE learns.

- :mod:`.checkpoint`: a trained model and its config back from a VISSL checkpoint;
- :mod:`.data`: the images (``embedded``, a folder, an ``aasae_array`` format) and the run's transforms;
- :mod:`.view_similarity`: the paper's Fig. 5 (``tools/aasae_view_similarity.py``);
- :mod:`.density`: importance-sampled ``log p(x)`` and bits/dim (``tools/aasae_density.py``).

Core modules they use: :mod:`vissl_aasae.progress` (the progress line of long commands),
:mod:`vissl_aasae.images` (de-normalisation, the original | augmented | reconstruction grid).
The agreement of ``q(z|x+)`` and ``q(z|x)`` is core (:mod:`vissl_aasae.models.posterior`): training
uses the same extra encoder pass.  The training-time side (TensorBoard scalars and images, PNG
grids) is in :mod:`vissl_aasae.hooks`.
"""
