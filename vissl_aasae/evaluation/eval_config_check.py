"""Pre-flight checks of an evaluation config (the launcher calls :func:`check_evaluation_config`).

Each error is a :class:`~vissl_aasae.errors.ConfigError` naming the key: a classifier head
whose input size is not the trunk's feature size (e.g. a ResNet-50 trunk with the ResNet-18 head
of ``linear/cifar10``), label files that do not exist, the one-process rule of the
``aasae_feature_eval`` engine, and a ``MODEL.WEIGHTS_INIT.PARAMS_FILE`` whose trunk does not match
``MODEL.TRUNK`` (:func:`vissl_aasae.evaluation.trunk_weights.check_weights_init`).
"""

import os

from vissl.models.model_helpers import get_trunk_output_feature_names

from vissl_aasae.errors import ConfigError
from vissl_aasae.evaluation.trunk_weights import check_weights_init
from vissl_aasae.models.trunk_spec import trunk_spec
from vissl_aasae.settings import EvalSettings

# trunk outputs whose size is the pooled last stage (ResNet: 512 x expansion x width)
POOLED_FEATURES = ("res5", "res5avg", "flatten")
CLASSIFIER_HEADS = ("mlp", "eval_mlp")


def _head_input(head) -> int:
    name, params = head[0], head[1]
    if name == "eval_mlp":
        return int(params["in_channels"])
    return int(params["dims"][0])


def check_head_sizes(config) -> None:
    spec = trunk_spec(config.MODEL)
    heads = config.MODEL.HEAD.PARAMS
    if spec is None or not heads or heads[0][0] not in CLASSIFIER_HEADS:
        return
    features = get_trunk_output_feature_names(config.MODEL)
    if features and len(features) == len(heads):
        pairs = list(zip(features, heads))
    else:
        pairs = [(features[0] if features else "flatten", heads[0])]
    for i, (feature, head) in enumerate(pairs):
        if head[0] not in CLASSIFIER_HEADS or feature not in POOLED_FEATURES:
            continue
        pool_ops = config.MODEL.FEATURE_EVAL_SETTINGS.LINEAR_EVAL_FEAT_POOL_OPS_MAP
        if feature == "res5" and pool_ops[i][1][0] != "AdaptiveAvgPool2d":
            continue
        size = _head_input(head)
        if size != spec.feature_dim:
            key = "in_channels" if head[0] == "eval_mlp" else "dims[0]"
            raise ConfigError(
                f"MODEL.HEAD.PARAMS[{i}] ({head[0]}) {key}={size} but the trunk (ResNet-{spec.depth}, "
                f"WIDTH_MULTIPLIER {spec.width_multiplier}) gives {spec.feature_dim}-d {feature} features; "
                f"set the head's input size to {spec.feature_dim}"
            )


def check_label_files(config) -> None:
    for split in ("TRAIN", "TEST"):
        data = config.DATA[split]
        if not data.DATA_SOURCES or (split == "TEST" and not config.TEST_MODEL and not config.TEST_ONLY):
            continue
        for i, path in enumerate(data.get("LABEL_PATHS") or []):
            if path and not os.path.exists(os.path.expanduser(str(path))):
                raise ConfigError(f"DATA.{split}.LABEL_PATHS[{i}]={path!r} does not exist")


def check_engine(config, engine_name: str) -> None:
    if engine_name != "aasae_feature_eval":
        return
    world = config.DISTRIBUTED.NUM_NODES * config.DISTRIBUTED.NUM_PROC_PER_NODE
    if world != 1:
        raise ConfigError(
            f"DISTRIBUTED.NUM_PROC_PER_NODE={config.DISTRIBUTED.NUM_PROC_PER_NODE} (NUM_NODES="
            f"{config.DISTRIBUTED.NUM_NODES}): engine aasae_feature_eval runs in one process"
        )
    for split in ("TRAIN", "TEST"):
        if not config.DATA[split].LABEL_SOURCES:
            raise ConfigError(f"DATA.{split}.LABEL_SOURCES is empty: engine aasae_feature_eval needs labels")


def check_weights_given(config) -> None:
    """A benchmark (a config with the AASAE_EVAL section) without MODEL.WEIGHTS_INIT.PARAMS_FILE would
    evaluate a random-init trunk and exit 0 as if it had evaluated a model: refused unless asked for."""
    if not config.get("AASAE_EVAL") or config.MODEL.WEIGHTS_INIT.get("PARAMS_FILE"):
        return
    if not EvalSettings.from_config(config).random_init:
        raise ConfigError(
            "MODEL.WEIGHTS_INIT.PARAMS_FILE is empty: this benchmark would evaluate a randomly initialised trunk. "
            "Give the pretrained checkpoint (config.MODEL.WEIGHTS_INIT.PARAMS_FILE=<run folder>/"
            "model_final_checkpoint_phaseN.torch), or config.AASAE_EVAL.RANDOM_INIT=True for a random-init baseline"
        )


def check_evaluation_config(config, engine_name: str = "train") -> None:
    """Raise ConfigError naming the first problem; loads the PARAMS_FILE (memory-mapped) when one is set."""
    check_weights_given(config)
    check_head_sizes(config)
    check_label_files(config)
    check_engine(config, engine_name)
    check_weights_init(config)
