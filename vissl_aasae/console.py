"""What the console shows of a run: VISSL's log lines filtered, and the environment it logs at start-up.

- :class:`ConsoleFilter`: warnings and errors, the plugin's own lines and VISSL's short status lines
  reach the console; VISSL's long dumps and per-iteration lines go to log.txt only (``config.VERBOSE``
  shows everything);
- :func:`log_environment`: the environment variables named in :data:`HARMLESS_ENVIRONMENT` and how
  many others were left out (they may hold secrets); ``config.AASAE.LOG_ENVIRONMENT`` logs them all.

:func:`configure` sets both switches in a process (each rank, from its config).  The compat patches
put them into VISSL's logging set-up and its start-up dump (:mod:`vissl_aasae.compat.behaviour`).
"""

import logging

# environment variables that carry no secrets: logged at start-up (all others only on request)
HARMLESS_ENVIRONMENT = (
    "CUDA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "NCCL_DEBUG",
    "NCCL_SOCKET_NTHREADS",
    "NCCL_NSOCKS_PERTHREAD",
    "PYTHONHASHSEED",
    "SLURM_JOB_ID",
    "SLURM_PROCID",
    "SLURM_NODEID",
    "SLURM_NTASKS",
    "HOSTNAME",
    "VIRTUAL_ENV",
    "CONDA_DEFAULT_ENV",
)
_CONSOLE = {"verbose": False}
_ENVIRONMENT_LOGGING = {"all": False}


def configure(verbose: bool, log_environment: bool) -> None:
    """This process's switches: ``config.VERBOSE`` and ``config.AASAE.LOG_ENVIRONMENT``."""
    _CONSOLE["verbose"] = bool(verbose)
    _ENVIRONMENT_LOGGING["all"] = bool(log_environment)


def logs_all_environment() -> bool:
    return _ENVIRONMENT_LOGGING["all"]


def log_environment(current_env) -> None:
    """The harmless names of ``current_env`` and their values, one per line, then how many were left out."""
    shown = sorted(k for k in current_env if k in HARMLESS_ENVIRONMENT)
    for key in shown:
        logging.info(f"{key}:\t{current_env[key]}")
    logging.info(
        f"{len(current_env) - len(shown)} other environment variables not logged (they may hold secrets); "
        "config.AASAE.LOG_ENVIRONMENT=True logs them all"
    )


class ConsoleFilter:
    """What a user reads on the console: warnings and errors, the plugin's own lines (progress, loss
    parts, summary) and VISSL's short status lines; VISSL's long dumps (the whole config, the system
    and environment, the model and the optimizer's parameter groups, the data file lists) and its
    per-iteration lines (the plugin's carry the same progress) go to log.txt only.  ``config.VERBOSE``
    shows everything."""

    QUIET_FILES = ("hydra_config.py", "env.py", "optimizer_helper.py", "ssl_dataset.py", "collect_env.py")
    QUIET_PREFIXES = (
        "System config:",
        "Model is:",
        "Loss is:",
        "Rank: ",
        "Env set for rank",
        "Spawning process",
        "Setting seed",
        "MACHINE SEED",
        "Set start method",
        "Using Distributed init method",
        "| initialized host",
        "Broadcast model BN buffers",
        "Synchronized Batch Normalization",
        "Building model",
        "Not using Automatic Mixed Precision",
        "other environment variables",
        "All Done!",  # VISSL's last lines: the plugin's summary is the run's last console line
        "Shutting down loggers",
    )

    def filter(self, record) -> bool:
        if _CONSOLE["verbose"] or record.levelno >= logging.WARNING:
            return True
        if record.filename in self.QUIET_FILES:
            return False
        message = record.getMessage() if record.args else str(record.msg)
        return not message.startswith(self.QUIET_PREFIXES)
