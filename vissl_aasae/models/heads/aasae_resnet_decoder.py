"""``aasae_resnet_decoder``: decodes the latent samples and holds the likelihood's ``log_scale``.

No head parameters: everything comes from the trunk (depth, width, stem: ``MODEL.TRUNK``) and from
``MODEL.AASAE`` (:class:`vissl_aasae.settings.MethodSettings`): ``LATENT_DIM`` (must equal the
projection head's, which reads the same key), ``INPUT_HEIGHT`` (a multiple of the stem's factor),
``DECODER_DEPTH`` (null: the trunk's), ``LOG_SCALE`` (initial or fixed value of the likelihood's
log-variance), ``LEARN_LOG_SCALE`` (then a model parameter the optimizer sees), ``DECODER_INIT``
(``pytorch``, the authors', or ``kaiming``; see :mod:`vissl_aasae.models.resnet_decoder`).

Output: :class:`AASAEOutput` (a list, as VISSL's NaN check wants, with named fields).
"""

import torch
import torch.nn as nn
from vissl.models.heads import register_model_head

from vissl_aasae.models.heads.aasae_projection import Latent
from vissl_aasae.models.resnet_decoder import ResNetDecoder
from vissl_aasae.models.resnet_spec import ResNetSpec
from vissl_aasae.models.trunk_spec import trunk_spec
from vissl_aasae.settings import MethodSettings


class AASAEOutput(list):
    """The model's output ``[x_hat (k,B,C,H,W), mu (B,d), log_var (B,d) or empty, z (k,B,d), log_scale (1,)]``
    with names.  A list because VISSL's train step and NaN check handle lists of tensors."""

    FIELDS = ("x_hat", "mu", "log_var", "z", "log_scale")

    def __init__(self, x_hat, mu, log_var, z, log_scale):
        super().__init__([x_hat, mu, log_var, z, log_scale])

    x_hat = property(lambda self: self[0])
    mu = property(lambda self: self[1])
    log_var = property(lambda self: self[2])
    z = property(lambda self: self[3])
    log_scale = property(lambda self: self[4])

    @property
    def latent(self) -> Latent:
        return Latent(self.mu, self.log_var, self.z)


def as_output(output) -> AASAEOutput:
    """The model output as :class:`AASAEOutput`, whatever list VISSL or DDP handed on; a clear error otherwise."""
    if isinstance(output, AASAEOutput):
        return output
    if isinstance(output, (list, tuple)) and len(output) == 1 and isinstance(output[0], (list, tuple)):
        output = output[0]
    if isinstance(output, (list, tuple)) and len(output) == len(AASAEOutput.FIELDS):
        return AASAEOutput(*output)
    raise ValueError(
        "expected the output of the aasae_resnet_decoder head [x_hat, mu, log_var, z, log_scale]; "
        "check MODEL.HEAD.PARAMS (a projection head, then aasae_resnet_decoder)"
    )


@register_model_head("aasae_resnet_decoder")
class AASAEResNetDecoderHead(nn.Module):
    def __init__(self, model_config, **unknown):
        super().__init__()
        if unknown:
            raise ValueError(
                f"aasae_resnet_decoder parameters {sorted(unknown)} in MODEL.HEAD.PARAMS are not supported: "
                "the decoder follows MODEL.TRUNK and MODEL.AASAE"
            )
        method = MethodSettings.from_model_config(model_config)
        trunk = trunk_spec(model_config)
        if trunk is None:
            raise ValueError(
                f"aasae_resnet_decoder needs MODEL.TRUNK.NAME aasae_resnet or resnet, got {model_config.TRUNK.NAME!r}"
            )
        try:
            depth = method.decoder_depth if method.decoder_depth is not None else trunk.depth
            spec = ResNetSpec(depth, trunk.width_multiplier, trunk.stem)
        except ValueError as err:
            raise ValueError(f"aasae_resnet_decoder (MODEL.AASAE.DECODER_DEPTH): {err}") from None
        try:
            # the first layers are sized by the encoder's h, whatever the decoder's depth (as the reference)
            self.decoder = ResNetDecoder(
                spec, method.latent_dim, method.input_height, h_dim=trunk.feature_dim, init=method.decoder_init
            )
        except ValueError as err:
            raise ValueError(f"MODEL.AASAE.INPUT_HEIGHT: {err}") from None
        value = torch.tensor([method.log_scale])
        if method.learn_log_scale:
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
        return AASAEOutput(x_hat, latent.mu, latent.log_var, latent.z, self.log_scale)
