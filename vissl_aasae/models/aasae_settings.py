"""The method's knobs, read from ``MODEL.AASAE`` unless a head's own parameter sets them.

Keeping them in one scalar block (not inside ``MODEL.HEAD.PARAMS``, a list that Hydra replaces
wholesale) lets mix-ins and command-line overrides change one value at a time::

    MODEL.AASAE: {LATENT_DIM: 128, NUM_SAMPLES: 1, INPUT_HEIGHT: 32, DECODER_DEPTH: null,
                  LOG_SCALE: 0.0, LEARN_LOG_SCALE: False, DECODER_INIT: pytorch,
                  ORIGINAL_IMAGE_PASS: True}
"""
DEFAULTS = {
    "LATENT_DIM": 128,  # d
    "NUM_SAMPLES": 1,  # k samples of z per example
    "INPUT_HEIGHT": 32,  # side of the target images
    "DECODER_DEPTH": None,  # 18|34|50; None: the trunk's depth
    "LOG_SCALE": 0.0,  # likelihood log-variance (initial value when learned)
    "LEARN_LOG_SCALE": False,
    "DECODER_INIT": "pytorch",  # pytorch (the reference) | kaiming (see resnet_decoder.DECODER_INITS)
    # the reference's no-grad train-mode pass on the original images every step (BN statistics
    # see them too); see vissl_aasae.trainer.aasae_task
    "ORIGINAL_IMAGE_PASS": True,
}


def aasae_setting(model_config, key: str, explicit=None):
    if explicit is not None:
        return explicit
    block = model_config.get("AASAE") or {}
    unknown = sorted(set(block) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"MODEL.AASAE has unknown keys {unknown}; known: {sorted(DEFAULTS)}")
    value = block.get(key)
    return DEFAULTS[key] if value is None else value
