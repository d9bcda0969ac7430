"""``aasae_resnet_decoder``: decodes the latent samples and holds the likelihood's ``log_scale``.

Parameters (head kwargs, else ``MODEL.AASAE``: LATENT_DIM, INPUT_HEIGHT, DECODER_DEPTH, LOG_SCALE,
LEARN_LOG_SCALE):
- ``latent_dim``: d, must equal the projection head's.
- ``input_height``: side of the target images (32, 96, 224...), a multiple of the stem's factor.
- ``depth``: decoder depth 18|34|50 (default: the trunk's); stem and width always follow the trunk.
- ``log_scale``: initial (learned) or fixed value of the Gaussian likelihood's log-variance.
- ``learn_log_scale``: learn ``log_scale`` (it then is a model parameter the optimizer sees).
- ``init``: decoder initialisation, ``pytorch`` (default, the authors') or ``kaiming``; see
  :mod:`vissl_aasae.models.resnet_decoder`.

Output (a list, as VISSL's NaN check wants): ``[x_hat (k,B,C,H,W), mu, log_var, z (k,B,d), log_scale]``.
"""
import math

import torch
import torch.nn as nn
from vissl.models.heads import register_model_head

from vissl_aasae.models.aasae_settings import aasae_setting
from vissl_aasae.models.heads.aasae_projection import Latent
from vissl_aasae.models.resnet_decoder import DECODER_INITS, ResNetDecoder
from vissl_aasae.models.resnet_spec import ResNetSpec
from vissl_aasae.models.trunk_spec import trunk_spec


@register_model_head("aasae_resnet_decoder")
class AASAEResNetDecoderHead(nn.Module):
    def __init__(
        self,
        model_config,
        latent_dim: int = None,
        input_height: int = None,
        depth: int = None,
        log_scale: float = None,
        learn_log_scale: bool = None,
        stem: str = None,
        width_multiplier: float = None,
        init: str = None,
    ):
        super().__init__()
        latent_dim = aasae_setting(model_config, "LATENT_DIM", latent_dim)
        input_height = aasae_setting(model_config, "INPUT_HEIGHT", input_height)
        depth = aasae_setting(model_config, "DECODER_DEPTH", depth)
        log_scale = aasae_setting(model_config, "LOG_SCALE", log_scale)
        learn_log_scale = aasae_setting(model_config, "LEARN_LOG_SCALE", learn_log_scale)
        init = aasae_setting(model_config, "DECODER_INIT", init)
        trunk = trunk_spec(model_config)
        if trunk is None:
            raise ValueError(
                f"aasae_resnet_decoder needs MODEL.TRUNK.NAME aasae_resnet or resnet, got {model_config.TRUNK.NAME!r}"
            )
        for key, value, expected in (("stem", stem, trunk.stem), ("width_multiplier", width_multiplier, trunk.width_multiplier)):
            if value is not None and value != expected:
                raise ValueError(
                    f"aasae_resnet_decoder {key}={value!r} does not match the trunk's {expected!r} "
                    f"(MODEL.TRUNK); encoder and decoder must agree"
                )
        try:
            spec = ResNetSpec(int(depth) if depth is not None else trunk.depth, trunk.width_multiplier, trunk.stem)
        except ValueError as err:
            raise ValueError(f"aasae_resnet_decoder (MODEL.AASAE.DECODER_DEPTH): {err}") from None
        if not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"MODEL.AASAE.LATENT_DIM={latent_dim!r} must be a positive integer")
        if not math.isfinite(float(log_scale)):
            raise ValueError(f"MODEL.AASAE.LOG_SCALE={log_scale!r} must be a finite number")
        if init not in DECODER_INITS:
            raise ValueError(f"MODEL.AASAE.DECODER_INIT={init!r} is not one of {list(DECODER_INITS)}")
        try:
            # the first layers are sized by the encoder's h, whatever the decoder's depth (as the reference)
            self.decoder = ResNetDecoder(spec, latent_dim, int(input_height), h_dim=trunk.feature_dim, init=init)
        except ValueError as err:
            raise ValueError(f"MODEL.AASAE.INPUT_HEIGHT: {err}") from None
        value = torch.tensor([float(log_scale)])
        if bool(learn_log_scale):
            self.log_scale = nn.Parameter(value)
        else:
            self.register_buffer("log_scale", value)

    def forward(self, latent: Latent):
        if not isinstance(latent, Latent):
            raise TypeError(
                "aasae_resnet_decoder must follow a projection head (aasae_stochastic_projection or "
                "aasae_deterministic_projection) in MODEL.HEAD.PARAMS"
            )
        k, b, d = latent.z.shape
        x_hat = self.decoder(latent.z.reshape(k * b, d))
        x_hat = x_hat.view(k, b, *x_hat.shape[1:])
        return [x_hat, latent.mu, latent.log_var, latent.z, self.log_scale]
