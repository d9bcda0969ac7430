"""Behaviour changes to VISSL that the plugin promises (README "What a run guarantees"): atomic
checkpoints that are never written with NaN weights, links that resolve from anywhere, resume from
the newest complete checkpoint, image folders with empty classes and unreadable images, DataLoader
workers that die with their trainer, no secrets in the start-up log, Ctrl-C that is not reported
as success, the plugin's hooks in SLURM jobs, a console without VISSL's start-up dumps.

Each ``patch_*`` says what it changes in VISSL and why (its one-line docstring; a test fails without
it) and installs an adapter with VISSL's signature that calls down into the plugin's core for the
behaviour: :mod:`vissl_aasae.run` (a run's lock, resume, finished check, non-finite refusal),
:mod:`vissl_aasae.checkpoints` (atomic writes and links), :mod:`vissl_aasae.data.workers`,
:mod:`vissl_aasae.console`.  It imports nothing above them (no launcher, hooks or add-on)."""

import logging
import os
import sys

import torch
from torchvision.datasets import ImageFolder
from vissl.utils import distributed_launcher

from vissl_aasae import console, run
from vissl_aasae.checkpoints import atomic_symlink, atomic_write
from vissl_aasae.compat._patching import _once
from vissl_aasae.data.workers import watch_main_process
from vissl_aasae.errors import TrainingInterrupted
from vissl_aasae.settings import RunSettings


def atomic_save_checkpoint(checkpoint_folder, state, checkpoint_file="checkpoint.torch"):
    """VISSL's ``save_checkpoint``: refused for non-finite weights (:func:`vissl_aasae.run.refuse_non_finite`),
    then written to a temporary file beside the target, flushed to disk and renamed into place."""
    run.refuse_non_finite(state, checkpoint_folder)
    if not run.is_local(checkpoint_folder):
        return atomic_save_checkpoint.__wrapped__(checkpoint_folder, state, checkpoint_file)
    os.makedirs(checkpoint_folder, exist_ok=True)
    return atomic_write(os.path.join(checkpoint_folder, checkpoint_file), lambda f: torch.save(state, f))


def atomic_file_symlink(source, link):
    """VISSL's ``create_file_symlink``: :func:`vissl_aasae.checkpoints.atomic_symlink` (a fresh link renamed
    over the old one, its target relative to its own folder) for local paths."""
    if not (run.is_local(source) and run.is_local(link)):
        return atomic_file_symlink.__wrapped__(source, link)
    atomic_symlink(source, link)


@_once
def patch_atomic_checkpoints():
    """VISSL writes checkpoints in place and replaces checkpoint.torch by rm + symlink: a kill mid-write leaves a truncated file or no link."""  # noqa: E501 (the patch's one-line reason)
    from vissl.utils import checkpoint
    from vissl.utils import io as vissl_io

    atomic_save_checkpoint.__wrapped__ = checkpoint.save_checkpoint
    atomic_file_symlink.__wrapped__ = vissl_io.create_file_symlink
    checkpoint.save_checkpoint = atomic_save_checkpoint
    checkpoint.create_file_symlink = atomic_file_symlink
    vissl_io.create_file_symlink = atomic_file_symlink


def latest_checkpoint_file(
    checkpoint_folder: str, config, skip_final: bool = False, latest_checkpoint_resume_num: int = 1
):
    """VISSL's ``get_checkpoint_resume_files`` for a local folder: the newest complete checkpoint
    (:func:`vissl_aasae.run.newest_complete_checkpoint`: checkpoint.torch's target, else the newest file;
    a truncated or corrupt one is passed over, with a warning naming it).

    VISSL's own choice looks only at ``model_iteration*`` files when CHECKPOINT_ITER_FREQUENCY > 0
    (so an end-of-epoch ``model_phase*`` checkpoint written later is ignored) and ignores the link.
    """
    if not run.is_local(checkpoint_folder) or latest_checkpoint_resume_num != 1:
        return latest_checkpoint_file.__wrapped__(checkpoint_folder, config, skip_final, latest_checkpoint_resume_num)
    return run.newest_complete_checkpoint(checkpoint_folder, skip_final)


@_once
def patch_resume_choice():
    """With CHECKPOINT_ITER_FREQUENCY > 0 VISSL resumes from the newest model_iteration file even when a later model_phase checkpoint exists."""  # noqa: E501 (the patch's one-line reason)
    from vissl.utils import checkpoint

    latest_checkpoint_file.__wrapped__ = checkpoint.get_checkpoint_resume_files
    checkpoint.get_checkpoint_resume_files = latest_checkpoint_file


