"""Every setting the plugin reads, declared once: its section, key, type, default and allowed values.

The plugin's keys live in five sections of a VISSL config::

    MODEL.AASAE                 the method's knobs (MethodSettings)
    MODEL.TRUNK.AASAE_RESNET    the encoder (TrunkSettings)
    AASAE                       the run (RunSettings) and its sub-sections
    AASAE.METRICS               what the hooks log (MetricsSettings)
    AASAE.PERFORMANCE           speed switches (PerformanceSettings)
    AASAE_EVAL                  the CPU feature evaluation (EvalSettings, EvalSettings.LINEAR_PROBE)

Each section is a frozen dataclass whose fields are the section's keys in lower case; a field's
metadata says its type and what values it allows.  ``<Section>.from_config(config)`` reads the
section (absent keys take the default), checks every value and names ``SECTION.KEY=value`` in the
error; :func:`validate` does it for every section at once and writes the defaults into the config,
so that the ``train_config.yaml`` of a run shows every value it used.  Components receive the typed
objects; nothing else reads these keys.
"""

import math
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, ClassVar, Dict, Optional, Tuple, Union

from vissl_aasae.models.resnet_spec import DEPTHS, STEMS, WIDTH_MULTIPLIERS, normalise_width

AUTO = "auto"


def setting(default, kind: str, doc: str, choices=None, minimum=None, nullable=False):
    """A section's key: ``kind`` is int | float | bool | str | auto_bool | width | str_list."""
    return field(
        default=default,
        metadata={"kind": kind, "doc": doc, "choices": choices, "minimum": minimum, "nullable": nullable},
    )


def _check(path: str, key: str, value, meta) -> Any:
    kind, choices, minimum = meta["kind"], meta["choices"], meta["minimum"]
    where = f"{path}.{key}={value!r}"
    if value is None:
        if meta["nullable"]:
            return None
        raise ValueError(f"{where} must be set (null is not allowed)")
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be True or False")
    elif kind == "auto_bool":
        if not (isinstance(value, bool) or value == AUTO):
            raise ValueError(f"{where} must be True or False or auto")
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be an integer")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{where} must be a finite number")
        value = float(value)
    elif kind == "width":
        value = normalise_width(value)
    elif kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string")
    elif kind == "str_list":
        if isinstance(value, str) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{where} must be a list of names")
        bad = [v for v in value if choices and v not in choices]
        if bad:
            raise ValueError(f"{where}: {bad} not allowed; allowed: {list(choices)}")
        return tuple(value)
    if choices is not None and value not in choices:
        raise ValueError(f"{where} is not supported; allowed values: {list(choices)}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{where} must be >= {minimum}")
    return value


class Section:
    """Base of the settings sections: reading, checking and writing one block of a config."""

    PATH: ClassVar[str] = ""
    SUBSECTIONS: ClassVar[Tuple[str, ...]] = ()

    @classmethod
    def keys(cls):
        return [f.name.upper() for f in fields(cls)]

    @classmethod
    def from_mapping(cls, mapping, path: str = None) -> "Section":
        path = path or cls.PATH
        mapping = dict(mapping or {})
        known = {f.name.upper(): f for f in fields(cls)}
        unknown = sorted(set(mapping) - set(known) - set(cls.SUBSECTIONS))
        if unknown:
            raise ValueError(f"{path} has unknown keys {unknown}; known: {sorted(known) + list(cls.SUBSECTIONS)}")
        values = {}
        for key, f in known.items():
            if key in mapping:
                values[f.name] = _check(path, key, mapping[key], f.metadata)
        return cls(**values)

    @classmethod
    def section_of(cls, config):
        node = config
        for part in cls.PATH.split("."):
            node = (node or {}).get(part) if hasattr(node, "get") else None
        return node or {}

    @classmethod
    def from_config(cls, config) -> "Section":
        return cls.from_mapping(cls.section_of(config))

    @classmethod
    def from_model_config(cls, model_config) -> "Section":
        """For sections under MODEL, from the ``MODEL`` block alone (what VISSL hands to trunks and heads)."""
        if not cls.PATH.startswith("MODEL."):
            raise TypeError(f"{cls.__name__} is not under MODEL")
        node = model_config
        for part in cls.PATH.split(".")[1:]:
            node = (node or {}).get(part) if hasattr(node, "get") else None
        return cls.from_mapping(node or {})

    def as_config(self) -> Dict[str, Any]:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name.upper()] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def defaults(cls) -> Dict[str, Any]:
        return {f.name.upper(): f.default for f in fields(cls) if f.default is not MISSING}


