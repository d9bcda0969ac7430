"""``config.AASAE.METRICS``: how often the AASAE hooks log, inspect the posterior and draw images.

    AASAE:
      METRICS:
        LOG_FREQUENCY: null        # loss parts every N iterations; null: config.LOG_FREQUENCY; 0: never
        POSTERIOR_FREQUENCY: null  # q(z|x+) vs q(z|x) (one extra no-grad encoder pass); null: LOG_FREQUENCY; 0: never
        IMAGE_FREQUENCY: 1000      # reconstruction grids every N iterations, and at the end; 0: end only
        NUM_IMAGES: 8              # images per grid; 0: no grids

Iterations are VISSL's ``task.iteration`` during the step (0 for the first step): an event with
frequency N happens on the iterations divisible by N, the first one included.
"""
from dataclasses import dataclass

KEYS = ("LOG_FREQUENCY", "POSTERIOR_FREQUENCY", "IMAGE_FREQUENCY", "NUM_IMAGES")


@dataclass(frozen=True)
class MetricsSettings:
    log_frequency: int
    posterior_frequency: int
    image_frequency: int
    num_images: int


def _count(section, key, default):
    value = section.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"AASAE.METRICS.{key}={value!r} must be an integer >= 0 (or null)")
    return value


def metrics_settings(config) -> MetricsSettings:
    section = (config.get("AASAE") or {}).get("METRICS") or {}
    unknown = sorted(set(section) - set(KEYS))
    if unknown:
        raise ValueError(f"AASAE.METRICS has unknown keys {unknown}; known: {list(KEYS)}")
    log_frequency = _count(section, "LOG_FREQUENCY", int(config.LOG_FREQUENCY))
    return MetricsSettings(
        log_frequency=log_frequency,
        posterior_frequency=_count(section, "POSTERIOR_FREQUENCY", log_frequency),
        image_frequency=_count(section, "IMAGE_FREQUENCY", 1000),
        num_images=_count(section, "NUM_IMAGES", 8),
    )


def due(iteration: int, frequency: int) -> bool:
    """True on the iterations an event of this frequency happens (never for frequency 0)."""
    return frequency > 0 and iteration % frequency == 0
