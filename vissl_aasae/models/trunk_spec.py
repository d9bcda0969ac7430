"""The ResNet spec of whatever trunk a VISSL model config describes (ours or VISSL's ``resnet``)."""

from typing import Optional

from vissl_aasae.models.resnet_spec import ResNetSpec
from vissl_aasae.models.trunks.aasae_resnet import spec_from_config


def trunk_spec(model_config) -> Optional[ResNetSpec]:
    """ResNetSpec of ``MODEL.TRUNK``; None for trunks whose layout is unknown to the decoder."""
    trunk = model_config.TRUNK
    if trunk.NAME == "aasae_resnet":
        return spec_from_config(model_config)
    if trunk.NAME == "resnet":
        resnets = trunk.RESNETS
        return ResNetSpec(int(resnets.DEPTH), int(resnets.WIDTH_MULTIPLIER), "imagenet")
    return None
