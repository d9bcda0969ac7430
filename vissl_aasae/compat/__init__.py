"""The only place where the plugin patches third-party code, in three kinds:

- :mod:`.stack`: fixes for today's stack (torch 2.x, no apex, Hydra 1.3): VISSL as it is would be
  slow or fail late;
- :mod:`.behaviour`: behaviour the plugin promises that VISSL lacks (atomic checkpoints, resume from
  the newest complete one, bad images skipped, workers that die with the trainer, no secrets in the
  log, Ctrl-C reported as an interruption, the plugin's hooks in SLURM jobs, a console without
  VISSL's start-up dumps), each an adapter calling down into the core (:mod:`vissl_aasae.run`, ...);
- :mod:`.detectron2`: detectron2 v0.5 without its compiled extension (the detection benchmark).

Each patch is a small function with a one-line reason (its docstring) and a test that fails without
it (tests/test_compat.py, test_reliability.py, test_detection.py).  :func:`apply` is idempotent;
importing :mod:`vissl_aasae.registry` calls it, so every process that loads the plugin (the
launcher, and the spawned ranks and SLURM jobs, which unpickle the launcher's hook generator) is
patched; a DataLoader worker unpickles the patches' classes and functions by name (they are defined
at module level for that).  The patches are written against VISSL 0.1.6 and classy_vision 0.7.0:
any other version is refused here, before anything is patched.  This package imports nothing of the
plugin above the core (no launcher, hooks, add-on or command line: tests/test_layers.py).
"""

import importlib.metadata

from vissl_aasae.compat import behaviour, stack
from vissl_aasae.compat._patching import _APPLIED  # noqa: F401  (tests reset it)
from vissl_aasae.compat.behaviour import (  # noqa: F401  (the names tools and tests use)
    TrainingInterrupted,
    atomic_file_symlink,
    atomic_save_checkpoint,
    latest_checkpoint_file,
    log_environment_setting,
    run_slurm_jobs_with,
    vissl_worker_init,
)
from vissl_aasae.compat.detectron2 import apply_detectron2_patches  # noqa: F401

# the versions every patch was written and tested against
SUPPORTED = {"vissl": "0.1.6", "classy_vision": "0.7.0"}
DISTRIBUTIONS = {"vissl": ("vissl",), "classy_vision": ("classy-vision", "classy_vision")}


def installed_version(package: str):
    for name in DISTRIBUTIONS[package]:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def check_versions() -> None:
    """Refuse a VISSL / classy_vision other than the ones the patches were written for."""
    for package, wanted in SUPPORTED.items():
        found = installed_version(package)
        if found is not None and found != wanted:
            raise RuntimeError(
                f"vissl_aasae needs {package} {wanted}, found {found}: its compatibility patches "
                f"(vissl_aasae/compat) were written against {wanted}; run ./setup.sh, or "
                f"pip install --no-deps {DISTRIBUTIONS[package][0]}=={wanted}"
            )


def apply() -> None:
    """Check the versions, then apply every patch (idempotent)."""
    check_versions()
    stack.patch_broadcast_object()
    stack.patch_apex_defaults()
    stack.patch_forkserver_preload()
    behaviour.patch_atomic_checkpoints()
    behaviour.patch_resume_choice()
    behaviour.patch_finished_check()
    behaviour.patch_empty_class_folders()
    behaviour.patch_orphaned_workers()
    behaviour.patch_environment_dump()
    behaviour.patch_interrupts()
    behaviour.patch_slurm_job()
    behaviour.patch_console_output()
