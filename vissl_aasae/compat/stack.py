"""Fixes for today's stack (Python 3.11, torch 2.x, no apex): VISSL 0.1.6 and classy_vision 0.7.0
as they are would be slow (broadcast, forkserver workers) or fail late (apex defaults).  (Their
warnings on every start are silenced by the package's ``__init__``, before any module imports VISSL.)
Each ``patch_*``: a one-line reason (its docstring) and a test in tests/test_compat.py."""

import io
import logging
import multiprocessing
from typing import Any

import torch

from vissl_aasae.compat._patching import _once


def fast_broadcast_object(obj: Any, src: int = 0, use_disk: bool = True) -> Any:
    """classy's broadcast_object, without the element-by-element ByteTensor copy.

    Returns ``obj`` at once when there is a single process; otherwise serialises it once
    and broadcasts the bytes through ``torch.frombuffer`` (zero-copy).
    """
    import torch.distributed as dist
    from classy_vision.generic import distributed_util as du

    if not (dist.is_available() and dist.is_initialized()) or du.get_world_size() == 1:
        return obj
    if du.get_rank() == src:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        payload = bytearray(buffer.getbuffer())
        length = du.broadcast(torch.tensor([len(payload)], dtype=torch.long), src=src)
        data = torch.frombuffer(payload, dtype=torch.uint8)
        du.broadcast(data, src=src)
        return obj
    length = du.broadcast(torch.tensor([0], dtype=torch.long), src=src)
    data = du.broadcast(torch.empty(int(length.item()), dtype=torch.uint8), src=src)
    return torch.load(io.BytesIO(data.numpy().tobytes()), weights_only=False)


@_once
def patch_broadcast_object():
    """classy's broadcast_object builds torch.ByteTensor(memoryview) byte by byte on torch 2.x: ~80 s for 200 MB."""
    from classy_vision.generic import distributed_util, util

    distributed_util.broadcast_object = fast_broadcast_object
    util.broadcast_object = fast_broadcast_object


def _apex_available() -> bool:
    from vissl.utils.misc import is_apex_available

    return is_apex_available()


def apex_free_config(config) -> None:
    """Rewrite apex-only defaults of a VISSL config to their PyTorch equivalents (in place)."""
    if _apex_available():
        return
    amp = config["MODEL"]["AMP_PARAMS"]
    if amp.get("AMP_TYPE") == "apex":
        amp["AMP_TYPE"] = "pytorch"
        if amp.get("USE_AMP"):
            logging.info("apex is not installed: MODEL.AMP_PARAMS.AMP_TYPE set to 'pytorch'")
    sync_bn = config["MODEL"]["SYNC_BN_CONFIG"]
    if sync_bn.get("SYNC_BN_TYPE") == "apex":
        sync_bn["SYNC_BN_TYPE"] = "pytorch"
        if sync_bn.get("CONVERT_BN_TO_SYNC_BN"):
            logging.info("apex is not installed: MODEL.SYNC_BN_CONFIG.SYNC_BN_TYPE set to 'pytorch'")
    if config["OPTIMIZER"].get("use_larc"):
        raise ValueError(
            "OPTIMIZER.use_larc=True needs NVIDIA apex, which is not installed; set OPTIMIZER.use_larc=False"
        )


@_once
def patch_apex_defaults():
    """VISSL defaults to apex AMP (AMP_TYPE: apex) and fails deep in training when apex is missing, as it always is on torch 2.x."""  # noqa: E501 (the patch's one-line reason)
    from vissl.utils import hydra_config

    original = hydra_config.infer_and_assert_hydra_config

    def infer_and_assert_hydra_config(cfg):
        apex_free_config(cfg)
        return original(cfg)

    infer_and_assert_hydra_config.__wrapped__ = original
    hydra_config.infer_and_assert_hydra_config = infer_and_assert_hydra_config


# what a VISSL DataLoader worker unpickles: VISSL's data stack (torch, torchvision, classy_vision
# with it), the plugin's data components and compat's image-folder dataset
FORKSERVER_PRELOAD = [
    "vissl.data",
    "vissl_aasae.compat",
    "vissl_aasae.data.aasae_array",
    "vissl_aasae.data.aasae_collator",
    "vissl_aasae.data.aasae_views",
]


@_once
def patch_forkserver_preload():
    """Every DataLoader worker of VISSL's forkserver imported torch, VISSL and the plugin afresh (~5 s of CPU each, each phase): Python 3.11's forkserver never preloads __main__ (it looks for a 'main_path' key spawn does not write)."""  # noqa: E501 (the patch's one-line reason)
    multiprocessing.set_forkserver_preload(FORKSERVER_PRELOAD)
