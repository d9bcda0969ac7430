"""The errors the plugin's layers share, and the exit codes they end a command with.

At the bottom of the package: it imports nothing, so every layer (and the command line, which must
not load torch) can raise or catch these.  Errors that belong to one module stay there
(:class:`vissl_aasae.checkpoints.CheckpointError`, ...).
"""

# exit codes (README "What a run guarantees"); an interruption exits 128 + the signal's number
EXIT_BAD_INPUT = 2  # a config, data, a locked folder, a differing config, a bad argument: one ``error:`` line
EXIT_DIVERGED = 3  # a NaN/inf loss or weights, or a loss that grew by orders of magnitude


class ConfigError(ValueError):
    """A config problem found before training; its message names the key and the value."""


class RunLocked(ConfigError):
    """CHECKPOINT.DIR is held by another running job."""


class TrainingInterrupted(Exception):
    """Ctrl-C (SIGINT) or SIGTERM during a run; an Exception, not a KeyboardInterrupt, because VISSL's
    launcher swallows KeyboardInterrupt and reports success."""


class UnreadableDataError(ValueError):
    """Too many images of the data could not be read; the message names some of them."""
