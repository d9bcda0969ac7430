"""The settings schema (vissl_aasae/settings.py): one declaration per key, read and checked in one place."""

import pytest
from conftest import REPO

from vissl_aasae.launcher import compose
from vissl_aasae.settings import (
    PRETRAIN_SECTIONS,
    EvalSettings,
    LinearProbeSettings,
    MethodSettings,
    MetricsSettings,
    PerformanceSettings,
    RunSettings,
    TrunkSettings,
    validate,
)

PRETRAIN_CONFIGS = ["quickstart", "cifar10", "stl10", "imagenet"]


@pytest.mark.parametrize("name", PRETRAIN_CONFIGS)
def test_every_pretraining_config_reads_and_validates(name):
    _, config = compose([f"config=pretrain/aasae/{name}", "config.CHECKPOINT.DIR=/tmp/aasae_settings_unused"])
    validate(config)
    method, trunk = MethodSettings.from_config(config), TrunkSettings.from_config(config)
    assert method.decoder_init == "pytorch" and method.original_image_pass is True  # the reference's choices
    assert (trunk.stem, method.input_height) == {
        "quickstart": ("cifar", 32),
        "cifar10": ("cifar", 32),
        "stl10": ("stl10", 96),
        "imagenet": ("imagenet", 224),
    }[name]
    assert RunSettings.from_config(config).max_iterations == (5_000_000 if name == "imagenet" else None)
    assert PerformanceSettings.from_config(config).channels_last == "auto"


def test_defaults_come_from_the_schema_only():
    """The plugin's YAML files set no key of a schema section to its default: the default is declared once."""
    _, config = compose(["config=pretrain/aasae/quickstart", "config.CHECKPOINT.DIR=/tmp/aasae_settings_unused"])
    for section in PRETRAIN_SECTIONS:
        assert set(section.keys()) <= set(section.section_of(config)), section.PATH  # composed from the schema
    text = (REPO / "configs/config/pretrain/aasae/common.yaml").read_text()
    for key in ("LATENT_DIM:", "DECODER_INIT:", "ORIGINAL_IMAGE_PASS:", "CHANNELS_LAST:", "IMAGE_FREQUENCY:"):
        assert key not in text, key


def test_metrics_frequencies_resolve_from_the_run():
    _, config = compose(
        [
            "config=pretrain/aasae/quickstart",
            "config.LOG_FREQUENCY=7",
            "config.CHECKPOINT.DIR=/tmp/aasae_settings_unused",
        ]
    )
    settings = MetricsSettings.from_config(config)
    assert (settings.log_frequency, settings.posterior_frequency, settings.image_frequency) == (7, 7, 1000)


@pytest.mark.parametrize(
    "section, mapping, message",
    [
        (MethodSettings, {"LATENT_DIM": 0}, r"MODEL.AASAE.LATENT_DIM=0 must be >= 1"),
        (MethodSettings, {"LATENT_DIM": True}, r"MODEL.AASAE.LATENT_DIM=True must be an integer"),
        (MethodSettings, {"LOG_SCALE": float("nan")}, r"MODEL.AASAE.LOG_SCALE=nan must be a finite number"),
        (MethodSettings, {"LATENT": 4}, r"MODEL.AASAE has unknown keys \['LATENT'\]"),
        (TrunkSettings, {"WIDTH_MULTIPLIER": 3}, r"WIDTH_MULTIPLIER=3 is not supported; allowed values: \[0.125"),
        (
            PerformanceSettings,
            {"CHANNELS_LAST": "yes"},
            r"AASAE.PERFORMANCE.CHANNELS_LAST='yes' must be True or False or auto",
        ),
        (PerformanceSettings, {"COMPILE": "auto"}, r"AASAE.PERFORMANCE.COMPILE='auto' must be True or False"),
        (RunSettings, {"MAX_ITERATIONS": 0}, r"AASAE.MAX_ITERATIONS=0 must be >= 1"),
        (EvalSettings, {"METHODS": ["knn", "svm"]}, r"AASAE_EVAL.METHODS=.*\['svm'\] not allowed"),
        (LinearProbeSettings, {"SOLVER": "adam"}, r"AASAE_EVAL.LINEAR_PROBE.SOLVER='adam' is not supported"),
    ],
)
def test_bad_values_name_the_key(section, mapping, message):
    with pytest.raises(ValueError, match=message):
        section.from_mapping(mapping)


def test_width_multipliers_read_as_numbers():
    assert TrunkSettings.from_mapping({"WIDTH_MULTIPLIER": 0.25}).width_multiplier == 0.25
    assert TrunkSettings.from_mapping({"WIDTH_MULTIPLIER": 2.0}).width_multiplier == 2
    assert isinstance(TrunkSettings.from_mapping({"WIDTH_MULTIPLIER": 2.0}).width_multiplier, int)


def test_validate_fills_the_defaults_into_the_config():
    from vissl.utils.hydra_config import AttrDict

    config = AttrDict(
        {"LOSS": {"name": "aasae_loss"}, "MODEL": {"TRUNK": {"NAME": "aasae_resnet"}}, "LOG_FREQUENCY": 10}
    )
    validate(config)
    assert config.MODEL.AASAE.LATENT_DIM == 128 and config.MODEL.TRUNK.AASAE_RESNET.STEM == "cifar"
    assert config.AASAE.PERFORMANCE.CHANNELS_LAST == "auto" and config.AASAE.MAX_ITERATIONS is None


def test_eval_settings_from_the_knn_configs():
    _, config = compose(["config=benchmark/aasae/knn/quickstart", "config.CHECKPOINT.DIR=/tmp/aasae_settings_unused"])
    settings = EvalSettings.from_config(config)
    assert settings.methods == ("linear_probe", "knn") and settings.results_file == "quickstart_eval.json"
    assert settings.linear_probe.epochs == 90 and settings.linear_probe.solver == "sgd"