def training_finished(cfg, checkpoint_folder: str):
    """VISSL's check, except that a final checkpoint which is not complete (truncated, corrupt) does not
    count (:func:`vissl_aasae.run.final_checkpoint_complete`): the run then resumes from the newest
    complete checkpoint and writes the final one again."""
    if not training_finished.__wrapped__(cfg, checkpoint_folder):
        return False
    return not run.is_local(checkpoint_folder) or run.final_checkpoint_complete(checkpoint_folder)


@_once
def patch_finished_check():
    """VISSL calls a run finished when a model_final file exists, even a truncated one, and then never trains again."""  # noqa: E501 (the patch's one-line reason)
    from vissl.utils import checkpoint, distributed_launcher

    training_finished.__wrapped__ = checkpoint.is_training_finished
    checkpoint.is_training_finished = training_finished
    distributed_launcher.is_training_finished = training_finished


class _LazySample:
    """(image, target) of an ImageFolder whose image is decoded only when item 0 is read."""

    def __init__(self, folder, index):
        self.folder, self.index = folder, index

    def __getitem__(self, i):
        path, target = self.folder.samples[self.index]
        if i in (1, -1):
            return target
        if i in (0, -2):
            return self.folder.decode(path)
        raise IndexError(i)

    def __len__(self):
        return 2

    def __repr__(self):  # VISSL's "Couldn't load: {sample}" warning names the file
        return self.folder.samples[self.index][0]


class ImageFolderAllowingEmptyClasses(ImageFolder):
    """torchvision's ImageFolder that skips empty class folders (with a warning) instead of refusing
    them.  Also: items decode lazily, because VISSL's disk_folder reads ``dataset[idx]`` once outside
    its try/except (an unreadable file then kills the run instead of being skipped) and once inside
    (every image decoded twice).  Defined at module level: DataLoader workers started by spawn or
    forkserver (VISSL's default) receive the dataset pickled, which needs the class by name."""

    def decode(self, path):
        image = self.loader(path)
        return self.transform(image) if self.transform is not None else image

    def __getitem__(self, index):
        return _LazySample(self, index)

    def __init__(self, root, *args, **kwargs):
        kwargs.setdefault("allow_empty", True)
        super().__init__(root, *args, **kwargs)
        empty = sorted(set(self.classes) - {self.classes[t] for t in self.targets})
        if empty:
            logging.warning(f"{root}: {len(empty)} empty class folder(s) skipped: {empty[:10]}")
        if not self.samples:
            raise FileNotFoundError(f"{root} holds no image files")


@_once
def patch_empty_class_folders():
    """VISSL's disk_folder: torchvision's ImageFolder refuses one empty class folder, and a corrupt image is read outside VISSL's try/except."""  # noqa: E501 (the patch's one-line reason)
    from vissl.data import disk_dataset

    disk_dataset.ImageFolder = ImageFolderAllowingEmptyClasses


def vissl_worker_init(worker_id: int) -> None:
    """VISSL's own worker seeding, plus :func:`watch_main_process`."""
    from vissl.utils.misc import set_dataloader_seeds

    watch_main_process(worker_id)
    set_dataloader_seeds(worker_id)


@_once
def patch_orphaned_workers():
    """A trainer killed under forkserver (VISSL's default method) leaves its DataLoader workers running as orphans."""
    import vissl.data
    from vissl.trainer import train_task

    build_dataloader = vissl.data.build_dataloader

    def build_dataloader_with_watched_workers(*args, **kwargs):
        kwargs.setdefault("worker_init_fn", vissl_worker_init)
        return build_dataloader(*args, **kwargs)

    # the trainer imported the function by name; benchmarks/throughput.py calls vissl.data's
    vissl.data.build_dataloader = train_task.build_dataloader = build_dataloader_with_watched_workers


def log_environment_setting(cfg) -> bool:
    """``config.AASAE.LOG_ENVIRONMENT`` (default False)."""
    return RunSettings.from_config(cfg).log_environment


def print_environment(current_env) -> None:
    """VISSL's ``print_system_env_info``: :func:`vissl_aasae.console.log_environment` (the harmless names
    only) unless ``config.AASAE.LOG_ENVIRONMENT`` is on."""
    if console.logs_all_environment():
        return print_environment.__wrapped__(current_env)
    console.log_environment(current_env)


