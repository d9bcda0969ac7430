"""``aasae_collator``: batches ``AASAEViews`` pairs into ``data`` (the model input) and ``original``
(the target images, selected with ``DATA.TRAIN.TARGET_KEY_NAMES: [original]``).

``DATA.TRAIN.COLLATE_FUNCTION_PARAMS.input``: ``augmented`` (AASAE, AAAE: the encoder sees
``x+ ~ A(x)``) or ``original`` (AE, VAE: the encoder sees the target image itself).

Images the data source could not read (VISSL substitutes a gray image and marks them
``data_valid = -1``) are left out of the batch, unless all of them are bad; their number travels
in ``batch["aasae_invalid"]`` to the data report hook, which counts them over the run.
"""
import torch
from vissl.data.collators import register_collator

from vissl_aasae.data.aasae_views import ViewPair

INPUT_CHOICES = ("augmented", "original")


@register_collator("aasae_collator")
def aasae_collator(batch, input: str = "augmented"):
    if input not in INPUT_CHOICES:
        raise ValueError(
            f"DATA.TRAIN.COLLATE_FUNCTION_PARAMS.input={input!r} is not supported; allowed: {list(INPUT_CHOICES)}"
        )
    valid = [s for s in batch if s["data_valid"][0] != -1]
    invalid = len(batch) - len(valid)
    batch = valid or batch
    views, targets = [], []
    for sample in batch:
        pair = sample["data"][0]
        if not isinstance(pair, ViewPair):
            raise TypeError(
                "aasae_collator expects the AASAEViews transform as DATA.TRAIN.TRANSFORMS "
                f"(got a {type(pair).__name__} per sample)"
            )
        views.append(pair[0])
        targets.append(pair[1])
    targets = torch.stack(targets)
    inputs = torch.stack(views) if input == "augmented" else targets
    output = {"data": [inputs], "original": [targets]}
    for key in ("label", "data_valid", "data_idx"):
        output[key] = [torch.tensor([sample[key][0] for sample in batch])]
    output["aasae_invalid"] = torch.tensor([invalid])
    return output
