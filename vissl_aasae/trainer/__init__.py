"""Training-loop components: the ``aasae_task`` task and its ``AASAE.PERFORMANCE`` speed switches."""

from vissl_aasae.trainer import aasae_task  # noqa: F401  (registers TRAINER.TASK_NAME aasae_task)