def distributed_worker(*args, **kwargs):
    """VISSL's per-rank entry point with the plugin's run settings applied, and Ctrl-C turned into
    :class:`TrainingInterrupted` (VISSL's launch_distributed would swallow the KeyboardInterrupt)."""
    cfg = kwargs.get("cfg", args[1] if len(args) > 1 else None)
    console.configure(
        verbose=bool(cfg.get("VERBOSE", False)) if cfg is not None else False,
        log_environment=log_environment_setting(cfg) if cfg is not None else False,
    )
    try:
        return distributed_worker.__wrapped__(*args, **kwargs)
    except KeyboardInterrupt:
        raise TrainingInterrupted("interrupted (SIGINT)") from None


@_once
def patch_environment_dump():
    """VISSL logs every environment variable (tokens, keys, passwords) to the console and log.txt at start-up."""
    import vissl.engines.extract_cluster
    import vissl.engines.extract_features
    import vissl.engines.train
    from vissl.utils import env

    print_environment.__wrapped__ = env.print_system_env_info
    for module in (env, vissl.engines.train, vissl.engines.extract_features, vissl.engines.extract_cluster):
        module.print_system_env_info = print_environment


@_once
def patch_interrupts():
    """VISSL's launch_distributed catches KeyboardInterrupt, logs "All Done!" and returns: an interrupted run exits 0."""  # noqa: E501 (the patch's one-line reason)
    from vissl.utils import distributed_launcher

    distributed_worker.__wrapped__ = distributed_launcher._distributed_worker
    distributed_launcher._distributed_worker = distributed_worker


# the hooks of the SLURM jobs VISSL submits: given by the launcher (compat imports no hooks)
_SLURM = {"hook_generator": None}


def run_slurm_jobs_with(hook_generator) -> None:
    """The hook generator of every SLURM job submitted from now on.  It travels with the job, pickled by
    reference: unpickling it in the job's process imports its module, which loads the plugin there."""
    _SLURM["hook_generator"] = hook_generator


class AASAESlurmJob(distributed_launcher._ResumableSlurmJob):
    """VISSL's resumable SLURM job with the plugin's hooks (:func:`run_slurm_jobs_with`); the job of the
    first node holds the run lock (:class:`vissl_aasae.run.RunLock`) while it trains.  Defined at module
    level: submitit unpickles it in the job by this module's name."""

    def __init__(self, engine_name: str, config, hook_generator=None):
        super().__init__(engine_name=engine_name, config=config)
        self.hook_generator = hook_generator or _SLURM["hook_generator"]

    def __call__(self):
        import submitit

        lock = None
        folder = self.config.CHECKPOINT.DIR
        if submitit.JobEnvironment().global_rank == 0 and run.is_local(folder):
            # the job that trains holds the run lock (the submitting launcher has exited by now);
            # a requeued job takes it again once the preempted one is gone
            lock = run.RunLock(folder).acquire()
            if lock.stale_note():
                print(lock.stale_note())
        original = distributed_launcher.default_hook_generator
        distributed_launcher.default_hook_generator = self.hook_generator or original
        try:
            return super().__call__()
        finally:
            distributed_launcher.default_hook_generator = original
            if lock is not None:
                lock.release()

    def checkpoint(self):  # submitit's requeue on preemption: the same job again
        import submitit

        return submitit.helpers.DelayedSubmission(type(self)(self.engine_name, self.config, self.hook_generator))


@_once
def patch_slurm_job():
    """VISSL's SLURM job (config.SLURM.USE_SLURM) runs VISSL's default hooks in a process that never imports the plugin: its components are unknown there."""  # noqa: E501 (the patch's one-line reason)
    distributed_launcher._ResumableSlurmJob = AASAESlurmJob


def setup_logging(name, output_dir=None, rank=0):
    """VISSL's logging set-up (console and log.txt), with :class:`vissl_aasae.console.ConsoleFilter` on
    the console only."""
    setup_logging.__wrapped__(name, output_dir=output_dir, rank=rank)
    for handler in logging.root.handlers:
        if isinstance(handler, logging.StreamHandler) and getattr(handler, "stream", None) is sys.stdout:
            handler.addFilter(console.ConsoleFilter())


@_once
def patch_console_output():
    """VISSL prints its whole config, system, environment and model to the console at start-up (~800 lines for the quickstart): they belong in log.txt."""  # noqa: E501 (the patch's one-line reason)
    import vissl.engines.extract_cluster
    import vissl.engines.extract_features
    import vissl.engines.train
    from vissl.utils import distributed_launcher, logger

    setup_logging.__wrapped__ = logger.setup_logging
    for module in (
        logger,
        vissl.engines.train,
        vissl.engines.extract_features,
        vissl.engines.extract_cluster,
        distributed_launcher,
    ):
        if getattr(module, "setup_logging", None) is setup_logging.__wrapped__:
            module.setup_logging = setup_logging
