"""The accuracy of a benchmark run on the console: one line per test phase.

VISSL's trainer writes each phase's meters to ``<CHECKPOINT.DIR>/metrics.json`` (its
``LogLossMetricsCheckpointHook``) and logs them as ``Rank: 0, name: test_accuracy_list_meter, ...``,
a line the console leaves to ``log.txt``.  For the linear and semi-supervised benchmarks
(``config=benchmark/aasae/{linear,semi_supervised}/...``) this hook, added after VISSL's hooks, prints
what a user waits for, read from the same meters once they are synced::

    AASAE benchmark: linear top-1 83.20 %, top-5 99.10 % (test after epoch 90 of 90, 10000 images), metrics in ...

The kNN benchmark (engine ``aasae_feature_eval``) prints the same kind of line through
:func:`benchmark_line`.
"""

import os
from typing import Dict, Optional, Tuple

from classy_vision.generic.distributed_util import is_primary
from classy_vision.hooks import ClassyHook

PREFIX = "AASAE benchmark: "


def benchmark_kind(config) -> str:
    """``linear`` (frozen trunk, a classifier on its features) or ``fine-tuned`` (the whole network)."""
    settings = config.MODEL.FEATURE_EVAL_SETTINGS
    return "linear" if settings.EVAL_MODE_ON and settings.FREEZE_TRUNK_ONLY else "fine-tuned"


def benchmark_line(groups, where: str, images: Optional[int], path: str) -> str:
    """``AASAE benchmark: linear top-1 83.20 %, top-5 99.10 % (<where>, N images), metrics in <path>``;
    ``groups``: (what, {score name: %}) pairs, e.g. ``[("linear", {"top-1": 83.2, "top-5": 99.1})]``."""
    parts = "; ".join(
        f"{what} " + ", ".join(f"{name} {value:.2f} %" for name, value in scores.items()) for what, scores in groups
    )
    count = f", {images} images" if images else ""
    return f"{PREFIX}{parts} ({where}{count}), metrics in {path}"


def meter_scores(meter) -> Tuple[Optional[Dict[str, float]], Optional[int]]:
    """({"top-1": %, ...} of an accuracy meter (one entry per output when it has several), images it
    counted), or (None, None) for a meter that is not an accuracy meter."""
    value = getattr(meter, "value", None)
    if not isinstance(value, dict) or not any(str(k).startswith("top_") for k in value):
        return None, None
    scores = {}
    for top, per_output in value.items():
        outputs = per_output if isinstance(per_output, dict) else {"": per_output}
        for output, score in outputs.items():
            numbers = score if isinstance(score, list) else [score]
            for i, number in enumerate(numbers):
                label = str(output) + (f" #{i}" if len(numbers) > 1 else "")
                named = len(outputs) > 1 or len(numbers) > 1
                scores[top.replace("_", "-") + (f" ({label})" if named else "")] = float(number)
    counted = [getattr(m, "_total_sample_count", None) for m in getattr(meter, "_meters", [])]
    images = int(counted[0]) if counted and counted[0] is not None else None
    return scores, images


class AASAEBenchmarkReportHook(ClassyHook):
    on_start = ClassyHook._noop
    on_phase_start = ClassyHook._noop
    on_forward = ClassyHook._noop
    on_loss_and_meter = ClassyHook._noop
    on_backward = ClassyHook._noop
    on_update = ClassyHook._noop
    on_step = ClassyHook._noop
    on_end = ClassyHook._noop

    def __init__(self, config):
        super().__init__()
        self.kind = benchmark_kind(config)
        self.lines = []  # what this hook printed

    def on_phase_end(self, task) -> None:
        if task.train or not is_primary():
            return
        path = os.path.abspath(os.path.join(task.checkpoint_folder, "metrics.json"))
        where = f"test after epoch {int(task.train_phase_idx) + 1} of {int(task.num_train_phases)}"
        for meter in task.meters:
            scores, images = meter_scores(meter)
            if scores:
                line = benchmark_line([(self.kind, scores)], where, images, path)
                self.lines.append(line)
                print(line, flush=True)