@dataclass(frozen=True)
class MethodSettings(Section):
    PATH: ClassVar[str] = "MODEL.AASAE"
    latent_dim: int = setting(128, "int", "latent dimension d (paper: 64-512)", minimum=1)
    num_samples: int = setting(1, "int", "samples of z per example (k), averaged in the loss", minimum=1)
    input_height: int = setting(32, "int", "side of the target images (32 cifar, 96 stl10, 224 imagenet)", minimum=1)
    decoder_depth: Optional[int] = setting(
        None, "int", "18 | 34 | 50; null: the encoder's depth", choices=tuple(DEPTHS), nullable=True
    )
    log_scale: float = setting(0.0, "float", "log-variance of the Gaussian likelihood (initial value when learned)")
    learn_log_scale: bool = setting(False, "bool", "learn log_scale (a model parameter) instead of fixing it")
    decoder_init: str = setting("pytorch", "str", "pytorch (the authors') | kaiming", choices=("pytorch", "kaiming"))
    original_image_pass: bool = setting(
        True,
        "bool",
        "the authors' no-grad train-mode pass on the original images every step (BN statistics see them too)",
    )


@dataclass(frozen=True)
class TrunkSettings(Section):
    PATH: ClassVar[str] = "MODEL.TRUNK.AASAE_RESNET"
    depth: int = setting(18, "int", "18 | 34 | 50", choices=tuple(DEPTHS))
    width_multiplier: Union[int, float] = setting(
        1, "width", "1; 2 | 4 (ResNet-50w2/w4); 0.125 | 0.25 | 0.5 (narrow)", choices=WIDTH_MULTIPLIERS
    )
    stem: str = setting("cifar", "str", "cifar (32 px) | stl10 (96 px) | imagenet (224 px)", choices=tuple(STEMS))
    zero_init_residual: bool = setting(False, "bool", "zero the last BN of each residual branch")


@dataclass(frozen=True)
class MetricsSettings(Section):
    PATH: ClassVar[str] = "AASAE.METRICS"
    log_frequency: Optional[int] = setting(
        None, "int", "loss parts every N iterations; null: config.LOG_FREQUENCY; 0: never", minimum=0, nullable=True
    )
    posterior_frequency: Optional[int] = setting(
        None, "int", "q(z|x+) vs q(z|x) every N iterations; null: LOG_FREQUENCY; 0: never", minimum=0, nullable=True
    )
    image_frequency: int = setting(
        1000, "int", "reconstruction grids every N iterations and at the end; 0: end only", minimum=0
    )
    num_images: int = setting(8, "int", "images per grid; 0: no grids", minimum=0)

    @classmethod
    def from_config(cls, config) -> "MetricsSettings":
        """The frequencies resolved: null LOG_FREQUENCY is the config's LOG_FREQUENCY, null
        POSTERIOR_FREQUENCY the resolved LOG_FREQUENCY."""
        read = super().from_config(config)
        log = read.log_frequency if read.log_frequency is not None else int(config.get("LOG_FREQUENCY", 10))
        posterior = read.posterior_frequency if read.posterior_frequency is not None else log
        return replace(read, log_frequency=log, posterior_frequency=posterior)


def due(iteration: int, frequency: int) -> bool:
    """True on the iterations an event of this frequency happens (iterations count from 0; never for 0)."""
    return frequency > 0 and iteration % frequency == 0


