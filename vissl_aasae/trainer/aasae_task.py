"""``aasae_task`` (``TRAINER.TASK_NAME``): VISSL's ``self_supervision_task`` plus ``AASAE.PERFORMANCE``.

Everything is VISSL's task (data, optimizer, AMP grad scaler, meters, checkpoints, hooks, and the
standard train step that drives it); the only addition is that the model it builds gets the speed
switches of :mod:`vissl_aasae.trainer.aasae_performance` before it is moved to the device and
wrapped by DDP.  With every switch off (the default) it trains exactly like ``self_supervision_task``.
"""
from classy_vision.tasks import register_task
from vissl.trainer.train_task import SelfSupervisionTask

from vissl_aasae.trainer.aasae_performance import PerformanceSettings, apply_performance_settings


@register_task("aasae_task")
class AASAETask(SelfSupervisionTask):
    def __init__(self, config):
        super().__init__(config)
        self.performance = PerformanceSettings.from_config(config)

    def _build_model(self):
        return apply_performance_settings(super()._build_model(), self.performance, self.device)