def fused_adam_supported(device) -> bool:
    """Whether this PyTorch has the fused Adam kernel for ``device``'s type (``FUSED_OPTIMIZER: auto``)."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        return device.type in _get_fused_kernels_supported_devices()
    except ImportError:  # an older PyTorch: no fused kernels for CPU
        return device.type == "cuda"


@dataclass(frozen=True)
class PerformanceSettings(Section):
    PATH: ClassVar[str] = "AASAE.PERFORMANCE"
    bf16_autocast: bool = setting(False, "bool", "model forward under bfloat16 autocast; likelihood in float32")
    channels_last: Union[bool, str] = setting(
        AUTO, "auto_bool", "NHWC; auto: on for CPU, on for CUDA with mixed precision"
    )
    fused_optimizer: Union[bool, str] = setting(AUTO, "auto_bool", "fused Adam; auto: where PyTorch has the kernel")
    compile: bool = setting(
        False,
        "bool",
        "torch.compile the trunk and each head; off: slower on CPU (benchmarks/RESULTS.md), GPU unmeasured",
    )
    cap_cpu_workers: bool = setting(True, "bool", "CPU runs: at most cores-per-rank - 1 DataLoader workers")

    def resolved(self, device, mixed_precision: bool = False) -> "PerformanceSettings":
        """``auto`` replaced by the decision for ``device`` (``mixed_precision``: VISSL's AMP is on); the
        switches are applied where the model is built (:mod:`vissl_aasae.trainer.aasae_performance`)."""
        mixed = mixed_precision or self.bf16_autocast
        channels_last = self.channels_last
        if channels_last == AUTO:
            channels_last = device.type == "cpu" or (device.type == "cuda" and mixed)
        fused = self.fused_optimizer
        if fused == AUTO:
            fused = fused_adam_supported(device)
        return replace(self, channels_last=bool(channels_last), fused_optimizer=bool(fused))

    @property
    def any(self) -> bool:
        return bool(self.bf16_autocast or self.channels_last is True or self.compile)


@dataclass(frozen=True)
class RunSettings(Section):
    PATH: ClassVar[str] = "AASAE"
    SUBSECTIONS: ClassVar[Tuple[str, ...]] = ("METRICS", "PERFORMANCE")
    max_iterations: Optional[int] = setting(
        None, "int", "stop after exactly N iterations; null: num_epochs", minimum=1, nullable=True
    )
    overwrite_config: bool = setting(
        False,
        "bool",
        "a launch whose config differs from the train_config.yaml in "
        "CHECKPOINT.DIR rewrites it (False: it refuses, naming the keys)",
    )
    log_environment: bool = setting(
        False,
        "bool",
        "log every environment variable at start-up (VISSL's dump, secrets included); False: only harmless names",
    )
    max_unreadable_fraction: float = setting(
        0.25, "float", "the run stops when more than this share (0-1) of the images seen cannot be read", minimum=0
    )
    divergence_factor: Optional[float] = setting(
        1000.0,
        "float",
        "the run stops (exit 3) when the loss's magnitude exceeds this multiple of its first iteration's "
        "in this launch; null: never (NaN/inf stop it always)",
        minimum=1,
        nullable=True,
    )


@dataclass(frozen=True)
class LinearProbeSettings(Section):
    PATH: ClassVar[str] = "AASAE_EVAL.LINEAR_PROBE"
    epochs: int = setting(90, "int", "sgd: epochs", minimum=1)
    batch_size: int = setting(256, "int", "sgd: batch", minimum=1)
    lr: float = setting(0.1, "float", "sgd: LR for a batch of 256, scaled linearly with BATCH_SIZE, cosine to 0")
    momentum: float = setting(0.9, "float", "sgd: momentum")
    nesterov: bool = setting(True, "bool", "sgd: Nesterov momentum")
    weight_decay: float = setting(0.0, "float", "sgd: weight decay")
    standardize: bool = setting(True, "bool", "shift and scale each feature by its training mean and std")
    seed: int = setting(0, "int", "initialisation and batch order")
    solver: str = setting(
        "sgd", "str", "sgd (the SimCLR protocol) | lbfgs (logistic regression to convergence)", choices=("sgd", "lbfgs")
    )
    c: float = setting(1.0, "float", "lbfgs: inverse L2 strength, as scikit-learn's C")
    max_iter: int = setting(500, "int", "lbfgs: iterations", minimum=1)


@dataclass(frozen=True)
class EvalSettings(Section):
    PATH: ClassVar[str] = "AASAE_EVAL"
    SUBSECTIONS: ClassVar[Tuple[str, ...]] = ("LINEAR_PROBE",)
    methods: Tuple[str, ...] = setting(("knn",), "str_list", "knn | linear_probe", choices=("knn", "linear_probe"))
    results_file: str = setting("feature_eval.json", "str", "JSON written in CHECKPOINT.DIR unless absolute")
    random_init: bool = setting(
        False,
        "bool",
        "a benchmark launched without MODEL.WEIGHTS_INIT.PARAMS_FILE evaluates a random-init trunk (a baseline) "
        "only when True; False: the launch is refused",
    )

    @property
    def linear_probe(self) -> LinearProbeSettings:  # read with the section (see from_config)
        return self._linear_probe

    @classmethod
    def from_config(cls, config) -> "EvalSettings":
        read = super().from_config(config)
        object.__setattr__(read, "_linear_probe", LinearProbeSettings.from_config(config))
        return read


SECTIONS = (
    MethodSettings,
    TrunkSettings,
    RunSettings,
    MetricsSettings,
    PerformanceSettings,
    EvalSettings,
    LinearProbeSettings,
)


def config_defaults(sections) -> Dict[str, Any]:
    """The sections' defaults as one nested config block ``{"config": {...}}``."""
    root: Dict[str, Any] = {}
    for section in sections:
        node = root
        for part in section.PATH.split("."):
            node = node.setdefault(part, {})
        node.update({k: (list(v) if isinstance(v, tuple) else v) for k, v in section.defaults().items()})
    return {"config": root}


# Hydra's config store: the defaults of every key, composed first by the plugin's configs
# (``defaults: [pretrain/aasae/settings, ...]`` in pretrain/aasae/common.yaml and
# ``benchmark/aasae/settings`` in the kNN/CPU evaluation configs), so that the keys exist (Hydra
# overrides need them) and their defaults are written nowhere else.
PRETRAIN_SECTIONS = (MethodSettings, TrunkSettings, RunSettings, MetricsSettings, PerformanceSettings)
EVAL_SECTIONS = (EvalSettings, LinearProbeSettings)


def register_config_defaults() -> None:
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(
        group="config/pretrain/aasae",
        name="settings",
        node=config_defaults(PRETRAIN_SECTIONS),
        package="_global_",
        provider="vissl_aasae",
    )
    store.store(
        group="config/benchmark/aasae",
        name="settings",
        node=config_defaults(EVAL_SECTIONS),
        package="_global_",
        provider="vissl_aasae",
    )


def validate(config, fill: bool = True) -> None:
    """Check every section present in ``config`` (a composed VISSL config); with ``fill``, write the
    values with their defaults back into it.  The trunk section only when the trunk is ours; the
    AASAE sections only when the config trains or evaluates with this plugin."""
    model = config.get("MODEL") or {}
    uses_aasae = (config.get("LOSS") or {}).get("name") == "aasae_loss"
    for section in SECTIONS:
        if section is TrunkSettings and (model.get("TRUNK") or {}).get("NAME") != "aasae_resnet":
            continue
        present = section.section_of(config)
        needed = section is TrunkSettings or (uses_aasae and section in PRETRAIN_SECTIONS)
        if not present and not needed:
            continue
        values = section.from_mapping(present).as_config()
        if fill:
            node = config
            for part in section.PATH.split("."):
                if node.get(part) is None:
                    node[part] = type(node)({}) if type(node) is not dict else {}
                node = node[part]
            for key, value in values.items():
                node[key] = value
